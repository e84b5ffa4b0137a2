//! Mail delivery, end to end, against a real SMTP server on loopback (Python's
//! aiosmtpd, as in the mail tests; `python3 -m pip install aiosmtpd` if missing):
//!
//! - **throughput**: 2000 invitations (text, HTML and an iMIP part, about 4 KiB each)
//!   queued in a fresh SQLite outbox, then the worker started; the time until the
//!   last one is recorded as sent, with the default pool of 8 connections and with
//!   one connection;
//! - **invite latency**: `POST /p/email-invites/invites` for one recipient of a
//!   scheduled link (the bundled plugin, as the dashboard's *Invite* button sends it),
//!   timed from the request until the SMTP server has accepted the message, one
//!   invitation at a time.
//!
//! `cargo bench -p confab-core --bench mail`; the figures are in docs/BENCHMARKS.md.
//! `MAIL_BENCH_MESSAGES` (2000) and `MAIL_BENCH_INVITES` (50) change the counts.

#![allow(clippy::unwrap_used)] // a test that unwraps fails with the line

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use confab_core::accounts::{self, NewUser, Role};
use confab_core::config::SmtpTls;
use confab_core::secret::Secret;
use confab_core::store::{NewAttachment, NewMail};
use confab_core::{App, Config, SystemClock};

#[path = "../tests/it/smtp.rs"]
mod smtp;

use smtp::{SinkOptions, SmtpSink};

fn count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(dir: &Path, port: u16, pool: u32, bundled: bool) -> Config {
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    c.server.public_url = "https://meet.example.org".into();
    c.plugins.bundled = bundled;
    c.plugins.watch = false;
    c.media.udp_port = 0;
    c.media.tcp_port = 0;
    c.mail.smtp_host = "127.0.0.1".into();
    c.mail.smtp_port = port;
    c.mail.smtp_tls = SmtpTls::None;
    c.mail.smtp_pool_size = pool;
    c
}

fn invitation(i: usize) -> NewMail {
    let url = "https://meet.example.org/j/AbCdEfGhIjKlMnOpQrStUv#k=0123456789abcdefABCDEF";
    let ics = format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Confab//bench//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:bench-{i}@meet.example.org\r\nSEQUENCE:0\r\nDTSTAMP:20261201T100000Z\r\nDTSTART:20261214T093000Z\r\nDTEND:20261214T100000Z\r\nSUMMARY:Weekly sync\r\nLOCATION:{url}\r\nURL:{url}\r\nORGANIZER;CN=Ana:mailto:ana@example.org\r\nATTENDEE;CN=Guest {i};RSVP=TRUE:mailto:guest{i}@example.org\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    );
    NewMail {
        to: vec![format!("Guest {i} <guest{i}@example.org>")],
        reply_to: Some("Ana <ana@example.org>".into()),
        subject: "Ana invited you to a call: Weekly sync".into(),
        text: format!(
            "Ana invited you to a call.\n\nJoin:\n{url}\n\n{}",
            "Some words of a note. ".repeat(20)
        ),
        html: Some(format!(
            "<p>Ana invited you to a call.</p><p><a href=\"{url}\">Join the call</a></p><p>{}</p>",
            "Some words of a note. ".repeat(20)
        )),
        attachments: vec![NewAttachment {
            filename: "invite.ics".into(),
            content_type: "text/calendar; charset=UTF-8; method=REQUEST".into(),
            data: ics.into_bytes(),
            inline_alternative: true,
        }],
        ..NewMail::default()
    }
}

/// Queues `n` invitations, starts the worker, and returns how long until all are sent.
async fn throughput(port: u16, pool: u32, n: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let app = App::build(config(dir.path(), port, pool, false))
        .await
        .unwrap();
    let state = app.state();
    for i in 0..n {
        state.mail.enqueue(invitation(i)).await.unwrap();
    }
    let started = Instant::now();
    let delivery = app.start_mail().unwrap();
    loop {
        let counts = state.store.outbox_counts().await.unwrap();
        assert_eq!(counts.failed, 0, "a message failed");
        if counts.sent as usize == n {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "too slow: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    delivery.stop().await;
    took
}

fn received(sink: &SmtpSink) -> usize {
    std::fs::read_dir(sink.mail_dir())
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .count()
        })
        .unwrap_or(0)
}

