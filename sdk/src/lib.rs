//! Write Confab plugins in Rust.
//!
//! A plugin is a WebAssembly component built with plain
//! `cargo build --target wasm32-wasip2` from a `cdylib` crate. It implements
//! [`Plugin`] (every hook has a default that does nothing) and names its type in
//! [`export_plugin!`]; the capabilities it may call are the modules of this crate
//! ([`log`], [`kv`], [`links`], [`users`], [`calls`], [`mail`], [`http`],
//! [`templates`], [`config`], [`moderation`]). The contract underneath is the WIT package `confab:plugin@1.3.0` in
//! `sdk/wit/`; this crate is the only place that touches its generated bindings.
//!
//! ```no_run
//! use confab_plugin_sdk::{Decision, HttpRequest, HttpResponse, LobbyRequest, Plugin, export_plugin};
//!
//! struct Hello;
//!
//! impl Plugin for Hello {
//!     fn handle_http(request: HttpRequest) -> HttpResponse {
//!         HttpResponse::text(200, format!("hello from {}", request.path))
//!     }
//!
//!     fn lobby_decision(request: LobbyRequest) -> Decision {
//!         if request.name.to_lowercase().contains("spam") {
//!             Decision::Deny("this name is not allowed".into())
//!         } else {
//!             Decision::Allow
//!         }
//!     }
//! }
//!
//! export_plugin!(Hello);
//! ```
//!
//! A capability the plugin's manifest does not ask for, or the operator did not
//! grant, returns [`Error::AccessDenied`]; it never traps.

/// The version of the WIT package this SDK implements. Embedded in every plugin
/// (custom section `confab-sdk-version`) so the server can refuse a plugin built for
/// an incompatible major version before running it.
pub const SDK_VERSION: &str = "1.3.0";

#[doc(hidden)]
#[allow(unsafe_code)] // the canonical ABI glue wit-bindgen generates
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin_bindings",
        default_bindings_module: "confab_plugin_sdk::bindings",
    });
}

use bindings::exports::confab::plugin::hooks;

pub use bindings::confab::plugin::types::{
    Call, Contact, Error, Link, LobbyRequest, Participant, Schedule,
};
pub use hooks::{Decision, Event, HttpRequest, HttpResponse, ParticipantEvent, Removal};

/// The hooks a plugin implements. The manifest's `hooks` list says which of them the
/// server calls; the others keep their defaults.
pub trait Plugin {
    /// Something happened (a link was created, a call started, someone joined …).
    fn on_event(event: Event) {
        let _ = event;
    }

    /// Decides on a lobby request before anyone on the call sees it.
    fn lobby_decision(request: LobbyRequest) -> Decision {
        let _ = request;
        Decision::Allow
    }

    /// Answers a request to `/p/{plugin}/…`.
    fn handle_http(request: HttpRequest) -> HttpResponse {
        let _ = request;
        HttpResponse::text(404, "not found")
    }

    /// A participant sent `payload` on this plugin's channel in `call`.
    fn on_call_message(call: Call, sender: u32, payload: Vec<u8>) {
        let _ = (call, sender, payload);
    }

    /// A timer declared in the manifest fired.
    fn on_timer(name: String) {
        let _ = name;
    }
}

