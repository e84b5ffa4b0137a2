//! The plugin: HTTP routes under `/p/calendar/` around the ICS engine.
//!
//! | route | who | what |
//! | --- | --- | --- |
//! | `GET /` | anyone | the page: add a link to an event, schedule a call, the feed |
//! | `POST /add-link` | signed in | an `.ics` (multipart upload, form field `ics`, or the raw body) → the same calendar with a link in each event (one link per UID, the same on every later submission) |
//! | `POST /schedule` | signed in | JSON or form → a new link with its schedule and its `.ics` (`method`: `publish` or `request`); with `link` (and `url`), schedules that existing link instead |
//! | `GET /calls` | signed in | the calls scheduled here (JSON) |
//! | `GET /calls/{id}.ics` | the owner | the `.ics` of a call scheduled here |
//! | `POST /links/{id}.ics` | the owner | "Add to calendar" for any of the user's links (JSON `{"url": …}`: the link as shared) → its `.ics`, from the link's schedule; 409 `no_schedule` when it has none |
//! | `POST /calls/{id}` | the owner | change the schedule (`SEQUENCE` + 1) → the new `.ics` |
//! | `POST /calls/{id}/cancel` | the owner | call it off → `METHOD:CANCEL` (`STATUS:CANCELLED`) |
//! | `GET /feed` | signed in | whether the user has a feed, and since when (its address is shown only when made) |
//! | `POST /feed` | signed in | a new secret feed URL (the previous one stops working) |
//! | `DELETE /feed` (or `POST /feed/revoke`) | signed in | the feed URL stops working |
//! | `GET /feed/{token}.ics` | whoever has the URL | the user's scheduled calls, for calendar subscriptions (`webcal://`) |
//!
//! Errors are JSON, `{"error":{"code":"…","message":"…"}}`, like the server's API; a
//! refused calendar creates no link.

mod input;
mod server;
mod store;
mod web;

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use confab_plugin_sdk::{
    Event, HttpRequest, HttpResponse, Link, Plugin, config, export_plugin, links, log, templates,
};
use serde_json::json;

use crate::ics::{self, Calendar, IcsError, Method};
use input::{ScheduleInput, Times};
use store::{EventLink, StoredCall, StoredPerson};

/// The most calls a feed lists.
pub const MAX_FEED_CALLS: usize = 1000;
const DEFAULT_LABEL: &str = "Join the Confab call";

struct CalendarPlugin;

impl Plugin for CalendarPlugin {
    fn handle_http(request: HttpRequest) -> HttpResponse {
        route(&request)
    }

    fn on_event(event: Event) {
        match event {
            // A revoked link's call is off: subscribed calendars show it cancelled.
            Event::LinkRevoked(link) => {
                if let Ok(Some(mut call)) = store::call(link.owner, &link.id)
                    && !call.cancelled
                {
                    call.cancelled = true;
                    call.sequence += 1;
                    call.updated = now().timestamp();
                    if let Err(e) = store::set_call(link.owner, &call) {
                        log::warn(&format!(
                            "cannot mark the call of a revoked link cancelled: {e:?}"
                        ));
                    }
                }
            }
            // Rescheduled elsewhere (the REST API, the dashboard): the feed follows.
            Event::LinkUpdated(link) => follow_link(&link),
            _ => {}
        }
    }
}

export_plugin!(CalendarPlugin);

fn now() -> DateTime<Utc> {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    DateTime::from_timestamp(since.as_secs() as i64, 0).unwrap_or_default()
}

fn label() -> String {
    config::get("label")
        .filter(|l| !l.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_LABEL.to_string())
}

/// The times `input` asks for (on top of `current` when changing a call), or the
/// 422 that says why they cannot be used.
fn schedule_times(input: &ScheduleInput, current: Option<&Times>) -> Result<Times, HttpResponse> {
    input.times(current).map_err(|why| {
        HttpResponse::error_with_code(
            422,
            "invalid_schedule",
            format!("The schedule cannot be used: {why}."),
        )
    })
}

fn sign_in() -> HttpResponse {
    HttpResponse::error_with_code(401, "unauthorized", "Sign in first.")
}

