//! Signing in and out, and where to go after signing in.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::Cookie;
use serde::Deserialize;
use tera::Context;

use crate::AppState;
use crate::accounts::{self, AccountError};
use crate::http::extract::{CSRF_COOKIE, SESSION_COOKIE, WebUser};
use crate::secret::{Secret, random_base62};

use super::*;

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

#[derive(Deserialize)]
pub(super) struct NextQuery {
    #[serde(default)]
    pub(super) next: String,
}

pub(super) async fn login_page(
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

pub(super) fn render_login(
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
pub(super) struct LoginForm {
    #[serde(default)]
    pub(super) csrf: String,
    #[serde(default)]
    pub(super) email: String,
    #[serde(default)]
    pub(super) password: String,
    #[serde(default)]
    pub(super) next: String,
}

pub(super) async fn login(
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

pub(super) fn capitalize(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().collect::<String>() + chars.as_str())
        .unwrap_or_default()
}

pub(super) fn time_duration(d: chrono::Duration) -> cookie::time::Duration {
    cookie::time::Duration::seconds(d.num_seconds())
}

#[derive(Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    pub(super) csrf: String,
}

pub(super) async fn logout(
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

#[cfg(test)]
mod tests {
    use super::*;

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
