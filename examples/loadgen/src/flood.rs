//! Strangers at the door while a call runs: join requests, idle ICE-TCP connections
//! and slow HTTP clients, each from its own loopback address (127.0.0.0/8 is all
//! local on Linux, so every connection can come from a distinct client address).
//! What each one was answered, and when the server let go of it, is the report.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// How many strangers of each kind (the `--flood-*` arguments).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Flood {
    /// Guests asking to join at once, each from its own loopback address.
    #[arg(long = "flood-joins", default_value_t = 0, value_parser = flood_size)]
    pub joins: usize,
    /// Idle ICE-TCP connections to the media port, kept open at this many.
    #[arg(long = "flood-tcp", default_value_t = 0, value_parser = flood_size, requires = "media_tcp")]
    pub idle_tcp: usize,
    /// HTTP clients sending their headers one byte a second, kept at this many.
    #[arg(long = "flood-slow-http", default_value_t = 0, value_parser = flood_size)]
    pub slow_http: usize,
    /// The server's media TCP address (for `--flood-tcp`).
    #[arg(long)]
    pub media_tcp: Option<SocketAddr>,
}

/// Each flood is at most one loopback block of addresses.
fn flood_size(text: &str) -> Result<usize, String> {
    let n: usize = text.parse().map_err(|e| format!("{e}"))?;
    if n > 25_000 {
        return Err("each flood is at most 25,000 (one loopback block of addresses)".into());
    }
    Ok(n)
}

impl Flood {
    pub fn any(&self) -> bool {
        self.joins + self.idle_tcp + self.slow_http > 0
    }
}

/// What the strangers saw.
#[derive(Debug, Default)]
pub struct FloodReport {
    /// Join requests by the answer they got: `waiting`, an error code, or how
    /// the attempt failed.
    pub answers: BTreeMap<String, usize>,
    /// Milliseconds from connecting to the answer.
    pub answer_ms: Vec<u32>,
    /// Idle ICE-TCP connections opened (each closed one is opened again), and
    /// seconds until the server closed each.
    pub tcp_opened: usize,
    pub tcp_closed_after: Vec<f64>,
    /// Slow HTTP connections opened (likewise), and seconds until the server
    /// closed each.
    pub http_opened: usize,
    pub http_closed_after: Vec<f64>,
    /// The server's largest resident memory seen while the flood ran, in KiB.
    pub peak_rss_kib: u64,
}

/// The `n`th loopback address of block `block` (127.block.x.y, never .0 or .255).
fn address(block: u8, n: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, block, (n / 250) as u8, (n % 250) as u8 + 1)
}

async fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from.into(), 0))?;
    socket.connect(to).await
}

/// Runs the flood until `done`; `server` is the HTTP base URL.
pub async fn run(
    flood: Flood,
    server: String,
    link: String,
    server_pid: Option<u32>,
    done: Arc<AtomicBool>,
) -> Result<FloodReport> {
    let http: SocketAddr = server
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .context("--server must be http://IP:PORT for a flood")?;
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = server_pid.map(|pid| {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                if let Ok(kib) = crate::rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    });

    let mut joins = Vec::new();
    for n in 0..flood.joins {
        let (done, link) = (done.clone(), link.clone());
        joins.push(tokio::spawn(async move { join(n, http, link, done).await }));
    }
    let mut tcps = Vec::new();
    if let Some(media) = flood.media_tcp {
        for n in 0..flood.idle_tcp {
            let done = done.clone();
            tcps.push(tokio::spawn(async move {
                hold(address(3, n), media, None, done).await
            }));
        }
    }
    let mut slow = Vec::new();
    for n in 0..flood.slow_http {
        let done = done.clone();
        slow.push(tokio::spawn(async move {
            let trickle = b"GET /healthz HTTP/1.1\r\nHost: confab\r\nX-Slow: ".to_vec();
            hold(address(4, n), http, Some(trickle), done).await
        }));
    }

    let mut report = FloodReport::default();
    for task in joins {
        let (answer, ms) = task.await?;
        *report.answers.entry(answer).or_default() += 1;
        if let Some(ms) = ms {
            report.answer_ms.push(ms);
        }
    }
    for task in tcps {
        let (opened, closed) = task.await?;
        report.tcp_opened += opened;
        report.tcp_closed_after.extend(closed);
    }
    for task in slow {
        let (opened, closed) = task.await?;
        report.http_opened += opened;
        report.http_closed_after.extend(closed);
    }
    if let Some(sampler) = sampler {
        sampler.await?;
    }
    report.peak_rss_kib = peak.load(Ordering::Relaxed);
    Ok(report)
}

