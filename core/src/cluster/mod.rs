//! Several nodes, one service (docs/scaling.md). With `cluster.nats_url` set, this
//! process is a node of a cluster: the nodes share one PostgreSQL database (the
//! source of truth) and talk over a NATS bus.
//!
//! What a node does here:
//! - **heartbeat**: every [`HEARTBEAT`] it writes its row in `cluster_nodes`
//!   (calls, open connections, drain state); a node whose heartbeat is older than
//!   [`NODE_LOST_AFTER`] counts as lost. A node id held by a live process is
//!   refused at start ([`ClusterError::NodeIdTaken`]).
//! - **shared changes**: every change made through this node's store that other
//!   nodes cache or act on ([`SharedChange`]: a link revoked, rotated, edited or
//!   deleted; a session or API token ended; the organization policy) is published
//!   on `{prefix}.changes`; changes from other nodes are applied here as if made
//!   here (caches dropped, calls and connections told). While the bus is
//!   connected, caches live [`CONNECTED_CACHE_TTL`]; while it is not, they go back
//!   to their short single-node lives, and they are dropped when it comes back.
//!
//! - **node mail**: each node listens on `{prefix}.node.{node_id}` for messages
//!   addressed to it ([`Cluster::mail_to`], [`Cluster::take_mail`]); the calls
//!   module relays the signaling of a call hosted elsewhere over it.
//!
//! The bus reconnects by itself (every [`RECONNECT_MAX`] at most), so a NATS
//! restart needs no restart of the nodes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::metrics::Metrics;
use crate::policy::PolicyCache;
use crate::shutdown::{Shutdown, ShutdownTrigger};
use crate::store::{NodeBeat, SharedChange, Store, StoreError};

/// How often a node writes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node whose heartbeat is this old is lost: it takes no new calls, and its node
/// id may be taken by another process.
pub const NODE_LOST_AFTER: Duration = Duration::from_secs(5);
/// A node whose heartbeat is this old missed beats: it may have died. Its
/// connections' pages are sent to come back, and new ones wait until it is live
/// again or lost.
pub const SUSPECT_AFTER: Duration = Duration::from_secs(3);
/// How long links and the policy stay cached on a node whose bus is connected
/// (every change reaches it over the bus; this bounds what a lost message costs).
pub const CONNECTED_CACHE_TTL: Duration = Duration::from_secs(30);
/// The longest wait between two attempts to reach a lost bus.
pub const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// How long a node waits for the bus at start, and the CLI before giving up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest window over which a node works out its processor use.
const CPU_WINDOW_MS: i64 = 900;
/// The largest message read from the bus; anything bigger is not Confab's.
const MAX_MESSAGE: usize = 64 * 1024;
/// The largest piece of node mail: a relayed signaling message (SDP, sealed
/// activity payloads) with its envelope.
pub const MAX_MAIL: usize = 256 * 1024;
/// Node mail waiting to be handled before more is dropped (and counted).
const MAIL_QUEUE: usize = 4096;

