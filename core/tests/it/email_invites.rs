//! The bundled email-invites plugin through the real server and a real SMTP server:
//! an invitation for a scheduled link is an iMIP REQUEST (checked by Python's
//! `email` and `icalendar`), moving the call sends an update, revoking the link a
//! cancellation; a link without a date gets a plain invitation; bad input queues
//! nothing; RFC 8058 one-click unsubscribe keeps later invitations away.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use confab_core::accounts::Role;
use fantoccini::Locator;
use serde_json::{Value, json};

use crate::mail::{child_types, leaves, links_in};
use crate::smtp::{Received, SinkOptions, SmtpSink};
use crate::support::TestApp;
use crate::support::browser::{Browser, Driver, SECRET, admits, guest_asks};

const WAIT: Duration = Duration::from_secs(30);

async fn app_with_relay(sink: &SmtpSink) -> TestApp {
    TestApp::sqlite_with(|c| {
        c.plugins.bundled = true;
        c.plugins.cache_dir = crate::plugins::shared_plugin_cache();
        c.server.public_url = "https://meet.example.org".into();
        c.mail.smtp_host = "localhost".into();
        c.mail.smtp_port = sink.port();
        c.mail.smtp_tls = confab_core::config::SmtpTls::Starttls;
        c.mail.smtp_ca_file = sink.ca_pem_path().unwrap().display().to_string();
        c.mail.poll_interval_ms = 50;
    })
    .await
}

/// A user named Ana and a link of hers, as she shares it (with its secret).
async fn ana_and_link(app: &TestApp, schedule: Option<Value>) -> (String, String, String) {
    let token = app.user_with_token("ana@example.org", Role::Member).await;
    let mut body = json!({ "title": "Weekly sync" });
    if let Some(schedule) = schedule {
        body["schedule"] = schedule;
    }
    let made = app
        .post("/api/v1/links")
        .bearer(&token)
        .json(&body)
        .send()
        .await;
    assert_eq!(made.status, StatusCode::CREATED, "{}", made.text());
    let link = made.json();
    // The full link, secret included, as the API gave it once.
    let shared = link["url"].as_str().unwrap().to_string();
    (token, link["id"].as_str().unwrap().to_string(), shared)
}

async fn invite(app: &TestApp, token: &str, body: Value) -> crate::support::Res {
    app.post("/p/email-invites/invites")
        .bearer(token)
        .json(&body)
        .send()
        .await
}

fn calendar(m: &Value) -> &Value {
    &m["calendars"][0]
}

/// The links of a mail's text and HTML, but for the unsubscribe link at its foot.
fn call_links(m: &Value) -> Vec<String> {
    links_in(m)
        .into_iter()
        .filter(|l| !l.contains(UNSUBSCRIBE))
        .collect()
}

/// Where every invitation's unsubscribe link points.
const UNSUBSCRIBE: &str = "/p/email-invites/unsubscribe?t=";

fn by_recipient<'a>(messages: &'a [Received], address: &str) -> &'a Received {
    messages
        .iter()
        .find(|r| r.envelope["rcpt_tos"][0] == address)
        .unwrap_or_else(|| panic!("nothing for {address}"))
}

