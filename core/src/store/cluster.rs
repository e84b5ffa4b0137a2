//! The rows of a cluster's nodes (`cluster_nodes`): each node's heartbeat, load
//! and drain state, read by the other nodes and by `confab node list`.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::{Store, StoreResult, cluster_node, plugin_timer_run};

/// What a node says of itself every heartbeat.
#[derive(Debug, Clone)]
pub struct NodeBeat {
    pub node_id: String,
    /// Random per process (see [`cluster_node::Model::instance`]).
    pub instance: String,
    pub url: String,
    pub started_at: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub calls: i32,
    pub participants: i32,
    pub draining: bool,
}

impl Store {
    /// Writes `beat` to the node's row, unless another process holds the node id:
    /// a row with another instance whose heartbeat is newer than `stale_before`.
    /// Returns whether the row is this process's.
    pub async fn node_heartbeat(
        &self,
        beat: &NodeBeat,
        stale_before: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let row = cluster_node::ActiveModel {
            node_id: Set(beat.node_id.clone()),
            instance: Set(beat.instance.clone()),
            url: Set(beat.url.clone()),
            started_at: Set(beat.started_at),
            heartbeat_at: Set(beat.now),
            calls: Set(beat.calls),
            participants: Set(beat.participants),
            draining: Set(beat.draining),
        };
        let ours = Expr::col((cluster_node::Entity, cluster_node::Column::Instance))
            .eq(beat.instance.clone())
            .or(
                Expr::col((cluster_node::Entity, cluster_node::Column::HeartbeatAt))
                    .lt(stale_before),
            );
        let written = cluster_node::Entity::insert(row)
            .on_conflict(
                OnConflict::column(cluster_node::Column::NodeId)
                    .update_columns([
                        cluster_node::Column::Instance,
                        cluster_node::Column::Url,
                        cluster_node::Column::StartedAt,
                        cluster_node::Column::HeartbeatAt,
                        cluster_node::Column::Calls,
                        cluster_node::Column::Participants,
                        cluster_node::Column::Draining,
                    ])
                    .action_and_where(ours)
                    .to_owned(),
            )
            .exec_without_returning(self.conn())
            .await?;
        Ok(written == 1)
    }

    /// Every node that ever joined and did not leave, by node id.
    pub async fn cluster_nodes(&self) -> StoreResult<Vec<cluster_node::Model>> {
        Ok(cluster_node::Entity::find()
            .order_by_asc(cluster_node::Column::NodeId)
            .all(self.conn())
            .await?)
    }

    /// Removes the node's row when this process (`instance`) still holds it: the
    /// node stopped on purpose.
    pub async fn leave_cluster(&self, node_id: &str, instance: &str) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        cluster_node::Entity::delete_many()
            .filter(cluster_node::Column::NodeId.eq(node_id))
            .filter(cluster_node::Column::Instance.eq(instance))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Claims a run of `plugin`'s `timer` for `node_id` at `run_at`: true when no
    /// node ran it at or after `threshold` (the run is this node's to make), false
    /// when another node did.
    pub async fn claim_timer_run(
        &self,
        plugin: &str,
        timer: &str,
        run_at: DateTime<Utc>,
        threshold: DateTime<Utc>,
        node_id: &str,
    ) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let row = plugin_timer_run::ActiveModel {
            plugin: Set(plugin.to_string()),
            timer: Set(timer.to_string()),
            last_run: Set(run_at),
            node_id: Set(node_id.to_string()),
        };
        let due =
            Expr::col((plugin_timer_run::Entity, plugin_timer_run::Column::LastRun)).lt(threshold);
        let written = plugin_timer_run::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    plugin_timer_run::Column::Plugin,
                    plugin_timer_run::Column::Timer,
                ])
                .update_columns([
                    plugin_timer_run::Column::LastRun,
                    plugin_timer_run::Column::NodeId,
                ])
                .action_and_where(due)
                .to_owned(),
            )
            .exec_without_returning(self.conn())
            .await?;
        Ok(written == 1)
    }
}
