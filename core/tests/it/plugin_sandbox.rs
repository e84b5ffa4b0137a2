//! The sandbox of plugins' web code, in real browsers: the rogue test plugin's
//! hostile module (core/tests/plugins/rogue/static/hostile.js) runs in its frame
//! on the call page, on the dashboard and on the administrators' dashboard, and
//! on its own page under `/p/` opened directly. From each it tries to read the
//! viewer's cookies, Confab's storage and the link secret, to call the API or post
//! a form as the viewer, and to ask the page's bridge for what it was not granted.

use axum::http::StatusCode;
use confab_core::accounts::Role;
use serde_json::{Value, json};

use crate::plugins::hello_and_rogue;
use crate::support::TestApp;
use crate::support::browser::{Browser, Driver, member_joins};
use crate::support::netns::Netns;

/// What the probe found in the frame (or page) the browser is in.
async fn results(page: &Browser) -> Value {
    let text = page.wait_js("(t => t && t !== 'probing' ? t : null)(document.getElementById('results')?.textContent)").await;
    serde_json::from_str(text.as_str().unwrap()).unwrap()
}

/// Every attempt was refused, by the browser ("blocked") or by the page
/// ("access-denied"); `where_` names the place for the message.
fn assert_refused(found: &Value, where_: &str, bridge: bool) {
    let mut keys = vec!["cookie", "storage", "session", "top", "api"];
    if bridge {
        // In a frame, the page around it (whose address holds the secret) is out
        // of reach; a page opened directly has no page around it.
        keys.extend(["hash", "escape", "link", "raw"]);
    }
    for key in keys {
        let outcome = found[key].as_str().unwrap_or("missing");
        assert!(
            outcome == "blocked" || outcome == "access-denied",
            "{where_}: {key} → {outcome} ({found})"
        );
    }
    if bridge {
        for key in ["escape", "link", "raw"] {
            assert_eq!(found[key], "access-denied", "{where_}: {key} ({found})");
        }
    }
}

#[tokio::test]
async fn a_hostile_plugin_reaches_no_cookie_storage_secret_or_api_from_its_frames_or_pages() {
    hostile_plugin_in(false).await;
}

#[tokio::test]
async fn in_firefox_too_a_hostile_plugin_reaches_nothing_from_its_frames_or_pages() {
    hostile_plugin_in(true).await;
}

/// The probe in every place, in Chromium or (in a network namespace of its own,
/// as the Firefox tests run) in Firefox.
async fn hostile_plugin_in(firefox: bool) {
    let netns = firefox.then(Netns::create);
    let outside = netns.as_ref().map(|n| n.outside);
    let (_plugins, configure) = hello_and_rogue();
    let (app, base) = TestApp::served_with(|c| {
        configure(c);
        if let Some(outside) = outside {
            c.media.bind = outside.into();
        }
        let rogue = c.plugins.settings.entry("rogue".into()).or_default();
        rogue.grant = Some(vec![
            "web.call-page".into(),
            "web.dashboard".into(),
            "web.admin".into(),
        ]);
    })
    .await;
    let token = app.user_with_token("host@example.org", Role::Admin).await;
    let res = app
        .post("/api/v1/links")
        .bearer(&token)
        .json(&json!({ "title": "Family call" }))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let link = res.json()["id"].as_str().unwrap().to_string();

    let _pages = match &netns {
        Some(netns) => Some(netns.relay_http(&base).await),
        None => None,
    };
    let driver = match &netns {
        Some(netns) => Driver::start_firefox(netns),
        None => Driver::start(),
    };
    let page = member_joins(driver.browser().await, &base, &link, "host@example.org").await;
    // Something worth stealing in Confab's storage, besides the call's own secret.
    page.client
        .execute(
            "localStorage.setItem('confab.secret.probe', 'kept-secret'); return null;",
            vec![],
        )
        .await
        .unwrap();

    // The call page: the frame holds no secret, and the page refuses what the
    // plugin was not granted (web.link-secret) and what a call-page frame may not do.
    page.frame("rogue").await;
    let found = results(&page).await;
    assert_refused(&found, "call page", true);
    assert_eq!(found["secretInLink"], "no secret", "{found}");
    page.top().await;
    // The page and its call went on.
    page.wait_text("#roster", "(you)").await;

    // The dashboard: the members' frame and the administrators' frame.
    page.goto(&format!("{base}/dashboard")).await;
    page.wait_js("document.querySelectorAll(\"iframe[data-plugin='rogue']\").length === 2")
        .await;
    for kind in ["dashboard", "admin"] {
        page.frame_at(&format!("iframe[src='/plugin-frame/rogue/{kind}']"))
            .await;
        let found = results(&page).await;
        assert_refused(&found, kind, true);
        assert_eq!(
            found["actions"], "added,added,added,added,too-many",
            "{kind}: a frame puts at most 4 buttons on each link ({found})"
        );
        page.top().await;
    }
    // Four from each of the two frames on the link, and no more.
    let buttons = page
        .wait_js(
            "document.querySelectorAll(\"li[data-link-id] button[data-plugin='rogue']\").length",
        )
        .await;
    assert_eq!(buttons, 8);

    // The plugin's own page, opened directly: sandboxed by its CSP.
    page.goto(&format!("{base}/p/rogue/page")).await;
    let found = results(&page).await;
    assert_refused(&found, "/p/rogue/page", false);

    // Nothing was made as the viewer, by fetch or by form.
    let links = app.get("/api/v1/links").bearer(&token).send().await.json();
    let titles: Vec<&str> = links["items"]
        .as_array()
        .or(links.as_array())
        .unwrap()
        .iter()
        .filter_map(|l| l["title"].as_str())
        .collect();
    assert_eq!(titles, ["Family call"], "{links}");
    // The secret the browser keeps is still there, for the page itself.
    page.goto(&format!("{base}/dashboard")).await;
    let kept = page
        .client
        .execute("return localStorage.getItem('confab.secret.probe')", vec![])
        .await
        .unwrap();
    assert_eq!(kept, json!("kept-secret"));
    page.close().await;
}
