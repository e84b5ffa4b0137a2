//! Test Confab plugins: run a built component against mocked capabilities, in
//! memory, and assert on what it did.
//!
//! A [`Harness`] loads a plugin's component (`wasm32-wasip2`) and its `plugin.toml`
//! and calls its hooks the way the server does: each call in a fresh sandbox with
//! the manifest's memory limit and a deadline, only the hooks, events and timers the
//! manifest lists, and every capability checked against the manifest's
//! `[permissions]` (all granted, unless the test [denies](Harness::deny) one), so a
//! capability the plugin may not use answers `access-denied` just as it would on a
//! server. The capabilities answer from memory: a key-value store that honours
//! expiry and the manifest's quota, links, live calls with rosters the test sets,
//! an outbox, outbound HTTP with responses the test scripts, the plugin's own
//! templates (on top of the server's shared mail frame, `email/base.html` and
//! `email/base.txt`, which they may extend and which plugins may render too) and its
//! settings. No database, no network, no server.
//!
//! In a plugin crate, with `confab-plugin-test` as a dev-dependency, a test in
//! `tests/` reads:
//!
//! ```no_run
//! use confab_plugin_test::{Decision, Harness, HttpRequest};
//!
//! // Builds the crate for wasm32-wasip2 (once per test run) and loads it.
//! let mut plugin = Harness::from_crate(env!("CARGO_MANIFEST_DIR")).config("greeting", "Hi");
//!
//! let page = plugin.http(HttpRequest::get("/?name=Ana"));
//! assert_eq!(page.status, 200);
//! assert!(page.body_text().contains("Hi, Ana!"));
//! assert_eq!(plugin.kv_string("visits").as_deref(), Some("1"));
//!
//! let link = plugin.add_link(7, "Standup");
//! let call = plugin.start_call(&link.id);
//! let request = plugin.lobby_request(&call, "Ana");
//! assert_eq!(plugin.lobby_decision(request), Decision::Allow);
//! ```
//!
//! What the harness does not do on its own: deliver the events that follow from the
//! plugin's own actions (a link it creates does not come back as `link-created`; pass
//! the event with [`Harness::event`] if the test needs it), run timers on a schedule
//! ([`Harness::timer`] fires one now) or check the component's SDK version.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store, StoreLimitsBuilder, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{HostWallClock, WasiCtx};

mod cargo;
mod host;
mod manifest;

/// The host side of the WIT world `confab:plugin/plugin` (sdk/wit).
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "confab:plugin/plugin",
        additional_derives: [PartialEq, Eq],
    });
}

/// A member of the plugin's shared activity and their role (`calls.activity`, SDK 1.3).
pub use bindings::confab::plugin::calls::{ActivityMember, ActivityRole};
/// A request the plugin sends with `http-client`.
pub use bindings::confab::plugin::http_client::Request as OutboundRequest;
/// The answer to an [`OutboundRequest`], as the test scripts it.
pub use bindings::confab::plugin::http_client::Response as OutboundResponse;
pub use bindings::confab::plugin::links::CreatedLink;
pub use bindings::confab::plugin::log::Level;
pub use bindings::confab::plugin::mail::{Attachment, Message as MailMessage};
/// Where a caller came from (`moderation`, SDK 1.2).
pub use bindings::confab::plugin::moderation::Origin;
pub use bindings::confab::plugin::types::{
    Call, Contact, Error, Link, LobbyRequest, Participant, Schedule,
};
pub use bindings::exports::confab::plugin::hooks::{
    Decision, Event, HttpRequest, HttpResponse, ParticipantEvent, Removal,
};
pub use cargo::build;
pub use host::{
    DeniedRequest, LogLine, PUBLIC_URL, QueuedMail, REMOVAL_WINDOW_MS, RemovedParticipant,
    SentMessage,
};
pub use manifest::Capability;

use bindings::{Plugin, PluginPre};
use host::{HostState, LiveCall, Setup, World};

