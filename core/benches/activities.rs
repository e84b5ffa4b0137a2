//! A shared activity's updates through the server, over real WebSockets on
//! loopback: `ACTIVITY_PARTICIPANTS` (32) people on one call, every one of them in
//! one activity; one member sends `ACTIVITY_UPDATES` (400) updates of 160 sealed
//! bytes (a play/pause/seek with its position, as a page seals it) at
//! `ACTIVITY_RATE` (20) a second. Every other member notes when each update
//! arrives; the figures are the time from sending to arriving, over every pair of
//! update and receiver, and the CPU time of this process per update. The server
//! and the 32 clients run in this one process, so that CPU is an upper bound of
//! the server's share. The run is repeated `ACTIVITY_RUNS` (3) times.
//!
//! The server only relays: it numbers the update, keeps it in the activity's log
//! and sends it to each member; it never opens it. The activity belongs to the
//! bundled email-invites plugin's name (any plugin with call-page web code would
//! do: the plugin itself is not called).
//!
//! `cargo bench -p confab-core --bench activities`; the figures are in
//! docs/BENCHMARKS.md.

#![allow(clippy::unwrap_used)] // a bench that unwraps fails with the line

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use confab_core::accounts::{self, NewUser, Role};
use confab_core::secret::Secret;
use confab_core::{App, Config, SystemClock};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

const PLUGIN: &str = "email-invites";

fn count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// When each update left the sender, by its number (the server numbers them from
/// 1 in the order they arrive, which is the order this one member sent them).
type Sent = Arc<Mutex<Vec<Instant>>>;

/// A server on loopback with the bundled plugins and one link whose guests join
/// directly; its address, the link and the owner's API token.
async fn server(dir: &std::path::Path) -> (String, String, String) {
    let mut c = Config {
        data_dir: dir.to_path_buf(),
        ..Config::default()
    };
    c.server.public_url = "https://meet.example.org".into();
    c.plugins.watch = false;
    c.media.udp_port = 0;
    c.media.tcp_port = 0;
    let app = App::build_with_clock(c, Arc::new(SystemClock))
        .await
        .unwrap();
    let store = &app.state().store;
    let now = chrono::Utc::now();
    let owner = NewUser {
        email: "host@example.org".into(),
        display_name: "Host".into(),
        password: Secret::new("correct horse battery".into()),
        role: Role::Admin,
    };
    let account = accounts::create_user(store, owner, now).await.unwrap();
    let issued = accounts::issue_token(store, account.id, "bench", now).await;
    let token = issued.unwrap().secret.expose().to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(confab_core::serve(
        listener,
        app.router(),
        Duration::from_secs(10),
        std::future::pending(),
    ));
    let created = create_link(&addr, &token).await;
    (addr, created, token)
}

