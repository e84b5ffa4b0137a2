//! [`CallRegistry`]: the live calls by link, and the door to them (admission
//! checks, a fresh task when a link is used after its call ended).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::AppState;
use crate::calls::{Identity, network_of};
use crate::config::CallsConfig;
use crate::limits::RateWindow;
use crate::plugins::{BoxFuture, LiveCalls, PluginCallAction, PluginCallAnswer, PluginCallError};
use crate::protocol::{ErrorCode, ServerMessage, error};
use crate::store::link;

use super::COMMAND_QUEUE;
use super::command::{Action, CallRequest, PluginReply};
use super::deps::CallDeps;
use super::relay::{self, Relay};
use super::task::CallTask;

/// The longest a join or resume waits for a call's host that missed heartbeats
/// to beat again or count as lost.
const PLACEMENT_WAIT: Duration = Duration::from_secs(8);

/// Live calls by link.
#[derive(Debug)]
pub struct CallRegistry {
    calls: Mutex<HashMap<i64, mpsc::Sender<CallRequest>>>,
    /// Guests' join requests per (link, network) in the last minute.
    join_rate: RateWindow<(i64, IpAddr)>,
    /// On a cluster: connections whose call another node hosts, and other nodes'
    /// connections on calls hosted here.
    pub(super) relay: Relay,
    /// Participants on the calls this node hosts.
    participants: std::sync::atomic::AtomicI64,
}

impl CallRegistry {
    pub fn new(config: &CallsConfig) -> Self {
        Self {
            calls: Mutex::default(),
            join_rate: RateWindow::new(config.join_requests_per_minute, Duration::from_secs(60)),
            relay: Relay::default(),
            participants: std::sync::atomic::AtomicI64::new(0),
        }
    }

    /// Counts a guest's join request to a link from `address` (signaling or the
    /// no-JavaScript form) and says whether it is within `calls.join_requests_per_minute`.
    pub fn allow_join_request(&self, link_pk: i64, address: IpAddr) -> bool {
        self.join_rate
            .allow(&(link_pk, network_of(address)), Instant::now())
    }

    /// Delivers `command` to the link's live call, starting one if there is none.
    /// Joins and resumes first re-check the link as it is now, not as it was when
    /// the connection opened: a revoked link admits nobody, and a rotated one
    /// nobody new through its old id. On a cluster, a call another node hosts
    /// gets it through the relay.
    pub async fn send(&self, state: &AppState, link: &link::Model, command: CallRequest) {
        self.deliver(state, link, command, true).await;
    }

