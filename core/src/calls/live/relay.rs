//! The relay: on a cluster, a connection may reach any node, while its call is
//! hosted by exactly one (docs/scaling.md). The node that holds the connection
//! (the *entry*) passes what the connection asks of its call to the hosting node
//! as node mail, and the host passes the call's answers back the same way:
//!
//! - entry → host: [`Mail::ToCall`], one connection's [`Action`] in the order
//!   the connection sent it;
//! - host → entry: [`Mail::ToClient`], a message already encoded for the page,
//!   which the entry writes as it is; [`Mail::Hangup`] closes the connection.
//!
//! On the host, each relayed connection is a *remote client*: a task with its
//! own client id and outbound queue, which hands the call its actions one after
//! the other, as a signaling session does. A remote client whose entry node is
//! lost is disconnected (its participant gets the reconnect grace); a connection
//! whose host is lost is closed, so that the page comes back through a fresh one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::AppState;
use crate::cluster::{Cluster, MailError};
use crate::protocol::{ErrorCode, ServerMessage, encode, error};
use crate::shutdown::Shutdown;

use super::command::{Action, CallRequest, ClientId, next_client_id};

/// Actions of one relayed connection waiting for the call on the host; the
/// entry's signaling rate limit keeps a connection far below it.
const REMOTE_QUEUE: usize = 64;
/// Messages for one relayed connection waiting to leave the host.
const REMOTE_OUTBOX: usize = 64;
/// How often both sides look for lost nodes.
const SWEEP: Duration = Duration::from_secs(1);
/// A node first heard of this recently may not be in this node's view of the
/// live nodes yet (refreshed every heartbeat): it is not taken for lost.
const NEWCOMER: Duration = Duration::from_secs(3);

/// Node mail of the relay.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Mail {
    /// An action of connection `client` on node `from`, for the call of `link`.
    ToCall {
        from: String,
        client: ClientId,
        link: i64,
        sent_at_ms: i64,
        action: Action,
    },
    /// A message for connection `client` of the node it is sent to, encoded.
    ToClient {
        client: ClientId,
        sent_at_ms: i64,
        text: String,
    },
    /// Close connection `client` of the node it is sent to.
    Hangup { client: ClientId },
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The relay's state on one node: the connections it holds whose call is
/// elsewhere (routes), and the connections of other nodes whose call is here
/// (remote clients).
#[derive(Debug, Default)]
pub(super) struct Relay {
    routes: Mutex<HashMap<ClientId, Route>>,
    remotes: Mutex<HashMap<(String, ClientId), Remote>>,
}

#[derive(Debug, Clone)]
struct Route {
    node: String,
    out: mpsc::Sender<ServerMessage>,
    since: Instant,
}

#[derive(Debug)]
struct Remote {
    queue: mpsc::Sender<Action>,
    since: Instant,
}

impl Relay {
    /// The node hosting the call of connection `client`, if it is relayed.
    pub(super) fn route_of(&self, client: ClientId) -> Option<String> {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.get(&client).map(|route| route.node.clone())
    }

    /// From now on, connection `client`'s call is on `node`; the node it was on
    /// before, if another.
    pub(super) fn set_route(
        &self,
        client: ClientId,
        node: &str,
        out: &mpsc::Sender<ServerMessage>,
    ) -> Option<String> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let route = Route {
            node: node.to_string(),
            out: out.clone(),
            since: Instant::now(),
        };
        routes
            .insert(client, route)
            .map(|old| old.node)
            .filter(|old| old != node)
    }

    /// Connection `client`'s call is no longer relayed; the node it was on.
    pub(super) fn clear_route(&self, client: ClientId) -> Option<String> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.remove(&client).map(|route| route.node)
    }
}

