//! Mail delivery: what the worker records about each message.
//!
//! - `message_id`: the `Message-ID` header, fixed when the message is queued, so a
//!   retry after an uncertain attempt carries the same id and receivers can tell;
//! - `claim`: the delivery attempt that holds the message (a random token), so two
//!   workers never send the same message at once;
//! - `sent_at`: when the SMTP server (or the file outbox) accepted it;
//! - an index on `(plugin, created_at)`: a plugin's hourly mail limit is counted
//!   from the outbox itself, so it holds across restarts.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MailOutbox {
    Table,
    Plugin,
    CreatedAt,
    MessageId,
    Claim,
    SentAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            ColumnDef::new(MailOutbox::MessageId)
                .string_len(255)
                .to_owned(),
            ColumnDef::new(MailOutbox::Claim).string_len(64).to_owned(),
            ColumnDef::new(MailOutbox::SentAt)
                .timestamp_with_time_zone()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(MailOutbox::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_mail_outbox_plugin_created")
                    .table(MailOutbox::Table)
                    .col(MailOutbox::Plugin)
                    .col(MailOutbox::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_mail_outbox_plugin_created")
                    .table(MailOutbox::Table)
                    .to_owned(),
            )
            .await?;
        for column in [MailOutbox::SentAt, MailOutbox::Claim, MailOutbox::MessageId] {
            manager
                .alter_table(
                    Table::alter()
                        .table(MailOutbox::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
