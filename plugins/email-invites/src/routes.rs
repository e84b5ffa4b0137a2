//! The HTTP routes under `/p/email-invites/` (listed in the crate's overview).

use confab_calendar::ics;
use confab_plugin_sdk::{Error, HttpRequest, HttpResponse, Link, config, links, log, mail};
use serde_json::{Value, json};

use crate::deliver;
use crate::input::{self, InviteRequest, Person, Refusal};
use crate::mails::{self, ComposeError};
use crate::optout::{self, Signer};
use crate::record::{InviteRecord, Notice, Observed, Status};
use crate::store;

/// The per-user limit when the operator sets none.
pub const DEFAULT_RECIPIENTS_PER_HOUR: u32 = 300;

pub fn route(request: &HttpRequest) -> HttpResponse {
    let path = request.path.trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (request.method.as_str(), segments.as_slice()) {
        ("POST", ["invites"]) => invite(request),
        ("GET", ["invites"]) => invitations(request),
        ("GET", ["unsubscribe"]) => unsubscribe::page(request),
        ("POST", ["unsubscribe"]) => unsubscribe::post(request),
        ("GET", ["reported"]) => unsubscribe::reported(request),
        (_, ["invites" | "unsubscribe"]) => {
            HttpResponse::error_with_code(405, "method_not_allowed", "Use GET or POST here.")
                .with_header("allow", "GET, POST")
        }
        _ => HttpResponse::error_with_code(404, "not_found", "Not found."),
    }
}

mod unsubscribe;

fn refused(refusal: Refusal) -> HttpResponse {
    HttpResponse::error_with_code(refusal.status, refusal.code, refusal.message)
}

fn sign_in() -> HttpResponse {
    HttpResponse::error_with_code(401, "unauthorized", "Sign in first.")
}

/// The status and code for a capability's refusal.
fn status_of(e: &Error) -> (u16, &'static str) {
    match e {
        Error::AccessDenied(_) => (403, "forbidden"),
        Error::LimitReached(_) => (429, "limit_reached"),
        Error::Invalid(_) => (422, "invalid"),
        Error::NotFound(_) => (404, "not_found"),
        Error::Unavailable(_) => (503, "unavailable"),
    }
}

fn message_of(e: &Error) -> &str {
    match e {
        Error::AccessDenied(m)
        | Error::LimitReached(m)
        | Error::Invalid(m)
        | Error::NotFound(m)
        | Error::Unavailable(m) => m,
    }
}

fn unavailable(e: Error) -> HttpResponse {
    log::warn(&format!("capability call failed: {e:?}"));
    let (status, code) = status_of(&e);
    HttpResponse::error_with_code(status, code, message_of(&e))
}

fn compose_failed(e: &ComposeError) -> HttpResponse {
    log::error(&format!("an invitation cannot be written: {e}"));
    match e {
        ComposeError::Calendar(e) => {
            HttpResponse::error_with_code(422, "invalid_schedule", e.to_string())
        }
        ComposeError::UnsafeLink => HttpResponse::error_with_code(
            422,
            "invalid_url",
            "The link cannot be written into an email as it is.",
        ),
        ComposeError::Template(..) => HttpResponse::error_with_code(
            500,
            "template_failed",
            "The invitation cannot be written: the server's email templates failed (see its log).",
        ),
    }
}

fn not_yours() -> HttpResponse {
    HttpResponse::error_with_code(
        404,
        "not_found",
        "No working link of yours has this address.",
    )
}

/// The server's address without a trailing slash.
fn public_url() -> String {
    config::public_url().trim_end_matches('/').to_string()
}

/// The operator's `recipients_per_user_per_hour`, or the default.
fn recipients_per_hour() -> u32 {
    let Some(value) = config::get("recipients_per_user_per_hour") else {
        return DEFAULT_RECIPIENTS_PER_HOUR;
    };
    match value.trim().parse::<u32>() {
        Ok(n) if n > 0 => n,
        _ => {
            log::warn(&format!(
                "recipients_per_user_per_hour {value:?} is not a positive whole number; using {DEFAULT_RECIPIENTS_PER_HOUR}"
            ));
            DEFAULT_RECIPIENTS_PER_HOUR
        }
    }
}

/// `link` if it is `user`'s (and, with `live`, still works); else the 404.
fn owned(user: i64, id: &str, live: bool) -> Result<Link, HttpResponse> {
    match links::get(id) {
        Ok(link) if link.owner == user && (!live || link.revoked_at.is_none()) => Ok(link),
        Ok(_) | Err(Error::NotFound(_)) => Err(not_yours()),
        Err(e) => Err(unavailable(e)),
    }
}

