//! Extractors: JSON and query bodies with API-shaped errors, and who is asking.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, OptionalFromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::AppState;
use crate::accounts::{self, Account};
use crate::secret::constant_time_eq;
use crate::store::session;

/// The web session cookie.
pub const SESSION_COOKIE: &str = "confab_session";
/// The CSRF cookie for forms shown before sign-in (double-submit).
pub const CSRF_COOKIE: &str = "confab_csrf";

/// `axum::Json` whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::InvalidBody(e.body_text().replace(
            "Failed to deserialize the JSON body into the target type: ",
            "",
        )),
        JsonRejection::JsonSyntaxError(e) => ApiError::InvalidJson(e.body_text().replace(
            "Failed to parse the request body as JSON: ",
            "invalid JSON: ",
        )),
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        other => ApiError::BadRequest(other.body_text()),
    }
}

/// `axum::extract::Query` whose rejections are [`ApiError`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e: QueryRejection| ApiError::BadRequest(e.body_text()))
    }
}

/// The caller of an API endpoint: a bearer token, or a web session (which must send
/// `X-CSRF-Token` on anything but GET/HEAD).
#[derive(Debug, Clone)]
pub struct AuthUser(pub Account);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let now = state.clock.now();
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let token = bearer_token(value).ok_or(ApiError::Unauthorized)?;
            return accounts::authenticate_token(&state.store, token, now)
                .await?
                .map(AuthUser)
                .ok_or(ApiError::Unauthorized);
        }
        let (session, account) = web_session(parts, state)
            .await?
            .ok_or(ApiError::Unauthorized)?;
        if !matches!(parts.method, Method::GET | Method::HEAD) {
            let sent = parts
                .headers
                .get("x-csrf-token")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !constant_time_eq(sent, &session.csrf_token) {
                return Err(ApiError::Csrf);
            }
        }
        Ok(AuthUser(account))
    }
}

/// The token of an `Authorization: Bearer …` header (the scheme name is
/// case-insensitive, RFC 9110 §11.1).
pub fn bearer_token(value: &axum::http::HeaderValue) -> Option<&str> {
    value
        .to_str()
        .ok()
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
}

/// An administrator calling the API.
#[derive(Debug, Clone)]
pub struct AdminUser(pub Account);

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let AuthUser(account) = AuthUser::from_request_parts(parts, state).await?;
        if account.is_admin() {
            Ok(AdminUser(account))
        } else {
            Err(ApiError::Forbidden("only administrators may do this"))
        }
    }
}

async fn web_session(
    parts: &Parts,
    state: &AppState,
) -> Result<Option<(session::Model, Account)>, ApiError> {
    let jar = CookieJar::from_headers(&parts.headers);
    let Some(cookie) = jar.get(SESSION_COOKIE) else {
        return Ok(None);
    };
    Ok(accounts::session_account(&state.store, cookie.value(), state.clock.now()).await?)
}

/// A signed-in person on a web page. Without a session, pages redirect to sign-in.
#[derive(Debug, Clone)]
pub struct WebUser {
    pub account: Account,
    pub session: session::Model,
    /// The raw cookie value, needed to end the session.
    pub cookie_value: String,
}

/// Sent instead of a page when nobody is signed in.
pub struct SignInRedirect(String);

impl IntoResponse for SignInRedirect {
    fn into_response(self) -> Response {
        Redirect::to(&self.0).into_response()
    }
}

impl FromRequestParts<AppState> for WebUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match <WebUser as OptionalFromRequestParts<AppState>>::from_request_parts(parts, state)
            .await?
        {
            Some(user) => Ok(user),
            None => {
                let next = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let target = format!(
                    "/login?next={}",
                    url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                Err(SignInRedirect(target).into_response())
            }
        }
    }
}

impl OptionalFromRequestParts<AppState> for WebUser {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        let jar = CookieJar::from_headers(&parts.headers);
        let Some(cookie) = jar.get(SESSION_COOKIE) else {
            return Ok(None);
        };
        let found = accounts::session_account(&state.store, cookie.value(), state.clock.now())
            .await
            .map_err(|e| ApiError::from(e).into_response())?;
        Ok(found.map(|(session, account)| WebUser {
            account,
            session,
            cookie_value: cookie.value().to_string(),
        }))
    }
}
