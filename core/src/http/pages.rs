//! The web pages: sign in/out, the dashboard, and the public link page `/j/{id}`.
//!
//! Forms post with a CSRF token: the session's token once signed in, a
//! double-submit cookie before (sign-in form, guests on the link page).

use axum::Router;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};
use tera::Context;

use super::extract::{CSRF_COOKIE, SESSION_COOKIE, WebUser};
use crate::AppState;
use crate::accounts::{self, AccountError};
use crate::links::{self, LinkError, LinkView, NewLink, PublicLink};
use crate::privacy::{self, CallEventKind};
use crate::secret::{Secret, constant_time_eq, random_base62};
use crate::store::LinkFilter;
use crate::validate;

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

/// The pre-sign-in CSRF token: the cookie's value, or a new one to set.
fn csrf_cookie_token(state: &AppState, jar: CookieJar) -> (CookieJar, String) {
    match jar.get(CSRF_COOKIE) {
        Some(c) if c.value().len() == 32 => {
            let value = c.value().to_string();
            (jar, value)
        }
        _ => {
            let value = random_base62(32);
            (
                jar.add(site_cookie(state, CSRF_COOKIE, value.clone())),
                value,
            )
        }
    }
}

fn csrf_cookie_matches(jar: &CookieJar, sent: &str) -> bool {
    jar.get(CSRF_COOKIE)
        .is_some_and(|c| !sent.is_empty() && constant_time_eq(c.value(), sent))
}

fn session_csrf_matches(user: &WebUser, sent: &str) -> bool {
    constant_time_eq(&user.session.csrf_token, sent)
}