    /// [`CallRegistry::send`]; `may_relay` is false for a connection another node
    /// relays here, which is never relayed again.
    pub(super) async fn deliver(
        &self,
        state: &AppState,
        link: &link::Model,
        command: CallRequest,
        may_relay: bool,
    ) {
        let mut command = command;
        let starts = matches!(command.action, Action::Join { .. } | Action::Resume { .. });
        // A relayed connection's messages go to its call's host; a join or resume
        // looks for the call again (it may have moved).
        if may_relay
            && !starts
            && let Some(cluster) = &state.cluster
            && let Some(node) = self.relay.route_of(command.client)
        {
            let client = command.client;
            let last = matches!(command.action, Action::Disconnected);
            let _ = relay::forward(cluster, &node, link.pk, command).await;
            if last {
                self.relay.clear_route(client);
            }
            return;
        }
        if matches!(command.action, Action::Disconnected | Action::SignedOut)
            && !self.is_live(link.pk)
        {
            return; // no call: nothing to tell it
        }
        let mut current = None;
        if matches!(command.action, Action::Join { .. } | Action::Resume { .. }) {
            match self.admission_check(state, link, &command.action).await {
                Ok(fresh) => current = Some(fresh),
                Err(reply) => {
                    let _ = command.out.try_send(reply);
                    return;
                }
            }
        }
        let link = current.as_ref().unwrap_or(link);
        // On a cluster, a call has one host: this node starts one only once it
        // holds the link's call. A connection of this node is placed (the call may
        // go to a less loaded node); a relayed one asks for this node only.
        if let Some(cluster) = &state.cluster
            && !self.is_live(link.pk)
        {
            let host = if may_relay {
                self.place(cluster, state, link.pk).await
            } else {
                cluster.claim_call(&state.store, link.pk).await
            };
            match host {
                Ok(None) => {}
                Ok(Some(holder)) if may_relay => {
                    if let Some(old) = self.relay.set_route(command.client, &holder, &command.out) {
                        relay::disconnect(cluster, &old, link.pk, command.client).await;
                    }
                    if relay::forward(cluster, &holder, link.pk, command)
                        .await
                        .is_err()
                    {
                        state.metrics.count_refused("cluster_bus_down");
                    }
                    return;
                }
                Ok(Some(holder)) => {
                    // Relayed here, yet another node holds the call (it moved
                    // meanwhile). The node's name stays in the log: it may name an
                    // internal host.
                    tracing::info!(link = link.pk, %holder, "a relayed join reached a node that no longer hosts its call");
                    let _ = command.out.try_send(error(
                        ErrorCode::CallOnAnotherNode,
                        "this call is held by another server of this service; try again in a moment",
                    ));
                    return;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "could not claim a call");
                    let _ = command.out.try_send(error(
                        ErrorCode::Unavailable,
                        "the server could not start this call; try again",
                    ));
                    return;
                }
            }
        }
        // The call is here now: a connection relayed elsewhere before leaves that.
        if may_relay
            && starts
            && let Some(cluster) = &state.cluster
            && let Some(old) = self.relay.clear_route(command.client)
        {
            relay::disconnect(cluster, &old, link.pk, command.client).await;
        }
        // A call that just ended may close its queue between lookup and send: retry once
        // with a fresh call.
        for _ in 0..2 {
            let queue = self.queue(state, link);
            match queue.send(command).await {
                Ok(()) => return,
                Err(mpsc::error::SendError(returned)) => {
                    self.forget(link.pk, &queue);
                    command = returned;
                }
            }
        }
        tracing::warn!("could not reach a call task twice in a row");
    }

    /// The host of link `link_pk`'s call for a connection of this node. A host
    /// that missed heartbeats may have died: wait until it beats again or counts as
    /// lost (then the call is placed anew) rather than relay to a node that may not
    /// answer.
    async fn place(
        &self,
        cluster: &crate::cluster::Cluster,
        state: &AppState,
        link_pk: i64,
    ) -> Result<Option<String>, crate::store::StoreError> {
        let deadline = tokio::time::Instant::now() + PLACEMENT_WAIT;
        loop {
            let host = cluster.place_call(&state.store, link_pk).await?;
            match &host {
                Some(node)
                    if cluster.is_node_suspect(node) && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                _ => return Ok(host),
            }
        }
    }

    /// The link as it is now, if `action` may go ahead on it; else the error to send.
    async fn admission_check(
        &self,
        state: &AppState,
        opened: &link::Model,
        action: &Action,
    ) -> Result<link::Model, ServerMessage> {
        let revoked = || error(ErrorCode::LinkRevoked, "this link was revoked");
        let unavailable = |err: crate::store::StoreError| {
            tracing::warn!(error = %err, "could not re-read a link");
            error(
                ErrorCode::Unavailable,
                "the server could not check this link; try again",
            )
        };
        let current = match state.store.link_by_public_id(&opened.public_id).await {
            Ok(Some(link)) if link.pk == opened.pk => link,
            Ok(_) => match state
                .store
                .link_by_pk(opened.pk)
                .await
                .map_err(unavailable)?
            {
                // Rotated: people on the call stay (and may resume), nobody new joins
                // through the old id.
                Some(link)
                    if link.revoked_at.is_none() && matches!(action, Action::Resume { .. }) =>
                {
                    link
                }
                Some(link) if link.revoked_at.is_none() => {
                    return Err(error(
                        ErrorCode::LinkRotated,
                        "this link was replaced with a new one; ask for the new link",
                    ));
                }
                _ => return Err(revoked()),
            },
            Err(err) => return Err(unavailable(err)),
        };
        if current.revoked_at.is_some() {
            return Err(revoked());
        }
        if let Action::Join {
            identity: Identity::Guest { .. },
            address: Some(address),
            ..
        } = action
            && !self.allow_join_request(current.pk, *address)
        {
            state.metrics.count_refused("join_requests_per_minute");
            return Err(error(
                ErrorCode::TooManyRequests,
                "too many requests to join this call from your network; wait a minute and try again",
            ));
        }
        Ok(current)
    }

    /// Delivers `command` to the link's live call only; false when there is none (or
    /// its queue is full).
    pub fn send_if_live(&self, link_pk: i64, command: CallRequest) -> bool {
        let queue = {
            let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            calls.get(&link_pk).filter(|q| !q.is_closed()).cloned()
        };
        queue.is_some_and(|q| q.try_send(command).is_ok())
    }

    fn is_live(&self, link_pk: i64) -> bool {
        let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        calls.get(&link_pk).is_some_and(|q| !q.is_closed())
    }

    /// Carries out a plugin's request on the link's live call (never starts one).
    pub async fn plugin_action(
        &self,
        link_pk: i64,
        action: PluginCallAction,
    ) -> Result<PluginCallAnswer, PluginCallError> {
        let queue = {
            let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            calls
                .get(&link_pk)
                .filter(|q| !q.is_closed())
                .cloned()
                .ok_or(PluginCallError::NoCall)?
        };
        let (reply, answer) = oneshot::channel();
        // Nobody reads this: the call answers plugins through `reply`.
        let (out, _) = mpsc::channel(1);
        queue
            .try_send(CallRequest {
                client: 0,
                out,
                action: Action::Plugin {
                    action,
                    reply: PluginReply(std::sync::Arc::new(Mutex::new(Some(reply)))),
                },
            })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => PluginCallError::Busy,
                mpsc::error::TrySendError::Closed(_) => PluginCallError::NoCall,
            })?;
        match tokio::time::timeout(Duration::from_secs(2), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(PluginCallError::NoCall),
            Err(_) => Err(PluginCallError::Busy),
        }
    }

    /// Sends everyone on the link's live call an `e2ee` message as if from
    /// participant `from`, who need not exist: the tests play a malicious server
    /// with it. False when there is no live call.
    #[cfg(feature = "test-tap")]
    pub fn forge_e2ee(&self, link_pk: i64, from: u32, payload: String) -> bool {
        let (out, _) = mpsc::channel(1);
        self.send_if_live(
            link_pk,
            CallRequest {
                client: 0,
                out,
                action: Action::ForgeKeys { from, payload },
            },
        )
    }

    /// Every sealed payload the live call of `link_pk` holds for `plugin`'s
    /// activity; none when no call is live.
    #[cfg(feature = "test-tap")]
    pub async fn activity_payloads(&self, link_pk: i64, plugin: &str) -> Option<Vec<String>> {
        let (out, _) = mpsc::channel(1);
        let (reply, mut answer) = mpsc::channel(1);
        let action = Action::PeekActivity {
            plugin: plugin.to_string(),
            reply,
        };
        let request = CallRequest {
            client: 0,
            out,
            action,
        };
        if !self.send_if_live(link_pk, request) {
            return None;
        }
        answer.recv().await
    }

    /// Adds `delta` to the participants on calls hosted here.
    pub(super) fn count_participants(&self, delta: i64) {
        self.participants
            .fetch_add(delta, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many participants the calls hosted here have.
    pub fn participants(&self) -> usize {
        usize::try_from(self.participants.load(std::sync::atomic::Ordering::Relaxed)).unwrap_or(0)
    }

    /// Closes every connection of every call hosted here (a draining node whose
    /// time is up): each page comes back through another node.
    pub fn evacuate(&self) {
        let queues: Vec<mpsc::Sender<CallRequest>> = {
            let calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            calls.values().cloned().collect()
        };
        for queue in queues {
            let (out, _) = mpsc::channel(1);
            let _ = queue.try_send(CallRequest {
                client: 0,
                out,
                action: Action::Evacuate,
            });
        }
    }

    /// How many calls are live.
    pub fn live_calls(&self) -> usize {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn queue(&self, state: &AppState, link: &link::Model) -> mpsc::Sender<CallRequest> {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(queue) = calls.get(&link.pk).filter(|q| !q.is_closed()) {
            return queue.clone();
        }
        let (queue, commands) = mpsc::channel(COMMAND_QUEUE);
        calls.insert(link.pk, queue.clone());
        CallTask::spawn(CallDeps::of(state), link, queue.clone(), commands);
        queue
    }

    pub(super) fn forget(&self, link_pk: i64, queue: &mpsc::Sender<CallRequest>) {
        let mut calls = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if calls.get(&link_pk).is_some_and(|q| q.same_channel(queue)) {
            calls.remove(&link_pk);
        }
    }
}

/// The `calls` capability of plugins reaches the live calls through this.
impl LiveCalls for CallRegistry {
    fn plugin_action(
        &self,
        link_pk: i64,
        action: PluginCallAction,
    ) -> BoxFuture<'_, Result<PluginCallAnswer, PluginCallError>> {
        Box::pin(CallRegistry::plugin_action(self, link_pk, action))
    }
}
