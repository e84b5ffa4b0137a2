//! Mail delivery through the durable outbox: the file outbox by default, a real SMTP
//! server (Python's aiosmtpd) over STARTTLS with AUTH, implicit TLS and plain, an
//! outage, a restart, bounces, temporary refusals, and what is kept afterwards.

use std::time::Duration;

use chrono::Duration as Span;
use confab_core::accounts::Role;
use confab_core::store::{NewAttachment, NewMail, OutboxStatus};
use confab_core::{App, Config, FakeClock};
use serde_json::Value;

use crate::smtp::{SinkOptions, SmtpSink, free_port, mime};
use crate::support::{START, TestApp, test_config};

const WAIT: Duration = Duration::from_secs(20);

/// An invitation as the email-invites plugin queues it: text, HTML and an iMIP part.
fn invitation(to: &str) -> NewMail {
    let ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Confab//test//EN\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:call-1@confab.test\r\nDTSTAMP:20261201T100000Z\r\nDTSTART:20261214T093000Z\r\nDTEND:20261214T100000Z\r\nSUMMARY:Weekly sync\r\nORGANIZER;CN=Ana:mailto:ana@example.org\r\nATTENDEE;RSVP=TRUE:mailto:bo@example.org\r\nURL:https://call.example.org/j/AbCdEf123456#k=secretSECRET_-42\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";
    NewMail {
        to: vec![to.into()],
        reply_to: Some("Ana <ana@example.org>".into()),
        subject: "Ana invited you to a call: Weekly sync".into(),
        text: "Join the call:\nhttps://call.example.org/j/AbCdEf123456#k=secretSECRET_-42\n".into(),
        html: Some("<p><a href=\"https://call.example.org/j/AbCdEf123456#k=secretSECRET_-42\">Join the call</a></p>".into()),
        attachments: vec![NewAttachment {
            filename: "invite.ics".into(),
            content_type: "text/calendar; charset=UTF-8; method=REQUEST".into(),
            data: ics.as_bytes().to_vec(),
            inline_alternative: true,
        }],
        ..NewMail::default()
    }
}

fn plain(to: &str, subject: &str) -> NewMail {
    NewMail {
        to: vec![to.into()],
        subject: subject.into(),
        text: format!("{subject}\n"),
        ..NewMail::default()
    }
}

async fn queue(app: &TestApp, mail: NewMail) -> i64 {
    app.state.mail.enqueue(mail).await.unwrap()
}

/// Points the app at `sink` on localhost, with fast retries.
fn use_sink(config: &mut Config, port: u16, tls: &str, ca: Option<&std::path::Path>) {
    config.mail.smtp_host = "localhost".into();
    config.mail.smtp_port = port;
    config.mail.smtp_tls = serde_json::from_value(Value::from(tls)).unwrap();
    if let Some(ca) = ca {
        config.mail.smtp_ca_file = ca.display().to_string();
    }
    config.mail.smtp_timeout_secs = 5;
    config.mail.retry_initial_ms = 1_000;
    config.mail.poll_interval_ms = 50;
}

async fn status_of(app: &TestApp, id: i64) -> (OutboxStatus, confab_core::store::OutboxMessage) {
    let row = app
        .store
        .outbox_message(id)
        .await
        .unwrap()
        .expect("the message is in the outbox");
    (OutboxStatus::parse(&row.message.status).unwrap(), row)
}

/// Waits until message `id` is no longer queued (advancing the fake clock so that
/// retries come due), and returns it.
async fn settled(app: &TestApp, id: i64) -> (OutboxStatus, confab_core::store::OutboxMessage) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, row) = status_of(app, id).await;
        if status != OutboxStatus::Queued {
            return (status, row);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "message {id} is still queued: {:?}",
            row.message
        );
        app.clock.advance(Span::seconds(30));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the tree of an invitation must be, as Python's `email` reads it.
fn assert_imip_tree(m: &Value) {
    let tree = &m["tree"];
    assert_eq!(tree["content_type"], "multipart/mixed", "{m:#}");
    let alternative = &tree["children"][0];
    assert_eq!(
        alternative["content_type"], "multipart/alternative",
        "{m:#}"
    );
    let kinds = child_types(alternative);
    assert_eq!(kinds, ["text/plain", "text/html", "text/calendar"], "{m:#}");
    assert_eq!(alternative["children"][2]["params"]["method"], "REQUEST");
    assert_eq!(
        alternative["children"][2]["params"]["charset"]
            .as_str()
            .map(str::to_lowercase)
            .as_deref(),
        Some("utf-8")
    );
    let attachment = &tree["children"][1];
    assert_eq!(attachment["content_type"], "text/calendar", "{m:#}");
    assert_eq!(attachment["disposition"], "attachment");
    assert_eq!(attachment["filename"], "invite.ics");
    assert_eq!(attachment["params"]["method"], "REQUEST");
}