/// Where to go after sign-in: `next` as a browser would resolve it on this site,
/// if that stays on this site; anything else goes to the dashboard. Parsing it the
/// way browsers do (the WHATWG URL parser drops tabs and newlines and reads `\` as
/// `/`) leaves no trick such as `/\t/evil.example` to go elsewhere, and the result
/// is re-serialized, so it is always a valid `Location`.
pub(crate) fn safe_next(next: &str) -> String {
    const FALLBACK: &str = "/dashboard";
    let Ok(base) = url::Url::parse("https://confab.invalid/") else {
        return FALLBACK.into();
    };
    if !next.starts_with('/') {
        return FALLBACK.into();
    }
    match base.join(next) {
        // A path that itself starts with `//` (from `/.//evil.example`, say) would
        // be read as another host when sent back as `Location`.
        Ok(target) if target.origin() == base.origin() && !target.path().starts_with("//") => {
            let mut path = target.path().to_string();
            if let Some(query) = target.query() {
                path.push('?');
                path.push_str(query);
            }
            if let Some(fragment) = target.fragment() {
                path.push('#');
                path.push_str(fragment);
            }
            path
        }
        _ => FALLBACK.into(),
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

#[derive(Deserialize)]
struct NextQuery {
    #[serde(default)]
    next: String,
}

async fn login_page(
    State(state): State<AppState>,
    jar: CookieJar,
    user: Option<WebUser>,
    axum::extract::Query(query): axum::extract::Query<NextQuery>,
) -> Response {
    if user.is_some() {
        return Redirect::to(&safe_next(&query.next)).into_response();
    }
    let (jar, csrf) = csrf_cookie_token(&state, jar);
    render_login(&state, jar, &csrf, &query.next, "", None, StatusCode::OK)
}

fn render_login(
    state: &AppState,
    jar: CookieJar,
    csrf: &str,
    next: &str,
    email: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let mut ctx = Context::new();
    ctx.insert("csrf", csrf);
    ctx.insert("next", next);
    ctx.insert("email", email);
    ctx.insert("error", &error);
    (status, jar, render(state, "pages/login.html", &ctx)).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: String,
}

async fn login(
    State(state): State<AppState>,
    jar: CookieJar,
    headers: HeaderMap,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    PageForm(form): PageForm<LoginForm>,
) -> Response {
    let address = peer.map(|axum::Extension(axum::extract::ConnectInfo(peer))| {
        crate::calls::network_of(crate::limits::client_address(
            peer,
            &headers,
            &state.config.server.trusted_proxies,
        ))
    });
    if !csrf_cookie_matches(&jar, &form.csrf) {
        return page_error(&state, PageError::csrf());
    }
    let now = state.clock.now();
    let (jar, csrf) = csrf_cookie_token(&state, jar);
    match accounts::authenticate(
        &state.store,
        &state.throttle,
        &form.email,
        Secret::new(form.password),
        address,
        now,
    )
    .await
    {
        Ok(account) => {
            let ttl = chrono::Duration::hours(i64::from(state.config.auth.session_ttl_hours));
            match accounts::start_session(&state.store, account.id, now, ttl).await {
                Ok(session) => {
                    let mut cookie = site_cookie(
                        &state,
                        SESSION_COOKIE,
                        session.cookie_value.expose().to_string(),
                    );
                    cookie.set_max_age(time_duration(ttl));
                    // A fresh CSRF cookie for the next anonymous form, so a token seen before sign-in is useless after.
                    let jar =
                        jar.add(cookie)
                            .add(site_cookie(&state, CSRF_COOKIE, random_base62(32)));
                    (jar, Redirect::to(&safe_next(&form.next))).into_response()
                }
                Err(err) => page_error(&state, PageError::internal(err)),
            }
        }
        Err(AccountError::InvalidCredentials) => render_login(
            &state,
            jar,
            &csrf,
            &form.next,
            &form.email,
            Some("Wrong email address or password."),
            StatusCode::UNAUTHORIZED,
        ),
        Err(err @ (AccountError::Throttled { .. } | AccountError::Busy)) => {
            let message = format!("{}.", capitalize(&err.to_string()));
            render_login(
                &state,
                jar,
                &csrf,
                &form.next,
                &form.email,
                Some(&message),
                StatusCode::TOO_MANY_REQUESTS,
            )
        }
        Err(err) => page_error(&state, PageError::internal(err)),
    }
}

fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

fn time_duration(d: chrono::Duration) -> cookie::time::Duration {
    cookie::time::Duration::seconds(d.num_seconds())
}

#[derive(Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    user: WebUser,
    jar: CookieJar,
    PageForm(form): PageForm<CsrfForm>,
) -> Response {
    if !session_csrf_matches(&user, &form.csrf) {
        return page_error(&state, PageError::csrf());
    }
    if let Err(err) = accounts::end_session(&state.store, &user.cookie_value).await {
        return page_error(&state, PageError::internal(err));
    }
    let jar = jar.remove(Cookie::build(SESSION_COOKIE).path("/"));
    // Link secrets the dashboard was asked to remember, and everything else this
    // browser stored for the site, go with the session.
    (
        jar,
        [(
            header::HeaderName::from_static("clear-site-data"),
            "\"storage\"",
        )],
        Redirect::to("/login"),
    )
        .into_response()
}

#[derive(Deserialize)]
struct DashboardQuery {
    #[serde(default)]
    before: Option<i64>,
    /// The link the create form just made: the browser that submitted the form
    /// gives it the secret it made (`dashboard.js`).
    #[serde(default)]
    created: Option<String>,
}

/// A link as the dashboard shows it: the API view plus a readable schedule. Its
/// `url` has no secret: the browser adds the one it knows (`dashboard.js`).
#[derive(Serialize)]
struct DashboardLink {
    #[serde(flatten)]
    view: LinkView,
    when: Option<String>,
    /// The link the create form just made.
    created: bool,
}

#[derive(Default)]
struct DashboardExtras<'a> {
    error: Option<String>,
    form_title: &'a str,
    form_description: &'a str,
    new_token: Option<String>,
    token_error: Option<String>,
    created: Option<&'a str>,
}

