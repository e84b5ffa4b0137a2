//! The mocked capabilities: everything a plugin imports, answered from memory with
//! the checks the server makes (permissions, the acting user, sizes, limits).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::confab::plugin::links::{CreatedLink, NewLink};
use crate::bindings::confab::plugin::log::Level;
use crate::bindings::confab::plugin::mail::Message;
use crate::bindings::confab::plugin::moderation::{self, Origin};
use crate::bindings::confab::plugin::types::{Call, Contact, Error, Link, Participant, Schedule};
use crate::bindings::confab::plugin::{
    calls, config, http_client, kv, links, log, mail, templates, types, users,
};
use confab_plugin_contract::limits::{
    CALLS_MAX_PAYLOAD_BYTES, HTTP_MAX_BODY_BYTES, KV_MAX_KEY_BYTES, KV_MAX_KEYS_AT_ONCE,
    KV_MAX_KEYS_PER_PAGE, KV_MAX_VALUE_BYTES, LINKS_MAX_CREATE_AT_ONCE, LINKS_MAX_LIST,
    LOG_MAX_MESSAGE_BYTES, TEMPLATES_MAX_CONTEXT_BYTES,
};
use confab_plugin_contract::mail as contract_mail;

use crate::manifest::{Capability, Manifest, host_allowed};
use crate::{OutboundRequest, OutboundResponse};

/// Where the links the harness creates point: `{PUBLIC_URL}/j/{id}`; a created link's
/// `url` has a secret after it, `#k=` and 22 characters, as on the server (not random
/// here: `testsecret` and the digits of the id).
pub const PUBLIC_URL: &str = "http://confab.test";
/// How long after a guest joined any signed-in participant may remove them; after
/// that only the link's owner may (the server's default).
pub const REMOVAL_WINDOW_MS: i64 = 30_000;

/// One line the plugin logged (with `log`, or on its stdout or stderr).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its level; lines from stdout and stderr are [`Level::Info`] and
    /// [`Level::Warn`].
    pub level: Level,
    /// The text (cut to 4 KiB, like the server does).
    pub message: String,
}

/// A message the plugin sent on its channel in a call (`calls.send`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMessage {
    /// The link of the call.
    pub link: String,
    /// The call (see [`Call::id`]).
    pub call: String,
    /// One participant, or `None` for everyone on the call.
    pub to: Option<u32>,
    /// The bytes, as the participants' browsers get them.
    pub payload: Vec<u8>,
}

/// A participant the plugin removed from a call (`calls.remove`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemovedParticipant {
    /// The link of the call.
    pub link: String,
    /// The call (see [`Call::id`]).
    pub call: String,
    /// The participant as they were on the roster.
    pub participant: Participant,
    /// The user the plugin acted as.
    pub by_user: i64,
    /// When (Unix milliseconds, harness time).
    pub at: i64,
}

/// A message the plugin queued in the outbox (`mail.queue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedMail {
    /// The outbox id the plugin got back.
    pub id: String,
    /// The message as the plugin queued it.
    pub message: Message,
    /// When (Unix milliseconds, harness time).
    pub queued_at: i64,
    /// The one-click unsubscribe URL (`mail.queue-with-unsubscribe`): the mail's
    /// `List-Unsubscribe`, with `List-Unsubscribe-Post: List-Unsubscribe=One-Click`.
    pub list_unsubscribe: Option<String>,
}

impl QueuedMail {
    /// Everyone the message goes to (`to`, then `cc`).
    pub fn recipients(&self) -> impl Iterator<Item = &str> {
        self.message
            .to
            .iter()
            .chain(&self.message.cc)
            .map(String::as_str)
    }
}

/// Answers the plugin's outbound HTTP requests; `None` passes to the next one.
pub(crate) type Responder = Box<dyn FnMut(&OutboundRequest) -> Option<OutboundResponse> + Send>;

/// What a plugin may do: its manifest, narrowed by what the test denies, and the
/// settings it gets.
#[derive(Clone)]
pub(crate) struct Setup {
    pub manifest: Manifest,
    pub denied: BTreeSet<Capability>,
    /// The test's settings; the manifest's defaults fill in the rest.
    pub config: BTreeMap<String, String>,
    pub templates: Option<tera::Tera>,
    /// Hosts the operator added (`plugins.settings.NAME.http_hosts`).
    pub http_hosts: Vec<String>,
}

impl Setup {
    pub fn check(&self, capability: Capability) -> Result<(), Error> {
        if !self.manifest.permissions.requested().contains(&capability) {
            return Err(Error::AccessDenied(format!(
                "plugin.toml does not ask for the {capability} permission"
            )));
        }
        if self.denied.contains(&capability) {
            return Err(Error::AccessDenied(format!(
                "the operator has not granted {capability} to this plugin (plugins.settings.{}.grant)",
                self.manifest.name
            )));
        }
        Ok(())
    }

    pub fn config_value(&self, key: &str) -> Option<&String> {
        let spec = self.manifest.config.get(key)?;
        self.config.get(key).or(spec.default.as_ref())
    }
}

#[derive(Debug, Clone)]
pub(crate) struct KvEntry {
    pub value: Vec<u8>,
    /// Unix milliseconds.
    pub expires_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub(crate) struct LiveCall {
    pub call: Call,
    pub roster: Vec<Participant>,
    pub next_participant: u32,
    /// Where each participant came from (`moderation`), by participant id.
    pub origins: BTreeMap<u32, Origin>,
    /// Requests waiting in the lobby: number, name, origin.
    pub lobby: Vec<(u32, String, Origin)>,
    pub next_request: u32,
    pub lobby_locked: bool,
    /// The plugin suspended every guest (`moderation.suspend-guests`).
    pub guests_suspended: bool,
    /// Who is in the plugin's shared activity (`calls.activity`), as the test set it.
    pub activity: Vec<calls::ActivityMember>,
}

impl LiveCall {
    /// A call with nobody on it yet.
    pub fn new(call: Call) -> Self {
        Self {
            call,
            roster: Vec::new(),
            next_participant: 1,
            origins: BTreeMap::new(),
            lobby: Vec::new(),
            next_request: 1,
            lobby_locked: false,
            guests_suspended: false,
            activity: Vec::new(),
        }
    }
}

/// A lobby request the plugin denied (`moderation.deny-request`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeniedRequest {
    /// The link of the call.
    pub link: String,
    /// The request number.
    pub request: u32,
    /// The name the guest gave.
    pub name: String,
    /// The user the plugin acted as.
    pub by_user: i64,
}

