//! `kv`: the plugin's own key-value store, in the server's database.

use chrono::Duration;

use super::unavailable;
use crate::plugins::bindings::confab::plugin::kv::Host;
use crate::plugins::bindings::confab::plugin::types::Error;
use crate::plugins::manifest::Capability;
use crate::plugins::runtime::HostState;
use crate::store::KvSetOutcome;

pub const MAX_KEY_BYTES: usize = 256;
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
pub const MAX_KEYS_PER_PAGE: u32 = 1000;

fn check_key(key: &str) -> Result<(), Error> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(Error::Invalid(format!(
            "keys are 1 to {MAX_KEY_BYTES} bytes, this one is {}",
            key.len()
        )));
    }
    Ok(())
}

impl HostState {
    async fn kv_get(&mut self, key: String) -> Result<Option<Vec<u8>>, Error> {
        self.cx.check(Capability::Kv)?;
        check_key(&key)?;
        let now = self.app.clock.now();
        self.app
            .store
            .plugin_kv_get(&self.cx.name, &key, now)
            .await
            .map_err(unavailable)
    }

    async fn kv_set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_seconds: Option<u32>,
    ) -> Result<(), Error> {
        self.cx.check(Capability::Kv)?;
        check_key(&key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(Error::LimitReached(format!(
                "values are at most {MAX_VALUE_BYTES} bytes, this one is {}",
                value.len()
            )));
        }
        if ttl_seconds == Some(0) {
            return Err(Error::Invalid("ttl-seconds must be at least 1".into()));
        }
        let quota = self
            .cx
            .manifest
            .permissions
            .kv
            .as_ref()
            .map_or(0, |kv| kv.quota_bytes) as i64;
        let now = self.app.clock.now();
        let expires_at = ttl_seconds.map(|s| now + Duration::seconds(i64::from(s)));
        match self
            .app
            .store
            .plugin_kv_set(&self.cx.name, &key, value, expires_at, quota, now)
            .await
            .map_err(unavailable)?
        {
            KvSetOutcome::Stored => Ok(()),
            KvSetOutcome::OverQuota { used } => Err(Error::LimitReached(format!(
                "the plugin's storage quota of {quota} bytes is used up ({used} bytes in use)"
            ))),
        }
    }

    async fn kv_delete(&mut self, key: String) -> Result<(), Error> {
        self.cx.check(Capability::Kv)?;
        check_key(&key)?;
        self.app
            .store
            .plugin_kv_delete(&self.cx.name, &key)
            .await
            .map_err(unavailable)
    }

    async fn kv_keys(
        &mut self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> Result<Vec<String>, Error> {
        self.cx.check(Capability::Kv)?;
        if !(1..=MAX_KEYS_PER_PAGE).contains(&limit) {
            return Err(Error::Invalid(format!(
                "limit must be 1 to {MAX_KEYS_PER_PAGE}"
            )));
        }
        let now = self.app.clock.now();
        self.app
            .store
            .plugin_kv_keys(
                &self.cx.name,
                &prefix,
                after.as_deref(),
                u64::from(limit),
                now,
            )
            .await
            .map_err(unavailable)
    }
}

impl Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<Vec<u8>>, Error>> {
        Ok(self.kv_get(key).await)
    }

    async fn set(
        &mut self,
        key: String,
        value: Vec<u8>,
        ttl_seconds: Option<u32>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.kv_set(key, value, ttl_seconds).await)
    }

    async fn delete(&mut self, key: String) -> wasmtime::Result<Result<(), Error>> {
        Ok(self.kv_delete(key).await)
    }

    async fn keys(
        &mut self,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<String>, Error>> {
        Ok(self.kv_keys(prefix, after, limit).await)
    }
}
