use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};

use super::{Store, StoreError, StoreResult, org_policy};

impl Store {
    pub async fn org_policy(&self) -> StoreResult<org_policy::Model> {
        org_policy::Entity::find_by_id(1)
            .one(self.conn())
            .await?
            .ok_or_else(|| {
                StoreError::Db(sea_orm::DbErr::RecordNotFound("org_policy row 1".into()))
            })
    }

    pub async fn save_org_policy(
        &self,
        guest_access: bool,
        member_link_creation: bool,
        disabled_plugins_json: String,
        now: DateTime<Utc>,
    ) -> StoreResult<org_policy::Model> {
        let _turn = self.write_turn().await;
        let mut row = self.org_policy().await?.into_active_model();
        row.guest_access = Set(guest_access);
        row.member_link_creation = Set(member_link_creation);
        row.disabled_plugins = Set(disabled_plugins_json);
        row.updated_at = Set(Some(now));
        let saved = row.update(self.conn()).await?;
        let _ = self.made_here.send(super::SharedChange::Policy);
        Ok(saved)
    }
}
