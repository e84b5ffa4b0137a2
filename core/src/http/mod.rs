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

mod calls;
pub mod error;
pub mod extract;
pub mod guest_cookie;
mod links;
mod mail;
pub mod openapi;
mod ops;
pub(crate) mod pages;
mod plugins;
mod policy;
mod users;

pub use error::ApiError;

/// Serves `router` on `listener` over HTTP/1.1 until `stop` resolves, then lets
/// in-flight requests finish. Every request carries its client's address
/// (`ConnectInfo<SocketAddr>`). A connection that does not send a request's headers
/// within `header_read_timeout` (a slow or idle client) is closed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    header_read_timeout: std::time::Duration,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use tower::ServiceExt as _;
    let (closing, closing_seen) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors, say: wait rather than spin.
                    tracing::warn!(error = %err, "could not accept a connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let mut closing = closing_seen.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    router.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = async { let _ = closing.wait_for(|c| *c).await; } => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = closing.send(true);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Answers `503 request_timeout` for a request not answered within `limit`
/// (`server.request_timeout_secs`), counting it in `metrics`.
async fn answer_within(
    limit: std::time::Duration,
    metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
    request: Request,
    next: middleware::Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            if let Some(metrics) = metrics {
                metrics.count_refused("request_timeout");
            }
            ApiError::Unavailable {
                code: "request_timeout",
                message: "the server took too long to answer; try again".into(),
            }
            .into_response()
        }
    }
}

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
        .route("/j/{id}/ws", axum::routing::get(calls::connect))
        .merge(ops::router())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.config.server.max_body_bytes))
        .layer(middleware::from_fn({
            let limit =
                std::time::Duration::from_secs(u64::from(state.config.server.request_timeout_secs));
            let metrics = state.metrics.clone();
            move |request: Request, next: middleware::Next| {
                answer_within(limit, Some(metrics.clone()), request, next)
            }
        }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt as _;

    #[tokio::test]
    async fn a_request_not_answered_in_time_gets_a_503_with_a_json_body() {
        let app = Router::new()
            .route(
                "/slow",
                axum::routing::get(|| async {
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    "late"
                }),
            )
            .route("/quick", axum::routing::get(|| async { "quick" }))
            .layer(middleware::from_fn(
                |request: Request, next: middleware::Next| {
                    answer_within(std::time::Duration::from_millis(100), None, request, next)
                },
            ));
        let call = |path: &'static str| {
            app.clone().oneshot(
                Request::builder()
                    .uri(path)
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
        };
        let slow = call("/slow").await.unwrap();
        assert_eq!(slow.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(slow.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "request_timeout");
        assert_eq!(call("/quick").await.unwrap().status(), StatusCode::OK);
    }
}
