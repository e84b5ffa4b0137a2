//! The hello plugin, built for wasm32-wasip2 and run against the mocked server of
//! confab-plugin-test: what it answers, stores, sends and refuses.

#![allow(clippy::unwrap_used)] // a test that unwraps fails with the line

use std::time::Duration;

use confab_plugin_test::{
    Call, Capability, Decision, Event, Failure, Harness, HttpRequest, Level, Link,
    ParticipantEvent, SentMessage,
};

fn hello() -> Harness {
    Harness::from_crate(env!("CARGO_MANIFEST_DIR"))
}

/// A link of user 7 with a call running on it.
fn with_call(plugin: &mut Harness) -> (Link, Call) {
    let link = plugin.add_link(7, "Standup");
    let call = plugin.start_call(&link.id);
    (link, call)
}

fn logged(plugin: &Harness, level: Level, needle: &str) -> bool {
    plugin
        .logs()
        .iter()
        .any(|l| l.level == level && l.message.contains(needle))
}

#[test]
fn the_greeting_page_says_the_configured_greeting_and_counts_visits() {
    let mut plugin = hello();
    let page = plugin.http(HttpRequest::get("/"));
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let body = page.body_text();
    assert!(
        body.contains("Hello, world!"),
        "the manifest's default: {body}"
    );
    assert!(body.contains("visited 1 times"), "{body}");

    let mut plugin = hello().config("greeting", "Good morning");
    plugin.kv_set("visits", "41");
    let body = plugin.http(HttpRequest::get("/?name=Ana+Lima")).body_text();
    assert!(body.contains("Good morning, Ana Lima!"), "{body}");
    assert!(body.contains("visited 42 times"), "{body}");
    assert_eq!(plugin.kv_string("visits").as_deref(), Some("42"));
    assert_eq!(
        plugin.kv_expires_at("visits"),
        None,
        "the counter is kept for good"
    );
}

#[test]
fn what_visitors_type_is_escaped_in_the_page() {
    let mut plugin = hello().config("greeting", "Say \"hi\"\\");
    // %3C = <, %22 = ", %5C = \, %0A = a line break: all must survive the JSON
    // context the plugin writes and come out escaped by the .html template.
    let page = plugin.http(HttpRequest::get("/").with_query("name=%3Cb%3E%22x%5C%0A"));
    let body = page.body_text();
    assert_eq!(page.status, 200, "{body}");
    assert!(body.contains("&lt;b&gt;&quot;x\\\n!"), "{body}");
    assert!(!body.contains("<b>"), "{body}");
    assert!(body.contains("Say &quot;hi&quot;\\,"), "{body}");
}

#[test]
fn without_storage_the_page_still_renders_and_says_why_in_the_log() {
    let mut plugin = hello().deny(Capability::Kv);
    let page = plugin.http(HttpRequest::get("/"));
    assert_eq!(page.status, 200);
    assert!(page.body_text().contains("visited 1 times"));
    assert!(plugin.kv_keys().is_empty());
    assert!(
        logged(
            &plugin,
            Level::Warn,
            "cannot count the visit: Error::AccessDenied"
        ),
        "{:?}",
        plugin.logs()
    );
}

#[test]
fn without_templates_the_page_is_an_error_not_a_crash() {
    let mut plugin = hello().deny(Capability::Templates);
    let page = plugin.http(HttpRequest::get("/"));
    assert_eq!(page.status, 500);
    assert!(
        page.body_text().contains("AccessDenied"),
        "{}",
        page.body_text()
    );
}

#[test]
fn unknown_routes_and_methods_are_not_found() {
    let mut plugin = hello();
    for request in [
        HttpRequest::get("/nothing"),
        HttpRequest::get("/links"),
        HttpRequest::post("/"),
    ] {
        let what = format!("{} {}", request.method, request.path);
        assert_eq!(plugin.http(request).status, 404, "{what}");
    }
}