async fn render_dashboard(
    state: &AppState,
    user: &WebUser,
    before: Option<i64>,
    extras: DashboardExtras<'_>,
    status: StatusCode,
) -> Result<Response, PageError> {
    let policy = state.policy.get(&state.store).await?;
    let (items, next) = links::list(
        &state.store,
        &user.account,
        LinkFilter::All,
        before,
        DASHBOARD_PAGE_SIZE,
    )
    .await
    .map_err(PageError::internal)?;
    let views: Vec<DashboardLink> = items
        .iter()
        .map(|l| {
            let view = LinkView::new(l, state.public_url());
            DashboardLink {
                when: view.schedule.as_ref().map(|s| s.describe()),
                created: extras.created == Some(view.id.as_str()),
                view,
            }
        })
        .collect();
    let tokens: Vec<crate::accounts::TokenInfo> = state
        .store
        .tokens_of(user.account.id)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    let mut ctx = base_context(Some(user));
    ctx.insert("links", &views);
    ctx.insert("next_cursor", &next);
    ctx.insert("tokens", &tokens);
    ctx.insert(
        "can_create",
        &(user.account.is_admin() || policy.member_link_creation),
    );
    ctx.insert("error", &extras.error);
    ctx.insert("form_title", extras.form_title);
    ctx.insert("form_description", extras.form_description);
    ctx.insert("new_token", &extras.new_token);
    ctx.insert("token_error", &extras.token_error);
    let modules = state.plugins.dashboard_modules(state).await;
    ctx.insert(
        "plugin_modules",
        &serde_json::to_string(&modules).unwrap_or_else(|_| "[]".into()),
    );
    Ok((status, render(state, "pages/dashboard.html", &ctx)).into_response())
}

async fn dashboard(
    State(state): State<AppState>,
    user: WebUser,
    axum::extract::Query(query): axum::extract::Query<DashboardQuery>,
) -> Response {
    render_dashboard(
        &state,
        &user,
        query.before,
        DashboardExtras {
            created: query.created.as_deref(),
            ..Default::default()
        },
        StatusCode::OK,
    )
    .await
    .unwrap_or_else(|e| page_error(&state, e))
}

#[derive(Deserialize)]
struct CreateLinkForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    guests_need_approval: Option<String>,
    #[serde(default)]
    members_need_approval: Option<String>,
    #[serde(default)]
    max_participants: Option<String>,
}

async fn dashboard_create_link(
    State(state): State<AppState>,
    user: WebUser,
    PageForm(form): PageForm<CreateLinkForm>,
) -> Response {
    if !session_csrf_matches(&user, &form.csrf) {
        return page_error(&state, PageError::csrf());
    }
    let result = async {
        let policy = state.policy.get(&state.store).await?;
        let max_participants = match form.max_participants.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(v) => Some(v.parse::<i32>().map_err(|_| {
                LinkError::Invalid(validate::Invalid::new(
                    "max_participants",
                    "must be a whole number between 1 and 32",
                ))
            })?),
        };
        let input = NewLink {
            title: form.title.clone(),
            description: Some(form.description.clone()),
            schedule: None,
            guests_need_approval: Some(form.guests_need_approval.is_some()),
            members_need_approval: Some(form.members_need_approval.is_some()),
            max_participants,
        };
        links::create(
            &state.store,
            &policy,
            &user.account,
            input,
            state.clock.now(),
        )
        .await
    }
    .await;
    match result {
        Ok(link) => {
            state.metrics.links_created.inc();
            let created = format!("/dashboard?created={}", link.public_id);
            crate::plugins::emit(&state, crate::plugins::Event::LinkCreated(link));
            Redirect::to(&created).into_response()
        }
        Err(err) => {
            let (status, message) = match &err {
                LinkError::Invalid(invalid) => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    capitalize(&invalid.to_string()),
                ),
                LinkError::CreationDisabled => {
                    (StatusCode::FORBIDDEN, capitalize(&err.to_string()))
                }
                _ => return page_error(&state, PageError::internal(err)),
            };
            let extras = DashboardExtras {
                error: Some(message),
                form_title: &form.title,
                form_description: &form.description,
                ..Default::default()
            };
            render_dashboard(&state, &user, None, extras, status)
                .await
                .unwrap_or_else(|e| page_error(&state, e))
        }
    }
}