/// Node mail could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("the cluster's bus is not connected")]
    BusDown,
    #[error("node mail of {0} bytes is larger than {MAX_MAIL}")]
    TooLarge(usize),
    #[error("node mail was not sent: {0}")]
    Publish(String),
}

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot reach the cluster's NATS bus at {url}: {message}")]
    Bus { url: String, message: String },
    #[error(
        "node id {0:?} is in use by another running node (its heartbeat is current): give each node its own cluster.node_id"
    )]
    NodeIdTaken(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What goes over the bus: a change and who made it.
#[derive(Debug, Serialize, Deserialize)]
struct Envelope {
    /// The node (or `cli`) that made the change.
    node: String,
    /// Its process ([`Cluster::instance`]): a node skips its own messages.
    instance: String,
    /// When it was sent, in milliseconds since the Unix epoch.
    sent_at_ms: i64,
    change: SharedChange,
}

impl Envelope {
    /// `change`, sent now by `node`'s process `instance`.
    fn new(node: &str, instance: &str, change: SharedChange) -> Self {
        Envelope {
            node: node.to_string(),
            instance: instance.to_string(),
            sent_at_ms: now_ms(),
            change,
        }
    }
}

/// What the cluster reaches of the node.
#[derive(Clone)]
pub(crate) struct NodeParts {
    pub store: Store,
    pub policy: Arc<PolicyCache>,
    pub metrics: Arc<Metrics>,
    /// Calls live on this node, for the heartbeat.
    pub live_calls: Arc<dyn Fn() -> usize + Send + Sync>,
    /// Participants on the calls hosted here, for the heartbeat.
    pub participants: Arc<dyn Fn() -> usize + Send + Sync>,
}

/// This node's membership of the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster(Arc<Inner>);

struct Inner {
    node_id: String,
    instance: String,
    url: String,
    subject: String,
    client: async_nats::Client,
    started_at: DateTime<Utc>,
    stop: ShutdownTrigger,
    stopped: Shutdown,
    /// Prefix of node mail subjects (`{prefix}.node.`).
    mail_prefix: String,
    /// Mail addressed to this node, until the calls module takes it.
    mail: Mutex<Option<tokio::sync::mpsc::Receiver<bytes::Bytes>>>,
    /// Every node's last heartbeat, as read at this node's last heartbeat.
    heartbeats: Mutex<HashMap<String, DateTime<Utc>>>,
    draining: std::sync::atomic::AtomicBool,
    /// `cluster.placement` is `least_loaded` (else `first_asked`).
    least_loaded: bool,
    /// Fired once a drain is asked of this node (`confab node drain`).
    drain_asked: ShutdownTrigger,
    drain_asked_wait: Shutdown,
    /// When the processor time was last sampled, what it was (ticks), and the
    /// share of a core worked out then.
    cpu: Mutex<Option<(DateTime<Utc>, u64, i32)>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node_id", &self.0.node_id)
            .finish_non_exhaustive()
    }
}

/// The subject shared changes travel on.
fn changes_subject(config: &Config) -> String {
    format!("{}.changes", config.subject_prefix())
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// Connects to the bus; `on_event` hears of its connection's ups and downs.
async fn connect_bus(
    config: &Config,
    name: &str,
    on_event: Option<Arc<dyn Fn(async_nats::Event) + Send + Sync>>,
) -> Result<async_nats::Client, ClusterError> {
    let url = config.cluster.nats_url.trim().to_string();
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(CONNECT_TIMEOUT)
        .reconnect_delay_callback(|attempts| {
            let ms = 100u64.saturating_mul(1 << attempts.min(5));
            Duration::from_millis(ms).min(RECONNECT_MAX)
        });
    if let Some(on_event) = on_event {
        options = options.event_callback(move |event| {
            on_event(event);
            async {}
        });
    }
    let connecting = options.connect(url.as_str());
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(err)) => Err(ClusterError::Bus {
            url,
            message: err.to_string(),
        }),
        Err(_) => Err(ClusterError::Bus {
            url,
            message: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        }),
    }
}

