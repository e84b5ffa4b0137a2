//! Health, readiness, metrics, security headers and the OpenAPI document.

use axum::http::{Method, StatusCode};

use crate::support::{TestApp, on_both_databases};

on_both_databases!(ready_when_the_database_answers);

async fn ready_when_the_database_answers(app: TestApp) {
    let health = app.get("/healthz").send().await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json()["status"], "ok");
    let ready = app.get("/readyz").send().await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["database"], "ok");
    app.store.clone().close().await;
    let down = app.get("/readyz").send().await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a closed database is reported"
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_not_by_link_id() {
    let app = TestApp::sqlite().await;
    let token = app.admin_token().await;
    let link = app.create_link(&token, "Metered").await;
    let id = link["id"].as_str().unwrap();
    app.get(&format!("/j/{id}")).send().await;
    let metrics = app.get("/metrics").send().await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.text();
    assert!(
        text.contains(
            "confab_http_requests_total{method=\"POST\",route=\"/api/v1/links\",status=\"201\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("route=\"/j/{id}\""));
    // Methods a client makes up are all `other`: they cannot add series.
    for made_up in ["BREW", "X-ONE", "X-TWO"] {
        app.req(Method::from_bytes(made_up.as_bytes()).unwrap(), "/healthz")
            .send()
            .await;
    }
    let text = app.get("/metrics").send().await.text();
    assert!(!text.contains("BREW") && !text.contains("X-ONE"), "{text}");
    assert!(text.contains("method=\"other\""), "{text}");
    assert!(!text.contains(id), "link ids never appear in metrics");
    assert!(text.contains("confab_links_created_total 1"));
    assert!(text.contains("confab_live_calls 0"), "{text}");
    assert!(text.contains("confab_signaling_connections 0"), "{text}");
    // Someone on the call: one call, one connection.
    let host = app.sign_in("admin@example.org").await;
    let addr = app.serve().await;
    let mut ws = crate::support::ws::Ws::open(&addr, id, Some(&host.cookies)).await;
    ws.send(serde_json::json!({ "v": 1, "type": "join" })).await;
    ws.expect("joined").await;
    let text = app.get("/metrics").send().await.text();
    assert!(text.contains("confab_live_calls 1"), "{text}");
    assert!(text.contains("confab_signaling_connections 1"), "{text}");
    ws.close().await;
    assert!(text.contains("confab_http_request_duration_seconds_bucket"));
    // The media plane is running in the test app: its counters are exported.
    assert!(
        text.contains("confab_media_packets_forwarded_total 0"),
        "{text}"
    );
    assert!(text.contains("confab_media_peer_connections 0"), "{text}");
}

#[tokio::test]
async fn openapi_document_is_3_1_and_matches_the_router() {
    let app = TestApp::sqlite().await;
    let token = app.admin_token().await;
    let res = app.get("/api/v1/openapi.json").send().await;
    assert_eq!(res.status, StatusCode::OK);
    let doc = res.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["components"]["securitySchemes"]["token"]["scheme"],
        "bearer"
    );
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    let paths = doc["paths"].as_object().unwrap();
    for expected in [
        "/api/v1/links",
        "/api/v1/links/{id}",
        "/api/v1/links/{id}/revoke",
        "/api/v1/links/{id}/rotate",
        "/api/v1/me",
        "/api/v1/users",
        "/api/v1/tokens",
        "/api/v1/tokens/{id}",
        "/api/v1/admin/policy",
    ] {
        assert!(paths.contains_key(expected), "{expected} is documented");
    }
    // Every documented operation is routed (no 404 "no such endpoint", no 405).
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let concrete = path.replace("{id}", "1");
            let res = app
                .req(method.clone(), &concrete)
                .bearer(&token)
                .send()
                .await;
            assert_ne!(
                res.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            if res.status == StatusCode::NOT_FOUND {
                assert_ne!(
                    res.json()["error"]["message"],
                    "no such endpoint",
                    "{method} {path}"
                );
            }
        }
    }
}

#[tokio::test]
async fn pages_carry_security_headers_and_unknown_pages_are_404() {
    let app = TestApp::sqlite().await;
    let login = app.get("/login").send().await;
    assert_eq!(login.status, StatusCode::OK);
    for header in [
        "content-security-policy",
        "x-content-type-options",
        "x-frame-options",
        "referrer-policy",
    ] {
        assert!(login.headers.get(header).is_some(), "{header}");
    }
    let missing = app.get("/no/such/page").send().await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.text().contains("Page not found"));
    assert_eq!(
        app.get("/static/nope.js").send().await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("/").send().await.location(), "/login");
}

/// Reads `/metrics` until `line` appears (the engine thread publishes its counters
/// after each burst of work).
async fn metrics_until(app: &TestApp, line: &str) -> String {
    for _ in 0..100 {
        let text = app.get("/metrics").send().await.text();
        if text.contains(line) {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no {line:?} in /metrics");
}

#[tokio::test]
async fn a_media_engine_panic_is_contained_counted_and_a_stopped_engine_is_not_ready() {
    use confab_core::sfu::MediaCommand;
    let app = TestApp::sqlite().await;
    let media = app.state.media.clone().expect("the test app carries media");
    metrics_until(&app, "confab_media_engine_up 1").await;

    media
        .send(MediaCommand::Fail {
            call: confab_core::sfu::CallKey(7),
            teardown: false,
        })
        .unwrap();
    metrics_until(&app, "confab_media_panics_total 1").await;
    let ready = app.get("/readyz").send().await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.json()["media"], "ok");
    // The engine still works: a bad offer for another call gets its answer.
    let (events, mut told) = tokio::sync::mpsc::channel::<confab_core::protocol::ServerMessage>(4);
    media
        .send(MediaCommand::Publish {
            call: confab_core::sfu::CallKey(8),
            participant: 1,
            offer: "not SDP".into(),
            events: std::sync::Arc::new(events),
        })
        .unwrap();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(5), told.recv())
        .await
        .expect("the engine answers")
        .unwrap();
    let answer = serde_json::to_value(&answer).unwrap();
    assert_eq!(answer["code"], "bad_sdp", "{answer}");

    // A panic it cannot contain stops the engine: the node says it is not ready.
    media
        .send(MediaCommand::Fail {
            call: confab_core::sfu::CallKey(9),
            teardown: true,
        })
        .unwrap();
    let text = metrics_until(&app, "confab_media_engine_up 0").await;
    assert!(text.contains("confab_media_panics_total 2"), "{text}");
    let down = app.get("/readyz").send().await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(down.json()["media"], "stopped");
    assert_eq!(down.json()["database"], "ok");
}
