//! Configuration: `confab.toml` plus `CONFAB_*` environment overrides.
//!
//! Every key has a default that needs nothing installed: SQLite under `./data`,
//! listening on 127.0.0.1:8080. Each key `section.name` can be overridden by the
//! environment variable `CONFAB_SECTION_NAME` (for example `CONFAB_DATABASE_URL`).
//! [`KEYS`] is the single list of keys; `docs/operations.md` documents the same list.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors while reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid TOML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The complete server configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for the SQLite database and the mail outbox.
    pub data_dir: PathBuf,
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub log: LogConfig,
    pub auth: AuthConfig,
    pub privacy: PrivacyConfig,
    pub calls: CallsConfig,
    pub media: MediaConfig,
    pub templates: TemplatesConfig,
    pub plugins: PluginsConfig,
    pub mail: MailConfig,
    pub cluster: ClusterConfig,
}

/// Several nodes as one service (docs/scaling.md): they share one PostgreSQL
/// database and talk over a NATS bus. Empty `nats_url`: a single node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The NATS server(s), such as `nats://10.0.0.5:4222` (several separated by
    /// commas). Empty: this process is a single node.
    pub nats_url: String,
    /// This node's name in the cluster, unique among its nodes: 1–64 of `A-Z`,
    /// `a-z`, `0-9`, `-` and `_`. Empty: derived from the host name and
    /// `server.listen` ([`Config::node_id`]).
    pub node_id: String,
    /// The first tokens of every NATS subject the cluster uses, so that several
    /// clusters (or tests) can share one NATS server. Empty: `confab`.
    pub subject_prefix: String,
    /// How long a draining node (`confab node drain`, or SIGTERM on a node of a
    /// cluster) waits for its calls to end before it closes their connections
    /// (each page comes back through another node) and exits.
    pub drain_timeout_secs: u32,
    /// Where a new call goes: `least_loaded` (the live node with the fewest
    /// participants, its processor use counted too) or `first_asked` (the node the
    /// first connection reached, for a load balancer that already spreads links
    /// over nodes, such as by hashing the link's path).
    pub placement: String,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            nats_url: String::new(),
            node_id: String::new(),
            subject_prefix: String::new(),
            drain_timeout_secs: 600,
            placement: "least_loaded".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server binds to.
    pub listen: SocketAddr,
    /// The externally visible base URL, used in links. Empty: derived from `listen`.
    pub public_url: String,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Signaling WebSockets open at once from one client address.
    pub max_websockets_per_address: u32,
    /// Signaling messages one connection may send per second, on average …
    pub signaling_messages_per_sec: u32,
    /// … and at once. A browser joining a full call sends a few per participant
    /// (keys, layers), so this is well above `calls.max_participants` × 2.
    pub signaling_burst: u32,
    /// Seconds a client may take to send a request's headers before the connection
    /// is closed (also the longest an idle kept-alive connection stays open).
    pub header_read_timeout_secs: u32,
    /// Seconds a request may take to be answered; then 503 `request_timeout`.
    pub request_timeout_secs: u32,
    /// Seconds a signaling WebSocket may stay silent (the server pings it every
    /// third of this; browsers answer on their own) before it is closed.
    pub websocket_idle_secs: u32,
    /// Reverse proxies whose `X-Forwarded-For` names the client: the client address
    /// is the last one in that header that is not a trusted proxy. Empty: the peer
    /// address is the client's.
    pub trusted_proxies: Vec<IpAddr>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://…` or `postgres://…`. Empty: `sqlite://{data_dir}/confab.db`.
    pub url: String,
    /// Connections in the pool.
    pub max_connections: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `confab_core=debug,info`.
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How long a web session lasts without signing in again.
    pub session_ttl_hours: u32,
    /// Mark cookies `Secure`. Defaults to true when `public_url` is https.
    pub cookie_secure: Option<bool>,
    /// Failed sign-ins per email address allowed within `login_window_minutes`.
    pub login_max_failures: u32,
    pub login_window_minutes: u32,
    /// Failed sign-ins from one address, whatever the account, within the window.
    pub login_max_failures_per_address: u32,
    /// Password hashes computed at once (argon2id takes about 19 MiB each).
    pub max_concurrent_hashes: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Days call metadata is kept before it is purged.
    pub retention_days: u32,
    /// How often the background purge runs.
    pub purge_interval_minutes: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    /// Seconds after a guest joined during which any signed-in participant may remove them.
    pub removal_window_secs: u32,
    /// Seconds a lobby request waits for a decision.
    pub lobby_timeout_secs: u32,
    /// Seconds a participant whose connection dropped keeps their place.
    pub reconnect_grace_secs: u32,
    /// Guests' requests waiting in one call's lobby at once.
    pub max_lobby_requests: u32,
    /// Guests' requests waiting in one call's lobby at once from one address (an IPv4
    /// address or an IPv6 /64).
    pub max_waiting_per_address: u32,
    /// Guests' join requests to one link from one address per minute (signaling and
    /// the no-JavaScript form together).
    pub join_requests_per_minute: u32,
    /// Milliseconds a newcomer to a shared activity waits for another member's
    /// page to send the state before the server's copy is sent.
    pub activity_snapshot_wait_ms: u32,
    /// Updates of one activity the server keeps after its stored snapshot.
    pub activity_log_entries: u32,
    /// KiB those updates may take.
    pub activity_log_kib: u32,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            removal_window_secs: 30,
            lobby_timeout_secs: 600,
            reconnect_grace_secs: 30,
            max_lobby_requests: 50,
            max_waiting_per_address: 3,
            join_requests_per_minute: 10,
            activity_snapshot_wait_ms: 1000,
            activity_log_entries: 256,
            activity_log_kib: 1024,
        }
    }
}

/// Engine threads a node can run (`media.threads`): one per character that can
/// start an ICE username fragment, which names the thread.
pub const MAX_MEDIA_THREADS: usize = 62;

