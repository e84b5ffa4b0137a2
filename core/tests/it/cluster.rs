//! Several nodes on one PostgreSQL database and one NATS bus (docs/scaling.md):
//! what one node changes, the others apply at once; nodes heartbeat and a node id
//! is held by one process. Each test has its own database and subject prefix on
//! the machine's PostgreSQL and NATS (`CONFAB_TEST_NATS_URL`, default
//! `nats://127.0.0.1:4222`).

use std::time::Duration;

use axum::http::StatusCode;
use confab_core::cluster::{CONNECTED_CACHE_TTL, is_live};
use confab_core::{App, Config, SystemClock};
use serde_json::{Value, json};

use crate::support::TestApp;
use crate::support::relay::Relay;
use crate::support::ws::Ws;

fn nats_url() -> String {
    std::env::var("CONFAB_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// Makes `c` the configuration of node `node_id` of a cluster of its own: the
/// test's NATS server, a subject prefix no other test uses.
pub(crate) fn first_node(c: &mut Config, node_id: &str) {
    c.cluster.nats_url = nats_url();
    c.cluster.subject_prefix = format!(
        "confab-test.{}",
        confab_core::secret::random_base62(10).to_lowercase()
    );
    c.cluster.node_id = node_id.into();
    // The node a test's first connection reaches hosts the call; the placement
    // test sets least_loaded itself.
    c.cluster.placement = "first_asked".into();
}

/// Two nodes, `a` and `b`, of a cluster of their own.
async fn two_nodes() -> (TestApp, TestApp) {
    let a = TestApp::postgres_with(|c| first_node(c, "node-a")).await;
    let b = a
        .another_node(|c| c.cluster.node_id = "node-b".into())
        .await;
    (a, b)
}

/// Polls `probe` until it is true; fails after `limit`, well within the caches'
/// life on a connected node ([`CONNECTED_CACHE_TTL`]), so only a change that
/// crossed the bus can pass.
async fn within_cache_life(what: &str, mut probe: impl AsyncFnMut() -> bool) {
    let limit = CONNECTED_CACHE_TTL / 3;
    let deadline = tokio::time::Instant::now() + limit;
    while !probe().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} did not reach the other node within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_link_revoked_on_one_node_stops_working_on_the_other_and_ends_its_call_there() {
    let (a, b) = two_nodes().await;
    let token = a.admin_token().await;
    let link = a.create_link(&token, "Across nodes").await;
    let id = link["id"].as_str().unwrap().to_string();
    let revoke = async |id: &str| {
        let revoked = a
            .post(&format!("/api/v1/links/{id}/revoke"))
            .bearer(&token)
            .send()
            .await;
        assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text());
    };

    // Node b reads the link (and caches it); nothing else on node b reads it again.
    let page = b.get(&format!("/j/{id}")).send().await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text().contains("Across nodes"));
    revoke(&id).await;
    within_cache_life("the revocation", async || {
        b.get(&format!("/j/{id}")).send().await.status == StatusCode::GONE
    })
    .await;
    let page = b.get(&format!("/j/{id}")).send().await;
    assert!(page.text().contains("This link was revoked"));

    // A call on node b ends when its link is revoked through node a, and the page
    // is told why.
    let link = a.create_link(&token, "Second call").await;
    let id = link["id"].as_str().unwrap().to_string();
    let host = a.sign_in("admin@example.org").await;
    let addr = b.serve().await;
    let mut ws = Ws::open(&addr, &id, Some(&host.cookies)).await;
    ws.send(json!({ "v": 1, "type": "join" })).await;
    ws.expect("joined").await;
    revoke(&id).await;
    let said = ws
        .seen_until(Duration::from_secs(10), |m: &Value| {
            m["type"] == "call_ended" || m["type"] == "error"
        })
        .await;
    let last = said.last().expect("node b's call says something");
    assert!(
        last["type"] == "call_ended" || last["code"] == "link_revoked",
        "{said:?}"
    );
    drop(b);
}

/// An administrator turns guest access off through node `from`; node `to` (which
/// has the policy cached) applies it within the caches' life.
async fn guest_access_goes_off(from: &TestApp, to: &TestApp, token: &str, what: &str) {
    let res = from
        .req(axum::http::Method::PATCH, "/api/v1/admin/policy")
        .bearer(token)
        .json(&json!({ "guest_access": false }))
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    within_cache_life(what, async || {
        let now = to.get("/api/v1/admin/policy").bearer(token).send().await;
        now.json()["guest_access"] == false
    })
    .await;
}

#[tokio::test]
async fn a_policy_change_on_one_node_applies_on_the_other() {
    let (a, b) = two_nodes().await;
    let token = a.admin_token().await;
    // Node b reads the policy (and caches it).
    let before = b.get("/api/v1/admin/policy").bearer(&token).send().await;
    assert_eq!(before.status, StatusCode::OK, "{}", before.text());
    assert_eq!(before.json()["guest_access"], true);
    guest_access_goes_off(&a, &b, &token, "the policy change").await;
    drop(b);
}

