//! Plugins over HTTP: their own pages and API under `/p/{plugin}/…`, their static
//! files under `/p/{plugin}/static/…`, and the administrators' API under
//! `/api/v1/admin/plugins`.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum_extra::extract::CookieJar;

use super::error::{ApiError, ErrorBody};
use super::extract::{AdminUser, Json};
use crate::AppState;
use crate::accounts;
use crate::plugins::{InvokeError, PluginInfo, PluginList, PluginRequest};

/// Largest request body a plugin receives (calendar files, form posts).
pub const MAX_PLUGIN_BODY_BYTES: usize = 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/admin/plugins", get(list_plugins))
        .route("/api/v1/admin/plugins/{name}", get(show_plugin))
        .route("/api/v1/admin/plugins/{name}/enable", post(enable_plugin))
        .route("/api/v1/admin/plugins/{name}/disable", post(disable_plugin))
        .route("/api/v1/admin/plugins/{name}/reload", post(reload_plugin))
        .route("/p/{plugin}/static/{*path}", get(static_file))
        .route(
            "/p/{plugin}",
            any(plugin_root).layer(DefaultBodyLimit::max(MAX_PLUGIN_BODY_BYTES)),
        )
        .route(
            "/p/{plugin}/",
            any(plugin_root).layer(DefaultBodyLimit::max(MAX_PLUGIN_BODY_BYTES)),
        )
        .route(
            "/p/{plugin}/{*rest}",
            any(plugin_path).layer(DefaultBodyLimit::max(MAX_PLUGIN_BODY_BYTES)),
        )
}

#[utoipa::path(get, path = "/api/v1/admin/plugins", tag = "admin",
    responses((status = 200, body = PluginList), (status = 403, body = ErrorBody)), security(("token" = [])))]
/// Lists the plugins, their status and counters, and plugin directories that did not load.
async fn list_plugins(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
) -> Result<Json<PluginList>, ApiError> {
    Ok(Json(state.plugins.list(state.plugin_deps()).await?))
}

async fn find(state: &AppState, name: &str) -> Result<PluginInfo, ApiError> {
    state
        .plugins
        .info(state.plugin_deps(), name)
        .await?
        .ok_or(ApiError::NotFound("no such plugin"))
}

#[utoipa::path(get, path = "/api/v1/admin/plugins/{name}", tag = "admin", params(("name" = String, Path, description = "plugin name")),
    responses((status = 200, body = PluginInfo), (status = 404, body = ErrorBody)), security(("token" = [])))]
/// Shows one plugin: manifest, grants, settings, limits, counters, last error.
async fn show_plugin(
    State(state): State<AppState>,
    AdminUser(_admin): AdminUser,
    Path(name): Path<String>,
) -> Result<Json<PluginInfo>, ApiError> {
    Ok(Json(find(&state, &name).await?))
}

#[utoipa::path(post, path = "/api/v1/admin/plugins/{name}/enable", tag = "admin", params(("name" = String, Path, description = "plugin name")),
    responses((status = 200, body = PluginInfo), (status = 404, body = ErrorBody)), security(("token" = [])))]
/// Switches a plugin on (also after an automatic switch-off; its failure count starts again).
async fn enable_plugin(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(name): Path<String>,
) -> Result<Json<PluginInfo>, ApiError> {
    find(&state, &name).await?;
    state
        .plugins
        .set_enabled(state.plugin_deps(), &name, true)
        .await?;
    tracing::info!(admin = %admin.email, plugin = %name, "plugin switched on");
    Ok(Json(find(&state, &name).await?))
}

#[utoipa::path(post, path = "/api/v1/admin/plugins/{name}/disable", tag = "admin", params(("name" = String, Path, description = "plugin name")),
    responses((status = 200, body = PluginInfo), (status = 404, body = ErrorBody)), security(("token" = [])))]
/// Switches a plugin off for the whole server; it stays loaded.
async fn disable_plugin(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(name): Path<String>,
) -> Result<Json<PluginInfo>, ApiError> {
    find(&state, &name).await?;
    state
        .plugins
        .set_enabled(state.plugin_deps(), &name, false)
        .await?;
    tracing::info!(admin = %admin.email, plugin = %name, "plugin switched off");
    Ok(Json(find(&state, &name).await?))
}

#[utoipa::path(post, path = "/api/v1/admin/plugins/{name}/reload", tag = "admin", params(("name" = String, Path, description = "plugin name")),
    responses((status = 200, body = PluginInfo), (status = 404, body = ErrorBody),
        (status = 422, description = "the new files do not load; the running version stays", body = ErrorBody)),
    security(("token" = [])))]