/// One guest from its own address asks to join, and stays until `done` or until
/// the server closes the connection. Returns the answer and how long it took.
async fn join(
    n: usize,
    http: SocketAddr,
    link: String,
    done: Arc<AtomicBool>,
) -> (String, Option<u32>) {
    let started = Instant::now();
    let stream = match connect_from(address(2, n), http).await {
        Ok(stream) => stream,
        Err(err) => return (format!("connect failed ({})", err.kind()), None),
    };
    let url = format!("ws://{http}/j/{link}/ws");
    let ws = match tokio::time::timeout(
        Duration::from_secs(20),
        tokio_tungstenite::client_async(url, stream),
    )
    .await
    {
        Ok(Ok((ws, _))) => ws,
        Ok(Err(err)) => return (format!("upgrade refused ({err})"), None),
        Err(_) => return ("no upgrade within 20 s".into(), None),
    };
    let (mut tx, mut rx) = ws.split();
    let join = json!({"v": 1, "type": "join", "name": format!("Flood {n}"), "guest_key": format!("flood-guest-key-{n:05}")});
    if tx.send(Message::text(join.to_string())).await.is_err() {
        return ("closed before the join".into(), None);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let message = match tokio::time::timeout_at(deadline, rx.next()).await {
            Err(_) => break "no answer within 20 s".to_string(),
            Ok(None) | Ok(Some(Err(_))) => break "closed without an answer".to_string(),
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(_))) => continue,
        };
        let value: Value = serde_json::from_str(&message).unwrap_or_default();
        match value["type"].as_str().unwrap_or("") {
            "waiting" => break "waiting".to_string(),
            "error" => break value["code"].as_str().unwrap_or("error").to_string(),
            "welcome" => continue,
            other => break other.to_string(),
        }
    };
    let ms = started.elapsed().as_millis() as u32;
    // Stay (answering pings as tungstenite does while reading) until the end.
    while !done.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(200), rx.next()).await {
            Ok(None) | Ok(Some(Err(_))) => break,
            _ => {}
        }
    }
    let _ = tx.close().await;
    (answer, Some(ms))
}

/// Keeps a connection from `from` open until `done`, sending `trickle` one byte a
/// second if given, and opens a new one whenever the server closes it. Returns
/// how many it opened and, for each the server closed, the seconds it was open.
async fn hold(
    from: Ipv4Addr,
    to: SocketAddr,
    trickle: Option<Vec<u8>>,
    done: Arc<AtomicBool>,
) -> (usize, Vec<f64>) {
    let (mut opened, mut closed) = (0, Vec::new());
    let mut buf = [0u8; 512];
    'connections: while !done.load(Ordering::Relaxed) {
        let Ok(mut stream) = connect_from(from, to).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        opened += 1;
        let since = Instant::now();
        let mut next = 0usize;
        while !done.load(Ordering::Relaxed) {
            tokio::select! {
                read = stream.read(&mut buf) => match read {
                    Ok(0) | Err(_) => {
                        closed.push(since.elapsed().as_secs_f64());
                        continue 'connections;
                    }
                    Ok(_) => {}
                },
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if let Some(bytes) = &trickle {
                        let byte = bytes.get(next).copied().unwrap_or(b'x');
                        next += 1;
                        if stream.write_all(&[byte]).await.is_err() {
                            closed.push(since.elapsed().as_secs_f64());
                            continue 'connections;
                        }
                    }
                }
            }
        }
    }
    (opened, closed)
}