#[tokio::test]
async fn an_invitation_for_a_scheduled_call_is_an_imip_request_that_follows_the_link() {
    let sink = SmtpSink::start(SinkOptions {
        starttls: true,
        ..SinkOptions::default()
    })
    .await;
    let app = app_with_relay(&sink).await;
    let delivery = app.start_mail();
    let (token, id, shared) = ana_and_link(
        &app,
        Some(json!({ "start": "2026-12-14T08:30:00Z", "end": "2026-12-14T09:00:00Z", "time_zone": "Europe/Paris", "rrule": "FREQ=WEEKLY;BYDAY=MO" })),
    )
    .await;
    let res = invite(
        &app,
        &token,
        json!({ "url": shared, "recipients": ["bo@example.org", "Cy Example <cy@example.org>"], "note": "Bring the numbers <please>" }),
    )
    .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    assert_eq!(res.json()["queued"], 2);

    let messages = sink.wait_for(2, WAIT).await;
    let mut uid = String::new();
    for address in ["bo@example.org", "cy@example.org"] {
        let m = by_recipient(&messages, address).mime();
        // One message per guest: nobody sees the other's address.
        assert_eq!(m["addresses"]["to"].as_array().unwrap().len(), 1, "{m:#}");
        assert_eq!(
            m["addresses"]["reply_to"][0]["addr"], "ana@example.org",
            "{m:#}"
        );
        let tree = &m["tree"];
        assert_eq!(tree["content_type"], "multipart/mixed", "{m:#}");
        let alternative = &tree["children"][0];
        assert_eq!(alternative["content_type"], "multipart/alternative");
        let kinds = child_types(alternative);
        assert_eq!(kinds, ["text/plain", "text/html", "text/calendar"], "{m:#}");
        assert_eq!(alternative["children"][2]["params"]["method"], "REQUEST");
        let file = &tree["children"][1];
        assert_eq!(
            (file["content_type"].as_str(), file["disposition"].as_str()),
            (Some("text/calendar"), Some("attachment")),
            "{m:#}"
        );
        assert!(file["filename"].as_str().unwrap().ends_with(".ics"));

        // The link exactly as shared: in the text, in the HTML, in the calendar.
        let links = call_links(&m);
        assert!(links.len() >= 2, "{m:#}");
        assert!(links.iter().all(|l| *l == shared), "{links:?} ≠ {shared}");
        let html = leaves(tree)
            .into_iter()
            .find(|l| l["content_type"] == "text/html")
            .unwrap();
        assert!(
            html["text"]
                .as_str()
                .unwrap()
                .contains("Bring the numbers &lt;please&gt;"),
            "the note is escaped"
        );
        for ics in m["calendars"].as_array().unwrap() {
            assert_eq!(ics["method"], "REQUEST", "METHOD equals the MIME method");
            let event = &ics["events"][0];
            assert_eq!(event["url"], shared.as_str(), "{event:#}");
            assert_eq!(event["location"], shared.as_str(), "{event:#}");
            assert!(event["description"].as_str().unwrap().contains(&shared));
            assert_eq!(
                event["organizer"]["value"]
                    .as_str()
                    .map(str::to_lowercase)
                    .as_deref(),
                Some("mailto:ana@example.org")
            );
            let attendees: Vec<(String, String)> = event["attendees"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| {
                    (
                        a["value"].as_str().unwrap().to_lowercase(),
                        a["rsvp"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            // Each guest's invitation names that guest (with RSVP), and nobody else:
            // one message per guest keeps the others' addresses private.
            assert_eq!(
                attendees,
                [(format!("mailto:{address}"), "TRUE".to_string())],
                "{event:#}"
            );
            assert_eq!(event["dtstart"], "2026-12-14T09:30:00+01:00", "{event:#}");
            assert_eq!(event["dtstart_tzid"], "Europe/Paris");
            assert!(event["rrule"].as_str().unwrap().contains("FREQ=WEEKLY"));
            uid = event["uid"].as_str().unwrap().to_string();
        }
        assert_eq!(m["defects"], json!([]), "{m:#}");
    }
    let first_sequence =
        calendar(&by_recipient(&messages, "bo@example.org").mime())["events"][0]["sequence"]
            .as_i64()
            .unwrap_or(0);

    // Moving the call sends both guests an update: same UID, higher SEQUENCE.
    let moved = app
        .req(Method::PATCH, &format!("/api/v1/links/{id}"))
        .bearer(&token)
        .json(&json!({ "schedule": { "start": "2026-12-14T10:00:00Z", "end": "2026-12-14T10:30:00Z", "time_zone": "Europe/Paris" } }))
        .send()
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.text());
    let messages = sink.wait_for(4, WAIT).await;
    let mut sequences = Vec::new();
    for r in &messages[2..4] {
        let m = r.mime();
        let ics = calendar(&m);
        assert_eq!(ics["method"], "REQUEST", "{m:#}");
        let event = &ics["events"][0];
        assert_eq!(event["uid"], uid.as_str());
        assert_eq!(event["dtstart"], "2026-12-14T11:00:00+01:00");
        assert_eq!(event["url"], shared.as_str());
        sequences.push(event["sequence"].as_i64().unwrap());
    }
    assert!(
        sequences.iter().all(|s| *s > first_sequence),
        "{sequences:?}"
    );

    // Revoking the link cancels the call for both.
    let revoked = app
        .post(&format!("/api/v1/links/{id}/revoke"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    let messages = sink.wait_for(6, WAIT).await;
    for r in &messages[4..6] {
        let m = r.mime();
        let alternative = &m["tree"]["children"][0];
        assert_eq!(
            alternative["children"][2]["params"]["method"], "CANCEL",
            "{m:#}"
        );
        let ics = calendar(&m);
        assert_eq!(ics["method"], "CANCEL");
        let event = &ics["events"][0];
        assert_eq!(event["uid"], uid.as_str());
        assert_eq!(event["status"], "CANCELLED");
        assert!(event["sequence"].as_i64().unwrap() > sequences[0]);
    }
    // Nothing more: each change was sent once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.messages().len(), 6);
    delivery.stop().await;
}

#[tokio::test]
async fn a_link_without_a_date_gets_a_plain_invitation_in_the_file_outbox() {
    let app = TestApp::sqlite_with(|c| {
        c.plugins.bundled = true;
        c.plugins.cache_dir = crate::plugins::shared_plugin_cache();
        c.server.public_url = "https://meet.example.org".into();
        c.mail.poll_interval_ms = 50;
    })
    .await;
    let delivery = app.start_mail();
    let (token, _, shared) = ana_and_link(&app, None).await;
    let res = invite(
        &app,
        &token,
        json!({ "url": shared, "recipients": ["bo@example.org"] }),
    )
    .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    let outbox = app.state.config.data_dir.join("outbox");
    let deadline = std::time::Instant::now() + WAIT;
    let file = loop {
        let found: Vec<_> = std::fs::read_dir(&outbox)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .collect()
            })
            .unwrap_or_default();
        if let Some(file) = found.into_iter().next() {
            break file;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no .eml in {}",
            outbox.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    delivery.stop().await;
    let m = crate::smtp::mime(&file);
    assert_eq!(m["tree"]["content_type"], "multipart/alternative", "{m:#}");
    assert_eq!(m["calendars"], json!([]), "no calendar without a date");
    let links = call_links(&m);
    assert!(
        links.len() >= 2 && links.iter().all(|l| *l == shared),
        "{links:?}"
    );
}

/// The value of top-level header `name` of a described message.
fn header_of(m: &Value, name: &str) -> Option<String> {
    m["all_headers"]
        .as_array()?
        .iter()
        .find(|h| h[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .and_then(|h| h[1].as_str().map(str::to_string))
}

/// RFC 8058 over real SMTP: each delivered invitation carries `List-Unsubscribe`
/// with an https URL and `List-Unsubscribe-Post`; the mail provider's one-click
/// POST (no cookies) keeps every later invitation from that address, and the sender
/// is told; a recipient's report counts against the sender, which administrators
/// see.
#[tokio::test]
async fn one_click_unsubscribe_from_a_delivered_invitation_suppresses_the_next() {
    let sink = SmtpSink::start(SinkOptions {
        starttls: true,
        ..SinkOptions::default()
    })
    .await;
    let app = app_with_relay(&sink).await;
    let delivery = app.start_mail();
    let (token, _id, shared) = ana_and_link(&app, None).await;
    let res = invite(
        &app,
        &token,
        json!({ "url": shared, "recipients": ["bo@example.org", "cy@example.org"] }),
    )
    .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    let messages = sink.wait_for(2, WAIT).await;

    let mut urls = Vec::new();
    for address in ["bo@example.org", "cy@example.org"] {
        let m = by_recipient(&messages, address).mime();
        let header = header_of(&m, "List-Unsubscribe").unwrap_or_else(|| panic!("{m:#}"));
        let url = header
            .strip_prefix('<')
            .and_then(|h| h.strip_suffix('>'))
            .unwrap_or_else(|| panic!("not <url>: {header}"))
            .to_string();
        assert!(
            url.starts_with(&format!("https://meet.example.org{UNSUBSCRIBE}")),
            "{url}"
        );
        assert_eq!(
            header_of(&m, "List-Unsubscribe-Post").as_deref(),
            Some("List-Unsubscribe=One-Click")
        );
        // And visibly, in both bodies.
        assert!(
            links_in(&m).iter().filter(|l| **l == url).count() >= 2,
            "{m:#}"
        );
        assert_eq!(m["defects"], json!([]), "{m:#}");
        urls.push(url);
    }
    let path = |url: &str| {
        url.strip_prefix("https://meet.example.org")
            .unwrap()
            .to_string()
    };

    // Bo's mail provider unsubscribes with one POST, without cookies.
    let one_click = app
        .post(&path(&urls[0]))
        .form("List-Unsubscribe=One-Click")
        .send()
        .await;
    assert_eq!(one_click.status, StatusCode::OK, "{}", one_click.text());

    // Ana invites Bo again, and Dee: only Dee gets a mail, and Ana is told why.
    let res = invite(
        &app,
        &token,
        json!({ "url": shared, "recipients": ["bo@example.org", "dee@example.org"] }),
    )
    .await;
    assert_eq!(res.status, StatusCode::ACCEPTED, "{}", res.text());
    let answer = res.json();
    assert_eq!(answer["queued"], 1, "{answer}");
    assert_eq!(answer["not_sent"][0]["email"], "bo@example.org", "{answer}");
    assert_eq!(
        answer["not_sent"][0]["reason"],
        "This person asked not to get invitations from this server."
    );
    let messages = sink.wait_for(3, WAIT).await;
    assert_eq!(messages[2].envelope["rcpt_tos"], json!(["dee@example.org"]));

    // Cy opens the page (nothing changes), then reports the invitation.
    let page = app.get(&path(&urls[1])).send().await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("Report this invitation as unwanted"));
    let reported = app
        .post(&path(&urls[1]))
        .header("origin", "https://meet.example.org")
        .form("action=report")
        .send()
        .await;
    assert_eq!(reported.status, StatusCode::OK, "{}", reported.text());
    assert!(reported.text().contains("Your report was passed on"));
    let admin = app.admin_token().await;
    let list = app
        .get("/p/email-invites/reported")
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.text());
    let list = list.json();
    assert_eq!(list["senders"][0]["email"], "ana@example.org", "{list}");
    assert_eq!(list["senders"][0]["reported"], 1, "{list}");
    let not_admin = app
        .get("/p/email-invites/reported")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(not_admin.status, StatusCode::FORBIDDEN);

    // Nothing more went out.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.messages().len(), 3);
    delivery.stop().await;
}

#[tokio::test]
async fn bad_invitations_are_refused_and_queue_nothing() {
    let app = TestApp::sqlite_with(|c| {
        c.plugins.bundled = true;
        c.plugins.cache_dir = crate::plugins::shared_plugin_cache();
        c.server.public_url = "https://meet.example.org".into();
    })
    .await;
    let (token, id, shared) = ana_and_link(&app, None).await;
    let many: Vec<String> = (0..101).map(|i| format!("g{i}@example.org")).collect();
    let cases = [
        json!({ "url": shared, "recipients": many }),
        json!({ "url": shared, "recipients": ["bo@example.org", "not an address"] }),
        json!({ "url": shared, "recipients": ["bo@example.org\r\nBcc: victim@example.org"] }),
        json!({ "url": shared, "recipients": ["Bo\n <bo@example.org>"] }),
        json!({ "url": shared, "recipients": [] }),
        json!({ "url": "https://elsewhere.example/j/abc", "recipients": ["bo@example.org"] }),
        json!({ "url": format!("https://meet.example.org/j/{id}\"><script>"), "recipients": ["bo@example.org"] }),
        json!({ "recipients": ["bo@example.org"] }),
    ];
    for case in cases {
        let res = invite(&app, &token, case.clone()).await;
        assert!(
            res.status.is_client_error(),
            "{case}: {} {}",
            res.status,
            res.text()
        );
        assert!(
            !res.error_code().is_empty(),
            "a JSON error for {case}: {}",
            res.text()
        );
    }
    // Someone else's link.
    let other = app.user_with_token("eve@example.org", Role::Member).await;
    let res = invite(
        &app,
        &other,
        json!({ "url": shared, "recipients": ["bo@example.org"] }),
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND, "{}", res.text());
    // Signed out.
    let res = app
        .post("/p/email-invites/invites")
        .json(&json!({ "url": shared, "recipients": ["bo@example.org"] }))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{}", res.text());
    let counts = app.store.outbox_counts().await.unwrap();
    assert_eq!(
        counts.queued + counts.sent + counts.failed,
        0,
        "nothing was queued"
    );
}

/// A served app with the bundled plugins, the outbox delivering to `.eml` files
/// (the default) under its data directory, and a link called `title` of
/// host@example.org's. Returns the app, its base URL, the delivery and the link id.
async fn app_with_email_invites(
    title: &str,
) -> (TestApp, String, confab_core::mail::Delivery, String) {
    let (app, base) = TestApp::served_with(|c| {
        c.plugins.bundled = true;
        c.plugins.cache_dir = crate::plugins::shared_plugin_cache();
        c.mail.poll_interval_ms = 50;
    })
    .await;
    let delivery = app.start_mail();
    let token = app.user_with_token("host@example.org", Role::Member).await;
    let link = app.create_link(&token, title).await;
    let id = link["id"].as_str().unwrap().to_string();
    (app, base, delivery, id)
}

/// Fills in the invitation form `form` (addresses and maybe a note) and sends it.
/// Presses "Invite by email" on the dashboard's row `row` once the plugin put it there.
async fn invite_button(page: &Browser, row: &str) {
    let button = format!("{row} button[data-plugin='email-invites']");
    page.wait_text(&button, "Invite by email").await;
    page.click(&button).await;
}

async fn invite_through(page: &Browser, form: &str, recipients: &str, note: Option<&str>) {
    page.fill(&format!("{form} textarea[name=recipients]"), recipients)
        .await;
    if let Some(note) = note {
        page.fill(&format!("{form} textarea[name=note]"), note)
            .await;
    }
    page.click(&format!("{form} button[type=submit]")).await;
}

/// The mails the outbox has written as `.eml` files, once there are `n` of them,
/// each as `mime.py` reads it.
async fn delivered_mails(app: &TestApp, n: usize) -> Vec<Value> {
    let dir = app.state.config.data_dir.join("outbox");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let files: Vec<_> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        if files.len() >= n {
            assert_eq!(files.len(), n, "{files:?}");
            return files.iter().map(crate::smtp::mime).collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} mails in {}",
            files.len(),
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every link to `base` in a mail's text and HTML (but the unsubscribe link), each
/// of which must be `url`.
fn assert_links_are(m: &Value, base: &str, url: &str) {
    let mut links = crate::mail::links_starting(m, base);
    links.retain(|l| !l.contains(UNSUBSCRIBE));
    assert!(links.len() >= 2, "{m:#}");
    assert!(links.iter().all(|l| l == url), "{links:?} ≠ {url}");
}

/// The mails' recipients, as (name, address), sorted by address.
fn recipients_of(mails: &[Value]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = mails
        .iter()
        .map(|m| {
            let to = &m["addresses"]["to"][0];
            (
                to["name"].as_str().unwrap_or_default().to_string(),
                to["addr"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort_by(|a, b| a.1.cmp(&b.1));
    out
}

#[tokio::test]
async fn email_invitations_from_the_dashboard_carry_the_link_as_shown() {
    let (app, base, delivery, id) = app_with_email_invites("Planning").await;
    let driver = Driver::start();
    let page = driver.browser().await;
    page.sign_in(&base, "host@example.org").await;
    let row = format!("li[data-link-id='{id}']");
    // The link was made through the API: this browser lacks its secret, and an
    // invitation without it would be of no use, so the card says so.
    invite_button(&page, &row).await;
    page.frame("email-invites").await;
    page.wait_text("main#plugin", "does not have the secret")
        .await;
    page.top().await;
    page.remember_secret(&id).await;
    page.goto(&format!("{base}/dashboard")).await;
    let shown = page
        .wait_js(&format!("document.querySelector({row:?})?.dataset.linkUrl"))
        .await;
    let shown = shown.as_str().unwrap().to_string();
    assert_eq!(shown, format!("{base}/j/{id}#k={SECRET}"));

    invite_button(&page, &row).await;
    // The button is the page's; the form opens in the plugin's sandboxed frame,
    // which never sees the secret: the page puts the link into the request.
    page.frame("email-invites").await;
    let form = format!("[data-email-invites='{id}']");
    invite_through(
        &page,
        &form,
        "\"Lima, Ana\" <ana@example.org>, bo@example.org",
        Some("Bring the numbers."),
    )
    .await;
    page.wait_text(&format!("{form} .status"), "Invitation sent to 2 people")
        .await;

    let mails = delivered_mails(&app, 2).await;
    assert_eq!(
        recipients_of(&mails),
        [
            ("Lima, Ana".to_string(), "ana@example.org".to_string()),
            (String::new(), "bo@example.org".to_string())
        ]
    );
    for m in &mails {
        assert_links_are(m, &base, &shown);
        let text = crate::mail::leaves(&m["tree"])
            .into_iter()
            .find(|l| l["content_type"] == "text/plain")
            .and_then(|l| l["text"].as_str())
            .unwrap_or_default()
            .to_string();
        assert!(text.contains("Bring the numbers."), "{text}");
    }

    // Something that is not an address: the server's reason, next to the form.
    invite_through(&page, &form, "not-an-address", None).await;
    page.wait_text(
        &format!("{form} .status.error"),
        "“not-an-address” is not an email address",
    )
    .await;
    let counts = app.store.outbox_counts().await.unwrap();
    assert_eq!(counts.queued + counts.sent + counts.failed, 2, "{counts:?}");
    delivery.stop().await;
    page.close().await;
}

#[tokio::test]
async fn email_invitations_from_the_call_page_carry_the_links_fragment() {
    const KEY: &str = "#k=AbC-_9xYz0123456789-_Q";
    let (app, base, delivery, id) = app_with_email_invites("Family call").await;
    let driver = Driver::start();
    let host = driver.browser().await;
    host.sign_in(&base, "host@example.org").await;
    host.goto(&format!("{base}/j/{id}{KEY}")).await;
    host.submit_join().await;
    host.wait_text("#roster", "User host@example.org (you)")
        .await;

    // The page gives the plugins the session's CSRF token (a guest's has none).
    host.wait_js("document.getElementById('call').dataset.csrf?.length > 20")
        .await;
    // The plugin's panel is a sandboxed frame; the page adds the link with its
    // secret to the request.
    host.frame("email-invites").await;
    let panel = "main#plugin";
    host.wait_text(&format!("{panel} summary"), "Invite by email")
        .await;
    host.click(&format!("{panel} summary")).await;
    invite_through(&host, panel, "zoe@example.net", None).await;
    host.wait_text(&format!("{panel} .status"), "Invitation sent to 1 person")
        .await;
    let mails = delivered_mails(&app, 1).await;
    assert_eq!(recipients_of(&mails)[0].1, "zoe@example.net");
    assert_links_are(&mails[0], &base, &format!("{base}/j/{id}{KEY}"));
    host.top().await;

    // A guest on the same call has no panel.
    let guest = guest_asks(&driver, &base, &id, "Zoë").await;
    admits(&host, &guest, "Zoë").await;
    let seen = guest
        .client
        .execute_async(
            "const [done] = arguments;\
             window.confab.plugins.load().then(() => {\
               const section = document.querySelector(\"[data-plugin='email-invites']\");\
               done({ loaded: !!section, visible: !!section?.offsetParent, hidden: section?.hidden,\
                      csrf: 'csrf' in document.getElementById('call').dataset });\
             }, (e) => done({ error: String(e) }));",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        seen,
        json!({ "loaded": true, "visible": false, "hidden": true, "csrf": false }),
        "the guest's page"
    );
    let call = guest
        .client
        .find(Locator::Css("#call"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!call.contains("Invite by email"), "{call}");
    delivery.stop().await;
    host.close().await;
    guest.close().await;
}
