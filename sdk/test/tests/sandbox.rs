//! The sandbox around a real component (the probe plugin in probe/): deadlines,
//! memory, panics, what the server filters in and out, stdout, the clock, and hooks
//! and capabilities the manifest does not ask for.

#![allow(clippy::unwrap_used)] // a test that unwraps fails with the line

use std::time::Duration;

use confab_plugin_test::{Failure, Harness, HttpRequest, Level, LogLine, START_TIME_MS};

fn probe() -> Harness {
    Harness::from_crate(concat!(env!("CARGO_MANIFEST_DIR"), "/probe"))
}

fn failure(plugin: &mut Harness, path: &str) -> String {
    match plugin.try_http(HttpRequest::get(path)) {
        Err(Failure::Failed(why)) => why,
        other => panic!("{path}: {other:?}"),
    }
}

#[test]
fn a_plugin_that_loops_is_stopped_at_the_deadline() {
    let mut plugin = probe().deadline(Duration::from_millis(200));
    let why = failure(&mut plugin, "/loop");
    assert!(why.contains("deadline of 200 ms"), "{why}");
    // The next call gets a fresh sandbox.
    assert_eq!(plugin.http(HttpRequest::get("/stdout")).status, 200);
}

#[test]
fn a_plugin_that_panics_or_balloons_fails_with_its_message() {
    let mut plugin = probe();
    let why = failure(&mut plugin, "/panic");
    assert!(why.contains("asked to panic"), "{why}");
    // 16 MiB in plugin.toml
    let why = failure(&mut plugin, "/balloon");
    assert!(why.contains("memory allocation"), "{why}");
    let why = failure(&mut plugin, "/status");
    assert!(why.contains("invalid status 42"), "{why}");
}

#[test]
fn credentials_stay_out_and_server_headers_are_not_the_plugins() {
    let mut plugin = probe();
    let request = HttpRequest::get("/echo")
        .with_header("Cookie", "session=secret")
        .with_header("Authorization", "Bearer secret")
        .with_header("X-CSRF-Token", "secret")
        .with_header("Accept", "text/plain");
    let answer = plugin.http(request);
    assert_eq!(answer.body_text(), "accept");
    assert_eq!(answer.header("set-cookie"), None);
    assert_eq!(answer.header("X-Probe"), Some("yes"));
}

#[test]
fn output_goes_to_the_log_and_the_clock_is_the_harness_clock() {
    let mut plugin = probe();
    plugin.http(HttpRequest::get("/stdout"));
    assert_eq!(
        plugin.logs(),
        [
            LogLine {
                level: Level::Info,
                message: "to stdout".into()
            },
            LogLine {
                level: Level::Warn,
                message: "to stderr".into()
            },
        ]
    );
    let clock = plugin.http(HttpRequest::get("/clock")).body_text();
    assert_eq!(clock, START_TIME_MS.to_string());
    plugin.advance(Duration::from_secs(90));
    let clock = plugin.http(HttpRequest::get("/clock")).body_text();
    assert_eq!(clock, (START_TIME_MS + 90_000).to_string());
}

#[test]
fn what_the_manifest_does_not_ask_for_is_refused() {
    let mut plugin = probe();
    let answer = plugin.http(HttpRequest::get("/kv"));
    assert_eq!(answer.status, 403);
    assert!(
        answer
            .body_text()
            .contains("does not ask for the kv permission"),
        "{}",
        answer.body_text()
    );
    assert!(matches!(
        plugin.try_timer("any"),
        Err(Failure::NotCalled(_))
    ));
}

#[test]
#[should_panic(expected = "declares no [config.greeting]")]
fn settings_the_manifest_does_not_declare_are_refused() {
    let _ = probe().config("greeting", "Hi");
}
