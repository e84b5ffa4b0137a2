//! `plugin.toml`: what a plugin is, which hooks it wants called, which capabilities it
//! asks for and within which limits.
//!
//! ```toml
//! name = "hello"
//! version = "0.1.0"
//! description = "Greets people"
//! sdk = "^1.0"
//! component = "target/wasm32-wasip2/release/hello_plugin.wasm"
//! hooks = ["events", "http"]
//! events = ["link-created", "participant-joined"]
//!
//! [permissions]
//! kv = { quota-bytes = 1048576 }
//! links = {}
//! mail = { per-hour = 100 }
//! http-client = { hosts = ["caldav.example.org"] }
//!
//! [limits]
//! memory-mib = 64
//! deadline-ms = 200
//!
//! [[timers]]
//! name = "purge"
//! every = "1h"
//!
//! [[timers]]
//! name = "nightly"
//! cron = "0 3 * * *"                 # minute hour day-of-month month day-of-week, UTC
//!
//! [config.greeting]
//! description = "What to say"
//! default = "Hello"
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::valid_plugin_name;

pub mod cron;

pub use cron::Cron;

/// Largest manifest accepted, in bytes.
pub const MAX_MANIFEST_BYTES: usize = 64 * 1024;

/// A parsed and checked `plugin.toml`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Manifest {
    /// 1–64 of `a-z`, `0-9`, `-`; the plugin's URL prefix is `/p/{name}/`.
    pub name: String,
    /// The plugin's own version (semver).
    pub version: semver::Version,
    #[serde(default)]
    pub description: String,
    /// Which SDK versions the plugin was written for, e.g. `^1.0`.
    pub sdk: semver::VersionReq,
    /// The component file, relative to the manifest's directory.
    #[serde(default = "default_component")]
    pub component: String,
    /// Which hooks the server calls.
    #[serde(default)]
    pub hooks: Vec<Hook>,
    /// With the `events` hook: which events (empty means all).
    #[serde(default)]
    pub events: Vec<EventKind>,
    #[serde(default)]
    pub permissions: Permissions,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub timers: Vec<Timer>,
    /// Settings the operator may give, by key.
    #[serde(default)]
    pub config: BTreeMap<String, ConfigKey>,
    #[serde(default)]
    pub web: Web,
}

fn default_component() -> String {
    "plugin.wasm".into()
}

/// A hook the server calls.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    Events,
    LobbyDecision,
    Http,
    CallMessages,
    Timers,
}

impl Hook {
    /// The name used in `plugin.toml`'s `hooks`.
    pub fn as_str(self) -> &'static str {
        match self {
            Hook::Events => "events",
            Hook::LobbyDecision => "lobby-decision",
            Hook::Http => "http",
            Hook::CallMessages => "call-messages",
            Hook::Timers => "timers",
        }
    }
}

/// The kinds of `hooks.event`.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    LinkCreated,
    LinkUpdated,
    LinkRevoked,
    CallStarted,
    CallEnded,
    ParticipantJoined,
    ParticipantLeft,
    ParticipantRemoved,
    LobbyRequest,
}

impl EventKind {
    /// The name used in `plugin.toml`'s `events`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::LinkCreated => "link-created",
            EventKind::LinkUpdated => "link-updated",
            EventKind::LinkRevoked => "link-revoked",
            EventKind::CallStarted => "call-started",
            EventKind::CallEnded => "call-ended",
            EventKind::ParticipantJoined => "participant-joined",
            EventKind::ParticipantLeft => "participant-left",
            EventKind::ParticipantRemoved => "participant-removed",
            EventKind::LobbyRequest => "lobby-request",
        }
    }
}

/// A capability a plugin may import (`log` is always allowed).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    Kv,
    Links,
    Calls,
    Mail,
    HttpClient,
    Templates,
    Users,
    Moderation,
    /// A module in a sandboxed frame on the call page (`web.call-page`).
    #[serde(rename = "web.call-page")]
    WebCallPage,
    /// A card in a sandboxed frame on every member's dashboard (`web.dashboard`).
    #[serde(rename = "web.dashboard")]
    WebDashboard,
    /// A card in a sandboxed frame on administrators' dashboards (`web.admin`, SDK 1.2).
    #[serde(rename = "web.admin")]
    WebAdmin,
    /// The page puts the full link, secret included, into a request to the
    /// plugin's own routes when its frame asks (`web.link-secret = true`, SDK 1.2).
    #[serde(rename = "web.link-secret")]
    WebLinkSecret,
}

