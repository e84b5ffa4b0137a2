use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};

use chrono::{DateTime, Utc};
use sea_orm::ActiveValue::Set;
use sea_orm::{DatabaseConnection, DbErr};
use tokio::sync::{mpsc, oneshot};

use super::{Store, StoreError, StoreResult, link};

/// Most inserts written in one statement.
const MAX_BATCH: usize = 256;

/// A link insert waiting for the writer.
pub(super) struct PendingInsert {
    row: link::ActiveModel,
    /// Matches the row to what `RETURNING` gives back (whose order SQLite does not promise).
    public_id: String,
    reply: oneshot::Sender<Result<link::Model, DbErr>>,
}

/// Group commit for link inserts, the write the API does most.
///
/// Every insert is one transaction, and on SQLite one commit at a time; under load,
/// round trips between the request tasks and the database threads, not the commits,
/// limit throughput. This task takes every insert that is waiting (up to
/// [`MAX_BATCH`]) and writes them with one `INSERT … RETURNING`. Alone, an insert is
/// written at once, so nothing waits for a batch to fill. If a batch fails, its rows
/// are retried one by one, so one bad row cannot fail its neighbours.
pub(super) async fn run_link_writer(
    db: DatabaseConnection,
    gate: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
    mut queue: mpsc::Receiver<PendingInsert>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while queue.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let _turn = match &gate {
            Some(gate) => Some(gate.lock().await),
            None => None,
        };
        let rows: Vec<link::ActiveModel> = batch.iter().map(|p| p.row.clone()).collect();
        match link::Entity::insert_many(rows)
            .exec_with_returning_many(&db)
            .await
        {
            Ok(models) => {
                let mut by_id: std::collections::HashMap<String, link::Model> = models
                    .into_iter()
                    .map(|m| (m.public_id.clone(), m))
                    .collect();
                for pending in batch.drain(..) {
                    let result = by_id
                        .remove(&pending.public_id)
                        .ok_or(DbErr::RecordNotInserted);
                    let _ = pending.reply.send(result);
                }
            }
            Err(_) => {
                for pending in batch.drain(..) {
                    let result = link::Entity::insert(pending.row)
                        .exec_with_returning(&db)
                        .await;
                    let _ = pending.reply.send(result);
                }
            }
        }
    }
}

/// When a link's calls take place, as its row keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRow {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub time_zone: String,
    pub rrule: Option<String>,
}

/// A new link's row, once `links` checked what it holds.
#[derive(Debug, Clone)]
pub struct NewLinkRow {
    pub public_id: String,
    pub owner_id: i64,
    pub title: String,
    pub description: Option<String>,
    pub schedule: Option<ScheduleRow>,
    pub guests_need_approval: bool,
    pub members_need_approval: bool,
    pub max_participants: i32,
    pub created_at: DateTime<Utc>,
}

impl NewLinkRow {
    fn into_active(self) -> link::ActiveModel {
        let mut row = link::ActiveModel {
            public_id: Set(self.public_id),
            owner_id: Set(self.owner_id),
            title: Set(self.title),
            description: Set(self.description),
            guests_need_approval: Set(self.guests_need_approval),
            members_need_approval: Set(self.members_need_approval),
            max_participants: Set(self.max_participants),
            created_at: Set(self.created_at),
            updated_at: Set(self.created_at),
            revoked_at: Set(None),
            ..Default::default()
        };
        set_schedule(&mut row, self.schedule);
        row
    }
}

/// What changes in a link's row: each `Some` field is written, the rest kept.
#[derive(Debug, Clone)]
pub struct LinkUpdate {
    pub public_id: Option<String>,
    pub title: Option<String>,
    pub description: Option<Option<String>>,
    pub schedule: Option<Option<ScheduleRow>>,
    pub guests_need_approval: Option<bool>,
    pub members_need_approval: Option<bool>,
    pub max_participants: Option<i32>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl LinkUpdate {
    /// No change yet, made at `now`.
    pub fn at(now: DateTime<Utc>) -> Self {
        Self {
            public_id: None,
            title: None,
            description: None,
            schedule: None,
            guests_need_approval: None,
            members_need_approval: None,
            max_participants: None,
            revoked_at: None,
            updated_at: now,
        }
    }

    fn apply(self, row: &mut link::ActiveModel) {
        if let Some(public_id) = self.public_id {
            row.public_id = Set(public_id);
        }
        if let Some(title) = self.title {
            row.title = Set(title);
        }
        if let Some(description) = self.description {
            row.description = Set(description);
        }
        if let Some(schedule) = self.schedule {
            set_schedule(row, schedule);
        }
        if let Some(approval) = self.guests_need_approval {
            row.guests_need_approval = Set(approval);
        }
        if let Some(approval) = self.members_need_approval {
            row.members_need_approval = Set(approval);
        }
        if let Some(max) = self.max_participants {
            row.max_participants = Set(max);
        }
        if let Some(at) = self.revoked_at {
            row.revoked_at = Set(Some(at));
        }
        row.updated_at = Set(self.updated_at);
    }
}

fn set_schedule(row: &mut link::ActiveModel, schedule: Option<ScheduleRow>) {
    row.schedule_start = Set(schedule.as_ref().map(|s| s.start));
    row.schedule_end = Set(schedule.as_ref().map(|s| s.end));
    row.schedule_tz = Set(schedule.as_ref().map(|s| s.time_zone.clone()));
    row.schedule_rrule = Set(schedule.and_then(|s| s.rrule));
}

/// Which links a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkFilter {
    Active,
    Revoked,
    All,
}

