//! The mail outbox: every message is written here before anything tries to send it,
//! so a crash or an SMTP outage loses nothing. Attachments are rows of their own and
//! go with their message.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MailOutbox {
    Table,
    Id,
    /// JSON arrays of addresses (`to` and `cc`).
    Recipients,
    Cc,
    ReplyTo,
    Subject,
    BodyText,
    BodyHtml,
    /// The plugin that queued the message; NULL for the server's own mail.
    Plugin,
    /// `queued`, `sent` or `failed`.
    Status,
    Attempts,
    NextAttemptAt,
    LastError,
    CreatedAt,
}

#[derive(DeriveIden)]
enum MailOutboxAttachments {
    Table,
    Id,
    MessageId,
    Position,
    Filename,
    ContentType,
    Data,
    InlineAlternative,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MailOutbox::Table)
                    .col(
                        ColumnDef::new(MailOutbox::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(MailOutbox::Recipients).text().not_null())
                    .col(ColumnDef::new(MailOutbox::Cc).text().not_null())
                    .col(ColumnDef::new(MailOutbox::ReplyTo).string_len(512))
                    .col(ColumnDef::new(MailOutbox::Subject).text().not_null())
                    .col(ColumnDef::new(MailOutbox::BodyText).text().not_null())
                    .col(ColumnDef::new(MailOutbox::BodyHtml).text())
                    .col(ColumnDef::new(MailOutbox::Plugin).string_len(64))
                    .col(ColumnDef::new(MailOutbox::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(MailOutbox::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(MailOutbox::NextAttemptAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(MailOutbox::LastError).text())
                    .col(
                        ColumnDef::new(MailOutbox::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        // What the delivery worker asks: queued messages that are due.
        manager
            .create_index(
                Index::create()
                    .name("idx_mail_outbox_status_next_attempt_at")
                    .table(MailOutbox::Table)
                    .col(MailOutbox::Status)
                    .col(MailOutbox::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MailOutboxAttachments::Table)
                    .col(
                        ColumnDef::new(MailOutboxAttachments::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(MailOutboxAttachments::MessageId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MailOutboxAttachments::Position)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MailOutboxAttachments::Filename)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MailOutboxAttachments::ContentType)
                            .string_len(255)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MailOutboxAttachments::Data)
                            .blob()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(MailOutboxAttachments::InlineAlternative)
                            .boolean()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_mail_outbox_attachments_message")
                            .from(
                                MailOutboxAttachments::Table,
                                MailOutboxAttachments::MessageId,
                            )
                            .to(MailOutbox::Table, MailOutbox::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_mail_outbox_attachments_message")
                    .table(MailOutboxAttachments::Table)
                    .col(MailOutboxAttachments::MessageId)
                    .col(MailOutboxAttachments::Position)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(MailOutboxAttachments::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(MailOutbox::Table).to_owned())
            .await
    }
}
