//! The call link: Confab's core object, and the rules of its lifecycle.
//!
//! A link is created by a member, reused for any number of calls, and stays valid
//! until it is revoked. Rotating gives it a new [`LinkId`]; the old id stops working
//! at once. Guests reach a link at `/j/{id}`.
//!
//! The link people share is `/j/{id}#k={secret}`: the [`LinkSecret`] in the fragment
//! is what the call page derives the media keys from, and browsers never send a
//! fragment to the server. A link made through the REST API, the CLI or a plugin
//! gets its secret here, shown once in [`LinkWithSecret`] and kept nowhere; a link
//! made on the dashboard gets it in the browser, and the server never sees it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::accounts::Account;
use crate::policy::OrgPolicy;
use crate::secret::Secret;
use crate::store::{LinkFilter, LinkUpdate, NewLinkRow, Store, StoreError, link};
use crate::validate::{self, Invalid};

mod schedule;

pub use schedule::{Schedule, ScheduleInput};

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
/// The largest call Confab's SFU hosts.
pub const MAX_PARTICIPANTS: i32 = 32;
/// 22 base62 characters: log2(62) × 22 ≈ 131 bits of randomness.
const LINK_ID_CHARS: usize = 22;
/// Longest id accepted on lookup; anything longer is rejected before the database.
const MAX_LINK_ID_CHARS: usize = 32;

/// Random bytes in a link's secret: 128 bits.
const LINK_SECRET_BYTES: usize = 16;

/// The secret in a link's fragment (`#k=…`): 16 random bytes as unpadded base64url,
/// 22 characters of `[A-Za-z0-9_-]`. `Debug` does not show it; only the response that
/// made the link serializes it.
#[derive(Clone, PartialEq, Eq)]
pub struct LinkSecret(Secret);

impl LinkSecret {
    /// A new secret from the operating system's CSPRNG.
    pub fn generate() -> Self {
        Self(Secret::new(crate::secret::random_base64url(
            LINK_SECRET_BYTES,
        )))
    }

    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl std::fmt::Debug for LinkSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSecret(…)")
    }
}

impl Serialize for LinkSecret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

/// A link's public identifier, as it appears in `/j/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LinkId(String);

impl LinkId {
    /// A new random id.
    pub fn generate() -> Self {
        Self(crate::secret::random_base62(LINK_ID_CHARS))
    }

    /// Accepts what could be a link id: 1 to 32 ASCII letters and digits.
    pub fn parse(value: &str) -> Option<Self> {
        (!value.is_empty()
            && value.len() <= MAX_LINK_ID_CHARS
            && value.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| Self(value.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for LinkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What went wrong with a link operation.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("no such link")]
    NotFound,
    #[error("this link was revoked")]
    Revoked,
    #[error("link creation by members is turned off by an administrator")]
    CreationDisabled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Input for a new link.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLink {
    /// 1–200 characters.
    pub title: String,
    /// Up to 2000 characters.
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub schedule: Option<ScheduleInput>,
    /// Whether guests wait in the lobby until admitted. Default: true.
    #[serde(default)]
    pub guests_need_approval: Option<bool>,
    /// Whether signed-in members other than the owner wait in the lobby too. Default: false.
    #[serde(default)]
    pub members_need_approval: Option<bool>,
    /// 1–32. Default: 32.
    #[serde(default)]
    pub max_participants: Option<i32>,
}

/// Changes to a link; absent fields stay as they are, `null` clears optional ones.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkPatch {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<ScheduleInput>)]
    pub schedule: Option<Option<ScheduleInput>>,
    #[serde(default)]
    pub guests_need_approval: Option<bool>,
    #[serde(default)]
    pub members_need_approval: Option<bool>,
    #[serde(default)]
    pub max_participants: Option<i32>,
}

/// Distinguishes a missing field (`None`) from an explicit `null` (`Some(None)`).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// Who may join and how many.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LinkPolicy {
    pub guests_need_approval: bool,
    pub members_need_approval: bool,
    pub max_participants: i32,
}

/// Whether a link can still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LinkStatus {
    Active,
    Revoked,
}

impl std::fmt::Display for LinkStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LinkStatus::Active => "active",
            LinkStatus::Revoked => "revoked",
        })
    }
}

/// A link as its owner sees it (API, CLI, dashboard).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LinkView {
    /// The public id (22 letters and digits).
    pub id: String,
    /// The link's address, `{public_url}/j/{id}`. Only the response that made the link
    /// (or gave it a new id) has the full link to share, with `#k={secret}`: the
    /// server keeps no copy of the secret, so every other answer is without it.
    pub url: String,
    pub title: String,
    pub description: Option<String>,
    pub schedule: Option<Schedule>,
    pub policy: LinkPolicy,
    pub status: LinkStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl LinkView {
    pub fn new(link: &link::Model, public_url: &str) -> Self {
        Self {
            id: link.public_id.clone(),
            url: format!("{public_url}/j/{}", link.public_id),
            title: link.title.clone(),
            description: link.description.clone(),
            schedule: Schedule::from_row(link),
            policy: LinkPolicy {
                guests_need_approval: link.guests_need_approval,
                members_need_approval: link.members_need_approval,
                max_participants: link.max_participants,
            },
            status: if link.revoked_at.is_some() {
                LinkStatus::Revoked
            } else {
                LinkStatus::Active
            },
            created_at: link.created_at,
            updated_at: link.updated_at,
            revoked_at: link.revoked_at,
        }
    }
}

