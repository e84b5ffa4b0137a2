//! One WebSocket connection: reads client messages, checks them, forwards them to
//! the call, and writes the call's answers back.

use std::net::SocketAddr;
use std::time::Instant;

use axum::Extension;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::{
    ClientMessage, ErrorCode, MAX_E2EE_PAYLOAD, MAX_MESSAGE_BYTES, ServerMessage, decode, encode,
    error,
};
use crate::AppState;
use crate::accounts::{Account, MAX_NAME_CHARS};
use crate::calls::{Action, Command, Decision, Identity, MediaState, next_client_id};
use crate::http::ApiError;
use crate::http::extract::AuthUser;
use crate::links::{self, PublicLink};
use crate::sfu::MAX_SDP_BYTES;
use crate::sfu::forward::MAX_LAYERS;
use crate::store::link;
use crate::validate;

/// Messages a client may send per second on average, and in a burst.
const RATE_PER_SEC: f64 = 20.0;
const BURST: f64 = 40.0;
/// Rate-limited messages tolerated before the connection is closed.
const MAX_STRIKES: u32 = 100;
/// Largest frame the transport accepts: above [`MAX_MESSAGE_BYTES`], so that an
/// oversized message gets a clear error instead of a dropped connection.
const TRANSPORT_MAX_BYTES: usize = 1024 * 1024;
/// Messages waiting for a slow client before the call stops queueing more.
const OUTBOX: usize = 64;

/// `GET /j/{id}/ws`: opens the signaling connection for a link.
pub async fn connect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    user: Result<AuthUser, ApiError>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // A web session, or (for programs: bots, load generators) a bearer token; a
    // token that does not authenticate is refused rather than treated as a guest.
    let user = match user {
        Ok(AuthUser(account)) => Some(account),
        Err(ApiError::Unauthorized) if !headers.contains_key(header::AUTHORIZATION) => None,
        Err(err) => return err.into_response(),
    };
    // Cross-site WebSocket hijacking: a browser always sends Origin; it must be ours.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok())
        && !same_origin(origin, state.public_url())
    {
        return ApiError::Forbidden("this connection must come from the Confab page")
            .into_response();
    }
    let link = match links::resolve(&state.store, &id).await {
        Ok(PublicLink::Active(link)) => link,
        Ok(PublicLink::Revoked(_)) => {
            return ApiError::Gone {
                code: "link_revoked",
                message: "this link was revoked",
            }
            .into_response();
        }
        Ok(PublicLink::NotFound) => return ApiError::NotFound("no such link").into_response(),
        Err(err) => return ApiError::from(err).into_response(),
    };
    if user.is_none() {
        match state.policy.get(&state.store).await {
            Ok(policy) if !policy.guest_access => {
                return ApiError::FeatureDisabled {
                    code: "guest_access_disabled",
                    message: "guest access is turned off; sign in to join",
                }
                .into_response();
            }
            Ok(_) => {}
            Err(err) => return ApiError::from(err).into_response(),
        }
    }
    // Checked after the link, so that a revoked link says so whatever the request.
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    let member = user;
    // The address as the server saw it (a reverse proxy's, behind one): only for
    // plugins that screen lobby requests, never stored.
    let address = peer.map(|Extension(ConnectInfo(addr))| addr.ip().to_string());
    ws.max_message_size(TRANSPORT_MAX_BYTES)
        .max_frame_size(TRANSPORT_MAX_BYTES)
        .on_upgrade(move |socket| run_session(socket, state, link, member, address))
}

fn same_origin(origin: &str, public_url: &str) -> bool {
    match (url::Url::parse(origin), url::Url::parse(public_url)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}

/// Serves one connection until it closes.
pub async fn run_session(
    socket: WebSocket,
    state: AppState,
    link: link::Model,
    member: Option<Account>,
    address: Option<String>,
) {
    let (mut sink, mut stream) = socket.split();
    let (out, mut outbox) = mpsc::channel::<ServerMessage>(OUTBOX);
    let writer = tokio::spawn(async move {
        while let Some(message) = outbox.recv().await {
            if sink
                .send(Message::Text(encode(&message).into()))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let client = next_client_id();
    let _ = out
        .send(ServerMessage::Welcome {
            title: link.title.clone(),
            signed_in_as: member.as_ref().map(|m| m.display_name.clone()),
        })
        .await;
    let mut bucket = TokenBucket::new(Instant::now());
    let mut strikes = 0;
    while let Some(frame) = stream.next().await {
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
        match decode(text.as_str())
            .and_then(|message| to_action(message, member.as_ref(), address.as_deref()))
        {
            Ok(action) => {
                let command = Command {
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
            Command {
                client,
                out: out.clone(),
                action: Action::Disconnected,
            },
        )
        .await;
    drop(out);
    let _ = writer.await;
}

/// Checks a message's content and turns it into what the call should do, or into the
/// reply to send instead (an error, or `pong`).
fn to_action(
    message: ClientMessage,
    member: Option<&Account>,
    address: Option<&str>,
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
                address: address.map(String::from),
            }
        }
        ClientMessage::Resume { resume_token } => Action::Resume { resume_token },
        ClientMessage::Admit { request } => Action::Decide {
            request,
            decision: Decision::Admit,
        },
        ClientMessage::Deny { request } => Action::Decide {
            request,
            decision: Decision::Deny,
        },
        ClientMessage::Remove { participant } => Action::Remove { participant },
        ClientMessage::Withdraw => Action::Withdraw,
        ClientMessage::Leave => Action::Leave,
        ClientMessage::Publish { sdp } => Action::Publish {
            sdp: checked_sdp(sdp)?,
        },
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
            Action::SetQuality { participant, layer }
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
            let base64 = |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'/' | b'=');
            if payload.is_empty() || !payload.bytes().all(base64) {
                return Err(error(
                    ErrorCode::BadMessage,
                    "payload is not standard base64",
                ));
            }
            Action::Keys { to, payload }
        }
    })
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
struct TokenBucket {
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(now: Instant) -> Self {
        Self {
            tokens: BURST,
            last: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * RATE_PER_SEC).min(BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

const _: () = assert!(MAX_MESSAGE_BYTES < TRANSPORT_MAX_BYTES);
