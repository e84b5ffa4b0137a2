//! What the call's task does with each [`Action`] a connection asks for.

use std::net::IpAddr;

use crate::calls::{
    DecideError, Decision, Identity, Origin, ParticipantId, RemoveError, RequestId, Seat,
    network_of,
};
use crate::plugins;
use crate::privacy::CallEventKind;
use crate::protocol::{ErrorCode, LobbyWarning, ServerMessage, error};
use crate::sfu;
use crate::store::LinkChange;

use super::command::{Action, CallRequest, ClientId, MediaState};
use super::effects::Effect;
use super::task::{CallTask, Client, Role};

type Now = chrono::DateTime<chrono::Utc>;

impl CallTask {
    /// Carries out one command: a plugin's request, or a connection's action
    /// checked against what that connection is on the call (its [`Role`]).
    pub(super) fn handle(
        &mut self,
        CallRequest {
            client,
            out,
            action,
        }: CallRequest,
    ) {
        let now = self.deps.clock.now();
        let action = match action {
            Action::Plugin { action, reply } => {
                let answer = self.plugin_action(action, now);
                self.effects.push(Effect::Answer { reply, answer });
                return;
            }
            #[cfg(feature = "test-tap")]
            Action::ForgeKeys { from, payload } => {
                self.tell_everyone_on_call(&ServerMessage::E2ee { from, payload });
                return;
            }
            #[cfg(feature = "test-tap")]
            Action::PeekActivity { plugin, reply } => {
                let _ = reply.try_send(self.activities.held_payloads(&plugin));
                return;
            }
            other => other,
        };
        if !matches!(action, Action::Disconnected) {
            self.clients
                .entry(client)
                .or_insert_with(|| Client::new(out));
        }
        let role = self.role(client);
        match action {
            Action::Join {
                identity,
                name,
                address,
                device,
                opened_as,
            } => self.ask_to_join(
                client, role, identity, name, address, device, opened_as, now,
            ),
            Action::Screened {
                identity,
                origin,
                name,
                verdict,
            } => self.screened(client, role, identity, origin, name, verdict, now),
            Action::Resume { resume_token } => self.resume(client, role, resume_token, now),
            Action::Restored { resume_token, seat } => {
                self.restored(client, role, resume_token, seat, now);
            }
            Action::Decide { request, decision } => {
                self.decide(client, role, request, decision, now);
            }
            Action::AdmitAll => self.admit_all(client, role, now),
            Action::Remove { participant } => self.remove(client, role, participant, now),
            Action::LockLobby { locked } => self.lock_lobby(client, role, locked),
            Action::SuspendGuests { suspended } => self.suspend_guests(client, role, suspended),
            Action::SignedOut => self.signed_out(client, now),
            Action::Withdraw => match role {
                Role::Waiting(request) => self.call.withdraw(request),
                Role::Screening => self.set_role(client, Role::Idle),
                _ => self.tell(
                    client,
                    error(ErrorCode::NotJoined, "you are not waiting in the lobby"),
                ),
            },
            Action::Leave => match role {
                Role::On(me) => {
                    self.set_role(client, Role::Idle);
                    self.call.leave(me);
                }
                Role::Waiting(request) => self.call.withdraw(request),
                Role::Screening => self.set_role(client, Role::Idle),
                Role::Idle => self.tell(
                    client,
                    error(ErrorCode::NotJoined, "you are not on this call"),
                ),
            },
            Action::Publish { .. }
            | Action::Subscribe
            | Action::SubscribeAnswer { .. }
            | Action::SetQuality { .. }
            | Action::Mute(_) => self.media_action(client, role, action),
            Action::PluginMessage { plugin, payload } => {
                self.plugin_message(client, role, plugin, payload)
            }
            Action::Keys { to, payload } => self.relay_keys(client, role, to, payload),
            Action::Activity { plugin, request } => {
                self.activity(client, role, plugin, request, now);
            }
            Action::Plugin { .. } => {}
            Action::Evacuate => {
                let everyone: Vec<ClientId> = self.clients.keys().copied().collect();
                for id in everyone {
                    self.tell(id, ServerMessage::Hangup);
                }
            }
            #[cfg(feature = "test-tap")]
            Action::ForgeKeys { .. } | Action::PeekActivity { .. } => {}
            Action::LinkGone => {
                // What the call's own copy of the notice would do, if it has not yet;
                // then the call's end reaches every page before this connection's
                // reason for closing.
                self.link_changed(LinkChange::Deleted { pk: self.link_pk });
                self.publish();
                self.tell(
                    client,
                    error(ErrorCode::LinkRevoked, "this link was revoked"),
                );
            }
            Action::Disconnected => {
                self.clients.remove(&client);
                match role {
                    Role::On(me) => self.call.connection_dropped(me, now),
                    Role::Waiting(request) => self.call.withdraw(request),
                    Role::Idle | Role::Screening => {}
                }
            }
        }
    }

