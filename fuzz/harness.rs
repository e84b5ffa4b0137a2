//! What each fuzz target does with one input. Shared by the libFuzzer targets
//! (`fuzz/fuzz_targets/`) and by the test that replays the saved corpora
//! (`core/tests/it/fuzz_corpus.rs`), so a crash found once stays fixed.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use confab_core::protocol::ServerMessage;
use confab_core::sfu::engine::{Engine, EngineConfig, MediaCommand, MediaTransport, Route};
use confab_testkit::{Participant, Profile};

/// Every target, by the name of its corpus directory.
#[allow(dead_code)] // the fuzz targets each use one; the corpus test uses the list
pub const TARGETS: &[&str] = &[
    "signaling",
    "next",
    "manifest",
    "mail_address",
    "tcp_frames",
    "ics",
    "sdp_offer",
    "media_before_auth",
    "media_after_auth",
];

/// Runs `target` on `data`.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "signaling" => confab_core::fuzz::signaling(data),
        "next" => confab_core::fuzz::next(data),
        "manifest" => confab_core::fuzz::manifest(data),
        "mail_address" => confab_core::fuzz::mail_address(data),
        "tcp_frames" => confab_core::fuzz::tcp_frames(data),
        "ics" => ics(data),
        "sdp_offer" => sdp_offer(data),
        "media_before_auth" => media(data, false),
        "media_after_auth" => media(data, true),
        other => panic!("no fuzz target {other}"),
    }
}

/// An `.ics` file from anyone: parsed or refused; what the engine writes, it can
/// read again, and adding the same link twice changes nothing the second time.
pub fn ics(data: &[u8]) {
    use confab_calendar::ics::{Calendar, add_link};
    let now = "2026-01-01T00:00:00Z".parse().expect("a time");
    let link = "https://call.example.org/j/abc#k=secret";
    let Ok(first) = add_link(data, link, "Join", now) else {
        return;
    };
    assert!(Calendar::parse(first.ics.as_bytes()).is_ok(), "re-read");
    let second = add_link(first.ics.as_bytes(), link, "Join", now).expect("re-add");
    assert!(
        second.events.iter().all(|e| !e.changed),
        "adding the link again changed {:?}",
        second.events
    );
}

const SERVER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 10000);

fn engine() -> Engine {
    Engine::new(
        EngineConfig {
            udp: Some(SERVER),
            tcp: None,
            shard: 0,
            report_routes: false,
            announce: vec![SERVER.ip()],
        },
        rand::SeedableRng::seed_from_u64(1),
    )
}

thread_local! {
    static OFFERS: RefCell<(Engine, u64)> = RefCell::new((engine(), 0));
    static SESSION: RefCell<Option<Session>> = const { RefCell::new(None) };
}

/// An SDP offer for a publish connection, as a participant's browser would send it.
pub fn sdp_offer(data: &[u8]) {
    let offer = String::from_utf8_lossy(data).into_owned();
    OFFERS.with_borrow_mut(|(engine, runs)| {
        *runs += 1;
        let (events, mut told) = tokio::sync::mpsc::channel::<ServerMessage>(64);
        let now = Instant::now();
        engine.handle_command(
            now,
            MediaCommand::Publish {
                call: confab_core::sfu::CallKey(1),
                // A few participants, so offers also meet a call with others in it.
                participant: (*runs % 4) as u32 + 1,
                offer,
                events: std::sync::Arc::new(events),
            },
        );
        while engine.poll_transmit().is_some() {}
        deliver_events(engine);
        while told.try_recv().is_ok() {}
        engine.handle_timeout(now + Duration::from_secs(60));
        while engine.poll_transmit().is_some() {}
        deliver_events(engine);
    });
}

/// One participant connected to an engine through a real handshake, and the routes
/// the engine knows it by.
struct Session {
    engine: Engine,
    participant: Participant,
    now: Instant,
    publish_route: Route,
    runs: u32,
}

