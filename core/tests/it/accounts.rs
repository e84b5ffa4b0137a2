//! Users, API tokens and web sessions.

use axum::http::{Method, StatusCode};
use confab_core::accounts::Role;
use serde_json::json;

use crate::support::{PASSWORD, TestApp, enc, on_both_databases};

on_both_databases!(
    admins_create_users_members_cannot,
    invalid_users_are_rejected_and_not_stored,
    tokens_are_shown_once_stored_hashed_and_revocable,
    web_sessions_use_safe_cookies_and_end_on_logout,
    sessions_expire,
    api_with_a_session_cookie_needs_the_csrf_header,
    repeated_wrong_passwords_are_throttled,
);

async fn admins_create_users_members_cannot(app: TestApp) {
    let admin = app.admin_token().await;
    let res = app
        .post("/api/v1/users")
        .bearer(&admin)
        .json(&json!({ "email": "Grace@Example.ORG", "display_name": "Grace Hopper", "password": "a long password" }))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let user = res.json();
    assert_eq!(user["email"], "grace@example.org", "emails are normalised");
    assert_eq!(user["role"], "member");
    assert!(
        user.get("password_hash").is_none() && !res.text().contains("argon2"),
        "hashes never leave the server"
    );

    let dup = app
        .post("/api/v1/users")
        .bearer(&admin)
        .json(&json!({ "email": "grace@example.org", "display_name": "Again", "password": "a long password" }))
        .send()
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    assert_eq!(dup.error_code(), "email_taken");

    let member = app.user_with_token("m@example.org", Role::Member).await;
    let me = app.get("/api/v1/me").bearer(&member).send().await.json();
    assert_eq!(me["email"], "m@example.org");
    assert_eq!(
        app.get("/api/v1/users").bearer(&member).send().await.status,
        StatusCode::FORBIDDEN
    );
    let forbidden = app
        .post("/api/v1/users")
        .bearer(&member)
        .json(&json!({ "email": "x@example.org", "display_name": "X", "password": "a long password", "role": "admin" }))
        .send()
        .await;
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(forbidden.error_code(), "forbidden");

    let list = app
        .get("/api/v1/users?limit=2")
        .bearer(&admin)
        .send()
        .await
        .json();
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let cursor = list["next_cursor"].as_str().expect("a third user exists");
    let rest = app
        .get(&format!("/api/v1/users?limit=2&cursor={cursor}"))
        .bearer(&admin)
        .send()
        .await
        .json();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null());
}

async fn invalid_users_are_rejected_and_not_stored(app: TestApp) {
    let admin = app.admin_token().await;
    let cases = [
        (
            json!({ "email": "not-an-email", "display_name": "X", "password": "a long password" }),
            "email",
        ),
        (
            json!({ "email": "a@b", "display_name": "X", "password": "a long password" }),
            "email",
        ),
        (
            json!({ "email": "x@example.org\r\nBcc: y@example.org", "display_name": "X", "password": "a long password" }),
            "email",
        ),
        (
            json!({ "email": "x@example.org", "display_name": "n".repeat(65), "password": "a long password" }),
            "display_name",
        ),
        (
            json!({ "email": "x@example.org", "display_name": "", "password": "a long password" }),
            "display_name",
        ),
        (
            json!({ "email": "x@example.org", "display_name": "X", "password": "short" }),
            "password",
        ),
    ];
    for (body, field) in cases {
        let res = app
            .post("/api/v1/users")
            .bearer(&admin)
            .json(&body)
            .send()
            .await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(res.error_code(), "validation_failed");
        assert_eq!(res.json()["error"]["field"], field);
    }
    let bad_role = app
        .post("/api/v1/users")
        .bearer(&admin)
        .json(&json!({ "email": "x@example.org", "display_name": "X", "password": "a long password", "role": "owner" }))
        .send()
        .await;
    assert_eq!(bad_role.status, StatusCode::UNPROCESSABLE_ENTITY);
    let users = app.get("/api/v1/users").bearer(&admin).send().await.json();
    assert_eq!(
        users["items"].as_array().unwrap().len(),
        1,
        "only the admin exists"
    );
}

