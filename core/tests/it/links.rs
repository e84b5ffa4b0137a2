//! The call-link lifecycle through the REST API, and bad input that must change nothing.

use axum::http::{Method, StatusCode};
use confab_core::accounts::Role;
use sea_orm::{ConnectionTrait, Database, Statement};
use serde_json::{Value, json};

use crate::support::browser::Driver;
use crate::support::{TestApp, is_link_secret, on_both_databases};

on_both_databases!(
    create_show_update_and_list,
    link_ids_are_long_random_and_url_safe,
    schedule_is_validated_and_stored,
    revoke_rotate_and_delete,
    pagination_walks_every_link_once,
    links_of_others_are_invisible,
    malformed_bodies_change_nothing,
    missing_or_wrong_credentials_are_refused,
    member_link_creation_can_be_turned_off,
    the_link_secret_is_shown_once_and_stored_nowhere,
);

async fn link_count(app: &TestApp, token: &str) -> usize {
    let res = app
        .get("/api/v1/links?status=all&limit=100")
        .bearer(token)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK);
    res.json()["items"].as_array().unwrap().len()
}

async fn create_show_update_and_list(app: TestApp) {
    let token = app.admin_token().await;
    let created = app.create_link(&token, "  Design review  ").await;
    assert_eq!(created["title"], "Design review", "titles are trimmed");
    assert_eq!(created["status"], "active");
    assert_eq!(created["policy"]["guests_need_approval"], true);
    assert_eq!(created["policy"]["max_participants"], 32);
    assert_eq!(created["policy"]["members_need_approval"], false);
    let id = created["id"].as_str().unwrap();
    let secret = secret_of(&created);
    assert_eq!(
        created["url"],
        format!("http://127.0.0.1:8080/j/{id}#k={secret}"),
        "the full link to share, once"
    );

    let shown = app
        .get(&format!("/api/v1/links/{id}"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(shown.json()["title"], "Design review");
    assert_without_secret(&shown.json());

    app.clock.advance(chrono::Duration::minutes(5));
    let patched = app
        .req(Method::PATCH, &format!("/api/v1/links/{id}"))
        .bearer(&token)
        .json(&json!({
            "description": "Bring sketches",
            "max_participants": 8,
            "guests_need_approval": false,
            "members_need_approval": true
        }))
        .send()
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text());
    let patched = patched.json();
    assert_eq!(patched["description"], "Bring sketches");
    assert_eq!(patched["policy"]["max_participants"], 8);
    assert_eq!(patched["policy"]["guests_need_approval"], false);
    assert_eq!(patched["policy"]["members_need_approval"], true);
    assert_eq!(patched["title"], "Design review", "absent fields stay");
    assert_ne!(patched["updated_at"], created["updated_at"]);
    assert_without_secret(&patched);

    let cleared = app
        .req(Method::PATCH, &format!("/api/v1/links/{id}"))
        .bearer(&token)
        .json(&json!({ "description": null }))
        .send()
        .await;
    assert_eq!(
        cleared.json()["description"],
        serde_json::Value::Null,
        "null clears"
    );

    let list = app.get("/api/v1/links").bearer(&token).send().await.json();
    assert_eq!(list["items"][0]["id"], id);
    assert_without_secret(&list["items"][0]);
    assert_eq!(list["next_cursor"], serde_json::Value::Null);
}

/// The secret of a link just made: 22 characters of unpadded base64url, also at
/// the end of its `url`.
fn secret_of(made: &Value) -> String {
    let secret = made["secret"].as_str().unwrap_or_else(|| panic!("{made}"));
    assert!(is_link_secret(secret), "{secret}");
    let url = made["url"].as_str().unwrap();
    assert!(url.ends_with(&format!("#k={secret}")), "{url}");
    secret.to_string()
}

/// A later read of a link: its address without a fragment, no `secret`.
fn assert_without_secret(link: &Value) {
    let id = link["id"].as_str().unwrap();
    assert_eq!(
        link["url"],
        format!("http://127.0.0.1:8080/j/{id}"),
        "{link}"
    );
    assert!(link.get("secret").is_none(), "{link}");
}

/// Whether `needle` is anywhere in the app's database: on SQLite, in the bytes of
/// its files; on PostgreSQL, in the text of any row of any table.
pub(crate) async fn database_contains(app: &TestApp, needle: &str) -> bool {
    let url = &app.state.config.database.url;
    if url.starts_with("sqlite:") {
        let files = std::fs::read_dir(&app.state.config.data_dir).unwrap();
        return files.map(|f| f.unwrap().path()).any(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("confab.db")
                && std::fs::read(&path)
                    .unwrap()
                    .windows(needle.len())
                    .any(|w| w == needle.as_bytes())
        });
    }
    let db = Database::connect(url).await.unwrap();
    let backend = db.get_database_backend();
    let tables = db
        .query_all(Statement::from_string(
            backend,
            "SELECT table_name::text AS name FROM information_schema.tables WHERE table_schema = 'public'",
        ))
        .await
        .unwrap();
    for table in tables {
        let table: String = table.try_get("", "name").unwrap();
        let hits = db
            .query_all(Statement::from_sql_and_values(
                backend,
                format!("SELECT 1 AS hit FROM \"{table}\" AS t WHERE strpos(t::text, $1) > 0"),
                [needle.into()],
            ))
            .await
            .unwrap();
        if !hits.is_empty() {
            return true;
        }
    }
    false
}