/// The media plane (the SFU): one UDP port and one TCP port for every call on this node.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// Address the media sockets bind to.
    pub bind: IpAddr,
    /// UDP port for all media (0: any free port, for tests).
    pub udp_port: u16,
    /// TCP port for ICE-TCP, for networks that block UDP (0: any free port; the
    /// same number as `udp_port` is fine).
    pub tcp_port: u16,
    /// Turn ICE-TCP off.
    pub tcp_enabled: bool,
    /// Turn UDP off (everyone uses ICE-TCP; for tests and odd networks).
    pub udp_enabled: bool,
    /// Addresses announced to browsers (NAT 1:1, e.g. a cloud host's public IP).
    /// Empty: the bind address, or, when that is unspecified, the address of the
    /// default route.
    pub public_ips: Vec<IpAddr>,
    /// ICE-TCP connections open at once, from everyone.
    pub tcp_max_connections: u32,
    /// ICE-TCP connections open at once from one address (IPv6: one /64).
    pub tcp_max_per_address: u32,
    /// Seconds an ICE-TCP connection has to pass a connectivity check (a STUN
    /// binding request with the right credentials) before it is closed.
    pub tcp_check_timeout_secs: u32,
    /// Engine threads that forward media; each call stays on one of them. 0: one
    /// per core. At most [`MAX_MEDIA_THREADS`].
    pub threads: u16,
}

impl MediaConfig {
    /// The engine threads to start: `threads`, or one per core when it is 0.
    pub fn engine_threads(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism()
                .map_or(1, usize::from)
                .min(MAX_MEDIA_THREADS),
            n => usize::from(n),
        }
    }
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([127, 0, 0, 1]),
            udp_port: 10000,
            tcp_port: 10000,
            tcp_enabled: true,
            udp_enabled: true,
            public_ips: Vec::new(),
            tcp_max_connections: 2000,
            tcp_max_per_address: 40,
            tcp_check_timeout_secs: 5,
            threads: 0,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TemplatesConfig {
    /// Directory with operator overrides of `pages/*.html`. Empty: built-in templates only.
    pub dir: String,
}

/// How the server's mail leaves: the SMTP relay, or `.eml` files when none is set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// The `From` of every message, `Name <address>` or an address. Empty:
    /// `Confab <confab@{public_url's host}>`.
    pub from: String,
    /// The SMTP relay's host name. Empty: no SMTP; messages are written as `.eml`
    /// files into `outbox_dir`.
    pub smtp_host: String,
    /// 0: 587 with `starttls`, 465 with `tls`, 25 with `none`.
    pub smtp_port: u16,
    pub smtp_tls: SmtpTls,
    /// Sign in with these (only over TLS, unless `smtp_tls = "none"`). Empty: no AUTH.
    pub smtp_username: String,
    pub smtp_password: String,
    /// A PEM file of certificates to trust besides the system's web roots (a
    /// private CA's relay).
    pub smtp_ca_file: String,
    /// Connections kept open to the relay, at most (sends in flight at once).
    pub smtp_pool_size: u32,
    /// One SMTP command's timeout.
    pub smtp_timeout_secs: u32,
    /// Without SMTP: where the `.eml` files go. Empty: `{data_dir}/outbox`.
    pub outbox_dir: String,
    /// Attempts before a message is marked failed.
    pub max_attempts: u32,
    /// Wait before the second attempt; it doubles with each further attempt…
    pub retry_initial_ms: u64,
    /// …up to this.
    pub retry_max_ms: u64,
    /// How often the outbox is looked at for mail another node queued, or that came
    /// due (queueing on this node wakes the worker at once).
    pub poll_interval_ms: u64,
}

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which is required.
    Starttls,
    /// TLS from the first byte (SMTPS).
    Tls,
    /// No TLS: only for a relay on the same host or network.
    None,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            from: String::new(),
            smtp_host: String::new(),
            smtp_port: 0,
            smtp_tls: SmtpTls::Starttls,
            smtp_username: String::new(),
            smtp_password: String::new(),
            smtp_ca_file: String::new(),
            smtp_pool_size: 16,
            smtp_timeout_secs: 30,
            outbox_dir: String::new(),
            max_attempts: 10,
            retry_initial_ms: 30_000,
            retry_max_ms: 3_600_000,
            poll_interval_ms: 2_000,
        }
    }
}

/// Plugins: where they are, what they may do, how far they are trusted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Load plugins at all.
    pub enabled: bool,
    /// Load the plugins bundled with the server (written to
    /// `{data_dir}/bundled-plugins/` at start).
    pub bundled: bool,
    /// Scanned for plugins: each subdirectory with a `plugin.toml` is one. Empty:
    /// `{data_dir}/plugins`.
    pub dir: String,
    /// More plugin directories (for example the crate of a plugin being written).
    pub paths: Vec<PathBuf>,
    /// Keep compiled components on disk, so a restart does not compile again.
    pub cache: bool,
    /// Where. Empty: `{data_dir}/plugin-cache`.
    pub cache_dir: String,
    /// Reload a plugin when its files change, and load new plugin directories.
    pub watch: bool,
    pub watch_interval_ms: u32,
    /// Failures in a row after which a plugin is switched off (0: never).
    pub failures_before_disable: u32,
    /// The most memory any plugin instance gets, whatever its manifest asks.
    pub max_memory_mib: u32,
    /// The most invocations of one plugin at a time.
    pub max_concurrency: u32,
    /// Milliseconds a plugin's frame has from loading to its module's start.
    pub frame_start_timeout_ms: u32,
    /// How often a page asks each plugin frame whether it still answers.
    pub frame_ping_ms: u32,
    /// Requests one frame may have waiting at once.
    pub frame_max_fetches: u32,
    /// Tallest a frame may make itself, in CSS pixels.
    pub frame_max_height_px: u32,
    /// Per plugin, by name.
    pub settings: BTreeMap<String, PluginSettings>,
}