/// Everything the plugin can see and change, and what it did.
#[derive(Default)]
pub(crate) struct World {
    /// Unix milliseconds.
    pub now: i64,
    pub kv: BTreeMap<String, KvEntry>,
    /// The size of every entry in `kv`, expired ones included (an upper bound of
    /// what counts against the quota, kept as entries come and go).
    pub kv_bytes: u64,
    /// Oldest first.
    pub links: Vec<Link>,
    pub created: Vec<CreatedLink>,
    /// Link schedules, by link id.
    pub schedules: BTreeMap<String, Schedule>,
    /// Accounts' names and addresses, by user id.
    pub contacts: BTreeMap<i64, Contact>,
    /// By link id.
    pub calls: BTreeMap<String, LiveCall>,
    pub sent: Vec<SentMessage>,
    pub removals: Vec<RemovedParticipant>,
    pub mails: Vec<QueuedMail>,
    pub http_requests: Vec<OutboundRequest>,
    pub responders: Vec<Responder>,
    pub logs: Vec<LogLine>,
    /// For ids.
    pub counter: u64,
    /// Administrators' user ids (`moderation`).
    pub admins: BTreeSet<i64>,
    /// The origin `moderation.screened-origin` gives during the next lobby decision.
    pub screening: Option<Origin>,
    pub denials: Vec<DeniedRequest>,
    /// Links rotated by the plugin: old id → new id.
    pub rotations: Vec<(String, String)>,
}

impl World {
    pub fn next_id(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// The name and address of account `user`: what the test set, else `User {id}`
    /// at `user{id}@confab.test`.
    pub fn contact(&self, user: i64) -> Contact {
        self.contacts
            .get(&user)
            .cloned()
            .unwrap_or_else(|| Contact {
                name: format!("User {user}"),
                email: format!("user{user}@confab.test"),
            })
    }

    /// Stores `entry` under `key`, replacing what was there.
    pub fn kv_put(&mut self, key: String, entry: KvEntry) {
        self.kv_bytes += (key.len() + entry.value.len()) as u64;
        if let Some(old) = self.kv.insert(key.clone(), entry) {
            self.kv_bytes -= (key.len() + old.value.len()) as u64;
        }
    }

    pub fn kv_remove(&mut self, key: &str) {
        if let Some(old) = self.kv.remove(key) {
            self.kv_bytes -= (key.len() + old.value.len()) as u64;
        }
    }

    /// Bytes of live entries other than `key`, as the quota counts them.
    fn kv_used_except(&self, key: &str) -> u64 {
        self.kv
            .keys()
            .filter(|k| *k != key)
            .filter_map(|k| self.kv_live(k).map(|e| (k.len() + e.value.len()) as u64))
            .sum()
    }

    pub fn kv_live(&self, key: &str) -> Option<&KvEntry> {
        self.kv
            .get(key)
            .filter(|e| e.expires_at.is_none_or(|t| t > self.now))
    }

    /// A new link as its owner would create it through the REST API.
    pub fn new_link(&mut self, owner: i64, title: &str, max: Option<u32>) -> Result<Link, Error> {
        let title = title.trim();
        if !(1..=200).contains(&title.chars().count()) {
            return Err(Error::Invalid("title: must be 1 to 200 characters".into()));
        }
        if title.chars().any(char::is_control) {
            return Err(Error::Invalid(
                "title: must not contain control characters".into(),
            ));
        }
        let max_participants = max.unwrap_or(32);
        if !(1..=32).contains(&max_participants) {
            return Err(Error::Invalid(
                "max_participants: must be between 1 and 32".into(),
            ));
        }
        let link = Link {
            id: format!("testlink{:014}", self.next_id()),
            title: title.to_string(),
            owner,
            max_participants,
            policy: "ask".into(),
            created_at: self.now,
            revoked_at: None,
        };
        self.links.push(link.clone());
        Ok(link)
    }

    /// Checks a schedule as the server does.
    pub fn check_schedule(schedule: &Schedule) -> Result<(), Error> {
        if schedule.end <= schedule.start {
            return Err(Error::Invalid(
                "schedule.end: must be after the start".into(),
            ));
        }
        if schedule.end - schedule.start > 31 * 24 * 3600 * 1000 {
            return Err(Error::Invalid(
                "schedule.end: a call cannot last longer than 31 days".into(),
            ));
        }
        if schedule.time_zone.is_empty()
            || schedule.time_zone.len() > 64
            || !schedule
                .time_zone
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c))
        {
            return Err(Error::Invalid(
                "schedule.time_zone: must be an IANA time zone such as Europe/Berlin".into(),
            ));
        }
        if let Some(rule) = &schedule.rrule
            && let Err(why) =
                confab_plugin_contract::rrule::check(rule.trim().trim_start_matches("RRULE:"))
        {
            return Err(Error::Invalid(format!(
                "schedule.rrule: is not a valid recurrence rule: {why}"
            )));
        }
        Ok(())
    }

    fn link(&self, id: &str) -> Result<&Link, Error> {
        self.links
            .iter()
            .find(|l| l.id == id)
            .ok_or_else(|| Error::NotFound("no such link".into()))
    }

    /// The call of an active link, if one is running.
    fn live_call(&mut self, link: &str) -> Result<Option<&mut LiveCall>, Error> {
        if self.link(link)?.revoked_at.is_some() {
            return Err(Error::NotFound("this link was revoked".into()));
        }
        Ok(self.calls.get_mut(link))
    }
}

