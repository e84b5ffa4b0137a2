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
//!   invitation at a time;
//! - **report → administrator mail** (the bundled spam-guard): a guest on a call is
//!   reported (`POST /p/spam-guard/reports`), and the administrators hear of it in
//!   the next batch. Timed two ways: from the `notify-admins` timer firing to the
//!   SMTP server accepting the batch mail (the work, one report per batch), and
//!   from the report to the mail with the server's own timer running (the work plus
//!   the wait for the next minute), reports filed at random moments.
//!
//! `cargo bench -p confab-core --bench mail`; the figures are in docs/BENCHMARKS.md.
//! `MAIL_BENCH_MESSAGES` (2000), `MAIL_BENCH_INVITES` (50), `MAIL_BENCH_BATCHES` (20
//! at most) and `MAIL_BENCH_REPORTS` (6, 10 at most, about a minute each) change the
//! counts.

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

/// A server with the bundled plugins, its mail going to `sink` (`pool`
/// connections), with the administrator `email`; returns it and their API token.
async fn app_with_admin(
    dir: &Path,
    sink: &SmtpSink,
    pool: u32,
    email: &str,
    name: &str,
) -> (App, String) {
    let app = App::build_with_clock(config(dir, sink.port(), pool, true), Arc::new(SystemClock))
        .await
        .unwrap();
    let store = &app.state().store;
    let now = chrono::Utc::now();
    let account = accounts::create_user(
        store,
        NewUser {
            email: email.into(),
            display_name: name.into(),
            password: Secret::new("correct horse battery".into()),
            role: Role::Admin,
        },
        now,
    )
    .await
    .unwrap();
    let token = accounts::issue_token(store, account.id, "bench", now)
        .await
        .unwrap()
        .secret
        .expose()
        .to_string();
    (app, token)
}

