//! `/api/v1/me`, `/api/v1/users` (admins) and `/api/v1/tokens`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, get};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ErrorBody};
use super::extract::{AdminUser, AuthUser, Json, Query};
use super::links::{page_limit, parse_cursor};
use crate::AppState;
use crate::accounts::{self, Account, NewUser, Role, TokenInfo};
use crate::secret::Secret;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/tokens", get(list_tokens).post(create_token))
        .route("/api/v1/tokens/{id}", delete(revoke_token))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub email: String,
    /// 1–64 characters.
    pub display_name: String,
    /// 8–1024 characters.
    pub password: String,
    /// Default: member.
    #[serde(default)]
    pub role: Option<Role>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    pub items: Vec<Account>,
    pub next_cursor: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/me", tag = "users",
    responses((status = 200, body = Account), (status = 401, body = ErrorBody)), security(("token" = [])))]
/// The signed-in user.
async fn me(AuthUser(user): AuthUser) -> Json<Account> {
    Json(user)
}

#[utoipa::path(get, path = "/api/v1/users", tag = "users", params(PageQuery),
    responses((status = 200, body = UserList), (status = 403, body = ErrorBody)), security(("token" = [])))]
/// Lists users (administrators only).
async fn list_users(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    Query(query): Query<PageQuery>,
) -> Result<Json<UserList>, ApiError> {
    let limit = page_limit(query.limit)?;
    let after = parse_cursor(query.cursor.as_deref())?;
    let mut users = state.store.list_users(after, limit + 1).await?;
    let next_cursor = if users.len() as u64 > limit {
        users.truncate(limit as usize);
        users.last().map(|u| u.id.to_string())
    } else {
        None
    };
    Ok(Json(UserList {
        items: users.into_iter().map(Account::from).collect(),
        next_cursor,
    }))
}

#[utoipa::path(post, path = "/api/v1/users", tag = "users", request_body = CreateUser,
    responses((status = 201, body = Account), (status = 403, body = ErrorBody),
        (status = 409, description = "email already in use", body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("token" = [])))]
/// Creates a user (administrators only).
async fn create_user(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    Json(input): Json<CreateUser>,
) -> Result<(StatusCode, Json<Account>), ApiError> {
    let account = accounts::create_user(
        &state.store,
        NewUser {
            email: input.email,
            display_name: input.display_name,
            password: Secret::new(input.password),
            role: input.role.unwrap_or(Role::Member),
        },
        state.clock.now(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(account)))
}

/// A new token: `token` is shown this once and cannot be retrieved again.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// What the token is for, 1–64 characters.
    pub name: String,
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenInfo>), (status = 401, body = ErrorBody)), security(("token" = [])))]
/// Lists your API tokens.
async fn list_tokens(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Vec<TokenInfo>>, ApiError> {
    let tokens = state.store.tokens_of(user.id).await?;
    Ok(Json(tokens.into_iter().map(Into::into).collect()))
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "tokens", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 422, body = ErrorBody)), security(("token" = [])))]
/// Creates an API token for yourself.
async fn create_token(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Json(input): Json<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let issued =
        accounts::issue_token(&state.store, user.id, &input.name, state.clock.now()).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: issued.secret.expose().to_string(),
            info: issued.record.into(),
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "tokens", params(("id" = i64, Path, description = "token id")),
    responses((status = 204, description = "revoked"), (status = 404, body = ErrorBody)), security(("token" = [])))]
/// Revokes one of your API tokens; it stops working at once.
async fn revoke_token(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::NotFound("no such token"))?;
    match state
        .store
        .revoke_token(user.id, id, state.clock.now())
        .await?
    {
        Some(_) => Ok(StatusCode::NO_CONTENT),
        None => Err(ApiError::NotFound("no such token")),
    }
}
