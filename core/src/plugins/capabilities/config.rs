//! `config`: the settings the operator gave the plugin, with the manifest's defaults,
//! and the server's public URL.

use crate::plugins::bindings::confab::plugin::config::Host;
use crate::plugins::runtime::HostState;

impl Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.grants.config.get(&key).cloned())
    }

    async fn public_url(&mut self) -> wasmtime::Result<String> {
        Ok(self.public_url.trim_end_matches('/').to_string())
    }
}