async fn dashboard_revoke_link(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> Response {
    if !session_csrf_matches(&user, &form.csrf) {
        return page_error(&state, PageError::csrf());
    }
    let now = state.clock.now();
    match links::revoke(&state.store, &user.account, &id, now).await {
        Ok(link) => {
            if link.revoked_at == Some(now) {
                crate::plugins::emit(&state, crate::plugins::Event::LinkRevoked(link));
            }
            Redirect::to("/dashboard").into_response()
        }
        Err(LinkError::NotFound) => page_error(
            &state,
            PageError::new(
                StatusCode::NOT_FOUND,
                "Link not found",
                "This link does not exist or is not yours.",
            ),
        ),
        Err(err) => page_error(&state, PageError::internal(err)),
    }
}

#[derive(Deserialize)]
struct CreateTokenForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

async fn dashboard_create_token(
    State(state): State<AppState>,
    user: WebUser,
    PageForm(form): PageForm<CreateTokenForm>,
) -> Response {
    if !session_csrf_matches(&user, &form.csrf) {
        return page_error(&state, PageError::csrf());
    }
    let extras =
        match accounts::issue_token(&state.store, user.account.id, &form.name, state.clock.now())
            .await
        {
            Ok(issued) => DashboardExtras {
                new_token: Some(issued.secret.expose().to_string()),
                ..Default::default()
            },
            Err(AccountError::Invalid(invalid)) => DashboardExtras {
                token_error: Some(capitalize(&invalid.to_string().replacen(
                    "name",
                    "token name",
                    1,
                ))),
                ..Default::default()
            },
            Err(err) => return page_error(&state, PageError::internal(err)),
        };
    let status = if extras.token_error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::CREATED
    };
    let mut response = render_dashboard(&state, &user, None, extras, status)
        .await
        .unwrap_or_else(|e| page_error(&state, e));
    // The page shows a secret: never cache it.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

async fn dashboard_revoke_token(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    PageForm(form): PageForm<CsrfForm>,
) -> Response {
    if !session_csrf_matches(&user, &form.csrf) {
        return page_error(&state, PageError::csrf());
    }
    let Ok(id) = id.parse::<i64>() else {
        return page_error(
            &state,
            PageError::new(
                StatusCode::NOT_FOUND,
                "Token not found",
                "This token does not exist.",
            ),
        );
    };
    match state
        .store
        .revoke_token(user.account.id, id, state.clock.now())
        .await
    {
        Ok(Some(_)) => Redirect::to("/dashboard").into_response(),
        Ok(None) => page_error(
            &state,
            PageError::new(
                StatusCode::NOT_FOUND,
                "Token not found",
                "This token does not exist.",
            ),
        ),
        Err(err) => page_error(&state, PageError::internal(err)),
    }
}

/// What the link page can show for an id, or the page to show instead.
async fn joinable_link(
    state: &AppState,
    id: &str,
    user: Option<&WebUser>,
) -> Result<crate::store::link::Model, Response> {
    let found = links::resolve(&state.store, id)
        .await
        .map_err(|e| page_error(state, PageError::internal(e)))?;
    let link = match found {
        PublicLink::Active(link) => link,
        PublicLink::Revoked(_) => {
            return Err(message_page(
                state,
                StatusCode::GONE,
                "This link was revoked",
                "The person who shared it turned it off. Ask them for a new link.",
                "bad",
                None,
            ));
        }
        PublicLink::NotFound => {
            return Err(message_page(
                state,
                StatusCode::NOT_FOUND,
                "Link not found",
                "Check that you copied the whole address. Links that were replaced with a new one stop working.",
                "bad",
                None,
            ));
        }
    };
    if user.is_none() {
        let policy = state
            .policy
            .get(&state.store)
            .await
            .map_err(|e| page_error(state, e.into()))?;
        if !policy.guest_access {
            let next = format!("/login?next=/j/{}", link.public_id);
            return Err(message_page(
                state,
                StatusCode::FORBIDDEN,
                "Guest access is turned off",
                "This organization only lets signed-in members join calls. Sign in to continue.",
                "bad",
                Some((&next, "Sign in")),
            ));
        }
    }
    Ok(link)
}

#[derive(Serialize)]
struct JoinView<'a> {
    id: &'a str,
    title: &'a str,
    description: Option<&'a str>,
    when: Option<String>,
    needs_approval: bool,
}

