use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::{Store, StoreResult, call_event};

impl Store {
    pub async fn insert_call_event(
        &self,
        link_id: &str,
        kind: &str,
        subject: Option<&str>,
        at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        call_event::ActiveModel {
            link_id: Set(link_id.to_string()),
            kind: Set(kind.to_string()),
            subject: Set(subject.map(str::to_string)),
            at: Set(at),
            ..Default::default()
        }
        .insert(self.conn())
        .await?;
        Ok(())
    }

    pub async fn call_events(&self, link_id: &str) -> StoreResult<Vec<call_event::Model>> {
        Ok(call_event::Entity::find()
            .filter(call_event::Column::LinkId.eq(link_id))
            .order_by_asc(call_event::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// Deletes call metadata recorded before `cutoff`.
    pub async fn delete_call_events_before(&self, cutoff: DateTime<Utc>) -> StoreResult<u64> {
        let _turn = self.write_turn().await;
        let res = call_event::Entity::delete_many()
            .filter(call_event::Column::At.lt(cutoff))
            .exec(self.conn())
            .await?;
        Ok(res.rows_affected)
    }
}
