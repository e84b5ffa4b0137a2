//! `/unsubscribe`: what the link at the foot of every invitation and its
//! `List-Unsubscribe` header lead to; `/reported`: the count administrators see.
//!
//! - `GET /unsubscribe?t=TOKEN` shows a page with two buttons, "Don't send me
//!   invitations from this server" and "Report this invitation as unwanted". A
//!   GET never changes anything: mail scanners open links.
//! - `POST /unsubscribe?t=TOKEN` with `List-Unsubscribe=One-Click` (RFC 8058, sent
//!   by the mail provider without cookies) or with the page's `action=unsubscribe`
//!   or `action=report`: the address goes on the suppression list; a report also
//!   counts against the sender, once per recipient and sender.
//! - `GET /reported` (administrators): senders whose invitations were reported in
//!   the last `retention_days`, most reported first.

use confab_plugin_sdk::{HttpRequest, HttpResponse, kv, log, templates, users};
use serde_json::{Value, json};

use super::{sign_in, time, unavailable};
use crate::input::query_param;
use crate::optout::{self, Token};
use crate::{deliver, store};

/// The most senders `/reported` lists.
const MAX_LISTED: usize = 200;

/// The sender's name and address, as their invitation to `token.link` showed it.
fn sender_of(token: &Token) -> (Option<String>, Option<String>, Option<String>) {
    match store::record(&token.link) {
        Ok(Some(record)) if record.owner == token.sender => {
            let organizer = record.organizer.as_ref();
            (
                organizer.and_then(|o| o.display_name()),
                organizer.map(|o| o.email.clone()),
                Some(record.title.clone()).filter(|t| !t.trim().is_empty()),
            )
        }
        _ => (None, None, None),
    }
}

/// The page, rendered from the plugin's `unsubscribe.html` (a line of text when the
/// template cannot be rendered, so the answer never depends on it).
fn page_of(status: u16, context: Value, fallback: &str) -> HttpResponse {
    match templates::render("unsubscribe.html", &context.to_string()) {
        Ok(html) => HttpResponse::html(status, html),
        Err(e) => {
            log::error(&format!("the unsubscribe page cannot be rendered: {e:?}"));
            HttpResponse::text(status, fallback)
        }
    }
    .with_header("cache-control", "no-store")
}

const INVALID: &str = "This link is not valid: it may have been cut off in your email program. Open it again from the invitation, whole.";

fn invalid() -> HttpResponse {
    page_of(
        404,
        json!({"state": "invalid", "message": INVALID}),
        INVALID,
    )
}

/// The token of the request, if it is genuine.
fn token(request: &HttpRequest) -> Result<Option<Token>, HttpResponse> {
    let Some(text) = query_param(&request.query, "t") else {
        return Ok(None);
    };
    let keys = optout::keys().map_err(unavailable)?;
    Ok(Token::verify(text, &keys))
}

/// `GET /unsubscribe?t=…`: the page with its two buttons (or what was done).
pub fn page(request: &HttpRequest) -> HttpResponse {
    let token = match token(request) {
        Ok(Some(token)) => token,
        Ok(None) => return invalid(),
        Err(response) => return response,
    };
    let already = match optout::suppression(&token.address) {
        Ok(entry) => entry,
        Err(e) => return unavailable(e),
    };
    let (inviter, _, title) = sender_of(&token);
    let context = json!({
        "state": if already.is_some() { "done" } else { "ask" },
        "inviter": inviter,
        "title": title,
        "token": query_param(&request.query, "t"),
        "reported": already.is_some_and(|e| e.reported.contains(&token.sender)),
    });
    page_of(
        200,
        context,
        "Use the buttons of this page in a browser to stop invitations from this server.",
    )
}

/// `POST /unsubscribe?t=…`: one click from the mail provider, or a button of the page.
pub fn post(request: &HttpRequest) -> HttpResponse {
    let body = String::from_utf8_lossy(&request.body);
    let one_click = body
        .split('&')
        .any(|pair| pair == "List-Unsubscribe=One-Click");
    let action = query_param(&body, "action");
    let report = action == Some("report");
    if !one_click && !matches!(action, Some("report" | "unsubscribe")) {
        return HttpResponse::error_with_code(
            422,
            "invalid",
            "Send List-Unsubscribe=One-Click (RFC 8058), or action=unsubscribe or action=report.",
        );
    }
    let token = match token(request) {
        Ok(Some(token)) => token,
        Ok(None) if one_click => {
            return HttpResponse::error_with_code(404, "not_found", INVALID);
        }
        Ok(None) => return invalid(),
        Err(response) => return response,
    };
    let (name, email, title) = sender_of(&token);
    let outcome = match optout::unsubscribe(
        &token,
        report,
        (name.clone(), email),
        deliver::now().timestamp(),
    ) {
        Ok(outcome) => outcome,
        Err(e) => return unavailable(e),
    };
    if one_click {
        return HttpResponse::json(200, json!({"unsubscribed": true}).to_string());
    }
    let context = json!({
        "state": "done",
        "inviter": name,
        "title": title,
        "token": query_param(&request.query, "t"),
        "reported": report,
        "just": true,
        "already": outcome.already && !report,
    });
    page_of(
        200,
        context,
        "Done: you will not get invitations from this server any more.",
    )
}

/// `GET /reported`: how often each sender's invitations were reported as
/// unwanted, for administrators.
pub fn reported(request: &HttpRequest) -> HttpResponse {
    let Some(user) = request.user else {
        return sign_in();
    };
    match users::is_admin(user) {
        Ok(true) => {}
        Ok(false) => {
            return HttpResponse::error_with_code(403, "forbidden", "Administrators only.");
        }
        Err(e) => return unavailable(e),
    }
    let keys = match kv::keys("reported/", None, 1000) {
        Ok(keys) => keys,
        Err(e) => return unavailable(e),
    };
    let values = match kv::get_many(&keys) {
        Ok(values) => values,
        Err(e) => return unavailable(e),
    };
    let now = deliver::now().timestamp();
    let days = optout::retention_days();
    let mut senders: Vec<(i64, optout::Reported, Vec<i64>)> = keys
        .iter()
        .zip(values)
        .filter_map(|(key, value)| {
            let user = key.strip_prefix("reported/")?.parse().ok()?;
            let reported: optout::Reported = serde_json::from_slice(&value?).ok()?;
            let recent = reported.recent(now, days);
            (!recent.is_empty()).then_some((user, reported, recent))
        })
        .collect();
    senders.sort_by(|a, b| (b.2.len(), b.2.last()).cmp(&(a.2.len(), a.2.last())));
    let senders: Vec<Value> = senders
        .into_iter()
        .take(MAX_LISTED)
        .map(|(user, reported, recent)| {
            json!({
                "user": user,
                "name": reported.name,
                "email": reported.email,
                "reported": recent.len(),
                "last_reported_at": time(recent.last().copied()),
            })
        })
        .collect();
    HttpResponse::json(
        200,
        json!({"senders": senders, "window_days": days}).to_string(),
    )
}
