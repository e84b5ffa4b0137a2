//! The plugin host's own cost, measured with a plugin that does nothing
//! (`core/benches/noop-plugin`, built here for wasm32-wasip2 and installed four times
//! under different names on a server with a fresh SQLite database):
//!
//! - `plugins/noop-hook`: one invocation of a hook that returns at once (a timer,
//!   through `PluginHost::fire_timer`): the plugin and policy lookup, a fresh store,
//!   instantiation from the plugin's `InstancePre`, the call, the bookkeeping;
//! - `plugins/event-to-4-plugins`: one event delivered to the four copies at once and
//!   awaited (`PluginHost::dispatch`).
//!
//! `cargo bench -p confab-core --bench plugins`; the figures and their targets are in
//! docs/BENCHMARKS.md. Under `cargo test --benches` each runs once, as a check.

#![allow(clippy::unwrap_used)] // a test that unwraps fails with the line

use std::path::{Path, PathBuf};

use confab_core::config::PluginsConfig;
use confab_core::plugins::{CallInfo, Event};
use confab_core::{App, AppState, Config};
use criterion::{Criterion, criterion_group, criterion_main};

/// Builds plugin crates as the plugin tests do: in their own target directory, with
/// none of this cargo run's settings.
#[path = "../tests/it/plugin_build.rs"]
mod plugin_build;

/// Copies of the no-op plugin installed; the event goes to all of them.
const COPIES: usize = 4;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/noop-plugin")
}

/// Installs the component as the plugin `name` in `plugins_dir`.
fn install(plugins_dir: &Path, wasm: &Path, name: &str) {
    let dir = plugins_dir.join(name);
    std::fs::create_dir_all(&dir).expect("plugin directory");
    let manifest = std::fs::read_to_string(fixture().join("plugin.toml"))
        .expect("plugin.toml")
        .replace("name = \"noop\"", &format!("name = \"{name}\""));
    std::fs::write(dir.join("plugin.toml"), manifest).expect("plugin.toml written");
    std::fs::copy(wasm, dir.join("plugin.wasm")).expect("component copied");
}

/// A server on a fresh SQLite database in `dir`, with the plugins of `dir/plugins`.
async fn build_app(dir: &Path) -> App {
    let config = Config {
        data_dir: dir.to_path_buf(),
        plugins: PluginsConfig {
            dir: dir.join("plugins").display().to_string(),
            // Only the copies measured here.
            bundled: false,
            watch: false,
            ..PluginsConfig::default()
        },
        ..Config::default()
    };
    App::build(config).await.expect("the app builds")
}

fn event() -> Event {
    Event::CallStarted(CallInfo {
        link: "bench".into(),
        id: "bench-call".into(),
        started_at: chrono::Utc::now(),
    })
}

/// Every copy loaded and switched on, and nothing failed so far.
async fn check(state: &AppState) {
    let list = state
        .plugins
        .list(state.plugin_deps())
        .await
        .expect("plugin list");
    assert!(list.problems.is_empty(), "{:?}", list.problems);
    assert_eq!(list.plugins.len(), COPIES);
    for plugin in &list.plugins {
        assert_eq!(plugin.status, "enabled", "{}", plugin.name);
        assert_eq!(
            plugin.failures, 0,
            "{}: {:?}",
            plugin.name, plugin.last_error
        );
    }
}

fn plugins(c: &mut Criterion) {
    let wasm = plugin_build::build_plugin(&fixture(), "noop_plugin.wasm");
    let dir = tempfile::tempdir().expect("temp dir");
    for n in 1..=COPIES {
        install(&dir.path().join("plugins"), &wasm, &format!("noop-{n}"));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let app = rt.block_on(build_app(dir.path()));
    let state = app.state().clone();
    rt.block_on(async {
        check(&state).await;
        state
            .plugins
            .fire_timer(state.plugin_deps(), "noop-1", "tick")
            .await
            .expect("the no-op timer runs");
    });

    let mut group = c.benchmark_group("plugins");
    group.bench_function("noop-hook", |b| {
        b.to_async(&rt).iter(|| async {
            state
                .plugins
                .fire_timer(state.plugin_deps(), "noop-1", "tick")
                .await
                .expect("the no-op timer runs")
        })
    });
    group.bench_function("event-to-4-plugins", |b| {
        b.to_async(&rt)
            .iter(|| state.plugins.dispatch(state.plugin_deps(), event()))
    });
    group.finish();

    rt.block_on(async {
        check(&state).await;
        let list = state
            .plugins
            .list(state.plugin_deps())
            .await
            .expect("plugin list");
        assert!(
            list.plugins.iter().all(|p| p.invocations > 0),
            "every copy heard the events"
        );
    });
}

criterion_group!(benches, plugins);
criterion_main!(benches);
