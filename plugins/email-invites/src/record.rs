//! What the plugin remembers about the invitations to one link, and how that
//! follows the link: a new schedule is an update, a removed schedule or a revoked
//! link a cancellation, each one `SEQUENCE` up. No capability calls here.
//!
//! Every invitee records the `SEQUENCE` they last got. Whoever is behind the
//! record's gets the mail that brings them up to date, so a change is mailed once
//! per invitee however often the server repeats the event, and a delivery cut
//! short (the hourly mail limit) goes on with the next event.

use serde::{Deserialize, Serialize};

use crate::input::Person;
use crate::when::When;

/// Where the call of a link stands for its invitees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Invited: for the schedule in the record, or for no particular time.
    Active,
    /// The schedule was removed: invitees were told the call is off.
    Cancelled,
    /// The link was revoked: it never works again.
    Revoked,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Cancelled => "cancelled",
            Status::Revoked => "revoked",
        }
    }
}

/// Someone invited to the link. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitee {
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When they were (last) invited.
    pub invited_at: i64,
    /// When a mail last went to them; none until the first one was queued.
    #[serde(default)]
    pub sent_at: Option<i64>,
    /// The `SEQUENCE` of the last mail they got.
    #[serde(default)]
    pub sequence: u32,
}

impl Invitee {
    pub fn person(&self) -> Person {
        Person {
            email: self.email.clone(),
            name: self.name.clone(),
        }
    }
}

/// The invitations to one link. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteRecord {
    pub link_id: String,
    pub owner: i64,
    /// The calendar event's `UID`, the same for the life of the link.
    pub uid: String,
    /// The event's `SEQUENCE`: + 1 with every change invitees are told about.
    pub sequence: u32,
    /// The link as the inviter shares it (with its `#fragment`).
    pub url: String,
    pub title: String,
    /// The inviter: `ORGANIZER` and `Reply-To`. None where the operator withheld
    /// the `users` capability.
    #[serde(default)]
    pub organizer: Option<Person>,
    /// The schedule invitees were last told about (kept when cancelled, for the
    /// cancellation's times); none for an invitation without a time.
    #[serde(default)]
    pub schedule: Option<When>,
    /// The schedule before the last change, for "was: …" in updates.
    #[serde(default)]
    pub previous: Option<When>,
    pub status: Status,
    pub invitees: Vec<Invitee>,
    pub created: i64,
    pub updated: i64,
}

/// What a link is like now, as the server says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub revoked: bool,
    pub schedule: Option<When>,
}

/// What an invitee who is behind gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// The first mail: an invitation (`METHOD:REQUEST` when scheduled).
    Invite,
    /// New times (`METHOD:REQUEST`, same `UID`, higher `SEQUENCE`).
    Update,
    /// The call is off (`METHOD:CANCEL`, `STATUS:CANCELLED`).
    Cancel,
}

impl InviteRecord {
    /// A record for a link nobody was invited to yet.
    pub fn new(link_id: &str, owner: i64, url: &str, title: &str, now: i64) -> Self {
        Self {
            link_id: link_id.to_string(),
            owner,
            uid: format!("{link_id}@confab-email-invites"),
            sequence: 0,
            url: url.to_string(),
            title: title.to_string(),
            organizer: None,
            schedule: None,
            previous: None,
            status: Status::Active,
            invitees: Vec::new(),
            created: now,
            updated: now,
        }
    }

    /// Takes in the link as it is now. Returns whether that is news for the
    /// invitees (then `SEQUENCE` went up and every invitee is behind).
    pub fn observe(&mut self, seen: &Observed, now: i64) -> bool {
        let next = match (self.status, seen.revoked, &seen.schedule) {
            // A revoked link stays revoked; a cancelled call needs no second notice.
            (Status::Revoked, ..) => None,
            (Status::Cancelled, true, _) => {
                self.status = Status::Revoked;
                None
            }
            (Status::Active, true, _) => Some((Status::Revoked, self.schedule.clone())),
            (Status::Active, false, Some(s)) if self.schedule.as_ref() == Some(s) => None,
            (_, false, Some(s)) => Some((Status::Active, Some(s.clone()))),
            // No time any more: the call that had one is off.
            (Status::Active, false, None) if self.schedule.is_some() => {
                Some((Status::Cancelled, self.schedule.clone()))
            }
            (_, false, None) => None,
        };
        let Some((status, schedule)) = next else {
            return false;
        };
        self.updated = now;
        if self.invitees.iter().all(|i| i.sent_at.is_none()) {
            // Nobody was told anything yet (a new record): nothing to update.
            self.schedule = schedule;
            self.status = status;
            return false;
        }
        self.previous = self.schedule.take();
        self.schedule = schedule;
        self.status = status;
        self.sequence += 1;
        true
    }