async fn the_link_secret_is_shown_once_and_stored_nowhere(app: TestApp) {
    let token = app.admin_token().await;
    let first = app.create_link(&token, "Board meeting").await;
    let second = app.create_link(&token, "Board meeting").await;
    let (a, b) = (secret_of(&first), secret_of(&second));
    assert_ne!(a, b, "every link has its own secret");
    let id = first["id"].as_str().unwrap().to_string();

    let shown = app
        .get(&format!("/api/v1/links/{id}"))
        .bearer(&token)
        .send()
        .await;
    assert_without_secret(&shown.json());
    assert!(!shown.text().contains(&a));
    let listed = app.get("/api/v1/links").bearer(&token).send().await;
    assert!(!listed.text().contains(&a) && !listed.text().contains(&b));
    let page = app.get(&format!("/j/{id}")).send().await.text();
    assert!(!page.contains(&a), "the link's page does not know it");

    // Rotating makes a new link to share: a new id and a new secret, once.
    let rotated = app
        .post(&format!("/api/v1/links/{id}/rotate"))
        .bearer(&token)
        .send()
        .await
        .json();
    let c = secret_of(&rotated);
    assert_ne!(c, a);
    let new_id = rotated["id"].as_str().unwrap();
    assert!(
        rotated["url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/j/{new_id}#k={c}"))
    );

    // The ids are in the database (so the search finds what is there); no secret is.
    assert!(database_contains(&app, new_id).await);
    for secret in [&a, &b, &c] {
        assert!(
            !database_contains(&app, secret).await,
            "{secret} was stored"
        );
    }

    // The OpenAPI document says so: `secret` only where a link is made.
    let doc = app.get("/api/v1/openapi.json").send().await.json();
    let answer = |path: &str, method: &str, status: &str| {
        let response = &doc["paths"][path][method]["responses"][status];
        response["content"]["application/json"]["schema"]["$ref"].clone()
    };
    let with_secret = "#/components/schemas/LinkWithSecret";
    assert_eq!(answer("/api/v1/links", "post", "201"), with_secret);
    assert_eq!(
        answer("/api/v1/links/{id}/rotate", "post", "200"),
        with_secret
    );
    assert_eq!(
        answer("/api/v1/links/{id}", "get", "200"),
        "#/components/schemas/LinkView"
    );
    let schema = doc["components"]["schemas"]["LinkWithSecret"].to_string();
    assert!(schema.contains("\"secret\""), "{schema}");
    assert!(
        !doc["components"]["schemas"]["LinkView"]
            .to_string()
            .contains("\"secret\""),
        "{}",
        doc["components"]["schemas"]["LinkView"]
    );
}

async fn link_ids_are_long_random_and_url_safe(app: TestApp) {
    let token = app.admin_token().await;
    let mut ids = std::collections::HashSet::new();
    for i in 0..20 {
        let link = app.create_link(&token, &format!("call {i}")).await;
        let id = link["id"].as_str().unwrap().to_string();
        assert!(id.len() >= 22 && id.len() <= 32, "{id}");
        assert!(
            id.chars().all(|c| c.is_ascii_alphanumeric()),
            "only letters and digits: {id}"
        );
        ids.insert(id);
    }
    assert_eq!(ids.len(), 20);
}

