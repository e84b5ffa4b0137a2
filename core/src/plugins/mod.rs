//! Plugins: sandboxed WebAssembly components built against `confab:plugin@1.x`
//! (the `sdk/` crate).
//!
//! [`PluginHost`] finds plugins (a directory per plugin with a `plugin.toml` and
//! a component), checks the SDK version and the manifest, compiles each component
//! once (cached on disk) and resolves its imports once ([`bindings::PluginPre`]).
//! Every invocation then gets a fresh store with the plugin's memory limit and an
//! epoch deadline ([`runtime`]); what a plugin may do through its imports is in
//! [`capabilities`], each checked against the operator's grants.
//!
//! Invocations never take the server down: a trap, a deadline or a memory limit
//! fails that invocation only, is logged and counted, and after
//! `plugins.failures_before_disable` failures in a row the plugin is switched off
//! until an administrator switches it back on.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};

use crate::AppState;
use crate::config::{LobbyFallback, PluginsConfig};
use crate::policy::PolicyPatch;
use crate::store::link;

pub mod bundled;
pub(crate) mod capabilities;
pub mod manifest;
mod runtime;
pub mod scaffold;

pub use capabilities::calls::{PluginCallAction, PluginCallError, RosterMember};
pub use capabilities::link_record;
pub use manifest::{Capability, Hook, Manifest};

/// The bindings of the WIT world `confab:plugin/plugin` (host side).
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "confab:plugin/plugin",
        imports: { default: async | trappable },
        exports: { default: async },
    });
}

use bindings::confab::plugin::types as wit;
use bindings::exports::confab::plugin::hooks as wit_hooks;
use runtime::{HostState, Runtime};

/// The version of `confab:plugin` this server implements.
pub const SDK_VERSION: semver::Version = semver::Version::new(1, 1, 0);
/// Largest payload of a message a participant sends on a plugin's channel (base64
/// of it fits the signaling's 64 KiB message limit).
pub const MAX_CALL_MESSAGE_BYTES: usize = 32 * 1024;
/// Largest component file accepted.
pub const MAX_COMPONENT_BYTES: u64 = 64 * 1024 * 1024;
/// Events waiting for one plugin; beyond this, new events for it are dropped (and
/// counted), so a stuck plugin cannot hold memory.
const EVENT_QUEUE: usize = 1024;

/// Something that happened, for the plugins that listen to it.
#[derive(Debug, Clone)]
pub enum Event {
    LinkCreated(link::Model),
    LinkUpdated(link::Model),
    LinkRevoked(link::Model),
    CallStarted(CallInfo),
    CallEnded(CallInfo),
    ParticipantJoined(CallInfo, ParticipantInfo),
    ParticipantLeft(CallInfo, ParticipantInfo),
    ParticipantRemoved {
        call: CallInfo,
        participant: ParticipantInfo,
        by: u32,
    },
    LobbyRequest(LobbyInfo),
}

/// One run of a link, as plugins see it.
#[derive(Debug, Clone)]
pub struct CallInfo {
    pub link: String,
    pub id: String,
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct ParticipantInfo {
    pub id: u32,
    pub name: String,
    pub user: Option<i64>,
    pub joined_at: DateTime<Utc>,
}

/// Someone asking to join.
#[derive(Debug, Clone)]
pub struct LobbyInfo {
    pub call: CallInfo,
    /// 0 while the request is being screened (it has no number yet).
    pub request: u32,
    pub name: String,
    pub address: Option<String>,
    pub asked_at: DateTime<Utc>,
}

impl Event {
    fn kind(&self) -> manifest::EventKind {
        use manifest::EventKind as K;
        match self {
            Event::LinkCreated(_) => K::LinkCreated,
            Event::LinkUpdated(_) => K::LinkUpdated,
            Event::LinkRevoked(_) => K::LinkRevoked,
            Event::CallStarted(_) => K::CallStarted,
            Event::CallEnded(_) => K::CallEnded,
            Event::ParticipantJoined(..) => K::ParticipantJoined,
            Event::ParticipantLeft(..) => K::ParticipantLeft,
            Event::ParticipantRemoved { .. } => K::ParticipantRemoved,
            Event::LobbyRequest(_) => K::LobbyRequest,
        }
    }

    /// The user behind the event, whom a plugin may act for while handling it.
    fn actor(&self) -> Option<i64> {
        match self {
            Event::LinkCreated(l) | Event::LinkUpdated(l) | Event::LinkRevoked(l) => {
                Some(l.owner_id)
            }
            _ => None,
        }
    }

    fn to_wit(&self) -> wit_hooks::Event {
        match self {
            Event::LinkCreated(l) => wit_hooks::Event::LinkCreated(link_record(l)),
            Event::LinkUpdated(l) => wit_hooks::Event::LinkUpdated(link_record(l)),
            Event::LinkRevoked(l) => wit_hooks::Event::LinkRevoked(link_record(l)),
            Event::CallStarted(c) => wit_hooks::Event::CallStarted(c.to_wit()),
            Event::CallEnded(c) => wit_hooks::Event::CallEnded(c.to_wit()),
            Event::ParticipantJoined(c, p) => {
                wit_hooks::Event::ParticipantJoined(wit_hooks::ParticipantEvent {
                    call: c.to_wit(),
                    participant: p.to_wit(),
                })
            }
            Event::ParticipantLeft(c, p) => {
                wit_hooks::Event::ParticipantLeft(wit_hooks::ParticipantEvent {
                    call: c.to_wit(),
                    participant: p.to_wit(),
                })
            }
            Event::ParticipantRemoved {
                call,
                participant,
                by,
            } => wit_hooks::Event::ParticipantRemoved(wit_hooks::Removal {
                call: call.to_wit(),
                participant: participant.to_wit(),
                by: *by,
            }),
            Event::LobbyRequest(r) => wit_hooks::Event::LobbyRequest(r.to_wit()),
        }
    }
}

impl CallInfo {
    fn to_wit(&self) -> wit::Call {
        wit::Call {
            link: self.link.clone(),
            id: self.id.clone(),
            started_at: self.started_at.timestamp_millis(),
        }
    }
}

impl ParticipantInfo {
    fn to_wit(&self) -> wit::Participant {
        wit::Participant {
            id: self.id,
            name: self.name.clone(),
            user: self.user,
            joined_at: self.joined_at.timestamp_millis(),
        }
    }
}

impl LobbyInfo {
    fn to_wit(&self) -> wit::LobbyRequest {
        wit::LobbyRequest {
            call: self.call.to_wit(),
            request: self.request,
            name: self.name.clone(),
            address: self.address.clone(),
            asked_at: self.asked_at.timestamp_millis(),
        }
    }
}

/// Tells the plugins that listen. Never waits: each plugin has its own queue and
/// handles its events in order.
pub fn emit(state: &AppState, event: Event) {
    state.plugins.emit(state, event);
}

/// A message a plugin queues through the `mail` capability.
pub use bindings::confab::plugin::mail::Message as MailMessage;
pub use capabilities::mail::queue as queue_mail;

/// What the plugins say about a lobby request, together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// The first plugin that denied, and its reason for the guest.
    Deny {
        plugin: String,
        reason: String,
    },
    /// Warnings for the people on the call, by plugin.
    Flag(Vec<(String, String)>),
}