/// Exports a type implementing [`Plugin`] as the plugin's hooks. Use it once, in the
/// plugin's crate, with a type name in scope.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ident) => {
        const _: () = {
            struct ConfabPluginExports;

            impl $crate::bindings::exports::confab::plugin::hooks::Guest for ConfabPluginExports {
                fn on_event(event: $crate::Event) {
                    <$plugin as $crate::Plugin>::on_event(event)
                }
                fn lobby_decision(request: $crate::LobbyRequest) -> $crate::Decision {
                    <$plugin as $crate::Plugin>::lobby_decision(request)
                }
                fn handle_http(request: $crate::HttpRequest) -> $crate::HttpResponse {
                    <$plugin as $crate::Plugin>::handle_http(request)
                }
                fn on_call_message(call: $crate::Call, sender: u32, payload: Vec<u8>) {
                    <$plugin as $crate::Plugin>::on_call_message(call, sender, payload)
                }
                fn on_timer(name: String) {
                    <$plugin as $crate::Plugin>::on_timer(name)
                }
            }

            // Only a component has these exports: their names (`confab:plugin/hooks@1.0.0#…`)
            // are not symbols a native library can export, and a plugin crate is also
            // built for the host when its tests run the component with confab-plugin-test.
            #[cfg(target_arch = "wasm32")]
            $crate::bindings::__export_plugin_bindings!(
                ConfabPluginExports with_types_in $crate::bindings
            );

            // On the host the hooks stay the plugin's entry points (no dead code).
            #[cfg(not(target_arch = "wasm32"))]
            let _ = (
                <$plugin as $crate::Plugin>::on_event as fn($crate::Event),
                <$plugin as $crate::Plugin>::lobby_decision
                    as fn($crate::LobbyRequest) -> $crate::Decision,
                <$plugin as $crate::Plugin>::handle_http
                    as fn($crate::HttpRequest) -> $crate::HttpResponse,
                <$plugin as $crate::Plugin>::on_call_message as fn($crate::Call, u32, Vec<u8>),
                <$plugin as $crate::Plugin>::on_timer as fn(String),
            );

            #[cfg(target_arch = "wasm32")]
            #[unsafe(link_section = "confab-sdk-version")]
            #[used]
            static CONFAB_SDK_VERSION: [u8; $crate::SDK_VERSION.len()] = $crate::__version_bytes();
        };
    };
}