#[tokio::test]
async fn signing_out_on_one_node_takes_the_member_powers_of_that_sign_in_on_the_other() {
    let (a, b) = two_nodes().await;
    let token = a.admin_token().await;
    let link = a.create_link(&token, "Team call").await;
    let id = link["id"].as_str().unwrap();
    let host = a.sign_in("admin@example.org").await;
    let addr = b.serve().await;
    let mut ws = Ws::open(&addr, id, Some(&host.cookies)).await;
    ws.send(json!({ "v": 1, "type": "join" })).await;
    ws.expect("joined").await;
    let mut guest = Ws::open(&addr, id, None).await;
    let waiting = guest.join_as_guest("Gwen", "guest-key-gwen-00001").await;
    assert_eq!(waiting["type"], "waiting", "{waiting}");
    ws.lobby_until(|r| r.len() == 1).await;

    let out = a
        .post("/logout")
        .cookie(&host.cookies)
        .form(&format!("csrf={}", host.csrf))
        .send()
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER, "{}", out.text());
    // The page on node b loses the lobby at once (a connection re-reads its
    // sign-in only every 15 s by itself) and may no longer admit.
    let said = ws
        .seen_until(CONNECTED_CACHE_TTL / 3, |m: &Value| {
            m["type"] == "lobby" && m["requests"] == json!([])
        })
        .await;
    assert_eq!(said.last().unwrap()["requests"], json!([]), "{said:?}");
    ws.send(json!({ "v": 1, "type": "admit", "request": waiting["request"] }))
        .await;
    ws.expect_error("not_allowed").await;
    drop(b);
}

#[tokio::test]
async fn nodes_heartbeat_and_a_node_id_in_use_is_refused() {
    let (a, b) = two_nodes().await;
    let nodes = a.store.cluster_nodes().await.unwrap();
    let ids: Vec<&str> = nodes.iter().map(|n| n.node_id.as_str()).collect();
    assert_eq!(ids, ["node-a", "node-b"]);
    assert!(
        nodes
            .iter()
            .all(|n| is_live(n.heartbeat_at, chrono::Utc::now()))
    );
    // `confab node list`, as an operator runs it against the cluster's database.
    let listed = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .args(["node", "list", "--json"])
        .env("CONFAB_DATABASE_URL", &a.state.config.database.url)
        .env("CONFAB_DATA_DIR", a.state.config.data_dir.as_os_str())
        .output()
        .await
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(listed[0]["node_id"], "node-a", "{listed}");
    assert_eq!(listed[1]["node_id"], "node-b", "{listed}");
    assert_eq!(listed[1]["state"], "live", "{listed}");
    let ready = b.get("/readyz").send().await;
    assert_eq!(ready.json()["bus"], "ok", "{}", ready.text());
    assert_eq!(ready.json()["status"], "ready");

    // A third process with node a's id is turned away while node a is alive.
    let mut config: Config = (*a.state.config).clone();
    let data = tempfile::tempdir().unwrap();
    config.data_dir = data.path().to_path_buf();
    let refused = App::build_with_clock(config, std::sync::Arc::new(SystemClock)).await;
    let err = refused.err().expect("a node id in use is refused");
    assert!(
        err.to_string()
            .contains("node id \"node-a\" is in use by another running node"),
        "{err}"
    );

    // A single node never joins: its readiness says so.
    let single = TestApp::sqlite().await;
    assert_eq!(single.get("/readyz").send().await.json()["bus"], "off");

    // `confab node drain`: a node that is not there is named in the error; a live
    // one sees the drain at its next heartbeat.
    let drain = async |node: &str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
            .args(["node", "drain", node])
            .env("CONFAB_DATABASE_URL", &a.state.config.database.url)
            .env("CONFAB_DATA_DIR", a.state.config.data_dir.as_os_str())
            .output()
            .await
            .unwrap()
    };
    let unknown = drain("node-x").await;
    assert!(!unknown.status.success());
    let said = String::from_utf8_lossy(&unknown.stderr);
    assert!(said.contains("no live node \"node-x\""), "{said}");
    let drained = drain("node-b").await;
    assert!(drained.status.success(), "{drained:?}");
    within_cache_life("the drain", async || {
        b.state.cluster.as_ref().unwrap().is_draining()
    })
    .await;
    assert!(!a.state.cluster.as_ref().unwrap().is_draining());
    drop(b);
}

