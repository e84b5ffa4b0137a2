//! Calls: who is on a call, who waits in the lobby, and the rules between them.
//!
//! [`Call`] is a plain state machine for one call of one link. It does no I/O and
//! never reads the clock: every method takes `now`, and what happened comes back as
//! [`CallEvent`]s (drained with [`Call::drain_events`]) for signaling, the metadata
//! log and plugins to act on. [`Call::tick`] applies the time-based rules (lobby
//! timeout, reconnect grace) and [`Call::next_deadline`] says when it is next due.
//!
//! The rules, as users expect them from FaceTime links:
//! - the link's owner joins directly and starts the call; other members join directly
//!   or through the lobby, as the link's policy says;
//! - a guest always waits until an authenticated participant is on the call ("waiting
//!   for the host"), then until someone admits them (unless the link lets guests in
//!   directly); the first decision wins; a guest denied twice is blocked for the rest
//!   of the call;
//! - any authenticated participant may remove a guest within the removal window after
//!   the guest joined (30 s by default); after it only the owner may; a removed guest
//!   stays out for the rest of the call;
//! - removals and blocks hold on to more than the key a guest's browser chooses: the
//!   connection and the server-issued device cookie of the request ([`Origin`]) are
//!   refused too, and a new request from the same network waits in the lobby, flagged,
//!   even where guests join directly (docs/security.md, "Who stays out");
//! - the lobby holds at most `max_lobby_requests` requests and `max_waiting_per_network`
//!   from one network; signed-in participants can lock it, and then nobody new asks;
//! - a call holds at most `max_participants` (≤ 32);
//! - a participant whose connection drops keeps their place for the reconnect grace
//!   and comes back with a resume token;
//! - the call ends when the last participant is gone.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use chrono::{DateTime, Duration, Utc};

use crate::secret::{constant_time_eq, random_base62, sha256_hex};

pub mod activity;
pub mod live;
#[cfg(test)]
mod tests;

pub use crate::protocol::WaitingFor;
pub use live::{
    Action, ActivityRequest, CallRegistry, CallRequest, ClientId, MediaState, next_client_id,
};

/// The largest call: the SFU's limit.
pub const MAX_PARTICIPANTS: u8 = 32;

/// Time limits of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRules {
    /// How long after a guest joined any authenticated participant may remove them.
    pub removal_window: Duration,
    /// How long a lobby request waits for a decision.
    pub lobby_timeout: Duration,
    /// How long a dropped participant keeps their place.
    pub reconnect_grace: Duration,
    /// Guests' requests waiting in the lobby at once.
    pub max_lobby_requests: usize,
    /// Guests' requests waiting at once from one network ([`Origin::network`]).
    pub max_waiting_per_network: usize,
    /// The limits of shared activities.
    pub activities: activity::ActivityRules,
}

impl Default for CallRules {
    fn default() -> Self {
        Self {
            removal_window: Duration::seconds(30),
            lobby_timeout: Duration::minutes(10),
            reconnect_grace: Duration::seconds(30),
            max_lobby_requests: 50,
            max_waiting_per_network: 3,
            activities: activity::ActivityRules::default(),
        }
    }
}

/// The link's admission policy, as it was when the call started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallPolicy {
    pub guests_need_approval: bool,
    pub members_need_approval: bool,
    /// 1–32.
    pub max_participants: u8,
}

/// Who someone is, as far as admission is concerned.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Identity {
    /// A signed-in member of the organization.
    Member { user_id: i64 },
    /// A web guest, known by a random key their browser keeps for this link.
    Guest { guest_key: String },
}

impl Identity {
    pub fn is_authenticated(&self) -> bool {
        matches!(self, Identity::Member { .. })
    }

    /// The account of a signed-in member; `None` for guests.
    pub fn user_id(&self) -> Option<i64> {
        match self {
            Identity::Member { user_id } => Some(*user_id),
            Identity::Guest { .. } => None,
        }
    }
}

