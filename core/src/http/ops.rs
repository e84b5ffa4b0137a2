//! Health, readiness and Prometheus metrics.

use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is up.
async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// The process can serve calls: the database answers and, where this node carries
/// media, the media engine runs. On a node of a cluster it also says whether the
/// bus is connected; a lost bus does not make the node unready (every node loses
/// it alike, and calls on a node go on without it), it says `degraded`. A draining
/// node is unready (`draining`): a load balancer sends it no new connections, while
/// those it holds go on.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let database = match state.store.ping().await {
        Ok(()) => "ok",
        Err(err) => {
            tracing::warn!(error = %err, "readiness check: database unavailable");
            "unreachable"
        }
    };
    let media = match &state.media {
        None => "off",
        Some(media) if media.running() => "ok",
        Some(_) => {
            tracing::warn!("readiness check: the media engine has stopped");
            "stopped"
        }
    };
    let bus = match &state.cluster {
        None => "off",
        Some(cluster) if cluster.bus_connected() => "ok",
        Some(_) => "disconnected",
    };
    let ready = database == "ok" && media != "stopped";
    let draining = state.cluster.as_ref().is_some_and(|c| c.is_draining());
    let (code, status) = if !ready {
        (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
    } else if draining {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else if bus == "disconnected" {
        (StatusCode::OK, "degraded")
    } else {
        (StatusCode::OK, "ready")
    };
    (
        code,
        axum::Json(serde_json::json!({
            "status": status,
            "database": database,
            "media": media,
            "bus": bus,
        })),
    )
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let live = i64::try_from(state.calls.live_calls()).unwrap_or(i64::MAX);
    state.metrics.live_calls.set(live);
    let participants = i64::try_from(state.calls.participants()).unwrap_or(i64::MAX);
    state.metrics.call_participants.set(participants);
    state
        .metrics
        .signaling_connections
        .set(i64::from(state.connections.total()));
    match state.store.outbox_counts().await {
        Ok(counts) => state.metrics.set_mail_outbox(counts),
        Err(err) => tracing::warn!(error = %err, "metrics: cannot count the mail outbox"),
    }
    if let Some(media) = &state.media {
        let stats = media.stats();
        let m = &state.metrics;
        m.media_packets_in
            .inner()
            .store(stats.packets_in.load(Ordering::Relaxed), Ordering::Relaxed);
        m.media_packets_forwarded.inner().store(
            stats.packets_forwarded.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        m.media_peer_connections
            .set(i64::try_from(stats.peer_connections.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        m.media_panics
            .inner()
            .store(stats.panics.load(Ordering::Relaxed), Ordering::Relaxed);
        m.media_events_dropped.inner().store(
            stats.events_dropped.load(Ordering::Relaxed),
            Ordering::Relaxed,
        );
        m.media_engine_up.set(i64::from(media.running()));
        m.media_tcp_connections
            .set(i64::try_from(stats.tcp_connections.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
        m.set_refused(
            "ice_tcp_connections",
            stats.tcp_refused.load(Ordering::Relaxed),
        );
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