/// When the harness clock starts: 2026-01-01T00:00:00Z, in Unix milliseconds.
pub const START_TIME_MS: i64 = 1_767_225_600_000;
/// How long one hook may run unless the test says otherwise ([`Harness::deadline`]).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(5);
/// The largest payload a participant can send on a plugin's channel; the server
/// passes nothing larger to `on-call-message`.
pub use confab_plugin_contract::limits::MAX_CALL_MESSAGE_BYTES;
/// How often the engine's epoch advances; deadlines are counted in these ticks.
const TICK: Duration = Duration::from_millis(10);
/// Request headers the server never passes to a plugin.
const WITHHELD_HEADERS: [&str; 4] = [
    "cookie",
    "authorization",
    "x-csrf-token",
    "proxy-authorization",
];
/// Response headers the server drops from a plugin's answer.
const SERVER_HEADERS: [&str; 12] = [
    "set-cookie",
    "content-security-policy",
    "content-security-policy-report-only",
    "x-frame-options",
    "strict-transport-security",
    "x-content-type-options",
    "referrer-policy",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "upgrade",
];

/// Why a hook did not run to its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The server would not make this call: `plugin.toml` does not list the hook,
    /// the event or the timer (or the input is one the server never passes on).
    NotCalled(String),
    /// The plugin trapped (a panic), ran past its deadline, ran out of memory or
    /// answered something the server refuses. On a server this counts as a failure
    /// (`502 plugin_failed` for an HTTP request; the fallback for a lobby decision).
    Failed(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NotCalled(why) => write!(f, "the server would not call the plugin: {why}"),
            Failure::Failed(why) => write!(f, "the plugin failed: {why}"),
        }
    }
}

impl std::error::Error for Failure {}

/// A plugin loaded into a mocked server: the hooks to call (`http`, `event`,
/// `lobby_decision`, `call_message`, `timer`, each with a `try_` form that returns
/// a [`Failure`] instead of panicking), the state the plugin sees (links, calls,
/// key-value entries, the clock) and what it did (logs, mails, messages, removals,
/// outbound requests).
pub struct Harness {
    pre: PluginPre<HostState>,
    setup: Arc<Setup>,
    world: World,
    deadline: Duration,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("plugin", &self.setup.manifest.name)
            .field("denied", &self.setup.denied)
            .field("deadline", &self.deadline)
            .field("world", &self.world)
            .finish_non_exhaustive()
    }
}

impl Harness {
    /// Builds the plugin crate in `crate_dir` with [`build`] and loads it with its
    /// `plugin.toml` and `templates/`.
    ///
    /// # Panics
    ///
    /// When the build fails or the plugin cannot be loaded (see [`Harness::new`]).
    pub fn from_crate(crate_dir: impl AsRef<Path>) -> Self {
        let crate_dir = crate_dir.as_ref();
        Self::new(build(crate_dir), crate_dir)
    }

    /// Loads the component `wasm` with the `plugin.toml` and `templates/` of
    /// `plugin_dir` (a plugin's crate, or a directory installed for a server).
    ///
    /// Every capability the manifest asks for is granted; settings take the
    /// manifest's defaults; the clock reads [`START_TIME_MS`].
    ///
    /// # Panics
    ///
    /// When a file cannot be read, the manifest is not TOML, a template does not
    /// parse, or the component does not fit the `confab:plugin@1` world.
    pub fn new(wasm: impl AsRef<Path>, plugin_dir: impl AsRef<Path>) -> Self {
        let dir = plugin_dir.as_ref();
        let path = dir.join("plugin.toml");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let manifest = manifest::Manifest::parse(&text)
            .unwrap_or_else(|e| panic!("{} is not a manifest: {e}", path.display()));
        Self {
            pre: prepare(wasm.as_ref()),
            setup: Arc::new(Setup {
                manifest,
                denied: Default::default(),
                config: Default::default(),
                templates: load_templates(&dir.join("templates")),
                http_hosts: Vec::new(),
            }),
            world: World {
                now: START_TIME_MS,
                ..World::default()
            },
            deadline: DEFAULT_DEADLINE,
        }
    }

    /// Gives the plugin the setting `key` (as the operator does in
    /// `plugins.settings.NAME.config`), over the manifest's default.
    ///
    /// # Panics
    ///
    /// When `plugin.toml` does not declare `key` under `[config]`: the server
    /// refuses to load a plugin with such a setting.
    pub fn config(mut self, key: &str, value: &str) -> Self {
        assert!(
            self.setup.manifest.config.contains_key(key),
            "plugin.toml declares no [config.{key}]: the server would refuse this setting"
        );
        let setup = Arc::make_mut(&mut self.setup);
        setup.config.insert(key.into(), value.into());
        self
    }