fn unavailable(e: confab_plugin_sdk::Error) -> HttpResponse {
    log::warn(&format!("capability call failed: {e:?}"));
    match e {
        confab_plugin_sdk::Error::AccessDenied(m) => {
            HttpResponse::error_with_code(403, "forbidden", m)
        }
        confab_plugin_sdk::Error::LimitReached(m) => {
            HttpResponse::error_with_code(429, "limit_reached", m)
        }
        confab_plugin_sdk::Error::Invalid(m) => HttpResponse::error_with_code(422, "invalid", m),
        confab_plugin_sdk::Error::NotFound(m) => HttpResponse::error_with_code(404, "not_found", m),
        confab_plugin_sdk::Error::Unavailable(m) => {
            HttpResponse::error_with_code(503, "unavailable", m)
        }
    }
}

/// The 4xx answer for a calendar or schedule the engine refused.
fn refused(e: &IcsError) -> HttpResponse {
    let (status, code) = match e {
        IcsError::TooLarge { .. } => (413, "too_large"),
        IcsError::NotICalendar => (415, "not_icalendar"),
        IcsError::TooManyEvents { .. } => (422, "too_many_events"),
        IcsError::NoEvents => (422, "no_events"),
        IcsError::BadRrule { .. } => (422, "invalid_rrule"),
        IcsError::BadSchedule(_) | IcsError::BadLink(_) => (422, "invalid_schedule"),
        IcsError::NotUtf8 { .. } | IcsError::Malformed { .. } => (400, "malformed_calendar"),
    };
    HttpResponse::error_with_code(status, code, e.to_string())
}

fn calendar_file(status: u16, body: String, filename: &str) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![
            ("content-type".into(), "text/calendar; charset=utf-8".into()),
            (
                "content-disposition".into(),
                format!("attachment; filename=\"{filename}\""),
            ),
            ("cache-control".into(), "no-store".into()),
        ],
        body: body.into_bytes(),
    }
}

fn route(request: &HttpRequest) -> HttpResponse {
    let path = request.path.trim_end_matches('/');
    let method = request.method.as_str();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (method, segments.as_slice()) {
        ("GET", []) => page(request),
        ("POST", ["add-link"]) => add_link(request),
        ("POST", ["schedule"]) => schedule(request),
        ("GET", ["calls"]) => list_calls(request),
        ("GET", ["calls", file]) if file.ends_with(".ics") => {
            download_call(request, file.trim_end_matches(".ics"))
        }
        ("POST", ["calls", id]) => update_call(request, id),
        ("POST", ["calls", id, "cancel"]) => cancel_call(request, id),
        ("POST", ["links", file]) if file.ends_with(".ics") => {
            link_file(request, file.trim_end_matches(".ics"))
        }
        ("GET", ["feed"]) => feed_status(request),
        ("POST", ["feed"]) => new_feed(request),
        ("DELETE", ["feed"]) | ("POST", ["feed", "revoke"]) => revoke_feed(request),
        ("GET", ["feed", file]) if file.ends_with(".ics") => feed(file.trim_end_matches(".ics")),
        _ => HttpResponse::error_with_code(404, "not_found", "Not found."),
    }
}

/// The `.ics` of a request: a multipart upload (a file part, or the field `ics`),
/// a form field `ics`, or the body itself; with the file's name when uploaded.
fn submitted_calendar(request: &HttpRequest) -> Result<(Vec<u8>, Option<String>), HttpResponse> {
    let content_type = request.header("content-type").unwrap_or("");
    match web::media_type(content_type).as_str() {
        "multipart/form-data" => {
            let boundary = web::header_param(content_type, "boundary").unwrap_or_default();
            let parts = web::multipart(&request.body, &boundary).map_err(|why| {
                HttpResponse::error_with_code(
                    400,
                    "malformed_upload",
                    format!("The upload cannot be read: {why}."),
                )
            })?;
            let file = parts
                .iter()
                .find(|p| p.filename.is_some() && !p.data.is_empty())
                .or_else(|| parts.iter().find(|p| p.name == "ics" && !p.data.is_empty()))
                .ok_or_else(|| {
                    HttpResponse::error_with_code(
                        400,
                        "no_calendar",
                        "Choose an .ics file or paste a calendar.",
                    )
                })?;
            Ok((file.data.clone(), file.filename.clone()))
        }
        "application/x-www-form-urlencoded" => {
            let form = web::form(request.text().unwrap_or(""));
            match form.get("ics").filter(|t| !t.trim().is_empty()) {
                Some(text) => Ok((text.clone().into_bytes(), None)),
                None => Err(HttpResponse::error_with_code(
                    400,
                    "no_calendar",
                    "Paste a calendar into the field.",
                )),
            }
        }
        _ => Ok((request.body.clone(), None)),
    }
}

