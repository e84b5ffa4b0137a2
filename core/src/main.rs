//! The `confab` command: run the server and script it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use confab_core::config::LogFormat;
use confab_core::store::Store;
use confab_core::{App, Clock, Config, SystemClock, privacy};
use serde::Serialize;

// One module per command group, in core/src/cli/.
mod cli;

use cli::*;

#[derive(Parser)]
#[command(
    name = "confab",
    version,
    about = "Self-hosted call links: run the server and script it"
)]
struct Cli {
    /// Configuration file (TOML). Every key can also be set with CONFAB_* variables.
    #[arg(long, global = true, env = "CONFAB_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: CliCommand,
}

#[derive(Subcommand)]
enum CliCommand {
    /// Run the server (applies pending migrations first).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage user accounts.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage call links.
    #[command(subcommand)]
    Link(LinkCommand),
    /// Show or change the organization policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Call-metadata retention.
    #[command(subcommand)]
    Privacy(PrivacyCommand),
    /// Plugins: list, inspect, switch on and off, reload, start a new one.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// The mail outbox.
    #[command(subcommand)]
    Mail(MailCommand),
    /// The nodes of a cluster (`cluster.nats_url` set).
    #[command(subcommand)]
    Node(NodeCommand),
}

#[derive(Args, Clone, Copy)]
struct Output {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    let serving = matches!(cli.command, CliCommand::Serve);
    init_tracing(&config, serving);
    if serving {
        return serve(config).await;
    }
    if let CliCommand::Plugin(PluginCommand::New {
        name,
        dir,
        sdk_path,
    }) = &cli.command
    {
        return new_plugin(name, dir.clone(), sdk_path.clone());
    }
    let store = Store::connect(&config.database_url(), 2).await?;
    store.migrate().await?;
    // What this command changes, for the nodes of a cluster (they cache links and
    // the policy, and keep sign-ins open).
    let mut made_here = store.changes_made_here();
    let clock = SystemClock;
    let public_url = config.public_url();
    let result = match cli.command {
        CliCommand::Serve => unreachable!("handled above"),
        CliCommand::Migrate => {
            println!("Database is up to date ({}).", store.backend_name());
            Ok(())
        }
        CliCommand::User(cmd) => user_command(&store, &clock, cmd).await,
        CliCommand::Token(cmd) => token_command(&store, &clock, cmd).await,
        CliCommand::Link(cmd) => link_command(&store, &clock, &public_url, cmd).await,
        CliCommand::Policy(cmd) => policy_command(&store, &clock, cmd).await,
        CliCommand::Node(cmd) => node_command(&store, &clock, cmd).await,
        CliCommand::Plugin(cmd) => plugin_command(config.clone(), store.clone(), cmd).await,
        CliCommand::Mail(MailCommand::Status { out }) => {
            let status = confab_core::mail::status(&store, &config)
                .await
                .map_err(anyhow::Error::msg)?;
            print(out, &status, || mail_status_text(&status))
        }
        CliCommand::Privacy(PrivacyCommand::Purge { out }) => {
            let mut report =
                privacy::purge(&store, clock.now(), config.privacy.retention_days).await?;
            if config.mail.smtp_host.is_empty() {
                report.outbox_files = privacy::purge_outbox_files(
                    config.outbox_dir(),
                    clock.now(),
                    config.privacy.retention_days,
                )
                .await?;
            }
            print(out, &report, || {
                format!(
                    "Purged {} call-metadata records, {} mail delivery records and {} outbox files older than {} days, {} expired sessions and {} expired plugin entries.",
                    report.call_events,
                    report.mail,
                    report.outbox_files,
                    config.privacy.retention_days,
                    report.sessions,
                    report.plugin_kv
                )
            })
        }
    };
    let mut changes = Vec::new();
    loop {
        match made_here.try_recv() {
            Ok(change) => changes.push(change),
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => {
                changes.push(confab_core::store::SharedChange::Resync);
            }
            Err(_) => break,
        }
    }
    if config.clustered()
        && let Err(err) = confab_core::cluster::announce(&config, changes).await
    {
        eprintln!(
            "warning: the change is saved, but the other nodes were not told ({err}); they see it within {} s",
            confab_core::cluster::CONNECTED_CACHE_TTL.as_secs()
        );
    }
    store.close().await;
    result
}

fn init_tracing(config: &Config, serving: bool) {
    let default = if serving {
        config.log.level.as_str()
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONFAB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.log.format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let mut app = App::build(config).await?;
    let addr = app.state().config.server.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    app.start_media()?;
    let state = app.state().clone();
    let media = state.media.as_ref();
    println!(
        "Confab is running at {}/ (ready in {} ms; media on UDP {} and TCP {})",
        state.public_url(),
        started.elapsed().as_millis(),
        media
            .and_then(|m| m.udp_addr())
            .map_or("off".into(), |a| a.to_string()),
        media
            .and_then(|m| m.tcp_addr())
            .map_or("off".into(), |a| a.to_string()),
    );
    if state.store.count_admins().await? == 0 {
        println!(
            "No administrator yet. Create the first one with:\n  confab user create --admin --email you@example.org --name \"Your Name\"\n(from a source checkout: cargo run --release -- user create --admin …)"
        );
    }
    app.serve_on(listener, confab_core::shutdown_signal())
        .await?;
    println!("Confab stopped.");
    Ok(())
}

fn print<T: Serialize>(
    out: Output,
    value: &T,
    text: impl FnOnce() -> String,
) -> anyhow::Result<()> {
    if out.json {
        println!("{}", serde_json::to_string_pretty(value)?);
    } else {
        println!("{}", text());
    }
    Ok(())
}
