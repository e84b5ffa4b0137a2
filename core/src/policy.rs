//! Organization policy: the instance-wide restrictions an administrator sets
//! (like the restrictions of managed devices). Turning a feature off makes it
//! answer with a clear message, never an error page.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::{Store, StoreError, org_policy};
use crate::validate::Invalid;

/// How long a node trusts its cached copy of the policy. Changes made through this
/// node apply at once; changes made through another node within this time.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

/// The current restrictions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct OrgPolicy {
    /// Whether people without an account may open links and ask to join.
    pub guest_access: bool,
    /// Whether members (not only admins) may create links.
    pub member_link_creation: bool,
    /// Plugins turned off for the whole instance.
    pub disabled_plugins: Vec<String>,
}

impl Default for OrgPolicy {
    fn default() -> Self {
        Self {
            guest_access: true,
            member_link_creation: true,
            disabled_plugins: Vec::new(),
        }
    }
}

/// Changes to the policy; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyPatch {
    pub guest_access: Option<bool>,
    pub member_link_creation: Option<bool>,
    /// The complete list of disabled plugins (replaces the current one).
    pub disabled_plugins: Option<Vec<String>>,
}

impl OrgPolicy {
    fn from_row(row: org_policy::Model) -> Self {
        Self {
            guest_access: row.guest_access,
            member_link_creation: row.member_link_creation,
            disabled_plugins: serde_json::from_str(&row.disabled_plugins).unwrap_or_default(),
        }
    }

    /// Whether the plugin called `name` may run.
    pub fn plugin_enabled(&self, name: &str) -> bool {
        !self.disabled_plugins.iter().any(|p| p == name)
    }
}

/// Plugin names: 1–64 of `a-z`, `0-9` and `-`.
pub use confab_plugin_contract::valid_plugin_name;

/// Reads the policy through a short-lived cache (5 s, or longer on a
/// node of a cluster that hears of every change: [`PolicyCache::set_ttl`]).
#[derive(Debug)]
pub struct PolicyCache {
    cached: RwLock<Option<(OrgPolicy, Instant)>>,
    ttl_ms: AtomicU64,
    /// Bumped by every [`PolicyCache::forget`]: a row read before a change must
    /// not be cached after it.
    generation: AtomicU64,
}

impl Default for PolicyCache {
    fn default() -> Self {
        Self {
            cached: RwLock::default(),
            ttl_ms: AtomicU64::new(u64::try_from(CACHE_TTL.as_millis()).unwrap_or(u64::MAX)),
            generation: AtomicU64::new(0),
        }
    }
}

impl PolicyCache {
    /// Changes how long the policy stays cached, and forgets it.
    pub fn set_ttl(&self, ttl: Duration) {
        self.ttl_ms.store(
            u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.forget();
    }

    /// Forgets the cached policy (another node changed it).
    pub fn forget(&self) {
        let mut cached = self.cached.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        *cached = None;
    }

    pub async fn get(&self, store: &Store) -> Result<OrgPolicy, StoreError> {
        let ttl = Duration::from_millis(self.ttl_ms.load(Ordering::Relaxed));
        if let Some((policy, at)) = &*self.cached.read().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < ttl
        {
            return Ok(policy.clone());
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let policy = OrgPolicy::from_row(store.org_policy().await?);
        let mut cached = self.cached.write().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::SeqCst) == generation {
            *cached = Some((policy.clone(), Instant::now()));
        }
        Ok(policy)
    }

    /// Applies `patch` and stores the result.
    pub async fn update(
        &self,
        store: &Store,
        patch: PolicyPatch,
        now: DateTime<Utc>,
    ) -> Result<OrgPolicy, PolicyError> {
        if let Some(plugins) = &patch.disabled_plugins {
            if let Some(bad) = plugins.iter().find(|p| !valid_plugin_name(p)) {
                return Err(Invalid::new(
                    "disabled_plugins",
                    format!("{bad:?} is not a plugin name (a-z, 0-9, -)"),
                )
                .into());
            }
            if plugins.len() > 256 {
                return Err(Invalid::new("disabled_plugins", "at most 256 entries").into());
            }
        }
        let current = OrgPolicy::from_row(store.org_policy().await?);
        let mut disabled = patch.disabled_plugins.unwrap_or(current.disabled_plugins);
        disabled.sort();
        disabled.dedup();
        let row = store
            .save_org_policy(
                patch.guest_access.unwrap_or(current.guest_access),
                patch
                    .member_link_creation
                    .unwrap_or(current.member_link_creation),
                serde_json::to_string(&disabled).unwrap_or_else(|_| "[]".into()),
                now,
            )
            .await?;
        let policy = OrgPolicy::from_row(row);
        *self.cached.write().unwrap_or_else(|e| e.into_inner()) =
            Some((policy.clone(), Instant::now()));
        Ok(policy)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Store(#[from] StoreError),
}