#[test]
fn the_lobby_turns_away_names_with_the_blocked_word_only() {
    let mut plugin = hello().config("blocked-word", "Spam");
    let (_, call) = with_call(&mut plugin);
    let denied = plugin.lobby_decision(plugin.lobby_request(&call, "Best sPaMmer"));
    assert_eq!(
        denied,
        Decision::Deny("names with “Spam” are not let in".into())
    );
    let ana = plugin.lobby_request(&call, "Ana");
    assert_eq!(plugin.lobby_decision(ana), Decision::Allow);

    // No blocked word (the manifest has no default), or an empty one: everyone.
    for mut plugin in [hello(), hello().config("blocked-word", "")] {
        let request = plugin.lobby_request(&call, "spam");
        assert_eq!(plugin.lobby_decision(request), Decision::Allow);
    }
}

#[test]
fn a_new_link_becomes_the_newest_link() {
    let mut plugin = hello();
    let before = plugin.http(HttpRequest::get("/newest"));
    assert_eq!(
        (before.status, before.body_text().as_str()),
        (404, "no link yet")
    );
    for title in ["First", "Second"] {
        let link = plugin.add_link(7, title);
        plugin.event(Event::LinkCreated(link));
    }
    let newest = plugin.links()[1].id.clone();
    assert_eq!(plugin.kv_string("newest-link"), Some(newest.clone()));
    let page = plugin.http(HttpRequest::get("/newest"));
    assert_eq!((page.status, page.body_text()), (200, newest));
}

#[test]
fn events_the_manifest_does_not_list_are_not_delivered() {
    let mut plugin = hello();
    let (link, call) = with_call(&mut plugin);
    assert!(matches!(
        plugin.try_event(Event::CallStarted(call)),
        Err(Failure::NotCalled(_))
    ));
    assert!(matches!(
        plugin.try_event(Event::LinkRevoked(link)),
        Err(Failure::NotCalled(_))
    ));
    assert!(plugin.kv_keys().is_empty());
}