impl Cluster {
    /// Joins the cluster `config` names: connects to the bus, claims the node id
    /// and starts the heartbeat and the exchange of changes.
    pub(crate) async fn join(config: &Config, parts: NodeParts) -> Result<Self, ClusterError> {
        let node_id = config.node_id();
        let instance = crate::secret::random_base62(16);
        parts.store.set_shared_with_other_nodes();
        // Every connection, the first one included, is announced once.
        let connections = Arc::new(AtomicU64::new(0));
        let on_event = {
            let parts = parts.clone();
            let connections = connections.clone();
            let node_id = node_id.clone();
            Arc::new(move |event: async_nats::Event| match event {
                async_nats::Event::Connected => {
                    parts.metrics.cluster_bus_up.set(1);
                    if connections.fetch_add(1, Ordering::SeqCst) > 0 {
                        parts.metrics.cluster_bus_reconnects.inc();
                        tracing::info!(node = %node_id, "the cluster's bus is back");
                    }
                    // Changes arrive as they happen again; what was cached while
                    // they did not is dropped by setting the lives.
                    parts.store.set_link_cache_ttl(CONNECTED_CACHE_TTL);
                    parts.policy.set_ttl(CONNECTED_CACHE_TTL);
                }
                async_nats::Event::Disconnected => {
                    parts.metrics.cluster_bus_up.set(0);
                    tracing::warn!(node = %node_id, "lost the cluster's bus; reconnecting");
                    // Back to a single node's lives until it returns.
                    parts.store.set_link_cache_ttl(crate::store::LINK_CACHE_TTL);
                    parts.policy.set_ttl(crate::policy::CACHE_TTL);
                }
                other => tracing::debug!(node = %node_id, event = %other, "cluster bus"),
            }) as Arc<dyn Fn(async_nats::Event) + Send + Sync>
        };
        let client = connect_bus(config, &format!("confab {node_id}"), Some(on_event)).await?;
        // The first connection's event may come after connect returns.
        parts.metrics.cluster_bus_up.set(1);
        parts.store.set_link_cache_ttl(CONNECTED_CACHE_TTL);
        parts.policy.set_ttl(CONNECTED_CACHE_TTL);
        let subject = changes_subject(config);
        let subscription =
            client
                .subscribe(subject.clone())
                .await
                .map_err(|e| ClusterError::Bus {
                    url: config.cluster.nats_url.clone(),
                    message: e.to_string(),
                })?;
        let mail_prefix = format!("{}.node.", config.subject_prefix());
        let mailbox = client
            .subscribe(format!("{mail_prefix}{node_id}"))
            .await
            .map_err(|e| ClusterError::Bus {
                url: config.cluster.nats_url.clone(),
                message: e.to_string(),
            })?;
        let (mail_in, mail) = tokio::sync::mpsc::channel(MAIL_QUEUE);
        let (stop, stopped) = Shutdown::new();
        let (drain_asked, drain_asked_wait) = Shutdown::new();
        let cluster = Cluster(Arc::new(Inner {
            node_id,
            instance,
            url: config.public_url(),
            subject,
            client,
            started_at: Utc::now(),
            stop,
            stopped,
            mail_prefix,
            mail: Mutex::new(Some(mail)),
            heartbeats: Mutex::default(),
            draining: std::sync::atomic::AtomicBool::new(false),
            least_loaded: config.cluster.placement == "least_loaded",
            drain_asked,
            drain_asked_wait,
            cpu: Mutex::default(),
        }));
        if !cluster.beat(&parts).await? {
            return Err(ClusterError::NodeIdTaken(cluster.0.node_id.clone()));
        }
        tokio::spawn(cluster.clone().run_heartbeat(parts.clone()));
        tokio::spawn(
            cluster
                .clone()
                .run_publisher(parts.store.changes_made_here()),
        );
        tokio::spawn(cluster.clone().run_mailbox(mailbox, mail_in));
        tokio::spawn(cluster.clone().run_subscriber(subscription, parts));
        tracing::info!(node = %cluster.0.node_id, bus = %config.cluster.nats_url, "joined the cluster");
        Ok(cluster)
    }

    pub fn node_id(&self) -> &str {
        &self.0.node_id
    }

    /// Which node hosts the call of link `link_pk`: this one (`None`: it claimed
    /// the call, or already held it), or the node id that does. A call held by a
    /// lost node (no heartbeat for [`NODE_LOST_AFTER`]) is taken over.
    pub async fn claim_call(
        &self,
        store: &Store,
        link_pk: i64,
    ) -> Result<Option<String>, StoreError> {
        let now = Utc::now();
        let (holder, _epoch) = store
            .claim_call(link_pk, &self.0.node_id, now, lost_before(now))
            .await?;
        Ok((holder != self.0.node_id).then_some(holder))
    }

    /// Which node hosts the call of link `link_pk`, for a connection of this node:
    /// this one (`None`), or the node id that does. A call nobody hosts goes to
    /// the least-loaded live node that is not draining ([`Store::place_call`]), or
    /// with `cluster.placement = "first_asked"` to this node.
    pub async fn place_call(
        &self,
        store: &Store,
        link_pk: i64,
    ) -> Result<Option<String>, StoreError> {
        if !self.0.least_loaded {
            return self.claim_call(store, link_pk).await;
        }
        let now = Utc::now();
        let (holder, _epoch) = store
            .place_call(link_pk, &self.0.node_id, now, lost_before(now))
            .await?;
        Ok((holder != self.0.node_id).then_some(holder))
    }