    /// Lets `http-client` call `host` (exact, or `*.domain`) too, as an operator
    /// who lists it in `plugins.settings.NAME.http_hosts`.
    ///
    /// # Panics
    ///
    /// When the manifest does not let the operator add hosts
    /// (`http-client = { …, operator-hosts = true }`): the server would refuse to
    /// load the plugin with that setting.
    pub fn allow_http_host(mut self, host: &str) -> Self {
        assert!(
            self.setup.manifest.http_operator_hosts(),
            "plugin.toml does not let the operator add hosts (permissions.http-client.operator-hosts)"
        );
        Arc::make_mut(&mut self.setup).http_hosts.push(host.into());
        self
    }

    /// Withholds `capability`, as an operator who leaves it out of
    /// `plugins.settings.NAME.grant`: the plugin's calls get `access-denied`.
    pub fn deny(mut self, capability: Capability) -> Self {
        Arc::make_mut(&mut self.setup).denied.insert(capability);
        self
    }

    /// How long one hook may run (wall clock, instantiation included) before it is
    /// stopped with [`Failure::Failed`]. [`DEFAULT_DEADLINE`] unless set; a test
    /// machine is slower than a server, so the manifest's `deadline-ms` is not used.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// Answers the plugin's outbound requests to exactly `url` (any method) with
    /// `response`. Requests nothing answers fail with `unavailable`, as when the
    /// network is down.
    pub fn respond(self, url: &str, response: OutboundResponse) -> Self {
        let url = url.to_string();
        self.respond_with(move |request| (request.url == url).then(|| response.clone()))
    }

    /// Answers the plugin's outbound requests with `responder`; it returns `None`
    /// for requests it does not answer. Responders are asked in the order they were
    /// added.
    pub fn respond_with(
        mut self,
        responder: impl FnMut(&OutboundRequest) -> Option<OutboundResponse> + Send + 'static,
    ) -> Self {
        self.world.responders.push(Box::new(responder));
        self
    }

    // The clock.

    /// The harness clock, in Unix milliseconds. The plugin's capabilities (expiry,
    /// timestamps, the mail limit) and its WASI wall clock (`SystemTime::now()`)
    /// read it.
    pub fn now(&self) -> i64 {
        self.world.now
    }

    /// Sets the clock to `unix_ms`.
    pub fn set_now(&mut self, unix_ms: i64) {
        self.world.now = unix_ms;
    }

    /// Moves the clock forward.
    pub fn advance(&mut self, by: Duration) {
        self.world.now += i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
    }

    // The world the plugin sees.

    /// Adds a link, as `owner` would create it through the REST API (the plugin is
    /// not told; pass [`Event::LinkCreated`] to tell it).
    ///
    /// # Panics
    ///
    /// When `title` is not 1 to 200 characters without control characters.
    pub fn add_link(&mut self, owner: i64, title: &str) -> Link {
        self.world
            .new_link(owner, title, None)
            .unwrap_or_else(|e| panic!("cannot add the link: {e:?}"))
    }

    /// Every link, oldest first: those added by the test and those the plugin
    /// created, as they are now (revoked ones with `revoked_at`).
    pub fn links(&self) -> &[Link] {
        &self.world.links
    }

    /// The links the plugin created with `links.create`, as it got them back.
    pub fn links_created(&self) -> &[CreatedLink] {
        &self.world.created
    }

    /// The schedule the server keeps for link `id` (set with
    /// `links.create-scheduled` or `links.set-schedule`, or by [`Harness::set_schedule`]).
    pub fn schedule(&self, id: &str) -> Option<&Schedule> {
        self.world.schedules.get(id)
    }

    /// Gives link `id` a schedule, as its owner would through the REST API.
    pub fn set_schedule(&mut self, id: &str, schedule: Schedule) {
        self.world.schedules.insert(id.to_string(), schedule);
    }

    /// Removes the schedule of link `id`, as its owner would through the REST API.
    pub fn clear_schedule(&mut self, id: &str) {
        self.world.schedules.remove(id);
    }

    /// Sets the name and address `users.contact` answers for `user` (by default
    /// `User {id}` and `user{id}@confab.test`).
    pub fn set_contact(&mut self, user: i64, name: &str, email: &str) {
        self.world.contacts.insert(
            user,
            Contact {
                name: name.to_string(),
                email: email.to_string(),
            },
        );
    }