    /// The participant `client` speaks for, or (after telling it why) none.
    pub(super) fn on_call(&mut self, client: ClientId, role: Role) -> Option<ParticipantId> {
        match role {
            Role::On(me) => Some(me),
            _ => {
                self.tell(client, error(ErrorCode::NotJoined, "join the call first"));
                None
            }
        }
    }

    /// The participant `client` speaks for, if it still has member powers (else it
    /// is told why not).
    fn deciding(&mut self, client: ClientId, role: Role) -> Option<ParticipantId> {
        let me = self.on_call(client, role)?;
        if self.powerless(client) {
            self.tell_signed_out(client);
            return None;
        }
        Some(me)
    }

    /// `join`: members, people already waiting and calls without screening plugins
    /// go straight to [`CallTask::join`]; a guest's request is screened first.
    #[allow(clippy::too_many_arguments)]
    fn ask_to_join(
        &mut self,
        client: ClientId,
        role: Role,
        identity: Identity,
        name: String,
        address: Option<IpAddr>,
        device: Option<String>,
        opened_as: String,
        now: Now,
    ) {
        if role != Role::Idle {
            return self.tell(client, already_joined());
        }
        if let Some(c) = self.clients.get_mut(&client) {
            c.opened_as = Some(opened_as);
        }
        let origin = Origin {
            connection: Some(client),
            device,
            network: address.map(network_of),
        };
        let waiting = self.call.lobby().any(|r| r.identity == identity);
        if identity.is_authenticated() || waiting || !self.deps.host.screens_lobby_requests() {
            return self.join(client, identity, origin, name, Vec::new(), now);
        }
        if let Err(err) = self.call.may_ask(&identity, &origin) {
            return self.refuse_join(client, err);
        }
        self.set_role(client, Role::Screening);
        self.screen(client, identity, origin, name, address, now);
    }

    /// The plugins' verdict on a screened request.
    #[allow(clippy::too_many_arguments)]
    fn screened(
        &mut self,
        client: ClientId,
        role: Role,
        identity: Identity,
        origin: Origin,
        name: String,
        verdict: plugins::Verdict,
        now: Now,
    ) {
        if role != Role::Screening {
            return; // gone, or asked again in the meantime
        }
        self.set_role(client, Role::Idle);
        match verdict {
            plugins::Verdict::Allow => self.join(client, identity, origin, name, Vec::new(), now),
            plugins::Verdict::Flag(flags) => {
                let warnings = flags
                    .into_iter()
                    .map(|(plugin, message)| LobbyWarning { plugin, message })
                    .collect();
                self.join(client, identity, origin, name, warnings, now)
            }
            plugins::Verdict::Deny { plugin, reason } => {
                tracing::info!(%plugin, link = %self.link_id, "a plugin turned a join request away");
                self.record(CallEventKind::Denied, Some(name));
                self.tell(
                    client,
                    ServerMessage::Denied {
                        blocked: false,
                        reason: Some(reason),
                    },
                );
            }
        }
    }

