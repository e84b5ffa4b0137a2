//! The mail outbox, for administrators: `GET /api/v1/admin/mail`.

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use super::error::{ApiError, ErrorBody};
use super::extract::{AdminUser, Json};
use crate::AppState;
use crate::mail::MailStatus;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/v1/admin/mail", get(mail_status))
}

#[utoipa::path(get, path = "/api/v1/admin/mail", tag = "admin",
    responses((status = 200, body = MailStatus), (status = 403, body = ErrorBody)), security(("token" = [])))]
/// Where mail goes, how many messages are queued, sent and failed, and the latest
/// failures with the relay's reply (no addresses, no bodies).
async fn mail_status(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
) -> Result<Json<MailStatus>, ApiError> {
    crate::mail::status(&state.store, &state.config)
        .await
        .map(Json)
        .map_err(ApiError::Internal)
}