/// `POST /invites`: everything is checked, every mail written and the count and
/// the record kept before the first mail is queued. Whoever asked not to get
/// invitations is left out first, and the answer's `not_sent` says so.
fn invite(request: &HttpRequest) -> HttpResponse {
    let Some(user) = request.user else {
        return sign_in();
    };
    let input = match InviteRequest::from_json(&request.body) {
        Ok(input) => input,
        Err(refusal) => return refused(refusal),
    };
    let public = public_url();
    let Some(id) = input::link_id(&public, &input.url) else {
        return HttpResponse::error_with_code(
            422,
            "invalid_url",
            format!(
                "The link cannot be used: it must be {public}/j/… (one of your links), optionally with a #fragment."
            ),
        );
    };
    let link = match owned(user, id, true) {
        Ok(link) => link,
        Err(response) => return response,
    };
    let emails: Vec<&str> = input.recipients.iter().map(|p| p.email.as_str()).collect();
    let suppressed = match optout::suppressed(&emails) {
        Ok(suppressed) => suppressed,
        Err(e) => return unavailable(e),
    };
    let (refused, recipients): (Vec<_>, Vec<_>) = input
        .recipients
        .iter()
        .cloned()
        .enumerate()
        .partition(|(i, _)| suppressed.contains(i));
    let recipients: Vec<Person> = recipients.into_iter().map(|(_, p)| p).collect();
    let not_sent: Vec<Value> = refused
        .into_iter()
        .map(|(_, p)| {
            json!({"email": p.email, "code": "suppressed", "reason": optout::SUPPRESSED_REASON})
        })
        .collect();
    if recipients.is_empty() {
        return HttpResponse::json(
            202,
            json!({ "queued": 0, "ids": [], "scheduled": false, "not_sent": not_sent }).to_string(),
        );
    }
    let url = match ics::shared_link(&public, &link.id, Some(&input.url)) {
        Ok(url) => url,
        Err(why) => {
            return HttpResponse::error_with_code(
                422,
                "invalid_url",
                format!("The link cannot be used: {why}."),
            );
        }
    };
    if !input::html_safe(&url) {
        return HttpResponse::error_with_code(
            422,
            "invalid_url",
            "The link cannot be used: it has characters that cannot go into an email as they are (quotes, <, >, &, or letters beyond ASCII).",
        );
    }
    let schedule = match deliver::schedule(&link.id) {
        Ok(schedule) => schedule,
        Err(e) => return unavailable(e),
    };
    let now = deliver::now();
    let now_s = now.timestamp();

    let limit = recipients_per_hour();
    let count = recipients.len() as u32;
    let mut window = match store::rate_window(user) {
        Ok(window) => window,
        Err(e) => return unavailable(e),
    };
    let used = window.used(now_s);
    if used.saturating_add(count) > limit {
        let left = limit.saturating_sub(used);
        return HttpResponse::error_with_code(
            429,
            "rate_limited",
            format!(
                "You can invite {limit} people per hour: {left} more now, not {count}. Try again later."
            ),
        )
        .with_header("retry-after", "3600");
    }

    // The record as it will be: the link as it is now, the new invitees added.
    let mut record = match store::record(&link.id) {
        Ok(Some(record)) if record.owner == user => record,
        Ok(_) => InviteRecord::new(&link.id, user, &url, &link.title, now_s),
        Err(e) => return unavailable(e),
    };
    record.url = url;
    record.title = link.title.clone();
    if let Some(organizer) = deliver::organizer(user) {
        record.organizer = Some(organizer);
    }
    let has_time = schedule.is_some();
    record.observe(
        &Observed {
            revoked: false,
            schedule,
        },
        now_s,
    );
    if !has_time {
        record.reopen(now_s);
    }
    let positions = record.invite(&recipients, now_s);
    if store::encode(&record).is_err() {
        return HttpResponse::error_with_code(
            422,
            "too_many_invitees",
            "This link has as many invitations as the plugin keeps for one link; invite the others to a new link.",
        );
    }
    // The key is made with the first invitation that gets this far: a refused
    // request leaves nothing behind.
    let signer = match Signer::load() {
        Ok(signer) => signer,
        Err(e) => return unavailable(e),
    };
    let mut letters = Vec::with_capacity(positions.len());
    for &index in &positions {
        let to = record.invitees[index].person();
        let unsubscribe = signer.url(user, &record.link_id, &to.email);
        let note = input.note.as_deref();
        match mails::compose(&record, Notice::Invite, &to, note, &unsubscribe, now) {
            Ok(message) => letters.push((index, message, unsubscribe)),
            Err(e) => return compose_failed(&e),
        }
    }
    window.add(now_s, count);
    if let Err(e) = store::set_rate_window(user, &window) {
        return unavailable(e);
    }
    if let Err(e) = store::save(&record, now_s) {
        window.release(now_s, count);
        let _ = store::set_rate_window(user, &window);
        return unavailable(e);
    }

    let mut ids = Vec::with_capacity(letters.len());
    let mut stopped = None;
    let mut unsent = Vec::new();
    for (index, message, unsubscribe) in letters {
        if stopped.is_some() {
            unsent.push(record.invitees[index].email.clone());
            continue;
        }
        match mail::queue_with_unsubscribe(&message, &unsubscribe) {
            Ok(id) => {
                ids.push(id);
                record.sent(index, now_s);
            }
            Err(e) => {
                unsent.push(record.invitees[index].email.clone());
                stopped = Some(e);
            }
        }
    }
    // Then whoever else is behind: a change the server's events have not brought yet.
    if stopped.is_none()
        && let Err(why) = deliver::due(&mut record, now)
    {
        log::warn(&format!(
            "not every invitee was told of the link's change: {why}"
        ));
    }
    record.forget_unsent(&unsent);
    if let Err(e) = store::save(&record, now_s) {
        log::warn(&format!("cannot record the invitations sent: {e:?}"));
    }
    let queued = ids.len();
    if queued < positions.len() {
        window.release(now_s, (positions.len() - queued) as u32);
        if let Err(e) = store::set_rate_window(user, &window) {
            log::warn(&format!("cannot correct the invitation count: {e:?}"));
        }
    }
    let scheduled = record.has_calendar() && record.status == Status::Active;
    match stopped {
        None => HttpResponse::json(
            202,
            json!({ "queued": queued, "ids": ids, "scheduled": scheduled, "not_sent": not_sent })
                .to_string(),
        ),
        Some(e) => {
            log::warn(&format!("mail.queue refused an invitation: {e:?}"));
            let (status, code) = status_of(&e);
            let message = match (&e, queued) {
                (Error::LimitReached(_), 0) => {
                    "The server's hourly limit for invitation mails is reached; nothing was sent. Try again later.".to_string()
                }
                (Error::LimitReached(_), n) => format!(
                    "The server's hourly limit for invitation mails is reached: {n} of {} invitations went out. Invite the others later.",
                    positions.len()
                ),
                (_, n) => format!(
                    "{n} of {} invitations went out: {}",
                    positions.len(),
                    message_of(&e)
                ),
            };
            // The error of `HttpResponse::error_with_code`, with what did go out.
            let body = json!({
                "error": {"code": code, "message": message},
                "queued": queued,
                "ids": ids,
                "not_sent": not_sent,
            });
            HttpResponse::json(status, body.to_string())
        }
    }
}

