//! The signaling protocol's vocabulary: the messages between a browser and its
//! call, as the call task produces them and the WebSocket session (`signaling`)
//! carries them.
//!
//! Every message is a JSON object with a version field `v` (currently 1) and a
//! `type`. [`ClientMessage`] is what a client may send, [`ServerMessage`] what it
//! receives; a message that cannot be understood gets an [`ErrorCode`] back and
//! changes nothing for anyone else. `docs/signaling.md` documents both directions.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a waiting person is waiting for (`waiting` says it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitingFor {
    /// Nobody authenticated is on the call yet.
    Host,
    /// Someone on the call has to admit them.
    Approval,
}

/// The protocol version this server speaks.
pub const PROTOCOL_VERSION: u32 = 1;
/// Largest message a client may send.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// What a client sends.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Ask to join. Guests send their name and a random key their browser keeps for
    /// this link (16–64 of `A-Z a-z 0-9 _ -`); signed-in members may omit both.
    Join {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        guest_key: Option<String>,
    },
    /// Come back after a dropped connection with the token from `joined`.
    Resume { resume_token: String },
    /// Let a lobby request in (signed-in participants).
    Admit { request: u32 },
    /// Let every waiting lobby request in, oldest first, up to the call's cap
    /// (signed-in participants).
    AdmitAll,
    /// Turn a lobby request away (signed-in participants).
    Deny { request: u32 },
    /// Remove a guest from the call.
    Remove { participant: u32 },
    /// Stop waiting in the lobby.
    Withdraw,
    /// Hang up.
    Leave,
    /// An SDP offer for the connection that carries what this browser sends (first,
    /// or again when it adds or removes a track, or after a reconnect).
    Publish { sdp: String },
    /// Receive the others without publishing (recorders, bots): the server opens
    /// the subscribe connection and sends `subscribe_offer` whenever there is
    /// something to receive. Sent again, it starts that connection over (after a
    /// network change).
    Subscribe,
    /// The SDP answer to the last `subscribe_offer`.
    SubscribeAnswer { sdp: String },
    /// Which simulcast layer of `participant`'s video to receive: 0 (smallest) to 2
    /// (full). Clients ask for less for small tiles.
    SetQuality { participant: u32, layer: u8 },
    /// What this participant currently sends, shown to everyone in the roster.
    Mute {
        audio: bool,
        video: bool,
        #[serde(default)]
        screen: bool,
    },
    /// Lock or unlock the lobby (signed-in participants): while locked, nobody new
    /// can ask to join.
    LockLobby { locked: bool },
    /// Suspend every guest, or resume them (signed-in participants): while
    /// suspended, no guest's audio, video or screen is forwarded, and the lobby is
    /// locked; resuming unlocks it.
    SuspendGuests { suspended: bool },
    /// Keep-alive; answered with `pong`.
    Ping,
    /// A message on a plugin's channel (a shared activity) for that plugin; `payload`
    /// is standard base64 of at most 32 KiB, opaque to the server.
    Plugin { plugin: String, payload: String },
    /// End-to-end encryption keys for one participant (`to`) or for everyone else on
    /// the call (`to` omitted); `payload` is at most 4 KiB of standard base64, opaque
    /// to the server, which only relays it (docs/security.md).
    E2ee {
        #[serde(default)]
        to: Option<u32>,
        payload: String,
    },
    /// Start `plugin`'s shared activity on the call, or join it (again, after a
    /// reconnect, to get its state anew): answered with `activity_snapshot`.
    ActivityJoin { plugin: String },
    /// Leave `plugin`'s activity; it ends when its last member leaves.
    ActivityLeave { plugin: String },
    /// A message for the other members of the activity, or for those in `to`;
    /// `payload` is sealed by the page (at most 32 KiB, standard base64).
    ActivitySend {
        plugin: String,
        #[serde(default)]
        to: Option<Vec<u32>>,
        payload: String,
    },
    /// An update to the activity's shared state (sealed), numbered by the server
    /// and sent to every member, the sender included.
    ActivityUpdate { plugin: String, payload: String },
    /// The activity's state as of update `seq`, sealed by this page: for the
    /// `newcomer` the server asked about, or (without it) as the copy the server
    /// keeps for newcomers nobody answers.
    ActivitySnapshot {
        plugin: String,
        #[serde(default)]
        newcomer: Option<u32>,
        seq: u64,
        payload: String,
    },
}

/// Largest `payload` of an `e2ee` message, in characters of base64.
pub const MAX_E2EE_PAYLOAD: usize = 4096;