    /// Starts a call on `link` (with nobody on it yet) and returns it.
    ///
    /// # Panics
    ///
    /// When there is no such link, it is revoked, or a call is already running.
    pub fn start_call(&mut self, link: &str) -> Call {
        let known = self.world.links.iter().find(|l| l.id == link);
        let known = known.unwrap_or_else(|| panic!("no link {link:?}: add it with add_link"));
        assert!(known.revoked_at.is_none(), "link {link:?} is revoked");
        assert!(
            !self.world.calls.contains_key(link),
            "a call is already running on {link:?}"
        );
        let call = Call {
            link: link.into(),
            id: format!("call{}", self.world.next_id()),
            started_at: self.world.now,
        };
        let live = LiveCall::new(call.clone());
        self.world.calls.insert(link.into(), live);
        call
    }

    /// Puts someone on the call of `link`, joining now: a guest (`user: None`) or
    /// a signed-in member. Participant ids count from 1 in each call. The plugin is
    /// not told; pass [`Event::ParticipantJoined`] to tell it.
    ///
    /// # Panics
    ///
    /// When no call is running on `link`.
    pub fn join(&mut self, link: &str, name: &str, user: Option<i64>) -> Participant {
        let now = self.world.now;
        let live = self.live_call(link);
        let participant = Participant {
            id: live.next_participant,
            name: name.into(),
            user,
            joined_at: now,
        };
        live.next_participant += 1;
        live.roster.push(participant.clone());
        participant
    }

    /// [`Harness::join`] from `origin` (what `moderation.participant-origin` answers).
    ///
    /// # Panics
    ///
    /// When no call is running on `link`.
    pub fn join_from(
        &mut self,
        link: &str,
        name: &str,
        user: Option<i64>,
        origin: Origin,
    ) -> Participant {
        let participant = self.join(link, name, user);
        self.live_call(link).origins.insert(participant.id, origin);
        participant
    }

    /// Puts a request from `name`, coming from `origin`, in the lobby of the call on
    /// `link` (for `moderation.request-origin` and `deny-request`) and returns its
    /// number. The plugin is not told; pass [`Event::LobbyRequest`] to tell it.
    ///
    /// # Panics
    ///
    /// When no call is running on `link`.
    pub fn wait_in_lobby(&mut self, link: &str, name: &str, origin: Origin) -> u32 {
        let live = self.live_call(link);
        let number = live.next_request;
        live.next_request += 1;
        live.lobby.push((number, name.into(), origin));
        number
    }

    /// Who waits in the lobby of `link`: request numbers and names.
    pub fn lobby(&self, link: &str) -> Vec<(u32, String)> {
        self.world.calls.get(link).map_or_else(Vec::new, |c| {
            c.lobby
                .iter()
                .map(|(n, name, _)| (*n, name.clone()))
                .collect()
        })
    }

    /// Whether the plugin locked the lobby of the call on `link`.
    pub fn lobby_locked(&self, link: &str) -> bool {
        self.world.calls.get(link).is_some_and(|c| c.lobby_locked)
    }

    /// Whether the plugin suspended the guests of the call on `link`.
    pub fn guests_suspended(&self, link: &str) -> bool {
        self.world
            .calls
            .get(link)
            .is_some_and(|c| c.guests_suspended)
    }

    /// Lobby requests the plugin denied, oldest first.
    pub fn denials(&self) -> &[DeniedRequest] {
        &self.world.denials
    }

    /// Links the plugin rotated: (old id, new id), oldest first.
    pub fn rotations(&self) -> &[(String, String)] {
        &self.world.rotations
    }

    /// Makes `user` an administrator (`users.is-admin`, `moderation.is-admin` and
    /// `admins`); give them a name and address with [`Harness::set_contact`] (else
    /// `User {id}` at `user{id}@confab.test`, as for `users.get-contact`).
    pub fn add_admin(&mut self, user: i64) {
        self.world.admins.insert(user);
    }

    /// Takes a participant off the call of `link`.
    ///
    /// # Panics
    ///
    /// When no call is running on `link`.
    pub fn leave(&mut self, link: &str, participant: u32) {
        self.live_call(link).roster.retain(|p| p.id != participant);
    }

