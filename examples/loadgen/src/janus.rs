//! The same synthetic participant in a Janus VideoRoom, for the side-by-side
//! benchmark (`examples/bench/vs-janus.sh`).
//!
//! It speaks the Janus API over Janus's WebSocket transport (subprotocol
//! `janus-protocol`): one session with two VideoRoom handles. The publisher handle
//! joins the room and publishes the participant's offer (Opus and three-layer VP8
//! simulcast, rids listed lowest first: `rid_order: "lmh"`). The subscriber handle
//! joins as a multistream subscriber to every other publisher as it appears, asking
//! for simulcast substream `--layer`; Janus offers, the participant answers with
//! `start`. Feeds that appear while a renegotiation is under way are subscribed in
//! one batch once it ends. Both peer connections carry all their candidates in the
//! SDP (`trickle: false`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::media::Media;
use crate::{Options, Report, Run};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Janus drops a session that says nothing for 60 s (its default).
const KEEPALIVE: Duration = Duration::from_secs(15);
/// How long a refused subscription waits before it is asked again.
const RETRY: Duration = Duration::from_secs(1);

/// The sending half of the Janus API, numbering transactions.
struct Api {
    tx: SplitSink<Socket, Message>,
    session: u64,
    transaction: u64,
}

impl Api {
    async fn send(&mut self, mut request: Value) -> Result<String> {
        self.transaction += 1;
        let transaction = format!("t{}", self.transaction);
        request["transaction"] = json!(transaction);
        if self.session != 0 {
            request["session_id"] = json!(self.session);
        }
        self.tx.send(Message::text(request.to_string())).await?;
        Ok(transaction)
    }

    /// Sends a request and waits for its `success` (only while nothing else flows:
    /// creating the session and attaching handles).
    async fn call(&mut self, rx: &mut SplitStream<Socket>, request: Value) -> Result<Value> {
        let transaction = self.send(request).await?;
        loop {
            let message = rx.next().await.context("Janus closed the connection")??;
            let Message::Text(text) = message else {
                continue;
            };
            let value: Value = serde_json::from_str(&text)?;
            if value["transaction"] != json!(transaction) {
                continue;
            }
            if value["janus"] == "success" {
                return Ok(value);
            }
            bail!("Janus refused the request: {value}");
        }
    }

    async fn attach(&mut self, rx: &mut SplitStream<Socket>) -> Result<u64> {
        let attached = self
            .call(
                rx,
                json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
            )
            .await?;
        attached["data"]["id"]
            .as_u64()
            .ok_or_else(|| anyhow!("no handle id in {attached}"))
    }

    /// A request to the VideoRoom plugin on `handle`, with an SDP if any.
    async fn message(&mut self, handle: u64, body: Value, jsep: Option<Value>) -> Result<()> {
        let mut request = json!({"janus": "message", "handle_id": handle, "body": body});
        if let Some(jsep) = jsep {
            request["jsep"] = jsep;
        }
        self.send(request).await.map(drop)
    }
}

/// The subscriber handle's progress.
#[derive(Default)]
struct Subscription {
    joined: bool,
    /// Publishers not asked for yet, and those asked for in the negotiation under way.
    pending: Vec<u64>,
    asked: Vec<u64>,
    negotiating: bool,
    /// When a refused batch may be asked again.
    retry_at: Option<Instant>,
}

