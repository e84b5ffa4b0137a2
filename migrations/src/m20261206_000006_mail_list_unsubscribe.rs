//! One-click unsubscribe (RFC 8058): the URL a message's `List-Unsubscribe`
//! header points to, for mail a recipient may ask not to get again (a plugin's
//! invitations). None for the server's own mail.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MailOutbox {
    Table,
    ListUnsubscribe,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(MailOutbox::Table)
                    .add_column(ColumnDef::new(MailOutbox::ListUnsubscribe).string_len(2048))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(MailOutbox::Table)
                    .drop_column(MailOutbox::ListUnsubscribe)
                    .to_owned(),
            )
            .await
    }
}
