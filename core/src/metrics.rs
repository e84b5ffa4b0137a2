//! Prometheus metrics, served at `/metrics`.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;
use crate::store::{OutboxCounts, OutboxStatus};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginCallLabels {
    plugin: String,
    hook: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// The server's metrics and the registry that renders them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    /// Links created through any path.
    pub links_created: Counter,
    /// Calls live on this node, set when metrics are read.
    pub live_calls: Gauge,
    /// Participants on the calls this node hosts, set when metrics are read.
    pub call_participants: Gauge,
    /// Signaling connections open on this node (people on its calls and waiting
    /// in their lobbies), set when metrics are read.
    pub signaling_connections: Gauge,
    /// The media plane's counters, copied from the engine when metrics are read.
    pub media_packets_in: Counter,
    pub media_packets_forwarded: Counter,
    pub media_peer_connections: Gauge,
    /// Media engine steps that panicked (each contained to its call, if it could be).
    pub media_panics: Counter,
    /// Media events (answers, offers, speakers, errors) a signaling connection did
    /// not take: its queue was full or it had closed.
    pub media_events_dropped: Counter,
    /// 1 while the media engine thread runs, 0 once it has stopped.
    pub media_engine_up: Gauge,
    /// ICE-TCP connections open now.
    pub media_tcp_connections: Gauge,
    plugin_calls: Family<PluginCallLabels, Counter>,
    plugin_durations: Family<PluginLabels, Histogram>,
    plugin_dropped: Family<PluginLabels, Counter>,
    plugin_disabled: Family<PluginLabels, Counter>,
    mail_outbox: Family<StatusLabels, Gauge>,
    mail_attempts: Family<OutcomeLabels, Counter>,
    mail_delivery_seconds: Histogram,
    refused: Family<ReasonLabels, Counter>,
    /// 1 while this node of a cluster is connected to its bus (0 otherwise, and
    /// on a single node).
    pub cluster_bus_up: Gauge,
    /// Times this node's bus connection came back after it was lost.
    pub cluster_bus_reconnects: Counter,
    /// Changes other nodes made (links, sign-ins, policy) applied on this node.
    pub cluster_changes_applied: Counter,
    /// From a change leaving another node to its application here, in seconds.
    pub cluster_change_seconds: Histogram,
    /// Nodes whose heartbeat is current, this one included, set when metrics are read.
    pub cluster_nodes_live: Gauge,
    /// From a relayed signaling message leaving one node to its handling on
    /// another, in seconds (both ways).
    pub cluster_relay_seconds: Histogram,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("confab");
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 14))
        });
        let links_created = Counter::default();
        let live_calls = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency",
            durations.clone(),
        );
        registry.register("links_created", "Call links created", links_created.clone());
        registry.register("live_calls", "Calls live on this node", live_calls.clone());
        let call_participants = Gauge::default();
        registry.register(
            "call_participants",
            "Participants on the calls this node hosts (on a cluster, wherever their connections are)",
            call_participants.clone(),
        );
        let signaling_connections = Gauge::default();
        registry.register(
            "signaling_connections",
            "Signaling connections open on this node: people on its calls and waiting in their lobbies",
            signaling_connections.clone(),
        );
        let media_packets_in = Counter::default();
        let media_packets_forwarded = Counter::default();
        let media_peer_connections = Gauge::default();
        let media_panics = Counter::default();
        let media_events_dropped = Counter::default();
        registry.register(
            "media_events_dropped",
            "Media events a participant's signaling connection did not take (full queue or closed)",
            media_events_dropped.clone(),
        );
        let media_tcp_connections = Gauge::default();
        registry.register(
            "media_tcp_connections",
            "ICE-TCP connections open on this node's media port",
            media_tcp_connections.clone(),
        );
        let media_engine_up = Gauge::default();
        registry.register(
            "media_panics",
            "Media engine steps that panicked; each took down only the media of its call",
            media_panics.clone(),
        );
        registry.register(
            "media_engine_up",
            "1 while the media engine thread runs, 0 once it has stopped",
            media_engine_up.clone(),
        );
        registry.register(
            "media_packets_received",
            "Datagrams the SFU received (media, RTCP, ICE, DTLS)",
            media_packets_in.clone(),
        );
        registry.register(
            "media_packets_forwarded",
            "RTP packets the SFU forwarded to subscribers",
            media_packets_forwarded.clone(),
        );
        registry.register(
            "media_peer_connections",
            "Peer connections open on this node's SFU",
            media_peer_connections.clone(),
        );
        let plugin_calls = Family::<PluginCallLabels, Counter>::default();
        let plugin_durations = Family::<PluginLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 16))
        });
        let plugin_dropped = Family::<PluginLabels, Counter>::default();
        let plugin_disabled = Family::<PluginLabels, Counter>::default();
        registry.register(
            "plugin_invocations",
            "Plugin invocations by plugin, hook and outcome (ok, failed, busy)",
            plugin_calls.clone(),
        );
        registry.register(
            "plugin_invocation_duration_seconds",
            "Time plugins took per invocation, instantiation included",
            plugin_durations.clone(),
        );
        registry.register(
            "plugin_events_dropped",
            "Events not delivered because a plugin's queue was full",
            plugin_dropped.clone(),
        );
        registry.register(
            "plugin_auto_disabled",
            "Times a plugin was switched off after repeated failures",
            plugin_disabled.clone(),
        );
        let mail_outbox = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "mail_outbox_messages",
            "Messages in the mail outbox by status (queued, sent, failed), set when metrics are read",
            mail_outbox.clone(),
        );
        let mail_attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "mail_delivery_attempts",
            "Delivery attempts by outcome: sent, retry (a transient failure) or failed (a permanent refusal or the last attempt)",
            mail_attempts.clone(),
        );
        let mail_delivery_seconds = Histogram::new(exponential_buckets(0.005, 2.0, 16));
        registry.register(
            "mail_queued_to_sent_seconds",
            "From queueing a message to its acceptance by the relay (or the file outbox)",
            mail_delivery_seconds.clone(),
        );
        let refused = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "limits_refused",
            "Requests and connections refused by a limit (docs/security.md, Limits), by limit",
            refused.clone(),
        );
        let cluster_bus_up = Gauge::default();
        registry.register(
            "cluster_bus_up",
            "1 while this node is connected to the cluster's NATS bus",
            cluster_bus_up.clone(),
        );
        let cluster_bus_reconnects = Counter::default();
        registry.register(
            "cluster_bus_reconnects",
            "Times this node's connection to the cluster's bus came back after it was lost",
            cluster_bus_reconnects.clone(),
        );
        let cluster_changes_applied = Counter::default();
        registry.register(
            "cluster_changes_applied",
            "Changes other nodes made (links, sign-ins, policy) applied on this node",
            cluster_changes_applied.clone(),
        );
        let cluster_change_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "cluster_change_delay_seconds",
            "From a change leaving another node to its application on this one (relay latency of the bus)",
            cluster_change_seconds.clone(),
        );
        let cluster_nodes_live = Gauge::default();
        registry.register(
            "cluster_nodes_live",
            "Nodes of the cluster whose heartbeat is current, this one included",
            cluster_nodes_live.clone(),
        );
        let cluster_relay_seconds = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        registry.register(
            "cluster_relay_seconds",
            "From a relayed signaling message leaving one node to its handling on another (a connection and the node hosting its call)",
            cluster_relay_seconds.clone(),
        );
        Self {
            registry,
            signaling_connections,
            refused,
            cluster_bus_up,
            cluster_bus_reconnects,
            cluster_changes_applied,
            cluster_change_seconds,
            cluster_nodes_live,
            cluster_relay_seconds,
            mail_outbox,
            mail_attempts,
            mail_delivery_seconds,
            plugin_calls,
            plugin_durations,
            plugin_dropped,
            plugin_disabled,
            requests,
            durations,
            links_created,
            live_calls,
            call_participants,
            media_packets_in,
            media_packets_forwarded,
            media_peer_connections,
            media_panics,
            media_events_dropped,
            media_engine_up,
            media_tcp_connections,
        }
    }
}

