//! One WebSocket connection: reads client messages, checks them, forwards them to
//! the call, and writes the call's answers back.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{broadcast, mpsc};

use crate::AppState;
use crate::accounts::{self, Account, MAX_NAME_CHARS, SignIn};
use crate::calls::{
    Action, ActivityRequest, CallRequest, Decision, Identity, MediaState, ParticipantId, RequestId,
    next_client_id,
};
use crate::limits::ConnectionSlot;
use crate::protocol::{
    ClientMessage, ErrorCode, MAX_E2EE_PAYLOAD, MAX_MESSAGE_BYTES, ServerMessage, decode, encode,
    error,
};
use crate::sfu::MAX_SDP_BYTES;
use crate::sfu::forward::MAX_LAYERS;
use crate::store::link;
use crate::validate;

/// Rate-limited messages tolerated before the connection is closed.
const MAX_STRIKES: u32 = 100;
/// Largest frame the transport accepts: above [`MAX_MESSAGE_BYTES`], so that an
/// oversized message gets a clear error instead of a dropped connection.
const TRANSPORT_MAX_BYTES: usize = 1024 * 1024;

/// What a connection reads into at a time (it grows for a larger message): most
/// signaling messages are well under 1 KiB, and a connection that only waits in
/// the lobby should cost little (the transport's default is 128 KiB each).
const READ_BUFFER_BYTES: usize = 8 * 1024;
/// Messages waiting for a slow client before the call stops queueing more.
const OUTBOX: usize = 64;
/// How often a signed-in connection checks that its sign-in still holds (a sign-out
/// or token revocation through this server reaches it at once).
const SIGN_IN_RECHECK: Duration = Duration::from_secs(15);

/// A signed-in member on a connection.
struct Member {
    account: Account,
    sign_in: Option<SignIn>,
    /// False once the sign-in ended: admit, deny, remove and lock are refused.
    powers: bool,
}

/// Who is on the other end of a connection.
pub struct Client {
    member: Option<Member>,
    address: Option<IpAddr>,
    device: Option<String>,
    /// The connection's place among its address's connections.
    _slot: Option<ConnectionSlot>,
}

impl Client {
    /// The other end of a connection: a signed-in `account` (with how it signed in,
    /// rechecked while the connection lasts) or a guest; from `address`, with the
    /// guest device cookie `device`, holding its address's connection `slot`.
    pub fn new(
        account: Option<(Account, Option<SignIn>)>,
        address: Option<IpAddr>,
        device: Option<String>,
        slot: Option<ConnectionSlot>,
    ) -> Self {
        Client {
            member: account.map(|(account, sign_in)| Member {
                account,
                sign_in,
                powers: true,
            }),
            address,
            device,
            _slot: slot,
        }
    }
}

/// Upgrades the request to the signaling connection of `link` for `client`, with
/// the transport's limits.
pub fn upgrade(
    ws: WebSocketUpgrade,
    state: AppState,
    link: link::Model,
    client: Client,
) -> Response {
    ws.max_message_size(TRANSPORT_MAX_BYTES)
        .max_frame_size(TRANSPORT_MAX_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| run_session(socket, state, link, client))
}