/// Where a request came from, besides the key the client chose: what removals and
/// blocks hold on to. Every part is optional (a program may send no cookie).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The connection the request came on (unique within the process).
    pub connection: Option<u64>,
    /// The device id of a valid server-issued guest cookie for this link.
    pub device: Option<String>,
    /// The client's network: its IPv4 address, or the /64 of its IPv6 address. Not
    /// proof of anything (NAT, carrier networks): only a reason to ask the people on
    /// the call.
    pub network: Option<IpAddr>,
}

impl Origin {
    /// What a removal or a block of this person holds on to.
    fn marks(&self, identity: &Identity) -> Vec<Mark> {
        let mut marks = vec![Mark::Key(identity.clone())];
        if identity.is_authenticated() {
            return marks; // an account is already more than a key
        }
        if let Some(c) = self.connection {
            marks.push(Mark::Connection(c));
        }
        if let Some(d) = &self.device {
            marks.push(Mark::Device(d.clone()));
        }
        marks
    }
}

pub use crate::limits::network_of;

/// One thing a removal or block holds on to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Mark {
    Key(Identity),
    Connection(u64),
    Device(String),
}

/// Why someone is kept out; a removal outranks a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Bar {
    Blocked,
    Removed,
}

/// Something the people deciding on a request should know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Concern {
    /// From the network of a guest who was removed from this call.
    SameNetworkAsRemoved,
    /// From the network of a guest who was declined twice on this call.
    SameNetworkAsBlocked,
}

/// A participant's id within one call.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct ParticipantId(pub u32);

/// A lobby request's id within one call.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct RequestId(pub u32);

/// Whether a participant's connection is up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connection {
    Connected,
    /// Dropped at `since`; the place is kept for the reconnect grace.
    Dropped {
        since: DateTime<Utc>,
    },
}

/// Someone on the call.
#[derive(Debug, Clone)]
pub struct Participant {
    pub id: ParticipantId,
    pub name: String,
    pub identity: Identity,
    pub is_owner: bool,
    pub joined_at: DateTime<Utc>,
    pub connection: Connection,
    pub origin: Origin,
    resume_token_hash: String,
}

/// Someone waiting in the lobby.
#[derive(Debug, Clone)]
pub struct LobbyRequest {
    pub id: RequestId,
    pub name: String,
    pub identity: Identity,
    pub asked_at: DateTime<Utc>,
    pub origin: Origin,
    /// Why the people deciding may want to look twice.
    pub concerns: Vec<Concern>,
    /// Waits for a person's decision even where guests join directly.
    held: bool,
}

/// A seat on the call: the resume token goes only to the person who got it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seat {
    pub participant: ParticipantId,
    pub resume_token: String,
}

/// The answer to [`Call::join`].
#[derive(Debug, Clone)]
pub enum JoinOutcome {
    Joined(Seat),
    Waiting {
        request: RequestId,
        waiting_for: WaitingFor,
    },
}

/// Why someone cannot join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("this call is full")]
    Full,
    #[error("you were denied twice and cannot ask again during this call")]
    Blocked,
    #[error("you were removed from this call and cannot join it again")]
    Removed,
    #[error("the people on this call locked it: nobody new can ask to join")]
    LobbyLocked,
    #[error("too many people are waiting to join this call; try again in a few minutes")]
    LobbyFull,
    #[error("too many requests from your network are waiting to join this call")]
    TooManyFromNetwork,
}

/// A decision on a lobby request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Decision {
    Admit,
    Deny,
}

/// Why a decision was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    #[error("only signed-in participants can admit or deny")]
    NotAllowed,
    #[error("this request was already decided, withdrawn or expired")]
    NoSuchRequest,
    #[error("this call is full")]
    Full,
    #[error("you are not on this call")]
    NotOnCall,
}

