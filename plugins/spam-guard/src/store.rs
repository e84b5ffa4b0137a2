//! What the plugin keeps in its key-value store. Everything about a person expires:
//! blocks at their end, reports and their stills after the retention period (or
//! the end of an investigation an administrator asked for).
//!
//! | key | value |
//! | --- | --- |
//! | `block/{scope}/{kind}/{value}` | [`Block`]: `scope` is `all` or `link:{id}` (a removal already keeps someone out of the rest of that call); `kind` is `net` (an IPv4 /32 or IPv6 /64) or `dev` (a device pseudonym) |
//! | `blockid/{id}` | the key of block `id`, for unblocking |
//! | `report/{id}` | [`Report`] |
//! | `still/{id}/{n}` | part `n` of report `id`'s still (48 KiB each, at most 4) |
//! | `group/{identity}` | [`Group`]: the reports about one caller, for the review queue |
//! | `pending/{id}` | report `id`, not yet in a mail to the administrators |
//! | `escalation/{link}/{identity}` | [`crate::rules::ReportWindow`] |
//! | `activity/{link}` | [`crate::rules::LinkActivity`] |
//! | `rate/{user}` | [`crate::rules::ReporterRate`] |

use std::time::Duration;

use confab_plugin_sdk::{Error, kv};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::rules::{Category, DAY_MS};

/// Largest part of a still (the server takes values of up to 64 KiB).
pub const STILL_PART_BYTES: usize = 48 * 1024;
/// Largest still, in parts.
pub const STILL_PARTS: usize = 4;
/// Reports kept per caller in the review queue (the oldest go first).
pub const GROUP_REPORTS: usize = 50;

/// Where a block applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "scope", content = "id", rename_all = "lowercase")]
pub enum Scope {
    /// Every link on the server (administrators only).
    Instance,
    Link(String),
}

impl Scope {
    fn key_part(&self) -> String {
        match self {
            Scope::Instance => "all".into(),
            Scope::Link(id) => format!("link:{id}"),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Scope::Instance => "instance",
            Scope::Link(_) => "link",
        }
    }
}

/// What a block holds on to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An IPv4 address (/32) or an IPv6 /64.
    Net,
    /// A browser's device cookie (as the server's pseudonym for this plugin).
    Dev,
}

impl Kind {
    fn key_part(self) -> &'static str {
        match self {
            Kind::Net => "net",
            Kind::Dev => "dev",
        }
    }
}

/// One rule: nobody from `value` joins within `scope` until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub id: String,
    pub scope: Scope,
    pub kind: Kind,
    pub value: String,
    /// What the person turned away reads.
    pub reason: String,
    /// The report that led to it, if any.
    pub report: Option<String>,
    /// Who made it (a user id), none for escalation.
    pub by: Option<i64>,
    pub created_at: i64,
    pub expires_at: i64,
}

pub fn block_key(scope: &Scope, kind: Kind, value: &str) -> String {
    format!("block/{}/{}/{value}", scope.key_part(), kind.key_part())
}

fn ttl_until(until: i64, now: i64) -> Duration {
    Duration::from_millis(u64::try_from(until - now).unwrap_or(0).max(1000))
}

fn json<T: Serialize>(value: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(value).map_err(|e| Error::Invalid(e.to_string()))
}

fn read<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    Ok(kv::get(key)?.and_then(|v| serde_json::from_slice(&v).ok()))
}

/// Stores `block` (and its id's index) until it expires. A block of the same
/// person in the same scope is replaced: the later one wins.
pub fn put_block(block: &Block, now: i64) -> Result<(), Error> {
    let key = block_key(&block.scope, block.kind, &block.value);
    let ttl = ttl_until(block.expires_at, now);
    if let Some(old) = read::<Block>(&key)? {
        kv::delete(&format!("blockid/{}", old.id))?;
    }
    kv::set_with_ttl(&key, json(block)?, ttl)?;
    kv::set_with_ttl(&format!("blockid/{}", block.id), key.as_bytes(), ttl)
}

/// The first live block among `keys` (one read for all of them).
pub fn first_block(keys: &[String]) -> Result<Option<Block>, Error> {
    Ok(kv::get_many(keys)?
        .into_iter()
        .flatten()
        .find_map(|v| serde_json::from_slice(&v).ok()))
}

/// Removes block `id`; false when there is no such block.
pub fn remove_block(id: &str) -> Result<Option<Block>, Error> {
    let index = format!("blockid/{id}");
    let Some(key) = kv::get_string(&index)? else {
        return Ok(None);
    };
    let block = read::<Block>(&key)?;
    kv::delete(&key)?;
    kv::delete(&index)?;
    Ok(block)
}

pub fn block_by_id(id: &str) -> Result<Option<Block>, Error> {
    match kv::get_string(&format!("blockid/{id}"))? {
        Some(key) => read(&key),
        None => Ok(None),
    }
}

/// Up to `limit` blocks, in key order after `after` (a key), and the key to go on
/// from when there are more.
pub fn blocks(after: Option<&str>, limit: u32) -> Result<(Vec<Block>, Option<String>), Error> {
    let keys = kv::keys("block/", after, limit)?;
    let next = (keys.len() == limit as usize)
        .then(|| keys.last().cloned())
        .flatten();
    let values = kv::get_many(&keys)?;
    Ok((
        values
            .into_iter()
            .flatten()
            .filter_map(|v| serde_json::from_slice(&v).ok())
            .collect(),
        next,
    ))
}

/// Where a report stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    New,
    Actioned,
    Dismissed,
}

