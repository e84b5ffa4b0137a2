//! Live calls: one task per call owns its [`Call`] and the connections of everyone
//! on it or waiting for it. Signaling sessions send it [`Command`]s through a bounded
//! channel; it answers each client on that client's own outbound queue.
//!
//! [`CallRegistry`] maps a link to its live call and starts one when the link is used
//! after the previous call ended. All of a call's state lives in its task, so the
//! call can be owned by exactly one node when Confab runs on several.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, oneshot};

use super::{
    Call, CallEvent, CallPolicy, Concern, DecideError, Decision, Identity, JoinError, JoinOutcome,
    LeaveReason, Origin, ParticipantId, RemoveError, RequestEnd, RequestId, Seat, WaitingFor,
    network_of,
};
use crate::AppState;
use crate::config::CallsConfig;
use crate::limits::RateWindow;
use crate::plugins::{self, PluginCallAction, PluginCallError, RosterMember};
use crate::privacy::{self, CallEventKind};
use crate::sfu;
use crate::signaling::{
    CallEndReason, ErrorCode, LOBBY_SNAPSHOT, LobbyEntry, LobbyFlag, LobbyWarning,
    RequestEndReason, RosterEntry, ServerMessage, error,
};
use crate::store::{LinkChange, link};

/// Commands waiting for a call's task; beyond this, senders wait.
const COMMAND_QUEUE: usize = 256;
/// How often a call applies its time-based rules (lobby timeout, reconnect grace).
const TICK: Duration = Duration::from_secs(1);
/// How often a live call re-reads its link, for changes made by another process
/// (the CLI, another node); changes made through this process arrive at once.
const LINK_RECHECK: Duration = Duration::from_secs(5);

/// A connection's id, unique within the process.
pub type ClientId = u64;

static NEXT_CLIENT: AtomicU64 = AtomicU64::new(1);

/// A fresh [`ClientId`].
pub fn next_client_id() -> ClientId {
    NEXT_CLIENT.fetch_add(1, Ordering::Relaxed)
}

/// A message from one connection to its call.
#[derive(Debug)]
pub struct Command {
    pub client: ClientId,
    /// Where the call answers this client.
    pub out: mpsc::Sender<ServerMessage>,
    pub action: Action,
}

/// What a connection asks of its call.
#[derive(Debug, Clone)]
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
    /// The connection's sign-in ended (signed out, session expired, token revoked):
    /// it keeps its place but loses member powers.
    SignedOut,
    Resume {
        resume_token: String,
    },
    Decide {
        request: u32,
        decision: Decision,
    },
    Remove {
        participant: u32,
    },
    Withdraw,
    Leave,
    /// Media negotiation, passed on to the SFU for participants on the call.
    Publish {
        sdp: String,
    },
    SubscribeAnswer {
        sdp: String,
    },
    SetQuality {
        participant: u32,
        layer: u8,
    },
    Mute(MediaState),
    /// A message on a plugin's channel (a shared activity), for that plugin.
    PluginMessage {
        plugin: String,
        payload: Vec<u8>,
    },
    /// End-to-end encryption keys for one participant or everyone else, relayed as
    /// they are.
    Keys {
        to: Option<u32>,
        payload: String,
    },
    /// The connection closed.
    Disconnected,
    /// The connection learnt that the link was revoked or deleted: the call ends
    /// (if it has not yet), then the connection is told why it closes.
    LinkGone,
    /// A plugin's request (not from a connection).
    Plugin {
        action: PluginCallAction,
        reply: PluginReply,
    },
    /// An `e2ee` message the server makes up, as if from participant `from`, for
    /// everyone on the call: what a malicious server could do (tests only).
    #[cfg(feature = "test-tap")]
    ForgeKeys {
        from: u32,
        payload: String,
    },
}

/// Where a call answers a plugin's request (taken once).
#[derive(Debug, Clone)]
pub struct PluginReply(std::sync::Arc<Mutex<Option<PluginAnswer>>>);

type PluginAnswer = oneshot::Sender<Result<Vec<RosterMember>, PluginCallError>>;

impl PluginReply {
    fn send(&self, answer: Result<Vec<RosterMember>, PluginCallError>) {
        if let Some(reply) = self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = reply.send(answer);
        }
    }
}

