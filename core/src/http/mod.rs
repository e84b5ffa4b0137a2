//! The HTTP surface: one module per resource, merged here with the shared layers
//! (body limit, metrics, tracing, security headers, panic catcher).

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

use crate::AppState;

pub mod error;
pub mod extract;
mod links;
mod mail;
pub mod openapi;
mod ops;
mod pages;
mod plugins;
mod policy;
mod users;

pub use error::ApiError;

/// The complete router with every layer, ready to serve.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .merge(links::router())
        .merge(users::router())
        .merge(policy::router())
        .merge(plugins::router())
        .merge(mail::router())
        .merge(openapi::router())
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed });

    Router::new()
        .merge(api)
        .merge(pages::router())
        .route("/j/{id}/ws", axum::routing::get(crate::signaling::connect))
        .merge(ops::router())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.config.server.max_body_bytes))
        .layer(middleware::from_fn_with_state(state.clone(), crate::metrics::track))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            // The route template, not the path: paths carry link ids.
            let route = req
                .extensions()
                .get::<axum::extract::MatchedPath>()
                .map(|p| p.as_str().to_owned())
                .unwrap_or_default();
            tracing::info_span!("http", method = %req.method(), route)
        }))
        .layer(security_header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(security_header(header::REFERRER_POLICY, "no-referrer"))
        .layer(security_header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(security_header(
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
        ))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::Internal("a request handler panicked".into()).into_response()
        }))
        .with_state(state)
}

fn security_header(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}

async fn not_found(req: Request) -> Response {
    if req.uri().path().starts_with("/api/") {
        ApiError::NotFound("no such endpoint").into_response()
    } else {
        (StatusCode::NOT_FOUND, axum::response::Html(NOT_FOUND_PAGE)).into_response()
    }
}

const NOT_FOUND_PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Not found · Confab</title><link rel=\"stylesheet\" href=\"/static/app.css\"></head><body><main class=\"narrow\"><section class=\"card message bad\"><h1>Page not found</h1><p>There is nothing at this address.</p><p><a class=\"button primary\" href=\"/\">Go to Confab</a></p></section></main></body></html>";