/// One report, as the review queue shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub id: String,
    pub at: i64,
    pub link: String,
    pub link_title: String,
    pub reporter: i64,
    pub reporter_name: String,
    /// The name the reported person gave.
    pub name: String,
    /// Their account, when they were signed in.
    pub user: Option<i64>,
    pub identity: Option<String>,
    pub device: Option<String>,
    pub network: Option<String>,
    /// Shown to administrators only; never logged.
    pub address: Option<String>,
    pub category: Category,
    pub note: String,
    /// Parts of the still (0: none).
    pub still_parts: usize,
    pub still_type: Option<String>,
    /// What the reporter did with it: `report`, `remove`, `deny` or `block`.
    pub action: String,
    pub escalated: bool,
    pub status: Status,
    /// Kept past the retention period until then, for an investigation.
    pub keep_until: Option<i64>,
}

impl Report {
    /// When the report and its still are deleted.
    pub fn expires_at(&self, retention_days: i64) -> i64 {
        let retained = self.at + retention_days * DAY_MS;
        self.keep_until.map_or(retained, |k| k.max(retained))
    }
}

/// The reports about one caller.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    pub identity: String,
    pub names: Vec<String>,
    pub address: Option<String>,
    pub network: Option<String>,
    pub device: Option<String>,
    /// Report ids, oldest first.
    pub reports: Vec<String>,
    pub last_at: i64,
    /// The instance-wide block an administrator made, if any.
    pub block: Option<String>,
}

pub fn report(id: &str) -> Result<Option<Report>, Error> {
    read(&format!("report/{id}"))
}

pub fn reports(ids: &[String]) -> Result<Vec<Report>, Error> {
    let keys: Vec<String> = ids.iter().map(|id| format!("report/{id}")).collect();
    Ok(kv::get_many(&keys)?
        .into_iter()
        .flatten()
        .filter_map(|v| serde_json::from_slice(&v).ok())
        .collect())
}

/// Stores `report` (and its still, `parts`) until it expires.
pub fn put_report(
    report: &Report,
    still: &[Vec<u8>],
    now: i64,
    retention_days: i64,
) -> Result<(), Error> {
    let ttl = ttl_until(report.expires_at(retention_days), now);
    for (n, part) in still.iter().enumerate() {
        kv::set_with_ttl(&format!("still/{}/{n}", report.id), part, ttl)?;
    }
    kv::set_with_ttl(&format!("report/{}", report.id), json(report)?, ttl)
}

/// Keeps `report`'s still as long as the report (after a change of `keep_until`).
pub fn retime_still(report: &Report, now: i64, retention_days: i64) -> Result<(), Error> {
    let ttl = ttl_until(report.expires_at(retention_days), now);
    for n in 0..report.still_parts {
        let key = format!("still/{}/{n}", report.id);
        if let Some(part) = kv::get(&key)? {
            kv::set_with_ttl(&key, part, ttl)?;
        }
    }
    Ok(())
}

pub fn still(report: &Report) -> Result<Option<Vec<u8>>, Error> {
    let keys: Vec<String> = (0..report.still_parts)
        .map(|n| format!("still/{}/{n}", report.id))
        .collect();
    let mut out = Vec::new();
    for part in kv::get_many(&keys)? {
        match part {
            Some(bytes) => out.extend(bytes),
            None => return Ok(None),
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

pub fn group(identity: &str) -> Result<Option<Group>, Error> {
    read(&format!("group/{identity}"))
}

/// Stores `group` as long as its newest report is kept.
pub fn put_group(group: &Group, until: i64, now: i64) -> Result<(), Error> {
    kv::set_with_ttl(
        &format!("group/{}", group.identity),
        json(group)?,
        ttl_until(until, now),
    )
}

/// Callers the queue reads at most (the review queue shows the newest 200 of them).
pub const GROUPS_READ: usize = 5000;

/// Every caller with reports, up to [`GROUPS_READ`], in no particular order.
pub fn groups() -> Result<Vec<Group>, Error> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    while out.len() < GROUPS_READ {
        let keys = kv::keys("group/", after.as_deref(), 1000)?;
        let full = keys.len() == 1000;
        after = keys.last().cloned();
        out.extend(
            kv::get_many(&keys)?
                .into_iter()
                .flatten()
                .filter_map(|v| serde_json::from_slice::<Group>(&v).ok()),
        );
        if !full {
            break;
        }
    }
    Ok(out)
}

/// A small JSON record with an expiry (windows and counters).
pub fn get_record<T: DeserializeOwned + Default>(key: &str) -> Result<T, Error> {
    Ok(read(key)?.unwrap_or_default())
}

pub fn put_record<T: Serialize>(key: &str, value: &T, ttl: Duration) -> Result<(), Error> {
    kv::set_with_ttl(key, json(value)?, ttl)
}

/// Marks report `id` for the next mail to the administrators.
pub fn mark_pending(id: &str, now: i64, retention_days: i64) -> Result<(), Error> {
    kv::set_with_ttl(
        &format!("pending/{id}"),
        id.as_bytes(),
        ttl_until(now + retention_days * DAY_MS, now),
    )
}

/// Reports waiting for the next mail (at most `limit`).
pub fn pending(limit: u32) -> Result<Vec<String>, Error> {
    Ok(kv::keys("pending/", None, limit)?
        .into_iter()
        .filter_map(|k| k.strip_prefix("pending/").map(str::to_string))
        .collect())
}

pub fn clear_pending(ids: &[String]) -> Result<(), Error> {
    for id in ids {
        kv::delete(&format!("pending/{id}"))?;
    }
    Ok(())
}