    /// New people are invited to a link that has no time now: a call cancelled
    /// earlier is open again, for no particular time (nobody's `SEQUENCE` changes:
    /// those told of the cancellation have no event left to change).
    pub fn reopen(&mut self, now: i64) {
        if self.status == Status::Cancelled {
            self.status = Status::Active;
            self.previous = None;
            self.schedule = None;
            self.updated = now;
        }
    }

    /// Adds (or invites again) `people`; returns their positions in `invitees`.
    pub fn invite(&mut self, people: &[Person], now: i64) -> Vec<usize> {
        let mut at = Vec::with_capacity(people.len());
        for person in people {
            let key = person.key();
            let index = match self
                .invitees
                .iter()
                .position(|i| i.email.to_lowercase() == key)
            {
                Some(index) => {
                    let known = &mut self.invitees[index];
                    if person.name.is_some() {
                        known.name.clone_from(&person.name);
                    }
                    known.invited_at = now;
                    index
                }
                None => {
                    self.invitees.push(Invitee {
                        email: person.email.clone(),
                        name: person.name.clone(),
                        invited_at: now,
                        sent_at: None,
                        sequence: self.sequence,
                    });
                    self.invitees.len() - 1
                }
            };
            at.push(index);
        }
        at
    }

    /// What invitee `index` is still to get, if anything.
    pub fn due(&self, index: usize) -> Option<Notice> {
        let invitee = self.invitees.get(index)?;
        match (invitee.sent_at, self.status) {
            (None, Status::Active) => Some(Notice::Invite),
            // Never told anything: nothing to call off.
            (None, _) => None,
            (Some(_), _) if invitee.sequence >= self.sequence => None,
            (Some(_), Status::Active) => Some(Notice::Update),
            (Some(_), Status::Cancelled | Status::Revoked) => Some(Notice::Cancel),
        }
    }

    /// Marks invitee `index` as told what the record says now.
    pub fn sent(&mut self, index: usize, now: i64) {
        let sequence = self.sequence;
        if let Some(invitee) = self.invitees.get_mut(index) {
            invitee.sent_at = Some(now);
            invitee.sequence = sequence;
        }
    }

    /// Marks invitee `index` as having nothing left to get, without a mail.
    pub fn settle(&mut self, index: usize) {
        let sequence = self.sequence;
        if let Some(invitee) = self.invitees.get_mut(index) {
            invitee.sequence = sequence;
        }
    }

    /// Forgets the people among `emails` who were never sent anything (their
    /// invitation did not go out), so no later change mails them unasked.
    pub fn forget_unsent(&mut self, emails: &[String]) {
        self.invitees
            .retain(|i| i.sent_at.is_some() || !emails.contains(&i.email));
    }

    /// Whether the mails carry a calendar invitation (an `.ics`): when the call
    /// has a time and an organizer to answer to.
    pub fn has_calendar(&self) -> bool {
        self.schedule.is_some() && self.organizer.is_some()
    }