/// The bus goes away under one node (its connection cut by a relay the test
/// controls) and comes back: the node stays ready, says it is degraded, still turns
/// revoked links away from the database, and rejoins by itself.
#[tokio::test]
async fn a_node_rides_out_a_lost_bus_and_rejoins_without_a_restart() {
    let (b, _) = two_nodes().await;
    let upstream = url::Url::parse(&nats_url()).unwrap();
    let upstream = tokio::net::lookup_host((
        upstream.host_str().unwrap(),
        upstream.port().unwrap_or(4222),
    ))
    .await
    .unwrap()
    .next()
    .unwrap();
    let relay = Relay::server_first(upstream).await;
    let a = b
        .another_node(|c| {
            c.cluster.node_id = "node-behind-relay".into();
            c.cluster.nats_url = format!("nats://{}", relay.addr);
        })
        .await;
    let token = b.admin_token().await;
    let link = b.create_link(&token, "Through the outage").await;
    let id = link["id"].as_str().unwrap().to_string();
    assert_eq!(
        a.get(&format!("/j/{id}")).send().await.status,
        StatusCode::OK
    );

    let host = b.sign_in("admin@example.org").await;
    let addr_a = a.serve().await;
    let mut host_ws = Ws::open(&b.serve().await, &id, Some(&host.cookies)).await;
    host_ws.send(json!({ "v": 1, "type": "join" })).await;
    host_ws.expect("joined").await;

    relay.down(|_| true);
    within_cache_life("the lost bus", async || {
        a.get("/readyz").send().await.json()["bus"] == "disconnected"
    })
    .await;
    let ready = a.get("/readyz").send().await;
    assert_eq!(
        ready.status,
        StatusCode::OK,
        "calls go on: the node stays ready"
    );
    assert_eq!(ready.json()["status"], "degraded", "{}", ready.text());
    // A call on node b goes on; joining it through this node gets a clear answer
    // at once instead of a wait.
    host_ws.send(json!({ "v": 1, "type": "ping" })).await;
    host_ws.expect("pong").await;
    let mut cut_off = Ws::open(&addr_a, &id, None).await;
    let answer = cut_off
        .join_as_guest("Cut off", "guest-key-cut-off-1")
        .await;
    assert_eq!(answer["type"], "error", "{answer}");
    assert_eq!(answer["code"], "unavailable", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("cannot be reached"),
        "{answer}"
    );
    // A revocation through the other node does not reach this one over the bus,
    // but its caches went back to their short single-node lives.
    let revoked = b
        .post(&format!("/api/v1/links/{id}/revoke"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    within_cache_life("the revocation, from the database", async || {
        a.get(&format!("/j/{id}")).send().await.status == StatusCode::GONE
    })
    .await;

    relay.up();
    within_cache_life("the bus coming back", async || {
        a.get("/readyz").send().await.json()["status"] == "ready"
    })
    .await;
    let metrics = a.get("/metrics").send().await.text();
    assert!(
        metrics.contains("confab_cluster_bus_reconnects_total 1"),
        "{metrics}"
    );
    // Subscribed again: the next change arrives over the bus (the policy would
    // otherwise stay cached for 30 s).
    assert_eq!(
        a.get("/api/v1/admin/policy")
            .bearer(&token)
            .send()
            .await
            .json()["guest_access"],
        true
    );
    guest_access_goes_off(&b, &a, &token, "a change after the bus came back").await;
    drop(a);
}

/// Plugin storage quotas count what every node stored: a node's own running total
/// would miss what another node wrote.
#[tokio::test]
async fn a_plugin_s_storage_quota_counts_what_every_node_stored() {
    use confab_core::store::KvSetOutcome;
    let (a, b) = two_nodes().await;
    let now = a.clock_now();
    let set = async |node: &TestApp, key: &str, bytes: usize| {
        node.store
            .plugin_kv_set("p", key, vec![0; bytes], None, 3_000, now)
            .await
            .unwrap()
    };
    assert!(matches!(set(&b, "small", 100).await, KvSetOutcome::Stored));
    assert!(matches!(set(&a, "big", 2_000).await, KvSetOutcome::Stored));
    // 2,105 bytes stored: 2,000 more would pass node b's count of its own writes.
    let over = set(&b, "more", 2_000).await;
    assert!(
        matches!(over, KvSetOutcome::OverQuota { used: 2_108 }),
        "{over:?}"
    );
    assert!(matches!(set(&b, "fits", 800).await, KvSetOutcome::Stored));
    drop(b);
}

/// Ten nodes asked for the same call at once agree on one host; a host that is
/// lost (no heartbeat for 5 s) is replaced, with the next epoch.
#[tokio::test]
async fn ten_nodes_racing_for_a_call_agree_on_one_host() {
    use confab_core::store::{NodeBeat, Store};
    let (a, _b) = two_nodes().await;
    let url = a.state.config.database.url.clone();
    let now = chrono::Utc::now();
    let lost_before = now - chrono::Duration::seconds(5);
    let beat = |node: &str, at| NodeBeat {
        node_id: node.into(),
        instance: format!("instance-{node}"),
        url: String::new(),
        started_at: now,
        now: at,
        calls: 0,
        participants: 0,
        draining: false,
        cpu_permille: 0,
    };
    let mut stores = Vec::new();
    for i in 0..10 {
        let store = Store::connect(&url, 2).await.unwrap();
        assert!(
            store
                .node_heartbeat(&beat(&format!("racer-{i}"), now), lost_before)
                .await
                .unwrap()
        );
        stores.push(store);
    }
    let claims: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(i, store)| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .claim_call(4242, &format!("racer-{i}"), now, lost_before)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut holders = Vec::new();
    for claim in claims {
        holders.push(claim.await.unwrap());
    }
    let (holder, epoch) = holders[0].clone();
    assert!(
        holders.iter().all(|h| *h == (holder.clone(), 1)),
        "{holders:?}"
    );
    assert_eq!(epoch, 1);
    // Asking again changes nothing while the holder lives.
    assert_eq!(
        stores[0]
            .claim_call(4242, "racer-0", now, lost_before)
            .await
            .unwrap()
            .0,
        holder
    );
    // The holder's heartbeat stops: six seconds later, another node takes over.
    let later = now + chrono::Duration::seconds(6);
    let other = if holder == "racer-0" {
        "racer-1"
    } else {
        "racer-0"
    };
    stores[0]
        .node_heartbeat(&beat(other, later), later - chrono::Duration::seconds(5))
        .await
        .unwrap();
    let taken = stores[0]
        .claim_call(4242, other, later, later - chrono::Duration::seconds(5))
        .await
        .unwrap();
    assert_eq!(taken, (other.to_string(), 2));
}

/// Any node accepts anyone: a call hosted on node a is joined through node b,
/// whose connections the relay carries to node a (one call, one lobby, one
/// roster), and a connection lost by node b leaves the call on node a.
#[tokio::test]
async fn a_call_hosted_on_one_node_is_joined_through_another() {
    let (a, b) = two_nodes().await;
    let token = a.admin_token().await;
    let link = a.create_link(&token, "One host").await;
    let id = link["id"].as_str().unwrap();
    let host = a.sign_in("admin@example.org").await;
    let (addr_a, addr_b) = (a.serve().await, b.serve().await);
    let mut on_a = Ws::open(&addr_a, id, Some(&host.cookies)).await;
    on_a.send(json!({ "v": 1, "type": "join" })).await;
    let joined = on_a.expect("joined").await;
    let call = joined["call"].clone();

    // A guest through node b waits in node a's lobby and is admitted there.
    let mut guest = Ws::open(&addr_b, id, None).await;
    let guest_joined = guest
        .join_admitted_by(&mut on_a, "Guest on b", "guest-key-on-node-b")
        .await;
    assert_eq!(
        guest_joined["call"], call,
        "one call, not a second one on b"
    );
    let roster = guest.roster_until(|p| p.len() == 2).await;
    assert!(
        roster.iter().any(|p| p["name"] == "Guest on b"),
        "{roster:?}"
    );
    on_a.roster_until(|p| p.len() == 2).await;
    assert_eq!(b.state.calls.live_calls(), 0, "node b hosts no call");

    // Errors come back too: a guest may not admit anyone.
    guest
        .send(json!({ "v": 1, "type": "admit", "request": 1 }))
        .await;
    guest.expect_error("not_allowed").await;

    // A member through node b joins without the lobby, and keys pass both ways.
    let mut member = Ws::open(&addr_b, id, Some(&host.cookies)).await;
    member.send(json!({ "v": 1, "type": "join" })).await;
    let member_joined = member.expect("joined").await;
    assert_eq!(member_joined["call"], call);
    member
        .send(json!({ "v": 1, "type": "e2ee", "payload": "a2V5IGZyb20gYg==" }))
        .await;
    let keys = on_a.expect("e2ee").await;
    assert_eq!(keys["from"], member_joined["participant"], "{keys}");
    assert_eq!(keys["payload"], "a2V5IGZyb20gYg==");
    on_a.send(json!({ "v": 1, "type": "e2ee", "to": member_joined["participant"], "payload": "a2V5IGZyb20gYQ==" }))
        .await;
    let keys = member.expect("e2ee").await;
    assert_eq!(keys["payload"], "a2V5IGZyb20gYQ==", "{keys}");
    assert_eq!(keys["from"], joined["participant"]);

    // The guest's connection to node b drops: node a's call hears of it, and the
    // guest takes the place back through a fresh connection, without the lobby.
    guest.close().await;
    on_a.roster_until(|p| {
        p.iter()
            .any(|e| e["name"] == "Guest on b" && e["connected"] == false)
    })
    .await;
    let mut back = Ws::open(&addr_b, id, None).await;
    back.send(json!({ "v": 1, "type": "resume", "resume_token": guest_joined["resume_token"] }))
        .await;
    let resumed = back.expect("joined").await;
    assert_eq!(resumed["participant"], guest_joined["participant"]);
    on_a.roster_until(|p| p.iter().all(|e| e["connected"] == true))
        .await;
    let metrics = b.get("/metrics").send().await.text();
    let relayed = metrics
        .lines()
        .find(|l| l.starts_with("confab_cluster_relay_seconds_count"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    assert!(relayed > 0, "node b counts what came back: {metrics}");

    // Once the call on node a ended, node b hosts the next one itself.
    for ws in [&mut back, &mut member, &mut on_a] {
        ws.send(json!({ "v": 1, "type": "leave" })).await;
    }
    within_cache_life("the end of the call on node a", async || {
        a.state.calls.live_calls() == 0
    })
    .await;
    let mut next = Ws::open(&addr_b, id, Some(&host.cookies)).await;
    next.send(json!({ "v": 1, "type": "join" })).await;
    let again = next.expect("joined").await;
    assert_ne!(again["call"], call, "a new call");
    assert_eq!(b.state.calls.live_calls(), 1, "hosted by node b");
    drop(b);
}

/// Two browsers whose pages come from different nodes are on one call: the host's
/// page from node a (which hosts the call), the guest's from node b (which relays
/// its signaling); each sees and hears the other, media going to node a's SFU.
#[tokio::test]
async fn browsers_on_two_nodes_see_and_hear_each_other() {
    use crate::support::browser::{Driver, admits, guest_asks, host_joins};
    let (a, base_a) = TestApp::served_node(None, "node-a").await;
    let (b, base_b) = TestApp::served_node(Some(&a), "node-b").await;
    let token = a
        .user_with_token("host@example.org", confab_core::accounts::Role::Admin)
        .await;
    let res = a
        .post("/api/v1/links")
        .bearer(&token)
        .json(&json!({ "title": "Family call" }))
        .send()
        .await;
    let link = res.json()["id"].as_str().unwrap().to_string();
    let driver = Driver::start();
    let host = host_joins(&driver, &base_a, &link).await;
    let guest = guest_asks(&driver, &base_b, &link, "Ana").await;
    let ana = admits(&host, &guest, "Ana").await;
    let me = host.me().await;
    assert_eq!(a.state.calls.live_calls(), 1, "node a hosts the call");
    assert_eq!(b.state.calls.live_calls(), 0, "node b only relays");
    for (page, other) in [(&host, ana), (&guest, me)] {
        page.wait_media_from(&[other]).await;
        page.wait_video_flowing(&format!("p{other}-0")).await;
    }
    host.close().await;
    guest.close().await;
    drop(b);
}

/// The signaling connection of whoever holds API token `token`, joined to the call
/// of `link` through `addr`, with its `joined` message.
async fn join_with_token(addr: &str, link: &str, token: &str) -> (Ws, Value) {
    let mut ws = Ws::open_with(addr, link, bearer(token)).await;
    ws.send(json!({ "v": 1, "type": "join" })).await;
    let joined = ws.expect("joined").await;
    (ws, joined)
}

/// An `Authorization` header for API token `token`.
fn bearer(token: &str) -> Option<(&'static str, String)> {
    Some(("authorization", format!("Bearer {token}")))
}

/// Members `count` of node `app`, each joined to the call of `link` through `addr`
/// (they read in the background, so they cost the test nothing to keep).
async fn members_on(app: &TestApp, addr: &str, link: &str, count: usize) -> Vec<Ws> {
    let mut joined = Vec::new();
    for i in 0..count {
        let token = app
            .user_with_token(
                &format!(
                    "member{i}-{}@example.org",
                    confab_core::secret::random_base62(6)
                ),
                confab_core::accounts::Role::Member,
            )
            .await;
        joined.push(join_with_token(addr, link, &token).await.0);
    }
    joined
}

/// Waits until node `node`'s heartbeat row satisfies `check`.
async fn row_until(
    app: &TestApp,
    node: &str,
    what: &str,
    check: impl Fn(&confab_core::store::cluster_node::Model) -> bool,
) {
    within_cache_life(what, async || {
        app.store
            .cluster_nodes()
            .await
            .unwrap()
            .iter()
            .any(|n| n.node_id == node && check(n))
    })
    .await;
}

/// A new call goes to the least-loaded live node, not to the node first asked,
/// and never to a draining one; a drained node's calls end there and then the
/// connections of those still going are closed, relayed ones included, so that
/// each page comes back elsewhere.
#[tokio::test]
async fn new_calls_go_to_the_least_loaded_node_and_a_draining_node_takes_none() {
    let a = TestApp::postgres_with(|c| {
        first_node(c, "node-a");
        c.cluster.placement = "least_loaded".into();
        c.cluster.drain_timeout_secs = 2;
    })
    .await;
    let b = a
        .another_node(|c| {
            c.cluster.node_id = "node-b".into();
        })
        .await;
    let token = a.admin_token().await;
    let (addr_a, addr_b) = (a.serve().await, b.serve().await);
    // A call of five, on whichever node was the less loaded (both are idle: their
    // processor use decides); the other node is the quiet one.
    let busy = a.create_link(&token, "Busy").await;
    let busy = busy["id"].as_str().unwrap().to_string();
    let mut crowd = members_on(&a, &addr_a, &busy, 5).await;
    let ((busy_node, busy_id), (quiet_node, quiet_id, quiet_addr)) =
        if a.state.calls.live_calls() == 1 {
            ((&a, "node-a"), (&b, "node-b", &addr_b))
        } else {
            ((&b, "node-b"), (&a, "node-a", &addr_a))
        };
    assert_eq!(busy_node.state.calls.live_calls(), 1);
    row_until(&a, busy_id, "the busy node's load", |n| n.participants == 5).await;

    // A new call asked of the busy node goes to the quiet one, which the busy
    // node relays to.
    let quiet = a.create_link(&token, "Quiet").await;
    let quiet = quiet["id"].as_str().unwrap().to_string();
    let busy_addr = if busy_id == "node-a" {
        &addr_a
    } else {
        &addr_b
    };
    let relayed_token = a
        .user_with_token("moved@example.org", confab_core::accounts::Role::Member)
        .await;
    let (mut relayed, relayed_joined) = join_with_token(busy_addr, &quiet, &relayed_token).await;
    assert_eq!(
        quiet_node.state.calls.live_calls(),
        1,
        "the quiet node hosts it"
    );
    assert_eq!(busy_node.state.calls.live_calls(), 1);

    // The quiet node drains: the next new call, even asked of it, goes to the busy
    // node, loaded as it is.
    assert!(a.store.set_draining(quiet_id).await.unwrap());
    within_cache_life("the drain", async || {
        quiet_node.state.cluster.as_ref().unwrap().is_draining()
    })
    .await;
    row_until(&a, quiet_id, "the drain in the node's row", |n| n.draining).await;
    let ready = quiet_node.get("/readyz").send().await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.text()
    );
    assert_eq!(ready.json()["status"], "draining");
    let third = a.create_link(&token, "Third").await;
    let third = third["id"].as_str().unwrap().to_string();
    let _on_quiet = members_on(quiet_node, quiet_addr, &third, 1).await;
    assert_eq!(
        busy_node.state.calls.live_calls(),
        2,
        "the busy node takes it"
    );
    assert_eq!(quiet_node.state.calls.live_calls(), 1);

    // The draining node's time (2 s) is up: the page relayed to it from the busy
    // node is closed too, and comes back through the busy node, which now hosts
    // that call, without the lobby; the busy node's own calls go on.
    let state = quiet_node.state.clone();
    tokio::spawn(async move { confab_core::drain(&state).await });
    relayed.closed().await;
    let (_back, joined) =
        resume_through(busy_addr, &quiet, bearer(&relayed_token), &relayed_joined).await;
    assert_eq!(joined["resume_token"], relayed_joined["resume_token"]);
    assert_eq!(
        busy_node.state.calls.live_calls(),
        3,
        "the busy node took it"
    );
    crowd[0].send(json!({ "v": 1, "type": "ping" })).await;
    crowd[0].expect("pong").await;
    drop(b);
}

/// Node `node_id` of `first`'s cluster as a child process (`confab serve`), so
/// that it can be killed; returns the process and its address.
async fn child_node(first: &TestApp, node_id: &str) -> (tokio::process::Child, String) {
    child_node_with(first, node_id, &[]).await
}

/// [`child_node`] with more environment variables.
async fn child_node_with(
    first: &TestApp,
    node_id: &str,
    env: &[(&str, &str)],
) -> (tokio::process::Child, String) {
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let port = free();
    let data = tempfile::tempdir().unwrap().keep();
    let config = &first.state.config;
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_confab"))
        .arg("serve")
        .env("CONFAB_DATABASE_URL", &config.database.url)
        .env("CONFAB_DATA_DIR", &data)
        .env("CONFAB_SERVER_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "CONFAB_SERVER_PUBLIC_URL",
            format!("http://127.0.0.1:{port}"),
        )
        .env("CONFAB_MEDIA_UDP_PORT", "0")
        .env("CONFAB_MEDIA_TCP_PORT", "0")
        .env("CONFAB_PLUGINS_BUNDLED", "false")
        .env("CONFAB_CLUSTER_NATS_URL", &config.cluster.nats_url)
        .env(
            "CONFAB_CLUSTER_SUBJECT_PREFIX",
            &config.cluster.subject_prefix,
        )
        .env("CONFAB_CLUSTER_NODE_ID", node_id)
        .env("CONFAB_CLUSTER_PLACEMENT", "first_asked")
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .spawn()
        .expect("confab serve starts");
    let addr = format!("127.0.0.1:{port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ready = reqwest::get(format!("http://{addr}/readyz")).await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "node {node_id} did not get ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, addr)
}

/// Takes `joined`'s place back through `addr` after the connection dropped:
/// resumes until the call is back (the node that held it may still count as
/// live for a few seconds); returns the connection and its new `joined`.
async fn resume_through(
    addr: &str,
    link: &str,
    header: Option<(&'static str, String)>,
    joined: &Value,
) -> (Ws, Value) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut ws = Ws::open_with(addr, link, header.clone()).await;
        ws.send(json!({ "v": 1, "type": "resume", "resume_token": joined["resume_token"] }))
            .await;
        let said = ws
            .seen_until(Duration::from_secs(12), |m| {
                m["type"] == "joined" || m["type"] == "error"
            })
            .await;
        if let Some(back) = said.iter().find(|m| m["type"] == "joined") {
            return (ws, back.clone());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came back: {said:?}"
        );
    }
}

/// The node hosting a call is killed (SIGKILL): every participant, whether its
/// connection was to that node or relayed through another, comes back to the
/// call on a node that lives, with its resume token, without the lobby.
#[tokio::test]
async fn when_a_call_s_node_is_killed_everyone_comes_back_on_another_without_the_lobby() {
    let b = TestApp::postgres_with(|c| first_node(c, "node-b")).await;
    let addr_b = b.serve().await;
    let (mut node_a, addr_a) = child_node(&b, "node-a").await;
    let token = b.admin_token().await;
    let link = b.create_link(&token, "Survives").await;
    let id = link["id"].as_str().unwrap().to_string();
    // The child node keeps real time, the test's nodes their own clock: the host
    // signs in with an API token, which does not expire.
    let host = bearer(&token);

    // The host on node a (which hosts the call), a guest relayed through node b.
    let (mut on_a, host_joined) = join_with_token(&addr_a, &id, &token).await;
    let mut guest = Ws::open(&addr_b, &id, None).await;
    let guest_joined = guest
        .join_admitted_by(&mut on_a, "Guest", "guest-key-survivor-1")
        .await;
    assert_eq!(b.state.calls.live_calls(), 0, "node a hosts the call");
    // Give node a time to keep both places.
    tokio::time::sleep(Duration::from_millis(500)).await;

    node_a.start_kill().unwrap();
    let killed = std::time::Instant::now();
    node_a.wait().await.unwrap();
    // The guest's connection through node b is closed once node a misses beats.
    let said = guest.seen_until(Duration::from_secs(15), |_| false).await;
    assert_eq!(said.last().unwrap()["type"], "closed", "{said:?}");

    let (_host_ws, host_back) = resume_through(&addr_b, &id, host.clone(), &host_joined).await;
    let (_guest_ws, guest_back) = resume_through(&addr_b, &id, None, &guest_joined).await;
    let took = killed.elapsed();
    assert_ne!(
        host_back["call"], host_joined["call"],
        "a new run of the call"
    );
    assert_eq!(host_back["call"], guest_back["call"], "one call");
    assert_eq!(host_back["resume_token"], host_joined["resume_token"]);
    assert_eq!(b.state.calls.live_calls(), 1, "node b hosts it now");
    assert!(took < Duration::from_secs(20), "{took:?}");
    eprintln!("back on node b {took:?} after the kill");

    // Who is who survived: the guest is still a guest and may be removed by the
    // host; the host still decides.
    let mut watcher = Ws::open_with(&addr_b, &id, host.clone()).await;
    watcher.send(json!({ "v": 1, "type": "join" })).await;
    watcher.expect("joined").await;
    let roster = watcher.roster_until(|p| p.len() == 3).await;
    let guest_row = roster
        .iter()
        .find(|p| p["participant"] == guest_back["participant"])
        .unwrap_or_else(|| panic!("{roster:?}"));
    assert_eq!(guest_row["name"], "Guest", "{roster:?}");
    assert_eq!(guest_row["guest"], true, "{roster:?}");
    drop(b);
}

/// SIGTERM on a node of a cluster drains it: it stops taking connections (its
/// readiness says `draining`), gives its calls the drain time, then moves them
/// (everyone comes back through another node without the lobby) and exits 0.
#[tokio::test]
async fn sigterm_drains_a_node_whose_calls_then_come_back_elsewhere() {
    let b = TestApp::postgres_with(|c| first_node(c, "node-b")).await;
    let addr_b = b.serve().await;
    let (mut node_a, addr_a) =
        child_node_with(&b, "node-a", &[("CONFAB_CLUSTER_DRAIN_TIMEOUT_SECS", "3")]).await;
    let token = b.admin_token().await;
    let link = b.create_link(&token, "Rolling upgrade").await;
    let id = link["id"].as_str().unwrap().to_string();
    let host = bearer(&token);
    let (mut on_a, joined) = join_with_token(&addr_a, &id, &token).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let pid = node_a.id().unwrap().to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    loop {
        let ready = reqwest::get(format!("http://{addr_a}/readyz"))
            .await
            .unwrap();
        if ready.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE {
            let body: Value = serde_json::from_str(&ready.text().await.unwrap()).unwrap();
            assert_eq!(body["status"], "draining");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no drain seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The call goes on while the drain time lasts.
    on_a.send(json!({ "v": 1, "type": "ping" })).await;
    on_a.expect("pong").await;
    let said = on_a.seen_until(Duration::from_secs(10), |_| false).await;
    assert_eq!(said.last().unwrap()["type"], "closed", "{said:?}");
    let status = tokio::time::timeout(Duration::from_secs(10), node_a.wait())
        .await
        .expect("the drained node exits")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let (_ws, back) = resume_through(&addr_b, &id, host, &joined).await;
    assert_eq!(back["resume_token"], joined["resume_token"]);
    assert_eq!(b.state.calls.live_calls(), 1);
    drop(b);
}

/// A load balancer in front of `backends`: each connection goes to the first
/// backend that takes it (a killed node refuses, so the next one gets it).
async fn balancer(listener: tokio::net::TcpListener, backends: Vec<std::net::SocketAddr>) {
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let backends = backends.clone();
            tokio::spawn(async move {
                for backend in backends {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        return;
                    }
                }
            });
        }
    });
}

/// Two browsers behind a load balancer on a call whose node is killed: both pages
/// reconnect by themselves, land on the other node, take their places back
/// without the lobby and see each other's video again.
#[tokio::test]
async fn browsers_come_back_with_media_when_their_call_s_node_is_killed() {
    use crate::support::browser::{Driver, admits, guest_asks, host_joins};
    // The test's database, and the accounts and the link in it; not a node.
    let owner = TestApp::postgres().await;
    let token = owner
        .user_with_token("host@example.org", confab_core::accounts::Role::Admin)
        .await;
    let res = owner
        .post("/api/v1/links")
        .bearer(&token)
        .json(&json!({ "title": "Family call" }))
        .send()
        .await;
    let link = res.json()["id"].as_str().unwrap().to_string();
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", front.local_addr().unwrap());
    let prefix = format!(
        "confab-test.{}",
        confab_core::secret::random_base62(10).to_lowercase()
    );
    let nats = nats_url();
    let env = [
        ("CONFAB_CLUSTER_NATS_URL", nats.as_str()),
        ("CONFAB_CLUSTER_SUBJECT_PREFIX", prefix.as_str()),
        ("CONFAB_SERVER_PUBLIC_URL", base.as_str()),
    ];
    let (mut node_a, addr_a) = child_node_with(&owner, "node-a", &env).await;
    let (_node_b, addr_b) = child_node_with(&owner, "node-b", &env).await;
    balancer(
        front,
        vec![addr_a.parse().unwrap(), addr_b.parse().unwrap()],
    )
    .await;

    let driver = Driver::start();
    let host = host_joins(&driver, &base, &link).await;
    let guest = guest_asks(&driver, &base, &link, "Ana").await;
    let ana = admits(&host, &guest, "Ana").await;
    let me = host.me().await;
    for (page, other) in [(&host, ana), (&guest, me)] {
        page.wait_media_from(&[other]).await;
    }

    let call = host.wait_js("window.confab.call").await;
    assert_eq!(guest.wait_js("window.confab.call").await, call);

    node_a.start_kill().unwrap();
    let killed = std::time::Instant::now();
    node_a.wait().await.unwrap();
    // Each page is back on the call (a new run of it, so new numbers) with the
    // other one in its roster, and decodes the other's video again.
    for page in [&host, &guest] {
        let script = format!(
            "(() => {{ const rows = document.querySelectorAll('#roster li'); \
             return rows.length === 2 && window.confab.call !== {call}; }})()"
        );
        page.wait_js_within(&script, Duration::from_secs(30)).await;
    }
    let (me, ana) = (host.me().await, guest.me().await);
    host.wait_video_flowing(&format!("p{ana}-0")).await;
    guest.wait_video_flowing(&format!("p{me}-0")).await;
    eprintln!(
        "both pages decode each other's video again {:?} after the kill",
        killed.elapsed()
    );
    guest.wait_text("#roster", "Ana (you)").await;
    host.close().await;
    guest.close().await;
}

/// A call's participant cap holds whichever nodes its people come through: the
/// call has one host, which counts everyone.
#[tokio::test]
async fn a_call_s_cap_counts_people_on_every_node() {
    let (a, b) = two_nodes().await;
    let token = a.admin_token().await;
    let res = a
        .post("/api/v1/links")
        .bearer(&token)
        .json(&json!({ "title": "Two seats", "max_participants": 2 }))
        .send()
        .await;
    let id = res.json()["id"].as_str().unwrap().to_string();
    let (addr_a, addr_b) = (a.serve().await, b.serve().await);
    let mut seated = members_on(&a, &addr_a, &id, 1).await;
    seated.extend(members_on(&a, &addr_b, &id, 1).await);
    let late = a
        .user_with_token("late@example.org", confab_core::accounts::Role::Member)
        .await;
    for addr in [&addr_b, &addr_a] {
        let mut third = Ws::open_with(addr, &id, bearer(&late)).await;
        third.send(json!({ "v": 1, "type": "join" })).await;
        third.expect_error("call_full").await;
    }
    assert_eq!(a.state.calls.live_calls() + b.state.calls.live_calls(), 1);
    drop(b);
}

/// A message on the bus that says a link was revoked when it was not ends no call:
/// a node reads the link back from the database before it acts.
#[tokio::test]
async fn a_forged_revocation_on_the_bus_ends_no_call() {
    let (a, b) = two_nodes().await;
    let token = a.admin_token().await;
    let link = a.create_link(&token, "Not revoked").await;
    let id = link["id"].as_str().unwrap().to_string();
    let addr_b = b.serve().await;
    let mut on_b = members_on(&a, &addr_b, &id, 1).await;
    let pk = a
        .store
        .link_by_public_id(&id)
        .await
        .unwrap()
        .expect("the link")
        .pk;
    let bus = async_nats::connect(nats_url()).await.unwrap();
    let forged = json!({
        "node": "node-a",
        "instance": "forger",
        "sent_at_ms": chrono::Utc::now().timestamp_millis(),
        "change": { "kind": "link", "pk": pk, "public_id": id, "revoked": true },
    });
    let subject = format!("{}.changes", b.state.config.cluster.subject_prefix);
    bus.publish(subject, forged.to_string().into())
        .await
        .unwrap();
    bus.flush().await.unwrap();
    // Node b applied it (it counts), and the call goes on.
    within_cache_life("the forged message", async || {
        b.get("/metrics")
            .send()
            .await
            .text()
            .contains("confab_cluster_changes_applied_total 1")
    })
    .await;
    let said = on_b[0]
        .seen_until(Duration::from_millis(500), |m| {
            m["type"] == "call_ended" || m["type"] == "error"
        })
        .await;
    assert!(
        said.iter()
            .all(|m| m["type"] != "call_ended" && m["type"] != "closed"),
        "{said:?}"
    );
    on_b[0].send(json!({ "v": 1, "type": "ping" })).await;
    on_b[0].expect("pong").await;
    assert_eq!(b.state.calls.live_calls(), 1);
    drop(b);
}