async fn render_join(
    state: &AppState,
    jar: CookieJar,
    link: &crate::store::link::Model,
    user: Option<&WebUser>,
    name: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (jar, csrf) = csrf_cookie_token(state, jar);
    // Guests get a device cookie for this link, which removals and blocks hold on to.
    let jar = match user {
        None => {
            state
                .guest_cookies
                .ensure(jar, link.pk, &link.public_id, state.config.cookie_secure())
        }
        Some(_) => jar,
    };
    let mut ctx = base_context(user);
    let view = JoinView {
        id: &link.public_id,
        title: &link.title,
        description: link.description.as_deref(),
        when: links::Schedule::from_row(link).map(|s| s.describe()),
        needs_approval: match user {
            None => link.guests_need_approval,
            Some(u) => link.members_need_approval && u.account.id != link.owner_id,
        },
    };
    ctx.extend(Context::from_serialize(&view).unwrap_or_default());
    ctx.insert("csrf", &csrf); // the join form uses the double-submit cookie, signed in or not
    // Plugins' call-page modules send the session's token with their requests.
    ctx.insert("session_csrf", &user.map(|u| u.session.csrf_token.as_str()));
    ctx.insert("name", name);
    ctx.insert("error", &error);
    // Only a server built for the test suite lets the page's tests reach its keys.
    ctx.insert("test_hooks", &cfg!(feature = "test-tap"));
    let modules = state.plugins.call_page_modules(state).await;
    ctx.insert(
        "plugin_modules",
        &serde_json::to_string(&modules).unwrap_or_else(|_| "[]".into()),
    );
    (status, jar, render(state, "pages/join.html", &ctx)).into_response()
}

async fn join_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    user: Option<WebUser>,
    jar: CookieJar,
) -> Response {
    match joinable_link(&state, &id, user.as_ref()).await {
        Ok(link) => {
            let name = user
                .as_ref()
                .map(|u| u.account.display_name.as_str())
                .unwrap_or("");
            render_join(
                &state,
                jar,
                &link,
                user.as_ref(),
                name,
                None,
                StatusCode::OK,
            )
            .await
        }
        Err(page) => page,
    }
}

#[derive(Deserialize)]
struct JoinForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
}

