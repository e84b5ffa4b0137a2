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
use super::extract::{AdminUser, Json, WebUser};
use crate::AppState;
use crate::accounts;
use crate::plugins::{Capability, InvokeError, PluginInfo, PluginList, PluginRequest};

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
        .route("/plugin-frame/{plugin}/{kind}", get(frame_document))
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
    // A link the plugin ships (to the configuration, say) leads nowhere.
    let file = tokio::fs::canonicalize(dir.join(&path))
        .await
        .map_err(|_| MISSING)?;
    let root = tokio::fs::canonicalize(&dir).await.map_err(|_| MISSING)?;
    if !file.starts_with(&root) {
        return Err(MISSING);
    }
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
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CACHE_CONTROL, "no-cache".to_string()),
            // Plugin frames have an opaque origin: their module scripts are
            // cross-origin requests. These files are public.
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".to_string()),
            // A page or picture among them, opened on its own (in a popup the
            // plugin's frame opens, say), is sandboxed like the plugin's pages:
            // never a document of Confab's origin.
            (
                header::CONTENT_SECURITY_POLICY,
                plugin_page_policy(&public_origin(state.public_url())),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// The sandbox of plugin frames and of pages under `/p/`: scripts run, forms
/// post and links open, but in an opaque origin, so the document reaches none of
/// Confab's cookies, storage or pages (docs/security.md, "Plugin web code").
const SANDBOX: &str =
    "sandbox allow-scripts allow-forms allow-popups allow-popups-to-escape-sandbox allow-downloads";

/// `Content-Security-Policy` of what a plugin answers under `/p/`: sandboxed, so
/// that opening a plugin's page gets no access to Confab's cookies or storage.
fn plugin_page_policy(origin: &str) -> String {
    format!(
        "{SANDBOX}; default-src 'self' {origin}; img-src 'self' {origin} data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
}

/// `Content-Security-Policy` of a plugin frame's document: sandboxed, scripts and
/// styles from this server only, and no network of its own (`connect-src
/// 'none'`): everything goes through the page's bridge. Only this server's pages
/// may frame it.
fn frame_policy(origin: &str) -> String {
    format!(
        "{SANDBOX}; default-src 'none'; script-src 'self' {origin}; style-src 'self' {origin} 'unsafe-inline'; img-src 'self' {origin} data: blob: https:; media-src 'self' {origin} blob: https:; font-src 'self' {origin}; connect-src 'none'; form-action 'none'; base-uri 'none'; frame-ancestors 'self' {origin}"
    )
}

/// `text` for a double-quoted HTML attribute.
fn attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A plugin's frame (`kind` is `call-page`, `dashboard` or `admin`): a small
/// document that loads `/static/plugin-kit.js`, which talks to the page over the
/// bridge and starts the plugin's module. 404 for a plugin that is switched off,
/// has no such module or was not granted it; an administrators' frame only for
/// administrators.
async fn frame_document(
    State(state): State<AppState>,
    Path((plugin, kind)): Path<(String, String)>,
    user: Option<WebUser>,
) -> Result<Response, ApiError> {
    const MISSING: ApiError = ApiError::NotFound("no such plugin frame");
    let kind = Capability::parse(&format!("web.{kind}"))
        .filter(|k| {
            matches!(
                k,
                Capability::WebCallPage | Capability::WebDashboard | Capability::WebAdmin
            )
        })
        .ok_or(MISSING)?;
    if kind == Capability::WebAdmin && !user.as_ref().is_some_and(|u| u.account.is_admin()) {
        return Err(MISSING);
    }
    let module = state
        .plugins
        .frame_module(state.plugin_deps(), &plugin, kind)
        .await
        .ok_or(MISSING)?;
    let page = kind.as_str().trim_start_matches("web.");
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{plugin}</title><link rel=\"stylesheet\" href=\"/static/app.css\">\
         <script type=\"module\" src=\"/static/plugin-kit.js\"></script></head>\
         <body class=\"plugin-frame\"><main id=\"plugin\" data-plugin=\"{plugin}\" data-page=\"{page}\" data-module=\"{module}\"></main></body></html>",
        plugin = attribute(&plugin),
        module = attribute(&module.url),
    );
    let origin = public_origin(state.public_url());
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (header::CACHE_CONTROL, "no-cache".to_string()),
            (header::CONTENT_SECURITY_POLICY, frame_policy(&origin)),
            (header::X_FRAME_OPTIONS, "SAMEORIGIN".to_string()),
        ],
        body,
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
/// session cookie are not the plugin's to change, nor anything that acts on
/// Confab's whole origin (clearing its storage, reporting its requests, a
/// service worker's scope, cross-origin access).
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
            | "clear-site-data"
            | "nel"
            | "report-to"
            | "reporting-endpoints"
            | "service-worker-allowed"
            | "permissions-policy"
            | "origin-agent-cluster"
            | "cross-origin-opener-policy"
            | "cross-origin-embedder-policy"
            | "cross-origin-resource-policy"
            | "access-control-allow-origin"
            | "access-control-allow-credentials"
            | "access-control-allow-headers"
            | "access-control-allow-methods"
            | "access-control-expose-headers"
            | "alt-svc"
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
    if let Ok(policy) =
        HeaderValue::from_str(&plugin_page_policy(&public_origin(state.public_url())))
    {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, policy);
    }
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
