use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::{Store, StoreResult, link};

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
    pub async fn insert_link(&self, row: link::ActiveModel) -> StoreResult<link::Model> {
        Ok(row.insert(self.conn()).await?)
    }

    pub async fn link_by_public_id(&self, public_id: &str) -> StoreResult<Option<link::Model>> {
        Ok(link::Entity::find()
            .filter(link::Column::PublicId.eq(public_id))
            .one(self.conn())
            .await?)
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

    /// Saves the changed fields of `row`.
    pub async fn update_link(&self, row: link::ActiveModel) -> StoreResult<link::Model> {
        Ok(row.update(self.conn()).await?)
    }

    pub async fn delete_link(&self, link: link::Model) -> StoreResult<()> {
        link.into_active_model().delete(self.conn()).await?;
        Ok(())
    }
}