fn add_link(request: &HttpRequest) -> HttpResponse {
    let Some(user) = request.user else {
        return sign_in();
    };
    let (data, filename) = match submitted_calendar(request) {
        Ok(found) => found,
        Err(response) => return response,
    };
    // Everything is checked before any link is made.
    let calendar = match Calendar::parse(&data) {
        Ok(c) => c,
        Err(e) => return refused(&e),
    };
    let events = calendar.events();

    // One link per UID: the one this user's earlier submissions got, while it works.
    let uids: Vec<&str> = events.iter().map(|e| e.uid.as_str()).collect();
    let known = match store::event_links(user, &uids) {
        Ok(known) => known,
        Err(e) => return unavailable(e),
    };
    let mut chosen: HashMap<String, String> = HashMap::with_capacity(events.len());
    let mut missing = Vec::new();
    for (event, known) in events.iter().zip(known) {
        match known {
            Some(known) if server::live_link(&known.link_id).is_some() => {
                chosen.insert(event.uid.clone(), known.url);
            }
            _ => missing.push(event),
        }
    }
    // The new ones all at once: one batch of links, one batch of records.
    if !missing.is_empty() {
        let titles: Vec<String> = missing
            .iter()
            .map(|event| {
                let title = event
                    .summary
                    .as_deref()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .unwrap_or("Call");
                title.chars().take(200).collect()
            })
            .collect();
        let created = match server::create_links(user, &titles) {
            Ok(c) => c,
            Err(e) => return unavailable(e),
        };
        let records: Vec<EventLink> = missing
            .iter()
            .zip(created)
            .map(|(event, created)| EventLink {
                uid: event.uid.clone(),
                link_id: created.link.id,
                url: created.url,
            })
            .collect();
        if let Err(e) = store::set_event_links(user, &records) {
            return unavailable(e);
        }
        chosen.extend(records.into_iter().map(|r| (r.uid, r.url)));
    }

    let label = web::form(&request.query)
        .remove("label")
        .filter(|l| !l.trim().is_empty())
        .unwrap_or_else(label);
    let added = calendar.with_links(|event| chosen.get(&event.uid).cloned(), &label, now());
    match added {
        Ok(added) => {
            let name = web::download_name(filename.as_deref(), "-confab");
            calendar_file(200, added.ics, &name)
                .with_header("x-confab-events", added.events.len().to_string())
        }
        Err(e) => refused(&e),
    }
}

/// The schedule in a request: JSON, or a form (also multipart-free HTML forms).
fn schedule_input(request: &HttpRequest) -> Result<ScheduleInput, HttpResponse> {
    let content_type = web::media_type(request.header("content-type").unwrap_or(""));
    if content_type == "application/json" {
        ScheduleInput::from_json(&request.body)
            .map_err(|why| HttpResponse::error_with_code(400, "malformed_json", why))
    } else {
        Ok(ScheduleInput::from_form(&web::form(
            request.text().unwrap_or(""),
        )))
    }
}

fn wants_invitation(input: &ScheduleInput) -> Result<bool, HttpResponse> {
    match input
        .method
        .as_deref()
        .map(str::trim)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("") | Some("publish") => Ok(false),
        Some("request") => Ok(true),
        Some(other) => Err(HttpResponse::error_with_code(
            422,
            "invalid_method",
            format!("method must be publish or request, not “{other}”."),
        )),
    }
}

/// The organizer: the server's record of the signed-in user; the address the
/// request gives only where the operator withheld the `users` capability.
fn organizer(user: i64, input: &ScheduleInput) -> Option<StoredPerson> {
    server::user_contact(user)
        .or_else(|| input.organizer.clone())
        .map(|p| StoredPerson::from(&p))
}

