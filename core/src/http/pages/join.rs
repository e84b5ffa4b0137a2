//! The public link page `/j/{id}`: the join form, and what a guest without
//! JavaScript gets when they post it.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;
use serde::{Deserialize, Serialize};
use tera::Context;

use crate::AppState;
use crate::http::extract::WebUser;
use crate::links::{self, PublicLink};
use crate::privacy::{self, CallEventKind};
use crate::validate;

use super::*;

/// What the link page can show for an id, or the page to show instead.
pub(super) async fn joinable_link(
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
pub(super) struct JoinView<'a> {
    pub(super) id: &'a str,
    pub(super) title: &'a str,
    pub(super) description: Option<&'a str>,
    pub(super) when: Option<String>,
    pub(super) needs_approval: bool,
}

pub(super) async fn render_join(
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
    let modules = state.plugins.call_page_modules(state.plugin_deps()).await;
    ctx.insert(
        "plugin_modules",
        &serde_json::to_string(&modules).unwrap_or_else(|_| "[]".into()),
    );
    ctx.insert("plugin_limits", &super::plugin_frame_limits(state));
    (status, jar, render(state, "pages/join.html", &ctx)).into_response()
}

pub(super) async fn join_page(
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
pub(super) struct JoinForm {
    #[serde(default)]
    pub(super) csrf: String,
    #[serde(default)]
    pub(super) name: String,
}

pub(super) async fn join_request(
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
