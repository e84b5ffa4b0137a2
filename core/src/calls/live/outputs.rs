//! What the call's task sends out after each step: media commands to the SFU,
//! messages for the call's events, and fresh roster and lobby snapshots.

use std::hash::{Hash, Hasher};

use crate::calls::{
    CallEvent, Concern, LeaveReason, ParticipantId, RequestEnd, RequestId, WaitingFor,
};
use crate::privacy::CallEventKind;
use crate::protocol::{
    LOBBY_SNAPSHOT, LobbyEntry, LobbyFlag, RequestEndReason, RosterEntry, ServerMessage,
};
use crate::sfu;

use super::command::ClientId;
use super::effects::Effect;
use super::task::{CallTask, Role};

impl CallTask {
    /// Passes a command to the SFU, or tells the client why it cannot.
    pub(super) fn media(&mut self, client: ClientId, command: sfu::MediaCommand) {
        self.effects.push(Effect::Media {
            client: Some(client),
            command,
        });
    }

    /// Stops or restarts forwarding a participant's media.
    pub(super) fn media_suspend(&mut self, participant: ParticipantId, suspended: bool) {
        if self.deps.media.is_some() {
            self.effects.push(Effect::Media {
                client: None,
                command: sfu::MediaCommand::Suspend {
                    call: sfu::CallKey(self.link_pk),
                    participant: participant.0,
                    suspended,
                },
            });
        }
    }

    /// Closes a participant's media connections.
    pub(super) fn media_leave(&mut self, participant: ParticipantId) {
        self.media_states.remove(&participant);
        if self.deps.media.is_some() {
            self.effects.push(Effect::Media {
                client: None,
                command: sfu::MediaCommand::Leave {
                    call: sfu::CallKey(self.link_pk),
                    participant: participant.0,
                },
            });
        }
    }

    /// Turns the call's events into messages and metadata, then sends fresh snapshots.
    pub(super) fn publish(&mut self) {
        for (request, seat) in self.call.drain_admissions() {
            if let Some(name) = self.request_names.get(&request).cloned() {
                self.participant_names.insert(seat.participant, name);
            }
            if let Some(guest) = self.client_with(Role::Waiting(request)) {
                self.seat_client(guest, seat);
            }
        }
        let events = self.call.drain_events();
        if events.is_empty() {
            return;
        }
        for event in &events {
            self.tell_plugins(event);
            match *event {
                CallEvent::Started => self.record(CallEventKind::CallStarted, None),
                CallEvent::Ended => {
                    self.record(CallEventKind::CallEnded, None);
                    let on_call: Vec<ParticipantId> = self.media_states.keys().copied().collect();
                    for participant in on_call {
                        self.media_leave(participant);
                    }
                    let ids: Vec<ClientId> = self.clients.keys().copied().collect();
                    for id in ids {
                        self.tell(
                            id,
                            ServerMessage::CallEnded {
                                reason: self.end_reason,
                            },
                        );
                        self.set_role(id, Role::Idle);
                    }
                }
                CallEvent::LobbyRequested { request } => {
                    let name = self.request_names.get(&request).cloned();
                    self.record(CallEventKind::JoinRequested, name);
                }
                CallEvent::LobbyOpened => {
                    let waiting: Vec<(ClientId, RequestId)> = self
                        .clients
                        .iter()
                        .filter_map(|(id, c)| match c.role {
                            Role::Waiting(r) => Some((*id, r)),
                            _ => None,
                        })
                        .collect();
                    for (id, request) in waiting {
                        if self.call.lobby().any(|r| r.id == request) {
                            self.tell(
                                id,
                                ServerMessage::Waiting {
                                    request: request.0,
                                    waiting_for: WaitingFor::Approval,
                                },
                            );
                        }
                    }
                }
                CallEvent::Admitted {
                    request,
                    participant,
                    ..
                } => {
                    self.request_warnings.remove(&request);
                    let name = self.request_names.remove(&request);
                    self.record(CallEventKind::Admitted, name);
                    self.activities_for_newcomer(participant);
                }
                CallEvent::Denied {
                    request, blocked, ..
                } => {
                    self.request_warnings.remove(&request);
                    let name = self.request_names.remove(&request);
                    self.record(CallEventKind::Denied, name);
                    if let Some(guest) = self.client_with(Role::Waiting(request)) {
                        self.set_role(guest, Role::Idle);
                        self.tell(
                            guest,
                            ServerMessage::Denied {
                                blocked,
                                reason: None,
                            },
                        );
                    }
                }
                CallEvent::RequestEnded { request, why } => {
                    self.request_names.remove(&request);
                    self.request_warnings.remove(&request);
                    if let Some(guest) = self.client_with(Role::Waiting(request)) {
                        self.set_role(guest, Role::Idle);
                        self.tell(guest, ServerMessage::RequestEnded { why: why.into() });
                    }
                }
                CallEvent::Removed { participant, by } => {
                    if let Some(token_hash) = self.kept_seats.remove(&participant) {
                        self.effects.push(Effect::ForgetSeat(token_hash));
                    }
                    self.activities_left(participant, self.deps.clock.now());
                    self.media_leave(participant);
                    let name = self.participant_names.remove(&participant);
                    self.record(CallEventKind::Removed, name);
                    let by = self.participant_names.get(&by).cloned().unwrap_or_default();
                    if let Some(guest) = self.client_with(Role::On(participant)) {
                        self.set_role(guest, Role::Idle);
                        self.tell(guest, ServerMessage::Removed { by });
                    }
                }
                CallEvent::Left { participant, why } => {
                    if let Some(token_hash) = self.kept_seats.remove(&participant) {
                        self.effects.push(Effect::ForgetSeat(token_hash));
                    }
                    self.activities_left(participant, self.deps.clock.now());
                    self.media_leave(participant);
                    self.participant_names.remove(&participant);
                    if why == LeaveReason::ConnectionLost
                        && let Some(gone) = self.client_with(Role::On(participant))
                    {
                        self.set_role(gone, Role::Idle);
                    }
                }
                CallEvent::GuestsSuspended { suspended, .. } => {
                    let guests: Vec<ParticipantId> = self
                        .call
                        .participants()
                        .filter(|p| !p.identity.is_authenticated())
                        .map(|p| p.id)
                        .collect();
                    for guest in guests {
                        self.media_suspend(guest, suspended);
                    }
                }
                CallEvent::Joined { participant } | CallEvent::Resumed { participant } => {
                    self.activities_for_newcomer(participant);
                }
                CallEvent::ConnectionDropped { .. }
                | CallEvent::LobbyLockChanged { .. }
                | CallEvent::Closed => {}
            }
        }
        if !self.call.is_ended() {
            self.send_snapshots();
        }
    }

