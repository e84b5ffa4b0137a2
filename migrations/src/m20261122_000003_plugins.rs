//! Plugins: each plugin's key-value data, and why a plugin was switched off
//! automatically.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum PluginKv {
    Table,
    Plugin,
    Key,
    Value,
    Size,
    ExpiresAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PluginStatus {
    Table,
    Plugin,
    DisabledReason,
    DisabledAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PluginKv::Table)
                    .col(ColumnDef::new(PluginKv::Plugin).string_len(64).not_null())
                    .col(ColumnDef::new(PluginKv::Key).string_len(256).not_null())
                    .col(ColumnDef::new(PluginKv::Value).blob().not_null())
                    .col(ColumnDef::new(PluginKv::Size).big_integer().not_null())
                    .col(ColumnDef::new(PluginKv::ExpiresAt).timestamp_with_time_zone())
                    .col(
                        ColumnDef::new(PluginKv::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(Index::create().col(PluginKv::Plugin).col(PluginKv::Key))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_plugin_kv_expires_at")
                    .table(PluginKv::Table)
                    .col(PluginKv::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(PluginStatus::Table)
                    .col(
                        ColumnDef::new(PluginStatus::Plugin)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(PluginStatus::DisabledReason)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(PluginStatus::DisabledAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PluginStatus::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(PluginKv::Table).to_owned())
            .await
    }
}