/// What the operator allows one plugin, and its settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginSettings {
    /// Capabilities granted (of those its plugin.toml asks for). Unset: everything
    /// asked for, for bundled plugins; nothing, for installed ones.
    pub grant: Option<Vec<String>>,
    /// Values for the settings the plugin declares.
    pub config: BTreeMap<String, String>,
    /// What a lobby request gets when this plugin fails to decide in time.
    pub lobby_fallback: LobbyFallback,
    /// A directory whose templates replace the plugin's own of the same name.
    pub templates_dir: Option<String>,
    /// Hosts (exact, or `*.domain`) this plugin's `http-client` may call besides
    /// those its manifest lists; only for a plugin whose manifest lets the operator
    /// add hosts (`operator-hosts`), such as spam-guard's shared blocklists.
    pub http_hosts: Vec<String>,
}

/// The answer used when a lobby-screening plugin fails or is late.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LobbyFallback {
    /// Let the request through to the people on the call.
    #[default]
    Allow,
    /// Let it through with a warning that it could not be screened.
    Flag,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bundled: true,
            dir: String::new(),
            paths: Vec::new(),
            cache: true,
            cache_dir: String::new(),
            watch: true,
            watch_interval_ms: 2000,
            failures_before_disable: 5,
            max_memory_mib: 256,
            max_concurrency: 32,
            frame_start_timeout_ms: 10_000,
            frame_ping_ms: 5_000,
            frame_max_fetches: 8,
            frame_max_height_px: 4000,
            settings: BTreeMap::new(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            server: ServerConfig::default(),
            database: DatabaseConfig::default(),
            log: LogConfig::default(),
            auth: AuthConfig::default(),
            privacy: PrivacyConfig::default(),
            calls: CallsConfig::default(),
            media: MediaConfig::default(),
            templates: TemplatesConfig::default(),
            plugins: PluginsConfig::default(),
            mail: MailConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: String::new(),
            max_body_bytes: 64 * 1024,
            max_websockets_per_address: 20,
            signaling_messages_per_sec: 50,
            signaling_burst: 200,
            header_read_timeout_secs: 10,
            request_timeout_secs: 30,
            websocket_idle_secs: 60,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            max_connections: 8,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            session_ttl_hours: 24 * 14,
            cookie_secure: None,
            login_max_failures: 10,
            login_window_minutes: 15,
            login_max_failures_per_address: 50,
            max_concurrent_hashes: 4,
        }
    }
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self {
            retention_days: 30,
            purge_interval_minutes: 60,
        }
    }
}

