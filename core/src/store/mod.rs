//! Persistence: sea-orm entities and the queries on them. The only code that talks SQL.
//!
//! [`Store`] wraps one connection pool. The same queries run on SQLite (the embedded
//! default, file created on first start, WAL journal) and PostgreSQL.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, SqlErr};

mod cluster;
pub mod entities;
mod events;
mod link_cache;
mod links;
mod outbox;
mod plugins;
mod policy;
mod sessions;
mod tokens;
mod users;

pub use cluster::NodeBeat;
pub use entities::{
    api_token, call_event, call_seat, cluster_node, link, mail_outbox, mail_outbox_attachment,
    org_policy, plugin_kv, plugin_status, plugin_timer_run, session, user,
};
/// How long a link read stays cached on a single node.
pub use link_cache::TTL as LINK_CACHE_TTL;
pub use links::{LinkFilter, LinkPage, LinkUpdate, NewLinkRow, ScheduleRow};
pub use outbox::{
    DeliveryOutcome, NewAttachment, NewMail, OutboxCounts, OutboxMessage, OutboxStatus,
};
pub use plugins::KvSetOutcome;

/// A database failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique constraint was violated (e.g. an email already in use).
    #[error("already exists")]
    Conflict,
    #[error("database error: {0}")]
    Db(#[source] DbErr),
    #[error("cannot prepare the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        match err.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => StoreError::Conflict,
            _ => StoreError::Db(err),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The database behind Confab.
#[derive(Clone, Debug)]
pub struct Store {
    db: DatabaseConnection,
    /// SQLite allows one writer at a time. Writers that collide get `SQLITE_BUSY` and
    /// SQLite's busy handler sleeps with growing back-off, which shows up as latency
    /// spikes under load; queueing writers here (FIFO) avoids that. `None` on PostgreSQL.
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
    link_cache: Arc<link_cache::LinkCache>,
    link_writer: tokio::sync::mpsc::Sender<links::PendingInsert>,
    /// Bytes each plugin's key-value entries take up, as this process wrote them
    /// (see `plugins::KvUsage`); held while a plugin's entries are written.
    kv_usage: Arc<tokio::sync::Mutex<plugins::KvUsage>>,
    /// Every change to a link made through this store, for live calls and their
    /// connections (see [`LinkChange`]).
    link_changes: tokio::sync::broadcast::Sender<LinkChange>,
    /// Sign-ins ended through this store (signed out, token revoked), for the open
    /// connections that speak for them.
    sign_ins_ended: tokio::sync::broadcast::Sender<SignInEnded>,
    /// Changes made through this store (not those announced from elsewhere), for
    /// the other nodes of a cluster (see [`SharedChange`]).
    made_here: tokio::sync::broadcast::Sender<SharedChange>,
    /// Other processes (the nodes of a cluster) write the same database: totals
    /// this process keeps of what it wrote (plugins' storage) are not to be trusted.
    shared: Arc<std::sync::atomic::AtomicBool>,
}

/// A change to state every node of a cluster caches or acts on, made through this
/// node's store: the cluster passes it to the others (`cluster` module), which
/// apply it with [`Store::apply_shared_change`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SharedChange {
    Link {
        pk: i64,
        /// The public id now; none when the link was deleted.
        public_id: Option<String>,
        revoked: bool,
    },
    SessionEnded {
        id_hash: String,
    },
    TokenEnded {
        token_hash: String,
    },
    /// The organization policy was saved.
    Policy,
    /// Changes were missed on the way out: drop everything cached.
    Resync,
}

/// A sign-in that ended: the SHA-256 (hex) of its session cookie or API token, as
/// stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInEnded {
    Session { id_hash: String },
    Token { token_hash: String },
}

/// A link changed: live calls and open connections re-check what they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkChange {
    /// Updated: revoked, rotated (a new public id) or edited.
    Updated {
        pk: i64,
        public_id: String,
        revoked: bool,
    },
    Deleted {
        pk: i64,
    },
}