/// What a participant says it sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MediaState {
    pub audio_muted: bool,
    pub video_muted: bool,
    pub sharing_screen: bool,
}

/// Live calls by link.
#[derive(Debug)]
pub struct CallRegistry {
    calls: Mutex<HashMap<i64, mpsc::Sender<Command>>>,
    /// Guests' join requests per (link, network) in the last minute.
    join_rate: RateWindow<(i64, IpAddr)>,
}

impl CallRegistry {
    pub fn new(config: &CallsConfig) -> Self {
        Self {
            calls: Mutex::default(),
            join_rate: RateWindow::new(config.join_requests_per_minute, Duration::from_secs(60)),
        }
    }

    /// Counts a guest's join request to a link from `address` (signaling or the
    /// no-JavaScript form) and says whether it is within `calls.join_requests_per_minute`.
    pub fn allow_join_request(&self, link_pk: i64, address: IpAddr) -> bool {
        self.join_rate
            .allow(&(link_pk, network_of(address)), Instant::now())
    }

    /// Delivers `command` to the link's live call, starting one if there is none.
    /// Joins and resumes first re-check the link as it is now, not as it was when
    /// the connection opened: a revoked link admits nobody, and a rotated one
    /// nobody new through its old id.
    pub async fn send(&self, state: &AppState, link: &link::Model, command: Command) {
        let mut command = command;
        if matches!(command.action, Action::Disconnected | Action::SignedOut)
            && !self.is_live(link.pk)
        {
            return; // no call: nothing to tell it
        }
        let mut current = None;
        if matches!(command.action, Action::Join { .. } | Action::Resume { .. }) {
            match self.admission_check(state, link, &command.action).await {
                Ok(fresh) => current = Some(fresh),
                Err(reply) => {
                    let _ = command.out.try_send(reply);
                    return;
                }
            }
        }
        let link = current.as_ref().unwrap_or(link);
        // A call that just ended may close its queue between lookup and send: retry once
        // with a fresh call.
        for _ in 0..2 {
            let queue = self.queue(state, link);
            match queue.send(command).await {
                Ok(()) => return,
                Err(mpsc::error::SendError(returned)) => {
                    self.forget(link.pk, &queue);
                    command = returned;
                }
            }
        }
        tracing::warn!("could not reach a call task twice in a row");
    }

    /// The link as it is now, if `action` may go ahead on it; else the error to send.
    async fn admission_check(
        &self,
        state: &AppState,
        opened: &link::Model,
        action: &Action,
    ) -> Result<link::Model, ServerMessage> {
        let revoked = || error(ErrorCode::LinkRevoked, "this link was revoked");
        let unavailable = |err: crate::store::StoreError| {
            tracing::warn!(error = %err, "could not re-read a link");
            error(
                ErrorCode::Unavailable,
                "the server could not check this link; try again",
            )
        };
        let current = match state.store.link_by_public_id(&opened.public_id).await {
            Ok(Some(link)) if link.pk == opened.pk => link,
            Ok(_) => match state
                .store
                .link_by_pk(opened.pk)
                .await
                .map_err(unavailable)?
            {
                // Rotated: people on the call stay (and may resume), nobody new joins
                // through the old id.
                Some(link)
                    if link.revoked_at.is_none() && matches!(action, Action::Resume { .. }) =>
                {
                    link
                }
                Some(link) if link.revoked_at.is_none() => {
                    return Err(error(
                        ErrorCode::LinkRotated,
                        "this link was replaced with a new one; ask for the new link",
                    ));
                }
                _ => return Err(revoked()),
            },
            Err(err) => return Err(unavailable(err)),
        };
        if current.revoked_at.is_some() {
            return Err(revoked());
        }
        if let Action::Join {
            identity: Identity::Guest { .. },
            address: Some(address),
            ..
        } = action
            && !self.allow_join_request(current.pk, *address)
        {
            state.metrics.count_refused("join_requests_per_minute");
            return Err(error(
                ErrorCode::TooManyRequests,
                "too many requests to join this call from your network; wait a minute and try again",
            ));
        }
        Ok(current)
    }