/// Every configuration key, as `(toml path, environment variable)`.
pub const KEYS: &[(&str, &str)] = &[
    ("data_dir", "CONFAB_DATA_DIR"),
    ("server.listen", "CONFAB_SERVER_LISTEN"),
    ("server.public_url", "CONFAB_SERVER_PUBLIC_URL"),
    ("server.max_body_bytes", "CONFAB_SERVER_MAX_BODY_BYTES"),
    (
        "server.max_websockets_per_address",
        "CONFAB_SERVER_MAX_WEBSOCKETS_PER_ADDRESS",
    ),
    (
        "server.signaling_messages_per_sec",
        "CONFAB_SERVER_SIGNALING_MESSAGES_PER_SEC",
    ),
    ("server.signaling_burst", "CONFAB_SERVER_SIGNALING_BURST"),
    ("server.trusted_proxies", "CONFAB_SERVER_TRUSTED_PROXIES"),
    (
        "server.header_read_timeout_secs",
        "CONFAB_SERVER_HEADER_READ_TIMEOUT_SECS",
    ),
    (
        "server.request_timeout_secs",
        "CONFAB_SERVER_REQUEST_TIMEOUT_SECS",
    ),
    (
        "server.websocket_idle_secs",
        "CONFAB_SERVER_WEBSOCKET_IDLE_SECS",
    ),
    ("database.url", "CONFAB_DATABASE_URL"),
    (
        "database.max_connections",
        "CONFAB_DATABASE_MAX_CONNECTIONS",
    ),
    ("log.format", "CONFAB_LOG_FORMAT"),
    ("log.level", "CONFAB_LOG_LEVEL"),
    ("auth.session_ttl_hours", "CONFAB_AUTH_SESSION_TTL_HOURS"),
    ("auth.cookie_secure", "CONFAB_AUTH_COOKIE_SECURE"),
    ("auth.login_max_failures", "CONFAB_AUTH_LOGIN_MAX_FAILURES"),
    (
        "auth.login_window_minutes",
        "CONFAB_AUTH_LOGIN_WINDOW_MINUTES",
    ),
    (
        "auth.login_max_failures_per_address",
        "CONFAB_AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS",
    ),
    (
        "auth.max_concurrent_hashes",
        "CONFAB_AUTH_MAX_CONCURRENT_HASHES",
    ),
    ("privacy.retention_days", "CONFAB_PRIVACY_RETENTION_DAYS"),
    (
        "privacy.purge_interval_minutes",
        "CONFAB_PRIVACY_PURGE_INTERVAL_MINUTES",
    ),
    (
        "calls.removal_window_secs",
        "CONFAB_CALLS_REMOVAL_WINDOW_SECS",
    ),
    (
        "calls.lobby_timeout_secs",
        "CONFAB_CALLS_LOBBY_TIMEOUT_SECS",
    ),
    (
        "calls.reconnect_grace_secs",
        "CONFAB_CALLS_RECONNECT_GRACE_SECS",
    ),
    (
        "calls.max_lobby_requests",
        "CONFAB_CALLS_MAX_LOBBY_REQUESTS",
    ),
    (
        "calls.max_waiting_per_address",
        "CONFAB_CALLS_MAX_WAITING_PER_ADDRESS",
    ),
    (
        "calls.join_requests_per_minute",
        "CONFAB_CALLS_JOIN_REQUESTS_PER_MINUTE",
    ),
    (
        "calls.activity_snapshot_wait_ms",
        "CONFAB_CALLS_ACTIVITY_SNAPSHOT_WAIT_MS",
    ),
    (
        "calls.activity_log_entries",
        "CONFAB_CALLS_ACTIVITY_LOG_ENTRIES",
    ),
    ("calls.activity_log_kib", "CONFAB_CALLS_ACTIVITY_LOG_KIB"),
    ("media.bind", "CONFAB_MEDIA_BIND"),
    ("media.udp_port", "CONFAB_MEDIA_UDP_PORT"),
    ("media.tcp_port", "CONFAB_MEDIA_TCP_PORT"),
    ("media.tcp_enabled", "CONFAB_MEDIA_TCP_ENABLED"),
    ("media.udp_enabled", "CONFAB_MEDIA_UDP_ENABLED"),
    ("media.public_ips", "CONFAB_MEDIA_PUBLIC_IPS"),
    (
        "media.tcp_max_connections",
        "CONFAB_MEDIA_TCP_MAX_CONNECTIONS",
    ),
    (
        "media.tcp_max_per_address",
        "CONFAB_MEDIA_TCP_MAX_PER_ADDRESS",
    ),
    (
        "media.tcp_check_timeout_secs",
        "CONFAB_MEDIA_TCP_CHECK_TIMEOUT_SECS",
    ),
    ("media.threads", "CONFAB_MEDIA_THREADS"),
    ("templates.dir", "CONFAB_TEMPLATES_DIR"),
    ("plugins.enabled", "CONFAB_PLUGINS_ENABLED"),
    ("plugins.bundled", "CONFAB_PLUGINS_BUNDLED"),
    ("plugins.dir", "CONFAB_PLUGINS_DIR"),
    ("plugins.paths", "CONFAB_PLUGINS_PATHS"),
    ("plugins.cache", "CONFAB_PLUGINS_CACHE"),
    ("plugins.cache_dir", "CONFAB_PLUGINS_CACHE_DIR"),
    ("plugins.watch", "CONFAB_PLUGINS_WATCH"),
    (
        "plugins.watch_interval_ms",
        "CONFAB_PLUGINS_WATCH_INTERVAL_MS",
    ),
    (
        "plugins.failures_before_disable",
        "CONFAB_PLUGINS_FAILURES_BEFORE_DISABLE",
    ),
    ("plugins.max_memory_mib", "CONFAB_PLUGINS_MAX_MEMORY_MIB"),
    ("plugins.max_concurrency", "CONFAB_PLUGINS_MAX_CONCURRENCY"),
    (
        "plugins.frame_start_timeout_ms",
        "CONFAB_PLUGINS_FRAME_START_TIMEOUT_MS",
    ),
    ("plugins.frame_ping_ms", "CONFAB_PLUGINS_FRAME_PING_MS"),
    (
        "plugins.frame_max_fetches",
        "CONFAB_PLUGINS_FRAME_MAX_FETCHES",
    ),
    (
        "plugins.frame_max_height_px",
        "CONFAB_PLUGINS_FRAME_MAX_HEIGHT_PX",
    ),
    ("mail.from", "CONFAB_MAIL_FROM"),
    ("mail.smtp_host", "CONFAB_MAIL_SMTP_HOST"),
    ("mail.smtp_port", "CONFAB_MAIL_SMTP_PORT"),
    ("mail.smtp_tls", "CONFAB_MAIL_SMTP_TLS"),
    ("mail.smtp_username", "CONFAB_MAIL_SMTP_USERNAME"),
    ("mail.smtp_password", "CONFAB_MAIL_SMTP_PASSWORD"),
    ("mail.smtp_ca_file", "CONFAB_MAIL_SMTP_CA_FILE"),
    ("mail.smtp_pool_size", "CONFAB_MAIL_SMTP_POOL_SIZE"),
    ("mail.smtp_timeout_secs", "CONFAB_MAIL_SMTP_TIMEOUT_SECS"),
    ("mail.outbox_dir", "CONFAB_MAIL_OUTBOX_DIR"),
    ("mail.max_attempts", "CONFAB_MAIL_MAX_ATTEMPTS"),
    ("mail.retry_initial_ms", "CONFAB_MAIL_RETRY_INITIAL_MS"),
    ("mail.retry_max_ms", "CONFAB_MAIL_RETRY_MAX_MS"),
    ("mail.poll_interval_ms", "CONFAB_MAIL_POLL_INTERVAL_MS"),
    ("cluster.nats_url", "CONFAB_CLUSTER_NATS_URL"),
    ("cluster.node_id", "CONFAB_CLUSTER_NODE_ID"),
    ("cluster.subject_prefix", "CONFAB_CLUSTER_SUBJECT_PREFIX"),
    (
        "cluster.drain_timeout_secs",
        "CONFAB_CLUSTER_DRAIN_TIMEOUT_SECS",
    ),
    ("cluster.placement", "CONFAB_CLUSTER_PLACEMENT"),
];

