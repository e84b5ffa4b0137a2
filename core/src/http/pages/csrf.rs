//! Cross-site request forgery: a double-submit cookie before sign-in, the
//! session's own token after.

use axum_extra::extract::CookieJar;

use crate::AppState;
use crate::http::extract::{CSRF_COOKIE, WebUser};
use crate::secret::{constant_time_eq, random_base62};

use super::*;

/// The pre-sign-in CSRF token: the cookie's value, or a new one to set.
pub(super) fn csrf_cookie_token(state: &AppState, jar: CookieJar) -> (CookieJar, String) {
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

pub(super) fn csrf_cookie_matches(jar: &CookieJar, sent: &str) -> bool {
    jar.get(CSRF_COOKIE)
        .is_some_and(|c| !sent.is_empty() && constant_time_eq(c.value(), sent))
}

pub(super) fn session_csrf_matches(user: &WebUser, sent: &str) -> bool {
    constant_time_eq(&user.session.csrf_token, sent)
}