    /// Ends the call of `link`; the link stays.
    pub fn end_call(&mut self, link: &str) {
        self.world.calls.remove(link);
    }

    /// Puts the participants `members` (participant number and role, the first
    /// its host) into the plugin's shared activity on the call of `link`, as
    /// `calls.activity` then answers; an empty list ends it. What the members
    /// share never reaches a plugin, so there is nothing else to set.
    ///
    /// # Panics
    ///
    /// When no call is running on `link`.
    pub fn set_activity(&mut self, link: &str, members: &[(u32, ActivityRole)]) {
        let live = self.live_call(link);
        live.activity = members
            .iter()
            .map(|&(participant, role)| ActivityMember { participant, role })
            .collect();
    }

    /// Who is on the call of `link` (empty when none is running).
    pub fn roster(&self, link: &str) -> &[Participant] {
        self.world
            .calls
            .get(link)
            .map_or(&[], |c| c.roster.as_slice())
    }

    /// A lobby request from `name` for `call`, asked now, as the lobby-decision
    /// hook gets it (request number 0, no address).
    pub fn lobby_request(&self, call: &Call, name: &str) -> LobbyRequest {
        LobbyRequest {
            call: call.clone(),
            request: 0,
            name: name.into(),
            address: None,
            asked_at: self.world.now,
        }
    }

    /// [`Harness::lobby_request`] from `address`, coming from `origin`: what
    /// `moderation.screened-origin` answers while the next lobby decision runs.
    pub fn lobby_request_from(
        &mut self,
        call: &Call,
        name: &str,
        address: &str,
        origin: Origin,
    ) -> LobbyRequest {
        self.world.screening = Some(origin);
        LobbyRequest {
            address: Some(address.into()),
            ..self.lobby_request(call, name)
        }
    }

    fn live_call(&mut self, link: &str) -> &mut LiveCall {
        self.world
            .calls
            .get_mut(link)
            .unwrap_or_else(|| panic!("no call is running on {link:?}: start one with start_call"))
    }

    /// The plugin's key-value entry `key`, unless it expired.
    pub fn kv_get(&self, key: &str) -> Option<Vec<u8>> {
        self.world.kv_live(key).map(|e| e.value.clone())
    }

    /// The entry `key` as text (`None` when absent, expired or not UTF-8).
    pub fn kv_string(&self, key: &str) -> Option<String> {
        String::from_utf8(self.kv_get(key)?).ok()
    }

    /// When the entry `key` expires (Unix milliseconds), if it was stored with a
    /// time to live.
    pub fn kv_expires_at(&self, key: &str) -> Option<i64> {
        self.world.kv_live(key)?.expires_at
    }

    /// The plugin's live keys, in byte order.
    pub fn kv_keys(&self) -> Vec<String> {
        let keys = self.world.kv.keys();
        keys.filter(|k| self.world.kv_live(k).is_some())
            .cloned()
            .collect()
    }

    /// Stores an entry for good, as if the plugin had stored it earlier.
    pub fn kv_set(&mut self, key: &str, value: impl Into<Vec<u8>>) {
        let entry = host::KvEntry {
            value: value.into(),
            expires_at: None,
        };
        self.world.kv_put(key.into(), entry);
    }

    // What the plugin did.

    /// What the plugin logged, oldest first (its stdout and stderr after its
    /// `log` calls of the same hook).
    pub fn logs(&self) -> &[LogLine] {
        &self.world.logs
    }

    /// The mails the plugin queued, with their full content.
    pub fn mails(&self) -> &[QueuedMail] {
        &self.world.mails
    }

    /// The messages the plugin sent on its channel in calls.
    pub fn sent_call_messages(&self) -> &[SentMessage] {
        &self.world.sent
    }

    /// The participants the plugin removed from calls.
    pub fn removals(&self) -> &[RemovedParticipant] {
        &self.world.removals
    }

    /// The outbound HTTP requests the plugin made (those that passed the checks,
    /// answered or not).
    pub fn http_requests(&self) -> &[OutboundRequest] {
        &self.world.http_requests
    }

    // The hooks.

