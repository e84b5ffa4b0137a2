//! Finding, checking, compiling and (re)loading plugins.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use tokio::sync::{Semaphore, mpsc};

use super::PluginDeps;
use crate::config::{LobbyFallback, PluginsConfig};

use super::*;

/// A plugin that runs, with everything needed for one invocation.
pub(super) struct Loaded {
    pub(super) grants: Arc<capabilities::Grants>,
    pub(super) pre: bindings::PluginPre<HostState>,
    pub(super) dir: PathBuf,
    pub(super) source: PluginOrigin,
    pub(super) sdk: semver::Version,
    pub(super) permits: Arc<Semaphore>,
    pub(super) memory_bytes: usize,
    pub(super) consecutive_failures: AtomicU32,
    pub(super) invocations: AtomicU64,
    pub(super) failures: AtomicU64,
    pub(super) dropped_events: AtomicU64,
    pub(super) last_error: Mutex<Option<String>>,
    pub(super) stamp: Stamp,
    pub(super) loaded_at: DateTime<Utc>,
    pub(super) queue: OnceLock<mpsc::Sender<Event>>,
    pub(super) lobby_fallback: LobbyFallback,
}

/// Modification times of a plugin's files, to notice changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stamp(Vec<(PathBuf, Option<SystemTime>)>);

impl Stamp {
    pub(super) fn of(paths: &[PathBuf]) -> Self {
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

    pub(super) fn changed(&self) -> bool {
        self.0
            .iter()
            .any(|(p, t)| std::fs::metadata(p).and_then(|m| m.modified()).ok() != *t)
    }
}

impl PluginHost {
    /// The plugin directories: every subdirectory of `plugins.dir` that has a
    /// `plugin.toml`, then `plugins.paths`, then the bundled plugins (which an
    /// installed plugin of the same name replaces).
    pub(super) fn plugin_dirs(&self) -> Vec<(PathBuf, PluginOrigin)> {
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

    pub(super) fn installed_dirs(&self) -> Vec<PathBuf> {
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
    pub async fn load_all(&self, deps: &PluginDeps) {
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
            let _ = self.load_dir(deps, &dir, source).await;
        }
        let names = self.names();
        if !names.is_empty() {
            tracing::info!(plugins = ?names, "plugins loaded");
        }
    }

    /// Whether `dir` is a bundled plugin that an installed one of the same name replaces.
    pub(super) fn shadowed(&self, dir: &Path, source: PluginOrigin) -> bool {
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
    pub(super) async fn load_dir(
        &self,
        deps: &PluginDeps,
        dir: &Path,
        source: PluginOrigin,
    ) -> Result<String, String> {
        let settings = self.config.clone();
        let cache = self.cache_dir.clone();
        let owned_dir = dir.to_path_buf();
        let now = deps.clock.now();
        let server_templates = deps.templates.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            load_plugin(
                &owned_dir,
                source,
                &settings,
                cache.as_deref(),
                &server_templates,
                now,
            )
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
    pub async fn reload(&self, deps: &PluginDeps, name: &str) -> Result<(), InvokeError> {
        let _one = self.reloading.lock().await;
        let (dir, source) = self
            .get(name)
            .map(|p| (p.dir.clone(), p.source))
            .ok_or_else(|| InvokeError::NotFound(name.into()))?;
        match self.load_dir(deps, &dir, source).await {
            Ok(_) => Ok(()),
            Err(reason) => Err(InvokeError::Failed {
                plugin: name.into(),
                reason,
            }),
        }
    }

    /// Reloads plugins whose files changed and loads new plugin directories; a
    /// plugin whose directory is gone is unloaded.
    pub async fn reload_changed(&self, deps: &PluginDeps) {
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
                let _ = self.load_dir(deps, dir, *source).await;
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
                let _ = self.load_dir(deps, &dir, source).await;
            }
        }
    }

    /// Watches plugin files and reloads what changed, until `shutdown`.
    pub async fn watch(deps: PluginDeps, shutdown: crate::shutdown::Shutdown) {
        let every = Duration::from_millis(u64::from(deps.plugins.config.watch_interval_ms));
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait() => return,
            }
            deps.plugins.reload_changed(&deps).await;
        }
    }
}

/// Reads, checks, compiles and links one plugin. On failure, the reason and the
/// files' stamp (so an unchanged broken plugin is not retried over and over).
/// `server_templates` are the server's, whose shared ones the plugin's own
/// templates are loaded on top of.
pub(super) fn load_plugin(
    dir: &Path,
    source: PluginOrigin,
    config: &PluginsConfig,
    cache: Option<&Path>,
    server_templates: &tera::Tera,
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
    let requested: BTreeSet<Capability> = manifest.requested().into_iter().collect();
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
            "plugins.settings.{}.grant: {bad:?} is not a capability ({})",
            manifest.name,
            Capability::ALL.map(Capability::as_str).join(", ")
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
    if !settings.http_hosts.is_empty() {
        if !manifest.http_operator_hosts() {
            return Err(fail(format!(
                "plugins.settings.{}.http_hosts: this plugin does not let the operator add hosts (its manifest has no permissions.http-client.operator-hosts)",
                manifest.name
            )));
        }
        if let Some(bad) = settings
            .http_hosts
            .iter()
            .find(|h| !confab_plugin_contract::manifest::valid_host_pattern(h))
        {
            return Err(fail(format!(
                "plugins.settings.{}.http_hosts: {bad:?} is not a host name or *.domain",
                manifest.name
            )));
        }
    }
    let templates =
        load_templates(dir, settings.templates_dir.as_deref(), server_templates).map_err(fail)?;
    let memory_mib = manifest.limits.memory_mib.min(config.max_memory_mib);
    let concurrency = manifest
        .limits
        .concurrency
        .min(config.max_concurrency)
        .max(1);
    let mut grants = capabilities::Grants::new(manifest.clone(), granted, values, templates);
    grants
        .http_hosts
        .extend(settings.http_hosts.iter().cloned());
    Ok(Loaded {
        grants: Arc::new(grants),
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
/// overrides from `override_dir`, on top of the server's shared templates
/// (`email/base.html` …, with the operator's overrides from `templates.dir`), so that
/// they can `{% extends "email/base.html" %}`; the plugin's names have no `/`, so
/// they never replace a shared one. `None` when the plugin has no templates.
pub(super) fn load_templates(
    dir: &Path,
    override_dir: Option<&str>,
    server_templates: &tera::Tera,
) -> Result<Option<tera::Tera>, String> {
    let mut tera = crate::templates::shared(server_templates)?;
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
