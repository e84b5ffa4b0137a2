//! `/api/v1/admin/policy`: the organization's restrictions.

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::error::{ApiError, ErrorBody};
use super::extract::{AdminUser, Json};
use crate::AppState;
use crate::policy::{OrgPolicy, PolicyPatch};

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/api/v1/admin/policy",
        get(show_policy).patch(update_policy),
    )
}

#[utoipa::path(get, path = "/api/v1/admin/policy", tag = "admin",
    responses((status = 200, body = OrgPolicy), (status = 403, body = ErrorBody)), security(("token" = [])))]
/// Shows the organization policy (administrators only).
async fn show_policy(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
) -> Result<Json<OrgPolicy>, ApiError> {
    Ok(Json(state.policy.get(&state.store).await?))
}

#[utoipa::path(patch, path = "/api/v1/admin/policy", tag = "admin", request_body = PolicyPatch,
    responses((status = 200, body = OrgPolicy), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)),
    security(("token" = [])))]
/// Turns guest access, link creation by members, or individual plugins on or off.
async fn update_policy(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Json(patch): Json<PolicyPatch>,
) -> Result<Json<OrgPolicy>, ApiError> {
    let policy = state
        .policy
        .update(&state.store, patch, state.clock.now())
        .await?;
    tracing::info!(admin = %admin.email, ?policy, "organization policy changed");
    Ok(Json(policy))
}