/// An HTTP request for a plugin.
#[derive(Debug, Clone)]
pub struct PluginRequest {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub user: Option<i64>,
}

/// A plugin's HTTP response.
#[derive(Debug, Clone)]
pub struct PluginResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Why a plugin could not answer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvokeError {
    #[error("there is no plugin called {0:?}")]
    NotFound(String),
    #[error("the plugin {0:?} is switched off")]
    Disabled(String),
    #[error("the plugin {0:?} does not handle this")]
    NotHandled(String),
    #[error("the plugin {0:?} is busy; try again")]
    Busy(String),
    #[error("the plugin {plugin:?} failed: {reason}")]
    Failed { plugin: String, reason: String },
}

/// A plugin's ES module for a page (the call page or the dashboard).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PageModule {
    pub plugin: String,
    pub url: String,
}

/// Where a plugin came from.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PluginOrigin {
    /// Shipped with the server: granted what its manifest asks for unless the
    /// operator narrows it.
    Bundled,
    /// Installed by the operator: granted only what `plugins.settings.{name}.grant` lists.
    Installed,
}

/// A plugin that runs, with everything needed for one invocation.
struct Loaded {
    grants: Arc<capabilities::Grants>,
    pre: bindings::PluginPre<HostState>,
    dir: PathBuf,
    source: PluginOrigin,
    sdk: semver::Version,
    permits: Arc<Semaphore>,
    memory_bytes: usize,
    consecutive_failures: AtomicU32,
    invocations: AtomicU64,
    failures: AtomicU64,
    dropped_events: AtomicU64,
    last_error: Mutex<Option<String>>,
    stamp: Stamp,
    loaded_at: DateTime<Utc>,
    queue: OnceLock<mpsc::Sender<Event>>,
    lobby_fallback: LobbyFallback,
}

/// Modification times of a plugin's files, to notice changes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp(Vec<(PathBuf, Option<SystemTime>)>);

impl Stamp {
    fn of(paths: &[PathBuf]) -> Self {
        Stamp(
            paths
                .iter()
                .map(|p| {
                    (
                        p.clone(),
                        std::fs::metadata(p).and_then(|m| m.modified()).ok(),
                    )
                })
                .collect(),
        )
    }

    fn changed(&self) -> bool {
        self.0
            .iter()
            .any(|(p, t)| std::fs::metadata(p).and_then(|m| m.modified()).ok() != *t)
    }
}

/// A plugin directory that did not load, and why.
#[derive(Debug, Clone, Serialize)]
pub struct LoadProblem {
    pub dir: String,
    pub error: String,
    #[serde(skip)]
    stamp: Option<Stamp>,
}

/// A plugin as `confab plugin list` and the admin API show it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
    /// `enabled`, `disabled` (by an administrator) or `auto_disabled` (after failures).
    pub status: String,
    /// Why the server switched it off, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// `bundled` or `installed`.
    pub source: String,
    pub dir: String,
    /// The SDK version the component was built with.
    pub sdk: String,
    pub hooks: Vec<String>,
    /// Capabilities plugin.toml asks for.
    pub requested: Vec<String>,
    /// Those the operator granted.
    pub granted: Vec<String>,
    pub limits: manifest::Limits,
    pub timers: Vec<manifest::Timer>,
    /// Settings (secret ones shown as `••••`).
    pub config: BTreeMap<String, String>,
    /// The call-page module, when the plugin has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_page: Option<String>,
    /// The dashboard module, when the plugin has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard: Option<String>,
    pub invocations: u64,
    pub failures: u64,
    pub consecutive_failures: u32,
    pub dropped_events: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub loaded_at: DateTime<Utc>,
}

/// Everything `list` returns: plugins that run and directories that did not load.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PluginList {
    pub plugins: Vec<PluginInfo>,
    #[schema(value_type = Vec<Object>)]
    pub problems: Vec<LoadProblem>,
}

/// The plugins of this server.
pub struct PluginHost {
    config: PluginsConfig,
    dirs: Vec<PathBuf>,
    scan_dir: Option<PathBuf>,
    /// Where the bundled plugins are written at start (none when they are off).
    bundled_dir: Option<PathBuf>,
    cache_dir: Option<PathBuf>,
    plugins: RwLock<BTreeMap<String, Arc<Loaded>>>,
    problems: RwLock<BTreeMap<PathBuf, LoadProblem>>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("plugins", &self.names())
            .finish()
    }
}

