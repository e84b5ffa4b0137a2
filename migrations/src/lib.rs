//! Database migrations for Confab.
//!
//! Every migration is written with sea-query's schema builder so that the same
//! code runs on SQLite (the embedded default) and PostgreSQL. The server applies
//! pending migrations at start; `confab migrate` applies them explicitly.

pub use sea_orm_migration::prelude::*;

mod m20261121_000001_foundation;
mod m20261121_000002_members_need_approval;
mod m20261122_000003_plugins;
mod m20261123_000004_mail_outbox;
mod m20261201_000005_mail_delivery;
mod m20261206_000006_mail_list_unsubscribe;
mod m20261207_000007_cluster;
mod m20261208_000008_failover;

/// The ordered list of Confab's migrations.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261121_000001_foundation::Migration),
            Box::new(m20261121_000002_members_need_approval::Migration),
            Box::new(m20261122_000003_plugins::Migration),
            Box::new(m20261123_000004_mail_outbox::Migration),
            Box::new(m20261201_000005_mail_delivery::Migration),
            Box::new(m20261206_000006_mail_list_unsubscribe::Migration),
            Box::new(m20261207_000007_cluster::Migration),
            Box::new(m20261208_000008_failover::Migration),
        ]
    }

    fn migration_table_name() -> DynIden {
        Alias::new("confab_migrations").into_iden()
    }
}