/// `POST /api/v1/links` over a plain TCP connection (the bench needs one request).
async fn create_link(addr: &str, token: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = json!({"title": "Watch party", "guests_need_approval": false}).to_string();
    let request = format!(
        "POST /api/v1/links HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let json = &answer[answer.find('{').unwrap()..answer.rfind('}').unwrap() + 1];
    let link: Value = serde_json::from_str(json).unwrap();
    link["id"].as_str().unwrap().to_string()
}

/// One participant: joins the call (the owner with `token`, others as guests from
/// `127.1.0.{index}`), joins the activity and waits for its state. The owner's
/// connection answers every newcomer's snapshot request. Afterwards each update
/// from someone else is noted in `arrived` with its delay from `sent`.
async fn participant(
    addr: String,
    link: String,
    token: Option<String>,
    index: usize,
    sent: Sent,
    arrived: Arc<Mutex<Vec<Duration>>>,
) -> tokio::sync::mpsc::UnboundedSender<String> {
    let mut request = format!("ws://{addr}/j/{link}/ws")
        .into_client_request()
        .unwrap();
    if let Some(token) = &token {
        let value = format!("Bearer {token}").parse().unwrap();
        request.headers_mut().insert("authorization", value);
    }
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    let source = std::net::SocketAddr::from(([127, 1, 0, u8::try_from(index).unwrap()], 0));
    socket.bind(source).unwrap();
    let stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    let plain = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    let (ws, _) = tokio_tungstenite::client_async(request, plain)
        .await
        .unwrap();
    let (mut tx, mut rx) = ws.split();
    let mut join = json!({"v": 1, "type": "join"});
    if token.is_none() {
        join["name"] = format!("Guest {index}").into();
        join["guest_key"] = format!("bench-activity-guest-{index:04}").into();
    }
    tx.send(Message::text(join.to_string())).await.unwrap();
    let (out, mut outgoing) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(text) = outgoing.recv().await {
            if tx.send(Message::text(text)).await.is_err() {
                break;
            }
        }
    });
    let (synced, is_synced) = tokio::sync::oneshot::channel();
    let mut synced = Some(synced);
    let answer = out.clone();
    tokio::spawn(async move {
        let mut me = 0;
        while let Some(Ok(frame)) = rx.next().await {
            let Message::Text(text) = frame else { continue };
            let message: Value = serde_json::from_str(&text).unwrap();
            match message["type"].as_str().unwrap_or_default() {
                "joined" => {
                    me = message["participant"].as_u64().unwrap();
                    let join = json!({"v": 1, "type": "activity_join", "plugin": PLUGIN});
                    answer.send(join.to_string()).unwrap();
                }
                "activity_snapshot" => {
                    if let Some(synced) = synced.take() {
                        let _ = synced.send(());
                    }
                }
                "activity_snapshot_request" => {
                    let reply = json!({"v": 1, "type": "activity_snapshot", "plugin": PLUGIN,
                        "newcomer": message["newcomer"], "seq": 0, "payload": sealed(0)});
                    answer.send(reply.to_string()).unwrap();
                }
                "activity_update" if message["from"].as_u64() != Some(me) => {
                    let seq = usize::try_from(message["seq"].as_u64().unwrap()).unwrap();
                    let at = sent.lock().unwrap().get(seq - 1).copied();
                    if let Some(at) = at {
                        arrived.lock().unwrap().push(at.elapsed());
                    }
                }
                "error" => panic!("participant {index}: {message}"),
                _ => {}
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(20), is_synced)
        .await
        .expect("the activity's state in time")
        .unwrap();
    out
}

/// 160 bytes as a page seals an update (here random: the server never opens it).
fn sealed(n: usize) -> String {
    let bytes: Vec<u8> = (0..160).map(|i| (i * 31 + n * 7) as u8).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// CPU seconds this process has used so far (user and system).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One run; prints and returns (p50, p99, max, CPU per update).
async fn run(
    participants: usize,
    updates: usize,
    rate: usize,
) -> (Duration, Duration, Duration, f64) {
    let dir = tempfile::tempdir().unwrap();
    let (addr, link, token) = server(dir.path()).await;
    let sent: Sent = Arc::new(Mutex::new(Vec::new()));
    let arrived = Arc::new(Mutex::new(Vec::new()));
    let mut senders = Vec::new();
    for index in 1..=participants {
        let token = (index == 1).then(|| token.clone());
        let out = participant(
            addr.clone(),
            link.clone(),
            token,
            index,
            sent.clone(),
            arrived.clone(),
        )
        .await;
        senders.push(out);
    }
    let sender = &senders[1];
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    let cpu_before = cpu_seconds();
    let mut next = Instant::now();
    for n in 0..updates {
        tokio::time::sleep_until(next.into()).await;
        next += every;
        let update =
            json!({"v": 1, "type": "activity_update", "plugin": PLUGIN, "payload": sealed(n)});
        sent.lock().unwrap().push(Instant::now());
        sender.send(update.to_string()).unwrap();
    }
    let expected = updates * (participants - 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while arrived.lock().unwrap().len() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu = (cpu_seconds() - cpu_before) / updates as f64;
    let mut times = arrived.lock().unwrap().clone();
    assert_eq!(times.len(), expected, "every member got every update");
    times.sort();
    let (p50, p99, max) = (
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        *times.last().unwrap(),
    );
    println!(
        "{participants} members, {updates} updates at {rate}/s: send to arrive p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; process CPU {:.0} µs per update",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        cpu * 1e6
    );
    (p50, p99, max, cpu)
}

fn main() {
    let participants = count("ACTIVITY_PARTICIPANTS", 32).clamp(2, 32);
    let updates = count("ACTIVITY_UPDATES", 400).max(1);
    let rate = count("ACTIVITY_RATE", 20).max(1);
    let runs = count("ACTIVITY_RUNS", 3).max(1);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut results = Vec::new();
    for _ in 0..runs {
        results.push(runtime.block_on(run(participants, updates, rate)));
    }
    let median = |mut values: Vec<f64>| {
        values.sort_by(f64::total_cmp);
        (
            values[values.len() / 2],
            values[0],
            values[values.len() - 1],
        )
    };
    let ms = |pick: fn(&(Duration, Duration, Duration, f64)) -> Duration| {
        median(
            results
                .iter()
                .map(|r| pick(r).as_secs_f64() * 1e3)
                .collect(),
        )
    };
    let (p50, p50_lo, p50_hi) = ms(|r| r.0);
    let (p99, p99_lo, p99_hi) = ms(|r| r.1);
    let (cpu, cpu_lo, cpu_hi) = median(results.iter().map(|r| r.3 * 1e6).collect());
    println!(
        "median of {runs} runs: p50 {p50:.2} ms [{p50_lo:.2}–{p50_hi:.2}], p99 {p99:.2} ms [{p99_lo:.2}–{p99_hi:.2}], process CPU {cpu:.0} µs per update [{cpu_lo:.0}–{cpu_hi:.0}]"
    );
}
