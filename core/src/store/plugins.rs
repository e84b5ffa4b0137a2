//! Plugins' key-value data and automatic switch-offs.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, Func, OnConflict, SimpleExpr};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};

use super::{Store, StoreResult, plugin_kv, plugin_status};

/// Why a value was not stored.
#[derive(Debug, PartialEq, Eq)]
pub enum KvSetOutcome {
    Stored,
    /// Storing it would take the plugin over its quota (bytes in use given).
    OverQuota {
        used: i64,
    },
}

/// What each plugin's entries take up, by plugin: kept up to date by the writes
/// this process makes, so a write costs a few indexed lookups instead of a sum
/// over all of the plugin's entries. A plugin not in the map (after a start or a
/// purge) is summed once, after its expired entries are deleted, so expired
/// entries never count. Another process writing the same database (a second node)
/// is not seen: its writes count from this process's next sum (after a purge).
pub(crate) type KvUsage = std::collections::HashMap<String, i64>;

/// `SUM(size)` as a BIGINT: PostgreSQL sums BIGINTs into a NUMERIC.
fn bytes_used() -> SimpleExpr {
    Expr::col(plugin_kv::Column::Size)
        .sum()
        .cast_as(Alias::new("BIGINT"))
}

fn live(now: DateTime<Utc>) -> Condition {
    Condition::any()
        .add(plugin_kv::Column::ExpiresAt.is_null())
        .add(plugin_kv::Column::ExpiresAt.gt(now))
}

