//! `plugin.toml`, read by the server's own parser with the server's checks (the
//! plugin contract, `confab-plugin-contract`): a manifest the server would refuse
//! fails the harness too, with the same message.

pub use confab_plugin_contract::manifest::{Capability, Manifest, host_allowed};

/// Whether the server calls the hook named `hook` (`http`, `events`,
/// `lobby-decision`, `call-messages`, `timers`).
pub(crate) fn wants(manifest: &Manifest, hook: &str) -> bool {
    manifest.hooks.iter().any(|h| h.as_str() == hook)
}

/// Whether the `events` hook covers the event named `kind` (`link-created` …).
pub(crate) fn wants_event(manifest: &Manifest, kind: &str) -> bool {
    manifest.events.is_empty() || manifest.events.iter().any(|e| e.as_str() == kind)
}
