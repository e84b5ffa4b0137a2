//! The `confab` command: run the server and script it.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use confab_core::accounts::{self, Account, NewUser, Role, TokenInfo};
use confab_core::config::LogFormat;
use confab_core::links::{self, LinkView, LinkWithSecret, NewLink, ScheduleInput};
use confab_core::policy::{PolicyCache, PolicyPatch};
use confab_core::secret::{Secret, random_base62};
use confab_core::store::{LinkFilter, Store};
use confab_core::{App, Clock, Config, SystemClock, privacy};
use serde::Serialize;

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
}

#[derive(Subcommand)]
enum MailCommand {
    /// Where mail goes, how many messages are queued, sent and failed, and the
    /// latest failures with the relay's reply.
    Status {
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
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

#[derive(Args, Clone, Copy)]
struct Output {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user. Without --password-stdin a random password is generated and printed once.
    Create {
        #[arg(long)]
        email: String,
        /// Display name, 1–64 characters.
        #[arg(long)]
        name: String,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        #[command(flatten)]
        out: Output,
    },
    /// List users.
    List {
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create an API token for a user; the token is printed once.
    Create {
        /// The user's email address.
        #[arg(long)]
        user: String,
        /// What the token is for.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        out: Output,
    },
    /// List a user's tokens.
    List {
        #[arg(long)]
        user: String,
        #[command(flatten)]
        out: Output,
    },
    /// Revoke a token by its id.
    Revoke {
        #[arg(long)]
        user: String,
        id: i64,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Subcommand)]
enum LinkCommand {
    /// Create a link owned by a user; prints the full link with its secret, once.
    Create {
        /// The owner's email address.
        #[arg(long)]
        owner: String,
        #[arg(long)]
        title: String,
        #[arg(long)]
        description: Option<String>,
        /// Scheduled start (RFC 3339, e.g. 2026-12-01T10:00:00+01:00).
        #[arg(long, requires = "end")]
        start: Option<String>,
        /// Scheduled end (RFC 3339).
        #[arg(long, requires = "start")]
        end: Option<String>,
        /// IANA time zone of the schedule (default UTC).
        #[arg(long, requires = "start")]
        time_zone: Option<String>,
        /// Recurrence rule, e.g. FREQ=WEEKLY;BYDAY=MO.
        #[arg(long, requires = "start")]
        rrule: Option<String>,
        /// Let guests in without approval.
        #[arg(long)]
        no_approval: bool,
        /// Make signed-in members (other than the owner) wait in the lobby too.
        #[arg(long)]
        members_need_approval: bool,
        /// 1–32 (default 32).
        #[arg(long)]
        max_participants: Option<i32>,
        #[command(flatten)]
        out: Output,
    },
    /// List a user's links, newest first.
    List {
        #[arg(long)]
        owner: String,
        #[arg(long, value_enum, default_value_t = StatusArg::Active)]
        status: StatusArg,
        /// How many to show.
        #[arg(long, default_value_t = 100)]
        limit: u64,
        #[command(flatten)]
        out: Output,
    },
    /// Show a link.
    Show {
        id: String,
        #[command(flatten)]
        out: Output,
    },
    /// Revoke a link: it stops working for good.
    Revoke {
        id: String,
        #[command(flatten)]
        out: Output,
    },
    /// Give a link a new id and a new secret, printed once; the old link stops working.
    Rotate {
        id: String,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum StatusArg {
    Active,
    Revoked,
    All,
}

#[derive(Clone, Copy, ValueEnum)]
enum Switch {
    On,
    Off,
}

#[derive(Subcommand)]
enum PolicyCommand {
    Show {
        #[command(flatten)]
        out: Output,
    },
    Set {
        #[arg(long, value_enum)]
        guest_access: Option<Switch>,
        #[arg(long, value_enum)]
        member_link_creation: Option<Switch>,
        /// Turn a plugin off instance-wide (repeatable).
        #[arg(long)]
        disable_plugin: Vec<String>,
        /// Turn a plugin back on (repeatable).
        #[arg(long)]
        enable_plugin: Vec<String>,
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Subcommand)]
enum PrivacyCommand {
    /// Delete call metadata and mail delivery records older than the retention
    /// period, expired sessions and plugins' expired key-value entries.
    Purge {
        #[command(flatten)]
        out: Output,
    },
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
    store.close().await;
    result
}

fn mail_status_text(status: &confab_core::mail::MailStatus) -> String {
    let mut text = format!(
        "Mail goes to {} from {}.\nQueued: {}  Sent: {}  Failed: {}",
        status.transport, status.from, status.queued, status.sent, status.failed
    );
    if status.retrying > 0 {
        text.push_str(&format!(
            "\nWaiting to retry after a failed attempt: {}",
            status.retrying
        ));
    }
    if let Some(oldest) = status.oldest_queued_at {
        text.push_str(&format!("\nOldest queued message: {}", oldest.to_rfc3339()));
    }
    if !status.recent_failures.is_empty() {
        text.push_str("\nLatest failures:");
        for f in &status.recent_failures {
            text.push_str(&format!(
                "\n  #{} {} after {} attempt(s), queued {}: {}",
                f.id,
                f.plugin.as_deref().unwrap_or("server"),
                f.attempts,
                f.queued_at.to_rfc3339(),
                f.error.as_deref().unwrap_or("no reason recorded")
            ));
        }
    }
    text
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

async fn user_by_email(store: &Store, email: &str) -> anyhow::Result<Account> {
    let email = email.trim().to_lowercase();
    match store.user_by_email(&email).await? {
        Some(user) => Ok(user.into()),
        None => bail!("no user with email address {email}"),
    }
}

/// A user as the CLI prints it, with the password it generated (once).
#[derive(Serialize)]
struct UserOut {
    #[serde(flatten)]
    account: Account,
    #[serde(skip_serializing_if = "Option::is_none")]
    generated_password: Option<String>,
}

async fn user_command(store: &Store, clock: &dyn Clock, cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Create {
            email,
            name,
            admin,
            password_stdin,
            out,
        } => {
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("cannot read the password from standard input")?;
                let line = line.trim_end_matches(['\r', '\n']).to_string();
                if line.is_empty() {
                    bail!("--password-stdin: standard input had no password");
                }
                (line, None)
            } else {
                let p = random_base62(20);
                (p.clone(), Some(p))
            };
            let role = if admin { Role::Admin } else { Role::Member };
            let account = accounts::create_user(
                store,
                NewUser {
                    email,
                    display_name: name,
                    password: Secret::new(password),
                    role,
                },
                clock.now(),
            )
            .await?;
            let user = UserOut {
                account,
                generated_password: generated,
            };
            print(out, &user, || {
                let a = &user.account;
                let mut text = format!(
                    "Created {} {} <{}> (id {}).",
                    a.role.as_str(),
                    a.display_name,
                    a.email,
                    a.id
                );
                if let Some(p) = &user.generated_password {
                    text.push_str(&format!("\nPassword (shown once): {p}"));
                }
                text
            })
        }
        UserCommand::List { out } => {
            let mut users: Vec<Account> = Vec::new();
            let mut after = None;
            loop {
                let page = store.list_users(after, 500).await?;
                after = page.last().map(|u| u.id);
                let done = page.len() < 500;
                users.extend(page.into_iter().map(Account::from));
                if done {
                    break;
                }
            }
            print(out, &users, || {
                if users.is_empty() {
                    return "No users yet. Create one with: confab user create --admin --email … --name …".into();
                }
                users
                    .iter()
                    .map(|u| {
                        format!(
                            "{:>5}  {:<7} {:<32} {}",
                            u.id,
                            u.role.as_str(),
                            u.email,
                            u.display_name
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
    }
}

/// A token as the CLI prints it, with its secret only when just created.
#[derive(Serialize)]
struct TokenOut {
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(flatten)]
    info: TokenInfo,
}

async fn token_command(store: &Store, clock: &dyn Clock, cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create { user, name, out } => {
            let account = user_by_email(store, &user).await?;
            let issued = accounts::issue_token(store, account.id, &name, clock.now()).await?;
            let token = TokenOut {
                token: Some(issued.secret.expose().to_string()),
                info: issued.record.into(),
            };
            print(out, &token, || {
                format!(
                    "{}\nToken {} (id {}) for {}. It is shown only this once; use it as: Authorization: Bearer <token>",
                    issued.secret.expose(),
                    token.info.name,
                    token.info.id,
                    account.email
                )
            })
        }
        TokenCommand::List { user, out } => {
            let account = user_by_email(store, &user).await?;
            let tokens: Vec<TokenInfo> = store
                .tokens_of(account.id)
                .await?
                .into_iter()
                .map(Into::into)
                .collect();
            print(out, &tokens, || {
                tokens
                    .iter()
                    .map(|t| {
                        let state = match (&t.revoked_at, &t.last_used_at) {
                            (Some(_), _) => "revoked".to_string(),
                            (None, Some(at)) => format!("last used {at}"),
                            (None, None) => "never used".to_string(),
                        };
                        format!("{:>5}  {}…  {:<24} {}", t.id, t.prefix, t.name, state)
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        TokenCommand::Revoke { user, id, out } => {
            let account = user_by_email(store, &user).await?;
            let Some(token) = store.revoke_token(account.id, id, clock.now()).await? else {
                bail!("{} has no token with id {id}", account.email);
            };
            let token = TokenInfo::from(token);
            print(out, &token, || {
                format!("Revoked token {} ({}).", token.id, token.name)
            })
        }
    }
}

fn describe_link(link: &LinkView) -> String {
    let mut text = format!(
        "{}\n  title:   {}\n  status:  {}\n  id:      {}",
        link.url, link.title, link.status, link.id
    );
    if let Some(d) = &link.description {
        text.push_str(&format!("\n  about:   {d}"));
    }
    if let Some(s) = &link.schedule {
        text.push_str(&format!(
            "\n  when:    {} – {} ({})",
            s.start, s.end, s.time_zone
        ));
        if let Some(r) = &s.rrule {
            text.push_str(&format!("\n  repeats: {r}"));
        }
    }
    text.push_str(&format!(
        "\n  guests:  {}, up to {} people",
        if link.policy.guests_need_approval {
            "wait for approval"
        } else {
            "join directly"
        },
        link.policy.max_participants
    ));
    if link.policy.members_need_approval {
        text.push_str("\n  members: wait for approval");
    }
    text
}

/// Finds a link by id and acts as its owner.
async fn link_and_owner(store: &Store, id: &str) -> anyhow::Result<Account> {
    let Some(link) = links::LinkId::parse(id) else {
        bail!("{id:?} is not a link id")
    };
    let Some(link) = store.link_by_public_id(link.as_str()).await? else {
        bail!("no link with id {id}")
    };
    let Some(owner) = store.user_by_id(link.owner_id).await? else {
        bail!("the link's owner no longer exists")
    };
    Ok(owner.into())
}

async fn link_command(
    store: &Store,
    clock: &dyn Clock,
    public_url: &str,
    cmd: LinkCommand,
) -> anyhow::Result<()> {
    let now = clock.now();
    // Creating and rotating make a new secret: printed now, kept nowhere.
    let (link, out, new_secret) = match cmd {
        LinkCommand::Create {
            owner,
            title,
            description,
            start,
            end,
            time_zone,
            rrule,
            no_approval,
            members_need_approval,
            max_participants,
            out,
        } => {
            let owner = user_by_email(store, &owner).await?;
            let schedule = match (start, end) {
                (Some(start), Some(end)) => Some(ScheduleInput {
                    start: start
                        .parse()
                        .with_context(|| format!("--start {start:?} is not an RFC 3339 time"))?,
                    end: end
                        .parse()
                        .with_context(|| format!("--end {end:?} is not an RFC 3339 time"))?,
                    time_zone,
                    rrule,
                }),
                _ => None,
            };
            let input = NewLink {
                title,
                description,
                schedule,
                guests_need_approval: Some(!no_approval),
                members_need_approval: Some(members_need_approval),
                max_participants,
            };
            let policy = PolicyCache::default().get(store).await?;
            (
                links::create(store, &policy, &owner, input, now).await?,
                out,
                true,
            )
        }
        LinkCommand::List {
            owner,
            status,
            limit,
            out,
        } => {
            let owner = user_by_email(store, &owner).await?;
            let filter = match status {
                StatusArg::Active => LinkFilter::Active,
                StatusArg::Revoked => LinkFilter::Revoked,
                StatusArg::All => LinkFilter::All,
            };
            let (items, _) =
                links::list(store, &owner, filter, None, limit.clamp(1, 10_000)).await?;
            let views: Vec<LinkView> = items.iter().map(|l| LinkView::new(l, public_url)).collect();
            return print(out, &views, || {
                if views.is_empty() {
                    return format!("{} has no links.", owner.email);
                }
                views
                    .iter()
                    .map(|l| format!("{}  {}", l.url, l.title))
                    .collect::<Vec<_>>()
                    .join("\n")
            });
        }
        LinkCommand::Show { id, out } => {
            let owner = link_and_owner(store, &id).await?;
            (links::owned(store, &owner, &id).await?, out, false)
        }
        LinkCommand::Revoke { id, out } => {
            let owner = link_and_owner(store, &id).await?;
            (links::revoke(store, &owner, &id, now).await?, out, false)
        }
        LinkCommand::Rotate { id, out } => {
            let owner = link_and_owner(store, &id).await?;
            (links::rotate(store, &owner, &id, now).await?, out, true)
        }
    };
    if new_secret {
        let shared = LinkWithSecret::generate(&link, public_url);
        return print(out, &shared, || {
            format!(
                "{}\n  The part after #k= is the link's secret, shown only now: Confab keeps no copy.\n  Share the whole link: the call's media keys are made from the secret.",
                describe_link(&shared.link)
            )
        });
    }
    let view = LinkView::new(&link, public_url);
    print(out, &view, || describe_link(&view))
}

fn new_plugin(name: &str, dir: Option<PathBuf>, sdk_path: Option<PathBuf>) -> anyhow::Result<()> {
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

fn plugin_text(p: &confab_core::plugins::PluginInfo) -> String {
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
    if let Some(reason) = &p.disabled_reason {
        text.push_str(&format!("\n  switched off: {reason}"));
    }
    text
}

async fn plugin_command(config: Config, store: Store, cmd: PluginCommand) -> anyhow::Result<()> {
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
            let list = state.plugins.list(state).await?;
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
            let info = find(state.plugins.info(state, &name).await?, &name)?;
            print(out, &info, || plugin_text(&info))
        }
        PluginCommand::Enable { name, out } => switch_plugin(state, &name, true, out).await,
        PluginCommand::Disable { name, out } => switch_plugin(state, &name, false, out).await,
        PluginCommand::Reload { name, out } => {
            state
                .plugins
                .reload(state, &name)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let info = find(state.plugins.info(state, &name).await?, &name)?;
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

async fn switch_plugin(
    state: &confab_core::AppState,
    name: &str,
    enabled: bool,
    out: Output,
) -> anyhow::Result<()> {
    if state.plugins.info(state, name).await?.is_none() {
        anyhow::bail!("there is no plugin called {name:?} (see confab plugin list)");
    }
    state.plugins.set_enabled(state, name, enabled).await?;
    let info = state
        .plugins
        .info(state, name)
        .await?
        .context("the plugin disappeared")?;
    print(out, &info, || {
        format!(
            "{name} is switched {} (a running server notices within seconds).",
            if enabled { "on" } else { "off" }
        )
    })
}

async fn policy_command(
    store: &Store,
    clock: &dyn Clock,
    cmd: PolicyCommand,
) -> anyhow::Result<()> {
    let cache = PolicyCache::default();
    let (policy, out) = match cmd {
        PolicyCommand::Show { out } => (cache.get(store).await?, out),
        PolicyCommand::Set {
            guest_access,
            member_link_creation,
            disable_plugin,
            enable_plugin,
            out,
        } => {
            let current = cache.get(store).await?;
            let disabled_plugins =
                (!disable_plugin.is_empty() || !enable_plugin.is_empty()).then(|| {
                    let mut list = current.disabled_plugins.clone();
                    list.extend(disable_plugin);
                    list.retain(|p| !enable_plugin.contains(p));
                    list
                });
            let on = |s: Switch| matches!(s, Switch::On);
            let patch = PolicyPatch {
                guest_access: guest_access.map(on),
                member_link_creation: member_link_creation.map(on),
                disabled_plugins,
            };
            (cache.update(store, patch, clock.now()).await?, out)
        }
    };
    print(out, &policy, || {
        let word = |b: bool| if b { "on" } else { "off" };
        format!(
            "guest access:          {}\nmember link creation:  {}\ndisabled plugins:      {}",
            word(policy.guest_access),
            word(policy.member_link_creation),
            if policy.disabled_plugins.is_empty() {
                "none".to_string()
            } else {
                policy.disabled_plugins.join(", ")
            }
        )
    })
}
