//! A cluster (several Confab processes on one PostgreSQL database and a NATS bus):
//! `cluster_nodes`, each node's row saying it is alive (its heartbeat) and how
//! loaded it is, and `plugin_timer_runs`, when each plugin timer last ran in the
//! cluster, so that it runs on one node only, and `cluster_calls`, which node hosts
//! each live call. A single node without a cluster bus
//! never writes here.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ClusterNodes {
    Table,
    NodeId,
    Instance,
    Url,
    StartedAt,
    HeartbeatAt,
    Calls,
    Participants,
    Draining,
}

#[derive(DeriveIden)]
enum ClusterCalls {
    Table,
    LinkPk,
    NodeId,
    Epoch,
    ClaimedAt,
}

#[derive(DeriveIden)]
enum PluginTimerRuns {
    Table,
    Plugin,
    Timer,
    LastRun,
    NodeId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ClusterNodes::Table)
                    .col(
                        ColumnDef::new(ClusterNodes::NodeId)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    // A random id per process: a second process started with the
                    // same node id is told apart from the first.
                    .col(
                        ColumnDef::new(ClusterNodes::Instance)
                            .string_len(32)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ClusterNodes::Url)
                            .string_len(2048)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ClusterNodes::StartedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ClusterNodes::HeartbeatAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(ClusterNodes::Calls).integer().not_null())
                    .col(
                        ColumnDef::new(ClusterNodes::Participants)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ClusterNodes::Draining)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ClusterCalls::Table)
                    .col(
                        ColumnDef::new(ClusterCalls::LinkPk)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ClusterCalls::NodeId)
                            .string_len(64)
                            .not_null(),
                    )
                    // Bumped each time another node takes the call over.
                    .col(ColumnDef::new(ClusterCalls::Epoch).big_integer().not_null())
                    .col(
                        ColumnDef::new(ClusterCalls::ClaimedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PluginTimerRuns::Table)
                    .col(
                        ColumnDef::new(PluginTimerRuns::Plugin)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PluginTimerRuns::Timer)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PluginTimerRuns::LastRun)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PluginTimerRuns::NodeId)
                            .string_len(64)
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(PluginTimerRuns::Plugin)
                            .col(PluginTimerRuns::Timer),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ClusterCalls::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(PluginTimerRuns::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ClusterNodes::Table).to_owned())
            .await
    }
}
