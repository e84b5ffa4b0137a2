//! `config`: the settings the operator gave the plugin, with the manifest's defaults.

use crate::plugins::bindings::confab::plugin::config::Host;
use crate::plugins::runtime::HostState;

impl Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.cx.config.get(&key).cloned())
    }
}
