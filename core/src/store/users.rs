use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use super::{Store, StoreResult, user};

impl Store {
    pub async fn insert_user(
        &self,
        email: &str,
        display_name: &str,
        role: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<user::Model> {
        let _turn = self.write_turn().await;
        let row = user::ActiveModel {
            email: Set(email.to_string()),
            display_name: Set(display_name.to_string()),
            role: Set(role.to_string()),
            password_hash: Set(password_hash.to_string()),
            created_at: Set(now),
            ..Default::default()
        };
        Ok(row.insert(self.conn()).await?)
    }

    pub async fn user_by_id(&self, id: i64) -> StoreResult<Option<user::Model>> {
        Ok(user::Entity::find_by_id(id).one(self.conn()).await?)
    }

    pub async fn user_by_email(&self, email: &str) -> StoreResult<Option<user::Model>> {
        Ok(user::Entity::find()
            .filter(user::Column::Email.eq(email))
            .one(self.conn())
            .await?)
    }

    /// Users in creation order, after the id `after`.
    pub async fn list_users(
        &self,
        after: Option<i64>,
        limit: u64,
    ) -> StoreResult<Vec<user::Model>> {
        let mut query = user::Entity::find()
            .order_by_asc(user::Column::Id)
            .limit(limit);
        if let Some(after) = after {
            query = query.filter(user::Column::Id.gt(after));
        }
        Ok(query.all(self.conn()).await?)
    }

    /// Up to `limit` administrators, oldest accounts first.
    pub async fn admins(&self, limit: u64) -> StoreResult<Vec<user::Model>> {
        Ok(user::Entity::find()
            .filter(user::Column::Role.eq("admin"))
            .order_by_asc(user::Column::Id)
            .limit(limit)
            .all(self.conn())
            .await?)
    }

    pub async fn count_admins(&self) -> StoreResult<u64> {
        Ok(user::Entity::find()
            .filter(user::Column::Role.eq("admin"))
            .count(self.conn())
            .await?)
    }
}