async fn schedule_is_validated_and_stored(app: TestApp) {
    let token = app.admin_token().await;
    let ok = app
        .post("/api/v1/links")
        .bearer(&token)
        .json(&json!({
            "title": "Weekly sync",
            "schedule": { "start": "2026-12-01T10:00:00+01:00", "end": "2026-12-01T10:30:00+01:00",
                          "time_zone": "Europe/Berlin", "rrule": "FREQ=WEEKLY;BYDAY=TU" }
        }))
        .send()
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text());
    let schedule = &ok.json()["schedule"];
    assert_eq!(schedule["start"], "2026-12-01T09:00:00Z");
    assert_eq!(schedule["time_zone"], "Europe/Berlin");
    assert_eq!(schedule["rrule"], "FREQ=WEEKLY;BYDAY=TU");
    let page = app
        .get(&format!("/j/{}", ok.json()["id"].as_str().unwrap()))
        .send()
        .await
        .text();
    assert!(
        crate::support::unescape(&page)
            .contains("Tue 1 Dec 2026, 10:00–10:30 (Europe/Berlin), repeats"),
        "guests see the time where the meeting happens"
    );

    for (schedule, field) in [
        (
            json!({ "start": "2026-12-01T10:00:00Z", "end": "2026-12-01T09:00:00Z" }),
            "schedule.end",
        ),
        (
            json!({ "start": "2026-12-01T10:00:00Z", "end": "2026-12-01T11:00:00Z", "time_zone": "Nowhere/Land" }),
            "schedule.time_zone",
        ),
        (
            json!({ "start": "2026-12-01T10:00:00Z", "end": "2026-12-01T11:00:00Z", "rrule": "FREQ=FORTNIGHTLY" }),
            "schedule.rrule",
        ),
    ] {
        let res = app
            .post("/api/v1/links")
            .bearer(&token)
            .json(&json!({ "title": "x", "schedule": schedule }))
            .send()
            .await;
        assert_eq!(
            res.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            res.text()
        );
        assert_eq!(res.json()["error"]["field"], field);
    }
    let not_a_time = app
        .post("/api/v1/links")
        .bearer(&token)
        .json(&json!({ "title": "x", "schedule": { "start": "tomorrow", "end": "later" } }))
        .send()
        .await;
    assert_eq!(not_a_time.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        link_count(&app, &token).await,
        1,
        "rejected schedules created nothing"
    );
}