/// The content types of a multipart node's children, in order.
pub fn child_types(node: &Value) -> Vec<&str> {
    node["children"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|c| c["content_type"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// The leaves of the MIME tree, in order.
pub fn leaves(node: &Value) -> Vec<&Value> {
    match node["children"].as_array() {
        Some(children) if !children.is_empty() => children.iter().flat_map(leaves).collect(),
        _ => vec![node],
    }
}

/// Every `https://` link in the text parts and every `href` of the HTML parts.
pub fn links_in(m: &Value) -> Vec<String> {
    links_starting(m, "https://")
}

/// Every word of the text parts that starts with `prefix`, then every `href` of
/// the HTML parts.
pub fn links_starting(m: &Value, prefix: &str) -> Vec<String> {
    let mut found: Vec<String> = leaves(&m["tree"])
        .into_iter()
        .filter(|leaf| leaf["content_type"] == "text/plain")
        .flat_map(|leaf| {
            leaf["text"]
                .as_str()
                .unwrap_or_default()
                .split_whitespace()
                .filter(|w| w.starts_with(prefix))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    found.extend(
        m["hrefs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h.as_str())
            .map(str::to_string),
    );
    found
}

#[tokio::test]
async fn without_a_relay_mail_is_written_as_eml_files_in_the_data_directory() {
    let app = TestApp::sqlite_with(|c| c.mail.poll_interval_ms = 50).await;
    let id = queue(&app, invitation("bo@example.org")).await;
    let delivery = app.start_mail();
    let (status, row) = settled(&app, id).await;
    delivery.stop().await;
    assert_eq!(status, OutboxStatus::Sent, "{:?}", row.message.last_error);

    let dir = app.state.config.data_dir.join("outbox");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].extension().unwrap(), "eml");
    let m = mime(&files[0]);
    assert_imip_tree(&m);
    assert_eq!(m["headers"]["To"], "bo@example.org");
    assert_eq!(m["headers"]["Reply-To"], "Ana <ana@example.org>");
    assert_eq!(
        m["headers"]["Subject"],
        "Ana invited you to a call: Weekly sync"
    );
    let message_id = m["headers"]["Message-ID"].as_str().unwrap();
    assert_eq!(
        Some(message_id.trim_matches(['<', '>'])),
        row.message.message_id.as_deref()
    );
    // The body is gone from the database once sent; the metadata stays.
    assert_eq!(row.message.body_text, "");
    assert_eq!(row.message.body_html, None);
    assert!(row.attachments.is_empty());
    assert_eq!(
        row.message.subject,
        "Ana invited you to a call: Weekly sync"
    );
    assert!(row.message.sent_at.is_some());

    // The files hold links with their secrets: private to the server's user, and
    // deleted with the rest of the metadata after privacy.retention_days.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "the outbox directory");
    assert_eq!(mode(&files[0]), 0o600, "a message");
    let now = chrono::Utc::now();
    let kept =
        confab_core::privacy::purge_outbox_files(dir.clone(), now + chrono::Duration::days(29), 30)
            .await
            .unwrap();
    assert_eq!(kept, 0);
    assert!(files[0].exists());
    let purged =
        confab_core::privacy::purge_outbox_files(dir.clone(), now + chrono::Duration::days(31), 30)
            .await
            .unwrap();
    assert_eq!(purged, 1);
    assert!(!files[0].exists());
}

#[tokio::test]
async fn starttls_with_authentication_delivers_the_invitation_as_sent() {
    let sink = SmtpSink::start(SinkOptions {
        starttls: true,
        auth: Some(("confab".into(), "s3cret pass".into())),
        ..SinkOptions::default()
    })
    .await;
    let app = TestApp::sqlite_with(|c| {
        use_sink(c, sink.port(), "starttls", sink.ca_pem_path());
        c.mail.smtp_username = "confab".into();
        c.mail.smtp_password = "s3cret pass".into();
        c.mail.from = "Meet Example <meet@example.org>".into();
    })
    .await;
    let delivery = app.start_mail();
    let mut ids = Vec::new();
    for to in ["bo@example.org", "Cy Example <cy@example.org>"] {
        ids.push(queue(&app, invitation(to)).await);
    }
    let received = sink.wait_for(2, WAIT).await;
    for id in &ids {
        assert_eq!(settled(&app, *id).await.0, OutboxStatus::Sent);
    }
    delivery.stop().await;

    let mut rcpts = Vec::new();
    for r in &received {
        assert_eq!(r.envelope["tls"], true, "{}", r.envelope);
        assert_eq!(r.envelope["auth_user"], "confab", "{}", r.envelope);
        assert_eq!(r.envelope["mail_from"], "meet@example.org");
        rcpts.extend(
            r.envelope["rcpt_tos"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_string()),
        );
        let m = r.mime();
        assert_imip_tree(&m);
        assert_eq!(m["headers"]["From"], "Meet Example <meet@example.org>");
        // The link arrives exactly as queued, in the text and in the HTML.
        assert_eq!(
            links_in(&m),
            ["https://call.example.org/j/AbCdEf123456#k=secretSECRET_-42"; 2],
            "{m:#}"
        );
        // The calendar twice (the alternative and the file), each as queued.
        assert_eq!(m["calendars"].as_array().unwrap().len(), 2, "{m:#}");
        for ics in m["calendars"].as_array().unwrap() {
            assert_eq!(ics["method"], "REQUEST", "{m:#}");
            assert_eq!(
                ics["events"][0]["url"],
                "https://call.example.org/j/AbCdEf123456#k=secretSECRET_-42"
            );
        }
        assert_eq!(m["defects"], serde_json::json!([]), "{m:#}");
    }
    rcpts.sort();
    assert_eq!(rcpts, ["bo@example.org", "cy@example.org"]);
    let metrics = app.get("/metrics").send().await.text();
    assert!(
        metrics.contains("confab_mail_delivery_attempts_total{outcome=\"sent\"} 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn implicit_tls_and_plain_relays_deliver_too() {
    for (options, tls) in [
        (
            SinkOptions {
                implicit_tls: true,
                ..SinkOptions::default()
            },
            "tls",
        ),
        (SinkOptions::default(), "none"),
    ] {
        let sink = SmtpSink::start(options).await;
        let app = TestApp::sqlite_with(|c| use_sink(c, sink.port(), tls, sink.ca_pem_path())).await;
        let delivery = app.start_mail();
        let id = queue(&app, plain("bo@example.org", "Hello")).await;
        let received = sink.wait_for(1, WAIT).await;
        assert_eq!(settled(&app, id).await.0, OutboxStatus::Sent);
        delivery.stop().await;
        assert_eq!(
            received[0].envelope["tls"],
            tls == "tls",
            "{tls}: {}",
            received[0].envelope
        );
        let m = received[0].mime();
        assert_eq!(m["tree"]["content_type"], "text/plain", "{m:#}");
        assert_eq!(m["headers"]["Subject"], "Hello");
    }
}

#[tokio::test]
async fn a_relay_without_starttls_is_not_used_in_clear_when_starttls_is_required() {
    let sink = SmtpSink::start(SinkOptions::default()).await;
    let app = TestApp::sqlite_with(|c| {
        use_sink(c, sink.port(), "starttls", None);
        c.mail.max_attempts = 2;
    })
    .await;
    let delivery = app.start_mail();
    let id = queue(&app, plain("bo@example.org", "Secret link")).await;
    let (status, row) = settled(&app, id).await;
    delivery.stop().await;
    assert_eq!(status, OutboxStatus::Failed);
    assert!(
        row.message
            .last_error
            .as_deref()
            .unwrap()
            .contains("gave up after 2 attempts"),
        "{:?}",
        row.message.last_error
    );
    assert!(
        sink.messages().is_empty(),
        "nothing may be sent without TLS"
    );
}

/// SMTP down: the message stays queued and is retried; when the relay is back it is
/// delivered, once.
async fn an_outage_queues_mail_and_delivers_it_once_the_relay_is_back(app: TestApp, port: u16) {
    let delivery = app.start_mail();
    let ids = [
        queue(&app, plain("bo@example.org", "First")).await,
        queue(&app, plain("cy@example.org", "Second")).await,
    ];
    // Attempted and refused (nothing listens), still queued with the reason.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let (status, row) = status_of(&app, ids[1]).await;
        assert_eq!(status, OutboxStatus::Queued);
        if row.message.attempts >= 1
            && row.message.last_error.is_some()
            && row.message.claim.is_none()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no attempt recorded: {:?}",
            row.message
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let admin = app.admin_token().await;
    let status = app
        .get("/api/v1/admin/mail")
        .bearer(&admin)
        .send()
        .await
        .json();
    assert_eq!(status["queued"], 2, "{status}");
    assert_eq!(status["sent"], 0);

    let sink = SmtpSink::start(SinkOptions {
        port: Some(port),
        ..SinkOptions::default()
    })
    .await;
    for id in ids {
        assert_eq!(settled(&app, id).await.0, OutboxStatus::Sent);
    }
    // More rounds and more time: nothing is sent again.
    for _ in 0..10 {
        app.clock.advance(Span::minutes(30));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    delivery.stop().await;
    let mut subjects: Vec<String> = sink
        .messages()
        .iter()
        .map(|r| r.mime()["headers"]["Subject"].as_str().unwrap().to_string())
        .collect();
    subjects.sort();
    assert_eq!(subjects, ["First", "Second"]);
    let status = app
        .get("/api/v1/admin/mail")
        .bearer(&admin)
        .send()
        .await
        .json();
    assert_eq!(
        (status["queued"].as_u64(), status["sent"].as_u64()),
        (Some(0), Some(2)),
        "{status}"
    );
}

mod outage {
    use super::*;

    #[tokio::test]
    async fn sqlite() {
        let port = free_port();
        let app = TestApp::sqlite_with(|c| use_sink(c, port, "none", None)).await;
        an_outage_queues_mail_and_delivers_it_once_the_relay_is_back(app, port).await;
    }

    #[tokio::test]
    async fn postgres() {
        let port = free_port();
        let app = TestApp::postgres_with(|c| use_sink(c, port, "none", None)).await;
        an_outage_queues_mail_and_delivers_it_once_the_relay_is_back(app, port).await;
    }
}

#[tokio::test]
async fn queued_mail_survives_a_restart_and_is_sent_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = || {
        let mut c = test_config(format!(
            "sqlite://{}/confab.db?mode=rwc",
            dir.path().display()
        ));
        c.data_dir = dir.path().to_path_buf();
        use_sink(&mut c, port, "none", None);
        c
    };
    let clock = FakeClock::new(START.parse().unwrap());
    // First life: the relay is down; the worker tries, then the server stops.
    let first = App::build_with_clock(config(), std::sync::Arc::new(clock.clone()))
        .await
        .unwrap();
    let delivery = first.start_mail().unwrap();
    let ids = [
        first
            .state()
            .mail
            .enqueue(invitation("bo@example.org"))
            .await
            .unwrap(),
        first
            .state()
            .mail
            .enqueue(plain("cy@example.org", "Second"))
            .await
            .unwrap(),
    ];
    tokio::time::sleep(Duration::from_millis(300)).await;
    delivery.stop().await;
    first.state().store.clone().close().await;
    drop(first);

    // Second life, with the relay up.
    let sink = SmtpSink::start(SinkOptions {
        port: Some(port),
        ..SinkOptions::default()
    })
    .await;
    let second = App::build_with_clock(config(), std::sync::Arc::new(clock.clone()))
        .await
        .unwrap();
    let delivery = second.start_mail().unwrap();
    for _ in 0..40 {
        clock.advance(Span::minutes(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
        if sink.messages().len() == 2 {
            break;
        }
    }
    for _ in 0..5 {
        clock.advance(Span::minutes(30));
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    delivery.stop().await;
    let received = sink.messages();
    assert_eq!(received.len(), 2, "each queued message exactly once");
    assert_imip_tree(
        &received
            .iter()
            .find(|r| r.envelope["rcpt_tos"][0] == "bo@example.org")
            .unwrap()
            .mime(),
    );
    for id in ids {
        let row = second
            .state()
            .store
            .outbox_message(id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.message.status, "sent");
    }
}

#[tokio::test]
async fn a_permanent_refusal_marks_the_message_failed_with_the_relays_reply() {
    let sink = SmtpSink::start(SinkOptions {
        reject_prefix: Some("gone".into()),
        ..SinkOptions::default()
    })
    .await;
    let app = TestApp::sqlite_with(|c| use_sink(c, sink.port(), "none", None)).await;
    let delivery = app.start_mail();
    let bounced = queue(&app, invitation("gone@example.org")).await;
    let fine = queue(&app, plain("bo@example.org", "Fine")).await;
    let (status, row) = settled(&app, bounced).await;
    assert_eq!(settled(&app, fine).await.0, OutboxStatus::Sent);
    delivery.stop().await;
    assert_eq!(status, OutboxStatus::Failed);
    assert_eq!(row.message.attempts, 1, "a 5xx is not retried");
    let error = row.message.last_error.clone().unwrap();
    assert!(
        error.contains("550") && error.contains("mailbox unavailable"),
        "{error}"
    );
    // Nothing of the body is kept.
    assert_eq!(row.message.body_text, "");
    assert!(row.attachments.is_empty());

    let admin = app.admin_token().await;
    let res = app.get("/api/v1/admin/mail").bearer(&admin).send().await;
    assert_eq!(res.status, 200);
    let status = res.json();
    assert_eq!(
        (status["sent"].as_u64(), status["failed"].as_u64()),
        (Some(1), Some(1)),
        "{status}"
    );
    assert_eq!(status["recent_failures"][0]["id"], bounced);
    assert!(
        status["recent_failures"][0]["error"]
            .as_str()
            .unwrap()
            .contains("550")
    );
    assert!(
        !status.to_string().contains("gone@example.org"),
        "no addresses in the status: {status}"
    );
    assert!(
        status["transport"]
            .as_str()
            .unwrap()
            .starts_with("smtp://localhost:"),
        "{status}"
    );
    // Only administrators see it.
    let member = app
        .user_with_token("member@example.org", Role::Member)
        .await;
    let res = app.get("/api/v1/admin/mail").bearer(&member).send().await;
    assert_eq!(res.status, 403);
    assert_eq!(res.error_code(), "forbidden");
}

#[tokio::test]
async fn a_temporary_refusal_is_retried_with_backoff_until_the_last_attempt() {
    let sink = SmtpSink::start(SinkOptions {
        tempfail_prefix: Some("busy".into()),
        ..SinkOptions::default()
    })
    .await;
    let app = TestApp::sqlite_with(|c| {
        use_sink(c, sink.port(), "none", None);
        c.mail.max_attempts = 3;
        c.mail.retry_initial_ms = 60_000;
    })
    .await;
    let delivery = app.start_mail();
    let id = queue(&app, plain("busy@example.org", "Later")).await;
    // After the first attempt the next one is about a minute away (±10 %).
    let deadline = std::time::Instant::now() + WAIT;
    let first = loop {
        let (_, row) = status_of(&app, id).await;
        if row.message.attempts == 1 && row.message.claim.is_none() {
            break row;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wait = first.message.next_attempt_at - app.clock_now();
    assert!(
        wait >= Span::seconds(54) && wait <= Span::seconds(66),
        "{wait}"
    );
    assert!(first.message.last_error.as_deref().unwrap().contains("451"));

    let (status, row) = settled(&app, id).await;
    delivery.stop().await;
    assert_eq!(status, OutboxStatus::Failed);
    assert_eq!(row.message.attempts, 3);
    let error = row.message.last_error.unwrap();
    assert!(
        error.contains("gave up after 3 attempts") && error.contains("451"),
        "{error}"
    );
}

#[tokio::test]
async fn delivery_records_go_with_the_privacy_purge() {
    let app = TestApp::sqlite_with(|c| c.mail.poll_interval_ms = 50).await;
    let delivery = app.start_mail();
    let id = queue(&app, plain("bo@example.org", "Old")).await;
    assert_eq!(settled(&app, id).await.0, OutboxStatus::Sent);
    delivery.stop().await;
    let report = confab_core::privacy::purge(&app.store, app.clock_now() + Span::days(29), 30)
        .await
        .unwrap();
    assert_eq!(report.mail, 0);
    assert!(app.store.outbox_message(id).await.unwrap().is_some());
    let report = confab_core::privacy::purge(&app.store, app.clock_now() + Span::days(31), 30)
        .await
        .unwrap();
    assert_eq!(report.mail, 1);
    assert!(app.store.outbox_message(id).await.unwrap().is_none());
}