    /// When a mail about this link last went out.
    pub fn last_sent(&self) -> Option<i64> {
        self.invitees.iter().filter_map(|i| i.sent_at).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn when(start: i64) -> When {
        When {
            start,
            end: start + 1_800_000,
            time_zone: "Europe/Berlin".into(),
            rrule: None,
        }
    }

    fn seen(revoked: bool, schedule: Option<When>) -> Observed {
        Observed { revoked, schedule }
    }

    fn invited(schedule: Option<When>) -> InviteRecord {
        let mut record = InviteRecord::new("L1", 7, "https://c.example/j/L1#k=1", "Sync", 0);
        record.schedule = schedule;
        let ana = Person {
            email: "ana@example.org".into(),
            name: None,
        };
        let at = record.invite(&[ana], 1);
        assert_eq!(record.due(at[0]), Some(Notice::Invite));
        record.sent(at[0], 1);
        assert_eq!(record.due(at[0]), None);
        record
    }

    #[test]
    fn a_new_time_is_one_update_however_often_it_is_seen() {
        let mut record = invited(Some(when(1000)));
        assert!(!record.observe(&seen(false, Some(when(1000))), 2));
        assert!(record.observe(&seen(false, Some(when(5000))), 2));
        assert_eq!((record.sequence, record.status), (1, Status::Active));
        assert_eq!(record.previous, Some(when(1000)));
        assert_eq!(record.due(0), Some(Notice::Update));
        record.sent(0, 2);
        assert!(!record.observe(&seen(false, Some(when(5000))), 3));
        assert_eq!(record.due(0), None);
    }

    #[test]
    fn a_removed_time_or_a_revoked_link_calls_the_call_off_once() {
        let mut record = invited(Some(when(1000)));
        assert!(record.observe(&seen(false, None), 2));
        assert_eq!(record.status, Status::Cancelled);
        assert_eq!(
            record.schedule,
            Some(when(1000)),
            "cancelled with its times"
        );
        assert_eq!(record.due(0), Some(Notice::Cancel));
        record.sent(0, 2);
        assert!(!record.observe(&seen(false, None), 3));
        // Revoked after that: nothing more to say.
        assert!(!record.observe(&seen(true, None), 3));
        assert_eq!((record.status, record.sequence), (Status::Revoked, 1));
        assert_eq!(record.due(0), None);

        let mut record = invited(Some(when(1000)));
        assert!(record.observe(&seen(true, None), 2));
        assert_eq!((record.status, record.sequence), (Status::Revoked, 1));
        assert_eq!(record.due(0), Some(Notice::Cancel));
        assert!(!record.observe(&seen(true, None), 3));
        assert!(!record.observe(&seen(false, Some(when(9000))), 3));
    }

    #[test]
    fn an_invitation_without_a_time_follows_the_link_too() {
        let mut record = invited(None);
        assert!(!record.observe(&seen(false, None), 2));
        assert!(record.observe(&seen(false, Some(when(1000))), 2));
        assert_eq!(record.due(0), Some(Notice::Update));
        record.sent(0, 2);
        let mut plain = invited(None);
        assert!(plain.observe(&seen(true, None), 2));
        assert_eq!(plain.due(0), Some(Notice::Cancel));
    }

    #[test]
    fn a_cancelled_call_gets_a_time_again() {
        let mut record = invited(Some(when(1000)));
        record.observe(&seen(false, None), 2);
        record.sent(0, 2);
        assert!(record.observe(&seen(false, Some(when(7000))), 3));
        assert_eq!((record.status, record.sequence), (Status::Active, 2));
        assert_eq!(record.due(0), Some(Notice::Update));
    }

    #[test]
    fn people_invited_later_start_at_the_current_sequence() {
        let mut record = invited(Some(when(1000)));
        record.observe(&seen(false, Some(when(2000))), 2);
        record.sent(0, 2);
        let bo = Person {
            email: "Bo@Example.org".into(),
            name: Some("Bo".into()),
        };
        let at = record.invite(std::slice::from_ref(&bo), 3);
        assert_eq!(record.due(at[0]), Some(Notice::Invite));
        record.sent(at[0], 3);
        assert_eq!(record.invitees[1].sequence, 1);
        // Invited again (any case): the same invitee, invited anew.
        let again = Person {
            email: "bo@example.org".into(),
            name: None,
        };
        assert_eq!(record.invite(&[again], 4), [1]);
        assert_eq!(record.invitees.len(), 2);
        assert_eq!(record.invitees[1].name.as_deref(), Some("Bo"));
        assert_eq!(record.invitees[1].invited_at, 4);
    }

    #[test]
    fn a_new_record_takes_the_links_state_as_it_is() {
        let mut record = InviteRecord::new("L1", 7, "u", "t", 0);
        assert!(!record.observe(&seen(false, Some(when(1000))), 1));
        assert_eq!(
            (record.sequence, record.schedule.clone()),
            (0, Some(when(1000)))
        );
    }

    #[test]
    fn nobody_who_was_never_told_gets_a_cancellation() {
        let mut record = InviteRecord::new("L1", 7, "u", "t", 0);
        record.schedule = Some(when(1000));
        let ana = Person {
            email: "ana@example.org".into(),
            name: None,
        };
        record.invite(&[ana], 1);
        record.observe(&seen(true, None), 2);
        assert_eq!(record.due(0), None);
    }
}