/// A link with a new secret: what creating (or rotating) a link through the REST
/// API, the CLI or a plugin returns. The only place the secret ever is: it is not
/// stored, logged or sent to plugins' event hooks.
#[derive(Clone, Serialize, ToSchema)]
pub struct LinkWithSecret {
    /// `url` is the full link to share, `{public_url}/j/{id}#k={secret}`.
    #[serde(flatten)]
    pub link: LinkView,
    /// The link's secret (22 characters of `[A-Za-z0-9_-]`, 128 random bits), also at
    /// the end of `url`. Shown only in this response.
    #[schema(value_type = String, example = "q8Vb3kT0wXcZ1mN5rJ7yAg")]
    pub secret: LinkSecret,
}

impl LinkWithSecret {
    /// The view of `link` with a fresh secret in its `url`.
    pub fn generate(link: &link::Model, public_url: &str) -> Self {
        let secret = LinkSecret::generate();
        let mut view = LinkView::new(link, public_url);
        view.url = format!("{}#k={}", view.url, secret.expose());
        Self { link: view, secret }
    }
}

/// Without the secret, which `url` holds too.
impl std::fmt::Debug for LinkWithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkWithSecret")
            .field("id", &self.link.id)
            .field("secret", &self.secret)
            .finish_non_exhaustive()
    }
}

fn check_max_participants(value: i32) -> Result<i32, Invalid> {
    if (1..=MAX_PARTICIPANTS).contains(&value) {
        Ok(value)
    } else {
        Err(Invalid::new(
            "max_participants",
            format!("must be between 1 and {MAX_PARTICIPANTS}"),
        ))
    }
}

fn check_description(value: Option<&str>) -> Result<Option<String>, Invalid> {
    value
        .map(|d| validate::text("description", d, 0, MAX_DESCRIPTION_CHARS))
        .transpose()
        .map(|d| d.filter(|d| !d.is_empty()))
}

/// Creates a link owned by `owner`.
pub async fn create(
    store: &Store,
    policy: &OrgPolicy,
    owner: &Account,
    input: NewLink,
    now: DateTime<Utc>,
) -> Result<link::Model, LinkError> {
    let row = new_row(policy, owner, input, now)?;
    Ok(store.insert_link(row).await?)
}

/// Creates several links owned by `owner`: every one is checked before any is
/// written, and the inserts reach the store's writer together (they share commits).
pub async fn create_many(
    store: &Store,
    policy: &OrgPolicy,
    owner: &Account,
    inputs: Vec<NewLink>,
    now: DateTime<Utc>,
) -> Result<Vec<link::Model>, LinkError> {
    let rows = inputs
        .into_iter()
        .map(|input| new_row(policy, owner, input, now))
        .collect::<Result<Vec<_>, _>>()?;
    let inserted =
        futures_util::future::join_all(rows.into_iter().map(|row| store.insert_link(row))).await;
    Ok(inserted.into_iter().collect::<Result<Vec<_>, _>>()?)
}

/// The row of a new link, once `input` is checked.
fn new_row(
    policy: &OrgPolicy,
    owner: &Account,
    input: NewLink,
    now: DateTime<Utc>,
) -> Result<NewLinkRow, LinkError> {
    if !owner.is_admin() && !policy.member_link_creation {
        return Err(LinkError::CreationDisabled);
    }
    let title = validate::text("title", &input.title, 1, MAX_TITLE_CHARS)?;
    let description = check_description(input.description.as_deref())?;
    let schedule = input.schedule.map(|s| s.validate()).transpose()?;
    let max_participants =
        check_max_participants(input.max_participants.unwrap_or(MAX_PARTICIPANTS))?;
    Ok(NewLinkRow {
        public_id: LinkId::generate().0,
        owner_id: owner.id,
        title,
        description,
        schedule: schedule.as_ref().map(Schedule::row),
        guests_need_approval: input.guests_need_approval.unwrap_or(true),
        members_need_approval: input.members_need_approval.unwrap_or(false),
        max_participants,
        created_at: now,
    })
}

/// A link of `owner`, revoked or not.
pub async fn owned(store: &Store, owner: &Account, id: &str) -> Result<link::Model, LinkError> {
    let id = LinkId::parse(id).ok_or(LinkError::NotFound)?;
    store
        .owned_link(owner.id, id.as_str())
        .await?
        .ok_or(LinkError::NotFound)
}