/// Serves one connection until it closes (or its link is revoked or deleted).
pub async fn run_session(socket: WebSocket, state: AppState, link: link::Model, mut me: Client) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut outbox) = mpsc::channel::<ServerMessage>(OUTBOX);
    let (ping, mut pings) = mpsc::unbounded_channel::<()>();
    let writer = tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                message = outbox.recv() => match message {
                    Some(ServerMessage::Hangup) | None => break,
                    Some(message) => Message::Text(encode(&message).into()),
                },
                Some(()) = pings.recv() => Message::Ping(Vec::new().into()),
            };
            if sink.send(frame).await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let client = next_client_id();
    let mut changes = state.store.link_changes();
    let _ = out
        .send(ServerMessage::Welcome {
            title: link.title.clone(),
            signed_in_as: me.member.as_ref().map(|m| m.account.display_name.clone()),
        })
        .await;
    let mut bucket = TokenBucket::new(
        f64::from(state.config.server.signaling_messages_per_sec),
        f64::from(state.config.server.signaling_burst),
        Instant::now(),
    );
    let mut strikes = 0;
    let mut recheck = tokio::time::interval_at(
        tokio::time::Instant::now() + SIGN_IN_RECHECK,
        SIGN_IN_RECHECK,
    );
    // Silence for `websocket_idle_secs` closes the connection; a ping every third of
    // it gets an answer from any live browser (the transport answers pings itself).
    let idle = Duration::from_secs(u64::from(state.config.server.websocket_idle_secs));
    let mut pinger = tokio::time::interval_at(tokio::time::Instant::now() + idle / 3, idle / 3);
    let mut heard = tokio::time::Instant::now();
    let mut ended = state.store.sign_ins_ended();
    loop {
        // Notices first: a revoke or sign-out that happened before a message was
        // read is applied before that message.
        let frame = tokio::select! {
            biased;
            notice = ended.recv(), if me.member.as_ref().is_some_and(|m| m.powers) => {
                let mine = match notice {
                    Ok(notice) => me
                        .member
                        .as_ref()
                        .and_then(|m| m.sign_in.as_ref())
                        .is_some_and(|s| s.is(&notice)),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        check_sign_in(&state, &link, client, &out, &mut me, false).await;
                        false
                    }
                    Err(broadcast::error::RecvError::Closed) => false,
                };
                if mine {
                    check_sign_in(&state, &link, client, &out, &mut me, true).await;
                }
                continue;
            }
            change = changes.recv() => {
                let gone = match change {
                    Ok(change) => change.pk() == link.pk && change.ends_calls(),
                    // Fell behind: read the link again.
                    Err(broadcast::error::RecvError::Lagged(_)) => !link_usable(&state, link.pk).await,
                    Err(broadcast::error::RecvError::Closed) => false,
                };
                if gone {
                    // Through the live call, if there is one, so that the call's end
                    // reaches the page before the reason this connection closes.
                    let through_call = state.calls.send_if_live(
                        link.pk,
                        CallRequest {
                            client,
                            out: out.clone(),
                            action: Action::LinkGone,
                        },
                    );
                    if !through_call {
                        let _ = out.try_send(error(ErrorCode::LinkRevoked, "this link was revoked"));
                    }
                    break;
                }
                continue;
            }
            frame = stream.next() => match frame {
                Some(frame) => {
                    heard = tokio::time::Instant::now();
                    frame
                }
                None => break,
            },
            _ = pinger.tick() => {
                if heard.elapsed() >= idle {
                    tracing::debug!("closing a signaling connection that went silent");
                    break;
                }
                if ping.send(()).is_err() {
                    break;
                }
                continue;
            }
            _ = recheck.tick(), if me.member.as_ref().is_some_and(|m| m.powers) => {
                check_sign_in(&state, &link, client, &out, &mut me, false).await;
                continue;
            }
        };
        let text = match frame {
            Ok(Message::Text(text)) => text,
            Ok(Message::Binary(_)) => {
                let _ = out
                    .send(error(ErrorCode::BadMessage, "send JSON text messages"))
                    .await;
                continue;
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue, // ping and pong frames are answered by the transport
        };
        if !bucket.take(Instant::now()) {
            strikes += 1;
            let _ = out.try_send(error(
                ErrorCode::RateLimited,
                "too many messages; slow down",
            ));
            if strikes > MAX_STRIKES {
                break;
            }
            continue;
        }
        let member = me.member.as_ref().map(|m| &m.account);
        match decode(text.as_str())
            .and_then(|message| to_action(message, member, me.address, me.device.as_deref(), &link))
        {
            Ok(action) => {
                let member_join = matches!(
                    action,
                    Action::Join {
                        identity: Identity::Member { .. },
                        ..
                    }
                );
                if member_join {
                    check_sign_in(&state, &link, client, &out, &mut me, false).await;
                }
                if member_join && me.member.as_ref().is_some_and(|m| !m.powers) {
                    let _ = out
                        .send(error(
                            ErrorCode::NotAllowed,
                            "your sign-in ended: sign in again, then reload the page to join",
                        ))
                        .await;
                    continue;
                }
                let command = CallRequest {
                    client,
                    out: out.clone(),
                    action,
                };
                state.calls.send(&state, &link, command).await;
            }
            Err(reply) => {
                let _ = out.send(reply).await;
            }
        }
    }
    state
        .calls
        .send(
            &state,
            &link,
            CallRequest {
                client,
                out: out.clone(),
                action: Action::Disconnected,
            },
        )
        .await;
    drop(out);
    let _ = writer.await;
}

/// Whether the link can still be used: not revoked or deleted.
async fn link_usable(state: &AppState, pk: i64) -> bool {
    match state.store.link_by_pk(pk).await {
        Ok(Some(link)) => link.revoked_at.is_none(),
        Ok(None) => false,
        // The database did not answer: the call's own re-check will tell.
        Err(_) => true,
    }
}