/// Sends `command` to the call of `link_pk` on node `node`; tells the connection
/// when the bus cannot take it.
pub(super) async fn forward(
    cluster: &Cluster,
    node: &str,
    link_pk: i64,
    command: CallRequest,
) -> Result<(), MailError> {
    let mail = Mail::ToCall {
        from: cluster.node_id().to_string(),
        client: command.client,
        link: link_pk,
        sent_at_ms: now_ms(),
        action: command.action,
    };
    let sent = match serde_json::to_vec(&mail) {
        Ok(payload) => cluster.mail_to(node, payload).await,
        Err(err) => Err(MailError::Publish(err.to_string())),
    };
    if let Err(err) = &sent {
        tracing::warn!(error = %err, "a connection's message did not reach the node hosting its call");
        let reply = match err {
            MailError::TooLarge(_) => error(
                ErrorCode::MessageTooLarge,
                "this message is too large to pass to the server hosting this call",
            ),
            _ => error(
                ErrorCode::Unavailable,
                "this call is hosted by another server of this service, which cannot be reached right now; try again in a moment",
            ),
        };
        let _ = command.out.try_send(reply);
    }
    sent
}

/// Tells node `node` that connection `client` of this node left its call there.
pub(super) async fn disconnect(cluster: &Cluster, node: &str, link_pk: i64, client: ClientId) {
    let (out, _) = mpsc::channel(1);
    let command = CallRequest {
        client,
        out,
        action: Action::Disconnected,
    };
    let _ = forward(cluster, node, link_pk, command).await;
}

/// Handles this node's relay mail until `shutdown`: a no-op on a single node.
pub async fn run(state: AppState, shutdown: Shutdown) {
    let Some(cluster) = state.cluster.clone() else {
        return;
    };
    let Some(mut mail) = cluster.take_mail() else {
        return;
    };
    let mut sweep = tokio::time::interval(SWEEP);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            payload = mail.recv() => match payload {
                Some(payload) => receive(&state, &cluster, &payload),
                None => break,
            },
            _ = sweep.tick() => sweep_lost_nodes(&state, &cluster),
        }
    }
}

/// One piece of relay mail.
fn receive(state: &AppState, cluster: &Cluster, payload: &[u8]) {
    let mail: Mail = match serde_json::from_slice(payload) {
        Ok(mail) => mail,
        Err(err) => {
            tracing::warn!(error = %err, "ignored malformed relay mail");
            return;
        }
    };
    let relay = &state.calls.relay;
    match mail {
        Mail::ToClient {
            client,
            sent_at_ms,
            text,
        } => {
            observe_delay(state, sent_at_ms);
            let out = {
                let routes = relay.routes.lock().unwrap_or_else(|e| e.into_inner());
                routes.get(&client).map(|route| route.out.clone())
            };
            if let Some(out) = out {
                let _ = out.try_send(ServerMessage::Relayed(text));
            }
        }
        Mail::Hangup { client } => {
            let route = relay
                .routes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&client);
            if let Some(route) = route {
                let _ = route.out.try_send(ServerMessage::Hangup);
            }
        }
        Mail::ToCall {
            from,
            client,
            link,
            sent_at_ms,
            action,
        } => {
            observe_delay(state, sent_at_ms);
            let key = (from, client);
            let mut remotes = relay.remotes.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(remote) = remotes.get(&key).filter(|r| !r.queue.is_closed()) {
                if remote.queue.try_send(action).is_err() {
                    tracing::warn!(
                        node = %key.0,
                        "a relayed connection's message was dropped: its call is not keeping up"
                    );
                }
                return;
            }
            // Nothing to end for a connection this node does not know.
            if matches!(
                action,
                Action::Disconnected | Action::SignedOut | Action::LinkGone
            ) {
                remotes.remove(&key);
                return;
            }
            let (queue, actions) = mpsc::channel(REMOTE_QUEUE);
            let _ = queue.try_send(action);
            let remote = Remote {
                queue: queue.clone(),
                since: Instant::now(),
            };
            remotes.insert(key.clone(), remote);
            drop(remotes);
            tokio::spawn(run_remote(
                state.clone(),
                cluster.clone(),
                key,
                link,
                queue,
                actions,
            ));
        }
    }
}