impl PluginHost {
    /// A host for `config.plugins`; nothing is loaded until [`PluginHost::load_all`].
    pub fn new(config: &crate::Config) -> Self {
        let p = &config.plugins;
        let scan_dir = p.enabled.then(|| {
            if p.dir.is_empty() {
                config.data_dir.join("plugins")
            } else {
                PathBuf::from(&p.dir)
            }
        });
        let cache_dir = (p.enabled && p.cache).then(|| {
            if p.cache_dir.is_empty() {
                config.data_dir.join("plugin-cache")
            } else {
                PathBuf::from(&p.cache_dir)
            }
        });
        let bundled_dir = (p.enabled && p.bundled).then(|| config.data_dir.join("bundled-plugins"));
        Self {
            config: p.clone(),
            dirs: if p.enabled {
                p.paths.clone()
            } else {
                Vec::new()
            },
            scan_dir,
            bundled_dir,
            cache_dir,
            plugins: RwLock::default(),
            problems: RwLock::default(),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    fn names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<Loaded>>> {
        self.plugins.read().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, name: &str) -> Option<Arc<Loaded>> {
        self.read().get(name).cloned()
    }

    /// The plugin directories: every subdirectory of `plugins.dir` that has a
    /// `plugin.toml`, then `plugins.paths`, then the bundled plugins (which an
    /// installed plugin of the same name replaces).
    fn plugin_dirs(&self) -> Vec<(PathBuf, PluginOrigin)> {
        let mut out: Vec<(PathBuf, PluginOrigin)> = self
            .installed_dirs()
            .into_iter()
            .map(|d| (d, PluginOrigin::Installed))
            .collect();
        if let Some(bundled) = &self.bundled_dir {
            out.extend(bundled::names().map(|n| (bundled.join(n), PluginOrigin::Bundled)));
        }
        out
    }

    fn installed_dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(scan) = &self.scan_dir
            && let Ok(entries) = std::fs::read_dir(scan)
        {
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.join("plugin.toml").is_file())
                .collect();
            found.sort();
            out.extend(found);
        }
        out.extend(self.dirs.iter().cloned());
        out
    }

    /// Loads every plugin (at start). Plugins that fail to load are listed with the
    /// reason and do not stop the server.
    pub async fn load_all(&self, state: &AppState) {
        let _one = self.reloading.lock().await;
        if let Some(dir) = self.bundled_dir.clone() {
            let written = tokio::task::spawn_blocking(move || bundled::install(&dir)).await;
            if let Ok(Err(e)) = written {
                tracing::error!(error = %e, "cannot write the bundled plugins to the data directory");
            }
        }
        for (dir, source) in self.plugin_dirs() {
            if self.shadowed(&dir, source) {
                continue;
            }
            let _ = self.load_dir(state, &dir, source).await;
        }
        let names = self.names();
        if !names.is_empty() {
            tracing::info!(plugins = ?names, "plugins loaded");
        }
    }

    /// Whether `dir` is a bundled plugin that an installed one of the same name replaces.
    fn shadowed(&self, dir: &Path, source: PluginOrigin) -> bool {
        if source != PluginOrigin::Bundled {
            return false;
        }
        let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        match self.get(name) {
            Some(other) if other.dir != dir => {
                tracing::info!(plugin = %name, installed = %other.dir.display(), "an installed plugin replaces the bundled one");
                true
            }
            _ => false,
        }
    }