async fn tokens_are_shown_once_stored_hashed_and_revocable(app: TestApp) {
    let admin = app.admin_token().await;
    let created = app
        .post("/api/v1/tokens")
        .bearer(&admin)
        .json(&json!({ "name": "deploy script" }))
        .send()
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let created = created.json();
    let secret = created["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("cf_") && secret.len() == 43);
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));

    let list = app.get("/api/v1/tokens").bearer(&admin).send().await;
    assert!(
        !list.text().contains(&secret),
        "the secret is never shown again"
    );
    let entry = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "deploy script")
        .unwrap()
        .clone();
    assert!(entry["last_used_at"].is_null());

    // Using it records when.
    assert_eq!(
        app.get("/api/v1/me").bearer(&secret).send().await.status,
        StatusCode::OK
    );
    let list = app.get("/api/v1/tokens").bearer(&admin).send().await.json();
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "deploy script")
        .unwrap();
    assert_eq!(entry["last_used_at"], "2026-11-21T12:00:00Z");

    // Stored hashed: the database does not contain the secret.
    let stored = app.store.tokens_of(1).await.unwrap();
    assert!(
        stored
            .iter()
            .all(|t| t.token_hash != secret && t.token_hash.len() == 64)
    );

    let id = created["id"].as_i64().unwrap();
    let revoked = app
        .req(Method::DELETE, &format!("/api/v1/tokens/{id}"))
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let refused = app.get("/api/v1/me").bearer(&secret).send().await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "a revoked token stops working at once"
    );

    let other = app.user_with_token("other@example.org", Role::Member).await;
    let first_id = app.get("/api/v1/tokens").bearer(&admin).send().await.json()[0]["id"]
        .as_i64()
        .unwrap();
    let foreign = app
        .req(Method::DELETE, &format!("/api/v1/tokens/{first_id}"))
        .bearer(&other)
        .send()
        .await;
    assert_eq!(
        foreign.status,
        StatusCode::NOT_FOUND,
        "cannot revoke someone else's token"
    );
    assert_eq!(
        app.get("/api/v1/me").bearer(&admin).send().await.status,
        StatusCode::OK
    );
    let long_name = app
        .post("/api/v1/tokens")
        .bearer(&admin)
        .json(&json!({ "name": "n".repeat(65) }))
        .send()
        .await;
    assert_eq!(long_name.status, StatusCode::UNPROCESSABLE_ENTITY);
}

async fn web_sessions_use_safe_cookies_and_end_on_logout(app: TestApp) {
    app.admin_token().await;
    let browser = app.sign_in("admin@example.org").await;
    let session_cookie = browser
        .set_cookie
        .iter()
        .find(|c| c.starts_with("confab_session="))
        .unwrap();
    assert!(session_cookie.contains("HttpOnly"), "{session_cookie}");
    assert!(session_cookie.contains("SameSite=Lax"), "{session_cookie}");
    assert!(session_cookie.contains("Path=/"), "{session_cookie}");

    let me = app.get("/api/v1/me").cookie(&browser.cookies).send().await;
    assert_eq!(me.status, StatusCode::OK);

    // Logging out without the CSRF token does nothing.
    let forged = app
        .post("/logout")
        .cookie(&browser.cookies)
        .form("")
        .send()
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/api/v1/me")
            .cookie(&browser.cookies)
            .send()
            .await
            .status,
        StatusCode::OK
    );

    let out = app
        .post("/logout")
        .cookie(&browser.cookies)
        .form(&format!("csrf={}", browser.csrf))
        .send()
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/login");
    assert_eq!(
        app.get("/api/v1/me")
            .cookie(&browser.cookies)
            .send()
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let dashboard = app.get("/dashboard").cookie(&browser.cookies).send().await;
    assert_eq!(dashboard.status, StatusCode::SEE_OTHER);
    assert!(dashboard.location().starts_with("/login"));
}

