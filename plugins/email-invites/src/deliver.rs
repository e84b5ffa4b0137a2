//! Sending: the mails every invitee who is behind is due, and following a link
//! when the server says it changed. What the plugin asks of the server here:
//! `mail.queue`, `links.get-schedule`, `users.get-contact`.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use confab_plugin_sdk::{Error, Link, Schedule, links, log, mail, users};

use crate::input::Person;
use crate::mails;
use crate::optout::{self, Signer};
use crate::record::{InviteRecord, Observed};
use crate::store;
use crate::when::When;

impl From<Schedule> for When {
    fn from(s: Schedule) -> Self {
        Self {
            start: s.start,
            end: s.end,
            time_zone: s.time_zone,
            rrule: s.rrule.filter(|r| !r.trim().is_empty()),
        }
    }
}

pub fn now() -> DateTime<Utc> {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    DateTime::from_timestamp(since.as_secs() as i64, 0).unwrap_or_default()
}

/// The schedule of link `id` on the server's record, if it has one.
pub fn schedule(id: &str) -> Result<Option<When>, Error> {
    Ok(links::schedule(id)?.map(When::from))
}

/// The signed-in user's name and address: the invitations' organizer and
/// `Reply-To`. None (logged) where the operator withheld `users`.
pub fn organizer(user: i64) -> Option<Person> {
    match users::contact(user) {
        Ok(contact) => Some(Person {
            email: contact.email,
            name: Some(contact.name).filter(|n| !n.trim().is_empty()),
        }),
        Err(e) => {
            log::warn(&format!("cannot read the inviter's address: {e:?}"));
            None
        }
    }
}

/// Why sending stopped before everyone due had their mail.
#[derive(Debug)]
pub enum Stopped {
    /// `mail.queue` refused (its hourly limit, the outbox unavailable …), or the
    /// suppression list or signing key could not be read.
    Queue(Error),
    /// A mail could not be written.
    Compose(mails::ComposeError),
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stopped::Queue(e) => write!(f, "mail.queue refused: {e:?}"),
            Stopped::Compose(e) => write!(f, "a mail cannot be written: {e}"),
        }
    }
}

/// Sends every invitee what they are due (an update, a cancellation, or an
/// invitation that never went out), marking each one sent in `record`. Someone who
/// asked not to get invitations gets nothing and is settled. Stops at the first
/// refusal; whoever is left is still due and gets it next time.
pub fn due(record: &mut InviteRecord, now: DateTime<Utc>) -> Result<usize, Stopped> {
    let pending: Vec<usize> = (0..record.invitees.len())
        .filter(|&i| record.due(i).is_some())
        .collect();
    if pending.is_empty() {
        return Ok(0);
    }
    let emails: Vec<&str> = pending
        .iter()
        .map(|&i| record.invitees[i].email.as_str())
        .collect();
    let suppressed = optout::suppressed(&emails).map_err(Stopped::Queue)?;
    let signer = Signer::load().map_err(Stopped::Queue)?;
    let mut sent = 0;
    for (position, &index) in pending.iter().enumerate() {
        let Some(notice) = record.due(index) else {
            continue;
        };
        if suppressed.contains(&position) {
            record.settle(index);
            continue;
        }
        let to = record.invitees[index].person();
        let unsubscribe = signer.url(record.owner, &record.link_id, &to.email);
        let message = mails::compose(record, notice, &to, None, &unsubscribe, now)
            .map_err(Stopped::Compose)?;
        match mail::queue_with_unsubscribe(&message, &unsubscribe) {
            Ok(_) => {
                record.sent(index, now.timestamp());
                sent += 1;
            }
            // This one can never go out (the outbox refuses the address): skip it.
            Err(Error::Invalid(why)) => {
                log::warn(&format!("a mail to an invitee was refused: {why}"));
                record.settle(index);
            }
            Err(e) => return Err(Stopped::Queue(e)),
        }
    }
    Ok(sent)
}

/// The server says `link` changed (or was revoked): invitees hear of a new time,
/// or that the call is off, once.
pub fn follow(link: &Link, revoked: bool) {
    let mut record = match store::record(&link.id) {
        Ok(Some(record)) => record,
        Ok(None) => return,
        Err(e) => {
            log::warn(&format!(
                "cannot read the invitations of a changed link: {e:?}"
            ));
            return;
        }
    };
    let revoked = revoked || link.revoked_at.is_some();
    let schedule = if revoked {
        None
    } else {
        match schedule(&link.id) {
            Ok(schedule) => schedule,
            Err(e) => {
                log::warn(&format!(
                    "cannot read the schedule of a changed link: {e:?}"
                ));
                return;
            }
        }
    };
    let before = record.clone();
    let now = now();
    record.observe(&Observed { revoked, schedule }, now.timestamp());
    let title = link.title.trim();
    if !title.is_empty() && title != record.title {
        // The next mail says the new title; a title alone is no news.
        record.title = title.to_string();
    }
    // The record first: the mails go out only for a change that is kept.
    if record != before
        && let Err(e) = store::save(&record, now.timestamp())
    {
        log::warn(&format!(
            "cannot keep the invitations of a changed link: {e:?}"
        ));
        return;
    }
    let pending = (0..record.invitees.len()).any(|i| record.due(i).is_some());
    if !pending {
        return;
    }
    let outcome = due(&mut record, now);
    if let Err(stopped) = &outcome {
        log::warn(&format!(
            "not every invitee of link {} was told of the change yet: {stopped}",
            link.id
        ));
    }
    if let Err(e) = store::save(&record, now.timestamp()) {
        log::warn(&format!(
            "cannot record the mails sent for a changed link: {e:?}"
        ));
    }
}
