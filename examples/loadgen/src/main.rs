//! Load generator for Confab's SFU: N synthetic participants join one call through
//! the real signaling WebSocket, each publishes Opus and three-layer simulcast VP8
//! over UDP and receives everyone else. Reports forwarded packets per second, the
//! server's CPU time and memory (read from `/proc/{pid}`), loss, and added latency.
//!
//! ```text
//! confab-loadgen --server http://127.0.0.1:18090 --link ID --token cf_… \
//!     --server-pid PID [--participants 16] [--seconds 30] [--warmup 8] [--layer 2] \
//!     [--grid] [--screen]
//! ```
//! `examples/bench/sfu.sh` starts a server and runs this against it.
//!
//! With `--flood-joins N`, `--flood-tcp N` (and `--media-tcp IP:PORT`) or
//! `--flood-slow-http N`, strangers from distinct loopback addresses knock while the
//! call is measured (see `flood.rs`), and the host measures its signaling round trip
//! through the call; `examples/bench/flood.sh` runs that.
//!
//! With `--janus ws://host:8188` the same participants join a Janus VideoRoom
//! instead (see `janus.rs`); `examples/bench/vs-janus.sh` runs both servers side by
//! side. `--bind` sets the address the participants' media sockets use.

mod arrival;
mod flood;
mod janus;
mod media;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use media::{Media, Received};

/// What to measure (`confab-loadgen --help`).
#[derive(Debug, Clone, clap::Parser)]
#[command(about = "Synthetic participants in one call on a Confab server")]
struct Options {
    /// The server's base URL.
    #[arg(long, default_value = "http://127.0.0.1:18090")]
    server: String,
    /// The link's public id.
    #[arg(long, required_unless_present = "janus")]
    link: Option<String>,
    /// An API token of the link's owner (the first participant joins as them).
    #[arg(long, required_unless_present = "janus")]
    token: Option<String>,
    /// Measure a Janus server's VideoRoom instead: the URL of its WebSocket API
    /// (`ws://host:8188`). Every participant joins `--room` as a publisher and
    /// subscribes to everyone else's streams.
    #[arg(long, conflicts_with_all = ["grid", "screen"])]
    janus: Option<String>,
    /// The Janus VideoRoom room (configured with enough publishers, VP8 and Opus).
    #[arg(long, default_value_t = 1234)]
    room: u64,
    /// The address the participants' media sockets bind (the generator's side of
    /// the path to the server: a veth address when the server runs in a network
    /// namespace).
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// The server's process id, to read its CPU time and memory from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// People on the call (2–32).
    #[arg(long, default_value_t = 16, value_parser = participants)]
    participants: usize,
    /// Seconds measured.
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 8)]
    warmup: u64,
    /// The simulcast layer each participant asks of the others (0–2).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=2))]
    layer: u8,
    /// Ask for layers as the browser does for a grid of small tiles: the smallest
    /// layer of every camera, and `--layer` of the active speaker's (overrides
    /// `--layer` for everyone else).
    #[arg(long)]
    grid: bool,
    /// The second participant also shares a screen (one VP8 stream, 5 frames/s),
    /// which everyone receives.
    #[arg(long)]
    screen: bool,
    #[command(flatten)]
    flood: flood::Flood,
}

fn participants(text: &str) -> Result<usize, String> {
    let n: usize = text.parse().map_err(|e| format!("{e}"))?;
    if !(2..=32).contains(&n) {
        return Err("a call has 2 to 32 participants".into());
    }
    Ok(n)
}

