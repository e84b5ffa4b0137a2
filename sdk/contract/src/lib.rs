//! The contract between Confab and its plugins, written once: what `plugin.toml`
//! may say ([`manifest`]), the capabilities and their names ([`Capability`]), the
//! limits each capability applies ([`limits`]), the recurrence rules a schedule
//! may carry ([`rrule`]) and the version of `confab:plugin` the server implements
//! ([`SDK_VERSION`]).
//!
//! The server (`confab-core`) enforces it; the plugin test harness
//! (`confab-plugin-test`) applies the same checks, so a plugin that passes its
//! tests is not refused by the server for a reason the tests did not see; the
//! calendar plugin checks rules with [`rrule::check`] before it sends them.

pub mod http;
pub mod limits;
pub mod mail;
pub mod manifest;
pub mod rrule;

pub use manifest::{Capability, Manifest, ManifestError, host_allowed};

/// The version of `confab:plugin` the server implements (and the SDK crate's).
pub const SDK_VERSION: semver::Version = semver::Version::new(1, 3, 0);

/// Whether `name` may name a plugin: 1–64 of `a-z`, `0-9` and `-` (it is the
/// plugin's URL prefix, `/p/{name}/`).
pub fn valid_plugin_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}