/// One page of links, newest first.
#[derive(Debug)]
pub struct LinkPage {
    pub items: Vec<link::Model>,
    /// The `pk` to continue after, when there may be more.
    pub next_after: Option<i64>,
}

impl Store {
    /// Inserts a link through the group-commit writer (see `run_link_writer`).
    pub async fn insert_link(&self, new: NewLinkRow) -> StoreResult<link::Model> {
        let public_id = new.public_id.clone();
        let row = new.into_active();
        let (reply, answer) = oneshot::channel();
        let stopped = || StoreError::Db(DbErr::Custom("the link writer has stopped".into()));
        let pending = PendingInsert {
            row,
            public_id,
            reply,
        };
        self.link_writer
            .send(pending)
            .await
            .map_err(|_| stopped())?;
        Ok(answer.await.map_err(|_| stopped())??)
    }

    /// The link with this public id, through a short-lived cache (see `link_cache`).
    pub async fn link_by_public_id(&self, public_id: &str) -> StoreResult<Option<link::Model>> {
        if let Some(link) = self.link_cache.get(public_id) {
            return Ok(Some(link));
        }
        let generation = self.link_cache.generation();
        let found = link::Entity::find()
            .filter(link::Column::PublicId.eq(public_id))
            .one(self.conn())
            .await?;
        if let Some(link) = &found {
            self.link_cache.put(link, generation);
        }
        Ok(found)
    }

    /// The link with this primary key, read from the database (never cached).
    pub async fn link_by_pk(&self, pk: i64) -> StoreResult<Option<link::Model>> {
        Ok(link::Entity::find_by_id(pk).one(self.conn()).await?)
    }

    pub async fn owned_link(
        &self,
        owner_id: i64,
        public_id: &str,
    ) -> StoreResult<Option<link::Model>> {
        Ok(link::Entity::find()
            .filter(link::Column::PublicId.eq(public_id))
            .filter(link::Column::OwnerId.eq(owner_id))
            .one(self.conn())
            .await?)
    }

    /// Links of `owner_id`, newest first, with `pk < before`.
    pub async fn list_links(
        &self,
        owner_id: i64,
        filter: LinkFilter,
        before: Option<i64>,
        limit: u64,
    ) -> StoreResult<LinkPage> {
        let mut query = link::Entity::find()
            .filter(link::Column::OwnerId.eq(owner_id))
            .order_by_desc(link::Column::Pk)
            .limit(limit + 1);
        if let Some(before) = before {
            query = query.filter(link::Column::Pk.lt(before));
        }
        query = match filter {
            LinkFilter::Active => query.filter(link::Column::RevokedAt.is_null()),
            LinkFilter::Revoked => query.filter(link::Column::RevokedAt.is_not_null()),
            LinkFilter::All => query,
        };
        let mut items = query.all(self.conn()).await?;
        let next_after = if items.len() as u64 > limit {
            items.truncate(limit as usize);
            items.last().map(|l| l.pk)
        } else {
            None
        };
        Ok(LinkPage { items, next_after })
    }

    /// Writes `changes` to the row of `link`.
    pub async fn update_link(
        &self,
        link: link::Model,
        changes: LinkUpdate,
    ) -> StoreResult<link::Model> {
        let mut row = link.into_active_model();
        changes.apply(&mut row);
        let _turn = self.write_turn().await;
        let updated = row.update(self.conn()).await?;
        self.link_changed(super::LinkChange::of(&updated));
        Ok(updated)
    }

    pub async fn delete_link(&self, link: link::Model) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        let pk = link.pk;
        link.into_active_model().delete(self.conn()).await?;
        self.link_changed(super::LinkChange::Deleted { pk });
        Ok(())
    }
}