/// Why a removal was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RemoveError {
    #[error("only signed-in participants can remove guests")]
    NotAllowed,
    #[error("only the link's owner can remove a guest after their first {window_secs} seconds")]
    WindowPassed { window_secs: i64 },
    #[error("only guests can be removed")]
    NotAGuest,
    #[error("no such participant")]
    NoSuchParticipant,
    #[error("you are not on this call")]
    NotOnCall,
}

/// Why a resume failed: the client must join again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    #[error("your place in the call has expired; join again")]
    Expired,
}

/// How someone left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaveReason {
    Left,
    ConnectionLost,
}

/// Why a lobby request ended without a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestEnd {
    Withdrawn,
    TimedOut,
    CallEnded,
    /// The link was revoked or deleted.
    LinkRevoked,
    /// The link got a new id and the request came through the old one.
    LinkRotated,
}

/// What happened on a call, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    Started,
    Ended,
    /// Someone asked to join (visible to authenticated participants once one is present).
    LobbyRequested {
        request: RequestId,
    },
    /// An authenticated participant arrived: requests waiting for the host now wait for approval.
    LobbyOpened,
    Admitted {
        request: RequestId,
        participant: ParticipantId,
        by: Option<ParticipantId>,
    },
    Denied {
        request: RequestId,
        by: ParticipantId,
        blocked: bool,
    },
    RequestEnded {
        request: RequestId,
        why: RequestEnd,
    },
    Joined {
        participant: ParticipantId,
    },
    Left {
        participant: ParticipantId,
        why: LeaveReason,
    },
    Removed {
        participant: ParticipantId,
        by: ParticipantId,
    },
    ConnectionDropped {
        participant: ParticipantId,
    },
    Resumed {
        participant: ParticipantId,
    },
    /// The lobby was locked or unlocked by a signed-in participant.
    LobbyLockChanged {
        locked: bool,
        by: ParticipantId,
    },
    /// A signed-in participant suspended every guest's media (or resumed it).
    GuestsSuspended {
        suspended: bool,
        by: ParticipantId,
    },
    /// The call was ended for everyone (its link was revoked or deleted).
    Closed,
}

/// How a participant got their seat.
#[derive(Debug, Clone, Copy)]
enum Via {
    Direct,
    Request {
        request: RequestId,
        by: Option<ParticipantId>,
    },
}

/// One call of one link.
#[derive(Debug)]
pub struct Call {
    owner_user_id: i64,
    policy: CallPolicy,
    rules: CallRules,
    participants: BTreeMap<ParticipantId, Participant>,
    lobby: BTreeMap<RequestId, LobbyRequest>,
    denials: HashMap<Mark, u8>,
    barred: HashMap<Mark, Bar>,
    /// Networks of removed or blocked guests: requests from them wait, flagged.
    suspect_networks: HashMap<IpAddr, Bar>,
    lobby_locked: bool,
    /// No guest's audio, video or screen is forwarded (see [`Call::suspend_guests`]).
    guests_suspended: bool,
    next_id: u32,
    started_at: Option<DateTime<Utc>>,
    ended: bool,
    events: Vec<CallEvent>,
    /// Seats given without a decision call (waiting guests let in when the host came):
    /// each goes privately to the person behind the request.
    admissions: Vec<(RequestId, Seat)>,
}

impl Call {
    pub fn new(owner_user_id: i64, policy: CallPolicy, rules: CallRules) -> Self {
        let policy = CallPolicy {
            max_participants: policy.max_participants.clamp(1, MAX_PARTICIPANTS),
            ..policy
        };
        Self {
            owner_user_id,
            policy,
            rules,
            participants: BTreeMap::new(),
            lobby: BTreeMap::new(),
            denials: HashMap::new(),
            barred: HashMap::new(),
            suspect_networks: HashMap::new(),
            lobby_locked: false,
            guests_suspended: false,
            next_id: 1,
            started_at: None,
            ended: false,
            events: Vec::new(),
            admissions: Vec::new(),
        }
    }