    /// Whether this node drains: it takes no new calls.
    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::Relaxed)
    }

    /// Drains this node (its next heartbeat says so): other nodes take its new calls.
    pub fn start_draining(&self) {
        self.0.draining.store(true, Ordering::Relaxed);
    }

    /// Resolves once a drain of this node was asked from outside it
    /// (`confab node drain`, seen in its row at a heartbeat).
    pub fn drain_asked(&self) -> Shutdown {
        self.0.drain_asked_wait.clone()
    }

    /// The share of one core this process used since the last heartbeat, in
    /// thousandths (0 where the system does not say).
    fn cpu_permille(&self, now: DateTime<Utc>) -> i32 {
        let Some(ticks) = process_cpu_ticks() else {
            return 0;
        };
        let mut last = self.0.cpu.lock().unwrap_or_else(|e| e.into_inner());
        let Some((then, before, permille)) = *last else {
            *last = Some((now, ticks, 0));
            return 0;
        };
        let wall_ms = (now - then).num_milliseconds();
        // A window shorter than this says more about the scheduler's ticks than
        // about the load: keep the last figure until the window is long enough.
        if wall_ms < CPU_WINDOW_MS {
            return permille;
        }
        // /proc counts in USER_HZ: 100 ticks a second on Linux.
        let used_ms = i64::try_from(ticks.saturating_sub(before)).unwrap_or(0) * 10;
        let permille = i32::try_from(used_ms * 1000 / wall_ms).unwrap_or(i32::MAX);
        *last = Some((now, ticks, permille));
        permille
    }

    /// Gives up every call this node hosts, keeping everyone's place for the nodes
    /// that take them (a drain whose time is up).
    pub async fn release_all_calls(&self, store: &Store) {
        if let Err(err) = store.release_calls_of(&self.0.node_id).await {
            tracing::warn!(error = %err, "this node's calls were not given up; they move once it has left");
        }
    }

    /// The call of link `link_pk` ended on this node at `ended_at`.
    pub async fn release_call(&self, store: &Store, link_pk: i64, ended_at: DateTime<Utc>) {
        if let Err(err) = store.release_call(link_pk, &self.0.node_id, ended_at).await {
            tracing::warn!(error = %err, link = link_pk, "a call's row in cluster_calls was not removed; it is taken over once this node is lost");
        }
    }

    /// Sends `payload` to node `node` (its [`Cluster::take_mail`]). Refused at once
    /// while the bus is down, so that a caller can say so instead of waiting.
    pub async fn mail_to(&self, node: &str, payload: Vec<u8>) -> Result<(), MailError> {
        if payload.len() > MAX_MAIL {
            return Err(MailError::TooLarge(payload.len()));
        }
        if !self.bus_connected() {
            return Err(MailError::BusDown);
        }
        self.0
            .client
            .publish(format!("{}{node}", self.0.mail_prefix), payload.into())
            .await
            .map_err(|e| MailError::Publish(e.to_string()))
    }

    /// The mail other nodes send this one, in the order each sent it; once (the
    /// calls module takes it when the node starts).
    pub fn take_mail(&self) -> Option<tokio::sync::mpsc::Receiver<bytes::Bytes>> {
        self.0.mail.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    /// How old node `node`'s heartbeat is, as of this node's last read of the
    /// heartbeats (`None`: it has no row, it left or never came).
    fn heartbeat_age(&self, node: &str) -> Option<Duration> {
        let beats = self.0.heartbeats.lock().unwrap_or_else(|e| e.into_inner());
        let at = *beats.get(node)?;
        Some((Utc::now() - at).to_std().unwrap_or_default())
    }

    /// Whether node `node`'s heartbeat is current (this node always is).
    pub fn is_node_live(&self, node: &str) -> bool {
        node == self.0.node_id
            || self
                .heartbeat_age(node)
                .is_some_and(|age| age < NODE_LOST_AFTER)
    }

    /// Whether node `node` missed heartbeats ([`SUSPECT_AFTER`]): it may have died
    /// and be about to count as lost. This node never is.
    pub fn is_node_suspect(&self, node: &str) -> bool {
        node != self.0.node_id
            && self
                .heartbeat_age(node)
                .is_none_or(|age| age >= SUSPECT_AFTER)
    }

    /// Resolves once this node leaves the cluster.
    pub fn stopped(&self) -> Shutdown {
        self.0.stopped.clone()
    }

    /// Whether the bus is connected now.
    pub fn bus_connected(&self) -> bool {
        self.0.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Leaves the cluster: stops the heartbeat and the exchange, sends what is
    /// queued and removes this node's row.
    pub async fn leave(&self, store: &Store) {
        self.0.stop.trigger();
        let _ = tokio::time::timeout(CONNECT_TIMEOUT, self.0.client.flush()).await;
        if let Err(err) = store.leave_cluster(&self.0.node_id, &self.0.instance).await {
            tracing::warn!(error = %err, "could not remove this node's row from cluster_nodes");
        }
    }

    /// Writes this node's heartbeat; false when another process holds the node id.
    async fn beat(&self, parts: &NodeParts) -> Result<bool, StoreError> {
        let now = Utc::now();
        let beat = NodeBeat {
            node_id: self.0.node_id.clone(),
            instance: self.0.instance.clone(),
            url: self.0.url.clone(),
            started_at: self.0.started_at,
            now,
            calls: i32::try_from((parts.live_calls)()).unwrap_or(i32::MAX),
            participants: i32::try_from((parts.participants)()).unwrap_or(i32::MAX),
            draining: self.is_draining(),
            cpu_permille: self.cpu_permille(now),
        };
        parts.store.node_heartbeat(&beat, lost_before(now)).await
    }

    async fn run_heartbeat(self, parts: NodeParts) {
        let mut ticker = tokio::time::interval(HEARTBEAT);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.0.stopped.wait() => break,
                _ = ticker.tick() => {}
            }
            match self.beat(&parts).await {
                Ok(true) => {}
                Ok(false) => tracing::error!(
                    node = %self.0.node_id,
                    "another process took this node's id while its heartbeat was late; give each node its own cluster.node_id"
                ),
                Err(err) => tracing::warn!(error = %err, "cluster heartbeat not written"),
            }
            match parts.store.cluster_nodes().await {
                Ok(nodes) => {
                    let now = Utc::now();
                    let asked = nodes
                        .iter()
                        .any(|n| n.node_id == self.0.node_id && n.draining);
                    if asked && !self.is_draining() {
                        tracing::info!(node = %self.0.node_id, "asked to drain: taking no new calls");
                        self.start_draining();
                        self.0.drain_asked.trigger();
                    }
                    let live = nodes
                        .iter()
                        .filter(|n| is_live(n.heartbeat_at, now))
                        .count();
                    let beats: HashMap<String, DateTime<Utc>> = nodes
                        .into_iter()
                        .map(|n| (n.node_id, n.heartbeat_at))
                        .collect();
                    *self.0.heartbeats.lock().unwrap_or_else(|e| e.into_inner()) = beats;
                    parts
                        .metrics
                        .cluster_nodes_live
                        .set(i64::try_from(live).unwrap_or(i64::MAX));
                }
                Err(err) => tracing::debug!(error = %err, "cluster nodes not read"),
            }
        }
    }

    /// Passes this node's mail on to [`Cluster::take_mail`]'s receiver, in order;
    /// oversized mail, and mail that finds the queue full, is dropped and logged.
    async fn run_mailbox(
        self,
        mut mailbox: async_nats::Subscriber,
        mail: tokio::sync::mpsc::Sender<bytes::Bytes>,
    ) {
        loop {
            let message = tokio::select! {
                _ = self.0.stopped.wait() => break,
                message = mailbox.next() => match message {
                    Some(message) => message,
                    None => break,
                },
            };
            if message.payload.len() > MAX_MAIL {
                tracing::warn!(bytes = message.payload.len(), "ignored oversized node mail");
                continue;
            }
            match mail.try_send(message.payload) {
                Ok(()) => {}
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    tracing::warn!("node mail dropped: {MAIL_QUEUE} messages wait already");
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
    }

    fn envelope(&self, change: SharedChange) -> Envelope {
        Envelope::new(&self.0.node_id, &self.0.instance, change)
    }

    async fn run_publisher(self, mut changes: tokio::sync::broadcast::Receiver<SharedChange>) {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let change = tokio::select! {
                _ = self.0.stopped.wait() => break,
                change = changes.recv() => match change {
                    Ok(change) => change,
                    // Changes were missed: the others drop everything they cache.
                    Err(RecvError::Lagged(_)) => SharedChange::Resync,
                    Err(RecvError::Closed) => break,
                },
            };
            publish(&self.0.client, &self.0.subject, &self.envelope(change)).await;
        }
    }

    async fn run_subscriber(self, mut subscription: async_nats::Subscriber, parts: NodeParts) {
        loop {
            let message = tokio::select! {
                _ = self.0.stopped.wait() => break,
                message = subscription.next() => match message {
                    Some(message) => message,
                    None => break,
                },
            };
            if message.payload.len() > MAX_MESSAGE {
                tracing::warn!(
                    bytes = message.payload.len(),
                    "ignored an oversized cluster message"
                );
                continue;
            }
            let envelope: Envelope = match serde_json::from_slice(&message.payload) {
                Ok(envelope) => envelope,
                Err(err) => {
                    tracing::warn!(error = %err, "ignored a malformed cluster message");
                    continue;
                }
            };
            if envelope.instance == self.0.instance {
                continue;
            }
            apply(&parts, &envelope.change).await;
            parts.metrics.cluster_changes_applied.inc();
            let delay_ms = (now_ms() - envelope.sent_at_ms).max(0);
            #[allow(clippy::cast_precision_loss)]
            parts
                .metrics
                .cluster_change_seconds
                .observe(delay_ms as f64 / 1000.0);
        }
    }
}

