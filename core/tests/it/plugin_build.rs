//! Builds plugin crates for wasm32-wasip2: for these tests, and for the plugin
//! benchmarks (`core/benches/plugins.rs` includes this file).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds a plugin crate for wasm32-wasip2 (once per test run) and returns its component.
pub fn build_plugin(crate_dir: &Path, artifact: &str) -> PathBuf {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // Its own target directory: the test run's cargo holds the workspace's.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugin-builds");
    let out = target.join(format!("wasm32-wasip2/release/{artifact}"));
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"));
    // The example plugins pin their dependencies; a fresh scaffold resolves them.
    if crate_dir.join("Cargo.lock").is_file() {
        cmd.arg("--locked");
    }
    // Nothing of the test run's own cargo settings applies to the plugin's build.
    for (key, _) in std::env::vars() {
        let inherited = key.starts_with("CARGO_") && key != "CARGO_HOME";
        if inherited || key.starts_with("RUSTC_") || key == "RUSTFLAGS" {
            cmd.env_remove(key);
        }
    }
    cmd.env("CARGO_TARGET_DIR", &target);
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "building {} failed", crate_dir.display());
    assert!(out.is_file(), "{} was not built", out.display());
    out
}