/// Applies `patch` to an active link of `owner`.
pub async fn update(
    store: &Store,
    owner: &Account,
    id: &str,
    patch: LinkPatch,
    now: DateTime<Utc>,
) -> Result<link::Model, LinkError> {
    // Validate everything before touching the database.
    let title = patch
        .title
        .map(|t| validate::text("title", &t, 1, MAX_TITLE_CHARS))
        .transpose()?;
    let description = patch
        .description
        .map(|d| check_description(d.as_deref()))
        .transpose()?;
    let schedule = patch
        .schedule
        .map(|s| s.map(|s| s.validate()).transpose())
        .transpose()?;
    let max_participants = patch
        .max_participants
        .map(check_max_participants)
        .transpose()?;

    let link = owned(store, owner, id).await?;
    if link.revoked_at.is_some() {
        return Err(LinkError::Revoked);
    }
    let changes = LinkUpdate {
        title,
        description,
        schedule: schedule.map(|s| s.as_ref().map(Schedule::row)),
        members_need_approval: patch.members_need_approval,
        guests_need_approval: patch.guests_need_approval,
        max_participants,
        ..LinkUpdate::at(now)
    };
    Ok(store.update_link(link, changes).await?)
}

/// Revokes a link: it stops admitting anyone, for good. Revoking twice is harmless.
pub async fn revoke(
    store: &Store,
    owner: &Account,
    id: &str,
    now: DateTime<Utc>,
) -> Result<link::Model, LinkError> {
    let link = owned(store, owner, id).await?;
    if link.revoked_at.is_some() {
        return Ok(link);
    }
    let changes = LinkUpdate {
        revoked_at: Some(now),
        ..LinkUpdate::at(now)
    };
    Ok(store.update_link(link, changes).await?)
}

/// Gives a link a new id; the old one stops working.
pub async fn rotate(
    store: &Store,
    owner: &Account,
    id: &str,
    now: DateTime<Utc>,
) -> Result<link::Model, LinkError> {
    let link = owned(store, owner, id).await?;
    if link.revoked_at.is_some() {
        return Err(LinkError::Revoked);
    }
    let changes = LinkUpdate {
        public_id: Some(LinkId::generate().0),
        ..LinkUpdate::at(now)
    };
    Ok(store.update_link(link, changes).await?)
}

/// Deletes a link of `owner`.
pub async fn delete(store: &Store, owner: &Account, id: &str) -> Result<(), LinkError> {
    let link = owned(store, owner, id).await?;
    Ok(store.delete_link(link).await?)
}

/// Links of `owner`, newest first: a page and the cursor of the next one.
pub async fn list(
    store: &Store,
    owner: &Account,
    filter: LinkFilter,
    before: Option<i64>,
    limit: u64,
) -> Result<(Vec<link::Model>, Option<i64>), LinkError> {
    let page = store.list_links(owner.id, filter, before, limit).await?;
    Ok((page.items, page.next_after))
}

/// What someone opening `/j/{id}` finds.
#[derive(Debug)]
pub enum PublicLink {
    Active(link::Model),
    Revoked(link::Model),
    NotFound,
}

/// Looks a link up by its public id, for anyone.
pub async fn resolve(store: &Store, id: &str) -> Result<PublicLink, LinkError> {
    let Some(id) = LinkId::parse(id) else {
        return Ok(PublicLink::NotFound);
    };
    Ok(match store.link_by_public_id(id.as_str()).await? {
        Some(link) if link.revoked_at.is_some() => PublicLink::Revoked(link),
        Some(link) => PublicLink::Active(link),
        None => PublicLink::NotFound,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_ids_are_long_random_and_paste_safe() {
        let id = LinkId::generate();
        assert_eq!(id.as_str().len(), 22);
        assert!(id.as_str().len() <= MAX_LINK_ID_CHARS);
        assert!(id.as_str().chars().all(|c| c.is_ascii_alphanumeric()));
        // 22 characters of a 62-letter alphabet carry more than 128 bits.
        assert!(22.0 * 62f64.log2() >= 128.0);
        let ids: std::collections::HashSet<String> =
            (0..1000).map(|_| LinkId::generate().0).collect();
        assert_eq!(ids.len(), 1000);
    }

    #[test]
    fn link_secrets_are_128_bits_of_base64url_and_stay_out_of_debug() {
        let a = LinkSecret::generate();
        let b = LinkSecret::generate();
        assert_eq!(a.expose().len(), 22);
        assert!(
            a.expose()
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(a, b);
        assert!(!format!("{a:?}").contains(a.expose()));
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!(a.expose())
        );
    }

    #[test]
    fn parse_rejects_what_cannot_be_an_id() {
        assert!(LinkId::parse("abcDEF123").is_some());
        for bad in ["", "a/b", "a b", "ä", "abc-def", &"a".repeat(33)] {
            assert!(LinkId::parse(bad).is_none(), "{bad:?}");
        }
    }
}
