//! The rows of a cluster's nodes (`cluster_nodes`): each node's heartbeat, load
//! and drain state, read by the other nodes and by `confab node list`.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::{Store, StoreResult, call_seat, cluster_node, plugin_timer_run};

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
    pub cpu_permille: i32,
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
            cpu_permille: Set(beat.cpu_permille),
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
                        cluster_node::Column::CpuPermille,
                    ])
                    // A drain asked of this process (`set_draining`) holds until
                    // it ends; a new process with the node id starts afresh.
                    .value(
                        cluster_node::Column::Draining,
                        Expr::cust(
                            "excluded.draining OR (cluster_nodes.instance = excluded.instance AND cluster_nodes.draining)",
                        ),
                    )
                    .action_and_where(ours)
                    .to_owned(),
            )
            .exec_without_returning(self.conn())
            .await?;
        Ok(written == 1)
    }

    /// Asks node `node_id` to drain (it sees it at its next heartbeat); false
    /// when no such node has a row.
    pub async fn set_draining(&self, node_id: &str) -> StoreResult<bool> {
        let _turn = self.write_turn().await;
        let updated = cluster_node::Entity::update_many()
            .col_expr(cluster_node::Column::Draining, Expr::value(true))
            .filter(cluster_node::Column::NodeId.eq(node_id))
            .exec(self.conn())
            .await?;
        Ok(updated.rows_affected == 1)
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

    /// Claims the call of link `link_pk` for `node_id` (again, if it holds it),
    /// unless another node whose heartbeat is newer than `lost_before` holds it; returns the node that holds
    /// it now and its epoch (bumped each time the call changes hands). One
    /// statement: of nodes racing for a call, one wins and all see the same
    /// holder. PostgreSQL only (a cluster is refused on SQLite).
    pub async fn claim_call(
        &self,
        link_pk: i64,
        node_id: &str,
        now: DateTime<Utc>,
        lost_before: DateTime<Utc>,
    ) -> StoreResult<(String, i64)> {
        use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
        self.conn()
            .execute(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "INSERT INTO cluster_calls (link_pk, node_id, epoch, claimed_at) \
                 VALUES ($1, $2, 1, $3) \
                 ON CONFLICT (link_pk) DO UPDATE \
                 SET node_id = EXCLUDED.node_id, claimed_at = EXCLUDED.claimed_at, \
                     epoch = CASE WHEN cluster_calls.node_id = EXCLUDED.node_id \
                             THEN cluster_calls.epoch ELSE cluster_calls.epoch + 1 END \
                 WHERE cluster_calls.node_id = EXCLUDED.node_id OR NOT EXISTS ( \
                     SELECT 1 FROM cluster_nodes n \
                     WHERE n.node_id = cluster_calls.node_id AND n.heartbeat_at >= $4)",
                [
                    link_pk.into(),
                    node_id.into(),
                    now.into(),
                    lost_before.into(),
                ],
            ))
            .await?;
        self.call_host(link_pk).await
    }

    /// Places the call of link `link_pk`: the node that hosts it, if that node is
    /// live (heartbeat at or after `lost_before`); else the least-loaded live node
    /// that is not draining (the lowest load: participants plus one for every 3 %
    /// of a core its process uses; then the fewest calls; `asking` on a tie, and
    /// when no node qualifies)
    /// claims it, in one statement, as [`Store::claim_call`]. Returns the host.
    pub async fn place_call(
        &self,
        link_pk: i64,
        asking: &str,
        now: DateTime<Utc>,
        lost_before: DateTime<Utc>,
    ) -> StoreResult<(String, i64)> {
        use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
        self.conn()
            .execute(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "INSERT INTO cluster_calls (link_pk, node_id, epoch, claimed_at) \
                 VALUES ($1, COALESCE(( \
                     SELECT n.node_id FROM cluster_nodes n \
                     WHERE n.heartbeat_at >= $4 AND NOT n.draining \
                     ORDER BY n.participants + n.cpu_permille / 30, n.calls, \
                              (n.node_id = $2) DESC, n.node_id \
                     LIMIT 1), $2), 1, $3) \
                 ON CONFLICT (link_pk) DO UPDATE \
                 SET node_id = EXCLUDED.node_id, claimed_at = EXCLUDED.claimed_at, \
                     epoch = cluster_calls.epoch + 1 \
                 WHERE NOT EXISTS ( \
                     SELECT 1 FROM cluster_nodes n \
                     WHERE n.node_id = cluster_calls.node_id AND n.heartbeat_at >= $4)",
                [
                    link_pk.into(),
                    asking.into(),
                    now.into(),
                    lost_before.into(),
                ],
            ))
            .await?;
        self.call_host(link_pk).await
    }

    /// The host of link `link_pk`'s call and its epoch, as claimed.
    async fn call_host(&self, link_pk: i64) -> StoreResult<(String, i64)> {
        use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
        let row = self
            .conn()
            .query_one(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT node_id, epoch FROM cluster_calls WHERE link_pk = $1",
                [link_pk.into()],
            ))
            .await?
            .ok_or_else(|| {
                sea_orm::DbErr::RecordNotFound(format!("cluster_calls row of link {link_pk}"))
            })?;
        Ok((row.try_get("", "node_id")?, row.try_get("", "epoch")?))
    }

    /// The call of link `link_pk` ended on `node_id` at `ended_at`: the next node
    /// asked for it may host it (unless `node_id` claimed it again since).
    pub async fn release_call(
        &self,
        link_pk: i64,
        node_id: &str,
        ended_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
        self.conn()
            .execute(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "DELETE FROM cluster_calls \
                 WHERE link_pk = $1 AND node_id = $2 AND claimed_at <= $3",
                [link_pk.into(), node_id.into(), ended_at.into()],
            ))
            .await?;
        // The call is over: nobody's place on it is kept any more.
        call_seat::Entity::delete_many()
            .filter(call_seat::Column::LinkPk.eq(link_pk))
            .filter(call_seat::Column::SavedAt.lte(ended_at))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// Gives up every call `node_id` hosts (a draining node whose time is up), so
    /// that the next node asked places them again; their kept places stay, for the
    /// new hosts to seat everyone again.
    pub async fn release_calls_of(&self, node_id: &str) -> StoreResult<()> {
        use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
        self.conn()
            .execute(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "DELETE FROM cluster_calls WHERE node_id = $1",
                [node_id.into()],
            ))
            .await?;
        Ok(())
    }

    /// Keeps `seat` (a participant's place on a call this node hosts), replacing
    /// what was kept for the same resume token.
    pub async fn save_seat(&self, seat: call_seat::Model) -> StoreResult<()> {
        call_seat::Entity::insert(call_seat::ActiveModel::from(seat))
            .on_conflict(
                OnConflict::column(call_seat::Column::TokenHash)
                    .update_columns([
                        call_seat::Column::NodeId,
                        call_seat::Column::Name,
                        call_seat::Column::SavedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(self.conn())
            .await?;
        Ok(())
    }

    /// The participant whose resume token hashes to `token_hash` left the call of
    /// `link_pk` for good.
    pub async fn forget_seat(&self, link_pk: i64, token_hash: &str) -> StoreResult<()> {
        call_seat::Entity::delete_many()
            .filter(call_seat::Column::LinkPk.eq(link_pk))
            .filter(call_seat::Column::TokenHash.eq(token_hash))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    /// The place kept on the call of `link_pk` for the resume token that hashes to
    /// `token_hash`, if any.
    pub async fn seat(
        &self,
        link_pk: i64,
        token_hash: &str,
    ) -> StoreResult<Option<call_seat::Model>> {
        Ok(call_seat::Entity::find_by_id(token_hash.to_string())
            .filter(call_seat::Column::LinkPk.eq(link_pk))
            .one(self.conn())
            .await?)
    }

    /// Forgets places kept since before `before` (calls whose every node died).
    pub async fn prune_seats(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let done = call_seat::Entity::delete_many()
            .filter(call_seat::Column::SavedAt.lt(before))
            .exec(self.conn())
            .await?;
        Ok(done.rows_affected)
    }
}