    /// Delivers `command` to the link's live call only; false when there is none (or
    /// its queue is full).
    pub fn send_if_live(&self, link_pk: i64, command: Command) -> bool {
        let queue = {
            let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            calls.get(&link_pk).filter(|q| !q.is_closed()).cloned()
        };
        queue.is_some_and(|q| q.try_send(command).is_ok())
    }

    fn is_live(&self, link_pk: i64) -> bool {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.get(&link_pk).is_some_and(|q| !q.is_closed())
    }

    /// Carries out a plugin's request on the link's live call (never starts one).
    pub async fn plugin_action(
        &self,
        link_pk: i64,
        action: PluginCallAction,
    ) -> Result<Vec<RosterMember>, PluginCallError> {
        let queue = {
            let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            calls
                .get(&link_pk)
                .filter(|q| !q.is_closed())
                .cloned()
                .ok_or(PluginCallError::NoCall)?
        };
        let (reply, answer) = oneshot::channel();
        // Nobody reads this: the call answers plugins through `reply`.
        let (out, _) = mpsc::channel(1);
        queue
            .try_send(Command {
                client: 0,
                out,
                action: Action::Plugin {
                    action,
                    reply: PluginReply(std::sync::Arc::new(Mutex::new(Some(reply)))),
                },
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => PluginCallError::Busy,
                mpsc::error::TrySendError::Closed(_) => PluginCallError::NoCall,
            })?;
        match tokio::time::timeout(Duration::from_secs(2), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(PluginCallError::NoCall),
            Err(_) => Err(PluginCallError::Busy),
        }
    }

    /// Sends everyone on the link's live call an `e2ee` message as if from
    /// participant `from`, who need not exist: the tests play a malicious server
    /// with it. False when there is no live call.
    #[cfg(feature = "test-tap")]
    pub fn forge_e2ee(&self, link_pk: i64, from: u32, payload: String) -> bool {
        let (out, _) = mpsc::channel(1);
        self.send_if_live(
            link_pk,
            Command {
                client: 0,
                out,
                action: Action::ForgeKeys { from, payload },
            },
        )
    }