impl Store {
    pub async fn plugin_kv_get(
        &self,
        plugin: &str,
        key: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Vec<u8>>> {
        Ok(plugin_kv::Entity::find()
            .filter(plugin_kv::Column::Plugin.eq(plugin))
            .filter(plugin_kv::Column::Key.eq(key))
            .filter(live(now))
            .one(self.conn())
            .await?
            .map(|row| row.value))
    }

    /// The live values under `keys` (missing and expired ones are not in the map).
    pub async fn plugin_kv_get_many(
        &self,
        plugin: &str,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> StoreResult<std::collections::HashMap<String, Vec<u8>>> {
        let mut found = std::collections::HashMap::with_capacity(keys.len());
        // Well below every database's limit on bound parameters.
        for chunk in keys.chunks(500) {
            let rows = plugin_kv::Entity::find()
                .filter(plugin_kv::Column::Plugin.eq(plugin))
                .filter(plugin_kv::Column::Key.is_in(chunk.iter().cloned()))
                .filter(live(now))
                .all(self.conn())
                .await?;
            found.extend(rows.into_iter().map(|row| (row.key, row.value)));
        }
        Ok(found)
    }

    /// Stores `value` under `key` unless the plugin's entries would then exceed
    /// `quota` bytes (keys plus values; expired entries do not count).
    pub async fn plugin_kv_set(
        &self,
        plugin: &str,
        key: &str,
        value: Vec<u8>,
        expires_at: Option<DateTime<Utc>>,
        quota: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<KvSetOutcome> {
        self.plugin_kv_set_many(
            plugin,
            vec![(key.to_string(), value)],
            expires_at,
            quota,
            now,
        )
        .await
    }

    /// Stores every entry (keys distinct), all in one transaction, unless the
    /// plugin's entries would then exceed `quota` bytes; then none.
    pub async fn plugin_kv_set_many(
        &self,
        plugin: &str,
        entries: Vec<(String, Vec<u8>)>,
        expires_at: Option<DateTime<Utc>>,
        quota: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<KvSetOutcome> {
        if entries.is_empty() {
            return Ok(KvSetOutcome::Stored);
        }
        let mut usage = self.kv_usage.lock().await;
        let _turn = self.write_turn().await;
        let txn = self.conn().begin().await?;
        if self.shared_with_other_nodes() {
            // Other nodes write this plugin's entries too: one writer per plugin
            // at a time across the cluster, each counting what is stored.
            usage.remove(plugin);
            self.kv_lock_across_nodes(&txn, plugin).await?;
        }
        let keys: Vec<String> = entries.iter().map(|(k, _)| k.clone()).collect();
        let size: i64 = entries
            .iter()
            .map(|(k, v)| (k.len() + v.len()) as i64)
            .sum();
        // What the others take: from the running total when there is one (it may
        // still count entries that expired since), exactly otherwise or when that
        // total says the quota is reached.
        let mut besides = match usage.get(plugin) {
            Some(total) => Some(total - self.kv_sizes_of(&txn, plugin, &keys).await?),
            None => None,
        };
        if besides.is_none_or(|b| b + size > quota) {
            besides = Some(self.kv_exact_besides(&txn, plugin, &keys, now).await?);
        }
        let besides = besides.unwrap_or(0);
        if besides + size > quota {
            usage.insert(
                plugin.to_string(),
                besides + self.kv_sizes_of(&txn, plugin, &keys).await?,
            );
            txn.commit().await?;
            return Ok(KvSetOutcome::OverQuota { used: besides });
        }
        let rows: Vec<plugin_kv::ActiveModel> = entries
            .into_iter()
            .map(|(key, value)| plugin_kv::ActiveModel {
                plugin: Set(plugin.to_string()),
                size: Set((key.len() + value.len()) as i64),
                key: Set(key),
                value: Set(value),
                expires_at: Set(expires_at),
                updated_at: Set(now),
            })
            .collect();
        // Small statements: SQLite allows a limited number of bound parameters.
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<_> = rows.by_ref().take(100).collect();
            plugin_kv::Entity::insert_many(chunk)
                .on_conflict(
                    OnConflict::columns([plugin_kv::Column::Plugin, plugin_kv::Column::Key])
                        .update_columns([
                            plugin_kv::Column::Value,
                            plugin_kv::Column::Size,
                            plugin_kv::Column::ExpiresAt,
                            plugin_kv::Column::UpdatedAt,
                        ])
                        .to_owned(),
                )
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        usage.insert(plugin.to_string(), besides + size);
        Ok(KvSetOutcome::Stored)
    }

    /// Holds, until `txn` ends, the lock of `plugin`'s entries that every node of a
    /// cluster takes before counting and writing them (PostgreSQL; a cluster is
    /// refused on SQLite).
    async fn kv_lock_across_nodes(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        plugin: &str,
    ) -> StoreResult<()> {
        use sea_orm::ConnectionTrait;
        if txn.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            txn.execute(sea_orm::Statement::from_sql_and_values(
                sea_orm::DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock(hashtext('confab.plugin_kv.' || $1))",
                [plugin.into()],
            ))
            .await?;
        }
        Ok(())
    }

    /// What the plugin's entries under `keys` take up now (expired or not).
    async fn kv_sizes_of(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        plugin: &str,
        keys: &[String],
    ) -> StoreResult<i64> {
        let mut total = 0;
        for chunk in keys.chunks(500) {
            let sum: Option<i64> = plugin_kv::Entity::find()
                .select_only()
                .column_as(bytes_used(), "used")
                .filter(plugin_kv::Column::Plugin.eq(plugin))
                .filter(plugin_kv::Column::Key.is_in(chunk.iter().cloned()))
                .into_tuple::<Option<i64>>()
                .one(txn)
                .await?
                .flatten();
            total += sum.unwrap_or(0);
        }
        Ok(total)
    }

    /// Deletes the plugin's expired entries, then sums what the others than `keys`
    /// take up.
    async fn kv_exact_besides(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        plugin: &str,
        keys: &[String],
        now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        plugin_kv::Entity::delete_many()
            .filter(plugin_kv::Column::Plugin.eq(plugin))
            .filter(plugin_kv::Column::ExpiresAt.lte(now))
            .exec(txn)
            .await?;
        let all: Option<i64> = plugin_kv::Entity::find()
            .select_only()
            .column_as(bytes_used(), "used")
            .filter(plugin_kv::Column::Plugin.eq(plugin))
            .into_tuple::<Option<i64>>()
            .one(txn)
            .await?
            .flatten();
        Ok(all.unwrap_or(0) - self.kv_sizes_of(txn, plugin, keys).await?)
    }

    pub async fn plugin_kv_delete(&self, plugin: &str, key: &str) -> StoreResult<()> {
        let mut usage = self.kv_usage.lock().await;
        let _turn = self.write_turn().await;
        let txn = self.conn().begin().await?;
        let freed = self.kv_sizes_of(&txn, plugin, &[key.to_string()]).await?;
        plugin_kv::Entity::delete_many()
            .filter(plugin_kv::Column::Plugin.eq(plugin))
            .filter(plugin_kv::Column::Key.eq(key))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        if let Some(total) = usage.get_mut(plugin) {
            *total -= freed;
        }
        Ok(())
    }

    /// Live keys starting with `prefix`, in byte order, after `after`.
    pub async fn plugin_kv_keys(
        &self,
        plugin: &str,
        prefix: &str,
        after: Option<&str>,
        limit: u64,
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<String>> {
        let mut query = plugin_kv::Entity::find()
            .select_only()
            .column(plugin_kv::Column::Key)
            .filter(plugin_kv::Column::Plugin.eq(plugin))
            .filter(live(now));
        if !prefix.is_empty() {
            // substr() compares exactly on both databases (LIKE would treat % and _
            // as wildcards and, on SQLite, ignore case). Its arguments are 32-bit:
            // PostgreSQL has no substr(varchar, integer, bigint).
            let length = i32::try_from(prefix.chars().count()).unwrap_or(i32::MAX);
            let head = Func::cust(Alias::new("substr"))
                .arg(Expr::col(plugin_kv::Column::Key))
                .arg(1i32)
                .arg(length);
            query = query.filter(Expr::expr(head).eq(prefix));
        }
        if let Some(after) = after {
            query = query.filter(plugin_kv::Column::Key.gt(after));
        }
        let keys: Vec<String> = query
            .order_by_asc(plugin_kv::Column::Key)
            .limit(limit)
            .into_tuple()
            .all(self.conn())
            .await?;
        Ok(keys)
    }

    /// Bytes a plugin keeps (live entries).
    pub async fn plugin_kv_usage(&self, plugin: &str, now: DateTime<Utc>) -> StoreResult<i64> {
        let used: Option<i64> = plugin_kv::Entity::find()
            .select_only()
            .column_as(bytes_used(), "used")
            .filter(plugin_kv::Column::Plugin.eq(plugin))
            .filter(live(now))
            .into_tuple::<Option<i64>>()
            .one(self.conn())
            .await?
            .flatten();
        Ok(used.unwrap_or(0))
    }

    /// Deletes entries that expired before `now`.
    pub async fn delete_expired_plugin_kv(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let mut usage = self.kv_usage.lock().await;
        // The totals are summed again on each plugin's next write.
        usage.clear();
        let _turn = self.write_turn().await;
        let res = plugin_kv::Entity::delete_many()
            .filter(plugin_kv::Column::ExpiresAt.lte(now))
            .exec(self.conn())
            .await?;
        Ok(res.rows_affected)
    }

    pub async fn plugin_statuses(&self) -> StoreResult<Vec<plugin_status::Model>> {
        Ok(plugin_status::Entity::find().all(self.conn()).await?)
    }

    pub async fn set_plugin_auto_disabled(
        &self,
        plugin: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        plugin_status::Entity::insert(plugin_status::ActiveModel {
            plugin: Set(plugin.to_string()),
            disabled_reason: Set(reason.to_string()),
            disabled_at: Set(at),
        })
        .on_conflict(
            OnConflict::column(plugin_status::Column::Plugin)
                .update_columns([
                    plugin_status::Column::DisabledReason,
                    plugin_status::Column::DisabledAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(self.conn())
        .await?;
        Ok(())
    }

    pub async fn clear_plugin_auto_disabled(&self, plugin: &str) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        plugin_status::Entity::delete_by_id(plugin.to_string())
            .exec(self.conn())
            .await?;
        Ok(())
    }
}