    /// Asks to join. `name` must already be validated (1–64 characters). The
    /// tests' way in; the server joins with an origin ([`Call::join_from`]).
    #[cfg(test)]
    pub fn join(
        &mut self,
        identity: Identity,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<JoinOutcome, JoinError> {
        self.join_from(identity, Origin::default(), name, false, now)
    }

    /// Whether `identity`, asking from `origin`, may ask to join now: not removed or
    /// blocked, the lobby not locked to them, and the call not full.
    pub fn may_ask(&self, identity: &Identity, origin: &Origin) -> Result<(), JoinError> {
        let marks = origin.marks(identity);
        if marks
            .iter()
            .any(|m| self.barred.get(m) == Some(&Bar::Removed))
        {
            return Err(JoinError::Removed);
        }
        let blocked = marks.iter().any(|m| {
            self.barred.get(m) == Some(&Bar::Blocked)
                || self.denials.get(m).copied().unwrap_or(0) >= 2
        });
        if blocked {
            return Err(JoinError::Blocked);
        }
        // A locked lobby holds back guests and members who would wait; the owner and
        // members the link lets in directly are not strangers.
        let member_direct = match identity {
            Identity::Member { .. } => {
                self.is_owner(identity) || !self.policy.members_need_approval
            }
            Identity::Guest { .. } => false,
        };
        if self.lobby_locked && !member_direct && !self.is_waiting(identity) {
            return Err(JoinError::LobbyLocked);
        }
        if self.is_full() {
            // Nobody could admit them anyway: say so now rather than after a wait.
            return Err(JoinError::Full);
        }
        Ok(())
    }

    /// Like [`Call::join`]; with `must_wait`, a guest goes through the lobby even
    /// where the link lets guests in directly (a plugin flagged the request).
    #[cfg(test)]
    pub fn join_with(
        &mut self,
        identity: Identity,
        name: &str,
        must_wait: bool,
        now: DateTime<Utc>,
    ) -> Result<JoinOutcome, JoinError> {
        self.join_from(identity, Origin::default(), name, must_wait, now)
    }

    /// Asks to join from `origin` (see [`Call::join_with`]).
    pub fn join_from(
        &mut self,
        identity: Identity,
        origin: Origin,
        name: &str,
        must_wait: bool,
        now: DateTime<Utc>,
    ) -> Result<JoinOutcome, JoinError> {
        self.may_ask(&identity, &origin)?;
        if let Some(request) = self.lobby.values().find(|r| r.identity == identity) {
            // Asking again while waiting keeps the place in the queue.
            return Ok(JoinOutcome::Waiting {
                request: request.id,
                waiting_for: self.waiting_for(),
            });
        }
        let is_owner = self.is_owner(&identity);
        let concerns: Vec<Concern> = match (&identity, origin.network) {
            (Identity::Guest { .. }, Some(network)) => self
                .suspect_networks
                .get(&network)
                .map(|bar| match bar {
                    Bar::Removed => Concern::SameNetworkAsRemoved,
                    Bar::Blocked => Concern::SameNetworkAsBlocked,
                })
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        let direct = match &identity {
            Identity::Member { .. } => is_owner || !self.policy.members_need_approval,
            // The lobby cannot be bypassed by arriving before the host, and a request
            // that raises a concern waits for a person to decide.
            Identity::Guest { .. } => {
                !self.policy.guests_need_approval
                    && !must_wait
                    && concerns.is_empty()
                    && self.host_present()
            }
        };
        if direct {
            let seat = self.seat(identity, origin, name, is_owner, now)?;
            return Ok(JoinOutcome::Joined(seat));
        }
        if !identity.is_authenticated() {
            let guests = self
                .lobby
                .values()
                .filter(|r| !r.identity.is_authenticated());
            if guests.clone().count() >= self.rules.max_lobby_requests {
                return Err(JoinError::LobbyFull);
            }
            if let Some(network) = origin.network
                && guests.filter(|r| r.origin.network == Some(network)).count()
                    >= self.rules.max_waiting_per_network
            {
                return Err(JoinError::TooManyFromNetwork);
            }
        }
        let id = RequestId(self.take_id());
        self.lobby.insert(
            id,
            LobbyRequest {
                id,
                name: name.to_string(),
                identity,
                asked_at: now,
                origin,
                held: must_wait || !concerns.is_empty(),
                concerns,
            },
        );
        self.events.push(CallEvent::LobbyRequested { request: id });
        Ok(JoinOutcome::Waiting {
            request: id,
            waiting_for: self.waiting_for(),
        })
    }

    /// Admits or denies a lobby request; the first decision wins.
    pub fn decide(
        &mut self,
        by: ParticipantId,
        request: RequestId,
        decision: Decision,
        now: DateTime<Utc>,
    ) -> Result<Option<Seat>, DecideError> {
        let decider = self.participants.get(&by).ok_or(DecideError::NotOnCall)?;
        if !decider.identity.is_authenticated() {
            return Err(DecideError::NotAllowed);
        }
        if !self.lobby.contains_key(&request) {
            return Err(DecideError::NoSuchRequest);
        }
        match decision {
            Decision::Admit => {
                if self.is_full() {
                    return Err(DecideError::Full);
                }
                // Checked just above.
                let waiting = self.lobby.remove(&request).expect("pending request");
                let is_owner = self.is_owner(&waiting.identity);
                let via = Via::Request {
                    request,
                    by: Some(by),
                };
                Ok(Some(self.seat_unchecked(
                    waiting.identity,
                    waiting.origin,
                    &waiting.name,
                    is_owner,
                    now,
                    via,
                )))
            }
            Decision::Deny => {
                let waiting = self.lobby.remove(&request).expect("pending request");
                let mut blocked = false;
                for mark in waiting.origin.marks(&waiting.identity) {
                    let count = self.denials.entry(mark).or_insert(0);
                    *count += 1;
                    blocked |= *count >= 2;
                }
                if blocked {
                    self.bar(&waiting.identity, &waiting.origin, Bar::Blocked);
                }
                self.events.push(CallEvent::Denied {
                    request,
                    by,
                    blocked,
                });
                Ok(None)
            }
        }
    }

    /// The person behind a lobby request gave up waiting.
    pub fn withdraw(&mut self, request: RequestId) {
        self.end_request(request, RequestEnd::Withdrawn);
    }

    /// Ends a lobby request without a decision.
    pub fn end_request(&mut self, request: RequestId, why: RequestEnd) {
        if self.lobby.remove(&request).is_some() {
            self.events.push(CallEvent::RequestEnded { request, why });
        }
    }

    /// Locks or unlocks the lobby: while locked, nobody new may ask to join (the
    /// owner still joins, and requests already waiting can still be decided).
    pub fn set_lobby_locked(&mut self, by: ParticipantId, locked: bool) -> Result<(), DecideError> {
        let who = self.participants.get(&by).ok_or(DecideError::NotOnCall)?;
        if !who.identity.is_authenticated() {
            return Err(DecideError::NotAllowed);
        }
        if self.lobby_locked != locked {
            self.lobby_locked = locked;
            self.events.push(CallEvent::LobbyLockChanged { locked, by });
        }
        Ok(())
    }

    pub fn lobby_locked(&self) -> bool {
        self.lobby_locked
    }

    /// Suspends every guest, or resumes them: while suspended, the media plane
    /// forwards no guest's audio, video or screen (it stays end-to-end encrypted;
    /// the server only stops passing it on), and the lobby is locked. Resuming
    /// unlocks the lobby. Signed-in participants only: the panic button of a call
    /// that is being disrupted.
    pub fn suspend_guests(
        &mut self,
        by: ParticipantId,
        suspended: bool,
    ) -> Result<(), DecideError> {
        let who = self.participants.get(&by).ok_or(DecideError::NotOnCall)?;
        if !who.identity.is_authenticated() {
            return Err(DecideError::NotAllowed);
        }
        if self.guests_suspended == suspended {
            return Ok(());
        }
        self.guests_suspended = suspended;
        self.events
            .push(CallEvent::GuestsSuspended { suspended, by });
        self.set_lobby_locked(by, suspended)
    }

    pub fn guests_suspended(&self) -> bool {
        self.guests_suspended
    }

    /// Ends the call for everyone at once (its link was revoked or deleted): waiting
    /// requests end with `why`, and nobody stays on.
    pub fn close(&mut self, why: RequestEnd) {
        if self.ended {
            return;
        }
        self.ended = true;
        let waiting: Vec<RequestId> = self.lobby.keys().copied().collect();
        for request in waiting {
            self.end_request(request, why);
        }
        self.participants.clear();
        self.events.push(CallEvent::Closed);
        if self.started_at.is_some() {
            self.events.push(CallEvent::Ended);
        }
    }

    /// Keeps a removed or blocked guest out: their key, connection and device, and
    /// flags later requests from their network.
    fn bar(&mut self, identity: &Identity, origin: &Origin, bar: Bar) {
        // A removal is the stronger word: it stays.
        for mark in origin.marks(identity) {
            let held = self.barred.entry(mark).or_insert(bar);
            *held = (*held).max(bar);
        }
        if !identity.is_authenticated()
            && let Some(network) = origin.network
        {
            let held = self.suspect_networks.entry(network).or_insert(bar);
            *held = (*held).max(bar);
        }
    }

    /// Removes a guest: any authenticated participant within the removal window, the
    /// owner at any time.
    pub fn remove(
        &mut self,
        by: ParticipantId,
        target: ParticipantId,
        now: DateTime<Utc>,
    ) -> Result<(), RemoveError> {
        let remover = self.participants.get(&by).ok_or(RemoveError::NotOnCall)?;
        if !remover.identity.is_authenticated() {
            return Err(RemoveError::NotAllowed);
        }
        let remover_is_owner = remover.is_owner;
        let guest = self
            .participants
            .get(&target)
            .ok_or(RemoveError::NoSuchParticipant)?;
        if guest.identity.is_authenticated() {
            return Err(RemoveError::NotAGuest);
        }
        if now - guest.joined_at > self.rules.removal_window && !remover_is_owner {
            return Err(RemoveError::WindowPassed {
                window_secs: self.rules.removal_window.num_seconds(),
            });
        }
        // Checked just above.
        let guest = self.participants.remove(&target).expect("participant");
        self.bar(&guest.identity, &guest.origin, Bar::Removed);
        self.events.push(CallEvent::Removed {
            participant: target,
            by,
        });
        self.end_if_empty();
        Ok(())
    }

    /// A participant hangs up.
    pub fn leave(&mut self, participant: ParticipantId) {
        if self.participants.remove(&participant).is_some() {
            self.events.push(CallEvent::Left {
                participant,
                why: LeaveReason::Left,
            });
            self.end_if_empty();
        }
    }

    /// A participant's connection dropped; their place is kept for the reconnect grace.
    pub fn connection_dropped(&mut self, participant: ParticipantId, now: DateTime<Utc>) {
        if let Some(p) = self.participants.get_mut(&participant)
            && p.connection == Connection::Connected
        {
            p.connection = Connection::Dropped { since: now };
            self.events
                .push(CallEvent::ConnectionDropped { participant });
        }
    }

    /// Comes back with a resume token, within the reconnect grace.
    pub fn resume(
        &mut self,
        resume_token: &str,
        now: DateTime<Utc>,
    ) -> Result<ParticipantId, ResumeError> {
        let hash = sha256_hex(resume_token);
        let grace = self.rules.reconnect_grace;
        let participant = self
            .participants
            .values_mut()
            .find(|p| constant_time_eq(&p.resume_token_hash, &hash))
            .ok_or(ResumeError::Expired)?;
        if let Connection::Dropped { since } = participant.connection
            && now - since > grace
        {
            return Err(ResumeError::Expired);
        }
        // A reconnect may race the old connection's close: either way, connected now.
        participant.connection = Connection::Connected;
        let id = participant.id;
        self.events.push(CallEvent::Resumed { participant: id });
        Ok(id)
    }

    /// A participant came back on a new connection: a removal from now on holds on to
    /// that one.
    pub fn rebind(&mut self, participant: ParticipantId, connection: u64) {
        if let Some(p) = self.participants.get_mut(&participant) {
            p.origin.connection = Some(connection);
        }
    }

    /// Applies the time-based rules: lobby timeout and reconnect grace.
    pub fn tick(&mut self, now: DateTime<Utc>) {
        let timeout = self.rules.lobby_timeout;
        let expired: Vec<RequestId> = self
            .lobby
            .values()
            .filter(|r| now - r.asked_at >= timeout)
            .map(|r| r.id)
            .collect();
        for request in expired {
            self.lobby.remove(&request);
            self.events.push(CallEvent::RequestEnded {
                request,
                why: RequestEnd::TimedOut,
            });
        }
        let grace = self.rules.reconnect_grace;
        let lost: Vec<ParticipantId> = self
            .participants
            .values()
            .filter(
                |p| matches!(p.connection, Connection::Dropped { since } if now - since > grace),
            )
            .map(|p| p.id)
            .collect();
        for participant in lost {
            self.participants.remove(&participant);
            self.events.push(CallEvent::Left {
                participant,
                why: LeaveReason::ConnectionLost,
            });
        }
        self.end_if_empty();
    }

    /// When [`Call::tick`] has something to do next, if ever (the call task ticks
    /// on a fixed interval; the tests ask).
    #[cfg(test)]
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        let lobby = self
            .lobby
            .values()
            .map(|r| r.asked_at + self.rules.lobby_timeout);
        let grace = self
            .participants
            .values()
            .filter_map(|p| match p.connection {
                Connection::Dropped { since } => {
                    Some(since + self.rules.reconnect_grace + Duration::milliseconds(1))
                }
                Connection::Connected => None,
            });
        lobby.chain(grace).min()
    }

    /// Events since the last call, in order.
    pub fn drain_events(&mut self) -> Vec<CallEvent> {
        std::mem::take(&mut self.events)
    }

    /// Seats given to waiting guests without a decision, for delivery to each guest.
    pub fn drain_admissions(&mut self) -> Vec<(RequestId, Seat)> {
        std::mem::take(&mut self.admissions)
    }

    pub fn participants(&self) -> impl Iterator<Item = &Participant> {
        self.participants.values()
    }

    pub fn participant(&self, id: ParticipantId) -> Option<&Participant> {
        self.participants.get(&id)
    }

    /// Requests in the order they were made.
    pub fn lobby(&self) -> impl Iterator<Item = &LobbyRequest> {
        self.lobby.values()
    }

    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        self.started_at
    }

