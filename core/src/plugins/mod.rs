//! Plugins: sandboxed WebAssembly components built against `confab:plugin@1.x`
//! (the `sdk/` crate).
//!
//! [`PluginHost`] finds plugins (a directory per plugin with a `plugin.toml` and
//! a component), checks the SDK version and the manifest, compiles each component
//! once (cached on disk) and resolves its imports once ([`bindings::PluginPre`]).
//! Every invocation then gets a fresh store with the plugin's memory limit and an
//! epoch deadline (`runtime`); what a plugin may do through its imports is in
//! `capabilities`: a host object per capability the operator granted. The host
//! reaches the rest of the server only through [`PluginDeps`].
//!
//! Invocations never take the server down: a trap, a deadline or a memory limit
//! fails that invocation only, is logged and counted, and after
//! `plugins.failures_before_disable` failures in a row the plugin is switched off
//! until an administrator switches it back on.
//!
//! This file has the host's types; its work is split by concern: `load.rs`
//! (finding, checking, compiling, reloading), `hooks.rs` (events, lobby
//! decisions, HTTP routes, call messages, timers), `invoke.rs` (one invocation
//! and what a failure does), `admin.rs` (listing, switching on and off, page
//! modules), `events.rs` (what plugins are told), `runtime.rs` (wasmtime), `deps.rs` (what
//! the host reaches of the server) and `capabilities/` (what a plugin may ask of
//! the server).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use serde::Serialize;

use crate::config::PluginsConfig;

mod admin;
pub mod bundled;
pub(crate) mod capabilities;
mod deps;
mod events;
mod hooks;
mod invoke;
mod load;
mod runtime;
pub mod scaffold;

pub use admin::{LoadProblem, PluginInfo, PluginList, frame_url};
pub use capabilities::calls::{
    CallerOrigin, MemberRole, OriginOf, PluginCallAction, PluginCallAnswer, PluginCallError,
    RosterMember,
};
pub use capabilities::link_record;
/// `plugin.toml`, from the plugin contract the SDK's test harness shares.
pub use confab_plugin_contract::manifest;
pub use deps::{BoxFuture, LiveCalls, PluginDeps};
pub use events::{CallInfo, Event, LobbyInfo, ParticipantInfo, emit};
use load::{Loaded, Stamp};
pub use load::{check_sdk, component_sdk_version};
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
pub use confab_plugin_contract::SDK_VERSION;
/// Largest payload of a message a participant sends on a plugin's channel.
pub use confab_plugin_contract::limits::MAX_CALL_MESSAGE_BYTES;
/// Largest component file accepted.
pub const MAX_COMPONENT_BYTES: u64 = 64 * 1024 * 1024;
/// Events waiting for one plugin; beyond this, new events for it are dropped (and
/// counted), so a stuck plugin cannot hold memory.
const EVENT_QUEUE: usize = 1024;

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

/// A plugin's frame on a page (the call page or the dashboard): the page puts
/// `frame` in a sandboxed `<iframe>` and answers its bridge calls.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PageModule {
    pub plugin: String,
    /// The frame's document (`/plugin-frame/{plugin}/{kind}`).
    pub frame: String,
    /// Whether the page may put the full link into the plugin's requests
    /// (`web.link-secret`).
    pub link_secret: bool,
}

/// What a plugin's frame document loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameModule {
    /// The plugin's ES module (`/p/{plugin}/static/…`).
    pub url: String,
    /// Whether the plugin was granted `web.link-secret`.
    pub link_secret: bool,
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
    /// This node's id when it is a node of a cluster: each timer run is then
    /// claimed in the database first, so that it runs on one node only.
    cluster_node: Option<String>,
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
            cluster_node: config.clustered().then(|| config.node_id()),
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
        assert!(check_sdk(&semver::Version::new(1, 2, 0)).is_ok());
        assert!(check_sdk(&semver::Version::new(1, 3, 0)).is_ok());
        let err = check_sdk(&semver::Version::new(1, 4, 0)).unwrap_err();
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
