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
//!   needs a new approval to come back;
//! - a call holds at most `max_participants` (≤ 32);
//! - a participant whose connection drops keeps their place for the reconnect grace
//!   and comes back with a resume token;
//! - the call ends when the last participant is gone.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Duration, Utc};

use crate::secret::{constant_time_eq, random_base62, sha256_hex};

pub mod live;
#[cfg(test)]
mod tests;

pub use live::{Action, CallRegistry, ClientId, Command, MediaState, next_client_id};

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
}

impl Default for CallRules {
    fn default() -> Self {
        Self {
            removal_window: Duration::seconds(30),
            lobby_timeout: Duration::minutes(10),
            reconnect_grace: Duration::seconds(30),
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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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

/// A participant's id within one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ParticipantId(pub u32);

/// A lobby request's id within one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    resume_token_hash: String,
}

/// Someone waiting in the lobby.
#[derive(Debug, Clone)]
pub struct LobbyRequest {
    pub id: RequestId,
    pub name: String,
    pub identity: Identity,
    pub asked_at: DateTime<Utc>,
}

/// What a waiting person is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitingFor {
    /// Nobody authenticated is on the call yet.
    Host,
    /// Someone on the call has to admit them.
    Approval,
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
}

/// A decision on a lobby request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    denials: HashMap<Identity, u8>,
    removed: HashSet<Identity>,
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
            removed: HashSet::new(),
            next_id: 1,
            started_at: None,
            ended: false,
            events: Vec::new(),
            admissions: Vec::new(),
        }
    }

    /// Asks to join. `name` must already be validated (1–64 characters).
    pub fn join(
        &mut self,
        identity: Identity,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<JoinOutcome, JoinError> {
        self.join_with(identity, name, false, now)
    }

    /// Whether `identity` may ask to join now: not blocked, and the call not full.
    pub fn may_ask(&self, identity: &Identity) -> Result<(), JoinError> {
        if self.denials.get(identity).copied().unwrap_or(0) >= 2 {
            return Err(JoinError::Blocked);
        }
        if self.is_full() {
            // Nobody could admit them anyway: say so now rather than after a wait.
            return Err(JoinError::Full);
        }
        Ok(())
    }

    /// Like [`Call::join`]; with `must_wait`, a guest goes through the lobby even
    /// where the link lets guests in directly (a plugin flagged the request).
    pub fn join_with(
        &mut self,
        identity: Identity,
        name: &str,
        must_wait: bool,
        now: DateTime<Utc>,
    ) -> Result<JoinOutcome, JoinError> {
        self.may_ask(&identity)?;
        if let Some(request) = self.lobby.values().find(|r| r.identity == identity) {
            // Asking again while waiting keeps the place in the queue.
            return Ok(JoinOutcome::Waiting {
                request: request.id,
                waiting_for: self.waiting_for(),
            });
        }
        let is_owner = identity
            == (Identity::Member {
                user_id: self.owner_user_id,
            });
        let direct = match &identity {
            Identity::Member { .. } => is_owner || !self.policy.members_need_approval,
            // The lobby cannot be bypassed by arriving before the host, and a removed
            // guest needs a new approval.
            Identity::Guest { .. } => {
                !self.policy.guests_need_approval
                    && !must_wait
                    && self.host_present()
                    && !self.removed.contains(&identity)
            }
        };
        if direct {
            let seat = self.seat(identity, name, is_owner, now)?;
            return Ok(JoinOutcome::Joined(seat));
        }
        let id = RequestId(self.take_id());
        self.lobby.insert(
            id,
            LobbyRequest {
                id,
                name: name.to_string(),
                identity,
                asked_at: now,
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
                self.removed.remove(&waiting.identity);
                let is_owner = waiting.identity
                    == (Identity::Member {
                        user_id: self.owner_user_id,
                    });
                let via = Via::Request {
                    request,
                    by: Some(by),
                };
                Ok(Some(self.seat_unchecked(
                    waiting.identity,
                    &waiting.name,
                    is_owner,
                    now,
                    via,
                )))
            }
            Decision::Deny => {
                let waiting = self.lobby.remove(&request).expect("pending request");
                let count = self.denials.entry(waiting.identity).or_insert(0);
                *count += 1;
                let blocked = *count >= 2;
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
        if self.lobby.remove(&request).is_some() {
            self.events.push(CallEvent::RequestEnded {
                request,
                why: RequestEnd::Withdrawn,
            });
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
        self.removed.insert(guest.identity);
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

    /// When [`Call::tick`] has something to do next, if ever.
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

    fn waiting_for(&self) -> WaitingFor {
        if self.host_present() {
            WaitingFor::Approval
        } else {
            WaitingFor::Host
        }
    }

    fn is_full(&self) -> bool {
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
        name: &str,
        is_owner: bool,
        now: DateTime<Utc>,
    ) -> Result<Seat, JoinError> {
        if self.is_full() {
            return Err(JoinError::Full);
        }
        Ok(self.seat_unchecked(identity, name, is_owner, now, Via::Direct))
    }

    /// Adds a participant; opens the lobby (and lets guests in directly where the
    /// policy allows) if this is the first authenticated participant.
    fn seat_unchecked(
        &mut self,
        identity: Identity,
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
            .filter(|r| !r.identity.is_authenticated() && !self.removed.contains(&r.identity))
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