    /// Sends the roster to everyone on the call and the lobby to signed-in
    /// participants (only to those whose last lobby differs: a lobby that did not
    /// change is not sent again).
    pub(super) fn send_snapshots(&mut self) {
        let window = self.deps.rules.removal_window;
        let roster: Vec<RosterEntry> = self
            .call
            .participants()
            .map(|p| RosterEntry {
                participant: p.id.0,
                name: p.name.clone(),
                guest: !p.identity.is_authenticated(),
                owner: p.is_owner,
                joined_at: p.joined_at,
                connected: p.connection == crate::calls::Connection::Connected,
                audio_muted: self.media_states.get(&p.id).is_some_and(|m| m.audio_muted),
                video_muted: self.media_states.get(&p.id).is_some_and(|m| m.video_muted),
                sharing_screen: self
                    .media_states
                    .get(&p.id)
                    .is_some_and(|m| m.sharing_screen),
                suspended: self.call.guests_suspended() && !p.identity.is_authenticated(),
                removable_until: (!p.identity.is_authenticated()).then(|| p.joined_at + window),
            })
            .collect();
        let lobby: Vec<LobbyEntry> = self
            .call
            .lobby()
            .take(LOBBY_SNAPSHOT)
            .map(|r| LobbyEntry {
                request: r.id.0,
                name: r.name.clone(),
                guest: !r.identity.is_authenticated(),
                asked_at: r.asked_at,
                warnings: self
                    .request_warnings
                    .get(&r.id)
                    .cloned()
                    .unwrap_or_default(),
                flags: r.concerns.iter().map(|c| LobbyFlag::from(*c)).collect(),
            })
            .collect();
        let total = self.call.lobby().count();
        let locked = self.call.lobby_locked();
        let digest = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            (&lobby, total, locked).hash(&mut h);
            h.finish()
        };
        let now = self.deps.clock.now();
        let deciders: Vec<ParticipantId> = self
            .call
            .participants()
            .filter(|p| p.identity.is_authenticated())
            .map(|p| p.id)
            .collect();
        for (&id, client) in &mut self.clients {
            let Role::On(me) = client.role else { continue };
            self.effects.push(Effect::Send {
                client: id,
                message: ServerMessage::Roster {
                    participants: roster.clone(),
                    guests_suspended: self.call.guests_suspended(),
                    now,
                },
            });
            if deciders.contains(&me) && !client.powerless && client.lobby_sent != Some(digest) {
                client.lobby_sent = Some(digest);
                self.effects.push(Effect::Lobby {
                    client: id,
                    message: ServerMessage::Lobby {
                        requests: lobby.clone(),
                        total,
                        locked,
                        now,
                    },
                });
            }
        }
    }
}

impl From<RequestEnd> for RequestEndReason {
    fn from(r: RequestEnd) -> Self {
        match r {
            RequestEnd::Withdrawn => RequestEndReason::Withdrawn,
            RequestEnd::TimedOut => RequestEndReason::TimedOut,
            RequestEnd::CallEnded => RequestEndReason::CallEnded,
            RequestEnd::LinkRevoked => RequestEndReason::LinkRevoked,
            RequestEnd::LinkRotated => RequestEndReason::LinkRotated,
        }
    }
}

impl From<Concern> for LobbyFlag {
    fn from(c: Concern) -> Self {
        match c {
            Concern::SameNetworkAsRemoved => LobbyFlag::SameNetworkAsRemoved,
            Concern::SameNetworkAsBlocked => LobbyFlag::SameNetworkAsBlocked,
        }
    }
}
