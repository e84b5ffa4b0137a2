//! The spam-guard plugin: report, block and contain unwanted callers.
//!
//! People on a call report someone on it or waiting in its lobby (a category, a
//! note, optionally a still of what their own screen shows of that person), and
//! may remove, deny or block them in the same step. The plugin turns blocked
//! callers away in `lobby-decision` (by device and by network, in the call, the
//! link or the whole server, until the block expires), escalates when several
//! signed-in people report the same guest, warns a link's owner when the link
//! looks leaked, and keeps a review queue for administrators, who hear of new
//! reports once per batch. Its instance-wide blocks can be shared with other
//! Confab servers, and theirs applied here ([`shared`]).
//!
//! | route | who | what |
//! | --- | --- | --- |
//! | `POST /p/spam-guard/reports` | signed in, on the call | file a report, with `action` `report`, `remove`, `deny` or `block` |
//! | `GET /p/spam-guard/reports` | administrators | the review queue, grouped by caller |
//! | `GET /p/spam-guard/reports/{id}/evidence` | administrators | a report's still |
//! | `POST /p/spam-guard/reports/{id}` | administrators | `{"status": "dismissed" \| "actioned"}`, `{"keep": true}` |
//! | `GET /p/spam-guard/blocks` | administrators | every block |
//! | `POST /p/spam-guard/blocks` | administrators | `{"report": id, "scope": "instance"}`: block that caller on the whole server |
//! | `DELETE /p/spam-guard/blocks/{id}` | administrators | unblock |
//! | `POST /p/spam-guard/lobby-lock` | signed in, on the call | `{"link", "locked"}` |
//! | `POST /p/spam-guard/suspend` | signed in, on the call | `{"link", "suspended"}`: suspend every guest (no guest's media is forwarded, the lobby locks) or resume them |
//! | `POST /p/spam-guard/rotate` | the link's owner | `{"link"}` → `{"id"}`: a new link id; guests now wait for approval |
//! | `GET /p/spam-guard/blocklist` | another server, with the `x-blocklist-token` header | this server's instance-wide network blocks as a shared list ([`shared`]) |
//! | `GET /p/spam-guard/subscriptions` | administrators | the lists this server applies: how each last fetch went, and the exceptions |
//! | `GET /p/spam-guard/shared?network=…` | administrators | whether a shared list blocks that network here: whose list, its reason, and any exception |
//! | `POST /p/spam-guard/exceptions` | administrators | `{"network", "allow"}`: never (or again) block this network because of a shared list |
//!
//! Errors are JSON, `{"error":{"code":"…","message":"…"}}`, like the server's API.
//! Addresses are shown to administrators in the queue and never written to logs.

pub mod rules;
pub mod shared;
pub mod store;

mod decide;
mod notify;
mod routes;

use confab_plugin_sdk::{Decision, HttpRequest, HttpResponse, LobbyRequest, Plugin, export_plugin};

struct SpamGuard;

impl Plugin for SpamGuard {
    fn lobby_decision(request: LobbyRequest) -> Decision {
        decide::decide(&request)
    }

    fn handle_http(request: HttpRequest) -> HttpResponse {
        routes::route(&request)
    }

    fn on_timer(name: String) {
        match name.as_str() {
            "notify-admins" => notify::admins_of_new_reports(),
            "sync-blocklists" => shared::sync_all(),
            _ => {}
        }
    }
}

export_plugin!(SpamGuard);

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A fresh random id (16 hex digits), from the sandbox's random source.
pub(crate) fn new_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_i64(now_ms());
    format!("{:016x}", hasher.finish())
}

pub(crate) fn settings() -> rules::Settings {
    rules::Settings::from(confab_plugin_sdk::config::get)
}