/// What the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    /// A message the node hosting the call encoded, relayed as it is by the node
    /// that holds the connection (never made up here).
    #[serde(skip)]
    Relayed(String),
    /// Not a message: the connection closes (its call's host was lost), so that
    /// the page comes back through a fresh one.
    #[serde(skip)]
    Hangup,
    /// First message on every connection.
    Welcome {
        title: String,
        signed_in_as: Option<String>,
    },
    /// In the lobby, waiting for the host to arrive or for someone to decide.
    Waiting {
        request: u32,
        waiting_for: WaitingFor,
    },
    /// On the call. Keep `resume_token` to come back after a dropped connection.
    /// `call` tells this run of the link apart from earlier and later ones
    /// (participant numbers start over in each): browsers bind their keys to it.
    Joined {
        participant: u32,
        resume_token: String,
        call: String,
    },
    /// Everyone on the call (sent to participants whenever it changes). `now` is the
    /// server's clock, so clients can show waits and windows whatever their own clock says.
    Roster {
        participants: Vec<RosterEntry>,
        /// Every guest is suspended (`suspend_guests`): no guest's media is
        /// forwarded.
        guests_suspended: bool,
        now: DateTime<Utc>,
    },
    /// Who is waiting (sent to signed-in participants whenever it changes): the
    /// [`LOBBY_SNAPSHOT`] oldest requests, how many wait in all, and whether the
    /// lobby is locked.
    Lobby {
        requests: Vec<LobbyEntry>,
        total: usize,
        locked: bool,
        now: DateTime<Utc>,
    },
    /// The request was denied; `blocked` after the second denial. `reason` is set
    /// when a plugin turned the request away before anyone saw it.
    Denied {
        blocked: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Removed from the call by `by` (a participant's name).
    Removed {
        by: String,
    },
    /// The lobby request ended without a decision.
    RequestEnded {
        why: RequestEndReason,
    },
    /// The call ended: everyone has left, or (`reason`) it was ended for everyone.
    CallEnded {
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<CallEndReason>,
    },
    /// The server's answer to a `publish` offer.
    PublishAnswer {
        sdp: String,
    },
    /// An offer for the connection that carries everyone else's media; answer with
    /// `subscribe_answer`. Each stream id is `p{participant}-{n}` (n = 0 camera and
    /// microphone, 1 screen).
    SubscribeOffer {
        sdp: String,
    },
    /// Who is speaking now.
    ActiveSpeaker {
        participant: u32,
    },
    Pong,
    /// A message on a plugin's channel (a shared activity), as the plugin sent it
    /// (`payload` in standard base64).
    Plugin {
        plugin: String,
        payload: String,
    },
    /// A participant's `e2ee` message, as they sent it; `from` is set by the server.
    E2ee {
        from: u32,
        payload: String,
    },
    /// Who is in `plugin`'s shared activity (sent to everyone on the call when it
    /// changes, and on joining the call). No members: the activity ended.
    Activity {
        plugin: String,
        host: Option<u32>,
        members: Vec<ActivityMember>,
    },
    /// A member's `activity_send`, as they sent it.
    ActivityMessage {
        plugin: String,
        from: u32,
        payload: String,
    },
    /// An update to the shared state, with its place in the order (`seq`, from 1).
    ActivityUpdate {
        plugin: String,
        seq: u64,
        from: u32,
        payload: String,
    },
    /// `newcomer` joined the activity: send them the state with
    /// `activity_snapshot`.
    ActivitySnapshotRequest {
        plugin: String,
        newcomer: u32,
    },
    /// The state as of update `seq`, sealed by `from`'s page (no payload: empty,
    /// before any update). The updates from `next` on that this page was not sent
    /// live follow as `activity_update`s; `next` is `seq + 1` unless the server no
    /// longer had them all, and then `complete` is false.
    ActivitySnapshot {
        plugin: String,
        seq: u64,
        from: Option<u32>,
        payload: Option<String>,
        next: u64,
        complete: bool,
    },
    /// The last message could not be carried out; nothing changed.
    Error {
        code: ErrorCode,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestEndReason {
    Withdrawn,
    TimedOut,
    CallEnded,
    /// The link was revoked or deleted.
    LinkRevoked,
    /// The link got a new id; this request came through the old one.
    LinkRotated,
}

/// Why a call was ended for everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallEndReason {
    /// The link was revoked or deleted.
    LinkRevoked,
}

/// Lobby requests listed in one `lobby` message; `total` counts them all.
pub const LOBBY_SNAPSHOT: usize = 20;

/// One participant, as everyone on the call sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RosterEntry {
    pub participant: u32,
    pub name: String,
    /// A web guest (not signed in).
    pub guest: bool,
    /// The link's owner.
    pub owner: bool,
    pub joined_at: DateTime<Utc>,
    /// False while the connection is down and the place is kept.
    pub connected: bool,
    /// What the participant sends, as it last said with `mute`.
    pub audio_muted: bool,
    pub video_muted: bool,
    pub sharing_screen: bool,
    /// A guest whose media is not forwarded: the guests are suspended.
    pub suspended: bool,
    /// For guests: until when any signed-in participant may remove them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removable_until: Option<DateTime<Utc>>,
}

/// A member of a shared activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivityMember {
    pub participant: u32,
    pub role: ActivityRole,
}

