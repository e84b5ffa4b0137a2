//! The task that owns one live call: its [`Call`], the connections of everyone
//! on it or waiting for it, and the loop that feeds it commands, ticks and link
//! changes.

use std::collections::HashMap;

use tokio::sync::{broadcast, mpsc};
use tokio::time::sleep_until;

use crate::calls::activity::Activities;
use crate::calls::{
    Call, CallPolicy, Identity, JoinError, JoinOutcome, Origin, ParticipantId, RequestEnd,
    RequestId, Seat,
};
use crate::plugins;
use crate::privacy::CallEventKind;
use crate::protocol::{
    CallEndReason, ErrorCode, LobbyWarning, RequestEndReason, ServerMessage, error,
};
use crate::store::{LinkChange, call_seat, link};

use super::command::{CallRequest, ClientId, MediaState};
use super::deps::CallDeps;
use super::effects::{Effect, Input};
use super::{LINK_RECHECK, TICK};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Idle,
    /// Asked to join; plugins are screening the request.
    Screening,
    Waiting(RequestId),
    On(ParticipantId),
}

pub(super) struct Client {
    pub(super) out: mpsc::Sender<ServerMessage>,
    pub(super) role: Role,
    /// The link id the connection was opened with, once it asked to join.
    pub(super) opened_as: Option<String>,
    /// A member whose sign-in ended: on the call, without member powers.
    pub(super) powerless: bool,
    /// A digest of the last lobby snapshot sent, so an unchanged lobby is not re-sent.
    pub(super) lobby_sent: Option<u64>,
}

impl Client {
    pub(super) fn new(out: mpsc::Sender<ServerMessage>) -> Self {
        Self {
            out,
            role: Role::Idle,
            opened_as: None,
            powerless: false,
            lobby_sent: None,
        }
    }
}

pub(super) struct CallTask {
    pub(super) call: Call,
    pub(super) link_id: String,
    pub(super) link_pk: i64,
    pub(super) clients: HashMap<ClientId, Client>,
    /// Names for the metadata log, kept while a request or participant exists.
    pub(super) request_names: HashMap<RequestId, String>,
    pub(super) participant_names: HashMap<ParticipantId, String>,
    pub(super) media_states: HashMap<ParticipantId, MediaState>,
    /// Tells this run of the link apart from earlier and later ones (for plugins).
    pub(super) call_id: String,
    /// Why the call was ended for everyone, if it was.
    pub(super) end_reason: Option<CallEndReason>,
    /// Participants as plugins saw them join, for the events when they leave.
    pub(super) plugin_people: HashMap<ParticipantId, plugins::ParticipantInfo>,
    /// Per plugin, the queue of its call messages (handled in order).
    pub(super) plugin_inboxes: HashMap<String, mpsc::Sender<InboxMessage>>,
    /// Warnings plugins gave about lobby requests, shown next to them.
    pub(super) request_warnings: HashMap<RequestId, Vec<LobbyWarning>>,
    /// The call's shared activities.
    pub(super) activities: Activities,
    /// On a cluster: the hash of each participant's resume token, whose place is
    /// kept in the database for another node, until they leave.
    pub(super) kept_seats: HashMap<ParticipantId, String>,
    /// This call's own queue, for answers from tasks it started (screening).
    pub(super) own_queue: mpsc::WeakSender<CallRequest>,
    pub(super) deps: CallDeps,
    /// What the steps so far ask of the world, for [`CallTask::execute`].
    pub(super) effects: Vec<Effect>,
}

/// A participant's message for a plugin, and where to report a failure.
pub(super) struct InboxMessage {
    pub(super) sender: u32,
    pub(super) payload: Vec<u8>,
    pub(super) out: mpsc::Sender<ServerMessage>,
}

/// Messages waiting for one plugin from one call.
pub(super) const PLUGIN_INBOX: usize = 256;

impl CallTask {
    /// Starts the task of a new call of `link`, taking `commands` from `queue`.
    pub(super) fn spawn(
        deps: CallDeps,
        link: &link::Model,
        queue: mpsc::Sender<CallRequest>,
        commands: mpsc::Receiver<CallRequest>,
    ) {
        let actor = CallTask::new(deps, link, &queue);
        tokio::spawn(actor.run(commands, queue));
    }

