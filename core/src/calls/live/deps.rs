//! What a call's task uses of the rest of the server, and nothing more: a clock,
//! the store, the call rules, the media plane, the metrics, and a [`CallHost`]
//! for the plugins and the registry. The server builds them from its state
//! ([`CallDeps::of`]); a test builds its own, with a fake clock and a host that
//! records what it was told.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::CallRequest;
use crate::AppState;
use crate::calls::CallRules;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::plugins::{self, CallInfo, Event, InvokeError, LobbyInfo, Verdict};
use crate::sfu::MediaHandle;
use crate::store::{Store, call_seat};

/// A boxed future a [`CallHost`] answers with (it runs off the call's task).
pub type HostFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// The plugins and the registry, as a call's task sees them.
pub trait CallHost: Send + Sync + 'static {
    /// Whether any plugin screens guests' join requests.
    fn screens_lobby_requests(&self) -> bool;
    /// Whether `plugin` takes messages from people on calls.
    fn takes_call_messages(&self, plugin: &str) -> bool;
    /// Whether `plugin` may run a shared activity (it has call-page web code it
    /// was granted).
    fn runs_activities(&self, plugin: &str) -> bool;
    /// The plugins' verdict on a lobby request.
    fn lobby_decision(&self, request: LobbyInfo) -> HostFuture<Verdict>;
    /// Hands a participant's message to `plugin`.
    fn call_message(
        &self,
        plugin: String,
        call: CallInfo,
        sender: u32,
        payload: Vec<u8>,
    ) -> HostFuture<Result<(), InvokeError>>;
    /// Tells the plugins that listen what happened on a call.
    fn emit(&self, event: Event);
    /// The call of `link_pk` ended: its queue takes no more requests.
    fn call_ended(&self, link_pk: i64, queue: &mpsc::Sender<CallRequest>);
    /// A request that reached the call as it ended, for the link's next call.
    fn redeliver(&self, link_id: String, request: CallRequest);
    /// The call's participants went up (or down, negative) by `delta`.
    fn participants_changed(&self, _delta: i64) {}
    /// Whether participants' places are kept for another node to seat them again
    /// should this one die (a node of a cluster).
    fn keeps_seats(&self) -> bool {
        false
    }
    /// Keeps a participant's place (`node_id` and `saved_at` are the host's to set).
    fn keep_seat(&self, _seat: call_seat::Model) {}
    /// The participant whose resume token hashes to `token_hash` left for good.
    fn forget_seat(&self, _link_pk: i64, _token_hash: String) {}
    /// The place kept on the call of `link_pk` for a resume token's hash, if any.
    fn kept_seat(
        &self,
        _link_pk: i64,
        _token_hash: String,
    ) -> HostFuture<Option<call_seat::Model>> {
        Box::pin(async { None })
    }
}

/// Everything else a call's task works with.
#[derive(Clone)]
pub struct CallDeps {
    pub clock: Arc<dyn Clock>,
    pub store: Store,
    pub rules: CallRules,
    /// The media plane, when it runs on this process.
    pub media: Option<MediaHandle>,
    pub metrics: Arc<Metrics>,
    pub host: Arc<dyn CallHost>,
}

impl CallDeps {
    /// What the server's calls use.
    pub fn of(state: &AppState) -> Self {
        Self {
            clock: state.clock.clone(),
            store: state.store.clone(),
            rules: state.call_rules(),
            media: state.media.clone(),
            metrics: state.metrics.clone(),
            host: Arc::new(state.clone()),
        }
    }
}

impl CallHost for AppState {
    fn screens_lobby_requests(&self) -> bool {
        self.plugins.screens_lobby_requests()
    }

    fn takes_call_messages(&self, plugin: &str) -> bool {
        self.plugins.takes_call_messages(plugin)
    }

    fn runs_activities(&self, plugin: &str) -> bool {
        self.plugins.runs_activities(plugin)
    }

    fn lobby_decision(&self, request: LobbyInfo) -> HostFuture<Verdict> {
        let state = self.clone();
        Box::pin(async move {
            state
                .plugins
                .lobby_decision(state.plugin_deps(), &request)
                .await
        })
    }

    fn call_message(
        &self,
        plugin: String,
        call: CallInfo,
        sender: u32,
        payload: Vec<u8>,
    ) -> HostFuture<Result<(), InvokeError>> {
        let state = self.clone();
        Box::pin(async move {
            state
                .plugins
                .call_message(state.plugin_deps(), &plugin, &call, sender, payload)
                .await
        })
    }

    fn emit(&self, event: Event) {
        plugins::emit(self.plugin_deps(), event);
    }

    fn call_ended(&self, link_pk: i64, queue: &mpsc::Sender<CallRequest>) {
        self.calls.forget(link_pk, queue);
        if let Some(cluster) = self.cluster.clone() {
            let store = self.store.clone();
            let ended_at = chrono::Utc::now();
            tokio::spawn(async move { cluster.release_call(&store, link_pk, ended_at).await });
        }
    }

    fn participants_changed(&self, delta: i64) {
        self.calls.count_participants(delta);
    }

    fn keeps_seats(&self) -> bool {
        self.cluster.is_some()
    }

    fn keep_seat(&self, seat: call_seat::Model) {
        let Some(cluster) = &self.cluster else {
            return;
        };
        let seat = call_seat::Model {
            node_id: cluster.node_id().to_string(),
            saved_at: chrono::Utc::now(),
            ..seat
        };
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.save_seat(seat).await {
                tracing::warn!(error = %err, "a participant's place was not kept for another node");
            }
        });
    }

    fn forget_seat(&self, link_pk: i64, token_hash: String) {
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.forget_seat(link_pk, &token_hash).await {
                tracing::warn!(error = %err, "a participant's kept place was not forgotten");
            }
        });
    }

    fn kept_seat(&self, link_pk: i64, token_hash: String) -> HostFuture<Option<call_seat::Model>> {
        let store = self.store.clone();
        Box::pin(async move {
            match store.seat(link_pk, &token_hash).await {
                Ok(seat) => seat,
                Err(err) => {
                    tracing::warn!(error = %err, "could not read a kept place");
                    None
                }
            }
        })
    }

    fn redeliver(&self, link_id: String, request: CallRequest) {
        let state = self.clone();
        tokio::spawn(async move {
            if let Ok(Some(link)) = state.store.link_by_public_id(&link_id).await {
                state.calls.send(&state, &link, request).await;
            }
        });
    }
}