/// Checks that a member's sign-in still holds (`known_ended`: it is already known
/// to have ended); when it ended (signed out, expired, token revoked), the
/// connection keeps its place on the call but loses its member powers for good.
async fn check_sign_in(
    state: &AppState,
    link: &link::Model,
    client: crate::calls::ClientId,
    out: &mpsc::Sender<ServerMessage>,
    me: &mut Client,
    known_ended: bool,
) {
    let Some(member) = me.member.as_mut().filter(|m| m.powers) else {
        return;
    };
    let holds = match &member.sign_in {
        _ if known_ended => false,
        Some(sign_in) => {
            match accounts::still_signed_in(
                &state.store,
                sign_in,
                member.account.id,
                state.clock.now(),
            )
            .await
            {
                Ok(holds) => holds,
                // The database did not answer: keep the powers until it does.
                Err(err) => {
                    tracing::warn!(error = %err, "could not check a connection's sign-in");
                    true
                }
            }
        }
        None => false,
    };
    if holds {
        return;
    }
    member.powers = false;
    tracing::info!("a connection's sign-in ended: it keeps its place without member powers");
    state
        .calls
        .send(
            state,
            link,
            CallRequest {
                client,
                out: out.clone(),
                action: Action::SignedOut,
            },
        )
        .await;
}

/// Checks a message's content and turns it into what the call should do, or into the
/// reply to send instead (an error, or `pong`).
fn to_action(
    message: ClientMessage,
    member: Option<&Account>,
    address: Option<IpAddr>,
    device: Option<&str>,
    link: &link::Model,
) -> Result<Action, ServerMessage> {
    Ok(match message {
        ClientMessage::Join { name, guest_key } => {
            let name = match (name, member) {
                (Some(name), _) => {
                    validate::text("name", &name, 1, MAX_NAME_CHARS).map_err(|_| {
                        error(ErrorCode::InvalidName, "enter a name of 1 to 64 characters")
                    })?
                }
                (None, Some(member)) => member.display_name.clone(),
                (None, None) => {
                    return Err(error(
                        ErrorCode::InvalidName,
                        "enter a name of 1 to 64 characters",
                    ));
                }
            };
            let identity = match member {
                Some(member) => Identity::Member { user_id: member.id },
                None => {
                    let key = guest_key.unwrap_or_default();
                    let valid = (16..=64).contains(&key.len())
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if !valid {
                        return Err(error(
                            ErrorCode::InvalidGuestKey,
                            "send a guest_key of 16 to 64 letters, digits, _ or -",
                        ));
                    }
                    Identity::Guest { guest_key: key }
                }
            };
            Action::Join {
                identity,
                name,
                address,
                device: device.map(String::from),
                opened_as: link.public_id.clone(),
            }
        }
        ClientMessage::Resume { resume_token } => Action::Resume { resume_token },
        ClientMessage::Admit { request } => Action::Decide {
            request: RequestId(request),
            decision: Decision::Admit,
        },
        ClientMessage::AdmitAll => Action::AdmitAll,
        ClientMessage::Deny { request } => Action::Decide {
            request: RequestId(request),
            decision: Decision::Deny,
        },
        ClientMessage::Remove { participant } => Action::Remove {
            participant: ParticipantId(participant),
        },
        ClientMessage::Withdraw => Action::Withdraw,
        ClientMessage::LockLobby { locked } => Action::LockLobby { locked },
        ClientMessage::SuspendGuests { suspended } => Action::SuspendGuests { suspended },
        ClientMessage::Leave => Action::Leave,
        ClientMessage::Publish { sdp } => Action::Publish {
            sdp: checked_sdp(sdp)?,
        },
        ClientMessage::Subscribe => Action::Subscribe,
        ClientMessage::SubscribeAnswer { sdp } => Action::SubscribeAnswer {
            sdp: checked_sdp(sdp)?,
        },
        ClientMessage::SetQuality { participant, layer } => {
            if usize::from(layer) >= MAX_LAYERS {
                return Err(error(
                    ErrorCode::BadMessage,
                    "layer is 0 (smallest), 1 or 2 (full)",
                ));
            }
            Action::SetQuality {
                participant: ParticipantId(participant),
                layer,
            }
        }
        ClientMessage::Mute {
            audio,
            video,
            screen,
        } => Action::Mute(MediaState {
            audio_muted: audio,
            video_muted: video,
            sharing_screen: screen,
        }),
        ClientMessage::Ping => return Err(ServerMessage::Pong),
        ClientMessage::Plugin { plugin, payload } => {
            use base64::Engine as _;
            if !crate::policy::valid_plugin_name(&plugin) {
                return Err(error(ErrorCode::BadMessage, "plugin is not a plugin name"));
            }
            let payload = base64::engine::general_purpose::STANDARD
                .decode(payload.as_bytes())
                .map_err(|_| error(ErrorCode::BadMessage, "payload is not standard base64"))?;
            if payload.len() > crate::plugins::MAX_CALL_MESSAGE_BYTES {
                return Err(error(
                    ErrorCode::MessageTooLarge,
                    "plugin payloads are at most 32 KiB",
                ));
            }
            Action::PluginMessage { plugin, payload }
        }
        ClientMessage::E2ee { to, payload } => {
            if payload.len() > MAX_E2EE_PAYLOAD {
                return Err(error(
                    ErrorCode::MessageTooLarge,
                    format!("e2ee payloads are at most {MAX_E2EE_PAYLOAD} characters"),
                ));
            }
            if !looks_like_base64(&payload) {
                return Err(not_base64());
            }
            Action::Keys {
                to: to.map(ParticipantId),
                payload,
            }
        }
        ClientMessage::ActivityJoin { plugin } => activity(plugin, ActivityRequest::Join)?,
        ClientMessage::ActivityLeave { plugin } => activity(plugin, ActivityRequest::Leave)?,
        ClientMessage::ActivitySend {
            plugin,
            to,
            payload,
        } => {
            if to.as_ref().is_some_and(|to| {
                to.is_empty() || to.len() > crate::calls::activity::MAX_ACTIVITY_RECIPIENTS
            }) {
                return Err(error(
                    ErrorCode::BadMessage,
                    "to names 1 to 32 participants, or is left out for everyone",
                ));
            }
            let request = ActivityRequest::Send {
                to: to.map(|to| to.into_iter().map(ParticipantId).collect()),
                payload: activity_payload(payload)?,
            };
            activity(plugin, request)?
        }
        ClientMessage::ActivityUpdate { plugin, payload } => {
            let payload = activity_payload(payload)?;
            activity(plugin, ActivityRequest::Update { payload })?
        }
        ClientMessage::ActivitySnapshot {
            plugin,
            newcomer,
            seq,
            payload,
        } => {
            let request = ActivityRequest::Snapshot {
                newcomer: newcomer.map(ParticipantId),
                seq,
                payload: activity_payload(payload)?,
            };
            activity(plugin, request)?
        }
    })
}