/// An API request as the bearer of `token`, with a JSON body.
fn api_request(
    token: &str,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> axum::http::Request<axum::body::Body> {
    axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap()
}

/// Sends `n` invitations through the plugin's route, one at a time; returns each
/// one's time from request to acceptance by the SMTP server.
async fn invite_latency(sink: &SmtpSink, n: usize) -> Vec<Duration> {
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let (app, token) = app_with_admin(dir.path(), sink, 16, "ana@example.org", "Ana Example").await;
    let now = chrono::Utc::now();
    let delivery = app.start_mail().unwrap();
    let router = app.router();
    let request =
        |method: &str, path: &str, body: serde_json::Value| api_request(&token, method, path, body);
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

/// A WebSocket to the call of `link` on `addr`, as the bearer of `token` or as a
/// guest, from loopback address `127.1.0.{source}` (guests from one network may
/// only ask so often); joined (the `joined` message read). Returns the participant
/// number; the connection stays open, read in the background (which answers the
/// server's pings), until the bench ends.
async fn join_call(addr: &str, link: &str, token: Option<&str>, name: &str, source: u8) -> u64 {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};
    let mut request = format!("ws://{addr}/j/{link}/ws")
        .into_client_request()
        .unwrap();
    if let Some(token) = token {
        request
            .headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket
        .bind(std::net::SocketAddr::from(([127, 1, 0, source], 0)))
        .unwrap();
    let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
            .await
            .unwrap();
    let mut join = serde_json::json!({"v": 1, "type": "join"});
    if token.is_none() {
        join["name"] = name.into();
        join["guest_key"] = format!("bench-guest-key-{name}").into();
    }
    ws.send(Message::text(join.to_string())).await.unwrap();
    loop {
        let Some(Ok(Message::Text(text))) = ws.next().await else {
            panic!("the call closed before {name} joined");
        };
        let message: serde_json::Value = serde_json::from_str(&text).unwrap();
        if message["type"] == "joined" {
            tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
            return message["participant"].as_u64().unwrap();
        }
        assert_ne!(message["type"], "error", "{message}");
    }
}

/// Report → administrator mail: `batches` reports each followed by firing the
/// timer at once (the work), then `reports` reports at random moments with the
/// server's timer running (the work and the wait). Returns both lists of times.
async fn report_latency(
    sink: &SmtpSink,
    batches: usize,
    reports: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    use tower::ServiceExt;
    let dir = tempfile::tempdir().unwrap();
    let (app, token) = app_with_admin(dir.path(), sink, 4, "ada@example.org", "Ada Admin").await;
    let state = app.state().clone();
    let delivery = app.start_mail().unwrap();
    let router = app.router();
    let request =
        |method: &str, path: &str, body: serde_json::Value| api_request(&token, method, path, body);
    let created = router
        .clone()
        .oneshot(request(
            "POST",
            "/api/v1/links",
            serde_json::json!({"title": "Town hall", "guests_need_approval": false}),
        ))
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "the link is made");
    let body = axum::body::to_bytes(created.into_body(), 1 << 20)
        .await
        .unwrap();
    let link: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let link = link["id"].as_str().unwrap().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(confab_core::serve(
        listener,
        router.clone(),
        Duration::from_secs(10),
        std::future::pending(),
    ));
    join_call(&addr, &link, Some(&token), "Ada", 1).await;
    let report = |guest: u64| {
        let router = router.clone();
        let body = serde_json::json!({"link": link, "participant": guest, "category": "spam", "action": "report"});
        let request = request("POST", "/p/spam-guard/reports", body);
        async move {
            let res = router.oneshot(request).await.unwrap();
            assert_eq!(res.status(), 201, "the report is filed");
        }
    };
    let arrival = |before: usize, started: Instant| async move {
        while received(sink) == before {
            assert!(
                started.elapsed() < Duration::from_secs(150),
                "never delivered"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        started.elapsed()
    };

    // The work: the timer fired by hand right after each report.
    let mut work = Vec::with_capacity(batches);
    for i in 0..batches {
        let guest = join_call(&addr, &link, None, &format!("g{i}"), 10 + i as u8).await;
        report(guest).await;
        let before = received(sink);
        let started = Instant::now();
        state
            .plugins
            .fire_timer(state.plugin_deps(), "spam-guard", "notify-admins")
            .await
            .unwrap();
        work.push(arrival(before, started).await);
    }

    // With the server's own timer: reports at random moments.
    let (trigger, shutdown) = confab_core::shutdown::Shutdown::new();
    let timers = tokio::spawn(confab_core::plugins::PluginHost::run_timers(
        state.plugin_deps().clone(),
        shutdown,
    ));
    let mut total = Vec::with_capacity(reports);
    for i in 0..reports {
        // 5 to 64 s apart, from the clock's nanoseconds (no need for a generator).
        let wait = 5_000 + u64::from(chrono::Utc::now().timestamp_subsec_nanos()) % 60_000;
        tokio::time::sleep(Duration::from_millis(wait)).await;
        let guest = join_call(&addr, &link, None, &format!("r{i}"), 200 + i as u8).await;
        let before = received(sink);
        let started = Instant::now();
        report(guest).await;
        total.push(arrival(before, started).await);
    }
    trigger.trigger();
    let _ = timers.await;
    delivery.stop().await;
    (work, total)
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
        // Everyone reported stays on the one call (at most 32 people).
        let batches = count("MAIL_BENCH_BATCHES", 20).min(20);
        let reports = count("MAIL_BENCH_REPORTS", 6).min(10);
        if batches > 0 {
            let (work, total) = report_latency(&sink, batches, reports).await;
            let ms = |d: &Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
            let mut sorted = work.clone();
            sorted.sort();
            println!(
                "mail/report-timer-to-accepted: {batches} batches of one report, median {}, p90 {}, max {}",
                ms(&median(work)),
                ms(&sorted[sorted.len() * 9 / 10]),
                ms(&sorted[sorted.len() - 1]),
            );
            if !total.is_empty() {
                println!(
                    "mail/report-to-accepted (server timer, every minute): {reports} reports, median {:.1} s, max {:.1} s (each: {:?})",
                    median(total.clone()).as_secs_f64(),
                    total.iter().max().unwrap().as_secs_f64(),
                    total.iter().map(|t| format!("{:.1} s", t.as_secs_f64())).collect::<Vec<_>>()
                );
            }
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