    /// Passes an HTTP request to `/p/{plugin}{path}` to the plugin and returns its
    /// answer as the server would send it (the server's own headers such as
    /// `set-cookie` dropped). Credentials (`cookie`, `authorization` …) are removed
    /// from the request as the server does; [`HttpRequest::with_user`] sets the
    /// signed-in user, whom the plugin may act for.
    ///
    /// # Panics
    ///
    /// On a [`Failure`]; see [`Harness::try_http`].
    pub fn http(&mut self, request: HttpRequest) -> HttpResponse {
        self.try_http(request).unwrap_or_else(|f| panic!("{f}"))
    }

    /// [`Harness::http`], returning a failure instead of panicking.
    pub fn try_http(&mut self, mut request: HttpRequest) -> Result<HttpResponse, Failure> {
        self.wants("http")?;
        for (name, _) in &mut request.headers {
            name.make_ascii_lowercase();
        }
        request
            .headers
            .retain(|(name, _)| !WITHHELD_HEADERS.contains(&name.as_str()));
        let user = request.user;
        let mut response = self.invoke(user, |p, s| {
            p.confab_plugin_hooks().call_handle_http(s, &request)
        })?;
        if !(200..=599).contains(&response.status) {
            return Err(Failure::Failed(format!(
                "answered with an invalid status {}",
                response.status
            )));
        }
        response
            .headers
            .retain(|(name, _)| !SERVER_HEADERS.contains(&name.to_ascii_lowercase().as_str()));
        Ok(response)
    }

    /// Delivers an event. For link events the plugin may act as the link's owner,
    /// as on the server.
    ///
    /// # Panics
    ///
    /// On a [`Failure`]; see [`Harness::try_event`].
    pub fn event(&mut self, event: Event) {
        self.try_event(event).unwrap_or_else(|f| panic!("{f}"))
    }

    /// [`Harness::event`], returning a failure instead of panicking; in particular
    /// [`Failure::NotCalled`] when the manifest's `events` leaves this kind out.
    pub fn try_event(&mut self, event: Event) -> Result<(), Failure> {
        self.wants("events")?;
        let kind = event_kind(&event);
        if !manifest::wants_event(&self.setup.manifest, kind) {
            return Err(Failure::NotCalled(format!(
                "plugin.toml's events do not list {kind}"
            )));
        }
        let actor = match &event {
            Event::LinkCreated(l) | Event::LinkUpdated(l) | Event::LinkRevoked(l) => Some(l.owner),
            _ => None,
        };
        self.invoke(actor, |p, s| {
            p.confab_plugin_hooks().call_on_event(s, &event)
        })
    }

    /// Asks the plugin about a lobby request (see [`Harness::lobby_request`]).
    ///
    /// # Panics
    ///
    /// On a [`Failure`]; see [`Harness::try_lobby_decision`].
    pub fn lobby_decision(&mut self, request: LobbyRequest) -> Decision {
        self.try_lobby_decision(request)
            .unwrap_or_else(|f| panic!("{f}"))
    }

    /// [`Harness::lobby_decision`], returning a failure instead of panicking (on a
    /// server, the operator's fallback would apply).
    pub fn try_lobby_decision(&mut self, request: LobbyRequest) -> Result<Decision, Failure> {
        self.wants("lobby-decision")?;
        let answer = self.invoke(None, |p, s| {
            p.confab_plugin_hooks().call_lobby_decision(s, &request)
        });
        // Only during that decision.
        self.world.screening = None;
        answer
    }

    /// Passes a message that participant `sender` sent on the plugin's channel in
    /// `call`.
    ///
    /// # Panics
    ///
    /// On a [`Failure`]; see [`Harness::try_call_message`].
    pub fn call_message(&mut self, call: &Call, sender: u32, payload: impl Into<Vec<u8>>) {
        self.try_call_message(call, sender, payload)
            .unwrap_or_else(|f| panic!("{f}"))
    }

    /// [`Harness::call_message`], returning a failure instead of panicking.
    pub fn try_call_message(
        &mut self,
        call: &Call,
        sender: u32,
        payload: impl Into<Vec<u8>>,
    ) -> Result<(), Failure> {
        self.wants("call-messages")?;
        let payload = payload.into();
        if payload.len() > MAX_CALL_MESSAGE_BYTES {
            return Err(Failure::NotCalled(format!(
                "participants cannot send more than {MAX_CALL_MESSAGE_BYTES} bytes"
            )));
        }
        self.invoke(None, |p, s| {
            p.confab_plugin_hooks()
                .call_on_call_message(s, call, sender, &payload)
        })
    }

