//! The web pages: sign in/out, the dashboard, and the public link page `/j/{id}`.
//!
//! Forms post with a CSRF token: the session's token once signed in, a
//! double-submit cookie before (sign-in form, guests on the link page).

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::cookie::{Cookie, SameSite};
use tera::Context;

use super::extract::WebUser;
use crate::AppState;

mod assets;
mod csrf;
mod dashboard;
mod join;
mod sign_in;

use assets::static_file;
use csrf::*;
use dashboard::*;
use join::*;
pub(crate) use sign_in::safe_next;
use sign_in::*;

/// Guest names: 1–64 characters after trimming, any script.
pub const MAX_GUEST_NAME_CHARS: usize = 64;
const DASHBOARD_PAGE_SIZE: u64 = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/dashboard", get(dashboard))
        .route("/dashboard/links", post(dashboard_create_link))
        .route("/dashboard/links/{id}/revoke", post(dashboard_revoke_link))
        .route("/dashboard/tokens", post(dashboard_create_token))
        .route(
            "/dashboard/tokens/{id}/revoke",
            post(dashboard_revoke_token),
        )
        .route("/j/{id}", get(join_page).post(join_request))
        .route("/static/{*file}", get(static_file))
}

/// A page failure, shown as the message page.
pub struct PageError {
    status: StatusCode,
    heading: &'static str,
    text: String,
}

impl PageError {
    fn new(status: StatusCode, heading: &'static str, text: impl Into<String>) -> Self {
        Self {
            status,
            heading,
            text: text.into(),
        }
    }

    fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "page failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong",
            "Please try again in a moment.",
        )
    }

    fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "Go back, reload the page and submit the form again.",
        )
    }
}

impl From<crate::store::StoreError> for PageError {
    fn from(err: crate::store::StoreError) -> Self {
        Self::internal(err)
    }
}

/// A [`PageError`] as a page, with the state's templates.
fn page_error(state: &AppState, err: PageError) -> Response {
    message_page(state, err.status, err.heading, &err.text, "bad", None)
}

fn message_page(
    state: &AppState,
    status: StatusCode,
    heading: &str,
    text: &str,
    tone: &str,
    action: Option<(&str, &str)>,
) -> Response {
    let mut ctx = Context::new();
    ctx.insert("heading", heading);
    ctx.insert("text", text);
    ctx.insert("tone", tone);
    ctx.insert("action_href", &action.map(|a| a.0));
    ctx.insert("action_label", &action.map(|a| a.1));
    (status, render(state, "pages/message.html", &ctx)).into_response()
}

/// Renders a page template; a template error becomes a plain 500.
/// The limits of plugin frames, as the page's `data-plugin-limits` carries them to
/// `lib/plugin-frames.js` (`frameLimits`).
fn plugin_frame_limits(state: &AppState) -> String {
    let p = &state.config.plugins;
    serde_json::json!({
        "startMs": p.frame_start_timeout_ms,
        "pingMs": p.frame_ping_ms,
        "maxFetches": p.frame_max_fetches,
        "maxHeight": p.frame_max_height_px,
    })
    .to_string()
}

pub(crate) fn render(state: &AppState, name: &str, ctx: &Context) -> Response {
    match state.templates.render(name, ctx) {
        Ok(html) => Html(html).into_response(),
        Err(err) => {
            tracing::error!(template = name, error = ?err, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A cookie of the site's pages: HTTP-only, `SameSite=Lax`, secure where the site is.
fn site_cookie<'c>(state: &AppState, name: &'c str, value: String) -> Cookie<'c> {
    Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(state.config.cookie_secure())
        .build()
}

/// A form body; a body that is not a form gets a 400 page, not a bare error.
pub struct PageForm<T>(T);

impl<T: serde::de::DeserializeOwned> FromRequest<AppState> for PageForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(value)) => Ok(Self(value)),
            Err(rejection) => {
                let status = match &rejection {
                    FormRejection::InvalidFormContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    r if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                        StatusCode::PAYLOAD_TOO_LARGE
                    }
                    _ => StatusCode::BAD_REQUEST,
                };
                Err(page_error(
                    state,
                    PageError::new(
                        status,
                        "That didn't work",
                        "The form could not be read. Reload the page and try again.",
                    ),
                ))
            }
        }
    }
}

fn base_context(user: Option<&WebUser>) -> Context {
    let mut ctx = Context::new();
    if let Some(user) = user {
        ctx.insert(
            "user",
            &serde_json::json!({ "display_name": user.account.display_name, "email": user.account.email }),
        );
        ctx.insert("csrf", &user.session.csrf_token);
        // The header's Sign out form: pages whose own forms use another token keep it.
        ctx.insert("session_csrf", &user.session.csrf_token);
    }
    ctx
}

async fn home(user: Option<WebUser>) -> Redirect {
    Redirect::to(if user.is_some() {
        "/dashboard"
    } else {
        "/login"
    })
}
