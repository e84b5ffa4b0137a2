//! The web pages: dashboard, the public link page, escaping, CSRF and guest access.

use axum::http::{Method, StatusCode};
use confab_core::accounts::Role;
use serde_json::json;

use crate::support::{TestApp, enc, hidden_csrf, on_both_databases, unescape};

on_both_databases!(
    dashboard_creates_lists_and_revokes_links,
    form_posts_without_csrf_change_nothing,
    user_supplied_text_is_escaped_everywhere,
    link_page_shows_title_and_asks_for_a_name,
    link_page_explains_revoked_and_unknown_links,
    guest_access_can_be_turned_off,
    dashboard_issues_api_tokens,
    signing_out_works_from_the_call_page,
);

async fn dashboard_creates_lists_and_revokes_links(app: TestApp) {
    let token = app.admin_token().await;
    let browser = app.sign_in("admin@example.org").await;
    let form = format!(
        "csrf={}&title={}&description=&guests_need_approval=on&max_participants=12",
        browser.csrf,
        enc("Family call")
    );
    let created = app
        .post("/dashboard/links")
        .cookie(&browser.cookies)
        .form(&form)
        .send()
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text());
    let links = app.get("/api/v1/links").bearer(&token).send().await.json();
    let link = &links["items"][0];
    assert_eq!(link["title"], "Family call");
    assert_eq!(link["policy"]["max_participants"], 12);
    let id = link["id"].as_str().unwrap();
    assert!(
        link.get("secret").is_none(),
        "the server made no secret for it"
    );
    assert_eq!(
        created.location(),
        format!("/dashboard?created={id}"),
        "the browser's secret goes with this link"
    );

    let page = unescape(
        &app.get(&created.location())
            .cookie(&browser.cookies)
            .send()
            .await
            .text(),
    );
    assert!(page.contains("Family call"));
    assert!(
        page.contains(&format!("data-copy=\"http://127.0.0.1:8080/j/{id}\"")),
        "a copy button with the server's address, which dashboard.js completes"
    );
    assert!(
        page.contains(&format!("data-link-id=\"{id}\"")) && page.contains(" data-link-created>")
    );
    assert!(!page.contains("#k="), "the server knows no secret");
    assert!(page.contains(&format!("/dashboard/links/{id}/revoke")));

    let bad = app
        .post("/dashboard/links")
        .cookie(&browser.cookies)
        .form(&format!("csrf={}&title=&max_participants=40", browser.csrf))
        .send()
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        bad.text().contains("Title: must be 1 to 200 characters"),
        "{}",
        bad.text()
    );

    let revoked = app
        .post(&format!("/dashboard/links/{id}/revoke"))
        .cookie(&browser.cookies)
        .form(&format!("csrf={}", browser.csrf))
        .send()
        .await;
    assert_eq!(revoked.status, StatusCode::SEE_OTHER);
    let page = app
        .get("/dashboard")
        .cookie(&browser.cookies)
        .send()
        .await
        .text();
    assert!(page.contains("Revoked"));
    assert_eq!(
        app.get(&format!("/j/{id}")).send().await.status,
        StatusCode::GONE
    );

    let narrow = app.get("/static/app.css").send().await;
    assert!(
        narrow.text().contains("@media (max-width: 760px)"),
        "the layout adapts to phone widths"
    );
    assert!(page.contains("name=\"viewport\""));
}