impl LinkChange {
    pub fn pk(&self) -> i64 {
        match self {
            LinkChange::Updated { pk, .. } | LinkChange::Deleted { pk } => *pk,
        }
    }

    /// The link can no longer be used: revoked or deleted.
    pub fn ends_calls(&self) -> bool {
        matches!(
            self,
            LinkChange::Deleted { .. } | LinkChange::Updated { revoked: true, .. }
        )
    }

    /// What a link row says now.
    pub fn of(link: &link::Model) -> Self {
        LinkChange::Updated {
            pk: link.pk,
            public_id: link.public_id.clone(),
            revoked: link.revoked_at.is_some(),
        }
    }
}

/// Link changes buffered per listener; one that falls behind re-reads its link.
const LINK_CHANGES: usize = 1024;

impl Store {
    /// Connects to `url`. For SQLite, the file's directory is created if missing.
    pub async fn connect(url: &str, max_connections: u32) -> StoreResult<Self> {
        if let Some(dir) = sqlite_file(url)
            .and_then(Path::parent)
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let mut options = ConnectOptions::new(url.to_string());
        options
            .max_connections(max_connections)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .sqlx_logging(false)
            .map_sqlx_sqlite_opts(|o| {
                o.create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    // Every commit reaches the disk before it returns: what the API
                    // accepted (a link, a queued invitation) survives a power cut,
                    // not only a crash of the process. NORMAL would lose the last
                    // commits on power loss; the cost is one fsync of the WAL per
                    // write transaction.
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(5))
                    .foreign_keys(true)
            });
        let db = Database::connect(options).await?;
        let write_gate = (db.get_database_backend() == sea_orm::DatabaseBackend::Sqlite)
            .then(|| Arc::new(tokio::sync::Mutex::new(())));
        let (link_writer, queue) = tokio::sync::mpsc::channel(4 * 1024);
        tokio::spawn(links::run_link_writer(
            db.clone(),
            write_gate.clone(),
            queue,
        ));
        Ok(Self {
            db,
            write_gate,
            link_cache: Arc::default(),
            link_writer,
            kv_usage: Arc::default(),
            link_changes: tokio::sync::broadcast::channel(LINK_CHANGES).0,
            sign_ins_ended: tokio::sync::broadcast::channel(LINK_CHANGES).0,
            made_here: tokio::sync::broadcast::channel(LINK_CHANGES).0,
            shared: Arc::default(),
        })
    }

    /// Says that other nodes write this database too (a node of a cluster): each
    /// plugin's storage is then counted in the database on every write, under a
    /// lock per plugin, instead of from this process's running totals.
    pub fn set_shared_with_other_nodes(&self) {
        self.shared
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    fn shared_with_other_nodes(&self) -> bool {
        self.shared.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Changes made through this store from now on (see [`SharedChange`]).
    pub fn changes_made_here(&self) -> tokio::sync::broadcast::Receiver<SharedChange> {
        self.made_here.subscribe()
    }

    /// A link changed through this store: this node's calls and connections and
    /// (through the cluster) the other nodes hear of it.
    fn link_changed(&self, change: LinkChange) {
        self.link_cache.clear();
        let _ = self.made_here.send(match &change {
            LinkChange::Updated {
                pk,
                public_id,
                revoked,
            } => SharedChange::Link {
                pk: *pk,
                public_id: Some(public_id.clone()),
                revoked: *revoked,
            },
            LinkChange::Deleted { pk } => SharedChange::Link {
                pk: *pk,
                public_id: None,
                revoked: true,
            },
        });
        let _ = self.link_changes.send(change);
    }

    /// A sign-in ended through this store (see [`Store::link_changed`]).
    fn sign_in_ended(&self, ended: SignInEnded) {
        let _ = self.made_here.send(match &ended {
            SignInEnded::Session { id_hash } => SharedChange::SessionEnded {
                id_hash: id_hash.clone(),
            },
            SignInEnded::Token { token_hash } => SharedChange::TokenEnded {
                token_hash: token_hash.clone(),
            },
        });
        let _ = self.sign_ins_ended.send(ended);
    }

    /// Applies a change another node made: drops what this node cached of it and
    /// tells its calls and connections, as if the change had been made here (it is
    /// not passed on again). A link's change is read back from the database, not
    /// taken from the message: a message that says a link was revoked when it was
    /// not ends no call.
    pub async fn apply_shared_change(&self, change: &SharedChange) {
        match change {
            SharedChange::Link { pk, .. } => {
                self.link_cache.clear();
                let change = match self.link_by_pk(*pk).await {
                    Ok(Some(link)) => LinkChange::of(&link),
                    Ok(None) => LinkChange::Deleted { pk: *pk },
                    // The calls re-read their link every few seconds themselves.
                    Err(err) => {
                        tracing::warn!(error = %err, link = pk, "a link another node changed was not read back");
                        return;
                    }
                };
                let _ = self.link_changes.send(change);
            }
            SharedChange::SessionEnded { id_hash } => {
                let _ = self.sign_ins_ended.send(SignInEnded::Session {
                    id_hash: id_hash.clone(),
                });
            }
            SharedChange::TokenEnded { token_hash } => {
                let _ = self.sign_ins_ended.send(SignInEnded::Token {
                    token_hash: token_hash.clone(),
                });
            }
            SharedChange::Resync => self.link_cache.clear(),
            SharedChange::Policy => {}
        }
    }

    /// How long a link read stays cached: 2 s unless changes from
    /// other nodes arrive as they happen (a cluster whose bus is connected).
    pub fn set_link_cache_ttl(&self, ttl: Duration) {
        self.link_cache.set_ttl(ttl);
    }

    /// Changes to links from now on (see [`LinkChange`]).
    pub fn link_changes(&self) -> tokio::sync::broadcast::Receiver<LinkChange> {
        self.link_changes.subscribe()
    }

    /// Sign-ins ended from now on (see [`SignInEnded`]).
    pub fn sign_ins_ended(&self) -> tokio::sync::broadcast::Receiver<SignInEnded> {
        self.sign_ins_ended.subscribe()
    }

    /// Tells everyone listening about a change this store did not make itself (one
    /// made by another process, found by re-reading the link).
    pub fn announce_link_change(&self, change: LinkChange) {
        self.link_cache.clear();
        let _ = self.link_changes.send(change);
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> StoreResult<()> {
        use confab_migrations::MigratorTrait;
        confab_migrations::Migrator::up(&self.db, None).await?;
        Ok(())
    }

    /// Checks that the database answers (used by `/readyz`).
    pub async fn ping(&self) -> StoreResult<()> {
        self.db.ping().await?;
        Ok(())
    }

    /// Which database engine this is, for logs.
    pub fn backend_name(&self) -> &'static str {
        match self.db.get_database_backend() {
            sea_orm::DatabaseBackend::Sqlite => "sqlite",
            sea_orm::DatabaseBackend::Postgres => "postgres",
            sea_orm::DatabaseBackend::MySql => "mysql",
        }
    }

    /// Closes the pool (SQLite checkpoints its WAL).
    pub async fn close(self) {
        let _ = self.db.close().await;
    }

    pub(crate) fn conn(&self) -> &DatabaseConnection {
        &self.db
    }

    /// Waits for this process's turn to write; hold the guard for the whole write.
    pub(crate) async fn write_turn(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.write_gate {
            Some(gate) => Some(gate.lock().await),
            None => None,
        }
    }
}

fn sqlite_file(url: &str) -> Option<&Path> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (path != ":memory:" && !path.is_empty()).then(|| Path::new(path))
}
