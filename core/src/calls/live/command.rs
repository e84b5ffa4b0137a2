//! What a call's task is asked: a connection's [`CallRequest`] with its [`Action`].

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot};

use crate::calls::{Decision, Identity, Origin, ParticipantId, RequestId};
use crate::plugins::{self, PluginCallAction, PluginCallAnswer, PluginCallError};
use crate::protocol::ServerMessage;

/// A connection's id, unique within the process.
pub type ClientId = u64;

static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);

/// A fresh [`ClientId`].
pub fn next_client_id() -> ClientId {
    NEXT_CLIENT.fetch_add(1, Ordering::Relaxed)
}

/// A message from one connection to its call.
#[derive(Debug)]
pub struct CallRequest {
    pub client: ClientId,
    /// Where the call answers this client.
    pub out: mpsc::Sender<ServerMessage>,
    pub action: Action,
}

/// What a connection asks of its call. What a connection can ask travels between
/// the nodes of a cluster as JSON (the relay); what only the server makes up does not.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub enum Action {
    Join {
        identity: Identity,
        name: String,
        /// The client's address: for the lobby's limits, removals and blocks, and
        /// for plugins that screen requests.
        address: Option<IpAddr>,
        /// The device id of the request's valid guest cookie.
        device: Option<String>,
        /// The public id the connection was opened with (a rotation ends requests
        /// that came through the old one).
        opened_as: String,
    },
    /// The plugins' verdict on a guest's request (sent by the call to itself).
    #[serde(skip)]
    Screened {
        identity: Identity,
        origin: Origin,
        name: String,
        verdict: plugins::Verdict,
    },
    /// Lock or unlock the lobby.
    LockLobby {
        locked: bool,
    },
    SuspendGuests {
        suspended: bool,
    },
    /// The connection's sign-in ended (signed out, session expired, token revoked):
    /// it keeps its place but loses member powers.
    SignedOut,
    Resume {
        resume_token: String,
    },
    Decide {
        request: RequestId,
        decision: Decision,
    },
    /// Admit every waiting request, oldest first, while there are seats.
    AdmitAll,
    Remove {
        participant: ParticipantId,
    },
    Withdraw,
    Leave,
    /// Media negotiation, passed on to the SFU for participants on the call.
    Publish {
        sdp: String,
    },
    /// Receive without publishing.
    Subscribe,
    SubscribeAnswer {
        sdp: String,
    },
    SetQuality {
        participant: ParticipantId,
        layer: u8,
    },
    Mute(MediaState),
    /// A message on a plugin's channel (a shared activity), for that plugin.
    PluginMessage {
        plugin: String,
        payload: Vec<u8>,
    },
    /// A shared activity's request (`activity_*` messages).
    Activity {
        plugin: String,
        request: ActivityRequest,
    },
    /// End-to-end encryption keys for one participant or everyone else, relayed as
    /// they are.
    Keys {
        to: Option<ParticipantId>,
        payload: String,
    },
    /// The place a dead node kept for `resume_token`, looked up by the call (sent
    /// by the call to itself after a resume it did not know).
    #[serde(skip)]
    Restored {
        resume_token: String,
        seat: Option<Box<crate::store::call_seat::Model>>,
    },
    /// The connection closed.
    Disconnected,
    /// The node drains and its time is up: every connection of the call is closed,
    /// so that each page comes back through another node (not from a connection).
    #[serde(skip)]
    Evacuate,
    /// The connection learnt that the link was revoked or deleted: the call ends
    /// (if it has not yet), then the connection is told why it closes.
    LinkGone,
    /// A plugin's request (not from a connection).
    #[serde(skip)]
    Plugin {
        action: PluginCallAction,
        reply: PluginReply,
    },
    /// An `e2ee` message the server makes up, as if from participant `from`, for
    /// everyone on the call: what a malicious server could do (tests only).
    #[cfg(feature = "test-tap")]
    #[serde(skip)]
    ForgeKeys {
        from: u32,
        payload: String,
    },
    /// Every payload the call holds for `plugin`'s activity (its copy and its log),
    /// to check that the server holds only ciphertext (tests only).
    #[cfg(feature = "test-tap")]
    #[serde(skip)]
    PeekActivity {
        plugin: String,
        reply: mpsc::Sender<Vec<String>>,
    },
}

/// Where a call answers a plugin's request (taken once).
#[derive(Debug, Clone)]
pub struct PluginReply(pub(super) std::sync::Arc<Mutex<Option<PluginAnswer>>>);

type PluginAnswer = oneshot::Sender<Result<PluginCallAnswer, PluginCallError>>;

impl PluginReply {
    pub(super) fn send(&self, answer: Result<PluginCallAnswer, PluginCallError>) {
        if let Some(reply) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = reply.send(answer);
        }
    }
}

/// What a participant asks of a shared activity; payloads are sealed base64,
/// checked for size by the connection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ActivityRequest {
    Join,
    Leave,
    Send {
        to: Option<Vec<ParticipantId>>,
        payload: String,
    },
    Update {
        payload: String,
    },
    Snapshot {
        newcomer: Option<ParticipantId>,
        seq: u64,
        payload: String,
    },
}

/// What a participant says it sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MediaState {
    pub audio_muted: bool,
    pub video_muted: bool,
    pub sharing_screen: bool,
}