/// Shared between the participant tasks.
struct Run {
    epoch: Instant,
    connected: AtomicUsize,
    /// Set when the measured window starts, and when it ends.
    measuring: AtomicBool,
    done: Arc<AtomicBool>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let o = <Options as clap::Parser>::parse();
    let run = Arc::new(Run {
        epoch: Instant::now(),
        connected: AtomicUsize::new(0),
        measuring: AtomicBool::new(false),
        done: Arc::new(AtomicBool::new(false)),
    });
    let idle_rss = o.server_pid.map(rss_kib).transpose()?;
    let mut tasks = Vec::new();
    for index in 0..o.participants {
        let (o, run) = (o.clone(), run.clone());
        tasks.push(tokio::spawn(async move {
            if o.janus.is_some() {
                janus::participant(index, o, run).await
            } else {
                participant(index, o, run).await
            }
        }));
        if index == 0 {
            // The host starts the call before guests ask to join.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let started = Instant::now();
    while run.connected.load(Ordering::Relaxed) < o.participants {
        if started.elapsed() > Duration::from_secs(60) {
            bail!(
                "only {} of {} participants connected media within 60 s",
                run.connected.load(Ordering::Relaxed),
                o.participants
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "all {} participants connected; warming up {} s",
        o.participants, o.warmup
    );
    tokio::time::sleep(Duration::from_secs(o.warmup)).await;

    let cpu_before = o.server_pid.map(cpu_seconds).transpose()?;
    let own_cpu_before = cpu_seconds(std::process::id())?;
    let measured_from = Instant::now();
    run.measuring.store(true, Ordering::SeqCst);
    let flooding = o.flood.any().then(|| {
        tokio::spawn(flood::run(
            o.flood.clone(),
            o.server.clone(),
            o.link.clone().unwrap_or_default(),
            o.server_pid,
            run.done.clone(),
        ))
    });
    tokio::time::sleep(Duration::from_secs(o.seconds)).await;
    let call_rss = o.server_pid.map(rss_kib).transpose()?;
    let cpu_after = o.server_pid.map(cpu_seconds).transpose()?;
    let own_cpu = cpu_seconds(std::process::id())? - own_cpu_before;
    run.done.store(true, Ordering::SeqCst);
    let window = measured_from.elapsed().as_secs_f64();

    let mut received = 0u64;
    let mut expected = 0u64;
    let mut missing = 0u64;
    let mut latencies = Vec::new();
    let mut waits = Vec::new();
    let mut streams = 0usize;
    let (mut round_trips, mut pongs) = (Vec::new(), Vec::new());
    for task in tasks {
        let report = task.await??;
        received += report.received.received;
        expected += report.received.expected;
        missing += report.received.missing;
        streams += report.received.streams;
        latencies.extend(report.received.latencies);
        waits.extend(report.received.waits);
        round_trips.extend(report.round_trips);
        pongs.extend(report.pongs);
    }
    let flooded = match flooding {
        Some(task) => Some(task.await??),
        None => None,
    };
    latencies.sort_unstable();
    waits.sort_unstable();
    let pct = |p: f64| percentile(&latencies, p);
    let forwarded_per_second = received as f64 / window;
    println!("participants:               {}", o.participants);
    let asked = if o.grid {
        format!(
            "layer 0 of every camera, layer {} of the active speaker's",
            o.layer
        )
    } else {
        format!("layer {}", o.layer)
    };
    let screen = if o.screen {
        "; one screen share, VP8 10 pkt/s"
    } else {
        ""
    };
    println!(
        "profile:                    Opus 50 pkt/s + VP8 q/h/f 30/60/180 pkt/s each{screen}; subscribers ask for {asked}"
    );
    println!("measured window:            {window:.1} s");
    println!("streams received:           {streams}");
    println!("forwarded packets/s:        {forwarded_per_second:.0} (received by participants)");
    println!(
        "loss:                       {:.3} % ({missing} of {expected})",
        100.0 * missing as f64 / expected.max(1) as f64
    );
    println!(
        "added latency:              p50 {:.2} ms, p99 {:.2} ms (sent to arrived at the receiving socket, same clock)",
        pct(0.50),
        pct(0.99)
    );
    println!(
        "generator's own delay:      p50 {:.2} ms, p99 {:.2} ms (arrived to handled, not in the latency above)",
        percentile(&waits, 0.50),
        percentile(&waits, 0.99)
    );
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        let cpu = b - a;
        println!(
            "server CPU:                 {cpu:.2} s in {window:.1} s ({:.0} % of one core)",
            100.0 * cpu / window
        );
        println!(
            "packets per server CPU-s:   {:.0}",
            received as f64 / cpu.max(0.001)
        );
    }
    println!(
        "generator CPU:              {own_cpu:.2} s in {window:.1} s ({:.0} % of one core)",
        100.0 * own_cpu / window
    );
    if let (Some(idle), Some(call)) = (idle_rss, call_rss) {
        println!(
            "server memory:              {:.1} MiB idle, {:.1} MiB in the call, {:.2} MiB per participant",
            idle as f64 / 1024.0,
            call as f64 / 1024.0,
            (call.saturating_sub(idle)) as f64 / 1024.0 / o.participants as f64
        );
    }
    if let Some(f) = flooded {
        print_flood(&o.flood, f, &mut round_trips, &mut pongs);
    }
    Ok(())
}

/// The `p` quantile of sorted `values` (microseconds), in milliseconds.
fn percentile(values: &[u32], p: f64) -> f64 {
    values
        .get(((values.len() as f64 * p) as usize).min(values.len().saturating_sub(1)))
        .map_or(f64::NAN, |us| f64::from(*us) / 1000.0)
}

fn print_flood(o: &flood::Flood, mut f: flood::FloodReport, calls: &mut [u32], pongs: &mut [u32]) {
    calls.sort_unstable();
    pongs.sort_unstable();
    println!(
        "host round trip via call:   p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} probes: mute, until the roster shows it)",
        percentile(calls, 0.50),
        percentile(calls, 0.99),
        percentile(calls, 1.0),
        calls.len()
    );
    println!(
        "host round trip (ping):     p50 {:.2} ms, p99 {:.2} ms ({} probes)",
        percentile(pongs, 0.50),
        percentile(pongs, 0.99),
        pongs.len()
    );
    if o.joins > 0 {
        let answers: Vec<String> = f.answers.iter().map(|(a, n)| format!("{n} {a}")).collect();
        let mut ms: Vec<u32> = f.answer_ms.iter().map(|ms| ms * 1000).collect();
        ms.sort_unstable();
        println!(
            "flood of join requests:     {} from as many addresses: {}; answered in p50 {:.0} ms, p99 {:.0} ms",
            o.joins,
            answers.join(", "),
            percentile(&ms, 0.50),
            percentile(&ms, 0.99)
        );
    }
    let closed = |after: &mut Vec<f64>| {
        after.sort_by(f64::total_cmp);
        let median = after.get(after.len() / 2).copied().unwrap_or(f64::NAN);
        let last = after.last().copied().unwrap_or(f64::NAN);
        (after.len(), median, last)
    };
    if o.idle_tcp > 0 {
        let (n, median, last) = closed(&mut f.tcp_closed_after);
        println!(
            "idle ICE-TCP connections:   {} held open at all times: {} opened, {n} closed by the server after {median:.1} s (median), {last:.1} s (longest)",
            o.idle_tcp, f.tcp_opened
        );
    }
    if o.slow_http > 0 {
        let (n, median, last) = closed(&mut f.http_closed_after);
        println!(
            "slow HTTP clients:          {} held open at all times: {} opened, {n} closed by the server after {median:.1} s (median), {last:.1} s (longest)",
            o.slow_http, f.http_opened
        );
    }
    if f.peak_rss_kib > 0 {
        println!(
            "server memory, peak:        {:.1} MiB during the flood",
            f.peak_rss_kib as f64 / 1024.0
        );
    }
}

/// What one participant saw in the measured window.
struct Report {
    received: Received,
    /// The host's signaling round trips through the call (µs), when probing.
    round_trips: Vec<u32>,
    /// The host's ping round trips (µs), when probing.
    pongs: Vec<u32>,
}

async fn participant(index: usize, o: Options, run: Arc<Run>) -> Result<Report> {
    let link = o.link.as_deref().context("--link is required")?;
    let ws_url = format!("{}/j/{link}/ws", o.server.replacen("http", "ws", 1));
    let mut request = ws_url.into_client_request()?;
    let host = index == 0;
    if host {
        request.headers_mut().insert(
            "authorization",
            format!("Bearer {}", o.token.as_deref().unwrap_or_default()).parse()?,
        );
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .context("signaling connection")?;
    let (mut tx, mut rx) = ws.split();
    let join = if host {
        json!({"v": 1, "type": "join"})
    } else {
        json!({"v": 1, "type": "join", "name": format!("Load {index}"), "guest_key": format!("loadgen-guest-key-{index:04}")})
    };
    tx.send(Message::text(join.to_string())).await?;

    let mut media = Media::bind(o.bind).await?;
    let mut asked_quality: Vec<u64> = Vec::new();
    // With --grid: whose camera this participant gets at `--layer` (the speaker's).
    let mut speaker_shown: Option<u64> = None;
    // The host's own guests waiting in the lobby, with when it last let them in:
    // what the server refuses (rate_limited, say) is asked again a second later.
    let mut waiting_own: HashMap<u64, Option<Instant>> = HashMap::new();
    // The host's probes while measuring under a flood: a change of its mute state
    // (answered by a roster through the call) and a ping (answered by its
    // connection), ten a second.
    let probing = host && o.flood.any();
    let mut my_id: Option<u64> = None;
    let mut next_probe = Instant::now();
    let mut muted = false;
    let mut mute_sent: Option<Instant> = None;
    let mut ping_sent: Option<Instant> = None;
    let (mut round_trips, mut pongs) = (Vec::new(), Vec::new());

    loop {
        if run.done.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        media.step(&run, now).await;
        // Let the host's own guests in: one `admit_all` when nobody else knocks (as
        // a host letting a full room in does), else each of them by name.
        let due: Vec<u64> = waiting_own
            .iter()
            .filter(|(_, sent)| {
                sent.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1))
            })
            .map(|(id, _)| *id)
            .collect();
        if !due.is_empty() {
            if o.flood.any() {
                for id in &due {
                    tx.send(Message::text(
                        json!({"v": 1, "type": "admit", "request": id}).to_string(),
                    ))
                    .await?;
                }
            } else {
                tx.send(Message::text(
                    json!({"v": 1, "type": "admit_all"}).to_string(),
                ))
                .await?;
            }
            for id in due {
                waiting_own.insert(id, Some(now));
            }
        }
        if probing && run.measuring.load(Ordering::Relaxed) && now >= next_probe {
            next_probe = now + Duration::from_millis(100);
            if mute_sent.is_none() {
                muted = !muted;
                mute_sent = Some(now);
                tx.send(Message::text(json!({"v": 1, "type": "mute", "audio": muted, "video": false, "screen": false}).to_string())).await?;
            }
            if ping_sent.is_none() {
                ping_sent = Some(now);
                tx.send(Message::text(json!({"v": 1, "type": "ping"}).to_string()))
                    .await?;
            }
        }
        let wake = media.wake(now);
        tokio::select! {
            message = rx.next() => {
                let Some(message) = message else { bail!("participant {index}: signaling closed") };
                let Message::Text(text) = message? else { continue };
                let value: Value = serde_json::from_str(&text)?;
                let now = Instant::now();
                if value["type"] == "roster"
                    && let Some(sent) = mute_sent
                    && value["participants"].as_array().into_iter().flatten().any(|e| {
                        e["participant"].as_u64() == my_id && e["audio_muted"].as_bool() == Some(muted)
                    })
                {
                    round_trips.push(sent.elapsed().as_micros() as u32);
                    mute_sent = None;
                }
                match value["type"].as_str().unwrap_or("") {
                    "joined" => {
                        my_id = value["participant"].as_u64();
                        let p = media.start(index as u32 + 1, &run, now)?;
                        let sharing = o.screen && index == 1;
                        if sharing {
                            p.add_screen()?;
                        }
                        let offer = p.publish_offer(now)?;
                        tx.send(Message::text(json!({"v": 1, "type": "publish", "sdp": offer}).to_string())).await?;
                        if sharing {
                            tx.send(Message::text(json!({"v": 1, "type": "mute", "audio": false, "video": false, "screen": true}).to_string())).await?;
                        }
                    }
                    "publish_answer" => {
                        media.participant()?.publish_answer(now, value["sdp"].as_str().unwrap_or("").to_owned())?;
                    }
                    "subscribe_offer" => {
                        let answer = media.participant()?.subscribe_offer(now, value["sdp"].as_str().unwrap_or("").to_owned())?;
                        tx.send(Message::text(json!({"v": 1, "type": "subscribe_answer", "sdp": answer}).to_string())).await?;
                    }
                    "pong" => {
                        if let Some(sent) = ping_sent.take() {
                            pongs.push(sent.elapsed().as_micros() as u32);
                        }
                    }
                    "lobby" if host => {
                        // The lobby as it is now: who left it was let in (or gave up).
                        let own: Vec<u64> = value["requests"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            // Only the generator's own guests (not a flood's).
                            .filter(|r| r["name"].as_str().is_some_and(|n| n.starts_with("Load ")))
                            .filter_map(|r| r["request"].as_u64())
                            .collect();
                        waiting_own.retain(|id, _| own.contains(id));
                        for id in own {
                            waiting_own.entry(id).or_insert(None);
                        }
                    }
                    "roster" if o.layer < 2 || o.grid => {
                        let tile = if o.grid { 0 } else { o.layer };
                        for entry in value["participants"].as_array().into_iter().flatten() {
                            let Some(id) = entry["participant"].as_u64() else { continue };
                            // Layers are asked of the others' cameras, not one's own.
                            if Some(id) != my_id && !asked_quality.contains(&id) {
                                asked_quality.push(id);
                                let layer = if speaker_shown == Some(id) { o.layer } else { tile };
                                tx.send(Message::text(json!({"v": 1, "type": "set_quality", "participant": id, "layer": layer}).to_string())).await?;
                            }
                        }
                    }
                    "active_speaker" if o.grid => {
                        // The speaker's tile is the large one; the last speaker's
                        // goes back to a small tile.
                        let speaker = value["participant"].as_u64();
                        if speaker != speaker_shown && speaker != my_id {
                            for (id, layer) in [(speaker_shown, 0), (speaker, o.layer)] {
                                if let Some(id) = id.filter(|id| asked_quality.contains(id)) {
                                    tx.send(Message::text(json!({"v": 1, "type": "set_quality", "participant": id, "layer": layer}).to_string())).await?;
                                }
                            }
                            speaker_shown = speaker;
                        }
                    }
                    "error" => eprintln!("participant {index}: {value}"),
                    "removed" | "call_ended" | "denied" => bail!("participant {index}: {value}"),
                    _ => {}
                }
            }
            got = media.recv() => got?,
            _ = tokio::time::sleep_until(wake.into()) => {}
        }
    }
    let _ = tx
        .send(Message::text(json!({"v": 1, "type": "leave"}).to_string()))
        .await;
    let r = media
        .received()
        .ok_or_else(|| anyhow!("participant {index} never joined"))?;
    Ok(Report {
        received: r,
        round_trips,
        pongs,
    })
}

/// User + system CPU seconds of a process (Linux; clock ticks of 1/100 s).
fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').context("odd /proc stat")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(ticks as f64 / 100.0)
}

/// Resident memory of a process in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .context("no VmRSS")?
        .parse()
        .map_err(Into::into)
}