    /// Loads (or reloads) the plugin in `dir`; returns its name.
    async fn load_dir(
        &self,
        state: &AppState,
        dir: &Path,
        source: PluginOrigin,
    ) -> Result<String, String> {
        let settings = self.config.clone();
        let cache = self.cache_dir.clone();
        let owned_dir = dir.to_path_buf();
        let now = state.clock.now();
        let outcome = tokio::task::spawn_blocking(move || {
            load_plugin(&owned_dir, source, &settings, cache.as_deref(), now)
        })
        .await
        .unwrap_or_else(|e| Err((format!("loading panicked: {e}"), None)));
        let mut problems = self.problems.write().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok(loaded) => {
                let name = loaded.grants.name.to_string();
                problems.remove(dir);
                let mut plugins = self.plugins.write().unwrap_or_else(|e| e.into_inner());
                // An installed plugin replaces a bundled one of the same name.
                if let Some(other) = plugins.get(&name)
                    && other.dir != loaded.dir
                    && !(other.source == PluginOrigin::Bundled && source == PluginOrigin::Installed)
                {
                    let error = format!(
                        "another plugin called {name:?} is already loaded from {}",
                        other.dir.display()
                    );
                    problems.insert(
                        dir.to_path_buf(),
                        LoadProblem {
                            dir: dir.display().to_string(),
                            error: error.clone(),
                            stamp: Some(loaded.stamp.clone()),
                        },
                    );
                    return Err(error);
                }
                tracing::info!(plugin = %name, version = %loaded.grants.manifest.version, sdk = %loaded.sdk, dir = %dir.display(), "plugin ready");
                plugins.insert(name.clone(), Arc::new(loaded));
                Ok(name)
            }
            Err((error, stamp)) => {
                tracing::error!(dir = %dir.display(), %error, "plugin not loaded");
                problems.insert(
                    dir.to_path_buf(),
                    LoadProblem {
                        dir: dir.display().to_string(),
                        error: error.clone(),
                        stamp,
                    },
                );
                Err(error)
            }
        }
    }

    /// Reloads one plugin from its directory (after a rebuild). On failure the
    /// running version stays.
    pub async fn reload(&self, state: &AppState, name: &str) -> Result<(), InvokeError> {
        let _one = self.reloading.lock().await;
        let (dir, source) = self
            .get(name)
            .map(|p| (p.dir.clone(), p.source))
            .ok_or_else(|| InvokeError::NotFound(name.into()))?;
        match self.load_dir(state, &dir, source).await {
            Ok(_) => Ok(()),
            Err(reason) => Err(InvokeError::Failed {
                plugin: name.into(),
                reason,
            }),
        }
    }

    /// Reloads plugins whose files changed and loads new plugin directories; a
    /// plugin whose directory is gone is unloaded.
    pub async fn reload_changed(&self, state: &AppState) {
        let _one = self.reloading.lock().await;
        let dirs = self.plugin_dirs();
        let loaded: Vec<(String, PathBuf, PluginOrigin, bool)> = self
            .read()
            .iter()
            .map(|(n, p)| (n.clone(), p.dir.clone(), p.source, p.stamp.changed()))
            .collect();
        for (name, dir, source, changed) in &loaded {
            let listed = dirs.iter().any(|(d, _)| d == dir);
            if !listed || !dir.join("plugin.toml").is_file() {
                tracing::info!(plugin = %name, "plugin removed");
                self.plugins
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(name);
            } else if *changed {
                tracing::info!(plugin = %name, "plugin files changed: reloading");
                let _ = self.load_dir(state, dir, *source).await;
            }
        }
        for (dir, source) in dirs {
            if loaded.iter().any(|(_, d, _, _)| *d == dir) || self.shadowed(&dir, source) {
                continue;
            }
            let retry = match self
                .problems
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .get(&dir)
            {
                Some(problem) => problem.stamp.as_ref().is_none_or(Stamp::changed),
                None => true,
            };
            if retry {
                let _ = self.load_dir(state, &dir, source).await;
            }
        }
    }

    /// Watches plugin files and reloads what changed, until `shutdown`.
    pub async fn watch(state: AppState, shutdown: crate::shutdown::Shutdown) {
        let every = Duration::from_millis(u64::from(state.config.plugins.watch_interval_ms));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait() => return,
            }
            state.plugins.reload_changed(&state).await;
        }
    }

    /// Every plugin and every problem, for the admin API and the CLI.
    pub async fn list(&self, state: &AppState) -> Result<PluginList, crate::store::StoreError> {
        let policy = state.policy.get(&state.store).await?;
        let auto: BTreeMap<String, String> = state
            .store
            .plugin_statuses()
            .await?
            .into_iter()
            .map(|s| (s.plugin, s.disabled_reason))
            .collect();
        let plugins = self
            .read()
            .values()
            .map(|p| {
                let name = &*p.grants.name;
                let (status, disabled_reason) = if policy.plugin_enabled(name) {
                    ("enabled", None)
                } else if let Some(reason) = auto.get(name) {
                    ("auto_disabled", Some(reason.clone()))
                } else {
                    ("disabled", None)
                };
                let m = &p.grants.manifest;
                PluginInfo {
                    name: name.to_string(),
                    version: m.version.to_string(),
                    description: m.description.clone(),
                    status: status.into(),
                    disabled_reason,
                    source: match p.source {
                        PluginOrigin::Bundled => "bundled",
                        PluginOrigin::Installed => "installed",
                    }
                    .into(),
                    dir: p.dir.display().to_string(),
                    sdk: p.sdk.to_string(),
                    hooks: m
                        .hooks
                        .iter()
                        .map(|h| {
                            serde_json::to_value(h)
                                .ok()
                                .and_then(|v| v.as_str().map(String::from))
                                .unwrap_or_default()
                        })
                        .collect(),
                    requested: m
                        .permissions
                        .requested()
                        .iter()
                        .map(|c| c.to_string())
                        .collect(),
                    granted: p.grants.granted.iter().map(|c| c.to_string()).collect(),
                    limits: m.limits.clone(),
                    timers: m.timers.clone(),
                    config: p
                        .grants
                        .config
                        .iter()
                        .map(|(k, v)| {
                            let secret = m.config.get(k).is_some_and(|c| c.secret);
                            (
                                k.clone(),
                                if secret {
                                    "••••".into()
                                } else {
                                    v.clone()
                                },
                            )
                        })
                        .collect(),
                    call_page: m
                        .web
                        .call_page
                        .as_ref()
                        .map(|module| format!("/p/{name}/static/{module}")),
                    dashboard: m
                        .web
                        .dashboard
                        .as_ref()
                        .map(|module| format!("/p/{name}/static/{module}")),
                    invocations: p.invocations.load(Ordering::Relaxed),
                    failures: p.failures.load(Ordering::Relaxed),
                    consecutive_failures: p.consecutive_failures.load(Ordering::Relaxed),
                    dropped_events: p.dropped_events.load(Ordering::Relaxed),
                    last_error: p
                        .last_error
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .clone(),
                    loaded_at: p.loaded_at,
                }
            })
            .collect();
        let problems = self
            .problems
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        Ok(PluginList { plugins, problems })
    }

    /// One plugin as [`PluginHost::list`] shows it.
    pub async fn info(
        &self,
        state: &AppState,
        name: &str,
    ) -> Result<Option<PluginInfo>, crate::store::StoreError> {
        Ok(self
            .list(state)
            .await?
            .plugins
            .into_iter()
            .find(|p| p.name == name))
    }

    /// Switches a plugin on or off for the whole server (kept in the organization
    /// policy). Switching on also clears an automatic switch-off and its failures.
    pub async fn set_enabled(
        &self,
        state: &AppState,
        name: &str,
        enabled: bool,
    ) -> Result<(), crate::policy::PolicyError> {
        let current = state.policy.get(&state.store).await?;
        let mut disabled = current.disabled_plugins.clone();
        disabled.retain(|p| p != name);
        if !enabled {
            disabled.push(name.to_string());
        }
        state
            .policy
            .update(
                &state.store,
                PolicyPatch {
                    disabled_plugins: Some(disabled),
                    ..Default::default()
                },
                state.clock.now(),
            )
            .await?;
        if enabled {
            state.store.clear_plugin_auto_disabled(name).await?;
            if let Some(p) = self.get(name) {
                p.consecutive_failures.store(0, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Whether the plugin exists, loaded, and is switched on.
    async fn enabled(&self, state: &AppState, name: &str) -> Result<Arc<Loaded>, InvokeError> {
        let plugin = self
            .get(name)
            .ok_or_else(|| InvokeError::NotFound(name.into()))?;
        let on = match state.policy.get(&state.store).await {
            Ok(policy) => policy.plugin_enabled(name),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the policy; treating plugins as switched off");
                false
            }
        };
        if on {
            Ok(plugin)
        } else {
            Err(InvokeError::Disabled(name.into()))
        }
    }

    /// The plugins whose `events` hook covers `kind`.
    fn listeners(&self, kind: manifest::EventKind) -> Vec<Arc<Loaded>> {
        self.read()
            .values()
            .filter(|p| p.grants.manifest.wants_event(kind))
            .cloned()
            .collect()
    }

    fn emit(&self, state: &AppState, event: Event) {
        for plugin in self.listeners(event.kind()) {
            let queue = plugin.queue.get_or_init(|| {
                let (tx, rx) = mpsc::channel(EVENT_QUEUE);
                tokio::spawn(deliver_events(
                    state.clone(),
                    plugin.grants.name.to_string(),
                    rx,
                ));
                tx
            });
            if queue.try_send(event.clone()).is_err() {
                plugin.dropped_events.fetch_add(1, Ordering::Relaxed);
                state.metrics.plugin_events_dropped(&plugin.grants.name);
                tracing::warn!(plugin = %plugin.grants.name, "plugin event queue is full: event dropped");
            }
        }
    }

    /// Delivers `event` to every plugin that listens and is switched on, all at once,
    /// and returns when each has handled it (or failed). [`emit`] queues instead and
    /// never waits; this is for callers that must know the event was handled.
    pub async fn dispatch(&self, state: &AppState, event: Event) {
        let listeners = self.listeners(event.kind());
        let deliveries = listeners
            .iter()
            .map(|plugin| self.deliver(state, &plugin.grants.name, &event));
        futures_util::future::join_all(deliveries).await;
    }

    /// Runs one plugin's `on-event` for `event`, if the plugin is switched on.
    async fn deliver(
        &self,
        state: &AppState,
        name: &str,
        event: &Event,
    ) -> Result<(), InvokeError> {
        let plugin = self.enabled(state, name).await?;
        let deadline = Duration::from_millis(u64::from(plugin.grants.manifest.limits.deadline_ms));
        let wit_event = event.to_wit();
        self.invoke(
            state,
            &plugin,
            "event",
            event.actor(),
            deadline,
            move |p, s| {
                Box::pin(async move { p.confab_plugin_hooks().call_on_event(s, &wit_event).await })
            },
        )
        .await
    }

    /// Whether any loaded plugin screens lobby requests (switched on or not: the
    /// policy is checked when they are asked).
    /// Whether a loaded plugin called `name` takes call messages (a shared activity):
    /// messages for any other name are refused before a queue is made for them.
    pub fn takes_call_messages(&self, name: &str) -> bool {
        self.read()
            .get(name)
            .is_some_and(|p| p.grants.manifest.wants(Hook::CallMessages))
    }

    pub fn screens_lobby_requests(&self) -> bool {
        self.read()
            .values()
            .any(|p| p.grants.manifest.wants(Hook::LobbyDecision))
    }

    /// Asks the plugins that screen lobby requests. Each gets its
    /// `decision-deadline-ms`; one that fails or is late gets its operator-set
    /// fallback (allow or flag).
    pub async fn lobby_decision(&self, state: &AppState, request: &LobbyInfo) -> Verdict {
        let deciders: Vec<Arc<Loaded>> = self
            .read()
            .values()
            .filter(|p| p.grants.manifest.wants(Hook::LobbyDecision))
            .cloned()
            .collect();
        if deciders.is_empty() {
            return Verdict::Allow;
        }
        let policy = state.policy.get(&state.store).await.ok();
        let asks = deciders.into_iter().filter(|p| {
            policy
                .as_ref()
                .is_none_or(|pol| pol.plugin_enabled(&p.grants.name))
        });
        let futures = asks.map(|plugin| async move {
            let name = plugin.grants.name.to_string();
            let deadline =
                Duration::from_millis(u64::from(plugin.grants.manifest.limits.decision_deadline_ms));
            let req = request.to_wit();
            let answer = self
                .invoke(state, &plugin, "lobby-decision", None, deadline, move |p, s| {
                    Box::pin(async move { p.confab_plugin_hooks().call_lobby_decision(s, &req).await })
                })
                .await;
            let decision = match answer {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(plugin = %name, error = %e, fallback = ?plugin.lobby_fallback, "lobby decision failed: using the fallback");
                    match plugin.lobby_fallback {
                        LobbyFallback::Allow => wit_hooks::Decision::Allow,
                        LobbyFallback::Flag => wit_hooks::Decision::Flag(
                            "could not be screened automatically".into(),
                        ),
                    }
                }
            };
            (name, decision)
        });
        let answers = futures_util::future::join_all(futures).await;
        let mut flags = Vec::new();
        for (plugin, decision) in answers {
            match decision {
                wit_hooks::Decision::Allow => {}
                wit_hooks::Decision::Deny(reason) => {
                    return Verdict::Deny {
                        plugin,
                        reason: clip(&reason, 200),
                    };
                }
                wit_hooks::Decision::Flag(reason) => flags.push((plugin, clip(&reason, 200))),
            }
        }
        if flags.is_empty() {
            Verdict::Allow
        } else {
            Verdict::Flag(flags)
        }
    }

    /// Passes an HTTP request to a plugin.
    pub async fn http(
        &self,
        state: &AppState,
        name: &str,
        request: PluginRequest,
    ) -> Result<PluginResponse, InvokeError> {
        let plugin = self.enabled(state, name).await?;
        if !plugin.grants.manifest.wants(Hook::Http) {
            return Err(InvokeError::NotHandled(name.into()));
        }
        let deadline = Duration::from_millis(u64::from(plugin.grants.manifest.limits.deadline_ms));
        let user = request.user;
        let req = wit_hooks::HttpRequest {
            method: request.method,
            path: request.path,
            query: request.query,
            headers: request.headers,
            body: request.body,
            user: request.user,
        };
        let res = self
            .invoke(state, &plugin, "http", user, deadline, move |p, s| {
                Box::pin(async move { p.confab_plugin_hooks().call_handle_http(s, &req).await })
            })
            .await?;
        Ok(PluginResponse {
            status: res.status,
            headers: res.headers,
            body: res.body,
        })
    }

    /// Passes a participant's message on a plugin's channel to the plugin.
    pub async fn call_message(
        &self,
        state: &AppState,
        name: &str,
        call: &CallInfo,
        sender: u32,
        payload: Vec<u8>,
    ) -> Result<(), InvokeError> {
        let plugin = self.enabled(state, name).await?;
        if !plugin.grants.manifest.wants(Hook::CallMessages) {
            return Err(InvokeError::NotHandled(name.into()));
        }
        let deadline = Duration::from_millis(u64::from(plugin.grants.manifest.limits.deadline_ms));
        let call = call.to_wit();
        self.invoke(
            state,
            &plugin,
            "call-message",
            None,
            deadline,
            move |p, s| {
                Box::pin(async move {
                    p.confab_plugin_hooks()
                        .call_on_call_message(s, &call, sender, &payload)
                        .await
                })
            },
        )
        .await
    }

    /// Fires a plugin's timer now.
    pub async fn fire_timer(
        &self,
        state: &AppState,
        name: &str,
        timer: &str,
    ) -> Result<(), InvokeError> {
        let plugin = self.enabled(state, name).await?;
        if !plugin
            .grants
            .manifest
            .timers
            .iter()
            .any(|t| t.name == timer)
        {
            return Err(InvokeError::NotHandled(name.into()));
        }
        let deadline = Duration::from_millis(u64::from(plugin.grants.manifest.limits.deadline_ms));
        let timer = timer.to_string();
        self.invoke(state, &plugin, "timer", None, deadline, move |p, s| {
            Box::pin(async move { p.confab_plugin_hooks().call_on_timer(s, &timer).await })
        })
        .await
    }

    /// Fires timers as their intervals pass, and cron timers at their minutes of the
    /// app's clock, until `shutdown`.
    pub async fn run_timers(state: AppState, shutdown: crate::shutdown::Shutdown) {
        let mut next: BTreeMap<(String, String), (manifest::Schedule, Option<manifest::Due>)> =
            BTreeMap::new();
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.wait() => return,
            }
            let now = Instant::now();
            let wall = state.clock.now();
            let timers: Vec<(String, String, manifest::Schedule)> = state
                .plugins
                .read()
                .values()
                .filter(|p| p.grants.manifest.wants(Hook::Timers))
                .flat_map(|p| {
                    p.grants.manifest.timers.iter().filter_map(|t| {
                        Some((p.grants.name.to_string(), t.name.clone(), t.schedule()?))
                    })
                })
                .collect();
            next.retain(|k, _| timers.iter().any(|(p, t, _)| (p, t) == (&k.0, &k.1)));
            for (plugin, timer, schedule) in timers {
                let entry = next
                    .entry((plugin.clone(), timer.clone()))
                    .or_insert_with(|| (schedule.clone(), schedule.next(now, wall)));
                // A reload changed the schedule: count from now.
                if entry.0 != schedule {
                    *entry = (schedule.clone(), schedule.next(now, wall));
                }
                if entry.1.is_some_and(|due| due.reached(now, wall)) {
                    entry.1 = schedule.next(now, wall);
                    let state = state.clone();
                    tokio::spawn(async move {
                        match state.plugins.fire_timer(&state, &plugin, &timer).await {
                            Ok(()) | Err(InvokeError::Disabled(_)) => {}
                            Err(e) => {
                                tracing::warn!(%plugin, %timer, error = %e, "plugin timer failed")
                            }
                        }
                    });
                }
            }
        }
    }

    /// The static directory of a plugin and its call-page module, for serving.
    pub fn static_dir(&self, name: &str) -> Option<PathBuf> {
        let plugin = self.get(name)?;
        let dir = plugin.grants.manifest.web.static_dir.as_ref()?;
        Some(plugin.dir.join(dir))
    }

    /// The call-page modules of plugins that are switched on, for the call page to
    /// import.
    pub async fn call_page_modules(&self, state: &AppState) -> Vec<PageModule> {
        self.page_modules(state, |web| web.call_page.as_ref()).await
    }

    /// The dashboard modules of plugins that are switched on.
    pub async fn dashboard_modules(&self, state: &AppState) -> Vec<PageModule> {
        self.page_modules(state, |web| web.dashboard.as_ref()).await
    }

    async fn page_modules(
        &self,
        state: &AppState,
        module: impl Fn(&manifest::Web) -> Option<&String>,
    ) -> Vec<PageModule> {
        let Ok(policy) = state.policy.get(&state.store).await else {
            return Vec::new();
        };
        self.read()
            .values()
            .filter(|p| policy.plugin_enabled(&p.grants.name))
            .filter_map(|p| {
                let module = module(&p.grants.manifest.web)?;
                Some(PageModule {
                    plugin: p.grants.name.to_string(),
                    url: format!("/p/{}/static/{module}", p.grants.name),
                })
            })
            .collect()
    }

    /// Runs one export in a fresh sandbox and keeps the books: metrics, failure
    /// counts, automatic switch-off.
    async fn invoke<R, F>(
        &self,
        state: &AppState,
        plugin: &Arc<Loaded>,
        hook: &'static str,
        acting_user: Option<i64>,
        deadline: Duration,
        call: F,
    ) -> Result<R, InvokeError>
    where
        R: Send,
        F: for<'a> FnOnce(
                &'a bindings::Plugin,
                &'a mut wasmtime::Store<HostState>,
            ) -> Pin<
                Box<dyn std::future::Future<Output = wasmtime::Result<R>> + Send + 'a>,
            > + Send,
    {
        let name = plugin.grants.name.to_string();
        let started = Instant::now();
        let Ok(Ok(_permit)) =
            tokio::time::timeout(deadline, plugin.permits.clone().acquire_owned()).await
        else {
            state.metrics.plugin_invocation(&name, hook, "busy", 0.0);
            return Err(InvokeError::Busy(name));
        };
        let runtime = Runtime::get().map_err(|reason| InvokeError::Failed {
            plugin: name.clone(),
            reason,
        })?;
        let mut store = runtime::new_store(
            runtime,
            plugin.grants.clone(),
            state.clone(),
            acting_user,
            plugin.memory_bytes,
            deadline,
        );
        let pre = plugin.pre.clone();
        let run = async {
            let instance = pre.instantiate_async(&mut store).await?;
            call(&instance, &mut store).await
        };
        // The epoch deadline stops guest code; this stops a capability call that hangs.
        let outcome = tokio::time::timeout(deadline + Duration::from_millis(50), run).await;
        plugin.invocations.fetch_add(1, Ordering::Relaxed);
        let elapsed = started.elapsed().as_secs_f64();
        let error = match outcome {
            Ok(Ok(value)) => {
                plugin.consecutive_failures.store(0, Ordering::Relaxed);
                state.metrics.plugin_invocation(&name, hook, "ok", elapsed);
                return Ok(value);
            }
            Ok(Err(e)) => match describe_failure(&e, deadline) {
                Failure::NoRoom(error) => {
                    state
                        .metrics
                        .plugin_invocation(&name, hook, "busy", elapsed);
                    tracing::warn!(plugin = %name, hook, %error, "plugin not run");
                    return Err(InvokeError::Busy(name));
                }
                Failure::Plugin(error) => error,
            },
            Err(_) => format!("ran past its deadline of {} ms", deadline.as_millis()),
        };
        state
            .metrics
            .plugin_invocation(&name, hook, "failed", elapsed);
        plugin.failures.fetch_add(1, Ordering::Relaxed);
        *plugin.last_error.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(format!("{hook}: {error}"));
        let in_a_row = plugin.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::error!(plugin = %name, hook, %error, failures_in_a_row = in_a_row, "plugin invocation failed");
        let limit = self.config.failures_before_disable;
        if limit > 0 && in_a_row == limit {
            self.auto_disable(
                state,
                &name,
                &format!("{in_a_row} failures in a row; the last: {hook}: {error}"),
            )
            .await;
        }
        Err(InvokeError::Failed {
            plugin: name,
            reason: error,
        })
    }

    async fn auto_disable(&self, state: &AppState, name: &str, reason: &str) {
        tracing::error!(plugin = %name, reason, "switching the plugin off; an administrator can switch it back on");
        state.metrics.plugin_auto_disabled(name);
        let now = state.clock.now();
        if let Err(e) = state
            .store
            .set_plugin_auto_disabled(name, reason, now)
            .await
        {
            tracing::error!(plugin = %name, error = %e, "cannot record why the plugin was switched off");
        }
        if let Err(e) = self.set_enabled(state, name, false).await {
            tracing::error!(plugin = %name, error = %e, "cannot switch the plugin off");
        }
    }
}