async fn revoke_rotate_and_delete(app: TestApp) {
    let token = app.admin_token().await;
    let link = app.create_link(&token, "Team call").await;
    let id = link["id"].as_str().unwrap().to_string();

    // Rotate: a new id, the old one stops working everywhere.
    let rotated = app
        .post(&format!("/api/v1/links/{id}/rotate"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(rotated.status, StatusCode::OK);
    let new_id = rotated.json()["id"].as_str().unwrap().to_string();
    assert_ne!(new_id, id);
    assert_eq!(
        app.get(&format!("/api/v1/links/{id}"))
            .bearer(&token)
            .send()
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/j/{id}")).send().await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/j/{new_id}")).send().await.status,
        StatusCode::OK
    );

    // Revoke: the owner still sees it, marked revoked; the page says so.
    let revoked = app
        .post(&format!("/api/v1/links/{new_id}/revoke"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(revoked.json()["status"], "revoked");
    let again = app
        .post(&format!("/api/v1/links/{new_id}/revoke"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(again.status, StatusCode::OK, "revoking twice is harmless");
    let page = app.get(&format!("/j/{new_id}")).send().await;
    assert_eq!(page.status, StatusCode::GONE);
    assert!(page.text().contains("This link was revoked"));

    // A revoked link can be neither changed nor rotated.
    let patch = app
        .req(Method::PATCH, &format!("/api/v1/links/{new_id}"))
        .bearer(&token)
        .json(&json!({ "title": "Back again" }))
        .send()
        .await;
    assert_eq!(patch.status, StatusCode::CONFLICT);
    assert_eq!(patch.error_code(), "link_revoked");
    let rotate = app
        .post(&format!("/api/v1/links/{new_id}/rotate"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(rotate.status, StatusCode::CONFLICT);
    let shown = app
        .get(&format!("/api/v1/links/{new_id}"))
        .bearer(&token)
        .send()
        .await
        .json();
    assert_eq!(
        shown["title"], "Team call",
        "the refused change did not happen"
    );

    // Active listing hides revoked links; `all` and `revoked` show them.
    assert_eq!(
        app.get("/api/v1/links").bearer(&token).send().await.json()["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        app.get("/api/v1/links?status=revoked")
            .bearer(&token)
            .send()
            .await
            .json()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Delete: gone for good.
    let deleted = app
        .req(Method::DELETE, &format!("/api/v1/links/{new_id}"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/api/v1/links/{new_id}"))
            .bearer(&token)
            .send()
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get(&format!("/j/{new_id}")).send().await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.req(Method::DELETE, &format!("/api/v1/links/{new_id}"))
            .bearer(&token)
            .send()
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn pagination_walks_every_link_once(app: TestApp) {
    let token = app.admin_token().await;
    for i in 0..5 {
        app.create_link(&token, &format!("call {i}")).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/links?limit=2&cursor={c}"),
            None => "/api/v1/links?limit=2".to_string(),
        };
        let page = app.get(&path).bearer(&token).send().await.json();
        pages += 1;
        for item in page["items"].as_array().unwrap() {
            seen.push(item["title"].as_str().unwrap().to_string());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen,
        ["call 4", "call 3", "call 2", "call 1", "call 0"],
        "newest first, each once"
    );

    for bad in [
        "limit=0",
        "limit=101",
        "limit=x",
        "cursor=abc",
        "status=sometimes",
        "sort=title",
    ] {
        let res = app
            .get(&format!("/api/v1/links?{bad}"))
            .bearer(&token)
            .send()
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(res.error_code(), "bad_request");
    }
}

async fn links_of_others_are_invisible(app: TestApp) {
    let alice = app.admin_token().await;
    let bob = app.user_with_token("bob@example.org", Role::Member).await;
    let link = app.create_link(&alice, "Alice's call").await;
    let id = link["id"].as_str().unwrap();
    for (method, path) in [
        (Method::GET, format!("/api/v1/links/{id}")),
        (Method::POST, format!("/api/v1/links/{id}/revoke")),
        (Method::POST, format!("/api/v1/links/{id}/rotate")),
        (Method::DELETE, format!("/api/v1/links/{id}")),
    ] {
        let res = app.req(method.clone(), &path).bearer(&bob).send().await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{method} {path}");
    }
    assert_eq!(link_count(&app, &bob).await, 0);
    let still = app
        .get(&format!("/api/v1/links/{id}"))
        .bearer(&alice)
        .send()
        .await
        .json();
    assert_eq!(still["status"], "active");
}

async fn malformed_bodies_change_nothing(app: TestApp) {
    let token = app.admin_token().await;
    let cases: Vec<(&str, &'static str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "broken JSON",
            "application/json",
            b"{\"title\": ".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "not JSON at all",
            "application/json",
            b"title=hello".to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "unknown field",
            "application/json",
            br#"{"title":"x","owner":"someone"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "missing title",
            "application/json",
            br#"{"description":"x"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "wrong type",
            "application/json",
            br#"{"title":42}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            "empty title",
            "application/json",
            br#"{"title":"   "}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "title over 200",
            "application/json",
            format!(r#"{{"title":"{}"}}"#, "t".repeat(201)).into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "33 participants",
            "application/json",
            br#"{"title":"x","max_participants":33}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "0 participants",
            "application/json",
            br#"{"title":"x","max_participants":0}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "control characters",
            "application/json",
            br#"{"title":"a\u0000b"}"#.to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        (
            "form body",
            "application/x-www-form-urlencoded",
            b"title=x".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "oversize body",
            "application/json",
            format!(
                r#"{{"title":"x","description":"{}"}}"#,
                "d".repeat(70 * 1024)
            )
            .into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
    ];
    for (what, content_type, body, status, code) in cases {
        let res = app
            .post("/api/v1/links")
            .bearer(&token)
            .raw(content_type, body)
            .send()
            .await;
        assert_eq!(res.status, status, "{what}: {}", res.text());
        assert_eq!(res.error_code(), code, "{what}");
    }
    assert_eq!(link_count(&app, &token).await, 0, "nothing was created");

    let link = app.create_link(&token, "Keep me").await;
    let id = link["id"].as_str().unwrap();
    let res = app
        .req(Method::PATCH, &format!("/api/v1/links/{id}"))
        .bearer(&token)
        .json(&json!({ "title": "New", "max_participants": 99 }))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(res.json()["error"]["field"], "max_participants");
    let shown = app
        .get(&format!("/api/v1/links/{id}"))
        .bearer(&token)
        .send()
        .await
        .json();
    assert_eq!(
        shown["title"], "Keep me",
        "an invalid patch changes nothing, not even its valid fields"
    );

    for bad_id in ["nope", "a-b-c", "%2e%2e", &"x".repeat(40)] {
        let res = app
            .get(&format!("/api/v1/links/{bad_id}"))
            .bearer(&token)
            .send()
            .await;
        assert_eq!(res.status, StatusCode::NOT_FOUND, "{bad_id}");
        assert_eq!(res.error_code(), "not_found");
    }
    let wrong_method = app
        .req(Method::PUT, "/api/v1/links")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.error_code(), "method_not_allowed");
    let nowhere = app.get("/api/v1/nothing-here").bearer(&token).send().await;
    assert_eq!(nowhere.status, StatusCode::NOT_FOUND);
    assert_eq!(nowhere.error_code(), "not_found");
}

async fn missing_or_wrong_credentials_are_refused(app: TestApp) {
    let token = app.admin_token().await;
    let body = json!({ "title": "x" });
    for auth in [
        None,
        Some("Bearer cf_wrongwrongwrongwrongwrongwrongwrongwrong"),
        Some("Bearer "),
        Some("Basic YTpi"),
        Some("Bearer cf_short"),
    ] {
        let mut req = app.post("/api/v1/links").json(&body);
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        let res = req.send().await;
        assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(res.error_code(), "unauthorized");
        assert_eq!(res.headers.get("www-authenticate").unwrap(), "Bearer");
    }
    assert_eq!(link_count(&app, &token).await, 0);
    let lowercase = app
        .get("/api/v1/me")
        .header("authorization", &format!("bearer {token}"))
        .send()
        .await;
    assert_eq!(
        lowercase.status,
        StatusCode::OK,
        "the scheme name is case-insensitive"
    );
}

async fn member_link_creation_can_be_turned_off(app: TestApp) {
    let admin = app.admin_token().await;
    let member = app
        .user_with_token("member@example.org", Role::Member)
        .await;
    app.create_link(&member, "allowed").await;

    let off = app
        .req(Method::PATCH, "/api/v1/admin/policy")
        .bearer(&admin)
        .json(&json!({ "member_link_creation": false }))
        .send()
        .await;
    assert_eq!(off.status, StatusCode::OK);
    assert_eq!(off.json()["member_link_creation"], false);

    let refused = app
        .post("/api/v1/links")
        .bearer(&member)
        .json(&json!({ "title": "nope" }))
        .send()
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.error_code(), "link_creation_disabled");
    assert_eq!(link_count(&app, &member).await, 1);
    app.create_link(&admin, "admins still can").await;

    let member_policy = app
        .req(Method::PATCH, "/api/v1/admin/policy")
        .bearer(&member)
        .json(&json!({ "member_link_creation": true }))
        .send()
        .await;
    assert_eq!(
        member_policy.status,
        StatusCode::FORBIDDEN,
        "only admins change policy"
    );
    let shown = app
        .get("/api/v1/admin/policy")
        .bearer(&admin)
        .send()
        .await
        .json();
    assert_eq!(shown["member_link_creation"], false);

    let bad_plugin = app
        .req(Method::PATCH, "/api/v1/admin/policy")
        .bearer(&admin)
        .json(&json!({ "disabled_plugins": ["Bad Name!"] }))
        .send()
        .await;
    assert_eq!(bad_plugin.status, StatusCode::UNPROCESSABLE_ENTITY);
    let plugins = app
        .req(Method::PATCH, "/api/v1/admin/policy")
        .bearer(&admin)
        .json(&json!({ "disabled_plugins": ["spam-guard", "calendar", "calendar"] }))
        .send()
        .await
        .json();
    assert_eq!(
        plugins["disabled_plugins"],
        json!(["calendar", "spam-guard"])
    );
    assert_eq!(
        plugins["member_link_creation"], false,
        "untouched fields stay"
    );
}

#[tokio::test]
async fn a_link_made_on_the_dashboard_gets_its_secret_in_the_browser() {
    let (app, base) = TestApp::served_with(|_| {}).await;
    let token = app.user_with_token("host@example.org", Role::Member).await;
    let elsewhere = app.create_link(&token, "Made with the API").await;
    let elsewhere = elsewhere["id"].as_str().unwrap().to_string();
    let driver = Driver::start();
    let page = driver.browser().await;
    page.sign_in(&base, "host@example.org").await;
    page.fill("form[data-new-link] input[name=title]", "Secret call")
        .await;
    page.click("form[data-new-link] [data-remember-secret]")
        .await;
    page.click("form[data-new-link] button[type=submit]").await;
    let id = page
        .wait_js("document.querySelector('li[data-link-created]')?.dataset.linkId")
        .await;
    let id = id.as_str().unwrap().to_string();

    let row = |id: &str| {
        format!(
            "(() => {{ const li = document.querySelector(\"li[data-link-id='{id}']\");\
             return {{ input: li.querySelector('input.url').value, copy: li.querySelector('[data-copy]').dataset.copy,\
             shared: li.dataset.linkUrl, hint: !li.querySelector('[data-secret-missing]').hidden,\
             once: !li.querySelector('[data-secret-once]').hidden,\
             stored: localStorage.getItem('confab.secret.{id}'), address: location.href }}; }})()"
        )
    };
    let made = page.wait_js(&row(&id)).await;
    let secret = made["stored"].as_str().unwrap_or_else(|| panic!("{made}"));
    assert!(is_link_secret(secret), "{made}");
    let full = format!("{base}/j/{id}#k={secret}");
    assert_eq!(made["input"], full.as_str(), "{made}");
    assert_eq!(made["copy"], full.as_str(), "{made}");
    assert_eq!(made["shared"], full.as_str(), "what plugins' modules read");
    assert_eq!(made["hint"], false, "{made}");
    assert_eq!(made["address"], format!("{base}/dashboard"), "{made}");

    // A link this browser has no secret for: the server's address and a hint.
    let other = page.wait_js(&row(&elsewhere)).await;
    assert_eq!(other["input"], format!("{base}/j/{elsewhere}"), "{other}");
    assert_eq!(other["copy"], format!("{base}/j/{elsewhere}"), "{other}");
    assert_eq!(other["hint"], true, "{other}");
    assert_eq!(other["stored"], Value::Null);

    // The server never had it: not in the page it served, not in its record.
    let served = page
        .client
        .execute_async(
            "const [done] = arguments; fetch('/dashboard').then(r => r.text()).then(done, (e) => done(String(e)));",
            vec![],
        )
        .await
        .unwrap();
    let served = served.as_str().unwrap();
    assert!(served.contains(&id) && !served.contains(secret));
    let record = app
        .get(&format!("/api/v1/links/{id}"))
        .bearer(&token)
        .send()
        .await
        .text();
    assert!(record.contains(&id) && !record.contains(secret), "{record}");
    assert!(database_contains(&app, &id).await);
    assert!(!database_contains(&app, secret).await);

    assert_eq!(made["once"], false, "{made}");

    // A reload keeps the full link.
    page.goto(&format!("{base}/dashboard")).await;
    let again = page.wait_js(&row(&id)).await;
    assert_eq!(again["input"], full.as_str(), "{again}");

    // Without "remember", the full link is shown once, and the device keeps nothing.
    page.fill("form[data-new-link] input[name=title]", "Once")
        .await;
    page.click("form[data-new-link] button[type=submit]").await;
    let once = page
        .wait_js(&format!(
            "document.querySelector('li[data-link-created]:not([data-link-id=\"{id}\"])')?.dataset.linkId"
        ))
        .await;
    let once = once.as_str().unwrap().to_string();
    let shown = page.wait_js(&row(&once)).await;
    let (_, secret_once) = shown["input"]
        .as_str()
        .unwrap()
        .split_once("#k=")
        .unwrap_or_else(|| panic!("the full link is shown: {shown}"));
    assert!(is_link_secret(secret_once), "{shown}");
    assert_eq!(shown["once"], true, "the page says to copy it now: {shown}");
    assert_eq!(shown["stored"], Value::Null, "{shown}");
    page.goto(&format!("{base}/dashboard")).await;
    let later = page.wait_js(&row(&once)).await;
    assert_eq!(later["input"], format!("{base}/j/{once}"), "{later}");
    assert_eq!(later["hint"], true, "{later}");

    // Signing out clears what the device remembered.
    page.click("form[action='/logout'] button").await;
    page.wait_js("location.pathname === '/login'").await;
    let left = page
        .wait_js("JSON.stringify(Object.keys(localStorage))")
        .await;
    assert_eq!(
        left,
        json!("[]"),
        "nothing stays on the device after sign-out"
    );
    page.close().await;
}