pub(crate) async fn participant(index: usize, o: Options, run: Arc<Run>) -> Result<Report> {
    let url = o.janus.clone().context("--janus is not set")?;
    let mut request = url.as_str().into_client_request()?;
    request
        .headers_mut()
        .insert("sec-websocket-protocol", "janus-protocol".parse()?);
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .with_context(|| format!("Janus WebSocket API at {url}"))?;
    let (tx, mut rx) = ws.split();
    let mut api = Api {
        tx,
        session: 0,
        transaction: 0,
    };
    let created = api.call(&mut rx, json!({"janus": "create"})).await?;
    api.session = created["data"]["id"]
        .as_u64()
        .ok_or_else(|| anyhow!("no session id in {created}"))?;
    let publisher = api.attach(&mut rx).await?;
    let subscriber = api.attach(&mut rx).await?;
    api.message(
        publisher,
        json!({"request": "join", "ptype": "publisher", "room": o.room, "display": format!("Load {index}")}),
        None,
    )
    .await?;

    let mut media = Media::bind(o.bind).await?;
    let mut sub = Subscription::default();
    let mut next_keepalive = Instant::now() + KEEPALIVE;
    loop {
        if run.done.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        media.step(&run, now).await;
        if now >= next_keepalive {
            next_keepalive = now + KEEPALIVE;
            api.send(json!({"janus": "keepalive"})).await?;
        }
        let may_ask = media.me.is_some()
            && !sub.negotiating
            && !sub.pending.is_empty()
            && sub.retry_at.is_none_or(|at| now >= at);
        if may_ask {
            sub.asked = std::mem::take(&mut sub.pending);
            let streams: Vec<Value> = sub
                .asked
                .iter()
                .map(|feed| json!({"feed": feed, "substream": o.layer}))
                .collect();
            let body = if sub.joined {
                json!({"request": "subscribe", "streams": streams})
            } else {
                json!({"request": "join", "ptype": "subscriber", "room": o.room, "streams": streams})
            };
            sub.joined = true;
            sub.negotiating = true;
            api.message(subscriber, body, None).await?;
        }
        let wake = media.wake(now);
        tokio::select! {
            message = rx.next() => {
                let Some(message) = message else { bail!("participant {index}: Janus closed the connection") };
                let Message::Text(text) = message? else { continue };
                let value: Value = serde_json::from_str(&text)?;
                let now = Instant::now();
                match value["janus"].as_str().unwrap_or("") {
                    "event" => {
                        let data = &value["plugindata"]["data"];
                        let jsep = value.get("jsep");
                        let sender = value["sender"].as_u64();
                        if sender == Some(publisher) {
                            if let Some(error) = data.get("error") {
                                bail!("participant {index}: Janus refused the publisher: {error}");
                            }
                            for feed in data["publishers"].as_array().into_iter().flatten() {
                                if let Some(id) = feed["id"].as_u64()
                                    && !sub.pending.contains(&id)
                                    && !sub.asked.contains(&id)
                                {
                                    sub.pending.push(id);
                                }
                            }
                            if data["videoroom"] == "joined" {
                                let offer = media.start(index as u32 + 1, &run, now)?.publish_offer(now)?;
                                api.message(
                                    publisher,
                                    json!({"request": "publish"}),
                                    Some(json!({"type": "offer", "sdp": offer, "trickle": false, "rid_order": "lmh"})),
                                )
                                .await?;
                            }
                            if let Some(sdp) = jsep.and_then(|j| j["sdp"].as_str()) {
                                media.participant()?.publish_answer(now, sdp.to_owned())?;
                            }
                        } else if sender == Some(subscriber) {
                            if let Some(error) = data.get("error") {
                                // Asked again in a moment (say, a publisher that was
                                // not quite ready yet).
                                eprintln!("participant {index}: Janus refused a subscription: {error}");
                                sub.pending.append(&mut sub.asked);
                                sub.negotiating = false;
                                sub.retry_at = Some(now + RETRY);
                            }
                            if let Some(sdp) = jsep.and_then(|j| j["sdp"].as_str()) {
                                let answer = media.participant()?.subscribe_offer(now, sdp.to_owned())?;
                                api.message(
                                    subscriber,
                                    json!({"request": "start"}),
                                    Some(json!({"type": "answer", "sdp": answer, "trickle": false})),
                                )
                                .await?;
                            }
                            if data["started"] == "ok" {
                                sub.negotiating = false;
                            }
                        }
                    }
                    "hangup" => eprintln!("participant {index}: Janus hung up: {value}"),
                    "timeout" => bail!("participant {index}: Janus timed the session out"),
                    "error" => eprintln!("participant {index}: {value}"),
                    _ => {}
                }
            }
            got = media.recv() => got?,
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    let _ = api.send(json!({"janus": "destroy"})).await;
    let received = media
        .received()
        .ok_or_else(|| anyhow!("participant {index} never joined"))?;
    Ok(Report {
        received,
        round_trips: Vec::new(),
        pongs: Vec::new(),
    })
}