/// Handles a plugin's events one after the other.
async fn deliver_events(state: AppState, name: String, mut events: mpsc::Receiver<Event>) {
    while let Some(event) = events.recv().await {
        // Unloaded: stop. Switched off, or the invocation failed: next event.
        if let Err(InvokeError::NotFound(_)) = state.plugins.deliver(&state, &name, &event).await {
            return;
        }
    }
}

/// Why a call failed: the plugin's fault, or no room in the instance pool (the
/// server's, not counted against the plugin).
enum Failure {
    Plugin(String),
    NoRoom(String),
}

fn describe_failure(error: &wasmtime::Error, deadline: Duration) -> Failure {
    if let Some(trap) = error.downcast_ref::<wasmtime::Trap>() {
        return Failure::Plugin(match trap {
            wasmtime::Trap::Interrupt => {
                format!("ran past its deadline of {} ms", deadline.as_millis())
            }
            wasmtime::Trap::StackOverflow => "overflowed its stack".into(),
            other => format!("trapped: {other}"),
        });
    }
    let text = format!("{error:#}");
    if text.contains("maximum concurrent") || text.contains("pooling allocator") {
        return Failure::NoRoom(format!(
            "the server has no room for another plugin instance now ({text})"
        ));
    }
    Failure::Plugin(clip(&text, 500))
}

