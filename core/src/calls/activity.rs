//! Shared activities (watch together, a shared board, …): what the server keeps so
//! a plugin's web code on every page of a call can share a session, like FaceTime's
//! SharePlay. Payloads are sealed by the pages with the call's end-to-end keys; the
//! server only sees who is in which activity and relays ciphertext.
//!
//! [`Activities`] is a plain state machine, one per call, with at most one activity
//! per plugin. It does no I/O and never reads the clock: every method takes `now`
//! and returns the [`Delivery`]s to make. What it keeps per activity:
//! - **presence**: who joined, in order; the *host* is who started it (then the
//!   earliest remaining member);
//! - **ordered updates** to the shared state: each gets the next sequence number
//!   here, so every page applies them in the same order;
//! - a **late-join snapshot**: a newcomer's page is sent the state by the earliest
//!   other member's page, re-sealed for it; if none answers within
//!   [`ActivityRules::snapshot_wait`], the last snapshot a page left here and the
//!   updates after it are sent instead;
//! - a bounded log of recent updates ([`ActivityRules::log_entries`],
//!   [`ActivityRules::log_bytes`]) to bridge a snapshot and the newcomer's join.
//!
//! The activity ends when its last member leaves; nothing of it outlives the call.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Duration, Utc};

use super::ParticipantId;
use crate::protocol::{ActivityMember, ActivityRole, ErrorCode, ServerMessage};

/// Largest sealed payload of an activity message, update or snapshot, in bytes.
pub const MAX_ACTIVITY_PAYLOAD_BYTES: usize = 32 * 1024;
/// The same, in characters of standard base64 (what the protocol carries).
pub const MAX_ACTIVITY_PAYLOAD: usize = MAX_ACTIVITY_PAYLOAD_BYTES.div_ceil(3) * 4;
/// Most participants one `activity_send` names.
pub const MAX_ACTIVITY_RECIPIENTS: usize = crate::calls::MAX_PARTICIPANTS as usize;

/// The limits of activities, from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActivityRules {
    /// How long a newcomer waits for another member's snapshot before the
    /// server's copy is sent.
    pub snapshot_wait: Duration,
    /// Updates kept per activity after its stored snapshot.
    pub log_entries: usize,
    /// Bytes (of base64) those updates may take.
    pub log_bytes: usize,
}

impl Default for ActivityRules {
    fn default() -> Self {
        Self {
            snapshot_wait: Duration::seconds(1),
            log_entries: 256,
            log_bytes: 1024 * 1024,
        }
    }
}

/// Who gets a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipients {
    /// Everyone on the call (presence, so pages can offer to join).
    Everyone,
    One(ParticipantId),
    Some(Vec<ParticipantId>),
}

/// A message to deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub to: Recipients,
    pub message: ServerMessage,
}

/// Why an activity request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: ErrorCode,
    pub message: String,
}