    /// `resume`: takes a place back after a dropped connection.
    fn resume(&mut self, client: ClientId, role: Role, resume_token: String, now: Now) {
        if role != Role::Idle {
            return self.tell(client, already_joined());
        }
        match self.call.resume(&resume_token, now) {
            Ok(participant) => {
                // The old connection, if it is still around, no longer speaks for this participant.
                if let Some(old) = self.client_with(Role::On(participant)) {
                    self.set_role(old, Role::Idle);
                }
                self.call.rebind(participant, client);
                self.seat_client(
                    client,
                    Seat {
                        participant,
                        resume_token,
                    },
                );
            }
            // On a cluster the place may have been kept by a node that died.
            Err(_) if self.deps.host.keeps_seats() => self.effects.push(Effect::FindSeat {
                client,
                resume_token,
            }),
            Err(err) => self.tell(client, error(ErrorCode::ResumeExpired, err.to_string())),
        }
    }

    /// The answer to [`Effect::FindSeat`]: the place a dead node kept, if any.
    fn restored(
        &mut self,
        client: ClientId,
        role: Role,
        resume_token: String,
        seat: Option<Box<crate::store::call_seat::Model>>,
        now: Now,
    ) {
        if role != Role::Idle {
            return;
        }
        let identity = match seat.as_deref() {
            Some(crate::store::call_seat::Model {
                user_id: Some(user_id),
                ..
            }) => Identity::Member { user_id: *user_id },
            Some(crate::store::call_seat::Model {
                guest_key: Some(guest_key),
                ..
            }) => Identity::Guest {
                guest_key: guest_key.clone(),
            },
            _ => {
                return self.tell(
                    client,
                    error(
                        ErrorCode::ResumeExpired,
                        "this place on the call is no longer kept; join again",
                    ),
                );
            }
        };
        let Some(seat) = seat else { return };
        match self.call.restore(
            identity,
            &seat.name,
            seat.is_owner,
            seat.joined_at,
            resume_token,
            now,
        ) {
            Ok(placed) => {
                tracing::info!(link = %self.link_id, "seated again someone whose call's node died");
                self.participant_names
                    .insert(placed.participant, seat.name.clone());
                self.call.rebind(placed.participant, client);
                self.seat_client(client, placed);
            }
            Err(err) => self.tell(client, error(ErrorCode::CallFull, err.to_string())),
        }
    }

    /// `admit` or `deny`.
    fn decide(
        &mut self,
        client: ClientId,
        role: Role,
        request: RequestId,
        decision: Decision,
        now: Now,
    ) -> bool {
        let Some(me) = self.deciding(client, role) else {
            return false;
        };
        match self.call.decide(me, request, decision, now) {
            Ok(Some(seat)) => {
                if let Some(name) = self.request_names.get(&request).cloned() {
                    self.participant_names.insert(seat.participant, name);
                }
                if let Some(guest) = self.client_with(Role::Waiting(request)) {
                    self.seat_client(guest, seat);
                }
                true
            }
            Ok(None) => true,
            Err(err) => {
                let code = match err {
                    DecideError::NotAllowed => ErrorCode::NotAllowed,
                    DecideError::NoSuchRequest => ErrorCode::NoSuchRequest,
                    DecideError::Full => ErrorCode::CallFull,
                    DecideError::NotOnCall => ErrorCode::NotJoined,
                };
                self.tell(client, error(code, err.to_string()));
                false
            }
        }
    }

