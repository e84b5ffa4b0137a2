//! watch-together's server side, built for wasm32-wasip2 and run against the mocked
//! server of confab-plugin-test: the per-link option and who is watching.

#![allow(clippy::unwrap_used)] // a test that unwraps fails with the line

use confab_plugin_test::{ActivityRole, Harness, HttpRequest};
use serde_json::{Value, json};

fn plugin() -> Harness {
    Harness::from_crate(env!("CARGO_MANIFEST_DIR"))
}

fn body(response: &confab_plugin_test::HttpResponse) -> Value {
    serde_json::from_str(&response.body_text()).unwrap()
}

fn put(link: &str, user: Option<i64>, body: &str) -> HttpRequest {
    let request = HttpRequest::new("PUT", "/options")
        .with_query(&format!("link={link}"))
        .with_header("content-type", "application/json")
        .with_body(body.as_bytes().to_vec());
    match user {
        Some(user) => request.with_user(user),
        None => request,
    }
}

#[test]
fn the_owner_or_an_administrator_keeps_starting_videos_to_people_who_signed_in() {
    let mut p = plugin();
    let link = p.add_link(7, "Movie night");
    let get = |user: Option<i64>| {
        let request = HttpRequest::get("/options").with_query(&format!("link={}", link.id));
        match user {
            Some(user) => request.with_user(user),
            None => request,
        }
    };

    let answer = p.http(get(None));
    assert_eq!(answer.status, 200);
    assert_eq!(
        body(&answer),
        json!({ "signed_in_only": false, "can_change": false })
    );
    assert_eq!(body(&p.http(get(Some(7))))["can_change"], true);
    assert_eq!(body(&p.http(get(Some(8))))["can_change"], false);

    assert_eq!(
        p.http(put(&link.id, None, r#"{"signed_in_only":true}"#))
            .status,
        401
    );
    assert_eq!(
        p.http(put(&link.id, Some(8), r#"{"signed_in_only":true}"#))
            .status,
        403
    );
    for bad in [
        r#"{"signed_in_only":"yes"}"#,
        r#"{"other":true}"#,
        "[]",
        "",
        "{",
    ] {
        assert_eq!(p.http(put(&link.id, Some(7), bad)).status, 422, "{bad}");
    }
    assert_eq!(
        p.kv_keys(),
        Vec::<String>::new(),
        "nothing kept from refused requests"
    );

    let answer = p.http(put(&link.id, Some(7), r#"{"signed_in_only":true}"#));
    assert_eq!(answer.status, 200, "{}", answer.body_text());
    assert_eq!(body(&p.http(get(None)))["signed_in_only"], true);

    // An administrator may too; back to the default keeps nothing.
    p.add_admin(9);
    assert_eq!(body(&p.http(get(Some(9))))["can_change"], true);
    let answer = p.http(put(&link.id, Some(9), r#"{"signed_in_only":false}"#));
    assert_eq!(answer.status, 200, "{}", answer.body_text());
    assert_eq!(body(&p.http(get(None)))["signed_in_only"], false);
    assert!(p.kv_keys().is_empty(), "{:?}", p.kv_keys());
}

#[test]
fn unknown_and_malformed_links_and_methods_get_a_clear_error() {
    let mut p = plugin();
    let answer = p.http(HttpRequest::get("/options").with_query("link=NoSuchLink"));
    assert_eq!(answer.status, 404);
    assert_eq!(body(&answer)["error"]["code"], "not_found");
    for query in [
        "",
        "link=",
        "link=a%20b",
        "link=../x",
        &format!("link={}", "a".repeat(65)),
    ] {
        let answer = p.http(HttpRequest::get("/options").with_query(query));
        assert_eq!(answer.status, 400, "{query}");
        assert_eq!(body(&answer)["error"]["code"], "bad_request");
    }
    let answer = p.http(HttpRequest::post("/options").with_query("link=x"));
    assert_eq!(answer.status, 405);
    assert_eq!(answer.header("allow"), Some("GET, PUT"));
    assert_eq!(p.http(HttpRequest::get("/elsewhere")).status, 404);
}

#[test]
fn the_owner_sees_who_is_watching_and_nothing_of_what() {
    let mut p = plugin();
    let link = p.add_link(7, "Movie night");
    let watching = |user: i64| {
        HttpRequest::get("/watching")
            .with_query(&format!("link={}", link.id))
            .with_user(user)
    };
    assert_eq!(
        body(&p.http(watching(7))),
        json!({ "watching": [] }),
        "no call"
    );
    p.start_call(&link.id);
    p.set_activity(
        &link.id,
        &[(1, ActivityRole::Host), (3, ActivityRole::Guest)],
    );
    assert_eq!(
        body(&p.http(watching(7))),
        json!({ "watching": [{ "participant": 1, "role": "host" }, { "participant": 3, "role": "guest" }] })
    );
    assert_eq!(p.http(watching(8)).status, 403);
}