fn clip(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        text.to_string()
    } else {
        let mut out: String = text.chars().take(max_chars).collect();
        out.push('…');
        out
    }
}

/// Reads, checks, compiles and links one plugin. On failure, the reason and the
/// files' stamp (so an unchanged broken plugin is not retried over and over).
fn load_plugin(
    dir: &Path,
    source: PluginOrigin,
    config: &PluginsConfig,
    cache: Option<&Path>,
    now: DateTime<Utc>,
) -> Result<Loaded, (String, Option<Stamp>)> {
    let manifest_path = dir.join("plugin.toml");
    let text = std::fs::read_to_string(&manifest_path).map_err(|e| {
        (
            format!("cannot read {}: {e}", manifest_path.display()),
            None,
        )
    })?;
    let manifest = Manifest::parse(&text).map_err(|e| (e.to_string(), None))?;
    let component_path = dir.join(&manifest.component);
    let stamp = Stamp::of(&[manifest_path.clone(), component_path.clone()]);
    let fail = |e: String| (format!("{}: {e}", manifest.name), Some(stamp.clone()));
    if !manifest.sdk.matches(&SDK_VERSION) {
        return Err(fail(format!(
            "plugin.toml asks for SDK {}, this server implements {SDK_VERSION}",
            manifest.sdk
        )));
    }
    let size = std::fs::metadata(&component_path)
        .map_err(|e| {
            fail(format!(
                "cannot read the component {}: {e} (build it with cargo build --release --target wasm32-wasip2)",
                component_path.display()
            ))
        })?
        .len();
    if size > MAX_COMPONENT_BYTES {
        return Err(fail(format!(
            "the component is larger than {} MiB",
            MAX_COMPONENT_BYTES >> 20
        )));
    }
    let bytes = std::fs::read(&component_path)
        .map_err(|e| fail(format!("cannot read {}: {e}", component_path.display())))?;
    let sdk = component_sdk_version(&bytes).map_err(fail)?;
    check_sdk(&sdk).map_err(fail)?;
    let runtime = Runtime::get().map_err(fail)?;
    let component = runtime
        .compile(&bytes, cache)
        .map_err(|e| fail(format!("not a valid WebAssembly component: {e}")))?;
    let pre = runtime.prepare(&component).map_err(|e| {
        fail(format!(
            "does not fit this server's confab:plugin@{SDK_VERSION} world: {e}"
        ))
    })?;
    let settings = config
        .settings
        .get(&manifest.name)
        .cloned()
        .unwrap_or_default();
    let requested: BTreeSet<Capability> = manifest.permissions.requested().into_iter().collect();
    let granted: BTreeSet<Capability> = match (&settings.grant, source) {
        (Some(list), _) => list
            .iter()
            .filter_map(|c| Capability::parse(c))
            .filter(|c| requested.contains(c))
            .collect(),
        (None, PluginOrigin::Bundled) => requested.clone(),
        (None, PluginOrigin::Installed) => BTreeSet::new(),
    };
    if let Some(list) = &settings.grant
        && let Some(bad) = list.iter().find(|c| Capability::parse(c).is_none())
    {
        return Err(fail(format!(
            "plugins.settings.{}.grant: {bad:?} is not a capability (kv, links, calls, mail, http-client, templates)",
            manifest.name
        )));
    }
    let mut values = BTreeMap::new();
    for (key, spec) in &manifest.config {
        match settings.config.get(key).or(spec.default.as_ref()) {
            Some(v) => {
                values.insert(key.clone(), v.clone());
            }
            None if spec.required => {
                return Err(fail(format!(
                    "the setting {key:?} is required: set plugins.settings.{}.config.{key}",
                    manifest.name
                )));
            }
            None => {}
        }
    }
    if let Some(unknown) = settings
        .config
        .keys()
        .find(|k| !manifest.config.contains_key(*k))
    {
        return Err(fail(format!(
            "plugins.settings.{}.config.{unknown} is not a setting this plugin declares",
            manifest.name
        )));
    }
    let templates = load_templates(dir, settings.templates_dir.as_deref()).map_err(fail)?;
    let memory_mib = manifest.limits.memory_mib.min(config.max_memory_mib);
    let concurrency = manifest
        .limits
        .concurrency
        .min(config.max_concurrency)
        .max(1);
    Ok(Loaded {
        grants: Arc::new(capabilities::Grants::new(
            manifest.clone(),
            granted,
            values,
            templates,
        )),
        pre,
        dir: dir.to_path_buf(),
        source,
        sdk,
        permits: Arc::new(Semaphore::new(concurrency as usize)),
        memory_bytes: (memory_mib as usize) << 20,
        consecutive_failures: AtomicU32::new(0),
        invocations: AtomicU64::new(0),
        failures: AtomicU64::new(0),
        dropped_events: AtomicU64::new(0),
        last_error: Mutex::new(None),
        stamp,
        loaded_at: now,
        queue: OnceLock::new(),
        lobby_fallback: settings.lobby_fallback,
    })
}