#[test]
fn creating_a_link_acts_for_the_signed_in_user() {
    let mut plugin = hello();
    let anonymous = plugin.http(HttpRequest::post("/links").with_body("Team sync"));
    assert_eq!(anonymous.status, 401);

    let created = plugin.http(
        HttpRequest::post("/links")
            .with_user(7)
            .with_body("  Team sync \n"),
    );
    assert_eq!(created.status, 201, "{}", created.body_text());
    let [made] = plugin.links_created() else {
        panic!("one link: {:?}", plugin.links_created())
    };
    assert_eq!(made.link.owner, 7);
    assert_eq!(made.link.title, "Team sync");
    assert!(
        made.url
            .starts_with(&format!("http://confab.test/j/{}#k=", made.link.id)),
        "the full link, with its secret: {}",
        made.url
    );
    assert_eq!(
        created.body_text(),
        format!(r#"{{"id":"{}","url":"{}"}}"#, made.link.id, made.url)
    );

    plugin.http(HttpRequest::post("/links").with_user(8));
    assert_eq!(plugin.links_created()[1].link.title, "Hello call");
    assert_eq!(plugin.links_created()[1].link.owner, 8);
}

#[test]
fn without_the_links_grant_no_link_is_created() {
    let mut plugin = hello().deny(Capability::Links);
    let answer = plugin.http(HttpRequest::post("/links").with_user(7));
    assert_eq!(answer.status, 403);
    assert!(
        answer.body_text().contains("AccessDenied"),
        "{}",
        answer.body_text()
    );
    assert!(plugin.links().is_empty());
}

#[test]
fn call_messages_are_relayed_and_kept_a_day_for_late_joiners() {
    let mut plugin = hello();
    let (link, call) = with_call(&mut plugin);
    let ana = plugin.join(&link.id, "Ana", None);
    plugin.call_message(&call, ana.id, "Ana waves");
    assert_eq!(
        plugin.sent_call_messages(),
        [SentMessage {
            link: link.id.clone(),
            call: call.id.clone(),
            to: None,
            payload: b"Ana waves".to_vec(),
        }]
    );
    let key = format!("last/{}", call.id);
    assert_eq!(plugin.kv_string(&key).as_deref(), Some("Ana waves"));
    assert_eq!(
        plugin.kv_expires_at(&key),
        Some(plugin.now() + 24 * 3_600_000)
    );

    // Someone who joins later gets the last message, and only they do.
    plugin.advance(Duration::from_secs(3600));
    let bo = plugin.join(&link.id, "Bo", Some(8));
    plugin.event(Event::ParticipantJoined(ParticipantEvent {
        call: call.clone(),
        participant: bo.clone(),
    }));
    let last = plugin.sent_call_messages().last().unwrap();
    assert_eq!(
        (last.to, last.payload.as_slice()),
        (Some(bo.id), &b"Ana waves"[..])
    );

    // A day after the message it is gone.
    plugin.advance(Duration::from_secs(23 * 3600));
    let cy = plugin.join(&link.id, "Cy", None);
    plugin.event(Event::ParticipantJoined(ParticipantEvent {
        call,
        participant: cy,
    }));
    assert_eq!(plugin.sent_call_messages().len(), 2);
    assert_eq!(plugin.kv_get(&key), None);
}

#[test]
fn without_the_calls_grant_nothing_is_relayed_and_the_log_says_why() {
    let mut plugin = hello().deny(Capability::Calls);
    let (link, call) = with_call(&mut plugin);
    let ana = plugin.join(&link.id, "Ana", None);
    plugin.call_message(&call, ana.id, "hi");
    assert!(plugin.sent_call_messages().is_empty());
    assert!(
        logged(&plugin, Level::Warn, "cannot relay: Error::AccessDenied"),
        "{:?}",
        plugin.logs()
    );
    assert!(logged(&plugin, Level::Debug, "message from participant 1"));
}

#[test]
fn the_roster_page_lists_who_is_on_the_call() {
    let mut plugin = hello();
    let (link, _) = with_call(&mut plugin);
    plugin.join(&link.id, "Olga", Some(7));
    plugin.join(&link.id, "Gus", None);
    let page = plugin.http(HttpRequest::get(&format!("/roster?link={}", link.id)));
    assert_eq!(page.status, 200);
    assert_eq!(page.body_text(), "1 Olga member\n2 Gus guest\n");

    assert_eq!(plugin.http(HttpRequest::get("/roster")).status, 400);
    let unknown = plugin.http(HttpRequest::get("/roster?link=nope"));
    assert_eq!(unknown.status, 404);
    assert!(unknown.body_text().contains("NotFound"));
}

#[test]
fn members_remove_guests_early_and_only_the_owner_later() {
    let mut plugin = hello();
    let (link, _) = with_call(&mut plugin);
    let remove = |user: Option<i64>, participant: u32| {
        let request = HttpRequest::post(&format!(
            "/remove?link={}&participant={participant}",
            link.id
        ));
        match user {
            Some(user) => request.with_user(user),
            None => request,
        }
    };
    let owner = plugin.join(&link.id, "Olga", Some(7));
    let member = plugin.join(&link.id, "Mia", Some(8));
    let early = plugin.join(&link.id, "Gus", None);

    assert_eq!(plugin.http(remove(None, early.id)).status, 401);
    plugin.advance(Duration::from_secs(10));
    let removed = plugin.http(remove(Some(8), early.id));
    assert_eq!(
        (removed.status, removed.body_text().as_str()),
        (200, "removed")
    );
    assert_eq!(plugin.removals().len(), 1);
    assert_eq!(plugin.removals()[0].participant, early);
    assert_eq!(plugin.removals()[0].by_user, 8);

    let late = plugin.join(&link.id, "Gail", None);
    plugin.advance(Duration::from_secs(31));
    let refused = plugin.http(remove(Some(8), late.id));
    assert_eq!(refused.status, 403);
    assert!(
        refused.body_text().contains("only the link's owner"),
        "{}",
        refused.body_text()
    );
    for (user, who) in [(7, member.id), (9, late.id)] {
        let answer = plugin.http(remove(Some(user), who));
        assert_eq!(answer.status, 403, "{}", answer.body_text());
    }
    assert_eq!(plugin.http(remove(Some(7), late.id)).status, 200);
    let names: Vec<&str> = plugin
        .roster(&link.id)
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, [owner.name.as_str(), member.name.as_str()]);
    assert_eq!(plugin.removals().len(), 2);
}

#[test]
fn the_tidy_timer_logs_how_many_keys_are_kept() {
    let mut plugin = hello();
    plugin.kv_set("visits", "3");
    plugin.kv_set("newest-link", "abc");
    plugin.timer("tidy");
    assert!(
        logged(&plugin, Level::Info, "timer tidy: 2 keys kept"),
        "{:?}",
        plugin.logs()
    );
    assert!(matches!(
        plugin.try_timer("purge"),
        Err(Failure::NotCalled(_))
    ));
}
