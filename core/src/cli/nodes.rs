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
    /// Drains a node: it takes no new calls (other nodes get them), lets its calls
    /// finish for up to cluster.drain_timeout_secs, then closes the connections of
    /// those still going (each page comes back through another node) and exits 0.
    Drain {
        /// The node's id, as `confab node list` shows it.
        node_id: String,
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
    /// Participants on the calls the node hosts.
    participants: i32,
    /// Share of one core its process used over the last heartbeat, in percent.
    cpu_percent: f64,
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
                    participants: n.participants,
                    cpu_percent: f64::from(n.cpu_permille) / 10.0,
                })
                .collect();
            print(out, &rows, || {
                if rows.is_empty() {
                    return "No nodes: this server runs as a single node (cluster.nats_url is empty), or none has started.".into();
                }
                let mut text = format!(
                    "{:<28} {:<9} {:>10} {:>6} {:>12} {:>6}  {}",
                    "NODE", "STATE", "HEARTBEAT", "CALLS", "PARTICIPANTS", "CPU", "URL"
                );
                for r in &rows {
                    let age = format!("{:.1} s ago", r.heartbeat_age_ms as f64 / 1000.0);
                    let cpu = format!("{:.0} %", r.cpu_percent);
                    text.push_str(&format!(
                        "\n{:<28} {:<9} {:>10} {:>6} {:>12} {:>6}  {}",
                        r.node_id, r.state, age, r.calls, r.participants, cpu, r.url
                    ));
                }
                text
            })
        }
        NodeCommand::Drain { node_id } => {
            let live = store
                .cluster_nodes()
                .await?
                .into_iter()
                .any(|n| n.node_id == node_id && is_live(n.heartbeat_at, clock.now()));
            if !live || !store.set_draining(&node_id).await? {
                anyhow::bail!(
                    "no live node {node_id:?}: `confab node list` shows the nodes and their state"
                );
            }
            println!(
                "{node_id} drains: it takes no new calls, and stops once its calls end (within cluster.drain_timeout_secs)."
            );
            Ok(())
        }
    }
}