fn observe_delay(state: &AppState, sent_at_ms: i64) {
    let delay_ms = (now_ms() - sent_at_ms).max(0);
    #[allow(clippy::cast_precision_loss)]
    state
        .metrics
        .cluster_relay_seconds
        .observe(delay_ms as f64 / 1000.0);
}

/// A connection of node `key.0` on a call hosted here: hands the call its
/// actions in order, and sends the call's answers back.
async fn run_remote(
    state: AppState,
    cluster: Cluster,
    key: (String, ClientId),
    link_pk: i64,
    queue: mpsc::Sender<Action>,
    mut actions: mpsc::Receiver<Action>,
) {
    let (entry, entry_client) = key.clone();
    let (out, mut outbox) = mpsc::channel::<ServerMessage>(REMOTE_OUTBOX);
    let writer = {
        let cluster = cluster.clone();
        let entry = entry.clone();
        tokio::spawn(async move {
            while let Some(message) = outbox.recv().await {
                let mail = match message {
                    ServerMessage::Hangup => Mail::Hangup {
                        client: entry_client,
                    },
                    message => Mail::ToClient {
                        client: entry_client,
                        sent_at_ms: now_ms(),
                        text: encode(&message),
                    },
                };
                let Ok(payload) = serde_json::to_vec(&mail) else {
                    continue;
                };
                if let Err(err) = cluster.mail_to(&entry, payload).await {
                    tracing::debug!(error = %err, node = %entry, "a relayed message was not sent back");
                }
            }
        })
    };
    let link = match state.store.link_by_pk(link_pk).await {
        Ok(Some(link)) => Some(link),
        Ok(None) => {
            let _ = out.try_send(error(ErrorCode::LinkRevoked, "this link was revoked"));
            None
        }
        Err(err) => {
            tracing::warn!(error = %err, "could not read a relayed connection's link");
            let _ = out.try_send(error(
                ErrorCode::Unavailable,
                "the server could not check this link; try again",
            ));
            None
        }
    };
    if let Some(link) = link {
        let client = next_client_id();
        while let Some(action) = actions.recv().await {
            let last = matches!(action, Action::Disconnected);
            let command = CallRequest {
                client,
                out: out.clone(),
                action,
            };
            state.calls.deliver(&state, &link, command, false).await;
            if last {
                break;
            }
        }
    }
    {
        let mut remotes = state
            .calls
            .relay
            .remotes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if remotes
            .get(&key)
            .is_some_and(|r| r.queue.same_channel(&queue))
        {
            remotes.remove(&key);
        }
    }
    drop(out);
    let _ = writer.await;
}

/// Connections held here whose host missed heartbeats are closed (the page comes
/// back through a fresh connection, to wherever the call is then: the same host
/// if it was only late, another once it is lost); connections of lost nodes
/// hosted here are disconnected from their calls.
fn sweep_lost_nodes(state: &AppState, cluster: &Cluster) {
    let relay = &state.calls.relay;
    let lost_routes: Vec<Route> = {
        let mut routes = relay.routes.lock().unwrap_or_else(|e| e.into_inner());
        let lost: Vec<ClientId> = routes
            .iter()
            .filter(|(_, route)| {
                route.since.elapsed() > NEWCOMER && cluster.is_node_suspect(&route.node)
            })
            .map(|(client, _)| *client)
            .collect();
        lost.iter().filter_map(|c| routes.remove(c)).collect()
    };
    for route in lost_routes {
        tracing::info!(
            "the node hosting a relayed connection's call missed heartbeats: closing the connection"
        );
        let _ = route.out.try_send(ServerMessage::Hangup);
    }
    let remotes = relay.remotes.lock().unwrap_or_else(|e| e.into_inner());
    for ((node, _), remote) in remotes.iter() {
        if lost(cluster, node, remote.since) {
            let _ = remote.queue.try_send(Action::Disconnected);
        }
    }
}

/// Whether `node`, first heard of at `since`, is lost.
fn lost(cluster: &Cluster, node: &str, since: Instant) -> bool {
    since.elapsed() > NEWCOMER && !cluster.is_node_live(node)
}