impl Capability {
    pub const ALL: [Capability; 12] = [
        Capability::Kv,
        Capability::Links,
        Capability::Users,
        Capability::Calls,
        Capability::Mail,
        Capability::HttpClient,
        Capability::Templates,
        Capability::Moderation,
        Capability::WebCallPage,
        Capability::WebDashboard,
        Capability::WebAdmin,
        Capability::WebLinkSecret,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Kv => "kv",
            Capability::Links => "links",
            Capability::Calls => "calls",
            Capability::Mail => "mail",
            Capability::HttpClient => "http-client",
            Capability::Templates => "templates",
            Capability::Users => "users",
            Capability::Moderation => "moderation",
            Capability::WebCallPage => "web.call-page",
            Capability::WebDashboard => "web.dashboard",
            Capability::WebAdmin => "web.admin",
            Capability::WebLinkSecret => "web.link-secret",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the plugin asks for; each one still needs the operator's grant.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Permissions {
    pub kv: Option<KvPermission>,
    pub links: Option<Empty>,
    pub calls: Option<Empty>,
    pub mail: Option<MailPermission>,
    pub http_client: Option<HttpPermission>,
    pub templates: Option<Empty>,
    /// The acting user's own name and address (SDK 1.1).
    pub users: Option<Empty>,
    /// Origins of callers, denying, locking and rotating as a user, the
    /// administrators (SDK 1.2).
    pub moderation: Option<Empty>,
}

impl Permissions {
    /// The capabilities asked for.
    pub fn requested(&self) -> Vec<Capability> {
        let mut out = Vec::new();
        if self.kv.is_some() {
            out.push(Capability::Kv);
        }
        if self.links.is_some() {
            out.push(Capability::Links);
        }
        if self.calls.is_some() {
            out.push(Capability::Calls);
        }
        if self.mail.is_some() {
            out.push(Capability::Mail);
        }
        if self.http_client.is_some() {
            out.push(Capability::HttpClient);
        }
        if self.templates.is_some() {
            out.push(Capability::Templates);
        }
        if self.users.is_some() {
            out.push(Capability::Users);
        }
        if self.moderation.is_some() {
            out.push(Capability::Moderation);
        }
        out
    }
}

/// A permission without settings (`links = {}`).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct KvPermission {
    /// Total size of keys and values the plugin may keep.
    #[serde(default = "default_kv_quota")]
    pub quota_bytes: u64,
}

fn default_kv_quota() -> u64 {
    1024 * 1024
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct MailPermission {
    /// Messages the plugin may queue per hour.
    #[serde(default = "default_mails_per_hour")]
    pub per_hour: u32,
}

fn default_mails_per_hour() -> u32 {
    100
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpPermission {
    /// Host names (exact, or `*.example.org` for subdomains) the plugin may call.
    pub hosts: Vec<String>,
    /// The operator may add hosts (`plugins.settings.{name}.http_hosts`), for a
    /// plugin that calls servers only its operator knows (since 1.2). Then `hosts`
    /// may be empty.
    #[serde(default)]
    pub operator_hosts: bool,
}

/// Sandbox limits the plugin asks for; the operator's maximums cap them.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct Limits {
    /// Linear memory per instance.
    pub memory_mib: u32,
    /// Wall-clock time per invocation.
    pub deadline_ms: u32,
    /// Invocations running at the same time.
    pub concurrency: u32,
    /// How long a lobby decision may take before the fallback applies.
    pub decision_deadline_ms: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_mib: 64,
            deadline_ms: 200,
            concurrency: 8,
            decision_deadline_ms: 100,
        }
    }
}