impl Metrics {
    /// Counts and times one plugin invocation.
    pub fn plugin_invocation(&self, plugin: &str, hook: &str, outcome: &str, seconds: f64) {
        self.plugin_calls
            .get_or_create(&PluginCallLabels {
                plugin: plugin.into(),
                hook: hook.into(),
                outcome: outcome.into(),
            })
            .inc();
        if outcome != "busy" {
            self.plugin_durations
                .get_or_create(&PluginLabels {
                    plugin: plugin.into(),
                })
                .observe(seconds);
        }
    }

    pub fn plugin_events_dropped(&self, plugin: &str) {
        self.plugin_dropped
            .get_or_create(&PluginLabels {
                plugin: plugin.into(),
            })
            .inc();
    }

    pub fn plugin_auto_disabled(&self, plugin: &str) {
        self.plugin_disabled
            .get_or_create(&PluginLabels {
                plugin: plugin.into(),
            })
            .inc();
    }

    /// The outbox's counts by status.
    pub fn set_mail_outbox(&self, counts: OutboxCounts) {
        for (status, n) in [
            (OutboxStatus::Queued, counts.queued),
            (OutboxStatus::Sent, counts.sent),
            (OutboxStatus::Failed, counts.failed),
        ] {
            self.mail_outbox
                .get_or_create(&StatusLabels {
                    status: status.as_str(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// One delivery attempt's outcome (`sent`, `retry` or `failed`); for a sent
    /// message, how long it waited since it was queued.
    pub fn mail_attempt(&self, outcome: &'static str, queued_for: Option<f64>) {
        self.mail_attempts
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        if let Some(seconds) = queued_for {
            self.mail_delivery_seconds.observe(seconds.max(0.0));
        }
    }

    /// Sets the count of refusals by the limit `reason` (for counts kept elsewhere,
    /// such as the media threads').
    pub fn set_refused(&self, reason: &'static str, count: u64) {
        self.refused
            .get_or_create(&ReasonLabels { reason })
            .inner()
            .store(count, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts one request or connection refused by the limit `reason`.
    pub fn count_refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// A request method as a label: anything but the standard methods is `other`, so a
/// client inventing methods cannot add series.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Middleware: counts and times every request by its route template (not its path,
/// which would leak link ids into metrics and explode cardinality).
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .durations
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    state
        .metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
