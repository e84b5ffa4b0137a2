//! The watch-together plugin: a video that everyone on a call watches in step.
//!
//! Nearly all of it is web code (`static/`): the player runs in the plugin's
//! sandboxed frame on the call page, and the group's playback is the plugin's
//! shared activity, sealed by each page with the call's keys. This side never
//! sees what the call watches; it keeps one option per link and answers who is
//! watching:
//!
//! | route | who | what |
//! | --- | --- | --- |
//! | `GET /p/watch-together/options?link=ID` | anyone with the link's id | `{"signed_in_only": bool, "can_change": bool}` |
//! | `PUT /p/watch-together/options?link=ID` | the link's owner or an administrator | JSON `{"signed_in_only": bool}` → the options as `GET` gives them |
//! | `GET /p/watch-together/watching?link=ID` | the link's owner or an administrator | who is in the call's activity and their role, never what they watch |
//!
//! `signed_in_only` keeps starting a video to people who signed in; guests still
//! play, pause and seek what they started. Every page of the call enforces it (the
//! server forwards sealed updates it cannot read), so a guest's modified page
//! changes nothing on the others'.
//!
//! Errors are JSON, `{"error":{"code":"…","message":"…"}}`: 400 no or a malformed
//! link id, 401 signed out, 403 not the owner, 404 an unknown or revoked link, 405
//! another method, 422 a body that is not the option.

use confab_plugin_sdk::{
    Error, HttpRequest, HttpResponse, Plugin, calls, export_plugin, kv, links, users,
};
use serde::{Deserialize, Serialize};

struct WatchTogether;

impl Plugin for WatchTogether {
    fn handle_http(request: HttpRequest) -> HttpResponse {
        route(&request)
    }
}

export_plugin!(WatchTogether);

/// Longest link id accepted (they are 22 characters today).
const MAX_LINK_ID: usize = 64;

/// The per-link option as it is kept and sent.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Only people who signed in may start a video.
    pub signed_in_only: bool,
}

/// Routes a request under `/p/watch-together/`.
pub fn route(request: &HttpRequest) -> HttpResponse {
    let path = request.path.trim_end_matches('/');
    match (request.method.as_str(), path) {
        ("GET", "/options") => with_link(request, |id| get_options(request, id)),
        ("PUT", "/options") => with_link(request, |id| put_options(request, id)),
        ("GET", "/watching") => with_link(request, |id| watching(request, id)),
        (_, "/options") => {
            HttpResponse::error_with_code(405, "method_not_allowed", "Use GET or PUT here.")
                .with_header("allow", "GET, PUT")
        }
        (_, "/watching") => {
            HttpResponse::error_with_code(405, "method_not_allowed", "Use GET here.")
                .with_header("allow", "GET")
        }
        _ => HttpResponse::error_with_code(404, "not_found", "Not found."),
    }
}

/// The link named by `?link=`, checked, to `then`.
fn with_link(request: &HttpRequest, then: impl FnOnce(&str) -> HttpResponse) -> HttpResponse {
    let id = request
        .query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "link")
        .map(|(_, v)| v);
    match id {
        Some(id) if valid_link_id(id) => then(id),
        _ => HttpResponse::error_with_code(400, "bad_request", "Give the link's id: ?link=ID."),
    }
}

/// Whether `id` looks like a link id: 1 to 64 letters, digits, `-` or `_`.
pub fn valid_link_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_LINK_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn key(id: &str) -> String {
    format!("options/{id}")
}

/// The link's options (the defaults when none were set).
fn load(id: &str) -> Result<Options, Error> {
    Ok(kv::get(&key(id))?
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default())
}

/// The link, if it exists and works.
fn live_link(id: &str) -> Result<confab_plugin_sdk::Link, HttpResponse> {
    match links::get(id) {
        Ok(link) if link.revoked_at.is_none() => Ok(link),
        Ok(_) | Err(Error::NotFound(_)) => Err(HttpResponse::error_with_code(
            404,
            "not_found",
            "No such link.",
        )),
        Err(e) => Err(failed(&e)),
    }
}

/// Whether the signed-in `user` may change the options of `link`.
fn may_change(user: Option<i64>, link: &confab_plugin_sdk::Link) -> bool {
    user.is_some_and(|u| u == link.owner || users::is_admin(u).unwrap_or(false))
}

/// The link works and the signed-in user may change it; otherwise the answer
/// (404, or 403 saying `refusal`).
fn owned_link(request: &HttpRequest, id: &str, refusal: &str) -> Result<(), HttpResponse> {
    let link = live_link(id)?;
    if may_change(request.user, &link) {
        Ok(())
    } else {
        Err(HttpResponse::error_with_code(403, "forbidden", refusal))
    }
}

fn answer(options: Options, can_change: bool) -> HttpResponse {
    HttpResponse::json(
        200,
        serde_json::json!({
            "signed_in_only": options.signed_in_only,
            "can_change": can_change,
        })
        .to_string(),
    )
}

fn get_options(request: &HttpRequest, id: &str) -> HttpResponse {
    let link = match live_link(id) {
        Ok(link) => link,
        Err(response) => return response,
    };
    match load(id) {
        Ok(options) => answer(options, may_change(request.user, &link)),
        Err(e) => failed(&e),
    }
}

fn put_options(request: &HttpRequest, id: &str) -> HttpResponse {
    if request.user.is_none() {
        return HttpResponse::error_with_code(401, "unauthorized", "Sign in first.");
    }
    if let Err(response) = owned_link(
        request,
        id,
        "Only the link's owner or an administrator changes who may start a video.",
    ) {
        return response;
    }
    let Some(options) = request
        .text()
        .and_then(|body| serde_json::from_str::<Options>(body).ok())
    else {
        return HttpResponse::error_with_code(
            422,
            "invalid",
            "Send {\"signed_in_only\": true} or false.",
        );
    };
    let stored = if options == Options::default() {
        kv::delete(&key(id))
    } else {
        serde_json::to_vec(&options)
            .map_err(|e| Error::Invalid(e.to_string()))
            .and_then(|bytes| kv::set(&key(id), bytes))
    };
    match stored {
        Ok(()) => answer(options, true),
        Err(e) => failed(&e),
    }
}

fn watching(request: &HttpRequest, id: &str) -> HttpResponse {
    if let Err(response) = owned_link(
        request,
        id,
        "Only the link's owner or an administrator sees who is watching.",
    ) {
        return response;
    }
    match calls::activity(id) {
        Ok(members) => {
            let members: Vec<_> = members
                .iter()
                .map(|m| {
                    let role = match m.role {
                        calls::ActivityRole::Host => "host",
                        calls::ActivityRole::Member => "member",
                        calls::ActivityRole::Guest => "guest",
                    };
                    serde_json::json!({ "participant": m.participant, "role": role })
                })
                .collect();
            HttpResponse::json(200, serde_json::json!({ "watching": members }).to_string())
        }
        // No call running on the link: nobody is watching.
        Err(Error::NotFound(_)) => {
            HttpResponse::json(200, serde_json::json!({ "watching": [] }).to_string())
        }
        Err(e) => failed(&e),
    }
}

fn failed(e: &Error) -> HttpResponse {
    let (status, code, message) = match e {
        Error::AccessDenied(m) => (403, "forbidden", m),
        Error::LimitReached(m) => (429, "limit_reached", m),
        Error::Invalid(m) => (422, "invalid", m),
        Error::NotFound(m) => (404, "not_found", m),
        Error::Unavailable(m) => (503, "unavailable", m),
    };
    HttpResponse::error_with_code(status, code, message.clone())
}
