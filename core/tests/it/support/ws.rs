//! The tests' signaling client: a WebSocket to a link's `/j/{id}/ws`, from a
//! loopback address of its own.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client's WebSocket connection to the test server.
pub type Connection = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A loopback address no other connection of this test run has used: each
/// WebSocket client of the tests is someone else on another network unless a test
/// says otherwise (the server's limits and removals count per address).
pub fn fresh_loopback() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0x7f01_0001);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    assert!(n < 0x7fff_ffff, "loopback addresses used up");
    IpAddr::V4(Ipv4Addr::from(n))
}

/// Opens a WebSocket to `request` from the loopback address `source`.
pub async fn ws_connect_from(
    request: tungstenite::handshake::client::Request,
    source: IpAddr,
) -> Result<Connection, tungstenite::Error> {
    let uri = request.uri().clone();
    let host = uri.host().expect("host");
    let port = uri.port_u16().unwrap_or(80);
    let server: SocketAddr = tokio::net::lookup_host((host, port))
        .await
        .expect("server address")
        .next()
        .expect("one address");
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::new(source, 0)).expect("bind");
    let stream = socket.connect(server).await.expect("connect");
    tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
        .await
        .map(|(ws, _)| ws)
}

/// A signaling WebSocket as the tests drive it.
///
/// [`Ws::open`] and the other `open…` read the connection only when the test asks:
/// until then the server's messages wait, and so do its pings (a client that does
/// not read does not answer them). [`Ws::open_background`] reads every message as it
/// arrives instead, so that the server never waits on it: a participant without a
/// browser that fills a call cheaply (no media).
pub(crate) struct Ws {
    sink: SplitSink<Connection, Message>,
    source: Source,
}

/// Where a [`Ws`] reads from.
enum Source {
    /// The connection itself, read when the test asks.
    Direct(SplitStream<Connection>),
    /// What a background task read off the connection: its text messages, in order;
    /// closed once the connection ends.
    Background(mpsc::UnboundedReceiver<Message>),
}

impl Source {
    /// The next frame; `None` once the connection has ended.
    async fn next(&mut self) -> Option<Result<Message, tungstenite::Error>> {
        match self {
            Source::Direct(stream) => stream.next().await,
            Source::Background(inbox) => inbox.recv().await.map(Ok),
        }
    }
}

impl Ws {
    pub(crate) async fn open(addr: &str, link: &str, cookies: Option<&str>) -> Ws {
        Ws::open_with(addr, link, cookies.map(|c| ("cookie", c.to_string()))).await
    }

    /// Opens with one extra request header (a cookie, an Authorization header).
    pub(crate) async fn open_with(
        addr: &str,
        link: &str,
        header: Option<(&'static str, String)>,
    ) -> Ws {
        Ws::open_from(addr, link, header, fresh_loopback()).await
    }

    /// Opens from the loopback address `source` (someone on that network).
    pub(crate) async fn open_from(
        addr: &str,
        link: &str,
        header: Option<(&'static str, String)>,
        source: IpAddr,
    ) -> Ws {
        let mut request = format!("ws://{addr}/j/{link}/ws")
            .into_client_request()
            .unwrap();
        if let Some((name, value)) = header {
            request.headers_mut().insert(name, value.parse().unwrap());
        }
        let stream = ws_connect_from(request, source)
            .await
            .expect("websocket opens");
        let (sink, stream) = StreamExt::split(stream);
        let mut ws = Ws {
            sink,
            source: Source::Direct(stream),
        };
        let welcome = ws.next().await;
        assert_eq!(welcome["type"], "welcome");
        ws
    }

    /// Opens like [`Ws::open`], then reads in the background (see [`Ws`]). The
    /// `welcome` message is left to read like any other ([`Ws::wait_for`] skips it).
    pub(crate) async fn open_background(addr: &str, link: &str, cookies: Option<&str>) -> Ws {
        let mut request = format!("ws://{addr}/j/{link}/ws")
            .into_client_request()
            .unwrap();
        if let Some(cookies) = cookies {
            request
                .headers_mut()
                .insert("cookie", cookies.parse().unwrap());
        }
        // Each from an address of its own: the server limits guests per address.
        let stream = ws_connect_from(request, fresh_loopback())
            .await
            .expect("websocket opens");
        let (sink, mut source) = StreamExt::split(stream);
        let (to_inbox, inbox) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = source.next().await {
                if matches!(frame, Message::Text(_)) && to_inbox.send(frame).is_err() {
                    break;
                }
            }
        });
        Ws {
            sink,
            source: Source::Background(inbox),
        }
    }

    pub(crate) async fn send(&mut self, message: Value) {
        self.sink
            .send(Message::Text(message.to_string().into()))
            .await
            .unwrap();
    }

    pub(crate) async fn send_raw(&mut self, text: &str) {
        self.sink
            .send(Message::Text(text.to_string().into()))
            .await
            .unwrap();
    }