    /// A new call of `link`, not started: [`CallTask::step`] drives it.
    pub(super) fn new(
        deps: CallDeps,
        link: &link::Model,
        queue: &mpsc::Sender<CallRequest>,
    ) -> Self {
        let policy = CallPolicy {
            guests_need_approval: link.guests_need_approval,
            members_need_approval: link.members_need_approval,
            max_participants: u8::try_from(link.max_participants)
                .unwrap_or(crate::calls::MAX_PARTICIPANTS),
        };
        CallTask {
            call: Call::new(link.owner_id, policy, deps.rules),
            link_id: link.public_id.clone(),
            link_pk: link.pk,
            clients: HashMap::new(),
            request_names: HashMap::new(),
            participant_names: HashMap::new(),
            media_states: HashMap::new(),
            call_id: crate::secret::random_base62(16),
            end_reason: None,
            plugin_people: HashMap::new(),
            plugin_inboxes: HashMap::new(),
            request_warnings: HashMap::new(),
            activities: Activities::new(deps.rules.activities),
            kept_seats: HashMap::new(),
            own_queue: queue.downgrade(),
            deps,
            effects: Vec::new(),
        }
    }
}

impl CallTask {
    pub(super) async fn run(
        mut self,
        mut commands: mpsc::Receiver<CallRequest>,
        own_queue: mpsc::Sender<CallRequest>,
    ) {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut recheck =
            tokio::time::interval_at(tokio::time::Instant::now() + LINK_RECHECK, LINK_RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut changes = self.deps.store.link_changes();
        // Participants this call counts in the node's total.
        let mut counted: usize = 0;
        loop {
            // A newcomer waiting for an activity's snapshot has a sharper deadline
            // than the call's ticks.
            let next = self.activities.next_deadline();
            let due_set = next.is_some();
            let due = tokio::time::Instant::now()
                + next
                    .and_then(|at| (at - self.deps.clock.now()).to_std().ok())
                    .unwrap_or_default();
            let input = tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => Input::from(command),
                    None => break,
                },
                _ = ticker.tick() => Input::Tick(self.deps.clock.now()),
                change = changes.recv() => match change {
                    Ok(change) if change.pk() == self.link_pk => Input::Link(change),
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => Input::Recheck,
                    // The store, which this task holds, keeps the sender: never.
                    Err(broadcast::error::RecvError::Closed) => continue,
                },
                _ = recheck.tick() => Input::Recheck,
                _ = sleep_until(due), if due_set => Input::Tick(self.deps.clock.now()),
            };
            self.step(input);
            self.execute();
            let participants = self.call.participants().count();
            if participants != counted {
                let delta = i64::try_from(participants).unwrap_or(i64::MAX)
                    - i64::try_from(counted).unwrap_or(i64::MAX);
                self.deps.host.participants_changed(delta);
                counted = participants;
            }
            let nobody = self.clients.is_empty() && self.call.participants().next().is_none();
            if self.call.is_ended() || nobody {
                break;
            }
        }
        if counted > 0 {
            self.deps
                .host
                .participants_changed(-i64::try_from(counted).unwrap_or(i64::MAX));
        }
        // Stop taking commands; senders that raced us start a fresh call.
        commands.close();
        self.deps.host.call_ended(self.link_pk, &own_queue);
        drop(own_queue);
        // Anything still queued belongs to the next call.
        while let Ok(command) = commands.try_recv() {
            self.deps.host.redeliver(self.link_id.clone(), command);
        }
    }

    /// A message for `client` (sent when the step's effects are carried out).
    pub(super) fn tell(&mut self, client: ClientId, message: ServerMessage) {
        self.effects.push(Effect::Send { client, message });
    }

    pub(super) fn role(&self, client: ClientId) -> Role {
        self.clients
            .get(&client)
            .map(|c| c.role)
            .unwrap_or(Role::Idle)
    }

    pub(super) fn set_role(&mut self, client: ClientId, role: Role) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.role = role;
        }
    }

    pub(super) fn client_with(&self, role: Role) -> Option<ClientId> {
        self.clients
            .iter()
            .find(|(_, c)| c.role == role)
            .map(|(id, _)| *id)
    }

    /// Whether `client` is a member whose sign-in ended.
    pub(super) fn powerless(&self, client: ClientId) -> bool {
        self.clients.get(&client).is_some_and(|c| c.powerless)
    }

    /// `message` for every connection on the call.
    pub(super) fn tell_everyone_on_call(&mut self, message: &ServerMessage) {
        let on_call: Vec<ClientId> = self
            .clients
            .iter()
            .filter(|(_, c)| matches!(c.role, Role::On(_)))
            .map(|(id, _)| *id)
            .collect();
        for client in on_call {
            self.tell(client, message.clone());
        }
    }

    pub(super) fn tell_signed_out(&mut self, client: ClientId) {
        self.tell(
            client,
            error(
                ErrorCode::NotAllowed,
                "your sign-in ended: sign in again to admit, deny or remove people",
            ),
        );
    }

    /// The link changed: revoked or deleted ends the call for everyone; a new id
    /// ends the requests that came through the old one.
    pub(super) fn link_changed(&mut self, change: LinkChange) {
        if change.ends_calls() {
            if self.call.is_ended() {
                return;
            }
            tracing::info!(link = %self.link_id, "the link was revoked: ending its call");
            self.end_reason = Some(CallEndReason::LinkRevoked);
            let screening: Vec<ClientId> = self
                .clients
                .iter()
                .filter(|(_, c)| c.role == Role::Screening)
                .map(|(id, _)| *id)
                .collect();
            for id in screening {
                self.set_role(id, Role::Idle);
                self.tell(
                    id,
                    ServerMessage::RequestEnded {
                        why: RequestEndReason::LinkRevoked,
                    },
                );
            }
            self.call.close(RequestEnd::LinkRevoked);
            return;
        }
        let LinkChange::Updated { public_id, .. } = change else {
            return;
        };
        if public_id == self.link_id {
            return;
        }
        let old: Vec<(ClientId, Role)> = self
            .clients
            .iter()
            .filter(|(_, c)| c.opened_as.as_deref() != Some(public_id.as_str()))
            .map(|(id, c)| (*id, c.role))
            .collect();
        for (id, role) in old {
            match role {
                Role::Waiting(request) => self.call.end_request(request, RequestEnd::LinkRotated),
                Role::Screening => {
                    self.set_role(id, Role::Idle);
                    self.tell(
                        id,
                        ServerMessage::RequestEnded {
                            why: RequestEndReason::LinkRotated,
                        },
                    );
                }
                Role::Idle | Role::On(_) => {}
            }
        }
        self.link_id = public_id;
    }

    /// Seats `client` or puts them in the lobby (with the plugins' warnings, if any).
    pub(super) fn join(
        &mut self,
        client: ClientId,
        identity: Identity,
        origin: Origin,
        name: String,
        warnings: Vec<LobbyWarning>,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let must_wait = !warnings.is_empty();
        match self.call.join_from(identity, origin, &name, must_wait, now) {
            Ok(JoinOutcome::Joined(seat)) => {
                self.participant_names.insert(seat.participant, name);
                self.seat_client(client, seat);
            }
            Ok(JoinOutcome::Waiting {
                request,
                waiting_for,
            }) => {
                self.request_names.insert(request, name);
                if must_wait {
                    self.request_warnings.insert(request, warnings);
                }
                self.set_role(client, Role::Waiting(request));
                self.tell(
                    client,
                    ServerMessage::Waiting {
                        request: request.0,
                        waiting_for,
                    },
                );
            }
            Err(err) => self.refuse_join(client, err),
        }
    }

    pub(super) fn refuse_join(&mut self, client: ClientId, err: JoinError) {
        let code = match err {
            JoinError::Full => ErrorCode::CallFull,
            JoinError::Blocked => ErrorCode::Blocked,
            JoinError::Removed => ErrorCode::Removed,
            JoinError::LobbyLocked => ErrorCode::LobbyLocked,
            JoinError::LobbyFull => ErrorCode::LobbyFull,
            JoinError::TooManyFromNetwork => ErrorCode::TooManyRequests,
        };
        match err {
            JoinError::LobbyFull => self.deps.metrics.count_refused("max_lobby_requests"),
            JoinError::TooManyFromNetwork => {
                self.deps.metrics.count_refused("max_waiting_per_address")
            }
            _ => {}
        }
        self.tell(client, error(code, err.to_string()));
    }

    pub(super) fn seat_client(&mut self, client: ClientId, seat: Seat) {
        self.set_role(client, Role::On(seat.participant));
        if self.deps.host.keeps_seats()
            && let Some(p) = self.call.participant(seat.participant)
        {
            let token_hash = crate::secret::sha256_hex(&seat.resume_token);
            let (user_id, guest_key) = match &p.identity {
                Identity::Member { user_id } => (Some(*user_id), None),
                Identity::Guest { guest_key } => (None, Some(guest_key.clone())),
            };
            self.effects.push(Effect::KeepSeat(call_seat::Model {
                token_hash: token_hash.clone(),
                link_pk: self.link_pk,
                node_id: String::new(),
                user_id,
                guest_key,
                name: p.name.clone(),
                is_owner: p.is_owner,
                joined_at: p.joined_at,
                saved_at: p.joined_at,
            }));
            self.kept_seats.insert(seat.participant, token_hash);
        }
        self.tell(
            client,
            ServerMessage::Joined {
                participant: seat.participant.0,
                resume_token: seat.resume_token,
                call: self.call_id.clone(),
            },
        );
    }

    /// Appends to the call-metadata log (off the task, without holding up the call).
    pub(super) fn record(&mut self, kind: CallEventKind, subject: Option<String>) {
        let at = self.deps.clock.now();
        self.effects.push(Effect::Record { kind, subject, at });
    }
}
