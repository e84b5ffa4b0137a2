//! What a cluster needs to place calls by load and to bring a call back on
//! another node when its host dies:
//! - `cluster_nodes.cpu_permille`: the share of one core a node's process used
//!   over its last heartbeat, in thousandths;
//! - `call_seats`: each participant's place on a call hosted by a node of a
//!   cluster (the SHA-256 of their resume token, who they are, their name and when
//!   they joined), so that another node can seat them again without the lobby.
//!   A row goes when its participant leaves or the call ends. A single node never
//!   writes here.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ClusterNodes {
    Table,
    CpuPermille,
}

#[derive(DeriveIden)]
enum CallSeats {
    Table,
    TokenHash,
    LinkPk,
    NodeId,
    UserId,
    GuestKey,
    Name,
    IsOwner,
    JoinedAt,
    SavedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(ClusterNodes::Table)
                    .add_column(
                        ColumnDef::new(ClusterNodes::CpuPermille)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CallSeats::Table)
                    .col(
                        ColumnDef::new(CallSeats::TokenHash)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(CallSeats::LinkPk).big_integer().not_null())
                    .col(ColumnDef::new(CallSeats::NodeId).string_len(64).not_null())
                    .col(ColumnDef::new(CallSeats::UserId).big_integer().null())
                    .col(ColumnDef::new(CallSeats::GuestKey).string_len(64).null())
                    .col(ColumnDef::new(CallSeats::Name).string_len(256).not_null())
                    .col(ColumnDef::new(CallSeats::IsOwner).boolean().not_null())
                    .col(
                        ColumnDef::new(CallSeats::JoinedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(CallSeats::SavedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_call_seats_link")
                    .table(CallSeats::Table)
                    .col(CallSeats::LinkPk)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CallSeats::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(ClusterNodes::Table)
                    .drop_column(ClusterNodes::CpuPermille)
                    .to_owned(),
            )
            .await
    }
}