async fn sessions_expire(app: TestApp) {
    app.admin_token().await;
    let browser = app.sign_in("admin@example.org").await;
    app.clock.advance(chrono::Duration::days(13));
    assert_eq!(
        app.get("/api/v1/me")
            .cookie(&browser.cookies)
            .send()
            .await
            .status,
        StatusCode::OK
    );
    app.clock.advance(chrono::Duration::days(2));
    assert_eq!(
        app.get("/api/v1/me")
            .cookie(&browser.cookies)
            .send()
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}

async fn api_with_a_session_cookie_needs_the_csrf_header(app: TestApp) {
    app.admin_token().await;
    let browser = app.sign_in("admin@example.org").await;
    let body = json!({ "title": "from the browser" });
    let refused = app
        .post("/api/v1/links")
        .cookie(&browser.cookies)
        .json(&body)
        .send()
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.error_code(), "csrf_failed");
    let wrong = app
        .post("/api/v1/links")
        .cookie(&browser.cookies)
        .header("x-csrf-token", "nope")
        .json(&body)
        .send()
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let list = app
        .get("/api/v1/links")
        .cookie(&browser.cookies)
        .send()
        .await
        .json();
    assert_eq!(list["items"].as_array().unwrap().len(), 0);
    let ok = app
        .post("/api/v1/links")
        .cookie(&browser.cookies)
        .header("x-csrf-token", &browser.csrf)
        .json(&body)
        .send()
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
}

async fn repeated_wrong_passwords_are_throttled(app: TestApp) {
    app.admin_token().await;
    let page = app.get("/login").send().await;
    let csrf = page.cookie("confab_csrf").unwrap();
    let attempt = |password: &str| {
        let form = format!(
            "csrf={csrf}&email=admin%40example.org&password={}&next=",
            enc(password)
        );
        app.post("/login")
            .cookie(&format!("confab_csrf={csrf}"))
            .form(&form)
    };
    let wrong = attempt("wrong password").send().await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.text().contains("Wrong email address or password"));
    assert!(
        wrong.text().contains("value=\"admin@example.org\""),
        "the email is kept in the form"
    );
    for _ in 0..9 {
        attempt("wrong password").send().await;
    }
    let throttled = attempt(PASSWORD).send().await;
    assert_eq!(
        throttled.status,
        StatusCode::TOO_MANY_REQUESTS,
        "even the right password waits"
    );
    assert!(throttled.text().contains("Too many failed sign-ins"));
    app.clock.advance(chrono::Duration::minutes(16));
    assert_eq!(attempt(PASSWORD).send().await.status, StatusCode::SEE_OTHER);
}

/// Signs in through the web form from `address`; returns the status.
async fn sign_in_from(app: &TestApp, address: &str, email: &str, password: &str) -> StatusCode {
    let page = app.get("/login").send().await;
    let csrf = page.cookie("confab_csrf").unwrap();
    app.post("/login")
        .from(address.parse().unwrap())
        .cookie(&format!("confab_csrf={csrf}"))
        .form(&format!(
            "csrf={csrf}&email={}&password={}&next=%2Fdashboard",
            crate::support::enc(email),
            crate::support::enc(password)
        ))
        .send()
        .await
        .status
}

/// The admin signs in with the right password from `address`; returns the status.
async fn owner_signs_in_from(app: &TestApp, address: &str) -> StatusCode {
    sign_in_from(app, address, "admin@example.org", PASSWORD).await
}

#[tokio::test]
async fn wrong_passwords_from_one_address_do_not_lock_the_owner_out() {
    let app = TestApp::sqlite().await;
    app.admin_token().await;
    for _ in 0..10 {
        assert_eq!(
            sign_in_from(&app, "198.51.100.66", "admin@example.org", "wrong guess").await,
            StatusCode::UNAUTHORIZED
        );
    }
    // The guessing address is refused, even with the right password ...
    assert_eq!(
        owner_signs_in_from(&app, "198.51.100.66").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // ... and the owner, from elsewhere, gets in (slowed down a little).
    assert_eq!(
        owner_signs_in_from(&app, "203.0.113.5").await,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn one_address_guessing_many_accounts_is_refused() {
    let app = TestApp::sqlite_with(|c| c.auth.login_max_failures_per_address = 5).await;
    app.admin_token().await;
    for n in 0..5 {
        assert_eq!(
            sign_in_from(
                &app,
                "192.0.2.77",
                &format!("nobody{n}@example.org"),
                "guess"
            )
            .await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        owner_signs_in_from(&app, "192.0.2.77").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        owner_signs_in_from(&app, "192.0.2.78").await,
        StatusCode::SEE_OTHER
    );
}