/// Applies a change another node (or the CLI) made.
async fn apply(parts: &NodeParts, change: &SharedChange) {
    parts.store.apply_shared_change(change).await;
    if matches!(change, SharedChange::Policy | SharedChange::Resync) {
        parts.policy.forget();
    }
}

async fn publish(client: &async_nats::Client, subject: &str, envelope: &Envelope) {
    let payload = match serde_json::to_vec(envelope) {
        Ok(payload) => payload,
        Err(err) => {
            tracing::error!(error = %err, "a cluster change could not be encoded");
            return;
        }
    };
    if let Err(err) = client.publish(subject.to_string(), payload.into()).await {
        tracing::warn!(error = %err, "a change was not sent to the other nodes; they see it when their caches expire");
    }
}

/// Processor time this process used (user and system, every thread), in the
/// kernel's USER_HZ ticks; `None` off Linux.
fn process_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses:
    // state is the first, utime the 12th, stime the 13th.
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(user + system)
}

/// Whether a heartbeat written at `heartbeat_at` is current at `now`.
pub fn is_live(heartbeat_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    heartbeat_at > lost_before(now)
}

/// A heartbeat written at or before this time, seen at `now`, is a lost node's.
fn lost_before(now: DateTime<Utc>) -> DateTime<Utc> {
    now - chrono::Duration::from_std(NODE_LOST_AFTER).unwrap_or_default()
}

/// Sends changes the command line made to the nodes of the cluster `config` names
/// (the CLI is no node: it connects, publishes and leaves).
pub async fn announce(config: &Config, changes: Vec<SharedChange>) -> Result<(), ClusterError> {
    if changes.is_empty() {
        return Ok(());
    }
    let client = connect_bus(config, "confab cli", None).await?;
    let subject = changes_subject(config);
    let instance = crate::secret::random_base62(16);
    for change in changes {
        publish(&client, &subject, &Envelope::new("cli", &instance, change)).await;
    }
    client.flush().await.map_err(|e| ClusterError::Bus {
        url: config.cluster.nats_url.clone(),
        message: e.to_string(),
    })
}