    /// `admit_all`: every request in the lobby, in the order they were made, as
    /// one `admit` each, until the call is full. Requests still being screened by
    /// plugins are not in the lobby yet and wait for their own decision.
    fn admit_all(&mut self, client: ClientId, role: Role, now: Now) {
        let Some(me) = self.deciding(client, role) else {
            return;
        };
        if !self
            .call
            .participant(me)
            .is_some_and(|p| p.identity.is_authenticated())
        {
            self.tell(
                client,
                error(
                    ErrorCode::NotAllowed,
                    "only signed-in participants let people in",
                ),
            );
            return;
        }
        let waiting: Vec<RequestId> = self.call.lobby().map(|r| r.id).collect();
        for (admitted, request) in waiting.iter().enumerate() {
            if admitted > 0 && self.call.is_full() {
                let left = waiting.len() - admitted;
                self.tell(
                    client,
                    error(
                        ErrorCode::CallFull,
                        format!("admitted {admitted}; the call is full, {left} still waiting"),
                    ),
                );
                return;
            }
            // The first refusal (not signed in, not on the call, full) is told
            // once, and ends the batch.
            if !self.decide(client, role, *request, Decision::Admit, now) {
                return;
            }
        }
    }

    /// `remove`: a guest, within the removal window.
    fn remove(&mut self, client: ClientId, role: Role, participant: ParticipantId, now: Now) {
        let Some(me) = self.deciding(client, role) else {
            return;
        };
        if let Err(err) = self.call.remove(me, participant, now) {
            let code = match err {
                RemoveError::NotAllowed => ErrorCode::NotAllowed,
                RemoveError::WindowPassed { .. } => ErrorCode::RemovalWindowPassed,
                RemoveError::NotAGuest => ErrorCode::NotAGuest,
                RemoveError::NoSuchParticipant => ErrorCode::NoSuchParticipant,
                RemoveError::NotOnCall => ErrorCode::NotJoined,
            };
            self.tell(client, error(code, err.to_string()));
        }
    }

    /// `lock_lobby`.
    fn lock_lobby(&mut self, client: ClientId, role: Role, locked: bool) {
        let Some(me) = self.deciding(client, role) else {
            return;
        };
        if let Err(err) = self.call.set_lobby_locked(me, locked) {
            let code = match err {
                DecideError::NotOnCall => ErrorCode::NotJoined,
                _ => ErrorCode::NotAllowed,
            };
            let message = match err {
                DecideError::NotAllowed => {
                    "only signed-in participants can lock the lobby".to_string()
                }
                other => other.to_string(),
            };
            self.tell(client, error(code, message));
        }
    }

    /// `suspend_guests`.
    fn suspend_guests(&mut self, client: ClientId, role: Role, suspended: bool) {
        let Some(me) = self.deciding(client, role) else {
            return;
        };
        if let Err(err) = self.call.suspend_guests(me, suspended) {
            let (code, message) = match err {
                DecideError::NotOnCall => (ErrorCode::NotJoined, err.to_string()),
                _ => (
                    ErrorCode::NotAllowed,
                    "only signed-in participants can suspend guests".to_string(),
                ),
            };
            self.tell(client, error(code, message));
        }
    }