/// A call scheduled here whose link was rescheduled elsewhere (the REST API)
/// takes the link's new times, one `SEQUENCE` up; a schedule removed there calls
/// it off.
fn follow_link(link: &Link) {
    let Ok(Some(mut call)) = store::call(link.owner, &link.id) else {
        return;
    };
    let before = call.clone();
    match links::schedule(&link.id) {
        Ok(Some(schedule)) => {
            call.start = schedule.start.div_euclid(1000);
            call.end = schedule.end.div_euclid(1000);
            call.time_zone = schedule.time_zone;
            call.rrule = schedule.rrule;
            call.cancelled = false;
        }
        Ok(None) => call.cancelled = true,
        Err(e) => {
            log::warn(&format!(
                "cannot read the schedule of an updated link: {e:?}"
            ));
            return;
        }
    }
    if call != before {
        call.sequence += 1;
        call.updated = now().timestamp();
        if let Err(e) = store::set_call(link.owner, &call) {
            log::warn(&format!("cannot follow a rescheduled link: {e:?}"));
        }
    }
}

fn call_file(call: &StoredCall, method: Method) -> Result<String, IcsError> {
    ics::schedule_ics(&call.spec(&label()), method, now())
}

fn schedule(request: &HttpRequest) -> HttpResponse {
    let Some(user) = request.user else {
        return sign_in();
    };
    let input = match schedule_input(request) {
        Ok(i) => i,
        Err(response) => return response,
    };
    let invite = match wants_invitation(&input) {
        Ok(i) => i,
        Err(response) => return response,
    };
    let times = match schedule_times(&input, None) {
        Ok(t) => t,
        Err(response) => return response,
    };
    let title = input
        .title
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .unwrap_or("Call")
        .chars()
        .take(200)
        .collect::<String>();
    let mut call = StoredCall {
        link_id: String::new(),
        url: "https://pending.invalid/".into(),
        title: title.clone(),
        description: input.description.clone().filter(|d| !d.trim().is_empty()),
        start: times.start.timestamp(),
        end: times.end.timestamp(),
        time_zone: times.time_zone.clone(),
        rrule: times.rrule.clone(),
        organizer: organizer(user, &input),
        attendees: input
            .attendees
            .iter()
            .flatten()
            .map(StoredPerson::from)
            .collect(),
        sequence: 0,
        cancelled: false,
        created: now().timestamp(),
        updated: now().timestamp(),
    };
    let method = if invite {
        Method::Request
    } else {
        Method::Publish
    };
    // Checked in full (zone, rule, addresses, organizer) before the link exists.
    if let Err(e) = call_file(&call, method) {
        return refused(&e);
    }
    match input.link.as_deref() {
        // An existing link of the user's gets the schedule.
        Some(id) => {
            let link = match server::owned_live_link(user, id.trim()) {
                Ok(link) => link,
                Err(e) => return unavailable(e),
            };
            match store::call(user, &link.id) {
                Ok(None) => {}
                Ok(Some(_)) => {
                    return HttpResponse::error_with_code(
                        409,
                        "already_scheduled",
                        format!(
                            "This link already has a call scheduled; change it with POST /p/calendar/calls/{}.",
                            link.id
                        ),
                    );
                }
                Err(e) => return unavailable(e),
            }
            call.url = match shared_link(&link.id, input.url.as_deref()) {
                Ok(url) => url,
                Err(response) => return response,
            };
            if input.title.as_deref().is_none_or(|t| t.trim().is_empty()) {
                call.title = link.title.clone();
            }
            if let Err(e) = links::set_schedule(user, &link.id, Some(&server::schedule(&times))) {
                return unavailable(e);
            }
            call.link_id = link.id;
        }
        None => {
            let created = match server::create_link(user, &title, Some(&times)) {
                Ok(c) => c,
                Err(e) => return unavailable(e),
            };
            call.link_id = created.link.id.clone();
            call.url = created.url.clone();
        }
    }
    if let Err(e) = store::set_call(user, &call) {
        return unavailable(e);
    }
    match call_file(&call, method) {
        Ok(body) => calendar_file(201, body, &format!("{}.ics", call.link_id))
            .with_header("x-confab-link-id", call.link_id.clone())
            .with_header(
                "location",
                format!("/p/calendar/calls/{}.ics", call.link_id),
            ),
        Err(e) => refused(&e),
    }
}

