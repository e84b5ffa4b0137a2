//! The calls' HTTP side: the upgrade to the signaling WebSocket (`GET
//! /j/{id}/ws`), with who is calling, from where, and whether they may.

use std::net::SocketAddr;

use axum::Extension;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum_extra::extract::CookieJar;

use super::ApiError;
use super::extract::{AuthUser, SESSION_COOKIE, bearer_token};
use crate::AppState;
use crate::accounts::SignIn;
use crate::links::{self, PublicLink};
use crate::signaling::{self, Client};

/// `GET /j/{id}/ws`: opens the signaling connection for a link.
pub async fn connect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    user: Result<AuthUser, ApiError>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    // A web session, or (for programs: bots, load generators) a bearer token; a
    // token that does not authenticate is refused rather than treated as a guest.
    let user = match user {
        Ok(AuthUser(account)) => Some(account),
        Err(ApiError::Unauthorized) if !headers.contains_key(header::AUTHORIZATION) => None,
        Err(err) => return err.into_response(),
    };
    // Cross-site WebSocket hijacking: a browser always sends Origin; it must be ours.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok())
        && !same_origin(origin, state.public_url())
    {
        return ApiError::Forbidden("this connection must come from the Confab page")
            .into_response();
    }
    let link = match links::resolve(&state.store, &id).await {
        Ok(PublicLink::Active(link)) => link,
        Ok(PublicLink::Revoked(_)) => {
            return ApiError::Gone {
                code: "link_revoked",
                message: "this link was revoked",
            }
            .into_response();
        }
        Ok(PublicLink::NotFound) => return ApiError::NotFound("no such link").into_response(),
        Err(err) => return ApiError::from(err).into_response(),
    };
    if user.is_none() {
        match state.policy.get(&state.store).await {
            Ok(policy) if !policy.guest_access => {
                return ApiError::FeatureDisabled {
                    code: "guest_access_disabled",
                    message: "guest access is turned off; sign in to join",
                }
                .into_response();
            }
            Ok(_) => {}
            Err(err) => return ApiError::from(err).into_response(),
        }
    }
    // Checked after the link, so that a revoked link says so whatever the request.
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    // The client's address (behind a trusted reverse proxy, from X-Forwarded-For):
    // for the limits per address, removals and blocks, and plugins that screen lobby
    // requests; never stored.
    let address = peer.map(|Extension(ConnectInfo(addr))| {
        crate::limits::client_address(addr, &headers, &state.config.server.trusted_proxies)
    });
    let slot = match address {
        Some(address) => match state.connections.take(crate::calls::network_of(address)) {
            Some(slot) => Some(slot),
            None => {
                state.metrics.count_refused("websocket_per_address");
                return ApiError::TooManyRequests {
                    retry_after_secs: 10,
                }
                .into_response();
            }
        },
        None => None,
    };
    let sign_in = user.as_ref().and_then(|_| sign_in_of(&headers));
    let device = state
        .guest_cookies
        .device(&CookieJar::from_headers(&headers), link.pk);
    let client = Client::new(
        user.map(|account| (account, sign_in)),
        address,
        device,
        slot,
    );
    signaling::upgrade(ws, state, link, client)
}

/// How a connection signed in: kept to check later that it still holds.
fn sign_in_of(headers: &HeaderMap) -> Option<SignIn> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return bearer_token(value).map(|t| SignIn::Token(t.to_string()));
    }
    CookieJar::from_headers(headers)
        .get(SESSION_COOKIE)
        .map(|c| SignIn::Session(c.value().to_string()))
}

fn same_origin(origin: &str, public_url: &str) -> bool {
    match (url::Url::parse(origin), url::Url::parse(public_url)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin(),
        _ => false,
    }
}
