//! `kv`: the plugin's own key-value store, in the server's database.

use std::sync::Arc;

use chrono::Duration;

use super::{Grants, unavailable};
use crate::clock::Clock;
use crate::plugins::bindings::confab::plugin::kv::Host;
use crate::plugins::bindings::confab::plugin::types::Error;
use crate::plugins::deps::PluginDeps;
use crate::plugins::manifest::Capability;
use crate::plugins::runtime::HostState;
use crate::store::{KvSetOutcome, Store};

pub use confab_plugin_contract::limits::{
    KV_MAX_KEY_BYTES as MAX_KEY_BYTES, KV_MAX_KEYS_AT_ONCE as MAX_KEYS_AT_ONCE,
    KV_MAX_KEYS_PER_PAGE as MAX_KEYS_PER_PAGE, KV_MAX_VALUE_BYTES as MAX_VALUE_BYTES,
};

fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(Error::Invalid(format!(
            "keys are 1 to {MAX_KEY_BYTES} bytes, this one is {}",
            key.len()
        )));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), Error> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(Error::LimitReached(format!(
            "values are at most {MAX_VALUE_BYTES} bytes, this one is {}",
            value.len()
        )));
    }
    Ok(())
}

fn check_count(count: usize) -> Result<(), Error> {
    if count > MAX_KEYS_AT_ONCE {
        return Err(Error::LimitReached(format!(
            "at most {MAX_KEYS_AT_ONCE} keys at once, not {count}"
        )));
    }
    Ok(())
}

/// The `kv` capability of one plugin: its own keys in the server's database.
pub(crate) struct KvHost {
    store: Store,
    clock: Arc<dyn Clock>,
    plugin: Arc<str>,
    /// The manifest's `kv.quota_bytes`.
    quota: i64,
}

impl KvHost {
    pub(super) fn new(grants: &Grants, deps: &PluginDeps) -> Self {
        Self {
            store: deps.store.clone(),
            clock: deps.clock.clone(),
            plugin: grants.name.clone(),
            quota: i64::try_from(grants.manifest.kv_quota()).unwrap_or(i64::MAX),
        }
    }

    fn quota_answer(&self, outcome: KvSetOutcome) -> Result<(), Error> {
        match outcome {
            KvSetOutcome::Stored => Ok(()),
            KvSetOutcome::OverQuota { used } => Err(Error::LimitReached(format!(
                "the plugin's storage quota of {} bytes is used up ({used} bytes in use)",
                self.quota
            ))),
        }
    }

    async fn get_many(&mut self, keys: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, Error> {
        check_count(keys.len())?;
        keys.iter().try_for_each(|k| check_key(k))?;
        let now = self.clock.now();
        let mut found = self
            .store
            .plugin_kv_get_many(&self.plugin, &keys, now)
            .await
            .map_err(unavailable)?;
        Ok(keys.iter().map(|k| found.remove(k)).collect())
    }

    async fn set_many(&mut self, entries: Vec<(String, Vec<u8>)>) -> Result<(), Error> {
        check_count(entries.len())?;
        let mut seen = std::collections::HashSet::with_capacity(entries.len());
        for (key, value) in &entries {
            check_key(key)?;
            check_value(value)?;
            if !seen.insert(key.as_str()) {
                return Err(Error::Invalid(format!("the key {key:?} is given twice")));
            }
        }
        let now = self.clock.now();
        let outcome = self
            .store
            .plugin_kv_set_many(&self.plugin, entries, None, self.quota, now)
            .await
            .map_err(unavailable)?;
        self.quota_answer(outcome)
    }

    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, Error> {
        check_key(&key)?;
        let now = self.clock.now();
        self.store
            .plugin_kv_get(&self.plugin, &key, now)
            .await
            .map_err(unavailable)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_seconds: Option<u32>,
    ) -> Result<(), Error> {
        check_key(&key)?;
        check_value(&value)?;
        if ttl_seconds == Some(0) {
            return Err(Error::Invalid("ttl-seconds must be at least 1".into()));
        }
        let now = self.clock.now();
        let expires_at = ttl_seconds.map(|s| now + Duration::seconds(i64::from(s)));
        let outcome = self
            .store
            .plugin_kv_set(&self.plugin, &key, value, expires_at, self.quota, now)
            .await
            .map_err(unavailable)?;
        self.quota_answer(outcome)
    }

    async fn delete(&mut self, key: String) -> Result<(), Error> {
        check_key(&key)?;
        self.store
            .plugin_kv_delete(&self.plugin, &key)
            .await
            .map_err(unavailable)
    }

    async fn keys(
        &mut self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, Error> {
        if !(1..=MAX_KEYS_PER_PAGE).contains(&limit) {
            return Err(Error::Invalid(format!(
                "limit must be 1 to {MAX_KEYS_PER_PAGE}"
            )));
        }
        let now = self.clock.now();
        self.store
            .plugin_kv_keys(
                &self.plugin,
                &prefix,
                after.as_deref(),
                u64::from(limit),
                now,
            )
            .await
            .map_err(unavailable)
    }
}

impl HostState {
    fn kv(&mut self) -> Result<&mut KvHost, Error> {
        self.granted(Capability::Kv, |c| c.kv.as_mut())
    }
}

impl Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(async { self.kv()?.get(key).await }.await)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_seconds: Option<u32>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(async { self.kv()?.set(key, value, ttl_seconds).await }.await)
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), Error>> {
        Ok(async { self.kv()?.delete(key).await }.await)
    }

    async fn keys(
        &mut self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        Ok(async { self.kv()?.keys(prefix, after, limit).await }.await)
    }

    async fn get_many(
        &mut self,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Option<Vec<u8>>>, Error>> {
        Ok(async { self.kv()?.get_many(keys).await }.await)
    }

    async fn set_many(
        &mut self,
        entries: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(async { self.kv()?.set_many(entries).await }.await)
    }
}