/// Sends `n` invitations through the plugin's route, one at a time; returns each
/// one's time from request to acceptance by the SMTP server.
async fn invite_latency(sink: &SmtpSink, n: usize) -> Vec<Duration> {
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let app = App::build_with_clock(
        config(dir.path(), sink.port(), 16, true),
        Arc::new(SystemClock),
    )
    .await
    .unwrap();
    let state = app.state().clone();
    let now = chrono::Utc::now();
    let account = accounts::create_user(
        &state.store,
        NewUser {
            email: "ana@example.org".into(),
            display_name: "Ana Example".into(),
            password: Secret::new("correct horse battery".into()),
            role: Role::Admin,
        },
        now,
    )
    .await
    .unwrap();
    let token = accounts::issue_token(&state.store, account.id, "bench", now)
        .await
        .unwrap()
        .secret
        .expose()
        .to_string();
    let delivery = app.start_mail().unwrap();
    let router = app.router();
    let request = |method: &str, path: &str, body: serde_json::Value| {
        axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(axum::body::Body::from(body.to_string()))
            .unwrap()
    };
    let start = (now + chrono::Duration::days(7)).to_rfc3339();
    let end = (now + chrono::Duration::days(7) + chrono::Duration::minutes(30)).to_rfc3339();
    let created = router
        .clone()
        .oneshot(request(
            "POST",
            "/api/v1/links",
            serde_json::json!({"title": "Weekly sync", "schedule": {"start": start, "end": end, "time_zone": "Europe/Paris"}}),
        ))
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "the link is made");
    let body = axum::body::to_bytes(created.into_body(), 1 << 20)
        .await
        .unwrap();
    let link: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let url = format!("{}#k=0123456789abcdefABCDEF", link["url"].as_str().unwrap());

    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let before = received(sink);
        let started = Instant::now();
        let res = router
            .clone()
            .oneshot(request(
                "POST",
                "/p/email-invites/invites",
                serde_json::json!({"url": url, "recipients": [format!("guest{i}@example.org")]}),
            ))
            .await
            .unwrap();
        assert_eq!(res.status(), 202, "the invitation is accepted");
        while received(sink) == before {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "never delivered"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        times.push(started.elapsed());
    }
    delivery.stop().await;
    times
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let messages = count("MAIL_BENCH_MESSAGES", 2000);
        let invites = count("MAIL_BENCH_INVITES", 50);
        let sink = SmtpSink::start(SinkOptions::default()).await;
        for pool in [16, 8, 1] {
            let runs: Vec<Duration> = {
                let mut runs = Vec::new();
                for _ in 0..3 {
                    runs.push(throughput(sink.port(), pool, messages).await);
                }
                runs
            };
            let m = median(runs.clone());
            println!(
                "mail/throughput pool={pool}: {messages} messages, median {:.2} s = {:.0} messages/s (runs: {:?})",
                m.as_secs_f64(),
                messages as f64 / m.as_secs_f64(),
                runs.iter().map(|r| format!("{:.2} s", r.as_secs_f64())).collect::<Vec<_>>()
            );
        }
        if invites == 0 {
            return;
        }
        let times = invite_latency(&sink, invites).await;
        let mut sorted = times.clone();
        sorted.sort();
        println!(
            "mail/invite-to-accepted: {invites} invitations, median {:.1} ms, p90 {:.1} ms, max {:.1} ms",
            median(times).as_secs_f64() * 1000.0,
            sorted[sorted.len() * 9 / 10].as_secs_f64() * 1000.0,
            sorted[sorted.len() - 1].as_secs_f64() * 1000.0,
        );
    });
}
