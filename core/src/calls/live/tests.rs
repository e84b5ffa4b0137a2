//! The call task alone: its own dependencies (a fake clock, an in-memory store, no
//! media), a host that records what plugins would be told, and connections that
//! are plain queues.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

use super::deps::{CallDeps, CallHost, HostFuture};
use super::effects::{Effect, Input};
use super::task::CallTask;
use super::{Action, CallRequest};
use crate::calls::{CallRules, Identity};
use crate::clock::FakeClock;
use crate::metrics::Metrics;
use crate::plugins::{CallInfo, Event, InvokeError, LobbyInfo, Verdict};
use crate::protocol::{RequestEndReason, ServerMessage};
use crate::store::{NewLinkRow, Store, link};

fn t0() -> DateTime<Utc> {
    "2026-12-05T12:00:00Z".parse().unwrap()
}

/// Plugins as the test wants them: a verdict for every lobby request (none: no
/// plugin screens), and the events they were told, by kind.
#[derive(Default)]
struct Host {
    verdict: Option<Verdict>,
    told: Mutex<Vec<String>>,
}

impl CallHost for Host {
    fn screens_lobby_requests(&self) -> bool {
        self.verdict.is_some()
    }
    fn takes_call_messages(&self, _plugin: &str) -> bool {
        false
    }
    fn runs_activities(&self, plugin: &str) -> bool {
        plugin == "watch-together"
    }
    fn lobby_decision(&self, _request: LobbyInfo) -> HostFuture<Verdict> {
        let verdict = self.verdict.clone().unwrap_or(Verdict::Allow);
        Box::pin(async move { verdict })
    }
    fn call_message(
        &self,
        plugin: String,
        _call: CallInfo,
        _sender: u32,
        _payload: Vec<u8>,
    ) -> HostFuture<Result<(), InvokeError>> {
        Box::pin(async move { Err(InvokeError::NotFound(plugin)) })
    }
    fn emit(&self, event: Event) {
        let kind = format!("{event:?}");
        let kind = kind
            .split(['(', ' ', '{'])
            .next()
            .unwrap_or_default()
            .to_string();
        self.told.lock().unwrap().push(kind);
    }
    fn call_ended(&self, _link_pk: i64, _queue: &mpsc::Sender<CallRequest>) {}
    fn redeliver(&self, _link_id: String, _request: CallRequest) {}
}

struct Harness {
    /// The link owner's account.
    owner: i64,
    clock: FakeClock,
    host: Arc<Host>,
    queue: mpsc::Sender<CallRequest>,
}

/// The dependencies of a call of a link whose guests need approval, with a lobby
/// timeout of 2 s: the deps, the link, the clock and the owner's account.
async fn call_of_a_link(host: Arc<Host>) -> (CallDeps, link::Model, FakeClock, i64) {
    {
        let clock = FakeClock::new(t0());
        let store = Store::connect("sqlite::memory:", 1).await.unwrap();
        store.migrate().await.unwrap();
        let deps = CallDeps {
            clock: Arc::new(clock.clone()),
            store: store.clone(),
            rules: CallRules {
                lobby_timeout: chrono::Duration::seconds(2),
                ..CallRules::default()
            },
            media: None,
            metrics: Arc::new(Metrics::default()),
            host,
        };
        // The link exists, as the task re-reads it now and then.
        let owner = store
            .insert_user("owner@example.org", "Owner", "member", "-", t0())
            .await
            .unwrap();
        let link = store
            .insert_link(NewLinkRow {
                public_id: "link-1".into(),
                owner_id: owner.id,
                title: "Standup".into(),
                description: None,
                schedule: None,
                guests_need_approval: true,
                members_need_approval: false,
                max_participants: 32,
                created_at: t0(),
            })
            .await
            .unwrap();
        (deps, link, clock, owner.id)
    }
}

impl Harness {
    /// A running call of a link whose guests need approval, with a lobby timeout
    /// of 2 s.
    async fn start(host: Host) -> Harness {
        let host = Arc::new(host);
        let (deps, link, clock, owner) = call_of_a_link(host.clone()).await;
        let (queue, requests) = mpsc::channel(16);
        CallTask::spawn(deps, &link, queue.clone(), requests);
        Harness {
            clock,
            host,
            queue,
            owner,
        }
    }

    /// Opens a connection `client` that asks to join as `identity`.
    async fn join(&self, client: u64, identity: Identity, name: &str) -> Connection {
        let (out, messages) = mpsc::channel(64);
        let action = Action::Join {
            identity,
            name: name.into(),
            address: None,
            device: None,
            opened_as: "link-1".into(),
        };
        self.request(client, out, action).await;
        Connection(messages)
    }