async fn form_posts_without_csrf_change_nothing(app: TestApp) {
    let token = app.admin_token().await;
    let link = app.create_link(&token, "Protected").await;
    let id = link["id"].as_str().unwrap();
    let browser = app.sign_in("admin@example.org").await;
    let forged = [
        ("/dashboard/links", "title=Forged".to_string()),
        (
            "/dashboard/links",
            "csrf=wrongwrongwrongwrongwrongwrong12&title=Forged".to_string(),
        ),
        (&*format!("/dashboard/links/{id}/revoke"), String::new()),
        ("/dashboard/tokens", "name=forged".to_string()),
    ];
    for (path, form) in forged {
        let res = app
            .post(path)
            .cookie(&browser.cookies)
            .form(&form)
            .send()
            .await;
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{path} {form}");
        assert!(res.text().contains("This form has expired"));
    }
    let links = app
        .get("/api/v1/links?status=all")
        .bearer(&token)
        .send()
        .await
        .json();
    assert_eq!(links["items"].as_array().unwrap().len(), 1);
    assert_eq!(links["items"][0]["status"], "active");
    assert_eq!(
        app.get("/api/v1/tokens")
            .bearer(&token)
            .send()
            .await
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Sign-in form without the double-submit cookie.
    let login = app
        .post("/login")
        .form("csrf=abc&email=admin%40example.org&password=x")
        .send()
        .await;
    assert_eq!(login.status, StatusCode::FORBIDDEN);
    assert!(login.cookie("confab_session").is_none());

    // A body that is not a form at all.
    let not_form = app
        .post("/dashboard/links")
        .cookie(&browser.cookies)
        .raw("application/json", "{}")
        .send()
        .await;
    assert_eq!(not_form.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}

async fn user_supplied_text_is_escaped_everywhere(app: TestApp) {
    let token = app.admin_token().await;
    let evil = "<script>alert('x')</script>&\"";
    let res = app
        .post("/api/v1/links")
        .bearer(&token)
        .json(&json!({ "title": evil, "description": "<img src=x onerror=alert(1)>" }))
        .send()
        .await;
    let id = res.json()["id"].as_str().unwrap().to_string();
    let page = app.get(&format!("/j/{id}")).send().await.text();
    assert!(!page.contains("<script>alert"), "title must be escaped");
    assert!(
        page.contains("&lt;script&gt;alert(&#x27;x&#x27;)&lt;&#x2F;script&gt;&amp;&quot;"),
        "{page}"
    );
    assert!(!page.contains("<img src=x"));
    let browser = app.sign_in("admin@example.org").await;
    let dashboard = app
        .get("/dashboard")
        .cookie(&browser.cookies)
        .send()
        .await
        .text();
    assert!(!dashboard.contains("<script>alert"));
    assert!(dashboard.contains("&lt;script&gt;"));

    // The name a guest types is escaped when shown back.
    let page = app.get(&format!("/j/{id}")).send().await;
    let csrf = page.cookie("confab_csrf").unwrap();
    let res = app
        .post(&format!("/j/{id}"))
        .cookie(&format!("confab_csrf={csrf}"))
        .form(&format!("csrf={csrf}&name={}", enc("<b>Mallory</b>")))
        .send()
        .await;
    assert!(res.text().contains("&lt;b&gt;Mallory&lt;&#x2F;b&gt;"));
    assert!(!res.text().contains("<b>Mallory"));
}

async fn link_page_shows_title_and_asks_for_a_name(app: TestApp) {
    let token = app.admin_token().await;
    let link = app.create_link(&token, "Grandma's birthday").await;
    let id = link["id"].as_str().unwrap();
    let page = app.get(&format!("/j/{id}")).send().await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.headers.get("referrer-policy").unwrap(),
        "no-referrer",
        "link ids must not leak via Referer"
    );
    assert!(page.headers.get("content-security-policy").is_some());
    let html = page.text();
    assert!(html.contains("Grandma&#x27;s birthday"));
    assert!(
        html.contains("name=\"name\"")
            && html.contains("maxlength=\"64\"")
            && html.contains("required")
    );
    assert!(html.contains("Ask to join"));
    // The limits of plugins' frames, as configured (`plugins.frame_*`).
    let limits = unescape(&html);
    for limit in [
        "\"startMs\":10000",
        "\"pingMs\":5000",
        "\"maxFetches\":8",
        "\"maxHeight\":4000",
    ] {
        assert!(limits.contains(limit), "{limit} in data-plugin-limits");
    }

    let csrf = page
        .cookie("confab_csrf")
        .expect("guests get a CSRF cookie");
    let post = |name: String| {
        app.post(&format!("/j/{id}"))
            .cookie(&format!("confab_csrf={csrf}"))
            .form(&format!("csrf={csrf}&name={}", enc(&name)))
    };
    for bad in ["", "   ", &"é".repeat(65)] {
        let res = post(bad.to_string()).send().await;
        assert_eq!(res.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad:?}");
        assert!(res.text().contains("Enter a name of 1 to 64 characters."));
    }
    let ok = post(format!("  {}  ", "李".repeat(64))).send().await;
    assert_eq!(
        ok.status,
        StatusCode::ACCEPTED,
        "64 characters in any script are fine"
    );

    // A link is reusable: it keeps working after it was used.
    assert_eq!(
        app.get(&format!("/j/{id}")).send().await.status,
        StatusCode::OK
    );
    assert_eq!(
        post("Second visit".into()).send().await.status,
        StatusCode::ACCEPTED
    );

    let no_csrf = app.post(&format!("/j/{id}")).form("name=Eve").send().await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
}

async fn link_page_explains_revoked_and_unknown_links(app: TestApp) {
    let token = app.admin_token().await;
    let link = app.create_link(&token, "Old call").await;
    let id = link["id"].as_str().unwrap();
    app.post(&format!("/api/v1/links/{id}/revoke"))
        .bearer(&token)
        .send()
        .await;
    let revoked = app.get(&format!("/j/{id}")).send().await;
    assert_eq!(revoked.status, StatusCode::GONE);
    let html = revoked.text();
    assert!(html.contains("This link was revoked"));
    assert!(!html.contains("Ask to join"));
    assert!(
        !html.contains("Old call"),
        "a revoked link's title is not shown to strangers"
    );

    for unknown in ["AAAAAAAAAAAAAAAAAAAAAA", "x", "has-dash"] {
        let res = app.get(&format!("/j/{unknown}")).send().await;
        assert_eq!(res.status, StatusCode::NOT_FOUND);
        assert!(res.text().contains("Link not found"));
    }
    let revoked_post = app
        .post(&format!("/j/{id}"))
        .cookie("confab_csrf=abcdefghijabcdefghijabcdefghij12")
        .form("csrf=abcdefghijabcdefghijabcdefghij12&name=Late")
        .send()
        .await;
    assert_eq!(revoked_post.status, StatusCode::GONE);
    assert!(
        app.store.call_events(id).await.unwrap().is_empty(),
        "nothing recorded for a revoked link"
    );
}

async fn guest_access_can_be_turned_off(app: TestApp) {
    let admin = app.admin_token().await;
    app.user_with_token("member@example.org", Role::Member)
        .await;
    let link = app.create_link(&admin, "Members only").await;
    let id = link["id"].as_str().unwrap();
    app.req(Method::PATCH, "/api/v1/admin/policy")
        .bearer(&admin)
        .json(&json!({ "guest_access": false }))
        .send()
        .await;

    let guest = app.get(&format!("/j/{id}")).send().await;
    assert_eq!(guest.status, StatusCode::FORBIDDEN);
    let html = unescape(&guest.text());
    assert!(html.contains("Guest access is turned off"));
    assert!(
        html.contains(&format!("/login?next=/j/{id}")),
        "offers to sign in"
    );

    let member = app.sign_in("member@example.org").await;
    let page = app
        .get(&format!("/j/{id}"))
        .cookie(&member.cookies)
        .send()
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.text().contains("value=\"User member@example.org\""),
        "signed-in people get their name filled in"
    );

    app.req(Method::PATCH, "/api/v1/admin/policy")
        .bearer(&admin)
        .json(&json!({ "guest_access": true }))
        .send()
        .await;
    assert_eq!(
        app.get(&format!("/j/{id}")).send().await.status,
        StatusCode::OK
    );
}