/// A timer: the server calls `on-timer(name)` every `every`, or at each minute its
/// `cron` expression names. Exactly one of the two.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Timer {
    pub name: String,
    /// `30s`, `15m`, `1h`, `1d` (at least 10 seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every: Option<String>,
    /// `minute hour day-of-month month day-of-week`, in UTC, e.g. `0 3 * * *`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
}

/// When a timer fires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// Every so often, counted from when the server first saw the timer.
    Every(Duration),
    /// At the minutes of a cron expression, on the wall clock (UTC).
    Cron(Cron),
}

/// When a timer is due next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// At this instant of the monotonic clock (`every` timers).
    After(Instant),
    /// At this minute of the wall clock (cron timers).
    At(DateTime<Utc>),
}

impl Schedule {
    /// The first time after now: `now` on the monotonic clock, `wall` on the app's
    /// clock. `None` if it never comes.
    pub fn next(&self, now: Instant, wall: DateTime<Utc>) -> Option<Due> {
        match self {
            Schedule::Every(every) => Some(Due::After(now + *every)),
            Schedule::Cron(cron) => cron.next_after(wall).map(Due::At),
        }
    }
}

impl Due {
    pub fn reached(&self, now: Instant, wall: DateTime<Utc>) -> bool {
        match self {
            Due::After(at) => *at <= now,
            Due::At(at) => *at <= wall,
        }
    }
}

impl Timer {
    /// The interval of an `every` timer.
    pub fn interval(&self) -> Option<Duration> {
        parse_interval(self.every.as_deref()?)
    }

    /// When it fires; `None` for a timer the manifest check would refuse.
    pub fn schedule(&self) -> Option<Schedule> {
        match (&self.every, &self.cron) {
            (Some(every), None) => parse_interval(every).map(Schedule::Every),
            (None, Some(cron)) => Cron::parse(cron).ok().map(Schedule::Cron),
            _ => None,
        }
    }

    /// Why the timer is refused, and which of its keys to point at.
    fn problem(&self) -> Option<(&'static str, String)> {
        let name = &self.name;
        match (&self.every, &self.cron) {
            (Some(every), None) => match parse_interval(every) {
                Some(d) if d >= Duration::from_secs(10) => None,
                _ => Some((
                    "every",
                    format!(
                        "timer {name:?}: every = {every:?} must be like 30s, 15m, 1h or 1d, at least 10s"
                    ),
                )),
            },
            (None, Some(cron)) => Cron::parse(cron)
                .err()
                .map(|why| ("cron", format!("timer {name:?}: cron: {why}"))),
            (Some(_), Some(_)) => Some((
                "cron",
                format!("timer {name:?} has both every and cron; give exactly one"),
            )),
            (None, None) => Some((
                "name",
                format!(
                    "timer {name:?} needs every = \"1h\" or cron = \"0 3 * * *\" (minute hour day-of-month month day-of-week, UTC)"
                ),
            )),
        }
    }
}

/// A setting the operator may give the plugin.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ConfigKey {
    #[serde(default)]
    pub description: String,
    pub default: Option<String>,
    /// The plugin does not load without it.
    #[serde(default)]
    pub required: bool,
    /// Shown as `••••` by `inspect`.
    #[serde(default)]
    pub secret: bool,
}

/// Files the plugin serves to browsers.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Web {
    /// A directory (relative to the manifest) served under `/p/{name}/static/`.
    #[serde(rename = "static")]
    pub static_dir: Option<String>,
    /// An ES module in the static directory that the call page imports.
    pub call_page: Option<String>,
    /// An ES module in the static directory that the dashboard imports (SDK 1.1).
    pub dashboard: Option<String>,
    /// An ES module in the static directory for administrators' dashboards only
    /// (SDK 1.2).
    pub admin: Option<String>,
    /// The plugin's frames may ask the page to put the full link, secret
    /// included, into requests to the plugin's own routes (SDK 1.2).
    #[serde(default)]
    pub link_secret: bool,
}

