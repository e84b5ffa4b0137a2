//! The hello plugin: an example of every hook and most capabilities.
//!
//! - `GET /p/hello/` renders a greeting page (template + config) and counts visits (kv);
//! - `GET /p/hello/newest` shows the newest link created on the server (events + kv);
//! - `POST /p/hello/links` creates a link for the signed-in user (links);
//! - `GET /p/hello/roster?link=ID` lists who is on a call, and
//!   `POST /p/hello/remove?link=ID&participant=N` removes someone as the signed-in
//!   user would (calls), and `GET /p/hello/activity?link=ID` lists who is in the
//!   shared note (calls, since 1.3: never what they write);
//! - lobby requests whose name contains the configured `blocked-word` are denied;
//! - messages on the plugin's channel in a call are relayed to everyone on it, and the
//!   last one is kept for people who join later (calls + kv);
//! - the `tidy` timer logs how many keys the plugin keeps.

use confab_plugin_sdk::links::NewLink;
use confab_plugin_sdk::{
    Call, Decision, Event, HttpRequest, HttpResponse, LobbyRequest, Plugin, calls, config,
    export_plugin, kv, links, log, templates,
};

struct Hello;

fn escape_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The decoded value of `key` in a query string (`+` and `%XX` decoded).
fn query_value(query: &str, key: &str) -> Option<String> {
    let raw = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)?;
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match u8::from_str_radix(raw.get(i + 1..i + 3).unwrap_or(""), 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

fn greeting(request: &HttpRequest) -> HttpResponse {
    let visits = kv::get_string("visits")
        .ok()
        .flatten()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    if let Err(e) = kv::set("visits", visits.to_string()) {
        log::warn(&format!("cannot count the visit: {e:?}"));
    }
    let name = query_value(&request.query, "name").unwrap_or_else(|| "world".into());
    let greeting = config::get("greeting").unwrap_or_else(|| "Hello".into());
    let context = format!(
        "{{\"greeting\":{},\"name\":{},\"visits\":{visits}}}",
        escape_json(&greeting),
        escape_json(&name)
    );
    match templates::render("greeting.html", &context) {
        Ok(page) => HttpResponse::html(200, page),
        Err(e) => HttpResponse::text(500, format!("cannot render the page: {e:?}")),
    }
}

fn create_link(request: &HttpRequest) -> HttpResponse {
    let Some(user) = request.user else {
        return HttpResponse::error(401, "sign in first");
    };
    let title = request.text().unwrap_or("").trim();
    let title = if title.is_empty() {
        "Hello call"
    } else {
        title
    };
    let params = NewLink {
        title: title.to_string(),
        max_participants: None,
    };
    match links::create(user, &params) {
        Ok(created) => HttpResponse::json(
            201,
            format!(
                "{{\"id\":{},\"url\":{}}}",
                escape_json(&created.link.id),
                escape_json(&created.url)
            ),
        ),
        Err(e) => HttpResponse::error(403, format!("{e:?}")),
    }
}

fn roster(request: &HttpRequest) -> HttpResponse {
    let Some(link) = query_value(&request.query, "link") else {
        return HttpResponse::text(400, "give ?link=ID");
    };
    match calls::roster(&link) {
        Ok(people) => HttpResponse::text(
            200,
            people
                .iter()
                .map(|p| {
                    let who = if p.user.is_some() { "member" } else { "guest" };
                    format!("{} {} {who}\n", p.id, p.name)
                })
                .collect::<String>(),
        ),
        Err(e) => HttpResponse::text(404, format!("{e:?}")),
    }
}

fn activity(request: &HttpRequest) -> HttpResponse {
    let Some(link) = query_value(&request.query, "link") else {
        return HttpResponse::text(400, "give ?link=ID");
    };
    match calls::activity(&link) {
        Ok(members) => HttpResponse::text(
            200,
            members
                .iter()
                .map(|m| {
                    let role = match m.role {
                        calls::ActivityRole::Host => "host",
                        calls::ActivityRole::Member => "member",
                        calls::ActivityRole::Guest => "guest",
                    };
                    format!("{} {role}\n", m.participant)
                })
                .collect::<String>(),
        ),
        Err(e) => HttpResponse::text(404, format!("{e:?}")),
    }
}

fn remove(request: &HttpRequest) -> HttpResponse {
    let Some(user) = request.user else {
        return HttpResponse::text(401, "sign in first");
    };
    let link = query_value(&request.query, "link").unwrap_or_default();
    let Some(participant) =
        query_value(&request.query, "participant").and_then(|p| p.parse::<u32>().ok())
    else {
        return HttpResponse::text(400, "give ?participant=N");
    };
    match calls::remove(&link, user, participant) {
        Ok(()) => HttpResponse::text(200, "removed"),
        Err(e) => HttpResponse::text(403, format!("{e:?}")),
    }
}

impl Plugin for Hello {
    fn handle_http(request: HttpRequest) -> HttpResponse {
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/") => greeting(&request),
            ("GET", "/newest") => match kv::get_string("newest-link") {
                Ok(Some(id)) => HttpResponse::text(200, id),
                Ok(None) => HttpResponse::text(404, "no link yet"),
                Err(e) => HttpResponse::text(503, format!("{e:?}")),
            },
            ("POST", "/links") => create_link(&request),
            ("GET", "/roster") => roster(&request),
            ("GET", "/activity") => activity(&request),
            ("POST", "/remove") => remove(&request),
            _ => HttpResponse::text(404, "not found"),
        }
    }

    fn on_event(event: Event) {
        match event {
            Event::LinkCreated(link) => {
                if let Err(e) = kv::set("newest-link", &link.id) {
                    log::warn(&format!("cannot remember the link: {e:?}"));
                }
            }
            Event::ParticipantJoined(joined) => {
                // Give the newcomer the last message of the call's activity.
                let key = format!("last/{}", joined.call.id);
                if let Ok(Some(last)) = kv::get(&key) {
                    let _ = calls::send_to(&joined.call.link, joined.participant.id, &last);
                }
            }
            _ => {}
        }
    }

    fn lobby_decision(request: LobbyRequest) -> Decision {
        match config::get("blocked-word") {
            Some(word)
                if !word.is_empty()
                    && request.name.to_lowercase().contains(&word.to_lowercase()) =>
            {
                Decision::Deny(format!("names with “{word}” are not let in"))
            }
            _ => Decision::Allow,
        }
    }

    fn on_call_message(call: Call, sender: u32, payload: Vec<u8>) {
        log::debug(&format!("message from participant {sender}"));
        let _ = kv::set_with_ttl(
            &format!("last/{}", call.id),
            &payload,
            std::time::Duration::from_secs(24 * 3600),
        );
        if let Err(e) = calls::broadcast(&call.link, &payload) {
            log::warn(&format!("cannot relay: {e:?}"));
        }
    }

    fn on_timer(name: String) {
        let keys = kv::keys("", None, 1000).map(|k| k.len()).unwrap_or(0);
        log::info(&format!("timer {name}: {keys} keys kept"));
    }
}

export_plugin!(Hello);