    /// Once ended, a call stays ended: the link's next use starts a new [`Call`].
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Whether an authenticated participant is on the call (connected or within grace).
    pub fn host_present(&self) -> bool {
        self.participants
            .values()
            .any(|p| p.identity.is_authenticated())
    }

    fn is_owner(&self, identity: &Identity) -> bool {
        *identity
            == Identity::Member {
                user_id: self.owner_user_id,
            }
    }

    fn is_waiting(&self, identity: &Identity) -> bool {
        self.lobby.values().any(|r| r.identity == *identity)
    }

    fn waiting_for(&self) -> WaitingFor {
        if self.host_present() {
            WaitingFor::Approval
        } else {
            WaitingFor::Host
        }
    }

    pub fn is_full(&self) -> bool {
        self.participants.len() >= usize::from(self.policy.max_participants)
    }

    fn take_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn seat(
        &mut self,
        identity: Identity,
        origin: Origin,
        name: &str,
        is_owner: bool,
        now: DateTime<Utc>,
    ) -> Result<Seat, JoinError> {
        if self.is_full() {
            return Err(JoinError::Full);
        }
        Ok(self.seat_unchecked(identity, origin, name, is_owner, now, Via::Direct))
    }

    /// Seats again someone who was on this link's call on another node of a cluster
    /// when that node died: with the resume token they hold and the time they first
    /// joined (the removal window counts from it), without the lobby; refused
    /// only when the call is full.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        &mut self,
        identity: Identity,
        name: &str,
        is_owner: bool,
        joined_at: DateTime<Utc>,
        resume_token: String,
        now: DateTime<Utc>,
    ) -> Result<Seat, JoinError> {
        if self.is_full() {
            return Err(JoinError::Full);
        }
        let seat = self.seat_unchecked(
            identity,
            Origin::default(),
            name,
            is_owner,
            now,
            Via::Direct,
        );
        if let Some(p) = self.participants.get_mut(&seat.participant) {
            p.joined_at = joined_at.min(now);
            p.resume_token_hash = sha256_hex(&resume_token);
        }
        Ok(Seat {
            participant: seat.participant,
            resume_token,
        })
    }

    /// Adds a participant; opens the lobby (and lets guests in directly where the
    /// policy allows) if this is the first authenticated participant.
    fn seat_unchecked(
        &mut self,
        identity: Identity,
        origin: Origin,
        name: &str,
        is_owner: bool,
        now: DateTime<Utc>,
        via: Via,
    ) -> Seat {
        let host_was_present = self.host_present();
        let authenticated = identity.is_authenticated();
        let id = ParticipantId(self.take_id());
        let resume_token = random_base62(32);
        self.participants.insert(
            id,
            Participant {
                id,
                name: name.to_string(),
                identity,
                is_owner,
                joined_at: now,
                connection: Connection::Connected,
                origin,
                resume_token_hash: sha256_hex(&resume_token),
            },
        );
        if self.started_at.is_none() {
            self.started_at = Some(now);
            self.events.push(CallEvent::Started);
        }
        self.events.push(match via {
            Via::Direct => CallEvent::Joined { participant: id },
            Via::Request { request, by } => CallEvent::Admitted {
                request,
                participant: id,
                by,
            },
        });
        if authenticated && !host_was_present && !self.lobby.is_empty() {
            self.events.push(CallEvent::LobbyOpened);
            if !self.policy.guests_need_approval {
                self.admit_waiting_guests(now);
            }
        }
        Seat {
            participant: id,
            resume_token,
        }
    }

    /// With a no-approval link, guests who arrived before the host come in once the host is here.
    fn admit_waiting_guests(&mut self, now: DateTime<Utc>) {
        let waiting: Vec<RequestId> = self
            .lobby
            .values()
            .filter(|r| !r.identity.is_authenticated() && !r.held)
            .map(|r| r.id)
            .collect();
        for request in waiting {
            if self.is_full() {
                break;
            }
            // Collected from the lobby just above.
            let waiting = self.lobby.remove(&request).expect("pending request");
            let seat = self.seat_unchecked(
                waiting.identity,
                waiting.origin,
                &waiting.name,
                false,
                now,
                Via::Request { request, by: None },
            );
            self.admissions.push((request, seat));
        }
    }

    fn end_if_empty(&mut self) {
        if self.participants.is_empty() && self.started_at.is_some() && !self.ended {
            self.ended = true;
            let waiting: Vec<RequestId> = self.lobby.keys().copied().collect();
            for request in waiting {
                self.lobby.remove(&request);
                self.events.push(CallEvent::RequestEnded {
                    request,
                    why: RequestEnd::CallEnded,
                });
            }
            self.events.push(CallEvent::Ended);
        }
    }
}