/// What a member is in an activity: the plugin's web code may keep actions to
/// some roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityRole {
    /// Started it (or, after they left, the earliest remaining member).
    Host,
    /// Signed in.
    Member,
    /// A web guest.
    Guest,
}

/// One lobby request, as signed-in participants see it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct LobbyEntry {
    pub request: u32,
    pub name: String,
    pub guest: bool,
    pub asked_at: DateTime<Utc>,
    /// What plugins that screen requests say about this one (empty when nothing).
    pub warnings: Vec<LobbyWarning>,
    /// What Confab itself noticed about this request (empty when nothing).
    pub flags: Vec<LobbyFlag>,
}

/// Something Confab noticed about a lobby request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LobbyFlag {
    /// From the same network (IPv4 address or IPv6 /64) as a guest who was removed
    /// from this call. NAT makes this a hint, not proof.
    SameNetworkAsRemoved,
    /// From the same network as a guest who was declined twice on this call.
    SameNetworkAsBlocked,
}

/// A plugin's warning about a lobby request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct LobbyWarning {
    pub plugin: String,
    pub message: String,
}

/// Why a message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Not JSON, an unknown `type`, unknown or missing fields.
    BadMessage,
    /// `v` is missing or not a version this server speaks.
    UnsupportedVersion,
    MessageTooLarge,
    RateLimited,
    /// The name is empty or longer than 64 characters.
    InvalidName,
    /// Guests must send a `guest_key` of 16–64 letters, digits, `_` or `-`.
    InvalidGuestKey,
    /// This needs a `join` (or `resume`) first.
    NotJoined,
    AlreadyJoined,
    CallFull,
    /// Denied twice: no more requests during this call.
    Blocked,
    /// Removed from this call: no way back during it.
    Removed,
    /// The people on the call locked the lobby.
    LobbyLocked,
    /// The lobby holds as many requests as it may.
    LobbyFull,
    /// Too many requests from this network wait, or came within the last minute.
    TooManyRequests,
    /// The link was revoked or deleted; the connection closes.
    LinkRevoked,
    /// The link got a new id: open the new link to join.
    LinkRotated,
    /// The server could not do this now (its database did not answer): try again.
    Unavailable,
    /// Another server of the same service holds this call (a cluster whose load
    /// balancer sent this connection elsewhere): try again later, or through it.
    CallOnAnotherNode,
    /// Only signed-in participants may do this.
    NotAllowed,
    NoSuchRequest,
    NoSuchParticipant,
    /// Only the owner may remove a guest after the removal window.
    RemovalWindowPassed,
    /// Only guests can be removed.
    NotAGuest,
    /// The resume token is unknown or its grace period passed: join again.
    ResumeExpired,
    /// An SDP offer or answer that could not be used.
    BadSdp,
    /// The media server cannot take this now (overloaded, or media is off).
    MediaUnavailable,
    /// The server dropped this call's media after an internal error (the rest of
    /// the node goes on): publish again to start it over.
    MediaFailed,
    /// The plugin named in a `plugin` message does not exist, is switched off, or
    /// failed to handle it.
    PluginUnavailable,
    /// This needs an `activity_join` first.
    NotInActivity,
}

/// A server message on the wire, with its version.
pub fn encode(message: &ServerMessage) -> String {
    if let ServerMessage::Relayed(text) = message {
        return text.clone();
    }
    #[derive(Serialize)]
    struct Versioned<'a> {
        v: u32,
        #[serde(flatten)]
        message: &'a ServerMessage,
    }
    // Serializing plain data structures into a String cannot fail.
    serde_json::to_string(&Versioned {
        v: PROTOCOL_VERSION,
        message,
    })
    .unwrap_or_default()
}