    /// Fires the timer `name` now.
    ///
    /// # Panics
    ///
    /// On a [`Failure`]; see [`Harness::try_timer`].
    pub fn timer(&mut self, name: &str) {
        self.try_timer(name).unwrap_or_else(|f| panic!("{f}"))
    }

    /// [`Harness::timer`], returning a failure instead of panicking; in particular
    /// [`Failure::NotCalled`] when `plugin.toml` declares no such timer.
    pub fn try_timer(&mut self, name: &str) -> Result<(), Failure> {
        self.wants("timers")?;
        if !self.setup.manifest.timers.iter().any(|t| t.name == name) {
            return Err(Failure::NotCalled(format!(
                "plugin.toml declares no [[timers]] called {name:?}"
            )));
        }
        self.invoke(None, |p, s| p.confab_plugin_hooks().call_on_timer(s, name))
    }

    fn wants(&self, hook: &str) -> Result<(), Failure> {
        if manifest::wants(&self.setup.manifest, hook) {
            Ok(())
        } else {
            Err(Failure::NotCalled(format!(
                "plugin.toml's hooks do not list {hook:?}"
            )))
        }
    }

    /// Runs one export in a fresh store, as the server does.
    fn invoke<R>(
        &mut self,
        acting_user: Option<i64>,
        call: impl FnOnce(&Plugin, &mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, Failure> {
        let manifest = &self.setup.manifest;
        if let Some((key, _)) = manifest
            .config
            .iter()
            .find(|(key, spec)| spec.required && self.setup.config_value(key).is_none())
        {
            panic!("the setting {key:?} is required: give it with .config({key:?}, …)");
        }
        let memory = (manifest.limits.memory_mib as usize) << 20;
        let stdout = MemoryOutputPipe::new(1 << 20);
        let stderr = MemoryOutputPipe::new(1 << 20);
        let now = Duration::from_millis(u64::try_from(self.world.now).unwrap_or(0));
        let wasi = WasiCtx::builder()
            .stdout(stdout.clone())
            .stderr(stderr.clone())
            .wall_clock(FixedClock(now))
            .build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(memory)
                .instances(64)
                .tables(64)
                .memories(8)
                .build(),
            setup: self.setup.clone(),
            world: std::mem::take(&mut self.world),
            acting_user,
        };
        let mut store = Store::new(&runtime().engine, state);
        store.limiter(|s| &mut s.limits);
        let ticks = self.deadline.as_millis().div_ceil(TICK.as_millis()).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
        store.epoch_deadline_trap();
        let outcome = self
            .pre
            .instantiate(&mut store)
            .and_then(|plugin| call(&plugin, &mut store));
        self.world = store.into_data().world;
        let mut stderr_text = String::new();
        for (pipe, level) in [(stdout, Level::Info), (stderr, Level::Warn)] {
            let text = String::from_utf8_lossy(&pipe.contents()).into_owned();
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let message = line.trim_end().to_string();
                self.world.logs.push(LogLine { level, message });
            }
            if level == Level::Warn {
                stderr_text = text;
            }
        }
        outcome.map_err(|e| {
            let mut why = match e.downcast_ref::<Trap>() {
                Some(Trap::Interrupt) => {
                    format!("ran past its deadline of {} ms", self.deadline.as_millis())
                }
                Some(Trap::StackOverflow) => "overflowed its stack".into(),
                Some(trap) => format!("trapped: {trap}"),
                None => format!("{e:#}"),
            };
            if !stderr_text.trim().is_empty() {
                why = format!("{why}; its stderr: {}", stderr_text.trim());
            }
            Failure::Failed(why)
        })
    }
}

fn event_kind(event: &Event) -> &'static str {
    match event {
        Event::LinkCreated(_) => "link-created",
        Event::LinkUpdated(_) => "link-updated",
        Event::LinkRevoked(_) => "link-revoked",
        Event::CallStarted(_) => "call-started",
        Event::CallEnded(_) => "call-ended",
        Event::ParticipantJoined(_) => "participant-joined",
        Event::ParticipantLeft(_) => "participant-left",
        Event::ParticipantRemoved(_) => "participant-removed",
        Event::LobbyRequest(_) => "lobby-request",
    }
}

