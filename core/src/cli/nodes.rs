//! `confab node`: the nodes of a cluster, as their heartbeats left them.

use clap::Subcommand;
use confab_core::Clock;
use confab_core::cluster::is_live;
use confab_core::store::Store;
use serde::Serialize;

use crate::*;

#[derive(Subcommand)]
pub(crate) enum NodeCommand {
    /// Every node of the cluster: live (heartbeat current), draining or lost.
    List {
        #[command(flatten)]
        out: Output,
    },
}

#[derive(Serialize)]
struct NodeRow {
    node_id: String,
    /// `live`, `draining` or `lost` (no heartbeat for 5 s).
    state: &'static str,
    url: String,
    started_at: chrono::DateTime<chrono::Utc>,
    heartbeat_at: chrono::DateTime<chrono::Utc>,
    heartbeat_age_ms: i64,
    calls: i32,
    connections: i32,
}

pub(crate) async fn node_command(
    store: &Store,
    clock: &dyn Clock,
    cmd: NodeCommand,
) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::List { out } => {
            let now = clock.now();
            let rows: Vec<NodeRow> = store
                .cluster_nodes()
                .await?
                .into_iter()
                .map(|n| NodeRow {
                    state: if !is_live(n.heartbeat_at, now) {
                        "lost"
                    } else if n.draining {
                        "draining"
                    } else {
                        "live"
                    },
                    heartbeat_age_ms: (now - n.heartbeat_at).num_milliseconds().max(0),
                    node_id: n.node_id,
                    url: n.url,
                    started_at: n.started_at,
                    heartbeat_at: n.heartbeat_at,
                    calls: n.calls,
                    connections: n.participants,
                })
                .collect();
            print(out, &rows, || {
                if rows.is_empty() {
                    return "No nodes: this server runs as a single node (cluster.nats_url is empty), or none has started.".into();
                }
                let mut text = format!(
                    "{:<28} {:<9} {:>10} {:>6} {:>12}  {}",
                    "NODE", "STATE", "HEARTBEAT", "CALLS", "CONNECTIONS", "URL"
                );
                for r in &rows {
                    let age = format!("{:.1} s ago", r.heartbeat_age_ms as f64 / 1000.0);
                    text.push_str(&format!(
                        "\n{:<28} {:<9} {:>10} {:>6} {:>12}  {}",
                        r.node_id, r.state, age, r.calls, r.connections, r.url
                    ));
                }
                text
            })
        }
    }
}
