use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

use super::{Store, StoreResult, api_token, user};

impl Store {
    pub async fn insert_token(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &str,
        prefix: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<api_token::Model> {
        let _turn = self.write_turn().await;
        let row = api_token::ActiveModel {
            user_id: Set(user_id),
            name: Set(name.to_string()),
            token_hash: Set(token_hash.to_string()),
            prefix: Set(prefix.to_string()),
            created_at: Set(now),
            last_used_at: Set(None),
            revoked_at: Set(None),
            ..Default::default()
        };
        Ok(row.insert(self.conn()).await?)
    }

    /// The unrevoked token with this hash and its user.
    pub async fn token_with_user(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<(api_token::Model, user::Model)>> {
        let found = api_token::Entity::find()
            .filter(api_token::Column::TokenHash.eq(token_hash))
            .filter(api_token::Column::RevokedAt.is_null())
            .find_also_related(user::Entity)
            .one(self.conn())
            .await?;
        Ok(found.and_then(|(token, user)| Some((token, user?))))
    }

    pub async fn touch_token(&self, id: i64, now: DateTime<Utc>) -> StoreResult<()> {
        let _turn = self.write_turn().await;
        api_token::Entity::update_many()
            .col_expr(api_token::Column::LastUsedAt, now.into())
            .filter(api_token::Column::Id.eq(id))
            .exec(self.conn())
            .await?;
        Ok(())
    }

    pub async fn tokens_of(&self, user_id: i64) -> StoreResult<Vec<api_token::Model>> {
        Ok(api_token::Entity::find()
            .filter(api_token::Column::UserId.eq(user_id))
            .order_by_asc(api_token::Column::Id)
            .all(self.conn())
            .await?)
    }

    /// Revokes a token of `user_id`. Returns the token, or `None` if the user has no such token.
    pub async fn revoke_token(
        &self,
        user_id: i64,
        id: i64,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<api_token::Model>> {
        let _turn = self.write_turn().await;
        let Some(token) = api_token::Entity::find_by_id(id)
            .filter(api_token::Column::UserId.eq(user_id))
            .one(self.conn())
            .await?
        else {
            return Ok(None);
        };
        if token.revoked_at.is_some() {
            return Ok(Some(token));
        }
        let token_hash = token.token_hash.clone();
        let mut active: api_token::ActiveModel = token.into();
        active.revoked_at = Set(Some(now));
        let revoked = active.update(self.conn()).await?;
        self.sign_in_ended(super::SignInEnded::Token { token_hash });
        Ok(Some(revoked))
    }
}
