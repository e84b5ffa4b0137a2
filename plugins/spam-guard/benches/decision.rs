//! Lobby decision time with 10,000 active blocks and 10,000 networks from a
//! subscribed shared list: the spam-guard component in the
//! plugin test harness, a fresh sandbox per decision as on the server (so the time
//! includes instantiating the component), against an in-memory key-value store.
//! Prints the median and the 99th percentile over `DECISIONS` requests (a quarter
//! from blocked networks, a quarter from shared-list networks, half from others),
//! for docs/BENCHMARKS.md:
//!
//! ```text
//! cargo bench -p confab-spam-guard --bench decision
//! ```
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use confab_plugin_test::{Decision, Harness, Origin};

const BLOCKS: usize = 10_000;
const DECISIONS: usize = 2_000;

fn main() {
    let mut plugin = Harness::from_crate(env!("CARGO_MANIFEST_DIR"));
    let link = plugin.add_link(1, "Bench");
    let call = plugin.start_call(&link.id);
    let expires = plugin.now() + 30 * 24 * 3600 * 1000;
    // Half on the link, half on the whole server, as the plugin writes them.
    for i in 0..BLOCKS {
        let network = format!("10.{}.{}.{}/32", i / 65536, (i / 256) % 256, i % 256);
        let scope = if i % 2 == 0 {
            format!("link:{}", link.id)
        } else {
            "all".into()
        };
        let key = format!("block/{scope}/net/{network}");
        let value = serde_json::json!({
            "id": format!("{i:016x}"),
            "scope": if i % 2 == 0 { serde_json::json!({"scope": "link", "id": link.id}) } else { serde_json::json!({"scope": "instance"}) },
            "kind": "net",
            "value": network,
            "reason": "blocked",
            "report": null,
            "by": 1,
            "created_at": plugin.now(),
            "expires_at": expires,
        });
        plugin.kv_set(&key, value.to_string());
        // And as many networks from another server's list (11.x).
        let shared = serde_json::json!({"source": 0, "host": "peer.example", "reason": "spam", "until": expires});
        plugin.kv_set(
            &format!(
                "shared/net/11.{}.{}.{}/32",
                i / 65536,
                (i / 256) % 256,
                i % 256
            ),
            shared.to_string(),
        );
    }
    let mut times = Vec::with_capacity(DECISIONS);
    let mut denied = 0;
    for i in 0..DECISIONS {
        // A quarter blocked here, a quarter on the shared list, half neither.
        let (first, n) = match i % 4 {
            0 => (10, (i * 5) % BLOCKS),
            1 => (11, (i * 7) % BLOCKS),
            _ => (10, BLOCKS + i),
        };
        let address = format!("{first}.{}.{}.{}", n / 65536, (n / 256) % 256, n % 256);
        let origin = Origin {
            device: Some(format!("device{i}")),
            network: Some(format!("{address}/32")),
        };
        let request = plugin.lobby_request_from(&call, "Guest", &address, origin);
        let started = Instant::now();
        let decision = plugin.lobby_decision(request);
        times.push(started.elapsed());
        if matches!(decision, Decision::Deny(_)) {
            denied += 1;
        }
    }
    assert_eq!(
        denied,
        DECISIONS / 2,
        "every blocked or shared-list network is turned away, and only those"
    );
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "lobby decision with {BLOCKS} blocks and {BLOCKS} shared-list networks, {DECISIONS} decisions: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
        ms(at(0.5)),
        ms(at(0.99)),
        ms(times[times.len() - 1])
    );
}