fn time(seconds: Option<i64>) -> Value {
    seconds
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map_or(Value::Null, |t| json!(t.to_rfc3339()))
}

/// `GET /invites?link=ID`: who was invited to the user's link, and what they got.
fn invitations(request: &HttpRequest) -> HttpResponse {
    let Some(user) = request.user else {
        return sign_in();
    };
    let id = input::query_param(&request.query, "link").unwrap_or_default();
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return HttpResponse::error_with_code(
            422,
            "invalid_link",
            "Give the link's id: /p/email-invites/invites?link=ID.",
        );
    }
    let link = match owned(user, id, false) {
        Ok(link) => link,
        Err(response) => return response,
    };
    let record = match store::record(&link.id) {
        Ok(record) => record.filter(|r| r.owner == user),
        Err(e) => return unavailable(e),
    };
    let Some(record) = record else {
        return HttpResponse::json(
            200,
            json!({
                "link": link.id,
                "title": link.title,
                "url": null,
                "uid": null,
                "sequence": null,
                "status": null,
                "scheduled": false,
                "when": null,
                "recipients": [],
                "last_sent": null,
            })
            .to_string(),
        );
    };
    let recipients: Vec<Value> = record
        .invitees
        .iter()
        .enumerate()
        .map(|(index, invitee)| {
            json!({
                "email": invitee.email,
                "name": invitee.name,
                "address": invitee.person().mailbox(),
                "invited_at": time(Some(invitee.invited_at)),
                "sent_at": time(invitee.sent_at),
                "sequence": invitee.sent_at.map(|_| invitee.sequence),
                "up_to_date": record.due(index).is_none(),
            })
        })
        .collect();
    HttpResponse::json(
        200,
        json!({
            "link": record.link_id,
            "title": record.title,
            "url": record.url,
            "uid": record.uid,
            "sequence": record.sequence,
            "status": record.status.as_str(),
            "scheduled": record.has_calendar() && record.status == Status::Active,
            "when": record.schedule.as_ref().map(|s| s.describe()),
            "recipients": recipients,
            "last_sent": time(record.last_sent()),
        })
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SDK's error is byte for byte the body this plugin wrote with serde_json
    /// before the SDK had one.
    #[test]
    fn errors_are_the_bodies_serde_json_writes() {
        for (code, message) in [
            ("not_found", "Not found."),
            ("invalid_url", "The link cannot be used: “x” <a> & é ✓."),
            (
                "x\"y\\z",
                "line\nbreak\r\ttab \u{08}\u{0c}\u{01}\u{1f}\u{7f} \u{2028} 𝄞",
            ),
            ("", ""),
        ] {
            let response = HttpResponse::error_with_code(418, code, message);
            assert_eq!(response.status, 418);
            assert_eq!(
                response.headers,
                vec![("content-type".to_string(), "application/json".to_string())]
            );
            assert_eq!(
                String::from_utf8(response.body).unwrap(),
                json!({"error": {"code": code, "message": message}}).to_string()
            );
        }
    }
}