fn owned_call(request: &HttpRequest, id: &str) -> Result<(i64, StoredCall), HttpResponse> {
    let Some(user) = request.user else {
        return Err(sign_in());
    };
    match store::call(user, id) {
        Ok(Some(call)) => Ok((user, call)),
        Ok(None) => Err(HttpResponse::error_with_code(
            404,
            "not_found",
            "No call is scheduled here for this link (POST /p/calendar/links/{id}.ics makes one from the link's schedule).",
        )),
        Err(e) => Err(unavailable(e)),
    }
}

fn list_calls(request: &HttpRequest) -> HttpResponse {
    let Some(user) = request.user else {
        return sign_in();
    };
    match store::calls(user, MAX_FEED_CALLS) {
        Ok(calls) => {
            let items: Vec<_> = calls
                .iter()
                .map(|c| {
                    json!({
                        "link_id": c.link_id,
                        "title": c.title,
                        "start": DateTime::from_timestamp(c.start, 0).map(|t| t.to_rfc3339()),
                        "end": DateTime::from_timestamp(c.end, 0).map(|t| t.to_rfc3339()),
                        "time_zone": c.time_zone,
                        "rrule": c.rrule,
                        "sequence": c.sequence,
                        "cancelled": c.cancelled,
                        "ics": format!("/p/calendar/calls/{}.ics", c.link_id),
                    })
                })
                .collect();
            HttpResponse::json(200, json!({ "calls": items }).to_string())
        }
        Err(e) => unavailable(e),
    }
}

fn download_call(request: &HttpRequest, id: &str) -> HttpResponse {
    let (_, call) = match owned_call(request, id) {
        Ok(found) => found,
        Err(response) => return response,
    };
    match call_file(&call, Method::Publish) {
        Ok(body) => calendar_file(200, body, &format!("{id}.ics")),
        Err(e) => refused(&e),
    }
}

/// Invitations for calls with attendees and an organizer, a download otherwise.
fn method_for(call: &StoredCall) -> Method {
    if call.organizer.is_some() && !call.attendees.is_empty() {
        Method::Request
    } else {
        Method::Publish
    }
}

fn update_call(request: &HttpRequest, id: &str) -> HttpResponse {
    let (user, mut call) = match owned_call(request, id) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let input = match schedule_input(request) {
        Ok(i) => i,
        Err(response) => return response,
    };
    let current = Times {
        start: DateTime::from_timestamp(call.start, 0).unwrap_or_default(),
        end: DateTime::from_timestamp(call.end, 0).unwrap_or_default(),
        time_zone: call.time_zone.clone(),
        rrule: call.rrule.clone(),
    };
    let times = match schedule_times(&input, Some(&current)) {
        Ok(t) => t,
        Err(response) => return response,
    };
    let before = call.clone();
    call.start = times.start.timestamp();
    call.end = times.end.timestamp();
    call.time_zone = times.time_zone;
    call.rrule = times.rrule;
    if let Some(title) = input
        .title
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        call.title = title.chars().take(200).collect();
    }
    if let Some(description) = &input.description {
        call.description = Some(description.clone()).filter(|d| !d.trim().is_empty());
    }
    if let Some(attendees) = &input.attendees {
        call.attendees = attendees.iter().map(StoredPerson::from).collect();
    }
    if let Some(organizer) = organizer(user, &input) {
        call.organizer = Some(organizer);
    }
    if call != before {
        call.sequence += 1;
        call.updated = now().timestamp();
    }
    let method = method_for(&call);
    let body = match call_file(&call, method) {
        Ok(body) => body,
        Err(e) => return refused(&e),
    };
    if call != before {
        // The server's record first: it may refuse what the plugin accepted.
        let times = Times {
            start: DateTime::from_timestamp(call.start, 0).unwrap_or_default(),
            end: DateTime::from_timestamp(call.end, 0).unwrap_or_default(),
            time_zone: call.time_zone.clone(),
            rrule: call.rrule.clone(),
        };
        if !call.cancelled
            && let Err(e) = links::set_schedule(user, id, Some(&server::schedule(&times)))
        {
            return unavailable(e);
        }
        if let Err(e) = store::set_call(user, &call) {
            return unavailable(e);
        }
    }
    calendar_file(200, body, &format!("{id}.ics"))
}

