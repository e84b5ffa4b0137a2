use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};

use super::{Store, StoreResult, session, user};

impl Store {
    pub async fn insert_session(
        &self,
        id_hash: &str,
        user_id: i64,
        csrf_token: &str,
        now: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<session::Model> {
        let _turn = self.write_turn().await;
        let row = session::ActiveModel {
            id_hash: Set(id_hash.to_string()),
            user_id: Set(user_id),
            csrf_token: Set(csrf_token.to_string()),
            created_at: Set(now),
            expires_at: Set(expires_at),
        };
        Ok(row.insert(self.conn()).await?)
    }

    /// The unexpired session with this hash and its user.
    pub async fn session_with_user(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<(session::Model, user::Model)>> {
        let found = session::Entity::find_by_id(id_hash.to_string())
            .filter(session::Column::ExpiresAt.gt(now))
            .find_also_related(user::Entity)
            .one(self.conn())
            .await?;
        Ok(found.and_then(|(session, user)| Some((session, user?))))
    }

    pub async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        session::Entity::delete_by_id(id_hash.to_string())
            .exec(self.conn())
            .await?;
        self.sign_in_ended(super::SignInEnded::Session {
            id_hash: id_hash.to_string(),
        });
        Ok(())
    }

    pub async fn delete_expired_sessions(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let _turn = self.write_turn().await;
        let res = session::Entity::delete_many()
            .filter(session::Column::ExpiresAt.lte(now))
            .exec(self.conn())
            .await?;
        Ok(res.rows_affected)
    }
}