impl Session {
    fn new() -> Session {
        let mut engine = engine();
        let addr = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2)), port);
        let mut now = Instant::now();
        let mut participant =
            Participant::new(1, &Profile::camera(), addr(5000), addr(5001), now, now)
                .expect("a participant");
        let offer = participant.publish_offer(now).expect("an offer");
        let (events, mut told) = tokio::sync::mpsc::channel::<ServerMessage>(64);
        engine.handle_command(
            now,
            MediaCommand::Publish {
                call: confab_core::sfu::CallKey(1),
                participant: 1,
                offer,
                events: std::sync::Arc::new(events),
            },
        );
        for _ in 0..3000 {
            deliver_events(&mut engine);
            while let Ok(message) = told.try_recv() {
                if let confab_core::protocol::ServerMessage::PublishAnswer { sdp } = message {
                    participant.publish_answer(now, sdp).expect("answer");
                }
            }
            pump(&mut engine, &mut participant, now);
            if participant.publish_connected() {
                break;
            }
            now += Duration::from_millis(1);
            if engine.poll_timeout().is_some_and(|t| t <= now) {
                engine.handle_timeout(now);
            }
            if participant.poll_timeout().is_some_and(|t| t <= now) {
                participant.handle_timeout(now);
            }
        }
        assert!(
            participant.publish_connected(),
            "the fuzzing session connects"
        );
        Session {
            engine,
            participant,
            now,
            publish_route: Route {
                protocol: MediaTransport::Udp,
                local: SERVER,
                peer: addr(5000),
            },
            runs: 0,
        }
    }
}

/// Hands the engine's events to their sinks, as the server's driver does.
fn deliver_events(engine: &mut Engine) {
    while let Some((to, event)) = engine.poll_event() {
        to.deliver(event);
    }
}

fn pump(engine: &mut Engine, participant: &mut Participant, now: Instant) {
    deliver_events(engine);
    loop {
        let mut moved = false;
        while let Some(out) = engine.poll_transmit() {
            moved = true;
            participant.handle_datagram(now, out.route.peer, SERVER, out.data);
        }
        while let Some(d) = participant.poll_transmit() {
            moved = true;
            let route = Route {
                protocol: MediaTransport::Udp,
                local: d.to,
                peer: d.from,
            };
            engine.handle_datagram(now, route, d.data);
        }
        if !moved {
            break;
        }
    }
}

/// A datagram at the media port: from a stranger's address (`authenticated` false:
/// the placeholder `UFRAG` in it becomes the real connection's username fragment,
/// so requests reach the integrity check), or from the address of a participant
/// whose connection is up (true: it reaches DTLS, SRTP and SRTCP).
pub fn media(data: &[u8], authenticated: bool) {
    SESSION.with_borrow_mut(|slot| {
        // A fresh session now and then, and whenever an input broke the last one.
        if slot
            .as_ref()
            .is_none_or(|s| s.runs >= 5000 || s.engine.stats().peers == 0)
        {
            *slot = Some(Session::new());
        }
        let Some(session) = slot.as_mut() else {
            return;
        };
        session.runs += 1;
        let route = if authenticated {
            session.publish_route
        } else {
            let port = data.first().map_or(40000, |b| 40000 + u16::from(*b));
            Route {
                protocol: if data.get(1).is_some_and(|b| b & 1 == 1) {
                    MediaTransport::Tcp
                } else {
                    MediaTransport::Udp
                },
                local: SERVER,
                peer: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), port),
            }
        };
        let mut datagram = BytesMut::from(data);
        if !authenticated {
            let ufrag = session
                .engine
                .ufrags()
                .next()
                .unwrap_or_default()
                .to_string();
            if let Some(at) = data.windows(5).position(|w| w == b"UFRAG") {
                let mut with = data[..at].to_vec();
                with.extend_from_slice(ufrag.as_bytes());
                with.extend_from_slice(&data[at + 5..]);
                datagram = BytesMut::from(&with[..]);
            }
        }
        session.now += Duration::from_millis(1);
        let now = session.now;
        let step = session
            .engine
            .guarded(|e| e.handle_datagram(now, route, datagram));
        assert_eq!(
            step,
            confab_core::sfu::engine::Step::Done,
            "the engine panicked"
        );
        if !authenticated {
            assert!(
                !session.engine.knows_route(&route),
                "a stranger's datagram recorded a route"
            );
        }
        pump(&mut session.engine, &mut session.participant, now);
    });
}