    /// The next server message (fails after 5 s).
    pub(crate) async fn next(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(5), self.source.next())
                .await
                .expect("a message within 5 s")
                .expect("connection open")
                .unwrap();
            if let Message::Text(text) = frame {
                let value: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(value["v"], 1, "every message carries the version");
                return value;
            }
        }
    }

    /// The next message of type `kind`, skipping roster and lobby snapshots.
    pub(crate) async fn expect(&mut self, kind: &str) -> Value {
        for _ in 0..50 {
            let message = self.next().await;
            if message["type"] == kind {
                return message;
            }
            assert!(
                message["type"] == "roster" || message["type"] == "lobby",
                "expected {kind}, got {message}"
            );
        }
        panic!("no {kind} message");
    }

    /// The error code of the next error, skipping snapshots.
    pub(crate) async fn expect_error(&mut self, code: &str) {
        let message = self.expect("error").await;
        assert_eq!(message["code"], code, "{message}");
        assert!(message["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    /// The next lobby snapshot that satisfies `check`.
    pub(crate) async fn lobby_until(&mut self, check: impl Fn(&Vec<Value>) -> bool) -> Vec<Value> {
        for _ in 0..50 {
            let message = self.next().await;
            if message["type"] == "lobby" {
                assert!(
                    message["now"].is_string(),
                    "snapshots carry the server's clock"
                );
                let requests = message["requests"].as_array().unwrap().clone();
                if check(&requests) {
                    return requests;
                }
            }
        }
        panic!("lobby never matched");
    }

    pub(crate) async fn roster_until(&mut self, check: impl Fn(&Vec<Value>) -> bool) -> Vec<Value> {
        for _ in 0..50 {
            let message = self.next().await;
            if message["type"] == "roster" {
                assert!(
                    message["now"].is_string(),
                    "snapshots carry the server's clock"
                );
                let participants = message["participants"].as_array().unwrap().clone();
                if check(&participants) {
                    return participants;
                }
            }
        }
        panic!("roster never matched");
    }

    pub(crate) async fn join_as_guest(&mut self, name: &str, key: &str) -> Value {
        self.send(json!({ "v": 1, "type": "join", "name": name, "guest_key": key }))
            .await;
        self.next().await
    }

    /// Asks to join as a guest and waits: `host` admits the request once it shows in
    /// the lobby. Returns the `joined` message.
    pub(crate) async fn join_admitted_by(&mut self, host: &mut Ws, name: &str, key: &str) -> Value {
        let waiting = self.join_as_guest(name, key).await;
        assert_eq!(waiting["type"], "waiting", "{waiting}");
        let request = waiting["request"].clone();
        host.lobby_until(|r| r.iter().any(|e| e["request"] == request))
            .await;
        host.send(json!({ "v": 1, "type": "admit", "request": request }))
            .await;
        self.expect("joined").await
    }

    /// Waits for the server to close the connection (fails after 5 s), skipping
    /// whatever it sends before.
    pub(crate) async fn closed(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let frame = tokio::time::timeout_at(deadline, self.source.next())
                .await
                .expect("the server closes within 5 s");
            match frame {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    }

    /// What the server sends until a message satisfies `done` (the last one then),
    /// or `wait` passes.
    pub(crate) async fn seen_until(
        &mut self,
        wait: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut got = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.source.next()).await {
                Err(_) => return got,
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {
                    got.push(json!({ "type": "closed" }));
                    return got;
                }
                Ok(Some(Ok(Message::Text(text)))) => {
                    let message: Value = serde_json::from_str(&text).unwrap();
                    let last = done(&message);
                    got.push(message);
                    if last {
                        return got;
                    }
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// Everything the server sends within `wait` (a `{"type": "closed"}` entry
    /// where it closed the connection).
    pub(crate) async fn within(&mut self, wait: Duration) -> Vec<Value> {
        self.seen_until(wait, |_| false).await
    }

    /// The next message, however long it takes; `None` once the connection has ended.
    pub(crate) async fn recv(&mut self) -> Option<Value> {
        loop {
            match self.source.next().await? {
                Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).unwrap()),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    /// The next message of type `kind`, skipping any others but errors (fails after
    /// 15 s). Unlike [`Ws::expect`], it skips every kind of message.
    pub(crate) async fn wait_for(&mut self, kind: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let message = tokio::time::timeout_at(deadline, self.recv())
                .await
                .unwrap_or_else(|_| panic!("no {kind} message within 15 s"))
                .expect("connection open");
            if message["type"] == kind {
                return message;
            }
            assert_ne!(message["type"], "error", "expected {kind}");
        }
    }

    pub(crate) async fn close(mut self) {
        // What `WebSocketStream::close(None)` sends.
        let _ = self.sink.send(Message::Close(None)).await;
    }
}
