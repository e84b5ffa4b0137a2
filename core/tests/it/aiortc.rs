//! An independent WebRTC stack on a call: aiortc (Python), driven by
//! `examples/aiortc/confab_client.py`, which follows docs/signaling.md. Two
//! aiortc participants publish Opus and VP8 and receive each other; a third only
//! receives, without publishing.

use std::path::PathBuf;
use std::time::Duration;

use confab_core::accounts::Role;
use serde_json::Value;

use crate::support::TestApp;

/// What one participant of the script received from `publisher`.
fn received<'a>(report: &'a Value, who: usize, publisher: &Value) -> &'a Value {
    let from = publisher
        .as_u64()
        .expect("a participant number")
        .to_string();
    let got = &report[who]["received"][&from];
    assert!(
        got.is_object(),
        "{} received nothing from participant {from}: {}",
        report[who]["name"],
        report[who]
    );
    got
}

/// Asserts `got` holds decoded video of `colour` and decoded audio with sound in it.
fn assert_media(got: &Value, colour: &Value, what: &str) {
    assert_video(got, colour, what);
    let audio = got["audio_frames"].as_u64().unwrap_or(0);
    assert!(audio >= 100, "{what}: {audio} decoded audio frames: {got}");
    let peak = got["audio_peak"].as_i64().unwrap_or(0);
    assert!(
        peak > 1000,
        "{what}: the audio is silent (peak {peak}): {got}"
    );
}

/// Asserts `got` holds at least 30 decoded video frames of `colour`.
fn assert_video(got: &Value, colour: &Value, what: &str) {
    let frames = got["video_frames"].as_u64().unwrap_or(0);
    assert!(frames >= 30, "{what}: {frames} decoded video frames: {got}");
    let seen = got["colour"].as_array().expect("a decoded frame's colour");
    for (plane, (seen, sent)) in seen
        .iter()
        .zip(colour.as_array().expect("the sent colour"))
        .enumerate()
    {
        let (seen, sent) = (seen.as_i64().unwrap(), sent.as_i64().unwrap());
        assert!(
            (seen - sent).abs() <= 12,
            "{what}: plane {plane} decodes to {seen}, {sent} was sent: {got}"
        );
    }
}

/// Runs the aiortc client on `link` for 10 s; returns its report.
async fn run_client(base: &str, link: &str, tokens: &[&str], listeners: &[&str]) -> Value {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/aiortc/confab_client.py");
    let mut command = tokio::process::Command::new("python3");
    command
        .arg(script)
        .args(["--url", base, "--link", link, "--seconds", "10"]);
    for token in tokens {
        command.args(["--token", token]);
    }
    for token in listeners {
        command.args(["--receive-only", token]);
    }
    let run = command.kill_on_drop(true).output();
    let out = tokio::time::timeout(Duration::from_secs(90), run)
        .await
        .expect("the aiortc client finishes within 90 s")
        .expect("python3 runs (the test suite installs aiortc and websockets)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the aiortc client failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}\n{stderr}", String::from_utf8_lossy(&out.stdout)));
    // Shown when the test fails.
    eprintln!("aiortc client log ({link}):\n{stderr}\nreport: {report:#}");
    for person in report.as_array().expect("one report per participant") {
        assert_eq!(person["errors"], serde_json::json!([]), "{report}");
    }
    report
}

/// The first two participants of `report` published and each decoded the other.
fn assert_both_ways(report: &Value) {
    let (a, b) = (&report[0], &report[1]);
    assert_media(
        received(report, 0, &b["participant"]),
        &b["sent_colour"],
        "the owner receiving the colleague",
    );
    assert_media(
        received(report, 1, &a["participant"]),
        &a["sent_colour"],
        "the colleague receiving the owner",
    );
}

/// Two calls at once on a node with two engine threads: calls are spread over
/// the engines by key, so one is on each, and both carry their media.
#[tokio::test]
async fn aiortc_participants_see_and_hear_each_other_and_a_listener_receives_both() {
    let (app, base) = TestApp::served_with(|c| c.media.threads = 2).await;
    let owner = app.user_with_token("owner@example.org", Role::Member).await;
    let colleague = app
        .user_with_token("colleague@example.org", Role::Member)
        .await;
    let listener = app
        .user_with_token("recorder@example.org", Role::Member)
        .await;
    let first = app.create_link(&owner, "With aiortc").await;
    let second = app.create_link(&owner, "Another call").await;
    let (first, second) = (
        first["id"].as_str().unwrap(),
        second["id"].as_str().unwrap(),
    );
    let (publishers, listeners) = ([owner.as_str(), colleague.as_str()], [listener.as_str()]);
    let (report, other) = tokio::join!(
        run_client(&base, first, &publishers, &listeners),
        run_client(&base, second, &publishers, &[]),
    );

    assert_both_ways(&report);
    assert_both_ways(&other);
    for publisher in [&report[0], &report[1]] {
        assert_media(
            received(&report, 2, &publisher["participant"]),
            &publisher["sent_colour"],
            "the listener, who publishes nothing",
        );
    }
    let from_listener = report[2]["participant"].as_u64().unwrap().to_string();
    for who in 0..2 {
        assert!(
            report[who]["received"].get(&from_listener).is_none(),
            "the listener publishes nothing: {report}"
        );
    }
}