impl Web {
    /// The web capabilities these files need granted.
    pub fn requested(&self) -> Vec<Capability> {
        let mut out = Vec::new();
        if self.call_page.is_some() {
            out.push(Capability::WebCallPage);
        }
        if self.dashboard.is_some() {
            out.push(Capability::WebDashboard);
        }
        if self.admin.is_some() {
            out.push(Capability::WebAdmin);
        }
        if self.link_secret {
            out.push(Capability::WebLinkSecret);
        }
        out
    }

    /// The module of a kind of frame: `call-page`, `dashboard` or `admin`.
    pub fn module(&self, kind: Capability) -> Option<&String> {
        match kind {
            Capability::WebCallPage => self.call_page.as_ref(),
            Capability::WebDashboard => self.dashboard.as_ref(),
            Capability::WebAdmin => self.admin.as_ref(),
            _ => None,
        }
    }
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ManifestError {
    #[error("plugin.toml is larger than {MAX_MANIFEST_BYTES} bytes")]
    TooLarge,
    #[error("plugin.toml: {0}")]
    Parse(String),
    #[error("plugin.toml: {0}")]
    Invalid(String),
}

impl Manifest {
    /// Parses and checks a manifest.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        if text.len() > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge);
        }
        let manifest: Manifest = toml::from_str(text).map_err(|e| {
            let message = e.message();
            ManifestError::Parse(match e.span() {
                Some(span) => format!("{}: {message}", at_line(text, span.start)),
                None => message.to_string(),
            })
        })?;
        manifest.check(text)?;
        Ok(manifest)
    }

    /// Checks what serde cannot; `text` is the manifest, to name the line of a bad timer.
    fn check(&self, text: &str) -> Result<(), ManifestError> {
        let invalid = |m: String| Err(ManifestError::Invalid(m));
        if !valid_plugin_name(&self.name) {
            return invalid(format!(
                "name {:?} must be 1–64 characters of a-z, 0-9 and -",
                self.name
            ));
        }
        if self.description.chars().count() > 500 {
            return invalid("description is longer than 500 characters".into());
        }
        if !safe_relative(&self.component) {
            return invalid(format!(
                "component {:?} must be a relative path inside the plugin's directory",
                self.component
            ));
        }
        let l = &self.limits;
        if !(1..=4096).contains(&l.memory_mib) {
            return invalid("limits.memory-mib must be 1 to 4096".into());
        }
        if !(1..=60_000).contains(&l.deadline_ms) || !(1..=10_000).contains(&l.decision_deadline_ms)
        {
            return invalid(
                "limits.deadline-ms must be 1 to 60000 and limits.decision-deadline-ms 1 to 10000"
                    .into(),
            );
        }
        if !(1..=256).contains(&l.concurrency) {
            return invalid("limits.concurrency must be 1 to 256".into());
        }
        if !self.events.is_empty() && !self.hooks.contains(&Hook::Events) {
            return invalid("events are listed but the events hook is not".into());
        }
        if !self.timers.is_empty() && !self.hooks.contains(&Hook::Timers) {
            return invalid("timers are declared but the timers hook is not listed".into());
        }
        if self.hooks.contains(&Hook::Timers) && self.timers.is_empty() {
            return invalid("the timers hook is listed but no [[timers]] are declared".into());
        }
        let mut names = std::collections::HashSet::new();
        for (i, timer) in self.timers.iter().enumerate() {
            let problem =
                if timer.name.is_empty() || timer.name.len() > 64 || !names.insert(&timer.name) {
                    Some((
                        "name",
                        format!("timer name {:?} must be 1–64 bytes and unique", timer.name),
                    ))
                } else {
                    timer.problem()
                };
            if let Some((key, why)) = problem {
                return invalid(match timer_key_at(text, i, key) {
                    Some(at) => format!("{at}: {why}"),
                    None => why,
                });
            }
        }
        if let Some(kv) = &self.permissions.kv
            && !(1..=1024 * 1024 * 1024).contains(&kv.quota_bytes)
        {
            return invalid("permissions.kv.quota-bytes must be 1 B to 1 GiB".into());
        }
        if let Some(mail) = &self.permissions.mail
            && !(1..=100_000).contains(&mail.per_hour)
        {
            return invalid("permissions.mail.per-hour must be 1 to 100000".into());
        }
        if let Some(http) = &self.permissions.http_client {
            if http.hosts.is_empty() && !http.operator_hosts {
                return invalid(
                    "permissions.http-client.hosts lists no host (and operator-hosts is not set)"
                        .into(),
                );
            }
            if let Some(bad) = http.hosts.iter().find(|h| !valid_host_pattern(h)) {
                return invalid(format!(
                    "permissions.http-client.hosts: {bad:?} is not a host name or *.domain"
                ));
            }
        }
        for key in self.config.keys() {
            if key.is_empty()
                || key.len() > 64
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            {
                return invalid(format!(
                    "config key {key:?} must be 1–64 of a-z, 0-9, - and _"
                ));
            }
        }
        if let Some(dir) = &self.web.static_dir
            && !safe_relative(dir)
        {
            return invalid(format!("web.static {dir:?} must be a relative path"));
        }
        for (key, module) in [
            ("call-page", &self.web.call_page),
            ("dashboard", &self.web.dashboard),
            ("admin", &self.web.admin),
        ] {
            let Some(module) = module else { continue };
            if self.web.static_dir.is_none() {
                return invalid(format!("web.{key} needs web.static"));
            }
            if !safe_relative(module) || !module.ends_with(".js") {
                return invalid(format!(
                    "web.{key} {module:?} must be a .js file inside web.static"
                ));
            }
        }
        Ok(())
    }

    /// Every capability the plugin asks for: its permissions, then what its web
    /// files need.
    pub fn requested(&self) -> Vec<Capability> {
        let mut out = self.permissions.requested();
        out.extend(self.web.requested());
        out
    }

    /// Whether the server calls the hook at all.
    pub fn wants(&self, hook: Hook) -> bool {
        self.hooks.contains(&hook)
    }

    /// The `kv` quota asked for (0 without the permission).
    pub fn kv_quota(&self) -> u64 {
        self.permissions.kv.as_ref().map_or(0, |kv| kv.quota_bytes)
    }

    /// The hourly mail limit asked for (0 without the permission).
    pub fn mails_per_hour(&self) -> u32 {
        self.permissions.mail.as_ref().map_or(0, |m| m.per_hour)
    }

    /// Whether the operator may add hosts for `http-client`.
    pub fn http_operator_hosts(&self) -> bool {
        self.permissions
            .http_client
            .as_ref()
            .is_some_and(|h| h.operator_hosts)
    }

    /// The hosts the manifest lists for `http-client` (none without the
    /// permission); the operator may add some ([`Self::http_operator_hosts`]).
    pub fn http_hosts(&self) -> &[String] {
        self.permissions
            .http_client
            .as_ref()
            .map_or(&[], |h| h.hosts.as_slice())
    }

    /// Whether the `events` hook covers this kind of event.
    pub fn wants_event(&self, kind: EventKind) -> bool {
        self.wants(Hook::Events) && (self.events.is_empty() || self.events.contains(&kind))
    }
}