    /// The connection's sign-in ended: it keeps its place without member powers.
    fn signed_out(&mut self, client: ClientId, now: Now) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.powerless = true;
        }
        // The lobby goes from their page with their powers.
        self.tell(
            client,
            ServerMessage::Lobby {
                requests: Vec::new(),
                total: 0,
                locked: self.call.lobby_locked(),
                now,
            },
        );
    }

    /// `publish`, `subscribe`, `subscribe_answer`, `set_quality` and `mute`: passed on to the
    /// SFU for a participant on the call.
    fn media_action(&mut self, client: ClientId, role: Role, action: Action) {
        let Some(me) = self.on_call(client, role) else {
            return;
        };
        let call = sfu::CallKey(self.link_pk);
        let participant = me.0;
        if let Action::SetQuality {
            participant: publisher,
            ..
        } = action
            && (publisher == me || self.call.participant(publisher).is_none())
        {
            return self.tell(
                client,
                error(
                    ErrorCode::NoSuchParticipant,
                    format!(
                        "participant {} is not someone else on this call",
                        publisher.0
                    ),
                ),
            );
        }
        let command = match action {
            Action::Publish { sdp } => {
                let Some(out) = self.clients.get(&client).map(|c| c.out.clone()) else {
                    return;
                };
                self.media_states.entry(me).or_default();
                sfu::MediaCommand::Publish {
                    call,
                    participant,
                    offer: sdp,
                    events: std::sync::Arc::new(out),
                }
            }
            Action::Subscribe => {
                let Some(out) = self.clients.get(&client).map(|c| c.out.clone()) else {
                    return;
                };
                sfu::MediaCommand::Subscribe {
                    call,
                    participant,
                    events: std::sync::Arc::new(out),
                }
            }
            Action::SubscribeAnswer { sdp } => {
                let Some(out) = self.clients.get(&client).map(|c| c.out.clone()) else {
                    return;
                };
                sfu::MediaCommand::SubscribeAnswer {
                    call,
                    participant,
                    answer: sdp,
                    events: std::sync::Arc::new(out),
                }
            }
            Action::SetQuality {
                participant: publisher,
                layer,
            } => sfu::MediaCommand::SetQuality {
                call,
                participant,
                publisher: publisher.0,
                layer: usize::from(layer),
            },
            Action::Mute(media_state) => return self.mute(client, me, media_state),
            _ => return,
        };
        let publishing = matches!(command, sfu::MediaCommand::Publish { .. });
        self.media(client, command);
        // A guest who starts publishing while the guests are suspended (admitted
        // from before the lock, or back after a reconnect) is not forwarded either.
        if publishing
            && self.call.guests_suspended()
            && self
                .call
                .participant(me)
                .is_some_and(|p| !p.identity.is_authenticated())
        {
            self.media_suspend(me, true);
        }
    }

    /// `mute`: what a participant says it sends; a change of screen sharing shows
    /// or hides its screen to the others.
    fn mute(&mut self, client: ClientId, me: ParticipantId, media_state: MediaState) {
        let before = self.media_states.insert(me, media_state);
        if before == Some(media_state) {
            return;
        }
        self.send_snapshots();
        let was_sharing = before.unwrap_or_default().sharing_screen;
        if media_state.sharing_screen == was_sharing {
            return;
        }
        // The screen's media section stays negotiated; this shows or hides it.
        if self.deps.media.is_some() {
            self.effects.push(Effect::Media {
                client: Some(client),
                command: sfu::MediaCommand::Sharing {
                    call: sfu::CallKey(self.link_pk),
                    participant: me.0,
                    screen: media_state.sharing_screen,
                },
            });
        }
    }

    /// `plugin_message`: queued for the plugin, in order.
    fn plugin_message(&mut self, client: ClientId, role: Role, plugin: String, payload: Vec<u8>) {
        let Some(me) = self.on_call(client, role) else {
            return;
        };
        if !self.deps.host.takes_call_messages(&plugin) {
            return self.tell(
                client,
                error(
                    ErrorCode::PluginUnavailable,
                    format!("{plugin} is not a plugin that takes call messages here"),
                ),
            );
        }
        self.effects.push(Effect::ToPlugin {
            plugin,
            client,
            sender: me.0,
            payload,
        });
    }

    /// `e2ee`: relayed as it is to one participant or everyone else on the call.
    fn relay_keys(
        &mut self,
        client: ClientId,
        role: Role,
        to: Option<ParticipantId>,
        payload: String,
    ) {
        let Some(me) = self.on_call(client, role) else {
            return;
        };
        if let Some(to) = to
            && (to == me || !self.call.participants().any(|p| p.id == to))
        {
            return self.tell(
                client,
                error(
                    ErrorCode::NoSuchParticipant,
                    format!("participant {} is not on this call", to.0),
                ),
            );
        }
        let message = ServerMessage::E2ee {
            from: me.0,
            payload,
        };
        let recipients: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|&(id, c)| match c.role {
                Role::On(them) => them != me && to.is_none_or(|to| to == them) && *id != client,
                _ => false,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in recipients {
            self.tell(id, message.clone());
        }
    }
}

/// The answer to a second `join` or `resume` on one connection.
fn already_joined() -> ServerMessage {
    error(
        ErrorCode::AlreadyJoined,
        "you already joined or asked to join",
    )
}