/// Loads a plugin's files again (after a rebuild). If they do not load, the running version stays.
async fn reload_plugin(
    State(state): State<AppState>,
    AdminUser(admin): AdminUser,
    Path(name): Path<String>,
) -> Result<Json<PluginInfo>, ApiError> {
    match state.plugins.reload(state.plugin_deps(), &name).await {
        Ok(()) => {}
        Err(InvokeError::Failed { reason, .. }) => return Err(ApiError::InvalidBody(reason)),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(admin = %admin.email, plugin = %name, "plugin reloaded");
    Ok(Json(find(&state, &name).await?))
}

async fn static_file(
    State(state): State<AppState>,
    Path((plugin, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    const MISSING: ApiError = ApiError::NotFound("no such file");
    let dir = state.plugins.static_dir(&plugin).ok_or(MISSING)?;
    let policy = state.policy.get(&state.store).await?;
    if !policy.plugin_enabled(&plugin) {
        return Err(MISSING);
    }
    if !crate::plugins::manifest::safe_relative(&path) {
        return Err(MISSING);
    }
    let file = dir.join(&path);
    let bytes = tokio::fs::read(&file).await.map_err(|_| MISSING)?;
    let content_type = match file.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "html" => "text/html; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "wasm" => "application/wasm",
        "txt" => "text/plain; charset=utf-8",
        "woff2" => "font/woff2",
        _ => "application/octet-stream",
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        bytes,
    )
        .into_response())
}

async fn plugin_root(
    state: State<AppState>,
    Path(plugin): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    handle(
        state,
        plugin,
        "/".into(),
        method,
        uri,
        headers,
        body_or_error(body)?,
    )
    .await
}

/// A body over the limit (or one that breaks off) is an API error like any other.
fn body_or_error(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge
        } else {
            ApiError::BadRequest(e.body_text())
        }
    })
}

async fn plugin_path(
    state: State<AppState>,
    Path((plugin, rest)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    handle(
        state,
        plugin,
        format!("/{rest}"),
        method,
        uri,
        headers,
        body_or_error(body)?,
    )
    .await
}

/// Request headers a plugin never sees: credentials stay with the server.
const WITHHELD: [&str; 4] = [
    "cookie",
    "authorization",
    "x-csrf-token",
    "proxy-authorization",
];

/// Response headers a plugin may not set: the server's security headers and
/// session cookie are not the plugin's to change.
fn response_header_allowed(name: &str) -> bool {
    !matches!(
        name,
        "set-cookie"
            | "content-security-policy"
            | "content-security-policy-report-only"
            | "x-frame-options"
            | "strict-transport-security"
            | "x-content-type-options"
            | "referrer-policy"
            | "content-length"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "upgrade"
    )
}

async fn handle(
    State(state): State<AppState>,
    plugin: String,
    path: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user = acting_user(&state, &method, &headers).await?;
    let request = PluginRequest {
        method: method.as_str().to_string(),
        path,
        query: uri.query().unwrap_or("").to_string(),
        headers: headers
            .iter()
            .filter(|(name, _)| !WITHHELD.contains(&name.as_str()))
            .filter_map(|(name, value)| {
                Some((name.as_str().to_string(), value.to_str().ok()?.to_string()))
            })
            .collect(),
        body: body.to_vec(),
        user,
    };
    let answer = state
        .plugins
        .http(state.plugin_deps(), &plugin, request)
        .await?;
    let status = StatusCode::from_u16(answer.status)
        .ok()
        .filter(|s| (200..=599).contains(&s.as_u16()))
        .ok_or_else(|| {
            ApiError::PluginFailed(format!(
                "the plugin {plugin:?} answered with an invalid status {}",
                answer.status
            ))
        })?;
    let mut response = Response::new(Body::from(answer.body));
    *response.status_mut() = status;
    for (name, value) in answer.headers {
        let lower = name.to_ascii_lowercase();
        if !response_header_allowed(&lower) {
            continue;
        }
        match (
            HeaderName::from_bytes(lower.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            (Ok(name), Ok(value)) => {
                response.headers_mut().append(name, value);
            }
            _ => {
                tracing::warn!(%plugin, header = %name, "plugin response header dropped: not a valid header")
            }
        }
    }
    Ok(response)
}

/// The signed-in user behind a plugin request: an API token, or the session cookie.
/// A state-changing request with the cookie must come from this server's own pages
/// (`Origin` of the public URL, or the `X-CSRF-Token` header).
async fn acting_user(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Option<i64>, ApiError> {
    let now = state.clock.now();
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let token = super::extract::bearer_token(value).ok_or(ApiError::Unauthorized)?;
        return accounts::authenticate_token(&state.store, token, now)
            .await?
            .map(|a| Some(a.id))
            .ok_or(ApiError::Unauthorized);
    }
    let jar = CookieJar::from_headers(headers);
    let Some(cookie) = jar.get(super::extract::SESSION_COOKIE) else {
        return Ok(None);
    };
    let Some((session, account)) =
        accounts::session_account(&state.store, cookie.value(), now).await?
    else {
        return Ok(None);
    };
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        let origin_ok = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|o| o.trim_end_matches('/') == public_origin(state.public_url()));
        let token_ok = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t == session.csrf_token);
        if !origin_ok && !token_ok {
            return Err(ApiError::Csrf);
        }
    }
    Ok(Some(account.id))
}

fn public_origin(public_url: &str) -> String {
    url::Url::parse(public_url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default()
}
