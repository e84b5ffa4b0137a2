//! # confab-core
//!
//! The Confab server as a library, and the `confab` binary (`src/main.rs`).
//!
//! [`App::build`] turns a [`Config`] into a running application: it connects the
//! [`store::Store`] (SQLite by default, PostgreSQL by URL), applies migrations and
//! prepares templates. [`App::router`] is the complete axum router, which tests call
//! directly; [`App::serve`] binds the socket and runs until SIGINT/SIGTERM.
//!
//! Domain rules live in plain modules that take `now` as an argument:
//! [`links`] (the call-link lifecycle), `calls` (lobby, admission, removal window,
//! reconnect: a state machine per call), [`accounts`] (users, sessions, tokens),
//! [`policy`] (organization restrictions) and [`privacy`] (call metadata and its
//! retention). The `http` module is a thin layer over them; [`mail`] keeps the
//! durable mail outbox.
//!
//! Modules are private to the crate unless something outside it uses them: the
//! `confab` binary (its CLI), the integration tests, the benchmarks and the fuzz
//! harness. Those reach the store, accounts, links, policy, privacy, mail, plugins,
//! the SFU, the signaling protocol's types, configuration, secrets and shutdown;
//! the call task, the signaling sessions and the HTTP handlers stay inside
//! (docs/architecture.md, "Layers").
//!
//! ```no_run
//! # async fn run() -> Result<(), confab_core::AppError> {
//! let config = confab_core::Config::load(None)?;
//! let app = confab_core::App::build(config).await?;
//! app.serve().await
//! # }
//! ```

use std::sync::Arc;

pub mod accounts;
pub(crate) mod calls;
pub(crate) mod clock;
pub mod cluster;
pub mod config;
#[doc(hidden)]
pub mod fuzz;
pub(crate) mod http;
pub(crate) mod limits;
pub mod links;
pub mod mail;
pub(crate) mod metrics;
pub mod plugins;
pub mod policy;
pub mod privacy;
pub mod protocol;
pub mod secret;
pub mod sfu;
pub mod shutdown;
pub(crate) mod signaling;
pub mod store;
mod templates;
pub(crate) mod validate;

pub use clock::{Clock, FakeClock, SystemClock};
pub use config::Config;
pub use http::serve;

use accounts::LoginThrottle;
use policy::PolicyCache;
use shutdown::Shutdown;
use store::{Store, StoreError};

/// Why the application could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("template error: {0}")]
    Templates(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot open the media ports: {0}")]
    Media(std::io::Error),
    #[error("mail: {0}")]
    Mail(String),
    #[error(transparent)]
    Cluster(#[from] cluster::ClusterError),
    #[error("server error: {0}")]
    Serve(std::io::Error),
}

/// Everything a request handler needs. Cheap to clone: one reference count, however
/// many parts it holds (every extractor and task takes a clone, and cloning each part
/// showed up as a sixth of the CPU of serving the link page).
#[derive(Clone)]
pub struct AppState(Arc<SharedState>);

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.0
    }
}

/// The parts of [`AppState`], read through it.
#[derive(Clone)]
pub struct SharedState {
    pub store: Store,
    pub config: Arc<Config>,
    pub clock: Arc<dyn Clock>,
    pub policy: Arc<PolicyCache>,
    pub throttle: Arc<LoginThrottle>,
    pub metrics: Arc<metrics::Metrics>,
    /// Live calls, by link.
    pub calls: Arc<calls::CallRegistry>,
    /// The media plane (SFU) of this node, once [`App::start_media`] opened its ports
    /// (the CLI's other commands never do).
    pub media: Option<sfu::MediaHandle>,
    /// The plugins of this server.
    pub plugins: Arc<plugins::PluginHost>,
    /// This node's membership of a cluster, once [`App::join_cluster`] joined one
    /// (`cluster.nats_url` set).
    pub cluster: Option<cluster::Cluster>,
    /// The database's outbox: the mail capability queues plugins' messages in it,
    /// and the delivery worker empties it.
    pub mail: mail::Outbox,
    /// Signaling WebSockets open per client address (`server.max_websockets_per_address`).
    pub connections: Arc<limits::ConnectionSlots>,
    /// Signs the per-link guest device cookies.
    pub guest_cookies: http::guest_cookie::GuestCookies,
    templates: Arc<tera::Tera>,
    public_url: Arc<str>,
    /// What the plugin host reaches of the above.
    plugin_deps: plugins::PluginDeps,
}

impl AppState {
    /// The base URL links are built on, without a trailing slash.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The parts of the server the plugins use (the plugin host's methods take
    /// them instead of the whole state).
    pub fn plugin_deps(&self) -> &plugins::PluginDeps {
        &self.plugin_deps
    }