/// Parses a client message, checking its version.
pub fn decode(text: &str) -> Result<ClientMessage, ServerMessage> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(error(
            ErrorCode::MessageTooLarge,
            format!("messages are limited to {MAX_MESSAGE_BYTES} bytes"),
        ));
    }
    let mut value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| error(ErrorCode::BadMessage, format!("not JSON: {e}")))?;
    let object = value
        .as_object_mut()
        .ok_or_else(|| error(ErrorCode::BadMessage, "a message is a JSON object"))?;
    match object.remove("v").and_then(|v| v.as_u64()) {
        Some(v) if v == u64::from(PROTOCOL_VERSION) => {}
        _ => {
            return Err(error(
                ErrorCode::UnsupportedVersion,
                format!(
                    "send \"v\": {PROTOCOL_VERSION}; this server speaks protocol version {PROTOCOL_VERSION}"
                ),
            ));
        }
    }
    serde_json::from_value(value).map_err(|e| error(ErrorCode::BadMessage, e.to_string()))
}

/// An error message.
pub fn error(code: ErrorCode, message: impl Into<String>) -> ServerMessage {
    ServerMessage::Error {
        code,
        message: message.into(),
    }
}

impl From<crate::sfu::MediaEvent> for ServerMessage {
    fn from(event: crate::sfu::MediaEvent) -> Self {
        use crate::sfu::MediaEvent;
        match event {
            MediaEvent::PublishAnswer { sdp } => ServerMessage::PublishAnswer { sdp },
            MediaEvent::SubscribeOffer { sdp } => ServerMessage::SubscribeOffer { sdp },
            MediaEvent::ActiveSpeaker { participant } => {
                ServerMessage::ActiveSpeaker { participant }
            }
            MediaEvent::BadSdp(message) => error(ErrorCode::BadSdp, message),
            MediaEvent::Failed(message) => error(ErrorCode::MediaFailed, message),
        }
    }
}

/// A connection's queue of messages takes its participant's media events.
impl crate::sfu::EventSink for tokio::sync::mpsc::Sender<ServerMessage> {
    fn deliver(&self, event: crate::sfu::MediaEvent) -> bool {
        self.try_send(event.into()).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_carry_the_version() {
        let text = encode(&ServerMessage::Waiting {
            request: 3,
            waiting_for: WaitingFor::Host,
        });
        assert_eq!(
            text,
            r#"{"v":1,"type":"waiting","request":3,"waiting_for":"host"}"#
        );
        assert_eq!(
            decode(r#"{"v":1,"type":"admit","request":7}"#),
            Ok(ClientMessage::Admit { request: 7 })
        );
        assert_eq!(
            decode(r#"{"v":1,"type":"admit_all"}"#),
            Ok(ClientMessage::AdmitAll)
        );
        assert_eq!(
            decode(r#"{"v":1,"type":"withdraw"}"#),
            Ok(ClientMessage::Withdraw)
        );
    }

    #[test]
    fn bad_messages_are_answered_with_a_code() {
        let code = |text: &str| match decode(text) {
            Err(ServerMessage::Error { code, .. }) => code,
            other => panic!("{text}: {other:?}"),
        };
        assert_eq!(code("nope"), ErrorCode::BadMessage);
        assert_eq!(code("[1,2]"), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"type":"ping"}"#), ErrorCode::UnsupportedVersion);
        assert_eq!(
            code(r#"{"v":2,"type":"ping"}"#),
            ErrorCode::UnsupportedVersion
        );
        assert_eq!(code(r#"{"v":1,"type":"launch"}"#), ErrorCode::BadMessage);
        assert_eq!(code(r#"{"v":1,"type":"admit"}"#), ErrorCode::BadMessage);
        assert_eq!(
            code(r#"{"v":1,"type":"admit","request":1,"extra":true}"#),
            ErrorCode::BadMessage
        );
        assert_eq!(
            code(r#"{"v":1,"type":"admit","request":-1}"#),
            ErrorCode::BadMessage
        );
        assert_eq!(
            code(&format!(
                r#"{{"v":1,"type":"join","name":"{}"}}"#,
                "x".repeat(70_000)
            )),
            ErrorCode::MessageTooLarge
        );
    }

    #[test]
    fn call_ended_says_why_only_when_the_call_was_ended_for_everyone() {
        assert_eq!(
            encode(&ServerMessage::CallEnded { reason: None }),
            r#"{"v":1,"type":"call_ended"}"#
        );
        assert_eq!(
            encode(&ServerMessage::CallEnded {
                reason: Some(CallEndReason::LinkRevoked)
            }),
            r#"{"v":1,"type":"call_ended","reason":"link_revoked"}"#
        );
        assert_eq!(
            decode(r#"{"v":1,"type":"lock_lobby","locked":true}"#),
            Ok(ClientMessage::LockLobby { locked: true })
        );
    }
}