impl Config {
    /// Reads `path` (if given) and applies `CONFAB_*` variables from the process environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with_env(path, |name| std::env::var(name).ok())
    }

    /// Like [`Config::load`], with the environment supplied by `env` (tests pass a map).
    pub fn load_with_env(
        path: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.into(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse {
                        path: path.into(),
                        message: e.to_string(),
                    })?
            }
            None => toml::Table::new(),
        };
        for (key, var) in KEYS {
            if let Some(raw) = env(var) {
                set_path(&mut table, key, env_value(&raw));
            }
        }
        let config: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_string()))?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database_url();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid(format!(
                "database.url must start with sqlite: or postgres://, got {url:?}"
            )));
        }
        if self.server.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid(
                "server.max_body_bytes must be at least 1024".into(),
            ));
        }
        if self.privacy.retention_days == 0 {
            return Err(ConfigError::Invalid(
                "privacy.retention_days must be at least 1".into(),
            ));
        }
        if self.calls.lobby_timeout_secs == 0 || self.calls.reconnect_grace_secs == 0 {
            return Err(ConfigError::Invalid(
                "calls.lobby_timeout_secs and calls.reconnect_grace_secs must be at least 1".into(),
            ));
        }
        let c = &self.calls;
        if c.activity_snapshot_wait_ms == 0
            || c.activity_snapshot_wait_ms > 60_000
            || c.activity_log_kib == 0
            || c.activity_log_kib > 64 * 1024
        {
            return Err(ConfigError::Invalid(
                "calls.activity_snapshot_wait_ms must be 1 to 60000, calls.activity_log_kib 1 to 65536".into(),
            ));
        }
        if c.max_lobby_requests == 0
            || c.max_waiting_per_address == 0
            || c.join_requests_per_minute == 0
            || self.server.max_websockets_per_address == 0
            || self.server.signaling_messages_per_sec == 0
            || self.server.signaling_burst == 0
            || self.server.header_read_timeout_secs == 0
            || self.server.request_timeout_secs == 0
            || self.server.websocket_idle_secs < 3
            || self.auth.max_concurrent_hashes == 0
        {
            return Err(ConfigError::Invalid(
                "calls.max_lobby_requests, calls.max_waiting_per_address, calls.join_requests_per_minute, server.max_websockets_per_address, server.signaling_messages_per_sec, server.signaling_burst, server.header_read_timeout_secs, server.request_timeout_secs and auth.max_concurrent_hashes must be at least 1, server.websocket_idle_secs at least 3".into(),
            ));
        }
        let media = &self.media;
        if media.tcp_max_connections == 0
            || media.tcp_max_per_address == 0
            || media.tcp_check_timeout_secs == 0
        {
            return Err(ConfigError::Invalid(
                "media.tcp_max_connections, media.tcp_max_per_address and media.tcp_check_timeout_secs must be at least 1".into(),
            ));
        }
        if usize::from(media.threads) > MAX_MEDIA_THREADS {
            return Err(ConfigError::Invalid(format!(
                "media.threads is at most {} (0: one per core)",
                MAX_MEDIA_THREADS
            )));
        }
        if !self.media.udp_enabled && !self.media.tcp_enabled {
            return Err(ConfigError::Invalid(
                "media.udp_enabled and media.tcp_enabled cannot both be false".into(),
            ));
        }
        let p = &self.plugins;
        if !(1_000..=120_000).contains(&p.frame_start_timeout_ms)
            || !(1_000..=60_000).contains(&p.frame_ping_ms)
            || !(1..=64).contains(&p.frame_max_fetches)
            || !(100..=20_000).contains(&p.frame_max_height_px)
        {
            return Err(ConfigError::Invalid(
                "plugins.frame_start_timeout_ms must be 1000 to 120000, plugins.frame_ping_ms 1000 to 60000, plugins.frame_max_fetches 1 to 64 and plugins.frame_max_height_px 100 to 20000".into(),
            ));
        }
        if !(1..=1024).contains(&p.max_memory_mib) || p.max_concurrency == 0 {
            return Err(ConfigError::Invalid(
                "plugins.max_memory_mib must be 1 to 1024 and plugins.max_concurrency at least 1"
                    .into(),
            ));
        }
        let m = &self.mail;
        if m.max_attempts == 0 || m.smtp_pool_size == 0 || m.smtp_timeout_secs == 0 {
            return Err(ConfigError::Invalid(
                "mail.max_attempts, mail.smtp_pool_size and mail.smtp_timeout_secs must be at least 1"
                    .into(),
            ));
        }
        if m.retry_initial_ms == 0 || m.retry_max_ms < m.retry_initial_ms || m.poll_interval_ms < 10
        {
            return Err(ConfigError::Invalid(
                "mail.retry_initial_ms must be at least 1 and at most mail.retry_max_ms; mail.poll_interval_ms at least 10"
                    .into(),
            ));
        }
        if m.smtp_host.contains(['/', ' ', '\t']) {
            return Err(ConfigError::Invalid(format!(
                "mail.smtp_host must be a host name or address, without scheme or port: {:?}",
                m.smtp_host
            )));
        }
        if p.watch_interval_ms < 100 {
            return Err(ConfigError::Invalid(
                "plugins.watch_interval_ms must be at least 100".into(),
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::Invalid(
                "database.max_connections must be at least 1".into(),
            ));
        }
        if !self.server.public_url.is_empty() {
            url::Url::parse(&self.server.public_url).map_err(|e| {
                ConfigError::Invalid(format!("server.public_url is not a URL: {e}"))
            })?;
        }
        self.validate_cluster()
    }

    fn validate_cluster(&self) -> Result<(), ConfigError> {
        let c = &self.cluster;
        if !c.node_id.is_empty() && !is_subject_token(&c.node_id) {
            return Err(ConfigError::Invalid(format!(
                "cluster.node_id must be 1-64 of A-Z, a-z, 0-9, - and _, got {:?}",
                c.node_id
            )));
        }
        if !c.subject_prefix.is_empty() && !c.subject_prefix.split('.').all(is_subject_token) {
            return Err(ConfigError::Invalid(format!(
                "cluster.subject_prefix must be dot-separated tokens of A-Z, a-z, 0-9, - and _, got {:?}",
                c.subject_prefix
            )));
        }
        if !matches!(c.placement.as_str(), "least_loaded" | "first_asked") {
            return Err(ConfigError::Invalid(format!(
                "cluster.placement is least_loaded or first_asked, got {:?}",
                c.placement
            )));
        }
        if self.clustered() && self.database_url().starts_with("sqlite:") {
            return Err(ConfigError::Invalid(
                "cluster.nats_url is set, but the database is SQLite: the nodes of a cluster share one PostgreSQL database (set database.url to postgres://…), or leave cluster.nats_url empty to run a single node".into(),
            ));
        }
        Ok(())
    }

    /// Whether this process is a node of a cluster (`cluster.nats_url` is set).
    pub fn clustered(&self) -> bool {
        !self.cluster.nats_url.trim().is_empty()
    }

    /// This node's id: `cluster.node_id`, or the host name and `server.listen`
    /// (`web1-0-0-0-0-8080`), in the characters a node id may have.
    pub fn node_id(&self) -> String {
        if !self.cluster.node_id.is_empty() {
            return self.cluster.node_id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".into());
        let listen = self.server.listen;
        let raw = format!("{host}-{}-{}", listen.ip(), listen.port());
        let mut id: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        if id.len() > 64 {
            id = id.split_off(id.len() - 64);
        }
        id
    }

    /// The first tokens of the cluster's NATS subjects.
    pub fn subject_prefix(&self) -> &str {
        if self.cluster.subject_prefix.is_empty() {
            "confab"
        } else {
            &self.cluster.subject_prefix
        }
    }

    /// The database URL, with the embedded SQLite default filled in.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}/confab.db?mode=rwc", self.data_dir.display())
        } else {
            self.database.url.clone()
        }
    }

    /// Where the file outbox writes `.eml` files (used when no SMTP relay is set).
    pub fn outbox_dir(&self) -> PathBuf {
        if self.mail.outbox_dir.is_empty() {
            self.data_dir.join("outbox")
        } else {
            PathBuf::from(&self.mail.outbox_dir)
        }
    }

    /// The base URL links are built on, without a trailing slash.
    pub fn public_url(&self) -> String {
        if self.server.public_url.is_empty() {
            format!("http://{}", self.server.listen)
        } else {
            self.server.public_url.trim_end_matches('/').to_string()
        }
    }

    /// Whether session cookies carry the `Secure` attribute.
    pub fn cookie_secure(&self) -> bool {
        self.auth
            .cookie_secure
            .unwrap_or_else(|| self.public_url().starts_with("https://"))
    }
}