    /// The call rules from the configuration.
    pub fn call_rules(&self) -> calls::CallRules {
        let c = &self.config.calls;
        calls::CallRules {
            removal_window: chrono::Duration::seconds(i64::from(c.removal_window_secs)),
            lobby_timeout: chrono::Duration::seconds(i64::from(c.lobby_timeout_secs)),
            reconnect_grace: chrono::Duration::seconds(i64::from(c.reconnect_grace_secs)),
            max_lobby_requests: usize::try_from(c.max_lobby_requests).unwrap_or(usize::MAX),
            max_waiting_per_network: usize::try_from(c.max_waiting_per_address)
                .unwrap_or(usize::MAX),
            activities: calls::activity::ActivityRules {
                snapshot_wait: chrono::Duration::milliseconds(i64::from(
                    c.activity_snapshot_wait_ms,
                )),
                log_entries: usize::try_from(c.activity_log_entries).unwrap_or(usize::MAX),
                log_bytes: usize::try_from(c.activity_log_kib)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(1024),
            },
        }
    }
}

/// A built application: state plus the router over it.
pub struct App {
    state: AppState,
}

impl App {
    /// Connects the database, applies migrations and loads templates, with the system clock.
    pub async fn build(config: Config) -> Result<Self, AppError> {
        Self::build_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Like [`App::build`] with a chosen clock (tests pass a [`FakeClock`]).
    pub async fn build_with_clock(config: Config, clock: Arc<dyn Clock>) -> Result<Self, AppError> {
        let store = Store::connect(&config.database_url(), config.database.max_connections).await?;
        store.migrate().await?;
        let mut app = Self::with_store(config, store, clock)?;
        app.join_cluster().await?;
        app.load_plugins().await;
        Ok(app)
    }

    /// Loads the plugins (done by [`App::build`]; call it after [`App::with_store`]).
    pub async fn load_plugins(&self) {
        self.state.plugins.load_all(self.state.plugin_deps()).await;
    }

    /// Builds the application over an already migrated store.
    pub fn with_store(
        config: Config,
        store: Store,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, AppError> {
        let templates = templates::load(&config.templates.dir).map_err(AppError::Templates)?;
        accounts::set_hash_concurrency(
            usize::try_from(config.auth.max_concurrent_hashes).unwrap_or(1),
        );
        let throttle = LoginThrottle::new(
            config.auth.login_max_failures,
            config.auth.login_max_failures_per_address,
            chrono::Duration::minutes(i64::from(config.auth.login_window_minutes)),
        );
        // A bad `mail.from` or relay setting stops the start, not the first delivery.
        mail::sender(&config).map_err(AppError::Mail)?;
        mail::Transport::from_config(&config).map_err(AppError::Mail)?;
        let outbox = mail::Outbox::new(store.clone(), clock.clone(), &config);
        let calls = Arc::new(calls::CallRegistry::new(&config.calls));
        let connections = Arc::new(limits::ConnectionSlots::new(
            config.server.max_websockets_per_address,
        ));
        let metrics = Arc::new(metrics::Metrics::default());
        let policy = Arc::new(PolicyCache::default());
        let templates = Arc::new(templates);
        let public_url: Arc<str> = config.public_url().into();
        let plugins = Arc::new(plugins::PluginHost::new(&config));
        let plugin_deps = plugins::PluginDeps {
            store: store.clone(),
            clock: clock.clone(),
            metrics: metrics.clone(),
            policy: policy.clone(),
            mail: outbox.clone(),
            templates: templates.clone(),
            public_url: public_url.clone(),
            calls: calls.clone(),
            plugins: plugins.clone(),
        };
        let state = AppState(Arc::new(SharedState {
            media: None,
            cluster: None,
            plugins,
            mail: outbox,
            store,
            public_url,
            config: Arc::new(config),
            clock,
            policy,
            throttle: Arc::new(throttle),
            metrics,
            calls,
            connections,
            guest_cookies: http::guest_cookie::GuestCookies::default(),
            templates,
            plugin_deps,
        }));
        Ok(Self { state })
    }

    /// Opens the media ports and starts the SFU threads.
    pub fn start_media(&mut self) -> Result<(), AppError> {
        if self.state.media.is_none() {
            let media =
                sfu::MediaHandle::start(&self.state.config.media).map_err(AppError::Media)?;
            // Clones made before keep what they had (none is made before serving).
            Arc::make_mut(&mut self.state.0).media = Some(media);
        }
        Ok(())
    }

    /// Joins the cluster `cluster.nats_url` names (done by [`App::build`]; nothing
    /// when it is empty).
    pub async fn join_cluster(&mut self) -> Result<(), AppError> {
        if !self.state.config.clustered() || self.state.cluster.is_some() {
            return Ok(());
        }
        let calls = self.state.calls.clone();
        let parts = cluster::NodeParts {
            store: self.state.store.clone(),
            policy: self.state.policy.clone(),
            metrics: self.state.metrics.clone(),
            live_calls: Arc::new({
                let calls = calls.clone();
                move || calls.live_calls()
            }),
            participants: Arc::new(move || calls.participants()),
        };
        let joined = cluster::Cluster::join(&self.state.config, parts).await?;
        // Clones made before keep what they had (none is made before serving).
        Arc::make_mut(&mut self.state.0).cluster = Some(joined);
        Ok(())
    }

    /// On a cluster, starts relaying the signaling of calls another node hosts (done
    /// by [`App::serve_on`], once media started: the relay's calls use this state);
    /// it stops when the node leaves the cluster.
    pub fn start_relay(&self) {
        if let Some(cluster) = &self.state.cluster {
            tokio::spawn(calls::live::relay::run(
                self.state.clone(),
                cluster.stopped(),
            ));
        }
    }

    /// Starts delivering the outbox's mail (done by [`App::serve_on`]; the CLI's
    /// other commands never do).
    pub fn start_mail(&self) -> Result<mail::Delivery, AppError> {
        self.state
            .mail
            .start_delivery(&self.state.config, self.state.metrics.clone())
            .map_err(AppError::Mail)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// The complete HTTP router.
    pub fn router(&self) -> axum::Router {
        http::router(self.state.clone())
    }

    /// Serves on the configured address until SIGINT or SIGTERM, then drains
    /// in-flight requests and stops background jobs.
    pub async fn serve(self) -> Result<(), AppError> {
        let addr = self.state.config.server.listen;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| AppError::Bind { addr, source })?;
        self.serve_on(listener, shutdown_signal()).await
    }

    /// Serves on `listener` until `stop` resolves.
    pub async fn serve_on(
        self,
        listener: tokio::net::TcpListener,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let (trigger, shutdown) = Shutdown::new();
        let state = self.state.clone();
        let delivery = self.start_mail()?;
        let purge = tokio::spawn(privacy::run_purge_job(
            state.store.clone(),
            state.clock.clone(),
            state.config.privacy.retention_days,
            std::time::Duration::from_secs(
                u64::from(state.config.privacy.purge_interval_minutes.max(1)) * 60,
            ),
            state
                .config
                .mail
                .smtp_host
                .is_empty()
                .then(|| state.config.outbox_dir()),
            shutdown.clone(),
        ));
        let timers = tokio::spawn(plugins::PluginHost::run_timers(
            state.plugin_deps().clone(),
            shutdown.clone(),
        ));
        self.start_relay();
        let watcher = state.config.plugins.watch.then(|| {
            tokio::spawn(plugins::PluginHost::watch(
                state.plugin_deps().clone(),
                shutdown.clone(),
            ))
        });
        let local = listener.local_addr().map_err(AppError::Serve)?;
        tracing::info!(address = %local, url = %state.public_url(), database = state.store.backend_name(), "Confab is ready");
        let header_read_timeout =
            std::time::Duration::from_secs(u64::from(state.config.server.header_read_timeout_secs));
        let draining = state.clone();
        let result = http::serve(listener, self.router(), header_read_timeout, async move {
            // A node of a cluster stops on SIGTERM or SIGINT (`stop`), or when a drain
            // is asked of it (`confab node drain`); either way it drains first,
            // serving its calls meanwhile.
            match draining.cluster.as_ref().map(cluster::Cluster::drain_asked) {
                Some(asked) => {
                    tokio::select! {
                        () = stop => {}
                        () = asked.wait() => {}
                    }
                    drain(&draining).await;
                }
                None => stop.await,
            }
            tracing::info!("shutting down: finishing in-flight requests");
        })
        .await;
        trigger.trigger();
        let _ = purge.await;
        let _ = timers.await;
        delivery.stop().await;
        if let Some(watcher) = watcher {
            let _ = watcher.await;
        }
        if let Some(cluster) = &state.cluster {
            cluster.leave(&state.store).await;
        }
        state.store.clone().close().await;
        result.map_err(AppError::Serve)
    }
}

/// Drains a node of a cluster (nothing on a single node): it takes no new calls
/// (other nodes get them), waits up to `cluster.drain_timeout_secs` for its calls
/// to end, then gives up those still going and closes their connections: each
/// page comes back through another node, which seats everyone again as after a
/// node's death. [`App::serve_on`] does it before stopping.
pub async fn drain(state: &AppState) {
    let Some(cluster) = &state.cluster else {
        return;
    };
    cluster.start_draining();
    let timeout =
        std::time::Duration::from_secs(u64::from(state.config.cluster.drain_timeout_secs));
    tracing::info!(
        calls = state.calls.live_calls(),
        timeout_secs = timeout.as_secs(),
        "draining: no new calls here; waiting for the calls to end"
    );
    let deadline = tokio::time::Instant::now() + timeout;
    while state.calls.live_calls() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let left = state.calls.live_calls();
    if left > 0 {
        tracing::warn!(
            calls = left,
            "drain time is up: moving the calls still going to other nodes"
        );
        // Given up first, so that the pages coming back find the calls placed on
        // other nodes, which seat everyone again from their kept places.
        cluster.release_all_calls(&state.store).await;
        state.calls.evacuate();
        // Time for the closes to leave (relayed ones cross the bus).
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
