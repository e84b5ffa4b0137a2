//! What administrators see and switch: the list of plugins, their state, and
//! the web modules the pages load.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::PluginDeps;
use crate::policy::PolicyPatch;

use super::*;

/// A plugin directory that did not load, and why.
#[derive(Debug, Clone, Serialize)]
pub struct LoadProblem {
    pub dir: String,
    pub error: String,
    #[serde(skip)]
    pub(super) stamp: Option<Stamp>,
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
    /// The hosts `http-client` may call (the manifest's and the operator's), when
    /// it is granted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http_hosts: Vec<String>,
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

impl PluginHost {
    /// Every plugin and every problem, for the admin API and the CLI.
    pub async fn list(&self, deps: &PluginDeps) -> Result<PluginList, crate::store::StoreError> {
        let policy = deps.policy.get(&deps.store).await?;
        let auto: BTreeMap<String, String> = deps
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
                    requested: m.requested().iter().map(|c| c.to_string()).collect(),
                    granted: p.grants.granted.iter().map(|c| c.to_string()).collect(),
                    http_hosts: if p.grants.granted.contains(&Capability::HttpClient) {
                        p.grants.http_hosts.clone()
                    } else {
                        Vec::new()
                    },
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
        deps: &PluginDeps,
        name: &str,
    ) -> Result<Option<PluginInfo>, crate::store::StoreError> {
        Ok(self
            .list(deps)
            .await?
            .plugins
            .into_iter()
            .find(|p| p.name == name))
    }

    /// Switches a plugin on or off for the whole server (kept in the organization
    /// policy). Switching on also clears an automatic switch-off and its failures.
    pub async fn set_enabled(
        &self,
        deps: &PluginDeps,
        name: &str,
        enabled: bool,
    ) -> Result<(), crate::policy::PolicyError> {
        let current = deps.policy.get(&deps.store).await?;
        let mut disabled = current.disabled_plugins.clone();
        disabled.retain(|p| p != name);
        if !enabled {
            disabled.push(name.to_string());
        }
        deps.policy
            .update(
                &deps.store,
                PolicyPatch {
                    disabled_plugins: Some(disabled),
                    ..Default::default()
                },
                deps.clock.now(),
            )
            .await?;
        if enabled {
            deps.store.clear_plugin_auto_disabled(name).await?;
            if let Some(p) = self.get(name) {
                p.consecutive_failures.store(0, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Whether the plugin exists, loaded, and is switched on.
    pub(super) async fn enabled(
        &self,
        deps: &PluginDeps,
        name: &str,
    ) -> Result<Arc<Loaded>, InvokeError> {
        let plugin = self
            .get(name)
            .ok_or_else(|| InvokeError::NotFound(name.into()))?;
        let on = match deps.policy.get(&deps.store).await {
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

    /// The static directory of a plugin and its call-page module, for serving.
    pub fn static_dir(&self, name: &str) -> Option<PathBuf> {
        let plugin = self.get(name)?;
        let dir = plugin.grants.manifest.web.static_dir.as_ref()?;
        Some(plugin.dir.join(dir))
    }

    /// The call-page frames of plugins that are switched on and granted
    /// `web.call-page`.
    pub async fn call_page_modules(&self, deps: &PluginDeps) -> Vec<PageModule> {
        self.page_modules(deps, Capability::WebCallPage).await
    }

    /// The dashboard frames of plugins that are switched on and granted
    /// `web.dashboard`.
    pub async fn dashboard_modules(&self, deps: &PluginDeps) -> Vec<PageModule> {
        self.page_modules(deps, Capability::WebDashboard).await
    }

    /// The administrators' dashboard frames of plugins that are switched on and
    /// granted `web.admin`.
    pub async fn admin_modules(&self, deps: &PluginDeps) -> Vec<PageModule> {
        self.page_modules(deps, Capability::WebAdmin).await
    }

    /// What a frame of `kind` (`web.call-page`, `web.dashboard`, `web.admin`)
    /// loads for the plugin `name`: its module's URL, and whether the frame may
    /// ask for the full link (`web.link-secret`). None when the plugin is
    /// unknown, switched off, has no such module or was not granted it.
    pub async fn frame_module(
        &self,
        deps: &PluginDeps,
        name: &str,
        kind: Capability,
    ) -> Option<FrameModule> {
        let policy = deps.policy.get(&deps.store).await.ok()?;
        if !policy.plugin_enabled(name) {
            return None;
        }
        let plugin = self.get(name)?;
        let granted = &plugin.grants.granted;
        if !granted.contains(&kind) {
            return None;
        }
        let module = plugin.grants.manifest.web.module(kind)?;
        Some(FrameModule {
            url: format!("/p/{name}/static/{module}"),
            link_secret: granted.contains(&Capability::WebLinkSecret),
        })
    }

    pub(super) async fn page_modules(
        &self,
        deps: &PluginDeps,
        kind: Capability,
    ) -> Vec<PageModule> {
        let Ok(policy) = deps.policy.get(&deps.store).await else {
            return Vec::new();
        };
        self.read()
            .values()
            .filter(|p| policy.plugin_enabled(&p.grants.name))
            .filter(|p| p.grants.granted.contains(&kind))
            .filter_map(|p| {
                p.grants.manifest.web.module(kind)?;
                Some(PageModule {
                    plugin: p.grants.name.to_string(),
                    frame: frame_url(&p.grants.name, kind),
                    link_secret: p.grants.granted.contains(&Capability::WebLinkSecret),
                })
            })
            .collect()
    }
}

/// Where a plugin's frame of `kind` is served: `/plugin-frame/{name}/{call-page,
/// dashboard, admin}`.
pub fn frame_url(name: &str, kind: Capability) -> String {
    let kind = kind.as_str().trim_start_matches("web.");
    format!("/plugin-frame/{name}/{kind}")
}