    /// `action` from connection `client`, answered on `out`.
    async fn request(&self, client: u64, out: mpsc::Sender<ServerMessage>, action: Action) {
        let request = CallRequest {
            client,
            out,
            action,
        };
        self.queue.send(request).await.unwrap();
    }
}

impl Harness {
    /// The link's owner joins (connection 1) and is on the call.
    async fn owner_joins(&self) -> Connection {
        let owner = Identity::Member {
            user_id: self.owner,
        };
        let mut connection = self.join(1, owner, "Owner").await;
        connection
            .next(|m| matches!(m, ServerMessage::Joined { .. }).then_some(()))
            .await;
        connection
    }
}

struct Connection(mpsc::Receiver<ServerMessage>);

impl Connection {
    /// The first message that `wanted` accepts, skipping others (rosters,
    /// lobbies); fails after 10 s.
    async fn next<T>(&mut self, wanted: impl Fn(&ServerMessage) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let message = tokio::time::timeout_at(deadline, self.0.recv())
                .await
                .expect("the expected message in time")
                .expect("the connection's queue is open");
            if let Some(found) = wanted(&message) {
                return found;
            }
        }
    }
}

fn guest(key: &str) -> Identity {
    Identity::Guest {
        guest_key: key.into(),
    }
}

#[tokio::test]
async fn a_waiting_guest_is_told_when_the_lobby_timeout_passes_on_the_calls_clock() {
    let call = Harness::start(Host::default()).await;
    let mut owner = call.owner_joins().await;
    let mut guest = call.join(2, guest("guest-key-0123456789"), "Guest").await;
    guest
        .next(|m| matches!(m, ServerMessage::Waiting { .. }).then_some(()))
        .await;
    let waiting = owner
        .next(|m| match m {
            ServerMessage::Lobby { requests, .. } if !requests.is_empty() => {
                Some(requests[0].name.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(waiting, "Guest");

    // Only the call's clock moves; the task's next tick applies the timeout.
    call.clock.advance(chrono::Duration::seconds(3));
    let why = guest
        .next(|m| match m {
            ServerMessage::RequestEnded { why } => Some(*why),
            _ => None,
        })
        .await;
    assert_eq!(why, RequestEndReason::TimedOut);
    owner
        .next(|m| match m {
            ServerMessage::Lobby { requests, .. } => requests.is_empty().then_some(()),
            _ => None,
        })
        .await;
    let told = call.host.told.lock().unwrap().clone();
    assert_eq!(
        told,
        ["CallStarted", "ParticipantJoined", "LobbyRequest"],
        "what plugins heard"
    );
}

#[tokio::test]
async fn a_plugin_that_screens_requests_turns_a_guest_away_with_its_reason() {
    let call = Harness::start(Host {
        verdict: Some(Verdict::Deny {
            plugin: "spam-guard".into(),
            reason: "This device was blocked from this link.".into(),
        }),
        ..Host::default()
    })
    .await;
    let _owner = call.owner_joins().await;
    let mut guest = call.join(2, guest("guest-key-0123456789"), "Guest").await;
    let (blocked, reason) = guest
        .next(|m| match m {
            ServerMessage::Denied { blocked, reason } => Some((*blocked, reason.clone())),
            _ => None,
        })
        .await;
    assert!(!blocked);
    assert_eq!(
        reason.as_deref(),
        Some("This device was blocked from this link.")
    );
    // The request never reached the lobby.
    assert!(
        !call
            .host
            .told
            .lock()
            .unwrap()
            .contains(&"LobbyRequest".to_string())
    );
}

/// A step only decides: what the world sees waits in the effects until the loop
/// carries them out, and time is what the inputs say.
#[tokio::test]
async fn a_step_decides_and_its_effects_wait_until_they_are_carried_out() {
    let host = Arc::new(Host::default());
    let (deps, link, _clock, owner) = call_of_a_link(host.clone()).await;
    let (queue, _requests) = mpsc::channel(16);
    let mut task = CallTask::new(deps, &link, &queue);
    let connect = |client: u64, identity: Identity, name: &str| {
        let (out, messages) = mpsc::channel(64);
        let request = CallRequest {
            client,
            out,
            action: Action::Join {
                identity,
                name: name.into(),
                address: None,
                device: None,
                opened_as: "link-1".into(),
            },
        };
        (Input::Client(request), messages)
    };
    let (owner_joins, mut owner_out) = connect(1, Identity::Member { user_id: owner }, "Owner");
    task.step(owner_joins);
    let (guest_asks, mut guest_out) = connect(2, guest("guest-key-0123456789"), "Guest");
    task.step(guest_asks);

    // Decided, not done: nothing reached the connections or the plugins yet.
    assert!(owner_out.try_recv().is_err() && guest_out.try_recv().is_err());
    assert!(host.told.lock().unwrap().is_empty());
    let sent_to = |effects: &[Effect], client: u64| -> Vec<String> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Send { client: c, message } | Effect::Lobby { client: c, message }
                    if *c == client =>
                {
                    Some(
                        format!("{message:?}")
                            .split([' ', '{', '('])
                            .next()?
                            .to_string(),
                    )
                }
                _ => None,
            })
            .collect()
    };
    assert_eq!(sent_to(&task.effects, 2), ["Waiting"]);
    assert!(sent_to(&task.effects, 1).contains(&"Joined".to_string()));

    // The lobby timeout applies at the time a tick says, however little time passed.
    task.execute();
    task.step(Input::Tick(t0() + chrono::Duration::seconds(1)));
    assert!(sent_to(&task.effects, 2).is_empty(), "not timed out yet");
    task.step(Input::Tick(t0() + chrono::Duration::seconds(3)));
    assert_eq!(sent_to(&task.effects, 2), ["RequestEnded"]);
    task.execute();

    let mut guest_saw = Vec::new();
    while let Ok(message) = guest_out.try_recv() {
        guest_saw.push(message);
    }
    assert!(matches!(
        guest_saw.first(),
        Some(ServerMessage::Waiting { .. })
    ));
    assert!(matches!(
        guest_saw.last(),
        Some(ServerMessage::RequestEnded {
            why: RequestEndReason::TimedOut
        })
    ));
    assert_eq!(
        host.told.lock().unwrap().clone(),
        ["CallStarted", "ParticipantJoined", "LobbyRequest"]
    );
}

impl Harness {
    /// `action` from connection `client`, which is already open.
    async fn act(&self, client: u64, action: Action) {
        let (out, _) = mpsc::channel(1);
        self.request(client, out, action).await;
    }

    async fn activity(&self, client: u64, plugin: &str, request: super::ActivityRequest) {
        let plugin = plugin.to_string();
        self.act(client, Action::Activity { plugin, request }).await;
    }
}

#[tokio::test]
async fn a_newcomer_nobody_answers_gets_the_servers_copy_when_the_wait_passes_on_the_calls_clock() {
    use super::ActivityRequest as A;
    let call = Harness::start(Host::default()).await;
    let mut owner = call.owner_joins().await;
    let plugin = "watch-together";

    call.activity(1, "not-a-plugin-here", A::Join).await;
    let code = owner
        .next(|m| match m {
            ServerMessage::Error { code, .. } => Some(*code),
            _ => None,
        })
        .await;
    assert_eq!(code, crate::protocol::ErrorCode::PluginUnavailable);

    call.activity(1, plugin, A::Join).await;
    let seq = owner
        .next(|m| match m {
            ServerMessage::ActivitySnapshot { seq, payload, .. } => Some((*seq, payload.clone())),
            _ => None,
        })
        .await;
    assert_eq!(seq, (0, None), "started from nothing");
    let update = A::Update {
        payload: "AAAA".into(),
    };
    call.activity(1, plugin, update).await;
    owner
        .next(|m| matches!(m, ServerMessage::ActivityUpdate { seq: 1, .. }).then_some(()))
        .await;
    let copy = A::Snapshot {
        newcomer: None,
        seq: 1,
        payload: "BBBB".into(),
    };
    call.activity(1, plugin, copy).await;

    // A guest, admitted, hears of the activity on arriving.
    let mut guest = call.join(2, guest("guest-key-0123456789"), "Guest").await;
    let request = owner
        .next(|m| match m {
            ServerMessage::Lobby { requests, .. } => requests.first().map(|r| r.request),
            _ => None,
        })
        .await;
    let decide = Action::Decide {
        request: crate::calls::RequestId(request),
        decision: crate::calls::Decision::Admit,
    };
    call.act(1, decide).await;
    let me = guest
        .next(|m| match m {
            ServerMessage::Joined { participant, .. } => Some(*participant),
            _ => None,
        })
        .await;
    guest
        .next(|m| matches!(m, ServerMessage::Activity { host: Some(_), .. }).then_some(()))
        .await;

    // The owner's page is asked and does not answer.
    call.activity(2, plugin, A::Join).await;
    let asked = owner
        .next(|m| match m {
            ServerMessage::ActivitySnapshotRequest { newcomer, .. } => Some(*newcomer),
            _ => None,
        })
        .await;
    assert_eq!(asked, me);
    call.clock.advance(chrono::Duration::seconds(1));
    let got = guest
        .next(|m| match m {
            ServerMessage::ActivitySnapshot {
                seq,
                payload,
                complete,
                ..
            } => Some((*seq, payload.clone(), *complete)),
            _ => None,
        })
        .await;
    assert_eq!(got, (1, Some("BBBB".into()), true));
}