async fn dashboard_issues_api_tokens(app: TestApp) {
    app.admin_token().await;
    let browser = app.sign_in("admin@example.org").await;
    let res = app
        .post("/dashboard/tokens")
        .cookie(&browser.cookies)
        .form(&format!("csrf={}&name=ci", browser.csrf))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.headers.get("cache-control").unwrap(), "no-store");
    let html = res.text();
    assert!(html.contains("it will not be shown again"));
    let at = html.find("value=\"cf_").unwrap() + "value=\"".len();
    let secret = &html[at..at + 43];
    assert_eq!(
        app.get("/api/v1/me").bearer(secret).send().await.status,
        StatusCode::OK
    );
    let again = app
        .get("/dashboard")
        .cookie(&browser.cookies)
        .send()
        .await
        .text();
    assert!(!again.contains(secret), "shown once");
    assert_eq!(hidden_csrf(&again), browser.csrf);
}

async fn signing_out_works_from_the_call_page(app: TestApp) {
    let token = app.admin_token().await;
    let browser = app.sign_in("admin@example.org").await;
    let link = app.create_link(&token, "Team call").await;
    let page = app
        .get(&format!("/j/{}", link["id"].as_str().unwrap()))
        .cookie(&browser.cookies)
        .send()
        .await;
    assert_eq!(page.status, StatusCode::OK);
    // The header's Sign out form comes first; the join form below has its own token.
    let html = page.text();
    let header = &html[html.find("action=\"/logout\"").expect("a Sign out form")..];
    let out = app
        .post("/logout")
        .cookie(&browser.cookies)
        .form(&format!("csrf={}", hidden_csrf(header)))
        .send()
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.text());
    assert_eq!(out.location(), "/login");
    let me = app.get("/api/v1/me").cookie(&browser.cookies).send().await;
    assert_eq!(me.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn sign_in_sends_nobody_off_the_site_whatever_next_says() {
    let app = TestApp::sqlite().await;
    app.admin_token().await;
    for (next, expected) in [
        ("%2F%09%2Fevil.example", "/dashboard"),
        ("%2F%5Cevil.example", "/dashboard"),
        ("https%3A%2F%2Fevil.example", "/dashboard"),
        ("%2Fj%2Fabc", "/j/abc"),
        ("%2Fj%2Fa%0Ab", "/j/ab"),
    ] {
        let page = app.get("/login").send().await;
        let csrf = page.cookie("confab_csrf").unwrap();
        let res = app
            .post("/login")
            .cookie(&format!("confab_csrf={csrf}"))
            .form(&format!(
                "csrf={csrf}&email=admin%40example.org&password={}&next={next}",
                crate::support::enc(crate::support::PASSWORD)
            ))
            .send()
            .await;
        assert_eq!(res.status, StatusCode::SEE_OTHER, "{next}: {}", res.text());
        assert_eq!(res.location(), expected, "{next}");
    }
}