fn cancel_call(request: &HttpRequest, id: &str) -> HttpResponse {
    let (user, mut call) = match owned_call(request, id) {
        Ok(found) => found,
        Err(response) => return response,
    };
    if !call.cancelled {
        call.cancelled = true;
        call.sequence += 1;
        call.updated = now().timestamp();
        if let Err(e) = store::set_call(user, &call) {
            return unavailable(e);
        }
        // The link keeps working; it just has no planned time any more. A revoked
        // link has no schedule to clear.
        match links::set_schedule(user, id, None) {
            Ok(()) | Err(confab_plugin_sdk::Error::NotFound(_)) => {}
            Err(e) => log::warn(&format!("cannot clear a cancelled call's schedule: {e:?}")),
        }
    }
    let method = if call.organizer.is_some() {
        Method::Cancel
    } else {
        Method::Publish
    };
    match call_file(&call, method) {
        Ok(body) => calendar_file(200, body, &format!("{id}-cancelled.ics")),
        Err(e) => refused(&e),
    }
}

/// The link to write for link `id` (see [`server::share_url`]), or the 422 that
/// says why the one the browser sent cannot be used.
fn shared_link(id: &str, given: Option<&str>) -> Result<String, HttpResponse> {
    server::share_url(id, given).map_err(|why| {
        HttpResponse::error_with_code(
            422,
            "invalid_url",
            format!("The link cannot be used: {why}."),
        )
    })
}

/// "Add to calendar" for any of the user's links: the `.ics` of the call scheduled
/// here, or of the link's schedule on the server (adopted, so the feed lists it
/// and later changes raise its `SEQUENCE`). The body may carry the link as the
/// user shares it (`{"url": …}`, JSON or form), so the file has its fragment.
fn link_file(request: &HttpRequest, id: &str) -> HttpResponse {
    let Some(user) = request.user else {
        return sign_in();
    };
    let link = match server::owned_live_link(user, id) {
        Ok(link) => link,
        Err(e) => return unavailable(e),
    };
    let given = match web::media_type(request.header("content-type").unwrap_or("")).as_str() {
        "application/json" => serde_json::from_slice::<serde_json::Value>(&request.body)
            .ok()
            .and_then(|v| v.get("url").and_then(|u| u.as_str()).map(str::to_string)),
        _ => web::form(request.text().unwrap_or("")).remove("url"),
    };
    let url = match shared_link(&link.id, given.as_deref()) {
        Ok(url) => url,
        Err(response) => return response,
    };
    let (mut call, known) = match store::call(user, &link.id) {
        Ok(Some(call)) => (call, true),
        Ok(None) => match links::schedule(&link.id) {
            Ok(Some(schedule)) => {
                let call = StoredCall {
                    link_id: link.id.clone(),
                    url: url.clone(),
                    title: link.title.clone(),
                    description: None,
                    start: schedule.start.div_euclid(1000),
                    end: schedule.end.div_euclid(1000),
                    time_zone: schedule.time_zone,
                    rrule: schedule.rrule,
                    organizer: server::user_contact(user).map(|p| StoredPerson::from(&p)),
                    attendees: Vec::new(),
                    sequence: 0,
                    cancelled: false,
                    created: now().timestamp(),
                    updated: now().timestamp(),
                };
                (call, false)
            }
            Ok(None) => {
                return HttpResponse::error_with_code(
                    409,
                    "no_schedule",
                    "This link has no date yet: schedule a call with it first.",
                );
            }
            Err(e) => return unavailable(e),
        },
        Err(e) => return unavailable(e),
    };
    // The link as the user shares it now (say, with a fragment the server never
    // saw) replaces the one the file had: calendars get an update.
    let changed = known && given.is_some() && call.url != url;
    if changed {
        call.url = url;
        call.sequence += 1;
        call.updated = now().timestamp();
    }
    let body = match call_file(&call, Method::Publish) {
        Ok(body) => body,
        Err(e) => return refused(&e),
    };
    if (changed || !known)
        && let Err(e) = store::set_call(user, &call)
    {
        return unavailable(e);
    }
    calendar_file(200, body, &format!("{}.ics", link.id))
}

