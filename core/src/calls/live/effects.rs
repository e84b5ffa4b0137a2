//! The call task's inputs and effects. A step takes one [`Input`] and only decides:
//! it changes the call's state and appends [`Effect`]s, what the world should see.
//! The loop (`task.rs`) then carries the effects out, in order. So a step can be
//! driven and checked without a runtime, a clock that moves by itself, or sockets.

use tokio::sync::mpsc;

use crate::calls::{Identity, Origin};
use crate::plugins::{self, PluginCallAction, PluginCallAnswer, PluginCallError};
use crate::privacy::{self, CallEventKind};
use crate::protocol::{ErrorCode, ServerMessage, error};
use crate::sfu;
use crate::store::{LinkChange, call_seat};

use super::command::{Action, CallRequest, ClientId, PluginReply};
use super::task::{CallTask, InboxMessage, PLUGIN_INBOX};

type Now = chrono::DateTime<chrono::Utc>;

/// What a call's task takes in.
pub(super) enum Input {
    /// A connection's request.
    Client(CallRequest),
    /// A plugin's request (the `calls` capability), answered through `reply`.
    Plugin {
        action: PluginCallAction,
        reply: PluginReply,
    },
    /// Time passed: the call applies its time-based rules at `now`.
    Tick(Now),
    /// The link changed (revoked, deleted, rotated, updated).
    Link(LinkChange),
    /// Time to re-read the link, for changes another process made.
    Recheck,
}

impl From<CallRequest> for Input {
    fn from(request: CallRequest) -> Self {
        match request.action {
            Action::Plugin { action, reply } => Input::Plugin { action, reply },
            _ => Input::Client(request),
        }
    }
}

/// What a step asks of the world.
#[derive(Debug)]
pub(super) enum Effect {
    /// A message for one connection.
    Send {
        client: ClientId,
        message: ServerMessage,
    },
    /// A lobby snapshot for one connection, already noted as sent; if the
    /// connection's queue does not take it, it is sent again with the next change.
    Lobby {
        client: ClientId,
        message: ServerMessage,
    },
    /// A command for this node's SFU; a refusal is told to `client`, if any.
    Media {
        client: Option<ClientId>,
        command: sfu::MediaCommand,
    },
    /// A line of call metadata.
    Record {
        kind: CallEventKind,
        subject: Option<String>,
        at: Now,
    },
    /// An event for the plugins that listen.
    Emit(plugins::Event),
    /// A guest's request for the plugins that screen them; the verdict comes back
    /// as [`Action::Screened`] from `client`.
    Screen {
        client: ClientId,
        request: plugins::LobbyInfo,
        identity: Identity,
        origin: Origin,
        name: String,
    },
    /// A participant's message for a plugin, in that plugin's queue.
    ToPlugin {
        plugin: String,
        client: ClientId,
        sender: u32,
        payload: Vec<u8>,
    },
    /// The answer to a plugin's request.
    Answer {
        reply: PluginReply,
        answer: Result<PluginCallAnswer, PluginCallError>,
    },
    /// Re-read the link off the task.
    RecheckLink,
    /// Keep a participant's place for another node (a cluster).
    KeepSeat(call_seat::Model),
    /// A participant left for good: forget their kept place.
    ForgetSeat(String),
    /// Look for a place kept by a dead node for `resume_token`; the answer comes
    /// back as [`Action::Restored`] from `client`.
    FindSeat {
        client: ClientId,
        resume_token: String,
    },
}

impl CallTask {
    /// Takes one input: decides, then publishes what changed on the call. The
    /// effects wait in [`CallTask::effects`] for [`CallTask::execute`].
    pub(super) fn step(&mut self, input: Input) {
        match input {
            Input::Client(request) => self.handle(request),
            Input::Plugin { action, reply } => {
                let answer = self.plugin_action(action, self.deps.clock.now());
                self.effects.push(Effect::Answer { reply, answer });
            }
            Input::Tick(now) => {
                self.call.tick(now);
                self.activities_tick(now);
            }
            Input::Link(change) => self.link_changed(change),
            Input::Recheck => self.effects.push(Effect::RecheckLink),
        }
        self.publish();
    }

    /// Carries out the effects of the steps so far, in order.
    pub(super) fn execute(&mut self) {
        let effects = std::mem::take(&mut self.effects);
        for effect in effects {
            self.carry_out(effect);
        }
    }

    fn send(&self, client: ClientId, message: ServerMessage) -> bool {
        // A full queue means a client that stopped reading; it is dropped when its
        // connection closes.
        self.clients
            .get(&client)
            .is_some_and(|c| c.out.try_send(message).is_ok())
    }