    /// How many calls are live.
    pub fn live_calls(&self) -> usize {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn queue(&self, state: &AppState, link: &link::Model) -> mpsc::Sender<Command> {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(queue) = calls.get(&link.pk).filter(|q| !q.is_closed()) {
            return queue.clone();
        }
        let (queue, commands) = mpsc::channel(COMMAND_QUEUE);
        calls.insert(link.pk, queue.clone());
        let policy = CallPolicy {
            guests_need_approval: link.guests_need_approval,
            members_need_approval: link.members_need_approval,
            max_participants: u8::try_from(link.max_participants)
                .unwrap_or(super::MAX_PARTICIPANTS),
        };
        let actor = CallTask {
            call: Call::new(link.owner_id, policy, state.call_rules()),
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
            own_queue: queue.downgrade(),
            state: state.clone(),
        };
        tokio::spawn(actor.run(commands, queue.clone()));
        queue
    }

    fn forget(&self, link_pk: i64, queue: &mpsc::Sender<Command>) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if calls.get(&link_pk).is_some_and(|q| q.same_channel(queue)) {
            calls.remove(&link_pk);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Idle,
    /// Asked to join; plugins are screening the request.
    Screening,
    Waiting(RequestId),
    On(ParticipantId),
}

struct Client {
    out: mpsc::Sender<ServerMessage>,
    role: Role,
    /// The link id the connection was opened with, once it asked to join.
    opened_as: Option<String>,
    /// A member whose sign-in ended: on the call, without member powers.
    powerless: bool,
    /// A digest of the last lobby snapshot sent, so an unchanged lobby is not re-sent.
    lobby_sent: Option<u64>,
}

impl Client {
    fn new(out: mpsc::Sender<ServerMessage>) -> Self {
        Self {
            out,
            role: Role::Idle,
            opened_as: None,
            powerless: false,
            lobby_sent: None,
        }
    }
}

struct CallTask {
    call: Call,
    link_id: String,
    link_pk: i64,
    clients: HashMap<ClientId, Client>,
    /// Names for the metadata log, kept while a request or participant exists.
    request_names: HashMap<RequestId, String>,
    participant_names: HashMap<ParticipantId, String>,
    media_states: HashMap<ParticipantId, MediaState>,
    /// Tells this run of the link apart from earlier and later ones (for plugins).
    call_id: String,
    /// Why the call was ended for everyone, if it was.
    end_reason: Option<CallEndReason>,
    /// Participants as plugins saw them join, for the events when they leave.
    plugin_people: HashMap<ParticipantId, plugins::ParticipantInfo>,
    /// Per plugin, the queue of its call messages (handled in order).
    plugin_inboxes: HashMap<String, mpsc::Sender<InboxMessage>>,
    /// Warnings plugins gave about lobby requests, shown next to them.
    request_warnings: HashMap<RequestId, Vec<LobbyWarning>>,
    /// This call's own queue, for answers from tasks it started (screening).
    own_queue: mpsc::WeakSender<Command>,
    state: AppState,
}

/// A participant's message for a plugin, and where to report a failure.
struct InboxMessage {
    sender: u32,
    payload: Vec<u8>,
    out: mpsc::Sender<ServerMessage>,
}

/// Messages waiting for one plugin from one call.
const PLUGIN_INBOX: usize = 256;

impl CallTask {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        own_queue: mpsc::Sender<Command>,
    ) {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + TICK, TICK);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut recheck =
            tokio::time::interval_at(tokio::time::Instant::now() + LINK_RECHECK, LINK_RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut changes = self.state.store.link_changes();
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle(command),
                    None => break,
                },
                _ = ticker.tick() => self.call.tick(self.state.clock.now()),
                change = changes.recv() => match change {
                    Ok(change) if change.pk() == self.link_pk => self.link_changed(change),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => self.recheck_link(),
                    // The store, which this task holds, keeps the sender: never.
                    Err(broadcast::error::RecvError::Closed) => {}
                },
                _ = recheck.tick() => self.recheck_link(),
            }
            self.publish();
            let nobody = self.clients.is_empty() && self.call.participants().next().is_none();
            if self.call.is_ended() || nobody {
                break;
            }
        }
        // Stop taking commands; senders that raced us start a fresh call.
        commands.close();
        self.state.calls.forget(self.link_pk, &own_queue);
        drop(own_queue);
        // Anything still queued belongs to the next call.
        while let Ok(command) = commands.try_recv() {
            let state = self.state.clone();
            let link_id = self.link_id.clone();
            tokio::spawn(async move {
                if let Ok(Some(link)) = state.store.link_by_public_id(&link_id).await {
                    state.calls.send(&state, &link, command).await;
                }
            });
        }
    }

    fn tell(&self, client: ClientId, message: ServerMessage) {
        if let Some(c) = self.clients.get(&client) {
            // A full queue means a client that stopped reading; it will be dropped when
            // its connection closes.
            let _ = c.out.try_send(message);
        }
    }

    fn role(&self, client: ClientId) -> Role {
        self.clients
            .get(&client)
            .map(|c| c.role)
            .unwrap_or(Role::Idle)
    }

    fn set_role(&mut self, client: ClientId, role: Role) {
        if let Some(c) = self.clients.get_mut(&client) {
            c.role = role;
        }
    }

    fn client_with(&self, role: Role) -> Option<ClientId> {
        self.clients
            .iter()
            .find(|(_, c)| c.role == role)
            .map(|(id, _)| *id)
    }

    fn handle(
        &mut self,
        Command {
            client,
            out,
            action,
        }: Command,
    ) {
        let now = self.state.clock.now();
        let action = match action {
            Action::Plugin { action, reply } => {
                reply.send(self.plugin_action(action, now));
                return;
            }
            #[cfg(feature = "test-tap")]
            Action::ForgeKeys { from, payload } => {
                let message = ServerMessage::E2ee { from, payload };
                for c in self.clients.values() {
                    if matches!(c.role, Role::On(_)) {
                        let _ = c.out.try_send(message.clone());
                    }
                }
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
            } => {
                if role != Role::Idle {
                    return self.tell(
                        client,
                        error(
                            ErrorCode::AlreadyJoined,
                            "you already joined or asked to join",
                        ),
                    );
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
                if identity.is_authenticated()
                    || waiting
                    || !self.state.plugins.screens_lobby_requests()
                {
                    return self.join(client, identity, origin, name, Vec::new(), now);
                }
                if let Err(err) = self.call.may_ask(&identity, &origin) {
                    return self.refuse_join(client, err);
                }
                self.set_role(client, Role::Screening);
                self.screen(client, identity, origin, name, address, now);
            }
            Action::Screened {
                identity,
                origin,
                name,
                verdict,
            } => {
                if role != Role::Screening {
                    return; // gone, or asked again in the meantime
                }
                self.set_role(client, Role::Idle);
                match verdict {
                    plugins::Verdict::Allow => {
                        self.join(client, identity, origin, name, Vec::new(), now)
                    }
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
            Action::Resume { resume_token } => {
                if role != Role::Idle {
                    return self.tell(
                        client,
                        error(
                            ErrorCode::AlreadyJoined,
                            "you already joined or asked to join",
                        ),
                    );
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
                    Err(err) => self.tell(client, error(ErrorCode::ResumeExpired, err.to_string())),
                }
            }
            Action::Decide { request, decision } => {
                let Role::On(me) = role else {
                    return self.tell(client, error(ErrorCode::NotJoined, "join the call first"));
                };
                if self.powerless(client) {
                    return self.tell_signed_out(client);
                }
                match self.call.decide(me, RequestId(request), decision, now) {
                    Ok(Some(seat)) => {
                        if let Some(name) = self.request_names.get(&RequestId(request)).cloned() {
                            self.participant_names.insert(seat.participant, name);
                        }
                        if let Some(guest) = self.client_with(Role::Waiting(RequestId(request))) {
                            self.seat_client(guest, seat);
                        }
                    }
                    Ok(None) => {}
                    Err(err) => {
                        let code = match err {
                            DecideError::NotAllowed => ErrorCode::NotAllowed,
                            DecideError::NoSuchRequest => ErrorCode::NoSuchRequest,
                            DecideError::Full => ErrorCode::CallFull,
                            DecideError::NotOnCall => ErrorCode::NotJoined,
                        };
                        self.tell(client, error(code, err.to_string()));
                    }
                }
            }
            Action::Remove { participant } => {
                let Role::On(me) = role else {
                    return self.tell(client, error(ErrorCode::NotJoined, "join the call first"));
                };
                if self.powerless(client) {
                    return self.tell_signed_out(client);
                }
                if let Err(err) = self.call.remove(me, ParticipantId(participant), now) {
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
            Action::LockLobby { locked } => {
                let Role::On(me) = role else {
                    return self.tell(client, error(ErrorCode::NotJoined, "join the call first"));
                };
                if self.powerless(client) {
                    return self.tell_signed_out(client);
                }
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
            Action::SignedOut => {
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
            | Action::SubscribeAnswer { .. }
            | Action::SetQuality { .. }
            | Action::Mute(_) => {
                let Role::On(me) = role else {
                    return self.tell(client, error(ErrorCode::NotJoined, "join the call first"));
                };
                let call = self.link_pk;
                let participant = me.0;
                if let Action::SetQuality {
                    participant: publisher,
                    ..
                } = action
                    && (publisher == me.0
                        || self.call.participant(ParticipantId(publisher)).is_none())
                {
                    return self.tell(
                        client,
                        error(
                            ErrorCode::NoSuchParticipant,
                            format!("participant {publisher} is not someone else on this call"),
                        ),
                    );
                }
                let command = match action {
                    Action::Publish { sdp } => {
                        let Some(out) = self.clients.get(&client).map(|c| c.out.clone()) else {
                            return;
                        };
                        self.media_states.entry(me).or_default();
                        sfu::Command::Publish {
                            call,
                            participant,
                            offer: sdp,
                            events: std::sync::Arc::new(out),
                        }
                    }
                    Action::SubscribeAnswer { sdp } => {
                        let Some(out) = self.clients.get(&client).map(|c| c.out.clone()) else {
                            return;
                        };
                        sfu::Command::SubscribeAnswer {
                            call,
                            participant,
                            answer: sdp,
                            events: std::sync::Arc::new(out),
                        }
                    }
                    Action::SetQuality {
                        participant: publisher,
                        layer,
                    } => sfu::Command::SetQuality {
                        call,
                        participant,
                        publisher,
                        layer: usize::from(layer),
                    },
                    Action::Mute(media_state) => {
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
                        if let Some(media) = self.state.media.as_ref()
                            && let Err(busy) = media.send(sfu::Command::Sharing {
                                call,
                                participant,
                                screen: media_state.sharing_screen,
                            })
                        {
                            self.tell(client, error(ErrorCode::MediaUnavailable, busy.to_string()));
                        }
                        return;
                    }
                    _ => return,
                };
                self.media(client, command);
            }
            Action::PluginMessage { plugin, payload } => {
                let Role::On(me) = role else {
                    return self.tell(client, error(ErrorCode::NotJoined, "join the call first"));
                };
                let Some(out) = self.clients.get(&client).map(|c| c.out.clone()) else {
                    return;
                };
                if !self.state.plugins.takes_call_messages(&plugin) {
                    return self.tell(
                        client,
                        error(
                            ErrorCode::PluginUnavailable,
                            format!("{plugin} is not a plugin that takes call messages here"),
                        ),
                    );
                }
                let inbox = self.plugin_inbox(&plugin);
                if inbox
                    .try_send(InboxMessage {
                        sender: me.0,
                        payload,
                        out,
                    })
                    .is_err()
                {
                    self.tell(
                        client,
                        error(
                            ErrorCode::PluginUnavailable,
                            format!("{plugin} is not keeping up; the message was dropped"),
                        ),
                    );
                }
            }
            Action::Keys { to, payload } => {
                let Role::On(me) = role else {
                    return self.tell(client, error(ErrorCode::NotJoined, "join the call first"));
                };
                if let Some(to) = to
                    && (to == me.0 || !self.call.participants().any(|p| p.id.0 == to))
                {
                    return self.tell(
                        client,
                        error(
                            ErrorCode::NoSuchParticipant,
                            format!("participant {to} is not on this call"),
                        ),
                    );
                }
                let message = ServerMessage::E2ee {
                    from: me.0,
                    payload,
                };
                for (id, c) in &self.clients {
                    let Role::On(them) = c.role else { continue };
                    if them == me || to.is_some_and(|to| to != them.0) || *id == client {
                        continue;
                    }
                    let _ = c.out.try_send(message.clone());
                }
            }
            Action::Plugin { .. } => {}
            #[cfg(feature = "test-tap")]
            Action::ForgeKeys { .. } => {}
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

    /// Whether `client` is a member whose sign-in ended.
    fn powerless(&self, client: ClientId) -> bool {
        self.clients.get(&client).is_some_and(|c| c.powerless)
    }

    fn tell_signed_out(&self, client: ClientId) {
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
    fn link_changed(&mut self, change: LinkChange) {
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

    /// Re-reads the link off the call's task; a difference is announced to every
    /// listener (this call and the link's connections) as a [`LinkChange`].
    fn recheck_link(&self) {
        let store = self.state.store.clone();
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

    /// Seats `client` or puts them in the lobby (with the plugins' warnings, if any).
    fn join(
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

    fn refuse_join(&self, client: ClientId, err: JoinError) {
        let code = match err {
            JoinError::Full => ErrorCode::CallFull,
            JoinError::Blocked => ErrorCode::Blocked,
            JoinError::Removed => ErrorCode::Removed,
            JoinError::LobbyLocked => ErrorCode::LobbyLocked,
            JoinError::LobbyFull => ErrorCode::LobbyFull,
            JoinError::TooManyFromNetwork => ErrorCode::TooManyRequests,
        };
        match err {
            JoinError::LobbyFull => self.state.metrics.count_refused("max_lobby_requests"),
            JoinError::TooManyFromNetwork => {
                self.state.metrics.count_refused("max_waiting_per_address")
            }
            _ => {}
        }
        self.tell(client, error(code, err.to_string()));
    }

    /// Asks the plugins that screen lobby requests about a guest's request, off the
    /// call's task; their verdict comes back as [`Action::Screened`]. The plugins
    /// answer within their deadlines, so the guest waits at most that long.
    fn screen(
        &self,
        client: ClientId,
        identity: Identity,
        origin: Origin,
        name: String,
        address: Option<IpAddr>,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let Some(out) = self.clients.get(&client).map(|c| c.out.clone()) else {
            return;
        };
        let state = self.state.clone();
        let queue = self.own_queue.clone();
        let request = plugins::LobbyInfo {
            call: self.call_info(),
            request: 0,
            name: name.clone(),
            address: address.map(|a| a.to_string()),
            asked_at: now,
        };
        tokio::spawn(async move {
            let verdict = state.plugins.lobby_decision(&state, &request).await;
            if let Some(queue) = queue.upgrade() {
                let _ = queue
                    .send(Command {
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

    fn call_info(&self) -> plugins::CallInfo {
        plugins::CallInfo {
            link: self.link_id.clone(),
            id: self.call_id.clone(),
            started_at: self
                .call
                .started_at()
                .unwrap_or_else(|| self.state.clock.now()),
        }
    }

    /// The queue of `plugin`'s call messages, started on first use.
    fn plugin_inbox(&mut self, plugin: &str) -> mpsc::Sender<InboxMessage> {
        if let Some(inbox) = self.plugin_inboxes.get(plugin).filter(|q| !q.is_closed()) {
            return inbox.clone();
        }
        let (inbox, mut messages) = mpsc::channel::<InboxMessage>(PLUGIN_INBOX);
        let state = self.state.clone();
        let name = plugin.to_string();
        let call = self.call_info();
        tokio::spawn(async move {
            while let Some(m) = messages.recv().await {
                if let Err(e) = state
                    .plugins
                    .call_message(&state, &name, &call, m.sender, m.payload)
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

    fn plugin_action(
        &mut self,
        action: PluginCallAction,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<RosterMember>, PluginCallError> {
        match action {
            PluginCallAction::Roster => Ok(self
                .call
                .participants()
                .map(|p| RosterMember {
                    id: p.id.0,
                    name: p.name.clone(),
                    user: p.identity.user_id(),
                    joined_at: p.joined_at,
                })
                .collect()),
            PluginCallAction::Send {
                plugin,
                to,
                payload,
            } => {
                use base64::Engine as _;
                let message = ServerMessage::Plugin {
                    plugin,
                    payload: base64::engine::general_purpose::STANDARD.encode(payload),
                };
                match to {
                    Some(id) => {
                        let client = self
                            .client_with(Role::On(ParticipantId(id)))
                            .ok_or(PluginCallError::NoSuchParticipant)?;
                        self.tell(client, message);
                    }
                    None => {
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
                }
                Ok(Vec::new())
            }
            PluginCallAction::Remove {
                as_user,
                participant,
            } => {
                let me = self
                    .call
                    .participants()
                    .find(|p| p.identity == Identity::Member { user_id: as_user })
                    .map(|p| p.id)
                    .ok_or_else(|| {
                        PluginCallError::NotAllowed(
                            "the user is not on this call, so cannot remove anyone".into(),
                        )
                    })?;
                self.call
                    .remove(me, ParticipantId(participant), now)
                    .map_err(|e| match e {
                        RemoveError::NoSuchParticipant => PluginCallError::NoSuchParticipant,
                        other => PluginCallError::NotAllowed(other.to_string()),
                    })?;
                Ok(Vec::new())
            }
        }
    }

    /// Tells plugins what happened on the call.
    fn tell_plugins(&mut self, event: &CallEvent) {
        let call = self.call_info();
        let plugin_event = match *event {
            CallEvent::Started => plugins::Event::CallStarted(call),
            CallEvent::Ended => plugins::Event::CallEnded(call),
            // Straight in, or admitted from the lobby: either way the person joined.
            CallEvent::Joined { participant } | CallEvent::Admitted { participant, .. } => {
                let Some(p) = self.call.participant(participant) else {
                    return;
                };
                let info = plugins::ParticipantInfo {
                    id: p.id.0,
                    name: p.name.clone(),
                    user: p.identity.user_id(),
                    joined_at: p.joined_at,
                };
                self.plugin_people.insert(participant, info.clone());
                plugins::Event::ParticipantJoined(call, info)
            }
            CallEvent::Left { participant, .. } => {
                let Some(info) = self.plugin_people.remove(&participant) else {
                    return;
                };
                plugins::Event::ParticipantLeft(call, info)
            }
            CallEvent::Removed { participant, by } => {
                let Some(info) = self.plugin_people.remove(&participant) else {
                    return;
                };
                plugins::Event::ParticipantRemoved {
                    call,
                    participant: info,
                    by: by.0,
                }
            }
            CallEvent::LobbyRequested { request } => {
                let Some(r) = self.call.lobby().find(|r| r.id == request) else {
                    return;
                };
                plugins::Event::LobbyRequest(plugins::LobbyInfo {
                    call,
                    request: request.0,
                    name: r.name.clone(),
                    address: None,
                    asked_at: r.asked_at,
                })
            }
            _ => return,
        };
        plugins::emit(&self.state, plugin_event);
    }

    /// Passes a command to the SFU, or tells the client why it cannot.
    fn media(&self, client: ClientId, command: sfu::Command) {
        let Some(media) = self.state.media.as_ref() else {
            return self.tell(
                client,
                error(
                    ErrorCode::MediaUnavailable,
                    "media is not running on this server",
                ),
            );
        };
        if let Err(busy) = media.send(command) {
            self.tell(client, error(ErrorCode::MediaUnavailable, busy.to_string()));
        }
    }

    /// Closes a participant's media connections.
    fn media_leave(&mut self, participant: ParticipantId) {
        self.media_states.remove(&participant);
        if let Some(media) = self.state.media.as_ref() {
            let _ = media.send(sfu::Command::Leave {
                call: self.link_pk,
                participant: participant.0,
            });
        }
    }

    fn seat_client(&mut self, client: ClientId, seat: Seat) {
        self.set_role(client, Role::On(seat.participant));
        self.tell(
            client,
            ServerMessage::Joined {
                participant: seat.participant.0,
                resume_token: seat.resume_token,
                call: self.call_id.clone(),
            },
        );
    }

    /// Turns the call's events into messages and metadata, then sends fresh snapshots.
    fn publish(&mut self) {
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
                CallEvent::Admitted { request, .. } => {
                    self.request_warnings.remove(&request);
                    let name = self.request_names.remove(&request);
                    self.record(CallEventKind::Admitted, name);
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
                    self.media_leave(participant);
                    self.participant_names.remove(&participant);
                    if why == LeaveReason::ConnectionLost
                        && let Some(gone) = self.client_with(Role::On(participant))
                    {
                        self.set_role(gone, Role::Idle);
                    }
                }
                CallEvent::Joined { .. }
                | CallEvent::ConnectionDropped { .. }
                | CallEvent::Resumed { .. }
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
    fn send_snapshots(&mut self) {
        let window = self.state.call_rules().removal_window;
        let roster: Vec<RosterEntry> = self
            .call
            .participants()
            .map(|p| RosterEntry {
                participant: p.id.0,
                name: p.name.clone(),
                guest: !p.identity.is_authenticated(),
                owner: p.is_owner,
                joined_at: p.joined_at,
                connected: p.connection == super::Connection::Connected,
                audio_muted: self.media_states.get(&p.id).is_some_and(|m| m.audio_muted),
                video_muted: self.media_states.get(&p.id).is_some_and(|m| m.video_muted),
                sharing_screen: self
                    .media_states
                    .get(&p.id)
                    .is_some_and(|m| m.sharing_screen),
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
        let now = self.state.clock.now();
        let deciders: Vec<ParticipantId> = self
            .call
            .participants()
            .filter(|p| p.identity.is_authenticated())
            .map(|p| p.id)
            .collect();
        for client in self.clients.values_mut() {
            let Role::On(me) = client.role else { continue };
            let _ = client.out.try_send(ServerMessage::Roster {
                participants: roster.clone(),
                now,
            });
            if deciders.contains(&me) && !client.powerless && client.lobby_sent != Some(digest) {
                let sent = client.out.try_send(ServerMessage::Lobby {
                    requests: lobby.clone(),
                    total,
                    locked,
                    now,
                });
                if sent.is_ok() {
                    client.lobby_sent = Some(digest);
                }
            }
        }
    }

    /// Appends to the call-metadata log without holding up the call.
    fn record(&self, kind: CallEventKind, subject: Option<String>) {
        let store = self.state.store.clone();
        let link_id = self.link_id.clone();
        let now = self.state.clock.now();
        tokio::spawn(async move {
            if let Err(err) = privacy::record(&store, &link_id, kind, subject.as_deref(), now).await
            {
                tracing::warn!(error = %err, "could not write call metadata");
            }
        });
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