/// The plugin's `templates/` (`*.html`, `*.txt`, `*.ics`), then the operator's
/// overrides from `override_dir`.
fn load_templates(dir: &Path, override_dir: Option<&str>) -> Result<Option<tera::Tera>, String> {
    let mut tera = tera::Tera::default();
    let mut any = false;
    for base in [Some(dir.join("templates")), override_dir.map(PathBuf::from)]
        .into_iter()
        .flatten()
    {
        let Ok(entries) = std::fs::read_dir(&base) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
        files.sort();
        for path in files.into_iter().filter(|p| p.is_file()) {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            tera.add_raw_template(&name, &text)
                .map_err(|e| format!("template {}: {e}", path.display()))?;
            any = true;
        }
    }
    if any {
        // Escape HTML in .html templates only (tera's default covers .html, .htm, .xml).
        Ok(Some(tera))
    } else {
        Ok(None)
    }
}

/// The SDK version a component was built with: the `confab-sdk-version` custom
/// section the SDK embeds, or else the version of the exported hooks interface.
pub fn component_sdk_version(bytes: &[u8]) -> Result<semver::Version, String> {
    let mut exported = None;
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(|e| format!("not a WebAssembly file: {e}"))?;
        match payload {
            wasmparser::Payload::CustomSection(section)
                if section.name() == "confab-sdk-version" =>
            {
                let text = std::str::from_utf8(section.data())
                    .map_err(|_| "the confab-sdk-version section is not text".to_string())?;
                return semver::Version::parse(text.trim()).map_err(|e| {
                    format!("the confab-sdk-version section {text:?} is not a version: {e}")
                });
            }
            wasmparser::Payload::ComponentExportSection(reader) => {
                for export in reader.into_iter().flatten() {
                    if let Some(v) = export
                        .name
                        .name
                        .strip_prefix("confab:plugin/hooks@")
                        .and_then(|v| semver::Version::parse(v).ok())
                    {
                        exported = Some(v);
                    }
                }
            }
            _ => {}
        }
    }
    exported.ok_or_else(|| {
        "this is not a Confab plugin component: it does not export confab:plugin/hooks (build it with confab-plugin-sdk for wasm32-wasip2)".to_string()
    })
}