/// The state of one invocation's store.
pub(crate) struct HostState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: StoreLimits,
    pub setup: std::sync::Arc<Setup>,
    pub world: World,
    /// The user the plugin acts for now: the signed-in user of the HTTP request, or
    /// the owner of the link an event is about.
    pub acting_user: Option<i64>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl HostState {
    fn acting_as(&self, as_user: i64) -> Result<(), Error> {
        match self.acting_user {
            Some(user) if user == as_user => Ok(()),
            Some(_) => Err(Error::AccessDenied(
                "a plugin may act only as the user it is handling a request for".into(),
            )),
            None => Err(Error::AccessDenied(
                "no signed-in user is behind this call, so the plugin cannot act as one".into(),
            )),
        }
    }

    fn link_owner(&self, as_user: i64) -> Result<(), Error> {
        self.setup.check(Capability::Links)?;
        self.acting_as(as_user)
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: Level, mut message: String) {
        if message.len() > LOG_MAX_MESSAGE_BYTES {
            let mut end = LOG_MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        self.world.logs.push(LogLine { level, message });
    }
}

impl config::Host for HostState {
    fn get(&mut self, key: String) -> Option<String> {
        self.setup.config_value(&key).cloned()
    }

    fn public_url(&mut self) -> String {
        PUBLIC_URL.to_string()
    }
}

impl users::Host for HostState {
    fn get_contact(&mut self, as_user: i64) -> Result<Contact, Error> {
        self.setup.check(Capability::Users)?;
        self.acting_as(as_user)?;
        Ok(self.world.contact(as_user))
    }

    fn is_admin(&mut self, as_user: i64) -> Result<bool, Error> {
        self.setup.check(Capability::Users)?;
        self.acting_as(as_user)?;
        Ok(self.world.admins.contains(&as_user))
    }
}

fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > KV_MAX_KEY_BYTES {
        return Err(Error::Invalid(format!(
            "keys are 1 to {KV_MAX_KEY_BYTES} bytes, this one is {}",
            key.len()
        )));
    }
    Ok(())
}

impl kv::Host for HostState {
    fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, Error> {
        self.setup.check(Capability::Kv)?;
        check_key(&key)?;
        Ok(self.world.kv_live(&key).map(|e| e.value.clone()))
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl: Option<u32>) -> Result<(), Error> {
        self.setup.check(Capability::Kv)?;
        check_key(&key)?;
        if value.len() > KV_MAX_VALUE_BYTES {
            return Err(Error::LimitReached(format!(
                "values are at most {KV_MAX_VALUE_BYTES} bytes, this one is {}",
                value.len()
            )));
        }
        if ttl == Some(0) {
            return Err(Error::Invalid("ttl-seconds must be at least 1".into()));
        }
        let quota = self.setup.manifest.kv_quota();
        let adding = (key.len() + value.len()) as u64;
        // Everything stored is at least what counts: only near the quota is it
        // worth counting the live entries exactly.
        if self.world.kv_bytes + adding > quota {
            let used = self.world.kv_used_except(&key);
            if used + adding > quota {
                return Err(Error::LimitReached(format!(
                    "the plugin's storage quota of {quota} bytes is used up ({used} bytes in use)"
                )));
            }
        }
        let expires_at = ttl.map(|s| self.world.now + i64::from(s) * 1000);
        self.world.kv_put(key, KvEntry { value, expires_at });
        Ok(())
    }

    fn delete(&mut self, key: String) -> Result<(), Error> {
        self.setup.check(Capability::Kv)?;
        check_key(&key)?;
        self.world.kv_remove(&key);
        Ok(())
    }