fn refuse(code: ErrorCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

#[derive(Debug, Clone)]
struct Sealed {
    seq: u64,
    from: ParticipantId,
    payload: String,
}

/// A newcomer waiting for a member's snapshot.
#[derive(Debug, Clone)]
struct Pending {
    newcomer: ParticipantId,
    asked: ParticipantId,
    /// The last update the newcomer was not sent live.
    joined_after: u64,
    deadline: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Activity {
    host: Option<ParticipantId>,
    members: Vec<ParticipantId>,
    /// The sequence number of the last update (0: none yet).
    seq: u64,
    log: VecDeque<Sealed>,
    log_bytes: usize,
    snapshot: Option<Sealed>,
    pending: Vec<Pending>,
}

impl Activity {
    fn is_member(&self, p: ParticipantId) -> bool {
        self.members.contains(&p)
    }
}

/// The activities of one call.
#[derive(Debug, Default)]
pub struct Activities {
    rules: ActivityRules,
    by_plugin: BTreeMap<String, Activity>,
}

impl Activities {
    pub fn new(rules: ActivityRules) -> Self {
        Self {
            rules,
            by_plugin: BTreeMap::new(),
        }
    }

    /// The presence of every running activity, for someone who just joined the call.
    pub fn presences(&self, is_guest: &dyn Fn(ParticipantId) -> bool) -> Vec<ServerMessage> {
        self.by_plugin
            .iter()
            .map(|(plugin, a)| presence(plugin, a, is_guest))
            .collect()
    }

    /// The members of `plugin`'s activity in the order they joined, and whether
    /// each is its host (empty when none runs).
    pub fn members(&self, plugin: &str) -> Vec<(ParticipantId, bool)> {
        self.by_plugin
            .get(plugin)
            .map(|a| a.members.iter().map(|&p| (p, a.host == Some(p))).collect())
            .unwrap_or_default()
    }

    /// When the next newcomer stops waiting for a member's snapshot.
    pub fn next_deadline(&self) -> Option<DateTime<Utc>> {
        self.by_plugin
            .values()
            .flat_map(|a| a.pending.iter().map(|p| p.deadline))
            .min()
    }

    /// `me` starts or joins `plugin`'s activity (again, to get the state anew after
    /// a reconnect).
    pub fn join(
        &mut self,
        plugin: &str,
        me: ParticipantId,
        now: DateTime<Utc>,
        is_guest: &dyn Fn(ParticipantId) -> bool,
    ) -> Vec<Delivery> {
        let wait = self.rules.snapshot_wait;
        let activity = self.by_plugin.entry(plugin.to_string()).or_default();
        let mut out = Vec::new();
        if !activity.is_member(me) {
            activity.members.push(me);
            activity.host.get_or_insert(me);
            out.push(Delivery {
                to: Recipients::Everyone,
                message: presence(plugin, activity, is_guest),
            });
        }
        activity.pending.retain(|p| p.newcomer != me);
        match activity.members.iter().copied().find(|&p| p != me) {
            Some(asked) => {
                activity.pending.push(Pending {
                    newcomer: me,
                    asked,
                    joined_after: activity.seq,
                    deadline: now + wait,
                });
                out.push(Delivery {
                    to: Recipients::One(asked),
                    message: ServerMessage::ActivitySnapshotRequest {
                        plugin: plugin.to_string(),
                        newcomer: me.0,
                    },
                });
            }
            None => out.extend(stored_snapshot(plugin, activity, me, activity.seq)),
        }
        out
    }

    /// `me` leaves `plugin`'s activity.
    pub fn leave(
        &mut self,
        plugin: &str,
        me: ParticipantId,
        now: DateTime<Utc>,
        is_guest: &dyn Fn(ParticipantId) -> bool,
    ) -> Result<Vec<Delivery>, Refusal> {
        let wait = self.rules.snapshot_wait;
        let activity = self.member_of(plugin, me)?;
        activity.members.retain(|&p| p != me);
        activity.pending.retain(|p| p.newcomer != me);
        let mut out = Vec::new();
        if activity.members.is_empty() {
            self.by_plugin.remove(plugin);
            out.push(Delivery {
                to: Recipients::Everyone,
                message: ended(plugin),
            });
            return Ok(out);
        }
        if activity.host == Some(me) {
            activity.host = activity.members.first().copied();
        }
        out.push(Delivery {
            to: Recipients::Everyone,
            message: presence(plugin, activity, is_guest),
        });
        // Whoever waited on the leaver's page asks the next member, or gets the
        // server's copy.
        let orphans: Vec<Pending> = activity
            .pending
            .iter()
            .filter(|p| p.asked == me)
            .cloned()
            .collect();
        activity.pending.retain(|p| p.asked != me);
        for orphan in orphans {
            match activity
                .members
                .iter()
                .copied()
                .find(|&p| p != orphan.newcomer)
            {
                Some(asked) => {
                    activity.pending.push(Pending {
                        asked,
                        deadline: now + wait,
                        ..orphan
                    });
                    out.push(Delivery {
                        to: Recipients::One(asked),
                        message: ServerMessage::ActivitySnapshotRequest {
                            plugin: plugin.to_string(),
                            newcomer: orphan.newcomer.0,
                        },
                    });
                }
                None => out.extend(stored_snapshot(
                    plugin,
                    activity,
                    orphan.newcomer,
                    orphan.joined_after,
                )),
            }
        }
        Ok(out)
    }

    /// `me` left the call: out of every activity.
    pub fn left_call(
        &mut self,
        me: ParticipantId,
        now: DateTime<Utc>,
        is_guest: &dyn Fn(ParticipantId) -> bool,
    ) -> Vec<Delivery> {
        let plugins: Vec<String> = self
            .by_plugin
            .iter()
            .filter(|(_, a)| a.is_member(me))
            .map(|(p, _)| p.clone())
            .collect();
        plugins
            .iter()
            .flat_map(|plugin| self.leave(plugin, me, now, is_guest).unwrap_or_default())
            .collect()
    }

    /// A message from `me` to the other members, or to those of them in `to`.
    pub fn send(
        &mut self,
        plugin: &str,
        me: ParticipantId,
        to: Option<Vec<ParticipantId>>,
        payload: String,
    ) -> Result<Vec<Delivery>, Refusal> {
        let activity = self.member_of(plugin, me)?;
        let recipients = match to {
            None => activity
                .members
                .iter()
                .copied()
                .filter(|&p| p != me)
                .collect(),
            Some(to) => {
                if let Some(stranger) = to.iter().find(|&&p| p == me || !activity.is_member(p)) {
                    return Err(refuse(
                        ErrorCode::NoSuchParticipant,
                        format!("participant {} is not in this activity", stranger.0),
                    ));
                }
                to
            }
        };
        Ok(vec![Delivery {
            to: Recipients::Some(recipients),
            message: ServerMessage::ActivityMessage {
                plugin: plugin.to_string(),
                from: me.0,
                payload,
            },
        }])
    }

    /// An update to the shared state from `me`: numbered, kept, and sent to every
    /// member (`me` included, so every page applies it in the same place).
    pub fn update(
        &mut self,
        plugin: &str,
        me: ParticipantId,
        payload: String,
    ) -> Result<Vec<Delivery>, Refusal> {
        let rules = self.rules;
        let activity = self.member_of(plugin, me)?;
        activity.seq += 1;
        let seq = activity.seq;
        activity.log_bytes += payload.len();
        activity.log.push_back(Sealed {
            seq,
            from: me,
            payload: payload.clone(),
        });
        while activity.log.len() > rules.log_entries || activity.log_bytes > rules.log_bytes {
            let Some(old) = activity.log.pop_front() else {
                break;
            };
            activity.log_bytes -= old.payload.len();
        }
        Ok(vec![Delivery {
            to: Recipients::Some(activity.members.clone()),
            message: ServerMessage::ActivityUpdate {
                plugin: plugin.to_string(),
                seq,
                from: me.0,
                payload,
            },
        }])
    }

    /// `me`'s page sends the state as of update `seq`: for the newcomer it was
    /// asked about, and as the copy the server keeps for later newcomers.
    pub fn snapshot(
        &mut self,
        plugin: &str,
        me: ParticipantId,
        newcomer: Option<ParticipantId>,
        seq: u64,
        payload: String,
    ) -> Result<Vec<Delivery>, Refusal> {
        let activity = self.member_of(plugin, me)?;
        if seq > activity.seq {
            return Err(refuse(
                ErrorCode::BadMessage,
                format!("the last update is {}, not {seq}", activity.seq),
            ));
        }
        let sealed = Sealed {
            seq,
            from: me,
            payload,
        };
        let mut out = Vec::new();
        if let Some(newcomer) = newcomer {
            let Some(at) = activity
                .pending
                .iter()
                .position(|p| p.newcomer == newcomer && p.asked == me)
            else {
                return Err(refuse(
                    ErrorCode::NoSuchParticipant,
                    format!("nobody asked for a snapshot for participant {}", newcomer.0),
                ));
            };
            let pending = activity.pending.remove(at);
            out.extend(catch_up(
                plugin,
                activity,
                &sealed,
                newcomer,
                pending.joined_after,
            ));
        }
        if activity.snapshot.as_ref().is_none_or(|s| s.seq <= seq) {
            // What the log must still bridge starts after this snapshot.
            while activity.log.front().is_some_and(|u| u.seq <= seq) {
                if let Some(old) = activity.log.pop_front() {
                    activity.log_bytes -= old.payload.len();
                }
            }
            activity.snapshot = Some(sealed);
        }
        Ok(out)
    }

    /// Newcomers whose member did not answer in time get the server's copy.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<Delivery> {
        let mut out = Vec::new();
        for (plugin, activity) in &mut self.by_plugin {
            let (late, waiting): (Vec<Pending>, Vec<Pending>) =
                activity.pending.drain(..).partition(|p| p.deadline <= now);
            activity.pending = waiting;
            for p in late {
                out.extend(stored_snapshot(
                    plugin,
                    activity,
                    p.newcomer,
                    p.joined_after,
                ));
            }
        }
        out
    }

    /// Every sealed payload kept for `plugin`'s activity: its copy and its log.
    #[cfg(any(test, feature = "test-tap"))]
    pub fn held_payloads(&self, plugin: &str) -> Vec<String> {
        self.by_plugin
            .get(plugin)
            .map(|a| {
                a.snapshot
                    .iter()
                    .chain(a.log.iter())
                    .map(|s| s.payload.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn member_of(&mut self, plugin: &str, me: ParticipantId) -> Result<&mut Activity, Refusal> {
        match self.by_plugin.get_mut(plugin) {
            Some(a) if a.is_member(me) => Ok(a),
            _ => Err(refuse(
                ErrorCode::NotInActivity,
                format!("join the {plugin} activity first"),
            )),
        }
    }
}

fn presence(
    plugin: &str,
    activity: &Activity,
    is_guest: &dyn Fn(ParticipantId) -> bool,
) -> ServerMessage {
    ServerMessage::Activity {
        plugin: plugin.to_string(),
        host: activity.host.map(|h| h.0),
        members: activity
            .members
            .iter()
            .map(|&p| ActivityMember {
                participant: p.0,
                role: if activity.host == Some(p) {
                    ActivityRole::Host
                } else if is_guest(p) {
                    ActivityRole::Guest
                } else {
                    ActivityRole::Member
                },
            })
            .collect(),
    }
}

fn ended(plugin: &str) -> ServerMessage {
    ServerMessage::Activity {
        plugin: plugin.to_string(),
        host: None,
        members: Vec::new(),
    }
}

/// The server's copy for `newcomer`, then the logged updates up to `joined_after`.
fn stored_snapshot(
    plugin: &str,
    activity: &Activity,
    newcomer: ParticipantId,
    joined_after: u64,
) -> Vec<Delivery> {
    match &activity.snapshot {
        Some(s) => catch_up(plugin, activity, s, newcomer, joined_after),
        None => {
            // No copy: the state is every update since the start, if the log
            // still holds them all.
            let empty = Sealed {
                seq: 0,
                from: ParticipantId(0),
                payload: String::new(),
            };
            catch_up(plugin, activity, &empty, newcomer, joined_after)
        }
    }
}

/// `snapshot` for `newcomer`, then the logged updates after it that the newcomer
/// was not sent live (up to `joined_after`). `complete` says whether the log still
/// held them all.
fn catch_up(
    plugin: &str,
    activity: &Activity,
    snapshot: &Sealed,
    newcomer: ParticipantId,
    joined_after: u64,
) -> Vec<Delivery> {
    let missing: Vec<&Sealed> = activity
        .log
        .iter()
        .filter(|u| u.seq > snapshot.seq && u.seq <= joined_after)
        .collect();
    let needed = joined_after.saturating_sub(snapshot.seq);
    let complete = missing.len() as u64 >= needed;
    let next = missing
        .first()
        .map_or(joined_after.max(snapshot.seq) + 1, |u| u.seq);
    let mut out = vec![Delivery {
        to: Recipients::One(newcomer),
        message: ServerMessage::ActivitySnapshot {
            plugin: plugin.to_string(),
            seq: snapshot.seq,
            from: (!snapshot.payload.is_empty()).then_some(snapshot.from.0),
            payload: (!snapshot.payload.is_empty()).then(|| snapshot.payload.clone()),
            next,
            complete,
        },
    }];
    out.extend(missing.into_iter().map(|u| Delivery {
        to: Recipients::One(newcomer),
        message: ServerMessage::ActivityUpdate {
            plugin: plugin.to_string(),
            seq: u.seq,
            from: u.from.0,
            payload: u.payload.clone(),
        },
    }));
    out
}

#[cfg(test)]
mod tests;
