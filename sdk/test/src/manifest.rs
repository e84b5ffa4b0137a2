//! The parts of `plugin.toml` the harness acts on. The server checks a manifest far
//! more strictly (`confab plugin list` says why one is refused); this only reads it.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// A capability a plugin asks for in `[permissions]` (`log` and `config` need no
/// permission).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// `kv`: the plugin's key-value store.
    Kv,
    /// `links`: call links, on behalf of a user.
    Links,
    /// `calls`: live calls.
    Calls,
    /// `mail`: the outbox.
    Mail,
    /// `http-client`: outbound HTTP to the manifest's hosts.
    HttpClient,
    /// `templates`: the plugin's tera templates.
    Templates,
    /// `users`: the acting user's own name and address (SDK 1.1).
    Users,
}

impl Capability {
    /// The name used in `plugin.toml` and in the operator's `grant` list.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Kv => "kv",
            Capability::Links => "links",
            Capability::Calls => "calls",
            Capability::Mail => "mail",
            Capability::HttpClient => "http-client",
            Capability::Templates => "templates",
            Capability::Users => "users",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct Manifest {
    pub name: String,
    #[serde(default)]
    pub hooks: Vec<String>,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default)]
    pub permissions: Permissions,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub timers: Vec<Timer>,
    #[serde(default)]
    pub config: BTreeMap<String, ConfigKey>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct Permissions {
    pub kv: Option<KvPermission>,
    pub links: Option<toml::Table>,
    pub calls: Option<toml::Table>,
    pub mail: Option<MailPermission>,
    pub http_client: Option<HttpPermission>,
    pub templates: Option<toml::Table>,
    pub users: Option<toml::Table>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct KvPermission {
    #[serde(default = "default_kv_quota")]
    pub quota_bytes: u64,
}

fn default_kv_quota() -> u64 {
    1024 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) struct MailPermission {
    #[serde(default = "default_mails_per_hour")]
    pub per_hour: u32,
}

fn default_mails_per_hour() -> u32 {
    100
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct HttpPermission {
    #[serde(default)]
    pub hosts: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub(crate) struct Limits {
    pub memory_mib: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { memory_mib: 64 }
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Timer {
    pub name: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ConfigKey {
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
}

impl Manifest {
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// The capabilities `[permissions]` asks for.
    pub fn requested(&self) -> Vec<Capability> {
        let p = &self.permissions;
        [
            (p.kv.is_some(), Capability::Kv),
            (p.links.is_some(), Capability::Links),
            (p.calls.is_some(), Capability::Calls),
            (p.mail.is_some(), Capability::Mail),
            (p.http_client.is_some(), Capability::HttpClient),
            (p.templates.is_some(), Capability::Templates),
            (p.users.is_some(), Capability::Users),
        ]
        .into_iter()
        .filter_map(|(asked, capability)| asked.then_some(capability))
        .collect()
    }

    /// Whether the server calls `hook` (`http`, `events`, `lobby-decision`,
    /// `call-messages`, `timers`).
    pub fn wants(&self, hook: &str) -> bool {
        self.hooks.iter().any(|h| h == hook)
    }

    pub fn kv_quota(&self) -> u64 {
        self.permissions.kv.as_ref().map_or(0, |kv| kv.quota_bytes)
    }

    pub fn mails_per_hour(&self) -> u32 {
        self.permissions.mail.as_ref().map_or(0, |m| m.per_hour)
    }

    pub fn http_hosts(&self) -> &[String] {
        self.permissions
            .http_client
            .as_ref()
            .map_or(&[], |h| h.hosts.as_slice())
    }
}

/// Whether `host` matches one of the allowed patterns: exact names, or `*.domain`
/// for its subdomains (case-insensitive).
pub(crate) fn host_allowed(patterns: &[String], host: &str) -> bool {
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