#[doc(hidden)]
pub const fn __version_bytes<const N: usize>() -> [u8; N] {
    let bytes = SDK_VERSION.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

impl HttpResponse {
    /// A response with a `text/plain; charset=utf-8` body.
    pub fn text(status: u16, body: impl Into<String>) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "text/plain; charset=utf-8".into())],
            body: body.into().into_bytes(),
        }
    }

    /// A response with a `text/html; charset=utf-8` body.
    pub fn html(status: u16, body: impl Into<String>) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "text/html; charset=utf-8".into())],
            body: body.into().into_bytes(),
        }
    }

    /// A response with a JSON body (already serialized).
    pub fn json(status: u16, body: impl Into<String>) -> HttpResponse {
        HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into().into_bytes(),
        }
    }

    /// A JSON error: `{"error":"<message>"}` with `content-type: application/json`
    /// (SDK 1.1).
    ///
    /// `message` is written as a JSON string (quotes, backslashes and control
    /// characters escaped as `serde_json` escapes them). For the shape of the server's
    /// own API errors, with a machine-readable code, use
    /// [`HttpResponse::error_with_code`].
    ///
    /// ```
    /// use confab_plugin_sdk::HttpResponse;
    ///
    /// let response = HttpResponse::error(401, "sign in first");
    /// assert_eq!(response.status, 401);
    /// assert_eq!(
    ///     response.headers,
    ///     vec![("content-type".to_string(), "application/json".to_string())]
    /// );
    /// assert_eq!(response.body, br#"{"error":"sign in first"}"#.to_vec());
    /// ```
    pub fn error(status: u16, message: impl Into<String>) -> HttpResponse {
        let mut body = String::from(r#"{"error":"#);
        push_json_string(&mut body, &message.into());
        body.push('}');
        HttpResponse::json(status, body)
    }

    /// A JSON error in the shape of the server's own API errors:
    /// `{"error":{"code":"<code>","message":"<message>"}}` with
    /// `content-type: application/json` (SDK 1.1).
    ///
    /// `code` is for programs (`not_found`, `invalid_schedule` …), `message` for
    /// people; both are written as JSON strings (escaped as `serde_json` escapes them).
    ///
    /// ```
    /// use confab_plugin_sdk::HttpResponse;
    ///
    /// let response = HttpResponse::error_with_code(404, "not_found", "No such \"link\".");
    /// assert_eq!(response.status, 404);
    /// assert_eq!(
    ///     response.body,
    ///     br#"{"error":{"code":"not_found","message":"No such \"link\"."}}"#.to_vec()
    /// );
    /// ```
    pub fn error_with_code(
        status: u16,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> HttpResponse {
        let mut body = String::from(r#"{"error":{"code":"#);
        push_json_string(&mut body, &code.into());
        body.push_str(r#","message":"#);
        push_json_string(&mut body, &message.into());
        body.push_str("}}");
        HttpResponse::json(status, body)
    }

    /// Adds a header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// Appends `text` to `out` as a JSON string, quoted and escaped byte for byte as
/// `serde_json` writes it: `"`, `\`, and the control characters below U+0020
/// (`\b`, `\f`, `\n`, `\r`, `\t`, the others as `\u00xx`); everything else as it is.
fn push_json_string(out: &mut String, text: &str) {
    out.reserve(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                let b = u32::from(c) as usize;
                out.push_str("\\u00");
                out.push(char::from(HEX[b >> 4]));
                out.push(char::from(HEX[b & 0xf]));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

impl HttpRequest {
    /// The first header called `name` (names are lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text, if it is.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }
}

/// Writing to the server's log, under the plugin's name.
pub mod log {
    use crate::bindings::confab::plugin::log::{Level, log};

    pub fn trace(message: &str) {
        log(Level::Trace, message);
    }
    pub fn debug(message: &str) {
        log(Level::Debug, message);
    }
    pub fn info(message: &str) {
        log(Level::Info, message);
    }
    pub fn warn(message: &str) {
        log(Level::Warn, message);
    }
    pub fn error(message: &str) {
        log(Level::Error, message);
    }
}

/// The plugin's own key-value store (needs the `kv` permission).
pub mod kv {
    use crate::Error;
    use crate::bindings::confab::plugin::kv;
    use std::time::Duration;

    /// The value under `key`, if present and not expired.
    pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
        kv::get(key)
    }

    /// The value under `key` as text (invalid UTF-8 counts as absent).
    pub fn get_string(key: &str) -> Result<Option<String>, Error> {
        Ok(kv::get(key)?.and_then(|v| String::from_utf8(v).ok()))
    }

    /// Stores `value` under `key` for good.
    pub fn set(key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        kv::set(key, value.as_ref(), None)
    }

    /// Stores `value` under `key` until `ttl` has passed (whole seconds, at least one).
    pub fn set_with_ttl(key: &str, value: impl AsRef<[u8]>, ttl: Duration) -> Result<(), Error> {
        let seconds = ttl.as_secs().clamp(1, u64::from(u32::MAX)) as u32;
        kv::set(key, value.as_ref(), Some(seconds))
    }

    pub fn delete(key: &str) -> Result<(), Error> {
        kv::delete(key)
    }

    /// Keys starting with `prefix`, in byte order, at most `limit`, after `after`.
    pub fn keys(prefix: &str, after: Option<&str>, limit: u32) -> Result<Vec<String>, Error> {
        kv::keys(prefix, after, limit)
    }

    /// The values under up to 1000 keys, in their order (SDK 1.1).
    pub fn get_many(keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        kv::get_many(keys)
    }

    /// Stores up to 1000 entries, without expiry: all, or none (SDK 1.1).
    pub fn set_many(entries: &[(String, Vec<u8>)]) -> Result<(), Error> {
        kv::set_many(entries)
    }
}

/// Call links, on behalf of a user (needs the `links` permission).
pub mod links {
    use crate::bindings::confab::plugin::links;
    pub use crate::bindings::confab::plugin::links::{CreatedLink, NewLink};
    use crate::{Error, Link, Schedule};

    /// A new link; its `url` is the full link with the secret (`#k=…`), which the
    /// server gives only here.
    pub fn create(as_user: i64, params: &NewLink) -> Result<CreatedLink, Error> {
        links::create(as_user, params)
    }
    /// A new link with its schedule on the server's record (SDK 1.1).
    pub fn create_scheduled(
        as_user: i64,
        params: &NewLink,
        schedule: &Schedule,
    ) -> Result<CreatedLink, Error> {
        links::create_scheduled(as_user, params, schedule)
    }
    /// Up to 1000 new links at once, in order; each is checked before any is made
    /// (SDK 1.1).
    pub fn create_many(as_user: i64, params: &[NewLink]) -> Result<Vec<CreatedLink>, Error> {
        links::create_many(as_user, params)
    }
    /// The schedule of link `id`, if it has one (SDK 1.1).
    pub fn schedule(id: &str) -> Result<Option<Schedule>, Error> {
        links::get_schedule(id)
    }
    /// Sets or clears the schedule of an active link of `as_user` (SDK 1.1).
    pub fn set_schedule(as_user: i64, id: &str, schedule: Option<&Schedule>) -> Result<(), Error> {
        links::set_schedule(as_user, id, schedule)
    }
    pub fn get(id: &str) -> Result<Link, Error> {
        links::get(id)
    }
    pub fn list(as_user: i64) -> Result<Vec<Link>, Error> {
        links::list_owned(as_user)
    }
    pub fn revoke(as_user: i64, id: &str) -> Result<(), Error> {
        links::revoke(as_user, id)
    }
}

/// Accounts (needs the `users` permission; SDK 1.1).
pub mod users {
    use crate::bindings::confab::plugin::users;
    use crate::{Contact, Error};

    /// The name and address of `as_user`, who must be the user the plugin acts for.
    pub fn contact(as_user: i64) -> Result<Contact, Error> {
        users::get_contact(as_user)
    }

    /// Whether `as_user`, who must be the user the plugin acts for, is an
    /// administrator of this server (since 1.2).
    pub fn is_admin(as_user: i64) -> Result<bool, Error> {
        users::is_admin(as_user)
    }
}

/// Live calls (needs the `calls` permission).
pub mod calls {
    use crate::bindings::confab::plugin::calls;
    use crate::{Error, Participant};

    /// Who is on the call of `link` now.
    pub fn roster(link: &str) -> Result<Vec<Participant>, Error> {
        calls::roster(link)
    }
    /// Sends `payload` on this plugin's channel to everyone on the call.
    pub fn broadcast(link: &str, payload: &[u8]) -> Result<(), Error> {
        calls::send(link, None, payload)
    }
    /// Sends `payload` on this plugin's channel to one participant.
    pub fn send_to(link: &str, participant: u32, payload: &[u8]) -> Result<(), Error> {
        calls::send(link, Some(participant), payload)
    }
    /// Removes a participant as the signed-in user `as_user` would.
    pub fn remove(link: &str, as_user: i64, participant: u32) -> Result<(), Error> {
        calls::remove(link, as_user, participant)
    }
    /// Who is in this plugin's shared activity on the call of `link`, in the
    /// order they joined (empty when none runs); never what they share, which
    /// stays end-to-end encrypted between their pages (since 1.3).
    pub fn activity(link: &str) -> Result<Vec<ActivityMember>, Error> {
        calls::activity(link)
    }
    pub use crate::bindings::confab::plugin::calls::{ActivityMember, ActivityRole};
}

/// Mail through the server's durable outbox (needs the `mail` permission).
pub mod mail {
    use crate::Error;
    use crate::bindings::confab::plugin::mail;
    pub use crate::bindings::confab::plugin::mail::{Attachment, Message};

    /// `Name <address>` for `to`, `cc` or `reply_to`: the name in double quotes
    /// when it has characters that mean something in an address (`@`, `,`, `.` …),
    /// control characters dropped; the address alone when the name is empty.
    pub fn mailbox(name: &str, address: &str) -> String {
        let name: String = name.chars().filter(|c| !c.is_control()).collect();
        let name = name.trim();
        if name.is_empty() {
            address.to_string()
        } else if name.contains([
            '(', ')', '<', '>', '[', ']', ':', ';', '@', '\\', ',', '.', '"',
        ]) {
            let quoted = name.replace('\\', "\\\\").replace('"', "\\\"");
            format!("\"{quoted}\" <{address}>")
        } else {
            format!("{name} <{address}>")
        }
    }

    /// Queues a message; returns its outbox id.
    pub fn queue(message: &Message) -> Result<String, Error> {
        mail::queue(message)
    }

    /// Queues a message with RFC 8058 one-click unsubscribe: `List-Unsubscribe:
    /// <unsubscribe_url>` and `List-Unsubscribe-Post: List-Unsubscribe=One-Click`
    /// (since 1.2). The URL is `https` (or on the server's own address); the
    /// plugin answers the `POST` a mail provider sends there.
    pub fn queue_with_unsubscribe(
        message: &Message,
        unsubscribe_url: &str,
    ) -> Result<String, Error> {
        mail::queue_with_unsubscribe(message, unsubscribe_url)
    }
}

/// Outbound HTTP to allowed hosts (needs the `http` permission).
pub mod http {
    use crate::Error;
    use crate::bindings::confab::plugin::http_client;
    pub use crate::bindings::confab::plugin::http_client::{Request, Response};

    pub fn send(request: &Request) -> Result<Response, Error> {
        http_client::send(request)
    }

    /// A GET request with no headers.
    pub fn get(url: &str) -> Result<Response, Error> {
        http_client::send(&Request {
            method: "GET".into(),
            url: url.into(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout_ms: None,
        })
    }
}

/// Templates shipped with the plugin (needs the `templates` permission).
pub mod templates {
    use crate::Error;
    use crate::bindings::confab::plugin::templates;

    /// Renders template `name` with `context`, a JSON object as text.
    pub fn render(name: &str, context: &str) -> Result<String, Error> {
        templates::render(name, context)
    }
}

/// Settings the operator gave this plugin.
pub mod config {
    use crate::bindings::confab::plugin::config;

    pub fn get(key: &str) -> Option<String> {
        config::get(key)
    }

    /// The server's public base URL without a trailing slash, e.g.
    /// `https://meet.example.org` (SDK 1.1).
    pub fn public_url() -> String {
        config::public_url()
    }
}

/// Keeping unwanted callers out (needs the `moderation` permission; SDK 1.2): where
/// a caller came from, denying and locking as a signed-in user, rotating a leaked
/// link, and who the administrators are.
pub mod moderation {
    use crate::bindings::confab::plugin::moderation;
    pub use crate::bindings::confab::plugin::moderation::Origin;
    pub use crate::links::CreatedLink;
    use crate::{Contact, Error};

    /// The origin of the lobby request being decided (only in `lobby_decision`).
    pub fn screened_origin() -> Result<Origin, Error> {
        moderation::screened_origin()
    }
    /// The origin of a request waiting in the lobby of the call on `link`.
    pub fn request_origin(link: &str, request: u32) -> Result<Origin, Error> {
        moderation::request_origin(link, request)
    }
    /// The origin of a participant of the call on `link`.
    pub fn participant_origin(link: &str, participant: u32) -> Result<Origin, Error> {
        moderation::participant_origin(link, participant)
    }
    /// Denies a waiting request as the signed-in user `as_user`, who is on the call.
    pub fn deny_request(link: &str, as_user: i64, request: u32) -> Result<(), Error> {
        moderation::deny_request(link, as_user, request)
    }
    /// Locks or unlocks the lobby as the signed-in user `as_user`, who is on the call.
    pub fn lock_lobby(link: &str, as_user: i64, locked: bool) -> Result<(), Error> {
        moderation::lock_lobby(link, as_user, locked)
    }
    /// Suspends (or resumes) every guest of the call as `as_user`, who is on it: no
    /// guest's media is forwarded and the lobby is locked.
    pub fn suspend_guests(link: &str, as_user: i64, suspended: bool) -> Result<(), Error> {
        moderation::suspend_guests(link, as_user, suspended)
    }
    /// A new id and secret for link `id` of `as_user`; guests wait for approval.
    pub fn rotate_link(as_user: i64, id: &str) -> Result<CreatedLink, Error> {
        moderation::rotate_link(as_user, id)
    }
    /// Whether `user` is an administrator.
    pub fn is_admin(user: i64) -> Result<bool, Error> {
        moderation::is_admin(user)
    }
    /// The administrators' names and addresses.
    pub fn admins() -> Result<Vec<Contact>, Error> {
        moderation::admins()
    }
    /// Anyone's name and address.
    pub fn contact(user: i64) -> Result<Contact, Error> {
        moderation::contact_of(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_version_is_the_wit_package_version() {
        let world = include_str!("../wit/world.wit");
        assert!(
            world.starts_with(&format!("package confab:plugin@{SDK_VERSION};")),
            "sdk/wit/world.wit declares another version than SDK_VERSION"
        );
        let bytes: [u8; SDK_VERSION.len()] = __version_bytes();
        assert_eq!(&bytes, SDK_VERSION.as_bytes());
    }

    #[test]
    fn mailboxes_quote_names_that_would_break_the_address() {
        use super::mail::mailbox;
        assert_eq!(
            mailbox("Ana Lima", "ana@example.org"),
            "Ana Lima <ana@example.org>"
        );
        assert_eq!(mailbox(" ", "ana@example.org"), "ana@example.org");
        assert_eq!(
            mailbox("User ana@example.org", "ana@example.org"),
            "\"User ana@example.org\" <ana@example.org>"
        );
        assert_eq!(
            mailbox("Lima, \"Ana\"\r\n", "ana@example.org"),
            "\"Lima, \\\"Ana\\\"\" <ana@example.org>"
        );
    }

    #[test]
    fn responses_carry_their_content_type() {
        let r = HttpResponse::json(201, "{}").with_header("x-a", "b");
        assert_eq!(r.status, 201);
        assert_eq!(
            r.headers,
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("x-a".to_string(), "b".to_string())
            ]
        );
    }

    #[test]
    fn errors_are_json_with_their_status() {
        let json = vec![("content-type".to_string(), "application/json".to_string())];

        let plain = HttpResponse::error(401, "sign in first");
        assert_eq!(plain.status, 401);
        assert_eq!(plain.headers, json);
        assert_eq!(plain.body, br#"{"error":"sign in first"}"#.to_vec());

        let coded = HttpResponse::error_with_code(422, "invalid_schedule", "Too long.")
            .with_header("allow", "GET");
        assert_eq!(coded.status, 422);
        assert_eq!(
            coded.headers,
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("allow".to_string(), "GET".to_string())
            ]
        );
        assert_eq!(
            coded.body,
            br#"{"error":{"code":"invalid_schedule","message":"Too long."}}"#.to_vec()
        );
    }

    #[test]
    fn error_messages_are_escaped_as_serde_json_escapes_them() {
        let message = "say \"hi\" \\ now\n\r\t\u{08}\u{0c}\u{01}\u{1f}\u{7f} é ✓ </p>";
        let del = '\u{7f}';
        let expected =
            format!(r#"{{"error":"say \"hi\" \\ now\n\r\t\b\f\u0001\u001f{del} é ✓ </p>"}}"#);
        assert_eq!(
            String::from_utf8(HttpResponse::error(500, message).body).unwrap(),
            expected
        );
        let coded = HttpResponse::error_with_code(400, "a\"b", "");
        assert_eq!(
            String::from_utf8(coded.body).unwrap(),
            r#"{"error":{"code":"a\"b","message":""}}"#
        );
    }
}