async fn join_request(
    State(state): State<AppState>,
    Path(id): Path<String>,
    user: Option<WebUser>,
    jar: CookieJar,
    headers: HeaderMap,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    PageForm(form): PageForm<JoinForm>,
) -> Response {
    if !csrf_cookie_matches(&jar, &form.csrf) {
        return page_error(&state, PageError::csrf());
    }
    let link = match joinable_link(&state, &id, user.as_ref()).await {
        Ok(link) => link,
        Err(page) => return page,
    };
    // The same limit as a guest's join request over signaling.
    if user.is_none()
        && let Some(axum::Extension(axum::extract::ConnectInfo(peer))) = peer
    {
        let address =
            crate::limits::client_address(peer, &headers, &state.config.server.trusted_proxies);
        if !state.calls.allow_join_request(link.pk, address) {
            state.metrics.count_refused("join_requests_per_minute");
            return message_page(
                &state,
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                "Too many requests to join this call came from your network. Wait a minute and try again.",
                "bad",
                None,
            );
        }
    }
    let name = match validate::text("name", &form.name, 1, MAX_GUEST_NAME_CHARS) {
        Ok(name) => name,
        Err(_) => {
            let error = format!("Enter a name of 1 to {MAX_GUEST_NAME_CHARS} characters.");
            return render_join(
                &state,
                jar,
                &link,
                user.as_ref(),
                &form.name,
                Some(&error),
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await;
        }
    };
    let now = state.clock.now();
    if let Err(err) = privacy::record(
        &state.store,
        &link.public_id,
        CallEventKind::JoinRequested,
        Some(&name),
        now,
    )
    .await
    {
        return page_error(&state, PageError::internal(err));
    }
    // The call itself runs in the page's script over the signaling WebSocket; a
    // browser that posts the form has scripts turned off.
    message_page(
        &state,
        StatusCode::ACCEPTED,
        "Turn on JavaScript to join",
        &format!(
            "Thanks, {name}. Joining a call happens in the page itself, which needs JavaScript. Turn it on and open the link again."
        ),
        "info",
        None,
    )
}

/// One file of `core/static/`, built into the binary: its path under `/static/`
/// and its contents.
macro_rules! static_file {
    ($path:literal) => {
        ($path, include_str!(concat!("../../static/", $path)))
    };
}

/// Every file under `core/static/` (a test checks that none is missing).
const STATIC_FILES: &[(&str, &str)] = &[
    static_file!("app.css"),
    static_file!("dashboard.js"),
    static_file!("call.js"),
    static_file!("media.js"),
    static_file!("plugins.js"),
    static_file!("e2ee.js"),
    static_file!("e2ee-worker.js"),
    static_file!("call-crypto.js"),
    static_file!("call/signaling.js"),
    static_file!("call/state.js"),
    static_file!("call/secret.js"),
    static_file!("call/views.js"),
    static_file!("call/tiles.js"),
    static_file!("lib/dom.js"),
    static_file!("lib/time.js"),
    static_file!("lib/random.js"),
    static_file!("lib/plugin-fetch.js"),
];

async fn static_file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some(&(_, body)) = STATIC_FILES.iter().find(|(path, _)| *path == file) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let content_type = if file.ends_with(".css") {
        "text/css; charset=utf-8"
    } else {
        "text/javascript; charset=utf-8"
    };
    let etag = format!("\"{}\"", &crate::secret::sha256_hex(body)[..16]);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CACHE_CONTROL, "public, max-age=300".to_string()),
            (header::ETAG, etag),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::{STATIC_FILES, safe_next};

    #[test]
    fn every_file_under_core_static_is_served() {
        fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    let relative = path.strip_prefix(root).unwrap();
                    out.push(relative.to_string_lossy().into_owned());
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
        let mut on_disk = Vec::new();
        walk(&root, &root, &mut on_disk);
        on_disk.sort();
        let mut served: Vec<String> = STATIC_FILES.iter().map(|(p, _)| p.to_string()).collect();
        served.sort();
        assert_eq!(
            served, on_disk,
            "list new files of core/static in STATIC_FILES"
        );
    }

    #[test]
    fn after_sign_in_only_paths_of_this_site_are_followed() {
        for (next, expected) in [
            ("/j/abc", "/j/abc"),
            ("/dashboard?page=2#links", "/dashboard?page=2#links"),
            ("/p/calendar/feeds", "/p/calendar/feeds"),
            // Browsers drop tabs and newlines and read a backslash as a slash.
            ("/\t/evil.example", "/dashboard"),
            ("/\n/evil.example", "/dashboard"),
            ("/\\evil.example", "/dashboard"),
            ("//evil.example", "/dashboard"),
            // Dot segments that leave a `//` path (found by fuzzing).
            ("/.//evil.example", "/dashboard"),
            ("/a/..//evil.example", "/dashboard"),
            ("/.//\r\r\r\u{c}\r/j", "/dashboard"),
            ("https://evil.example/", "/dashboard"),
            ("javascript:alert(1)", "/dashboard"),
            (" /j/abc", "/dashboard"),
            ("", "/dashboard"),
        ] {
            assert_eq!(safe_next(next), expected, "{next:?}");
        }
        // What is kept can always go into a Location header.
        let odd = safe_next("/j/a\nb c\u{7f}é");
        assert!(odd.starts_with("/j/"), "{odd}");
        assert!(axum::http::HeaderValue::from_str(&odd).is_ok(), "{odd}");
    }
}