/// Environment values are TOML scalars or arrays when they parse as one (`true`, `30`,
/// `["203.0.113.7"]`), strings otherwise.
fn env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .filter(|v| !v.is_table())
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn set_path(table: &mut toml::Table, key: &str, value: toml::Value) {
    match key.split_once('.') {
        None => {
            table.insert(key.to_string(), value);
        }
        Some((section, rest)) => {
            let entry = table
                .entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            // Just made sure it is a table.
            set_path(entry.as_table_mut().expect("table"), rest, value);
        }
    }
}

/// One token of a NATS subject as Confab writes them: 1–64 of `A-Z`, `a-z`,
/// `0-9`, `-` and `_` (no dots, wildcards or spaces).
fn is_subject_token(token: &str) -> bool {
    (1..=64).contains(&token.len())
        && token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(toml: Option<&str>, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("confab.toml");
        if let Some(text) = toml {
            std::fs::write(&path, text).unwrap();
        }
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with_env(toml.map(|_| path.as_path()), |k| env.get(k).cloned())
    }

    #[test]
    fn defaults_need_nothing() {
        let c = load(None, &[]).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url(), "sqlite://./data/confab.db?mode=rwc");
        assert_eq!(c.public_url(), "http://127.0.0.1:8080");
        assert_eq!(c.privacy.retention_days, 30);
        assert!(!c.cookie_secure());
    }

    #[test]
    fn environment_overrides_file() {
        let c = load(
            Some("[privacy]\nretention_days = 7\n[server]\npublic_url = \"https://call.example.org/\"\n"),
            &[("CONFAB_PRIVACY_RETENTION_DAYS", "14"), ("CONFAB_LOG_FORMAT", "json")],
        )
        .unwrap();
        assert_eq!(c.privacy.retention_days, 14);
        assert_eq!(c.log.format, LogFormat::Json);
        assert_eq!(c.public_url(), "https://call.example.org");
        assert!(c.cookie_secure());
    }

    #[test]
    fn every_key_has_an_environment_variable_that_works() {
        let samples: HashMap<&str, &str> = [
            ("CONFAB_DATA_DIR", "/tmp/x"),
            ("CONFAB_SERVER_LISTEN", "0.0.0.0:9000"),
            ("CONFAB_SERVER_PUBLIC_URL", "https://a.example"),
            ("CONFAB_SERVER_MAX_BODY_BYTES", "2048"),
            ("CONFAB_SERVER_MAX_WEBSOCKETS_PER_ADDRESS", "7"),
            ("CONFAB_SERVER_SIGNALING_MESSAGES_PER_SEC", "9"),
            ("CONFAB_SERVER_SIGNALING_BURST", "11"),
            ("CONFAB_SERVER_TRUSTED_PROXIES", "[\"10.0.0.2\"]"),
            ("CONFAB_SERVER_HEADER_READ_TIMEOUT_SECS", "4"),
            ("CONFAB_SERVER_REQUEST_TIMEOUT_SECS", "9"),
            ("CONFAB_SERVER_WEBSOCKET_IDLE_SECS", "45"),
            ("CONFAB_DATABASE_URL", "postgres://u@h/db"),
            ("CONFAB_DATABASE_MAX_CONNECTIONS", "3"),
            ("CONFAB_LOG_FORMAT", "json"),
            ("CONFAB_LOG_LEVEL", "debug"),
            ("CONFAB_AUTH_SESSION_TTL_HOURS", "1"),
            ("CONFAB_AUTH_COOKIE_SECURE", "true"),
            ("CONFAB_AUTH_LOGIN_MAX_FAILURES", "3"),
            ("CONFAB_AUTH_LOGIN_WINDOW_MINUTES", "5"),
            ("CONFAB_AUTH_LOGIN_MAX_FAILURES_PER_ADDRESS", "30"),
            ("CONFAB_AUTH_MAX_CONCURRENT_HASHES", "2"),
            ("CONFAB_PRIVACY_RETENTION_DAYS", "2"),
            ("CONFAB_PRIVACY_PURGE_INTERVAL_MINUTES", "9"),
            ("CONFAB_CALLS_REMOVAL_WINDOW_SECS", "45"),
            ("CONFAB_CALLS_LOBBY_TIMEOUT_SECS", "120"),
            ("CONFAB_CALLS_RECONNECT_GRACE_SECS", "15"),
            ("CONFAB_CALLS_MAX_LOBBY_REQUESTS", "12"),
            ("CONFAB_CALLS_MAX_WAITING_PER_ADDRESS", "2"),
            ("CONFAB_CALLS_JOIN_REQUESTS_PER_MINUTE", "5"),
            ("CONFAB_CALLS_ACTIVITY_SNAPSHOT_WAIT_MS", "700"),
            ("CONFAB_CALLS_ACTIVITY_LOG_ENTRIES", "64"),
            ("CONFAB_CALLS_ACTIVITY_LOG_KIB", "128"),
            ("CONFAB_MEDIA_BIND", "0.0.0.0"),
            ("CONFAB_MEDIA_UDP_PORT", "3479"),
            ("CONFAB_MEDIA_TCP_PORT", "4443"),
            ("CONFAB_MEDIA_TCP_ENABLED", "false"),
            ("CONFAB_MEDIA_UDP_ENABLED", "true"),
            ("CONFAB_MEDIA_PUBLIC_IPS", "[\"203.0.113.7\"]"),
            ("CONFAB_MEDIA_TCP_MAX_CONNECTIONS", "300"),
            ("CONFAB_MEDIA_TCP_MAX_PER_ADDRESS", "6"),
            ("CONFAB_MEDIA_TCP_CHECK_TIMEOUT_SECS", "2"),
            ("CONFAB_MEDIA_THREADS", "3"),
            ("CONFAB_TEMPLATES_DIR", "/srv/tpl"),
            ("CONFAB_PLUGINS_ENABLED", "false"),
            ("CONFAB_PLUGINS_BUNDLED", "false"),
            ("CONFAB_PLUGINS_DIR", "/srv/plugins"),
            ("CONFAB_PLUGINS_PATHS", "[\"/src/hello\"]"),
            ("CONFAB_PLUGINS_CACHE", "false"),
            ("CONFAB_PLUGINS_CACHE_DIR", "/var/cache/confab"),
            ("CONFAB_PLUGINS_WATCH", "false"),
            ("CONFAB_PLUGINS_WATCH_INTERVAL_MS", "500"),
            ("CONFAB_PLUGINS_FAILURES_BEFORE_DISABLE", "3"),
            ("CONFAB_PLUGINS_MAX_MEMORY_MIB", "128"),
            ("CONFAB_PLUGINS_MAX_CONCURRENCY", "4"),
            ("CONFAB_PLUGINS_FRAME_START_TIMEOUT_MS", "20000"),
            ("CONFAB_PLUGINS_FRAME_PING_MS", "2000"),
            ("CONFAB_PLUGINS_FRAME_MAX_FETCHES", "3"),
            ("CONFAB_PLUGINS_FRAME_MAX_HEIGHT_PX", "900"),
            ("CONFAB_MAIL_FROM", "Meet <meet@example.org>"),
            ("CONFAB_MAIL_SMTP_HOST", "smtp.example.org"),
            ("CONFAB_MAIL_SMTP_PORT", "2525"),
            ("CONFAB_MAIL_SMTP_TLS", "tls"),
            ("CONFAB_MAIL_SMTP_USERNAME", "meet"),
            ("CONFAB_MAIL_SMTP_PASSWORD", "pw"),
            ("CONFAB_MAIL_SMTP_CA_FILE", "/etc/ca.pem"),
            ("CONFAB_MAIL_SMTP_POOL_SIZE", "4"),
            ("CONFAB_MAIL_SMTP_TIMEOUT_SECS", "7"),
            ("CONFAB_MAIL_OUTBOX_DIR", "/srv/outbox"),
            ("CONFAB_MAIL_MAX_ATTEMPTS", "3"),
            ("CONFAB_MAIL_RETRY_INITIAL_MS", "500"),
            ("CONFAB_MAIL_RETRY_MAX_MS", "9000"),
            ("CONFAB_MAIL_POLL_INTERVAL_MS", "250"),
            ("CONFAB_CLUSTER_NATS_URL", "nats://10.0.0.5:4222"),
            ("CONFAB_CLUSTER_NODE_ID", "web-1"),
            ("CONFAB_CLUSTER_SUBJECT_PREFIX", "acme.confab"),
            ("CONFAB_CLUSTER_DRAIN_TIMEOUT_SECS", "120"),
            ("CONFAB_CLUSTER_PLACEMENT", "first_asked"),
        ]
        .into_iter()
        .collect();
        assert_eq!(samples.len(), KEYS.len(), "every key needs a sample");
        let env: Vec<(&str, &str)> = samples.iter().map(|(k, v)| (*k, *v)).collect();
        let c = load(None, &env).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.server.listen.port(), 9000);
        assert_eq!(
            (c.cluster.nats_url.as_str(), c.node_id(), c.subject_prefix()),
            ("nats://10.0.0.5:4222", "web-1".to_string(), "acme.confab")
        );
        assert_eq!(
            (c.cluster.drain_timeout_secs, c.cluster.placement.as_str()),
            (120, "first_asked")
        );
        assert_eq!(c.server.max_body_bytes, 2048);
        assert_eq!(c.server.max_websockets_per_address, 7);
        assert_eq!(c.server.signaling_messages_per_sec, 9);
        assert_eq!(c.server.signaling_burst, 11);
        assert_eq!(
            (
                c.server.header_read_timeout_secs,
                c.server.request_timeout_secs,
                c.server.websocket_idle_secs
            ),
            (4, 9, 45)
        );
        assert_eq!(
            (
                c.auth.login_max_failures_per_address,
                c.auth.max_concurrent_hashes
            ),
            (30, 2)
        );
        assert_eq!(
            c.server.trusted_proxies,
            vec!["10.0.0.2".parse::<IpAddr>().unwrap()]
        );
        assert_eq!(
            (
                c.calls.max_lobby_requests,
                c.calls.max_waiting_per_address,
                c.calls.join_requests_per_minute
            ),
            (12, 2, 5)
        );
        assert_eq!(
            (
                c.calls.activity_snapshot_wait_ms,
                c.calls.activity_log_entries,
                c.calls.activity_log_kib
            ),
            (700, 64, 128)
        );
        assert_eq!(c.database_url(), "postgres://u@h/db");
        assert_eq!(c.database.max_connections, 3);
        let m = &c.mail;
        assert_eq!(
            (
                m.from.as_str(),
                m.smtp_host.as_str(),
                m.smtp_port,
                m.smtp_tls
            ),
            (
                "Meet <meet@example.org>",
                "smtp.example.org",
                2525,
                SmtpTls::Tls
            )
        );
        assert_eq!(
            (
                m.smtp_username.as_str(),
                m.smtp_password.as_str(),
                m.smtp_ca_file.as_str()
            ),
            ("meet", "pw", "/etc/ca.pem")
        );
        assert_eq!(
            (m.smtp_pool_size, m.smtp_timeout_secs, m.max_attempts),
            (4, 7, 3)
        );
        assert_eq!(
            (m.retry_initial_ms, m.retry_max_ms, m.poll_interval_ms),
            (500, 9000, 250)
        );
        assert_eq!(c.outbox_dir(), PathBuf::from("/srv/outbox"));
        assert_eq!(c.log.level, "debug");
        assert_eq!(c.auth.session_ttl_hours, 1);
        assert_eq!(c.auth.cookie_secure, Some(true));
        assert_eq!(c.auth.login_max_failures, 3);
        assert_eq!(c.auth.login_window_minutes, 5);
        assert_eq!(c.privacy.retention_days, 2);
        assert_eq!(c.privacy.purge_interval_minutes, 9);
        assert_eq!(c.templates.dir, "/srv/tpl");
        assert_eq!(c.calls.removal_window_secs, 45);
        assert_eq!(c.calls.lobby_timeout_secs, 120);
        assert_eq!(c.media.bind, IpAddr::from([0, 0, 0, 0]));
        assert_eq!((c.media.udp_port, c.media.tcp_port), (3479, 4443));
        assert!(!c.media.tcp_enabled && c.media.udp_enabled);
        assert_eq!(c.media.public_ips, vec![IpAddr::from([203, 0, 113, 7])]);
        assert_eq!(
            (
                c.media.tcp_max_connections,
                c.media.tcp_max_per_address,
                c.media.tcp_check_timeout_secs
            ),
            (300, 6, 2)
        );
        assert_eq!((c.media.threads, c.media.engine_threads()), (3, 3));
        assert_eq!(c.calls.reconnect_grace_secs, 15);
        let p = &c.plugins;
        assert!(!p.enabled && !p.cache && !p.watch);
        assert_eq!(p.dir, "/srv/plugins");
        assert!(!p.bundled);
        assert_eq!(p.paths, vec![PathBuf::from("/src/hello")]);
        assert_eq!(p.cache_dir, "/var/cache/confab");
        assert_eq!(p.watch_interval_ms, 500);
        assert_eq!(p.failures_before_disable, 3);
        assert_eq!((p.max_memory_mib, p.max_concurrency), (128, 4));
        assert_eq!(
            (
                p.frame_start_timeout_ms,
                p.frame_ping_ms,
                p.frame_max_fetches,
                p.frame_max_height_px
            ),
            (20_000, 2_000, 3, 900)
        );
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/confab.toml");
        let c = Config::load_with_env(Some(&path), |_| None).unwrap();
        assert_eq!(c.public_url(), "https://call.example.org");
        assert_eq!(c.log.format, LogFormat::Json);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_rejected() {
        assert!(matches!(
            load(Some("[server]\nlisten_on = 1\n"), &[]),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(
            load(Some("not toml ["), &[]),
            Err(ConfigError::Parse { .. })
        ));
        assert!(load(None, &[("CONFAB_DATABASE_URL", "mysql://x")]).is_err());
        // A cluster shares PostgreSQL; its names go into NATS subjects.
        let refused = load(
            None,
            &[("CONFAB_CLUSTER_NATS_URL", "nats://127.0.0.1:4222")],
        );
        assert!(
            matches!(&refused, Err(ConfigError::Invalid(m)) if m.contains("the database is SQLite")),
            "{refused:?}"
        );
        let pg = ("CONFAB_DATABASE_URL", "postgres://u@h/db");
        let nats = ("CONFAB_CLUSTER_NATS_URL", "nats://127.0.0.1:4222");
        for (key, value) in [
            ("CONFAB_CLUSTER_NODE_ID", "a.b"),
            ("CONFAB_CLUSTER_NODE_ID", "node *"),
            ("CONFAB_CLUSTER_NODE_ID", &"n".repeat(65)),
            ("CONFAB_CLUSTER_SUBJECT_PREFIX", "a..b"),
            ("CONFAB_CLUSTER_SUBJECT_PREFIX", "a.>"),
            ("CONFAB_CLUSTER_PLACEMENT", "random"),
        ] {
            assert!(
                load(None, &[pg, nats, (key, value)]).is_err(),
                "{key}={value}"
            );
        }
        let c = load(None, &[pg, nats]).unwrap();
        assert!(c.clustered());
        assert_eq!(c.subject_prefix(), "confab");
        let derived = c.node_id();
        assert!(
            derived.ends_with("-127-0-0-1-8080") && is_subject_token(&derived),
            "{derived}"
        );
        assert!(load(None, &[("CONFAB_PRIVACY_RETENTION_DAYS", "0")]).is_err());
        // A shared activity's newcomer waits 1 ms to a minute; its log keeps 1 KiB to 64 MiB.
        for (key, value) in [
            ("CONFAB_CALLS_ACTIVITY_SNAPSHOT_WAIT_MS", "0"),
            ("CONFAB_CALLS_ACTIVITY_SNAPSHOT_WAIT_MS", "60001"),
            ("CONFAB_CALLS_ACTIVITY_LOG_KIB", "0"),
            ("CONFAB_CALLS_ACTIVITY_LOG_KIB", "65537"),
        ] {
            assert!(load(None, &[(key, value)]).is_err(), "{key}={value}");
        }
        assert!(load(None, &[("CONFAB_CALLS_ACTIVITY_SNAPSHOT_WAIT_MS", "60000")]).is_ok());
        for (key, value) in [
            ("CONFAB_PLUGINS_FRAME_START_TIMEOUT_MS", "999"),
            ("CONFAB_PLUGINS_FRAME_PING_MS", "60001"),
            ("CONFAB_PLUGINS_FRAME_MAX_FETCHES", "0"),
            ("CONFAB_PLUGINS_FRAME_MAX_HEIGHT_PX", "20001"),
        ] {
            assert!(load(None, &[(key, value)]).is_err(), "{key}={value}");
        }
        // Media needs at least one transport.
        assert!(
            load(
                None,
                &[
                    ("CONFAB_MEDIA_UDP_ENABLED", "false"),
                    ("CONFAB_MEDIA_TCP_ENABLED", "false")
                ]
            )
            .is_err()
        );
    }
}
