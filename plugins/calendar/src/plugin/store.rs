//! What the plugin keeps in its key-value store.
//!
//! | key | value |
//! | --- | --- |
//! | `event/{user}/{hash of UID}` | [`EventLink`]: the link an uploaded event got |
//! | `call/{user}/{link id}` | [`StoredCall`]: a call scheduled here |
//! | `feed-token/{SHA-256 of the token}` | the user whose feed it opens |
//! | `feed-of/{user}` | [`Feed`]: that user's current feed (the token's hash, when it was made) |
//!
//! A feed's token is never stored: whoever reads the plugin's storage cannot open
//! anyone's feed.

use chrono::{DateTime, Utc};
use confab_plugin_sdk::{Error, kv};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ics::{Person, ScheduleSpec};

/// The link written into the events with one UID, for one user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventLink {
    pub uid: String,
    pub link_id: String,
    /// The full link as shared (with its fragment, which the server does not keep).
    pub url: String,
}

/// A call scheduled through the plugin. Times are Unix seconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredCall {
    pub link_id: String,
    /// The full link, with its secret when the plugin was given it (the server
    /// keeps none): every file written for the call carries it.
    pub url: String,
    pub title: String,
    #[serde(default)]
    pub description: Option<String>,
    pub start: i64,
    pub end: i64,
    pub time_zone: String,
    #[serde(default)]
    pub rrule: Option<String>,
    #[serde(default)]
    pub organizer: Option<StoredPerson>,
    #[serde(default)]
    pub attendees: Vec<StoredPerson>,
    pub sequence: u32,
    #[serde(default)]
    pub cancelled: bool,
    pub created: i64,
    pub updated: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StoredPerson {
    pub email: String,
    #[serde(default)]
    pub name: Option<String>,
}

impl From<&Person> for StoredPerson {
    fn from(p: &Person) -> Self {
        Self {
            email: p.email.clone(),
            name: p.name.clone(),
        }
    }
}

impl From<&StoredPerson> for Person {
    fn from(p: &StoredPerson) -> Self {
        Self {
            email: p.email.clone(),
            name: p.name.clone(),
        }
    }
}

fn time(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(seconds, 0).unwrap_or_default()
}

impl StoredCall {
    /// The UID of the call's event: the same for its whole life.
    pub fn uid(&self) -> String {
        format!("{}@confab-calendar", self.link_id)
    }

    pub fn spec(&self, label: &str) -> ScheduleSpec {
        ScheduleSpec {
            uid: self.uid(),
            title: self.title.clone(),
            description: self.description.clone(),
            start: time(self.start),
            end: time(self.end),
            time_zone: self.time_zone.clone(),
            rrule: self.rrule.clone(),
            organizer: self.organizer.as_ref().map(Person::from),
            attendees: self.attendees.iter().map(Person::from).collect(),
            sequence: self.sequence,
            cancelled: self.cancelled,
            link_url: self.url.clone(),
            label: label.to_string(),
            created: Some(time(self.created)),
            last_modified: Some(time(self.updated)),
        }
    }
}

/// A short, stable key part for a UID of any length.
fn uid_key(uid: &str) -> String {
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    for byte in uid.bytes() {
        a = (a ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
        b = (b ^ u64::from(byte))
            .wrapping_mul(0x0000_0100_0000_01b3)
            .rotate_left(5);
    }
    format!("{a:016x}{b:016x}")
}

fn read<T: for<'de> Deserialize<'de>>(key: &str) -> Result<Option<T>, Error> {
    Ok(kv::get(key)?.and_then(|v| serde_json::from_slice(&v).ok()))
}

fn write<T: Serialize>(key: &str, value: &T) -> Result<(), Error> {
    let json = serde_json::to_vec(value).map_err(|e| Error::Invalid(e.to_string()))?;
    kv::set(key, json)
}

fn event_key(user: i64, uid: &str) -> String {
    format!("event/{user}/{}", uid_key(uid))
}

/// The links earlier submissions gave these UIDs, in their order.
pub fn event_links(user: i64, uids: &[&str]) -> Result<Vec<Option<EventLink>>, Error> {
    let mut out = Vec::with_capacity(uids.len());
    for chunk in uids.chunks(1000) {
        let keys: Vec<String> = chunk.iter().map(|uid| event_key(user, uid)).collect();
        let values = kv::get_many(&keys)?;
        out.extend(chunk.iter().zip(values).map(|(uid, value)| {
            value
                .and_then(|v| serde_json::from_slice::<EventLink>(&v).ok())
                .filter(|e| e.uid == *uid)
        }));
    }
    Ok(out)
}

pub fn set_event_links(user: i64, links: &[EventLink]) -> Result<(), Error> {
    for chunk in links.chunks(1000) {
        let entries = chunk
            .iter()
            .map(|link| {
                serde_json::to_vec(link)
                    .map(|json| (event_key(user, &link.uid), json))
                    .map_err(|e| Error::Invalid(e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        kv::set_many(&entries)?;
    }
    Ok(())
}

fn call_key(user: i64, link_id: &str) -> String {
    format!("call/{user}/{link_id}")
}

pub fn call(user: i64, link_id: &str) -> Result<Option<StoredCall>, Error> {
    if link_id.is_empty()
        || link_id.len() > 64
        || !link_id.chars().all(|c| c.is_ascii_alphanumeric())
    {
        return Ok(None);
    }
    read(&call_key(user, link_id))
}

pub fn set_call(user: i64, call: &StoredCall) -> Result<(), Error> {
    write(&call_key(user, &call.link_id), call)
}

/// The user's scheduled calls (at most `limit`), in key order.
pub fn calls(user: i64, limit: usize) -> Result<Vec<StoredCall>, Error> {
    let prefix = format!("call/{user}/");
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    while out.len() < limit {
        let keys = kv::keys(&prefix, after.as_deref(), 1000)?;
        if keys.is_empty() {
            break;
        }
        for key in &keys {
            if out.len() == limit {
                break;
            }
            if let Some(call) = read::<StoredCall>(key)? {
                out.push(call);
            }
        }
        if keys.len() < 1000 {
            break;
        }
        after = keys.last().cloned();
    }
    Ok(out)
}

/// A user's current feed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Feed {
    /// SHA-256 of the token, in hex.
    pub hash: String,
    /// Unix seconds.
    pub created: i64,
}

fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The user whose feed `token` opens.
pub fn feed_user(token: &str) -> Result<Option<i64>, Error> {
    Ok(kv::get_string(&format!("feed-token/{}", token_hash(token)))?.and_then(|u| u.parse().ok()))
}

pub fn feed(user: i64) -> Result<Option<Feed>, Error> {
    read(&format!("feed-of/{user}"))
}

/// Makes `token` the user's feed token; the previous one stops working.
pub fn set_feed_token(user: i64, token: &str, created: i64) -> Result<(), Error> {
    revoke_feed(user)?;
    let hash = token_hash(token);
    kv::set(&format!("feed-token/{hash}"), user.to_string())?;
    write(&format!("feed-of/{user}"), &Feed { hash, created })
}

/// The user's feed stops working; returns whether there was one.
pub fn revoke_feed(user: i64) -> Result<bool, Error> {
    match feed(user)? {
        Some(old) => {
            kv::delete(&format!("feed-token/{}", old.hash))?;
            kv::delete(&format!("feed-of/{user}"))?;
            Ok(true)
        }
        None => Ok(false),
    }
}