    fn carry_out(&mut self, effect: Effect) {
        match effect {
            Effect::Send { client, message } => {
                self.send(client, message);
            }
            Effect::Lobby { client, message } => {
                if !self.send(client, message)
                    && let Some(c) = self.clients.get_mut(&client)
                {
                    c.lobby_sent = None;
                }
            }
            Effect::Media { client, command } => {
                let refused = match self.deps.media.as_ref() {
                    None => Some("media is not running on this server".to_string()),
                    Some(media) => media.send(command).err().map(|busy| busy.to_string()),
                };
                if let (Some(client), Some(why)) = (client, refused) {
                    self.send(client, error(ErrorCode::MediaUnavailable, why));
                }
            }
            Effect::Record { kind, subject, at } => {
                let store = self.deps.store.clone();
                let link_id = self.link_id.clone();
                tokio::spawn(async move {
                    if let Err(err) =
                        privacy::record(&store, &link_id, kind, subject.as_deref(), at).await
                    {
                        tracing::warn!(error = %err, "could not write call metadata");
                    }
                });
            }
            Effect::Emit(event) => self.deps.host.emit(event),
            Effect::Screen {
                client,
                request,
                identity,
                origin,
                name,
            } => {
                let Some(out) = self.clients.get(&client).map(|c| c.out.clone()) else {
                    return;
                };
                let host = self.deps.host.clone();
                let queue = self.own_queue.clone();
                tokio::spawn(async move {
                    let verdict = host.lobby_decision(request).await;
                    if let Some(queue) = queue.upgrade() {
                        let _ = queue
                            .send(CallRequest {
                                client,
                                out,
                                action: Action::Screened {
                                    identity,
                                    origin,
                                    name,
                                    verdict,
                                },
                            })
                            .await;
                    }
                });
            }
            Effect::ToPlugin {
                plugin,
                client,
                sender,
                payload,
            } => {
                let Some(out) = self.clients.get(&client).map(|c| c.out.clone()) else {
                    return;
                };
                let message = InboxMessage {
                    sender,
                    payload,
                    out,
                };
                if self.plugin_inbox(&plugin).try_send(message).is_err() {
                    self.send(
                        client,
                        error(
                            ErrorCode::PluginUnavailable,
                            format!("{plugin} is not keeping up; the message was dropped"),
                        ),
                    );
                }
            }
            Effect::Answer { reply, answer } => reply.send(answer),
            Effect::RecheckLink => self.recheck_link(),
            Effect::KeepSeat(seat) => self.deps.host.keep_seat(seat),
            Effect::ForgetSeat(token_hash) => self.deps.host.forget_seat(self.link_pk, token_hash),
            Effect::FindSeat {
                client,
                resume_token,
            } => {
                let Some(out) = self.clients.get(&client).map(|c| c.out.clone()) else {
                    return;
                };
                let lookup = self
                    .deps
                    .host
                    .kept_seat(self.link_pk, crate::secret::sha256_hex(&resume_token));
                let queue = self.own_queue.clone();
                tokio::spawn(async move {
                    let seat = lookup.await;
                    if let Some(queue) = queue.upgrade() {
                        let _ = queue
                            .send(CallRequest {
                                client,
                                out,
                                action: Action::Restored {
                                    resume_token,
                                    seat: seat.map(Box::new),
                                },
                            })
                            .await;
                    }
                });
            }
        }
    }

    /// The queue of `plugin`'s call messages, started on first use.
    fn plugin_inbox(&mut self, plugin: &str) -> mpsc::Sender<InboxMessage> {
        if let Some(inbox) = self.plugin_inboxes.get(plugin).filter(|q| !q.is_closed()) {
            return inbox.clone();
        }
        let (inbox, mut messages) = mpsc::channel::<InboxMessage>(PLUGIN_INBOX);
        let host = self.deps.host.clone();
        let name = plugin.to_string();
        let call = self.call_info();
        tokio::spawn(async move {
            while let Some(m) = messages.recv().await {
                if let Err(e) = host
                    .call_message(name.clone(), call.clone(), m.sender, m.payload)
                    .await
                {
                    let _ = m
                        .out
                        .try_send(error(ErrorCode::PluginUnavailable, e.to_string()));
                }
            }
        });
        self.plugin_inboxes
            .insert(plugin.to_string(), inbox.clone());
        inbox
    }

    /// Re-reads the link off the call's task; a difference is announced to every
    /// listener (this call and the link's connections) as a [`LinkChange`].
    fn recheck_link(&self) {
        let store = self.deps.store.clone();
        let (pk, known) = (self.link_pk, self.link_id.clone());
        tokio::spawn(async move {
            let change = match store.link_by_pk(pk).await {
                Ok(Some(link)) if link.revoked_at.is_none() && link.public_id == known => return,
                Ok(Some(link)) => LinkChange::of(&link),
                Ok(None) => LinkChange::Deleted { pk },
                Err(err) => {
                    tracing::warn!(error = %err, "could not re-read a live call's link");
                    return;
                }
            };
            store.announce_link_change(change);
        });
    }
}