/// The plugin's WASI wall clock: the harness clock, still during a hook.
struct FixedClock(Duration);

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }

    fn now(&self) -> Duration {
        self.0
    }
}

/// The process's engine (epoch interruption, advanced by a thread) and linker
/// (WASI with nothing to reach, and the mocked capabilities).
struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
}

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let mut config = wasmtime::Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .max_wasm_stack(1 << 20);
        let engine = Engine::new(&config).expect("wasmtime accepts the configuration");
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("WASI links");
        Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).expect("the capabilities link");
        let ticker = engine.weak();
        std::thread::Builder::new()
            .name("plugin-test-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .expect("the epoch thread starts");
        Runtime { engine, linker }
    })
}

/// Compiles a component and resolves its imports, once per file and version of it
/// in this process.
fn prepare(wasm: &Path) -> PluginPre<HostState> {
    type Prepared = (Option<SystemTime>, PluginPre<HostState>);
    static PREPARED: Mutex<Option<HashMap<PathBuf, Prepared>>> = Mutex::new(None);
    let modified = std::fs::metadata(wasm).and_then(|m| m.modified()).ok();
    let mut prepared = PREPARED.lock().unwrap_or_else(|e| e.into_inner());
    let prepared = prepared.get_or_insert_with(HashMap::new);
    if let Some((when, pre)) = prepared.get(wasm)
        && *when == modified
    {
        return pre.clone();
    }
    let runtime = runtime();
    let component = Component::from_file(&runtime.engine, wasm)
        .unwrap_or_else(|e| panic!("{} is not a component: {e:#}", wasm.display()));
    let pre = runtime
        .linker
        .instantiate_pre(&component)
        .and_then(PluginPre::new)
        .unwrap_or_else(|e| {
            panic!(
                "{} does not fit the confab:plugin@1 world: {e:#}",
                wasm.display()
            )
        });
    prepared.insert(wasm.to_path_buf(), (modified, pre.clone()));
    pre
}

/// The plugin's `templates/`, as the server loads them (HTML escaped in `.html`):
/// on top of the server's shared ones (`email/base.html` …), which they may extend.
fn load_templates(dir: &Path) -> Option<tera::Tera> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut tera = tera::Tera::default();
    tera.extend(host::server_templates())
        .unwrap_or_else(|e| panic!("the server's email templates: {e}"));
    for path in &files {
        let name = path.file_name()?.to_str()?;
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        tera.add_raw_template(name, &text)
            .unwrap_or_else(|e| panic!("template {}: {e}", path.display()));
    }
    (!files.is_empty()).then_some(tera)
}

impl HttpRequest {
    /// A request with `method` for `path`, the part after `/p/{plugin}` (a query
    /// string after `?` becomes [`HttpRequest::query`]); no headers, no body, no
    /// signed-in user.
    ///
    /// # Panics
    ///
    /// When `path` does not start with `/`.
    pub fn new(method: &str, path: &str) -> Self {
        assert!(path.starts_with('/'), "the path {path:?} must start with /");
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        HttpRequest {
            method: method.to_ascii_uppercase(),
            path: path.into(),
            query: query.into(),
            headers: Vec::new(),
            body: Vec::new(),
            user: None,
        }
    }

    /// A `GET` request.
    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    /// A `POST` request (add the body with [`HttpRequest::with_body`]).
    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }

    /// Sets the raw query string (without `?`).
    pub fn with_query(mut self, query: &str) -> Self {
        self.query = query.into();
        self
    }

    /// Adds a header (the server passes names in lower case).
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_string()));
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Makes `user` the signed-in user making the request.
    pub fn with_user(mut self, user: i64) -> Self {
        self.user = Some(user);
        self
    }
}

impl HttpResponse {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl OutboundRequest {
    /// The first header called `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl OutboundResponse {
    /// A response with `status`, `content-type: text/plain; charset=utf-8` and `body`.
    pub fn text(status: u16, body: &str) -> Self {
        Self::with_type(status, "text/plain; charset=utf-8", body)
    }

    /// A response with `status`, `content-type: application/json` and `body`.
    pub fn json(status: u16, body: &str) -> Self {
        Self::with_type(status, "application/json", body)
    }

    fn with_type(status: u16, content_type: &str, body: &str) -> Self {
        OutboundResponse {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.as_bytes().to_vec(),
        }
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}