    fn keys(
        &mut self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, Error> {
        self.setup.check(Capability::Kv)?;
        if !(1..=KV_MAX_KEYS_PER_PAGE).contains(&limit) {
            return Err(Error::Invalid(format!(
                "limit must be 1 to {KV_MAX_KEYS_PER_PAGE}"
            )));
        }
        let world = &self.world;
        Ok(world
            .kv
            .keys()
            .filter(|k| k.starts_with(&prefix) && after.as_ref().is_none_or(|a| *k > a))
            .filter(|k| world.kv_live(k).is_some())
            .take(limit as usize)
            .cloned()
            .collect())
    }

    fn get_many(&mut self, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, Error> {
        self.setup.check(Capability::Kv)?;
        if keys.len() > KV_MAX_KEYS_AT_ONCE {
            return Err(Error::LimitReached(format!(
                "at most {KV_MAX_KEYS_AT_ONCE} keys at once"
            )));
        }
        keys.iter().try_for_each(|k| check_key(k))?;
        Ok(keys
            .iter()
            .map(|k| self.world.kv_live(k).map(|e| e.value.clone()))
            .collect())
    }

    fn set_many(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<(), Error> {
        self.setup.check(Capability::Kv)?;
        if entries.len() > KV_MAX_KEYS_AT_ONCE {
            return Err(Error::LimitReached(format!(
                "at most {KV_MAX_KEYS_AT_ONCE} keys at once"
            )));
        }
        let mut seen = BTreeSet::new();
        for (key, _) in &entries {
            check_key(key)?;
            if !seen.insert(key.clone()) {
                return Err(Error::Invalid(format!("the key {key:?} is given twice")));
            }
        }
        // All or nothing: on a refusal, what was stored before comes back.
        let before = (self.world.kv.clone(), self.world.kv_bytes);
        for (key, value) in entries {
            if let Err(e) = kv::Host::set(self, key, value, None) {
                (self.world.kv, self.world.kv_bytes) = before;
                return Err(e);
            }
        }
        Ok(())
    }
}

impl links::Host for HostState {
    fn create(&mut self, as_user: i64, params: NewLink) -> Result<CreatedLink, Error> {
        self.link_owner(as_user)?;
        let link = self
            .world
            .new_link(as_user, &params.title, params.max_participants)?;
        // 22 characters, like the server's: the id's last 12 digits after `testsecret`.
        let secret = format!("testsecret{}", &link.id[link.id.len() - 12..]);
        let created = CreatedLink {
            url: format!("{PUBLIC_URL}/j/{}#k={secret}", link.id),
            link,
        };
        self.world.created.push(created.clone());
        Ok(created)
    }

    fn get(&mut self, id: String) -> Result<Link, Error> {
        self.setup.check(Capability::Links)?;
        self.world.link(&id).cloned()
    }

    fn create_many(
        &mut self,
        as_user: i64,
        params: Vec<NewLink>,
    ) -> Result<Vec<CreatedLink>, Error> {
        self.link_owner(as_user)?;
        if params.len() > LINKS_MAX_CREATE_AT_ONCE {
            return Err(Error::LimitReached(format!(
                "at most {LINKS_MAX_CREATE_AT_ONCE} links at once"
            )));
        }
        // Every one is checked before any is made, as on the server.
        for p in &params {
            let mut probe = World::default();
            probe.new_link(as_user, &p.title, p.max_participants)?;
        }
        params
            .into_iter()
            .map(|p| self.create(as_user, p))
            .collect()
    }

    fn create_scheduled(
        &mut self,
        as_user: i64,
        params: NewLink,
        schedule: Schedule,
    ) -> Result<CreatedLink, Error> {
        self.link_owner(as_user)?;
        World::check_schedule(&schedule)?;
        let created = self.create(as_user, params)?;
        self.world
            .schedules
            .insert(created.link.id.clone(), schedule);
        Ok(created)
    }

    fn get_schedule(&mut self, id: String) -> Result<Option<Schedule>, Error> {
        self.setup.check(Capability::Links)?;
        self.world.link(&id)?;
        Ok(self.world.schedules.get(&id).cloned())
    }

    fn set_schedule(
        &mut self,
        as_user: i64,
        id: String,
        schedule: Option<Schedule>,
    ) -> Result<(), Error> {
        self.link_owner(as_user)?;
        if let Some(schedule) = &schedule {
            World::check_schedule(schedule)?;
        }
        let link = self
            .world
            .links
            .iter()
            .find(|l| l.id == id && l.owner == as_user)
            .ok_or_else(|| Error::NotFound("no such link".into()))?;
        if link.revoked_at.is_some() {
            return Err(Error::NotFound("this link was revoked".into()));
        }
        match schedule {
            Some(schedule) => self.world.schedules.insert(id, schedule),
            None => self.world.schedules.remove(&id),
        };
        Ok(())
    }

    fn list_owned(&mut self, as_user: i64) -> Result<Vec<Link>, Error> {
        self.link_owner(as_user)?;
        let owned = self.world.links.iter().rev().filter(|l| l.owner == as_user);
        Ok(owned.take(LINKS_MAX_LIST as usize).cloned().collect())
    }

    fn revoke(&mut self, as_user: i64, id: String) -> Result<(), Error> {
        self.link_owner(as_user)?;
        let now = self.world.now;
        // Someone else's link is "not found", as in the REST API.
        let link = self
            .world
            .links
            .iter_mut()
            .find(|l| l.id == id && l.owner == as_user)
            .ok_or_else(|| Error::NotFound("no such link".into()))?;
        link.revoked_at.get_or_insert(now);
        Ok(())
    }
}

impl calls::Host for HostState {
    fn roster(&mut self, link: String) -> Result<Vec<Participant>, Error> {
        self.setup.check(Capability::Calls)?;
        let live = self.world.live_call(&link)?;
        Ok(live.map(|c| c.roster.clone()).unwrap_or_default())
    }

    fn activity(&mut self, link: String) -> Result<Vec<calls::ActivityMember>, Error> {
        self.setup.check(Capability::Calls)?;
        let live = self.world.live_call(&link)?;
        Ok(live.map(|c| c.activity.clone()).unwrap_or_default())
    }

    fn send(&mut self, link: String, to: Option<u32>, payload: Vec<u8>) -> Result<(), Error> {
        self.setup.check(Capability::Calls)?;
        let live = self.world.live_call(&link)?;
        if payload.len() > CALLS_MAX_PAYLOAD_BYTES {
            return Err(Error::LimitReached(format!(
                "messages are at most {CALLS_MAX_PAYLOAD_BYTES} bytes"
            )));
        }
        let live = live.ok_or_else(|| Error::NotFound("no call is running on this link".into()))?;
        if let Some(id) = to
            && !live.roster.iter().any(|p| p.id == id)
        {
            return Err(Error::NotFound("no such participant on this call".into()));
        }
        let call = live.call.id.clone();
        self.world.sent.push(SentMessage {
            link,
            call,
            to,
            payload,
        });
        Ok(())
    }

    fn remove(&mut self, link: String, as_user: i64, participant: u32) -> Result<(), Error> {
        self.setup.check(Capability::Calls)?;
        self.acting_as(as_user)?;
        let owner = self.world.link(&link)?.owner;
        let now = self.world.now;
        let live = self
            .world
            .live_call(&link)?
            .ok_or_else(|| Error::NotFound("no call is running on this link".into()))?;
        if !live.roster.iter().any(|p| p.user == Some(as_user)) {
            return Err(Error::AccessDenied(
                "the user is not on this call, so cannot remove anyone".into(),
            ));
        }
        let index = live
            .roster
            .iter()
            .position(|p| p.id == participant)
            .ok_or_else(|| Error::NotFound("no such participant on this call".into()))?;
        let target = &live.roster[index];
        if target.user.is_some() {
            return Err(Error::AccessDenied("only guests can be removed".into()));
        }
        if now - target.joined_at > REMOVAL_WINDOW_MS && as_user != owner {
            return Err(Error::AccessDenied(format!(
                "only the link's owner can remove a guest after their first {} seconds",
                REMOVAL_WINDOW_MS / 1000
            )));
        }
        let removed = RemovedParticipant {
            link,
            call: live.call.id.clone(),
            participant: live.roster.remove(index),
            by_user: as_user,
            at: now,
        };
        self.world.removals.push(removed);
        Ok(())
    }
}

impl HostState {
    /// The live call of `link`, the user on it the plugin acts as.
    fn member_on_call(
        &mut self,
        link: &str,
        as_user: i64,
        to: &str,
    ) -> Result<&mut LiveCall, Error> {
        self.setup.check(Capability::Moderation)?;
        self.acting_as(as_user)?;
        let live = self
            .world
            .live_call(link)?
            .ok_or_else(|| Error::NotFound("no call is running on this link".into()))?;
        if !live.roster.iter().any(|p| p.user == Some(as_user)) {
            return Err(Error::AccessDenied(format!(
                "the user is not on this call, so cannot {to}"
            )));
        }
        Ok(live)
    }
}

impl moderation::Host for HostState {
    fn screened_origin(&mut self) -> Result<Origin, Error> {
        self.setup.check(Capability::Moderation)?;
        self.world
            .screening
            .clone()
            .ok_or_else(|| Error::NotFound("no lobby request is being decided".into()))
    }

    fn request_origin(&mut self, link: String, request: u32) -> Result<Origin, Error> {
        self.setup.check(Capability::Moderation)?;
        let live = self
            .world
            .live_call(&link)?
            .ok_or_else(|| Error::NotFound("no call is running on this link".into()))?;
        live.lobby
            .iter()
            .find(|(n, _, _)| *n == request)
            .map(|(_, _, origin)| origin.clone())
            .ok_or_else(|| Error::NotFound("no such request in this call's lobby".into()))
    }

    fn participant_origin(&mut self, link: String, participant: u32) -> Result<Origin, Error> {
        self.setup.check(Capability::Moderation)?;
        let live = self
            .world
            .live_call(&link)?
            .ok_or_else(|| Error::NotFound("no call is running on this link".into()))?;
        if !live.roster.iter().any(|p| p.id == participant) {
            return Err(Error::NotFound("no such participant on this call".into()));
        }
        Ok(live.origins.get(&participant).cloned().unwrap_or(Origin {
            device: None,
            network: None,
        }))
    }

    fn deny_request(&mut self, link: String, as_user: i64, request: u32) -> Result<(), Error> {
        let live = self.member_on_call(&link, as_user, "deny anyone")?;
        let index = live
            .lobby
            .iter()
            .position(|(n, _, _)| *n == request)
            .ok_or_else(|| Error::NotFound("no such request in this call's lobby".into()))?;
        let (request, name, _) = live.lobby.remove(index);
        self.world.denials.push(DeniedRequest {
            link,
            request,
            name,
            by_user: as_user,
        });
        Ok(())
    }

    fn lock_lobby(&mut self, link: String, as_user: i64, locked: bool) -> Result<(), Error> {
        let live = self.member_on_call(&link, as_user, "lock the lobby")?;
        live.lobby_locked = locked;
        Ok(())
    }

    fn suspend_guests(&mut self, link: String, as_user: i64, suspended: bool) -> Result<(), Error> {
        let live = self.member_on_call(&link, as_user, "suspend the guests")?;
        live.guests_suspended = suspended;
        live.lobby_locked = suspended;
        Ok(())
    }

    fn rotate_link(&mut self, as_user: i64, id: String) -> Result<CreatedLink, Error> {
        self.setup.check(Capability::Moderation)?;
        self.acting_as(as_user)?;
        let new_id = format!("rotated{:015}", self.world.next_id());
        let link = self
            .world
            .links
            .iter_mut()
            .find(|l| l.id == id && l.owner == as_user && l.revoked_at.is_none())
            .ok_or_else(|| Error::NotFound("no such link of this user".into()))?;
        link.id.clone_from(&new_id);
        link.policy = "ask".into();
        let link = link.clone();
        if let Some(mut live) = self.world.calls.remove(&id) {
            live.call.link.clone_from(&new_id);
            self.world.calls.insert(new_id.clone(), live);
        }
        self.world.rotations.push((id, new_id.clone()));
        let url = format!(
            "{PUBLIC_URL}/j/{new_id}#k=testsecret{:0>12}",
            self.world.counter
        );
        Ok(CreatedLink { link, url })
    }

    fn is_admin(&mut self, user: i64) -> Result<bool, Error> {
        self.setup.check(Capability::Moderation)?;
        Ok(self.world.admins.contains(&user))
    }

    fn admins(&mut self) -> Result<Vec<Contact>, Error> {
        self.setup.check(Capability::Moderation)?;
        Ok(self
            .world
            .admins
            .iter()
            .map(|id| self.world.contact(*id))
            .collect())
    }

    fn contact_of(&mut self, user: i64) -> Result<Contact, Error> {
        self.setup.check(Capability::Moderation)?;
        Ok(self.world.contact(user))
    }
}

/// The server's checks on a message before it is queued (the plugin contract's).
fn check_message(message: &Message) -> Result<(), Error> {
    let outgoing = contract_mail::Outgoing {
        to: &message.to,
        cc: &message.cc,
        reply_to: message.reply_to.as_deref(),
        subject: &message.subject,
        body_bytes: message.text.len() + message.html.as_ref().map_or(0, String::len),
    };
    let attachments = message
        .attachments
        .iter()
        .map(|a| contract_mail::Attachment {
            filename: &a.filename,
            content_type: &a.content_type,
            bytes: a.data.len(),
        });
    contract_mail::check_message(outgoing, attachments).map_err(|problem| match problem {
        contract_mail::MailProblem::Invalid(why) => Error::Invalid(why),
        contract_mail::MailProblem::LimitReached(why) => Error::LimitReached(why),
    })
}

impl mail::Host for HostState {
    fn queue(&mut self, message: Message) -> Result<String, Error> {
        self.queue_mail(message, None)
    }

    fn queue_with_unsubscribe(
        &mut self,
        message: Message,
        unsubscribe_url: String,
    ) -> Result<String, Error> {
        self.queue_mail(message, Some(unsubscribe_url))
    }
}

impl HostState {
    /// `mail.queue` and `mail.queue-with-unsubscribe`, checked as the server does.
    fn queue_mail(
        &mut self,
        message: Message,
        unsubscribe: Option<String>,
    ) -> Result<String, Error> {
        self.setup.check(Capability::Mail)?;
        check_message(&message)?;
        if let Some(url) = &unsubscribe {
            contract_mail::check_unsubscribe_url(url, PUBLIC_URL).map_err(
                |problem| match problem {
                    contract_mail::MailProblem::Invalid(why) => Error::Invalid(why),
                    contract_mail::MailProblem::LimitReached(why) => Error::LimitReached(why),
                },
            )?;
        }
        let per_hour = self.setup.manifest.mails_per_hour();
        let now = self.world.now;
        let last_hour = self.world.mails.iter();
        let recent = last_hour.filter(|m| now - m.queued_at < 3_600_000).count();
        if recent >= per_hour as usize {
            return Err(Error::LimitReached(format!(
                "this plugin may queue {per_hour} mails per hour"
            )));
        }
        let id = format!("outbox-{}", self.world.next_id());
        self.world.mails.push(QueuedMail {
            id: id.clone(),
            message,
            queued_at: now,
            list_unsubscribe: unsubscribe,
        });
        Ok(id)
    }
}

/// The URL, if the plugin may call it.
fn check_url(allowed: &[String], url: &str) -> Result<(), Error> {
    let parsed =
        url::Url::parse(url).map_err(|e| Error::Invalid(format!("{url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::Invalid(format!(
            "only http and https URLs are allowed, not {}:",
            parsed.scheme()
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(Error::Invalid(
            "put credentials in an Authorization header, not in the URL".into(),
        ));
    }
    let host = parsed.host_str().unwrap_or_default();
    if !host_allowed(allowed, host) {
        return Err(Error::AccessDenied(format!(
            "{host} is not among the hosts this plugin may call"
        )));
    }
    Ok(())
}

fn check_request(request: &OutboundRequest) -> Result<(), Error> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if request.method.is_empty() || !request.method.bytes().all(token) {
        return Err(Error::Invalid(format!(
            "{:?} is not an HTTP method",
            request.method
        )));
    }
    if request.body.len() > HTTP_MAX_BODY_BYTES {
        return Err(Error::LimitReached(format!(
            "request bodies are at most {HTTP_MAX_BODY_BYTES} bytes"
        )));
    }
    for (name, value) in &request.headers {
        if !confab_plugin_contract::http::header_allowed(name, value) {
            return Err(Error::Invalid(format!("header {name:?} is not allowed")));
        }
    }
    Ok(())
}

impl http_client::Host for HostState {
    fn send(&mut self, request: OutboundRequest) -> Result<OutboundResponse, Error> {
        self.setup.check(Capability::HttpClient)?;
        let hosts: Vec<String> = self
            .setup
            .manifest
            .http_hosts()
            .iter()
            .chain(&self.setup.http_hosts)
            .cloned()
            .collect();
        check_url(&hosts, &request.url)?;
        check_request(&request)?;
        self.world.http_requests.push(request.clone());
        let answer = self.world.responders.iter_mut().find_map(|r| r(&request));
        answer.ok_or_else(|| {
            Error::Unavailable(format!(
                "the request failed: the test scripted no response for {} {}",
                request.method, request.url
            ))
        })
    }
}

/// The server's shared mail templates (`templates/email/` of this checkout: the
/// frame `email/base.html` and `email/base.txt`), built in as the server builds them
/// in. A plugin's own templates are loaded on top of them, so that they can extend
/// them, and the templates capability falls back to them for names under `email/`
/// that the plugin does not ship itself.
const SERVER_TEMPLATES: [(&str, &str); 2] = [
    (
        "email/base.html",
        include_str!("../../../templates/email/base.html"),
    ),
    (
        "email/base.txt",
        include_str!("../../../templates/email/base.txt"),
    ),
];

pub(crate) fn server_templates() -> &'static tera::Tera {
    static TEMPLATES: std::sync::OnceLock<tera::Tera> = std::sync::OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let mut tera = tera::Tera::default();
        tera.add_raw_templates(SERVER_TEMPLATES)
            .unwrap_or_else(|e| panic!("the server's email templates: {e}"));
        tera
    })
}

impl templates::Host for HostState {
    fn render(&mut self, name: String, context: String) -> Result<String, Error> {
        self.setup.check(Capability::Templates)?;
        let own = self.setup.templates.as_ref();
        let tera = match own.filter(|t| t.get_template_names().any(|n| n == name)) {
            Some(tera) => tera,
            None if name.starts_with("email/")
                && server_templates().get_template_names().any(|n| n == name) =>
            {
                server_templates()
            }
            None if own.is_none() => {
                return Err(Error::NotFound(
                    "the plugin ships no templates/ directory".into(),
                ));
            }
            None => return Err(Error::NotFound(format!("no template called {name:?}"))),
        };
        if context.len() > TEMPLATES_MAX_CONTEXT_BYTES {
            return Err(Error::LimitReached(format!(
                "the context is larger than {TEMPLATES_MAX_CONTEXT_BYTES} bytes"
            )));
        }
        let value: serde_json::Value = serde_json::from_str(&context)
            .map_err(|e| Error::Invalid(format!("the context is not JSON: {e}")))?;
        let context = tera::Context::from_value(value)
            .map_err(|_| Error::Invalid("the context must be a JSON object".into()))?;
        tera.render(&name, &context).map_err(|e| {
            // tera's message, then its causes (the line and what went wrong there)
            let first: &dyn std::error::Error = &e;
            let chain = std::iter::successors(Some(first), |e| e.source());
            Error::Invalid(chain.map(|e| e.to_string()).collect::<Vec<_>>().join(": "))
        })
    }
}

impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("World")
            .field("now", &self.now)
            .field("kv", &self.kv.keys().collect::<Vec<_>>())
            .field("links", &self.links.len())
            .field("calls", &self.calls.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000_000;

    fn state(permissions: &str) -> HostState {
        let text = format!(
            "name = \"t\"\nversion = \"0.1.0\"\nsdk = \"^1\"\nhooks = [\"http\"]\n[permissions]\n{permissions}"
        );
        HostState {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: wasmtime::StoreLimitsBuilder::new().build(),
            setup: std::sync::Arc::new(Setup {
                manifest: Manifest::parse(&text).unwrap(),
                denied: BTreeSet::new(),
                config: BTreeMap::new(),
                templates: None,
                http_hosts: Vec::new(),
            }),
            world: World {
                now: NOW,
                ..World::default()
            },
            acting_user: Some(7),
        }
    }

    fn denied<T: fmt::Debug>(result: Result<T, Error>, needle: &str) {
        match result {
            Err(Error::AccessDenied(why)) if why.contains(needle) => {}
            other => panic!("want access-denied with {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn refusals_say_whether_the_manifest_or_the_operator_is_missing() {
        use crate::bindings::confab::plugin::links::Host as _;
        let mut s = state("links = {}");
        denied(
            kv::Host::get(&mut s, "k".into()),
            "does not ask for the kv permission",
        );
        std::sync::Arc::make_mut(&mut s.setup)
            .denied
            .insert(Capability::Links);
        denied(s.list_owned(7), "has not granted links");
    }

    #[test]
    fn kv_entries_expire_and_count_against_the_quota_while_they_live() {
        use crate::bindings::confab::plugin::kv::Host as _;
        let mut s = state("kv = { quota-bytes = 10 }");
        s.set("a".into(), b"1234".to_vec(), Some(60)).unwrap();
        // Replacing an entry frees its old size first: 1 + 9 bytes.
        s.set("a".into(), b"123456789".to_vec(), Some(60)).unwrap();
        assert!(matches!(
            s.set("b".into(), b"".to_vec(), None),
            Err(Error::LimitReached(_))
        ));
        assert!(matches!(
            s.set("c".into(), b"x".to_vec(), Some(0)),
            Err(Error::Invalid(_))
        ));
        s.world.now += 60_000;
        assert_eq!(s.get("a".into()).unwrap(), None);
        s.set("b".into(), b"12345678".to_vec(), None).unwrap();
        s.set("ba".into(), b"".to_vec(), None).unwrap_err();
        s.delete("b".into()).unwrap();
        for key in ["p2", "p1", "q1", "p3"] {
            s.set(key.into(), Vec::new(), None).unwrap();
        }
        assert_eq!(
            s.keys("p".into(), Some("p1".into()), 10).unwrap(),
            ["p2", "p3"]
        );
        assert_eq!(s.keys("".into(), None, 1).unwrap(), ["p1"]);
        assert!(matches!(s.keys("".into(), None, 0), Err(Error::Invalid(_))));
    }

    #[test]
    fn links_are_created_listed_and_revoked_with_the_users_rights_only() {
        use crate::bindings::confab::plugin::links::Host as _;
        let mut s = state("links = {}");
        let new = |title: &str, max| NewLink {
            title: title.into(),
            max_participants: max,
        };
        let first = s.create(7, new(" Standup ", None)).unwrap();
        let secret = first
            .url
            .strip_prefix(&format!("{PUBLIC_URL}/j/{}#k=", first.link.id))
            .unwrap();
        assert!(
            secret.len() == 22
                && secret
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{}",
            first.url
        );
        assert_eq!(
            (
                first.link.title.as_str(),
                first.link.max_participants,
                first.link.created_at
            ),
            ("Standup", 32, NOW)
        );
        for bad in [new(" ", None), new("a\u{7}b", None), new("x", Some(33))] {
            assert!(matches!(s.create(7, bad), Err(Error::Invalid(_))));
        }
        denied(s.create(8, new("Not mine", None)), "act only as the user");
        let second = s.create(7, new("Retro", Some(4))).unwrap();
        s.world.new_link(8, "Someone else's", None).unwrap();
        let ids: Vec<String> = s.list_owned(7).unwrap().into_iter().map(|l| l.id).collect();
        assert_eq!(ids, [second.link.id.clone(), first.link.id.clone()]);

        let theirs = s.world.links[2].id.clone();
        assert!(matches!(s.revoke(7, theirs), Err(Error::NotFound(_))));
        s.world.now += 5;
        s.revoke(7, first.link.id.clone()).unwrap();
        s.world.now += 5;
        s.revoke(7, first.link.id.clone()).unwrap();
        let revoked = s.get(first.link.id).unwrap();
        assert_eq!(revoked.revoked_at, Some(NOW + 5));
        s.acting_user = None;
        denied(s.list_owned(7), "no signed-in user");
    }

    #[test]
    fn calls_need_a_running_call_and_follow_the_removal_rules() {
        use crate::bindings::confab::plugin::calls::Host as _;
        let mut s = state("calls = {}");
        let link = s.world.new_link(7, "Call", None).unwrap().id;
        assert_eq!(s.roster(link.clone()).unwrap(), []);
        assert!(matches!(
            s.send(link.clone(), None, b"x".to_vec()),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(s.roster("nope".into()), Err(Error::NotFound(_))));
        let person = |id, user| Participant {
            id,
            name: format!("p{id}"),
            user,
            joined_at: NOW,
        };
        let call = Call {
            link: link.clone(),
            id: "c1".into(),
            started_at: NOW,
        };
        let roster = vec![person(1, Some(7)), person(2, Some(8)), person(3, None)];
        s.world.calls.insert(
            link.clone(),
            LiveCall {
                roster,
                next_participant: 4,
                ..LiveCall::new(call)
            },
        );
        assert!(matches!(
            s.send(link.clone(), Some(9), b"x".to_vec()),
            Err(Error::NotFound(_))
        ));
        assert!(matches!(
            s.send(link.clone(), None, vec![0; 64 * 1024 + 1]),
            Err(Error::LimitReached(_))
        ));
        s.send(link.clone(), Some(3), b"hi".to_vec()).unwrap();
        assert_eq!(s.world.sent[0].to, Some(3));
        // The activity is what the test set, and nothing without a call.
        assert_eq!(s.activity(link.clone()).unwrap(), []);
        let member = |participant, role| calls::ActivityMember { participant, role };
        let members = vec![
            member(2, calls::ActivityRole::Host),
            member(3, calls::ActivityRole::Guest),
        ];
        s.world.calls.get_mut(&link).unwrap().activity = members.clone();
        assert_eq!(s.activity(link.clone()).unwrap(), members);
        assert!(matches!(s.activity("nope".into()), Err(Error::NotFound(_))));

        s.acting_user = Some(8);
        s.world.now += REMOVAL_WINDOW_MS + 1;
        denied(s.remove(link.clone(), 8, 3), "only the link's owner");
        denied(s.remove(link.clone(), 7, 3), "act only as the user");
        denied(s.remove(link.clone(), 8, 1), "only guests");
        s.acting_user = Some(7);
        s.remove(link.clone(), 7, 3).unwrap();
        assert_eq!(s.world.removals[0].participant.id, 3);
        assert_eq!(s.roster(link.clone()).unwrap().len(), 2);

        s.world.links[0].revoked_at = Some(NOW);
        assert!(matches!(s.roster(link), Err(Error::NotFound(_))));
    }

    fn message(to: &str, subject: &str) -> Message {
        Message {
            to: vec![to.into()],
            cc: Vec::new(),
            reply_to: None,
            subject: subject.into(),
            text: "Join us".into(),
            html: None,
            attachments: Vec::new(),
        }
    }

    #[test]
    fn mail_is_checked_like_the_server_does_and_limited_per_hour() {
        use crate::bindings::confab::plugin::mail::Host as _;
        let mut s = state("mail = { per-hour = 2 }");
        for (to, subject) in [
            ("Ana <ana@example.org>", "Hi\r\nBcc: victim@example.org"),
            ("Ana\n <ana@example.org>", "Hi"),
            ("ana@localhost", "Hi"),
            ("a b@example.org", "Hi"),
            ("ana@example.org", " "),
        ] {
            let result = s.queue(message(to, subject));
            assert!(matches!(result, Err(Error::Invalid(_))), "{to} {subject:?}");
        }
        let id = s
            .queue(message("Ana <ana@example.org>", "Our call"))
            .unwrap();
        assert_eq!(s.world.mails[0].id, id);
        assert_eq!(
            s.world.mails[0].recipients().collect::<Vec<_>>(),
            ["Ana <ana@example.org>"]
        );
        s.world.now += 1_000;
        s.queue(message("bo@example.org", "Again")).unwrap();
        let third = s.queue(message("cy@example.org", "Too many"));
        assert!(matches!(third, Err(Error::LimitReached(_))));
        s.world.now = NOW + 3_600_000;
        s.queue(message("cy@example.org", "An hour later")).unwrap();
        assert_eq!(s.world.mails.len(), 3);
    }

    #[test]
    fn outbound_requests_reach_allowed_hosts_and_scripted_answers_only() {
        use crate::bindings::confab::plugin::http_client::Host as _;
        let mut s = state("http-client = { hosts = [\"api.example.org\", \"*.hooks.example\"] }");
        s.world.responders.push(Box::new(|r: &OutboundRequest| {
            r.url
                .starts_with("https://api.example.org/")
                .then(|| OutboundResponse::text(200, "pong"))
        }));
        let request = |url: &str| OutboundRequest {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("x-token".into(), "t".into())],
            body: b"ping".to_vec(),
            timeout_ms: None,
        };
        let answer = s.send(request("https://api.example.org/ping")).unwrap();
        assert_eq!(answer.body, b"pong");
        denied(
            s.send(request("https://example.org/")),
            "not among the hosts",
        );
        denied(
            s.send(request("https://hooks.example/")),
            "not among the hosts",
        );
        assert!(matches!(
            s.send(request("https://a.hooks.example/")),
            Err(Error::Unavailable(_))
        ));
        for bad in ["file:///etc/passwd", "https://u:p@api.example.org/", "nope"] {
            assert!(
                matches!(s.send(request(bad)), Err(Error::Invalid(_))),
                "{bad}"
            );
        }
        let mut smuggling = request("https://api.example.org/");
        smuggling
            .headers
            .push(("x-a".into(), "b\r\nhost: evil".into()));
        assert!(matches!(s.send(smuggling), Err(Error::Invalid(_))));
        let urls: Vec<&str> = s
            .world
            .http_requests
            .iter()
            .map(|r| r.url.as_str())
            .collect();
        assert_eq!(
            urls,
            ["https://api.example.org/ping", "https://a.hooks.example/"]
        );
    }
}
