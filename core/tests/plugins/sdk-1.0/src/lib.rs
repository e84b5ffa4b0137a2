//! A plugin as a 1.0 SDK user built it: the hooks of `confab:plugin@1.0.0` and one of
//! its capabilities (`kv`), bound with wit-bindgen directly.

wit_bindgen::generate!({ path: "wit", world: "plugin" });

use confab::plugin::kv;
use exports::confab::plugin::hooks::{
    Call, Decision, Event, Guest, HttpRequest, HttpResponse, LobbyRequest,
};

struct Old;

impl Guest for Old {
    fn on_event(_event: Event) {}

    fn lobby_decision(_request: LobbyRequest) -> Decision {
        Decision::Allow
    }

    /// Counts its visits in kv and says so.
    fn handle_http(_request: HttpRequest) -> HttpResponse {
        let visits = match kv::get("visits") {
            Ok(Some(v)) => String::from_utf8_lossy(&v).parse::<u64>().unwrap_or(0),
            Ok(None) => 0,
            Err(_) => {
                return HttpResponse {
                    status: 503,
                    headers: Vec::new(),
                    body: b"kv refused".to_vec(),
                };
            }
        } + 1;
        let stored = kv::set("visits", visits.to_string().as_bytes(), None).is_ok();
        HttpResponse {
            status: if stored { 200 } else { 503 },
            headers: vec![("content-type".into(), "text/plain".into())],
            body: format!("built for 1.0, visit {visits}").into_bytes(),
        }
    }

    fn on_call_message(_call: Call, _sender: u32, _payload: Vec<u8>) {}

    fn on_timer(_name: String) {}
}

export!(Old);
