//! `confab plugin`: new plugins, and the installed ones.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use confab_core::store::Store;
use confab_core::{App, Config, SystemClock};

use crate::*;

#[derive(Subcommand)]
pub(crate) enum PluginCommand {
    /// List the plugins, and plugin directories that did not load (with the reason).
    List {
        #[command(flatten)]
        out: Output,
    },
    /// Everything about one plugin: manifest, grants, settings, limits, counters.
    Inspect {
        name: String,
        #[command(flatten)]
        out: Output,
    },
    /// Switch a plugin on (also after the server switched it off for failing).
    Enable {
        name: String,
        #[command(flatten)]
        out: Output,
    },
    /// Switch a plugin off for the whole server.
    Disable {
        name: String,
        #[command(flatten)]
        out: Output,
    },
    /// Check a plugin's files and have the running server load them again.
    Reload {
        name: String,
        #[command(flatten)]
        out: Output,
    },
    /// Write a new plugin crate that builds and loads as it is.
    New {
        /// The plugin's name (a-z, 0-9, -).
        name: String,
        /// Where to create it (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Use the SDK from this directory instead of crates.io (a Confab checkout's `sdk/`).
        #[arg(long)]
        sdk_path: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum Switch {
    On,
    Off,
}

pub(crate) fn new_plugin(
    name: &str,
    dir: Option<PathBuf>,
    sdk_path: Option<PathBuf>,
) -> anyhow::Result<()> {
    use confab_core::plugins::scaffold::{SdkSource, scaffold};
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    // Inside a Confab checkout, the SDK next door; otherwise the published crate.
    let checkout_sdk = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk");
    let sdk = match sdk_path {
        Some(path) => SdkSource::Path(
            std::fs::canonicalize(&path)
                .with_context(|| format!("--sdk-path {}", path.display()))?,
        ),
        None if checkout_sdk.join("Cargo.toml").is_file() => {
            SdkSource::Path(std::fs::canonicalize(&checkout_sdk)?)
        }
        None => SdkSource::Registry,
    };
    let files = scaffold(name, &dir, &sdk).map_err(anyhow::Error::msg)?;
    println!("Created the plugin {name} in {}:", dir.display());
    for file in files {
        println!("  {}", file.display());
    }
    println!(
        "Build it with:\n  cd {} && cargo build --release --target wasm32-wasip2\nthen add its directory to plugins.paths and grant it what plugin.toml asks for (see the SDK's README).",
        dir.display()
    );
    Ok(())
}

pub(crate) fn plugin_text(p: &confab_core::plugins::PluginInfo) -> String {
    let mut text = format!(
        "{} {} ({}, {}): {}\n  sdk {}, hooks: {}\n  requested: {}\n  granted:   {}\n  limits: {} MiB, {} ms per call, {} at a time\n  calls: {} ({} failed)",
        p.name,
        p.version,
        p.status,
        p.source,
        if p.description.is_empty() {
            "-"
        } else {
            &p.description
        },
        p.sdk,
        p.hooks.join(", "),
        if p.requested.is_empty() {
            "-".into()
        } else {
            p.requested.join(", ")
        },
        if p.granted.is_empty() {
            "-".into()
        } else {
            p.granted.join(", ")
        },
        p.limits.memory_mib,
        p.limits.deadline_ms,
        p.limits.concurrency,
        p.invocations,
        p.failures,
    );
    if !p.http_hosts.is_empty() {
        text.push_str(&format!(
            "\n  http-client hosts: {}",
            p.http_hosts.join(", ")
        ));
    }
    if let Some(reason) = &p.disabled_reason {
        text.push_str(&format!("\n  switched off: {reason}"));
    }
    text
}

pub(crate) async fn plugin_command(
    config: Config,
    store: Store,
    cmd: PluginCommand,
) -> anyhow::Result<()> {
    let app = App::with_store(config, store, std::sync::Arc::new(SystemClock))?;
    app.load_plugins().await;
    let state = app.state();
    let find = |info: Option<confab_core::plugins::PluginInfo>, name: &str| {
        info.ok_or_else(|| {
            anyhow::anyhow!("there is no plugin called {name:?} (see confab plugin list)")
        })
    };
    match cmd {
        PluginCommand::New { .. } => unreachable!("handled before connecting"),
        PluginCommand::List { out } => {
            let list = state.plugins.list(state.plugin_deps()).await?;
            print(out, &list, || {
                let mut lines: Vec<String> = list
                    .plugins
                    .iter()
                    .map(|p| {
                        format!(
                            "{:<20} {:<10} {:<14} {}",
                            p.name, p.version, p.status, p.description
                        )
                    })
                    .collect();
                if lines.is_empty() {
                    lines.push("No plugins loaded.".into());
                }
                for problem in &list.problems {
                    lines.push(format!("not loaded: {}: {}", problem.dir, problem.error));
                }
                lines.join("\n")
            })
        }
        PluginCommand::Inspect { name, out } => {
            let info = find(state.plugins.info(state.plugin_deps(), &name).await?, &name)?;
            print(out, &info, || plugin_text(&info))
        }
        PluginCommand::Enable { name, out } => switch_plugin(state, &name, true, out).await,
        PluginCommand::Disable { name, out } => switch_plugin(state, &name, false, out).await,
        PluginCommand::Reload { name, out } => {
            state
                .plugins
                .reload(state.plugin_deps(), &name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let info = find(state.plugins.info(state.plugin_deps(), &name).await?, &name)?;
            // A running server with plugins.watch reloads it when plugin.toml changes.
            let manifest = std::path::Path::new(&info.dir).join("plugin.toml");
            if let Ok(file) = std::fs::File::options().write(true).open(&manifest) {
                let _ = file.set_modified(std::time::SystemTime::now());
            }
            print(out, &info, || {
                format!(
                    "{} {} loads cleanly. A running server with plugins.watch on picks it up within seconds; otherwise POST /api/v1/admin/plugins/{}/reload.",
                    info.name, info.version, info.name
                )
            })
        }
    }
}

pub(crate) async fn switch_plugin(
    state: &confab_core::AppState,
    name: &str,
    enabled: bool,
    out: Output,
) -> anyhow::Result<()> {
    if state
        .plugins
        .info(state.plugin_deps(), name)
        .await?
        .is_none()
    {
        anyhow::bail!("there is no plugin called {name:?} (see confab plugin list)");
    }
    state
        .plugins
        .set_enabled(state.plugin_deps(), name, enabled)
        .await?;
    let info = state
        .plugins
        .info(state.plugin_deps(), name)
        .await?
        .context("the plugin disappeared")?;
    print(out, &info, || {
        format!(
            "{name} is switched {} (a running server notices within seconds).",
            if enabled { "on" } else { "off" }
        )
    })
}