/// An `activity_*` message for the call, once its plugin name is one.
fn activity(plugin: String, request: ActivityRequest) -> Result<Action, ServerMessage> {
    if !crate::policy::valid_plugin_name(&plugin) {
        return Err(error(ErrorCode::BadMessage, "plugin is not a plugin name"));
    }
    Ok(Action::Activity { plugin, request })
}

/// A sealed activity payload: standard base64 of at most 32 KiB.
fn activity_payload(payload: String) -> Result<String, ServerMessage> {
    use crate::calls::activity::MAX_ACTIVITY_PAYLOAD;
    if payload.len() > MAX_ACTIVITY_PAYLOAD {
        return Err(error(
            ErrorCode::MessageTooLarge,
            format!("activity payloads are at most {MAX_ACTIVITY_PAYLOAD} characters of base64"),
        ));
    }
    if !looks_like_base64(&payload) {
        return Err(not_base64());
    }
    Ok(payload)
}

/// Whether a payload the server only relays is made of standard base64's
/// characters (it is not decoded: the pages do that).
fn looks_like_base64(payload: &str) -> bool {
    let base64 = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=');
    !payload.is_empty() && payload.bytes().all(base64)
}

fn not_base64() -> ServerMessage {
    error(ErrorCode::BadMessage, "payload is not standard base64")
}

/// Rejects SDP that is too large or plainly not SDP before it reaches the SFU.
fn checked_sdp(sdp: String) -> Result<String, ServerMessage> {
    if sdp.len() > MAX_SDP_BYTES {
        return Err(error(
            ErrorCode::BadSdp,
            format!("SDP is limited to {MAX_SDP_BYTES} bytes"),
        ));
    }
    if !sdp.starts_with("v=0") {
        return Err(error(
            ErrorCode::BadSdp,
            "this is not SDP (it must start with v=0)",
        ));
    }
    Ok(sdp)
}

/// Limits how fast one connection may send.
/// Messages a connection may send: `rate` per second on average, `burst` at once
/// (`server.signaling_messages_per_sec`, `server.signaling_burst`).
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

const _: () = assert!(MAX_MESSAGE_BYTES < TRANSPORT_MAX_BYTES);