/// `line N (what is written there)`, for a byte offset into the manifest.
fn at_line(text: &str, offset: usize) -> String {
    let line = text.get(..offset).unwrap_or(text).matches('\n').count() + 1;
    let code = text.lines().nth(line - 1).unwrap_or("").trim();
    format!("line {line} ({code})")
}

/// Where `key` of the manifest's `index`-th timer is written.
fn timer_key_at(text: &str, index: usize, key: &str) -> Option<String> {
    let doc = toml::de::DeTable::parse(text).ok()?;
    let timer = doc
        .get_ref()
        .get("timers")?
        .get_ref()
        .as_array()?
        .get(index)?
        .get_ref()
        .as_table()?;
    let value = timer.get(key).or_else(|| timer.get("name"))?;
    Some(at_line(text, value.span().start))
}

/// `30s`, `15m`, `2h`, `1d`.
pub fn parse_interval(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.len().checked_sub(1)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// A relative path that stays inside its base directory.
pub fn safe_relative(path: &str) -> bool {
    let p = std::path::Path::new(path);
    !path.is_empty()
        && p.components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// Whether `host` is a host name, or `*.domain` for its subdomains.
pub fn valid_host_pattern(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Whether `host` matches one of the allowed patterns (case-insensitive).
pub fn host_allowed(patterns: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    patterns.iter().any(|p| {
        let p = p.to_ascii_lowercase();
        match p.strip_prefix("*.") {
            Some(domain) => host
                .strip_suffix(domain)
                .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
            None => host == p,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
name = "hello"
version = "0.1.0"
description = "Greets people"
sdk = "^1.0"
hooks = ["events", "http", "timers"]
events = ["link-created"]

[permissions]
kv = { quota-bytes = 2048 }
links = {}
http-client = { hosts = ["caldav.example.org", "*.hooks.example"] }

[limits]
memory-mib = 32

[[timers]]
name = "purge"
every = "1h"

[config.greeting]
description = "What to say"
default = "Hello"

[web]
static = "static"
call-page = "call.js"
"#;

    #[test]
    fn a_full_manifest_parses_with_defaults_filled_in() {
        let m = Manifest::parse(FULL).unwrap();
        assert_eq!(m.name, "hello");
        assert_eq!(m.component, "plugin.wasm");
        assert_eq!(
            m.permissions.requested(),
            vec![Capability::Kv, Capability::Links, Capability::HttpClient]
        );
        assert_eq!(m.limits.memory_mib, 32);
        assert_eq!(m.limits.deadline_ms, 200);
        assert_eq!(m.timers[0].interval(), Some(Duration::from_secs(3600)));
        assert!(m.wants_event(EventKind::LinkCreated));
        assert!(!m.wants_event(EventKind::CallStarted));
        assert!(m.sdk.matches(&semver::Version::new(1, 3, 0)));
        assert!(!m.sdk.matches(&semver::Version::new(2, 0, 0)));
    }

    #[test]
    fn bad_manifests_say_what_is_wrong() {
        let cases = [
            (FULL.replace("\"hello\"", "\"Hello World\""), "name"),
            (FULL.replace("every = \"1h\"", "every = \"5s\""), "every"),
            (FULL.replace("every = \"1h\"", "every = \"soon\""), "every"),
            (
                FULL.replace("memory-mib = 32", "memory-mib = 0"),
                "memory-mib",
            ),
            (
                FULL.replace("\"caldav.example.org\"", "\"http://x\""),
                "hosts",
            ),
            (
                FULL.replace("call-page = \"call.js\"", "call-page = \"../x.js\""),
                "call-page",
            ),
            (FULL.replace("sdk = \"^1.0\"", "sdk = \"one\""), "sdk"),
            (FULL.replace("links = {}", "links = {}\nroot = {}"), "root"),
            (
                FULL.replace("hooks = [\"events\", \"http\", \"timers\"]", "hooks = []"),
                "events",
            ),
            (
                format!("component = \"/etc/passwd\"\n{FULL}"),
                "relative path inside",
            ),
        ];
        for (text, needle) in cases {
            let err = Manifest::parse(&text).unwrap_err().to_string();
            assert!(err.contains(needle), "{needle}: {err}");
        }
        assert_eq!(
            Manifest::parse(&"#".repeat(MAX_MANIFEST_BYTES + 1)),
            Err(ManifestError::TooLarge)
        );
    }

    /// FULL with one more timer, given as the lines of its table.
    fn with_timer(timer: &str) -> String {
        FULL.replace(
            "[config.greeting]",
            &format!("[[timers]]\n{timer}\n\n[config.greeting]"),
        )
    }

    #[test]
    fn timers_run_every_so_often_or_on_a_cron_schedule() {
        let m = Manifest::parse(&with_timer("name = \"nightly\"\ncron = \"0 3 * * *\"")).unwrap();
        assert_eq!(
            m.timers[0].schedule(),
            Some(Schedule::Every(Duration::from_secs(3600)))
        );
        assert_eq!(
            m.timers[1].schedule(),
            Some(Schedule::Cron(Cron::parse("0 3 * * *").unwrap()))
        );
        assert_eq!(m.timers[1].interval(), None);
        // Shown as written, without the key it does not use.
        let shown = serde_json::to_value(&m.timers).unwrap();
        assert_eq!(
            shown,
            serde_json::json!([
                { "name": "purge", "every": "1h" },
                { "name": "nightly", "cron": "0 3 * * *" }
            ])
        );
    }

    #[test]
    fn cron_timers_are_due_at_their_minute_of_the_wall_clock() {
        let now = Instant::now();
        let wall: DateTime<Utc> = "2026-11-21T02:59:30Z".parse().unwrap();
        let cron = Schedule::Cron(Cron::parse("0 3 * * *").unwrap());
        let due = cron.next(now, wall).unwrap();
        assert_eq!(due, Due::At("2026-11-21T03:00:00Z".parse().unwrap()));
        assert!(!due.reached(now, wall));
        // The monotonic clock does not matter to a cron timer, the wall clock does.
        assert!(!due.reached(now + Duration::from_secs(3600), wall));
        assert!(due.reached(now, wall + chrono::Duration::seconds(30)));
        let every = Schedule::Every(Duration::from_secs(60));
        let due = every.next(now, wall).unwrap();
        assert!(!due.reached(now, wall + chrono::Duration::hours(1)));
        assert!(due.reached(now + Duration::from_secs(60), wall));
    }

    #[test]
    fn bad_timers_are_refused_with_the_line_they_are_on() {
        let cases = [
            (
                "name = \"nightly\"\ncron = \"0 25 * * *\"",
                "cron = \"0 25 * * *\"",
                "timer \"nightly\": cron: hour 25 is out of range 0-23",
            ),
            (
                "name = \"nightly\"\ncron = \"0 3 * *\"",
                "cron = \"0 3 * *\"",
                "must have 5 fields",
            ),
            (
                "name = \"both\"\nevery = \"1h\"\ncron = \"0 3 * * *\"",
                "cron = \"0 3 * * *\"",
                "timer \"both\" has both every and cron; give exactly one",
            ),
            (
                "name = \"neither\"",
                "name = \"neither\"",
                "timer \"neither\" needs every = \"1h\" or cron = \"0 3 * * *\"",
            ),
            (
                "name = \"fast\"\nevery = \"5s\"",
                "every = \"5s\"",
                "at least 10s",
            ),
            (
                "name = \"purge\"\ncron = \"0 3 * * *\"",
                "name = \"purge\"",
                "must be 1–64 bytes and unique",
            ),
        ];
        for (timer, line_text, needle) in cases {
            let text = with_timer(timer);
            // The second `line_text` in the file when it repeats the first timer's name.
            let line = text
                .lines()
                .enumerate()
                .filter(|(_, l)| *l == line_text)
                .map(|(i, _)| i + 1)
                .last()
                .unwrap();
            let err = Manifest::parse(&text).unwrap_err().to_string();
            assert!(
                err.contains(&format!("line {line} ({line_text}): ")) && err.contains(needle),
                "{timer}: {err}"
            );
        }
        // Inline tables too.
        let text = FULL
            .replace("[[timers]]\nname = \"purge\"\nevery = \"1h\"\n", "")
            .replace(
                "[permissions]",
                "timers = [{ name = \"x\", cron = \"* * * * 9\" }]\n\n[permissions]",
            );
        let err = Manifest::parse(&text).unwrap_err().to_string();
        assert!(
            err.contains("line 9 (timers = ") && err.contains("day of week 9"),
            "{err}"
        );
    }

    #[test]
    fn host_patterns_match_exact_names_and_subdomains_only() {
        let allowed = vec![
            "caldav.example.org".to_string(),
            "*.hooks.example".to_string(),
        ];
        assert!(host_allowed(&allowed, "CalDAV.example.org"));
        assert!(host_allowed(&allowed, "a.hooks.example"));
        assert!(!host_allowed(&allowed, "hooks.example"));
        assert!(!host_allowed(&allowed, "evilhooks.example"));
        assert!(!host_allowed(&allowed, "example.org"));
        assert!(!host_allowed(&allowed, "caldav.example.org.evil"));
    }
}