/// Refuses components built for another major version, or a newer minor one.
pub fn check_sdk(built_with: &semver::Version) -> Result<(), String> {
    if built_with.major != SDK_VERSION.major {
        return Err(format!(
            "built for SDK {built_with}, but this server runs plugins for SDK {}.x (it implements {SDK_VERSION}); rebuild the plugin with confab-plugin-sdk {}.x",
            SDK_VERSION.major, SDK_VERSION.major
        ));
    }
    if built_with.minor > SDK_VERSION.minor {
        return Err(format!(
            "built for SDK {built_with}, newer than this server's {SDK_VERSION}; upgrade the server or build against an older SDK"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_versions_of_another_major_or_a_newer_minor_are_refused() {
        assert!(check_sdk(&semver::Version::new(1, 0, 0)).is_ok());
        assert!(check_sdk(&semver::Version::new(1, 0, 7)).is_ok());
        let err = check_sdk(&semver::Version::new(2, 0, 0)).unwrap_err();
        assert!(err.contains("SDK 2.0.0") && err.contains("1.x"), "{err}");
        assert!(check_sdk(&semver::Version::new(1, 1, 0)).is_ok());
        let err = check_sdk(&semver::Version::new(1, 2, 0)).unwrap_err();
        assert!(err.contains("newer"), "{err}");
    }

    #[test]
    fn files_that_are_not_components_are_refused_clearly() {
        let err = component_sdk_version(b"hello").unwrap_err();
        assert!(err.contains("not a WebAssembly"), "{err}");
        // An empty core module: valid WebAssembly, not a plugin.
        let err = component_sdk_version(b"\0asm\x01\0\0\0").unwrap_err();
        assert!(err.contains("not a Confab plugin"), "{err}");
    }
}
