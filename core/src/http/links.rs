//! `/api/v1/links`: the call-link lifecycle over REST.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{AuthUser, Json, Query};
use crate::AppState;
use crate::links::{self, LinkPatch, LinkView, LinkWithSecret, NewLink};
use crate::plugins::{self, Event};
use crate::store::LinkFilter;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/links", get(list_links).post(create_link))
        .route(
            "/api/v1/links/{id}",
            get(show_link).patch(update_link).delete(delete_link),
        )
        .route("/api/v1/links/{id}/revoke", post(revoke_link))
        .route("/api/v1/links/{id}/rotate", post(rotate_link))
}

/// Paging through a list: `limit` (1–100, default 50) and the `next_cursor` of the previous page.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListLinksQuery {
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub cursor: Option<String>,
    /// `active` (default), `revoked` or `all`.
    #[serde(default)]
    pub status: Option<String>,
}

/// One page of links, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkList {
    pub items: Vec<LinkView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

pub(crate) fn page_limit(limit: Option<u64>) -> Result<u64, ApiError> {
    match limit.unwrap_or(50) {
        n @ 1..=100 => Ok(n),
        _ => Err(ApiError::BadRequest(
            "limit must be between 1 and 100".into(),
        )),
    }
}

pub(crate) fn parse_cursor(cursor: Option<&str>) -> Result<Option<i64>, ApiError> {
    cursor
        .map(|c| {
            c.parse::<i64>()
                .map_err(|_| ApiError::BadRequest("cursor is not one this server gave out".into()))
        })
        .transpose()
}

#[utoipa::path(get, path = "/api/v1/links", tag = "links", params(ListLinksQuery),
    responses((status = 200, body = LinkList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("token" = [])))]
/// Lists your links, newest first.
async fn list_links(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Query(query): Query<ListLinksQuery>,
) -> Result<Json<LinkList>, ApiError> {
    let limit = page_limit(query.limit)?;
    let before = parse_cursor(query.cursor.as_deref())?;
    let filter = match query.status.as_deref().unwrap_or("active") {
        "active" => LinkFilter::Active,
        "revoked" => LinkFilter::Revoked,
        "all" => LinkFilter::All,
        _ => {
            return Err(ApiError::BadRequest(
                "status must be active, revoked or all".into(),
            ));
        }
    };
    let (items, next) = links::list(&state.store, &user, filter, before, limit).await?;
    Ok(Json(LinkList {
        items: items
            .iter()
            .map(|l| LinkView::new(l, state.public_url()))
            .collect(),
        next_cursor: next.map(|pk| pk.to_string()),
    }))
}

#[utoipa::path(post, path = "/api/v1/links", tag = "links", request_body = NewLink,
    responses((status = 201, description = "the link, with its secret: `url` is the full link to share (`…/j/{id}#k={secret}`); this is the only time the server shows the secret",
            body = LinkWithSecret),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "link creation turned off for members", body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("token" = [])))]
/// Creates a link. The response is the only one with the link's secret: the server keeps no copy.
async fn create_link(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Json(input): Json<NewLink>,
) -> Result<(StatusCode, Json<LinkWithSecret>), ApiError> {
    let policy = state.policy.get(&state.store).await?;
    let link = links::create(&state.store, &policy, &user, input, state.clock.now()).await?;
    state.metrics.links_created.inc();
    plugins::emit(state.plugin_deps(), Event::LinkCreated(link.clone()));
    Ok((
        StatusCode::CREATED,
        Json(LinkWithSecret::generate(&link, state.public_url())),
    ))
}

#[utoipa::path(get, path = "/api/v1/links/{id}", tag = "links", params(("id" = String, Path, description = "link id")),
    responses((status = 200, body = LinkView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
/// Shows one of your links (revoked ones too).
async fn show_link(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<LinkView>, ApiError> {
    let link = links::owned(&state.store, &user, &id).await?;
    Ok(Json(LinkView::new(&link, state.public_url())))
}

#[utoipa::path(patch, path = "/api/v1/links/{id}", tag = "links", params(("id" = String, Path, description = "link id")),
    request_body = LinkPatch,
    responses((status = 200, body = LinkView), (status = 404, body = ErrorBody),
        (status = 409, description = "the link was revoked", body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("token" = [])))]
/// Changes a link's title, description, schedule or policy.
async fn update_link(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
    Json(patch): Json<LinkPatch>,
) -> Result<Json<LinkView>, ApiError> {
    let link = links::update(&state.store, &user, &id, patch, state.clock.now()).await?;
    plugins::emit(state.plugin_deps(), Event::LinkUpdated(link.clone()));
    Ok(Json(LinkView::new(&link, state.public_url())))
}

#[utoipa::path(delete, path = "/api/v1/links/{id}", tag = "links", params(("id" = String, Path, description = "link id")),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
/// Deletes a link for good.
async fn delete_link(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    links::delete(&state.store, &user, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/links/{id}/revoke", tag = "links", params(("id" = String, Path, description = "link id")),
    responses((status = 200, body = LinkView), (status = 404, body = ErrorBody)),
    security(("token" = [])))]
/// Revokes a link: nobody can use it any more. Revoking again is harmless.
async fn revoke_link(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<LinkView>, ApiError> {
    let now = state.clock.now();
    let link = links::revoke(&state.store, &user, &id, now).await?;
    if link.revoked_at == Some(now) {
        plugins::emit(state.plugin_deps(), Event::LinkRevoked(link.clone()));
    }
    Ok(Json(LinkView::new(&link, state.public_url())))
}

#[utoipa::path(post, path = "/api/v1/links/{id}/rotate", tag = "links", params(("id" = String, Path, description = "link id")),
    responses((status = 200, description = "the link with its new id and a new secret: `url` is the new full link to share; this is the only time the server shows the secret",
            body = LinkWithSecret),
        (status = 404, body = ErrorBody),
        (status = 409, description = "the link was revoked", body = ErrorBody)),
    security(("token" = [])))]
/// Gives a link a new id and a new secret; the old address stops working.
async fn rotate_link(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<LinkWithSecret>, ApiError> {
    let link = links::rotate(&state.store, &user, &id, state.clock.now()).await?;
    plugins::emit(state.plugin_deps(), Event::LinkUpdated(link.clone()));
    Ok(Json(LinkWithSecret::generate(&link, state.public_url())))
}