fn feed_path(token: &str) -> String {
    format!("/p/calendar/feed/{token}.ics")
}

fn new_feed(request: &HttpRequest) -> HttpResponse {
    let Some(user) = request.user else {
        return sign_in();
    };
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        return HttpResponse::error_with_code(
            503,
            "unavailable",
            "No randomness for a token; try again.",
        );
    }
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    match store::set_feed_token(user, &token, now().timestamp()) {
        Ok(()) => {
            let path = feed_path(&token);
            let https = format!("{}{path}", server::public_url());
            let webcal = https
                .strip_prefix("https://")
                .or_else(|| https.strip_prefix("http://"))
                .map(|rest| format!("webcal://{rest}"));
            HttpResponse::json(
                201,
                json!({ "path": path, "url": https, "webcal": webcal }).to_string(),
            )
        }
        Err(e) => unavailable(e),
    }
}

fn feed_status(request: &HttpRequest) -> HttpResponse {
    let Some(user) = request.user else {
        return sign_in();
    };
    match store::feed(user) {
        Ok(feed) => HttpResponse::json(
            200,
            json!({
                "exists": feed.is_some(),
                "created": feed.and_then(|f| DateTime::from_timestamp(f.created, 0)).map(|t| t.format("%-d %b %Y").to_string()),
            })
            .to_string(),
        ),
        Err(e) => unavailable(e),
    }
}

fn revoke_feed(request: &HttpRequest) -> HttpResponse {
    let Some(user) = request.user else {
        return sign_in();
    };
    match store::revoke_feed(user) {
        Ok(had) => HttpResponse::json(200, json!({ "revoked": had }).to_string()),
        Err(e) => unavailable(e),
    }
}

fn feed(token: &str) -> HttpResponse {
    let well_formed = token.len() == 64 && token.bytes().all(|b| b.is_ascii_hexdigit());
    let user = match well_formed.then(|| store::feed_user(token)) {
        Some(Ok(Some(user))) => user,
        Some(Err(e)) => return unavailable(e),
        _ => {
            return HttpResponse::error_with_code(
                404,
                "not_found",
                "This feed does not exist (any more).",
            );
        }
    };
    let calls = match store::calls(user, MAX_FEED_CALLS) {
        Ok(c) => c,
        Err(e) => return unavailable(e),
    };
    let label = label();
    let specs: Vec<_> = calls.iter().map(|c| c.spec(&label)).collect();
    match ics::feed_ics("Confab calls", &specs, now()) {
        Ok(body) => HttpResponse {
            status: 200,
            headers: vec![
                ("content-type".into(), "text/calendar; charset=utf-8".into()),
                ("cache-control".into(), "private, max-age=300".into()),
            ],
            body: body.into_bytes(),
        },
        Err(e) => {
            log::error(&format!("a stored call cannot be written: {e}"));
            HttpResponse::error_with_code(500, "internal", "The feed cannot be written.")
        }
    }
}

fn page(request: &HttpRequest) -> HttpResponse {
    let calls = match request.user {
        Some(user) => store::calls(user, 100).unwrap_or_default(),
        None => Vec::new(),
    };
    let context = json!({
        "signed_in": request.user.is_some(),
        "calls": calls.iter().map(|c| json!({
            "link_id": c.link_id,
            "title": c.title,
            "when": describe(c),
            "cancelled": c.cancelled,
        })).collect::<Vec<_>>(),
    });
    match templates::render("index.html", &context.to_string()) {
        Ok(html) => HttpResponse::html(200, html),
        Err(e) => unavailable(e),
    }
}

/// `Tue 1 Dec 2026, 10:00 (Europe/Berlin), repeats`.
fn describe(call: &StoredCall) -> String {
    let zone = ics::tz::zone(&call.time_zone).unwrap_or(chrono_tz::UTC);
    let start = DateTime::from_timestamp(call.start, 0)
        .unwrap_or_default()
        .with_timezone(&zone);
    let mut text = format!(
        "{} ({})",
        start.format("%a %-d %b %Y, %H:%M"),
        call.time_zone
    );
    if call.rrule.is_some() {
        text.push_str(", repeats");
    }
    text
}
