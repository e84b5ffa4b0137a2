//! The engine with simulated participants: real `rtc` peer connections (ICE, DTLS,
//! SRTP, RTCP) on both sides, packets carried in memory, time simulated. These check
//! what the SFU does with packets: forwarding, loss repair, layer switches and
//! keyframe requests.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use confab_testkit::{Participant, Profile};
use tokio::sync::mpsc;

use super::engine::{CallKey, Engine, EngineConfig, MediaCommand, MediaTransport, Route};
use crate::protocol::ServerMessage;

const CALL: CallKey = CallKey(1);
const TICK: Duration = Duration::from_millis(1);

struct Person {
    participant: Participant,
    /// The call the participant is on.
    call: CallKey,
    /// Where the engine tells the participant things.
    events_tx: mpsc::Sender<ServerMessage>,
    events: mpsc::Receiver<ServerMessage>,
    errors: Vec<String>,
    /// The last subscribe offer the server sent.
    last_offer: String,
    /// Addresses the server sees instead of the participant's own (a NAT that
    /// rebound, a network that changed): (own, as seen).
    seen_as: Vec<(SocketAddr, SocketAddr)>,
}

struct Sim {
    engine: Engine,
    server: SocketAddr,
    now: Instant,
    people: Vec<Person>,
}

impl Sim {
    fn new() -> Sim {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(std::env::var("SIM_LOG").unwrap_or_else(|_| "off".into()))
            .with_test_writer()
            .try_init();
        let server = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 10000);
        Sim {
            engine: Engine::new(
                EngineConfig {
                    udp: Some(server),
                    tcp: None,
                    shard: 0,
                    report_routes: false,
                    announce: vec![server.ip()],
                },
                rand::SeedableRng::seed_from_u64(7),
            ),
            server,
            now: Instant::now(),
            people: Vec::new(),
        }
    }

    /// Adds a participant (ids from 1) publishing `profile`; returns its index.
    fn join(&mut self, profile: &Profile) -> usize {
        self.join_with(profile, false)
    }

    /// Adds a participant publishing `profile` and, if `screen`, a shared screen
    /// negotiated from the start.
    fn join_with(&mut self, profile: &Profile, screen: bool) -> usize {
        self.join_call(CALL, profile, screen)
    }

    /// Adds a participant to `call`.
    fn join_call(&mut self, call: CallKey, profile: &Profile, screen: bool) -> usize {
        let index = self.people.len();
        let id = index as u32 + 1;
        let addr = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, id as u8, 2)), port);
        let mut participant =
            Participant::new(id, profile, addr(5000), addr(5001), self.now, self.now)
                .expect("participant");
        if screen {
            participant.add_screen().expect("screen");
        }
        let offer = participant.publish_offer(self.now).expect("offer");
        let (tx, rx) = mpsc::channel(64);
        self.people.push(Person {
            participant,
            call,
            events_tx: tx.clone(),
            events: rx,
            errors: Vec::new(),
            last_offer: String::new(),
            seen_as: Vec::new(),
        });
        self.engine.handle_command(
            self.now,
            MediaCommand::Publish {
                call,
                participant: id,
                offer,
                events: std::sync::Arc::new(tx),
            },
        );
        self.deliver_events();
        index
    }

    fn command(&mut self, command: MediaCommand) {
        self.engine.handle_command(self.now, command);
        self.deliver_events();
    }

    /// Hands the engine's events to the participants' sinks, as the driver does.
    fn deliver_events(&mut self) {
        while let Some((to, event)) = self.engine.poll_event() {
            to.deliver(event);
        }
    }

    /// Runs the simulation for `duration`, one millisecond at a time.
    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.step();
            self.now += TICK;
        }
    }

    fn step(&mut self) {
        let now = self.now;
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        for person in &mut self.people {
            if person.participant.poll_timeout().is_some_and(|t| t <= now) {
                person.participant.handle_timeout(now);
            }
        }
        self.signaling();
        // Deliver until quiet (the links have no delay).
        loop {
            let mut moved = false;
            while let Some(out) = self.engine.poll_transmit() {
                moved = true;
                let id = match out.route.peer.ip() {
                    IpAddr::V4(v4) => v4.octets()[2] as usize,
                    IpAddr::V6(_) => continue,
                };
                if let Some(person) = self.people.get_mut(id.wrapping_sub(1)) {
                    let Some(local) = person.own_address(out.route.peer) else {
                        continue; // an address this participant no longer has
                    };
                    person
                        .participant
                        .handle_datagram(now, local, self.server, out.data);
                }
            }
            for person in &mut self.people {
                while let Some(d) = person.participant.poll_transmit() {
                    moved = true;
                    let route = Route {
                        protocol: MediaTransport::Udp,
                        local: d.to,
                        peer: person.seen_address(d.from),
                    };
                    self.engine.handle_datagram(now, route, d.data);
                }
            }
            if !moved {
                break;
            }
        }
    }

    /// Carries the engine's signaling messages to the participants and back.
    fn signaling(&mut self) {
        self.deliver_events();
        let now = self.now;
        let mut commands = Vec::new();
        for (index, person) in self.people.iter_mut().enumerate() {
            let id = index as u32 + 1;
            while let Ok(message) = person.events.try_recv() {
                match message {
                    ServerMessage::PublishAnswer { sdp } => {
                        person.participant.publish_answer(now, sdp).expect("answer");
                    }
                    ServerMessage::SubscribeOffer { sdp } => {
                        person.last_offer = sdp.clone();
                        let answer = person
                            .participant
                            .subscribe_offer(now, sdp)
                            .expect("subscribe answer");
                        commands.push(MediaCommand::SubscribeAnswer {
                            events: std::sync::Arc::new(person.events_tx.clone()),
                            call: person.call,
                            participant: id,
                            answer,
                        });
                    }
                    ServerMessage::Error { code, message } => {
                        person.errors.push(format!("{code:?}: {message}"))
                    }
                    _ => {}
                }
            }
        }
        for command in commands {
            self.engine.handle_command(now, command);
        }
    }

    /// Participant `index` starts or stops sharing its screen, as a browser does:
    /// swaps the track and says so.
    fn share(&mut self, index: usize, screen: bool) {
        self.person_mut(index).set_sharing(screen);
        let call = self.people[index].call;
        self.command(MediaCommand::Sharing {
            call,
            participant: index as u32 + 1,
            screen,
        });
    }

    /// From now on the server sees participant `index` at other addresses, and
    /// what it sends to the old ones is lost.
    fn rebind(&mut self, index: usize) {
        let id = index as u8 + 1;
        let person = &mut self.people[index];
        person.seen_as = [5000, 5001]
            .map(|port| {
                (
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, id, 2)), port),
                    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, id, 3)), port + 1000),
                )
            })
            .to_vec();
    }

    fn person(&self, index: usize) -> &Participant {
        &self.people[index].participant
    }

    fn person_mut(&mut self, index: usize) -> &mut Participant {
        &mut self.people[index].participant
    }
}

impl Person {
    fn seen_address(&self, own: SocketAddr) -> SocketAddr {
        self.seen_as
            .iter()
            .find(|(o, _)| *o == own)
            .map_or(own, |(_, seen)| *seen)
    }

    /// The participant's own address for one the server sends to, if it still has it.
    fn own_address(&self, seen: SocketAddr) -> Option<SocketAddr> {
        if let Some((own, _)) = self.seen_as.iter().find(|(_, s)| *s == seen) {
            return Some(*own);
        }
        let rebound = self.seen_as.iter().any(|(own, _)| *own == seen);
        (!rebound).then_some(seen)
    }
}

/// The video stream `viewer` receives from `publisher` (by participant id).
fn video_from(
    viewer: &Participant,
    publisher: u32,
) -> Option<(u32, confab_testkit::participant::StreamStats)> {
    viewer
        .stats
        .streams
        .iter()
        .find(|(_, s)| s.publisher == Some(publisher) && !s.audio && !s.screen)
        .map(|(ssrc, s)| (*ssrc, s.clone()))
}

fn audio_from(
    viewer: &Participant,
    publisher: u32,
) -> Option<confab_testkit::participant::StreamStats> {
    viewer
        .stats
        .streams
        .values()
        .find(|s| s.publisher == Some(publisher) && s.audio)
        .cloned()
}

#[test]
fn three_participants_receive_each_others_audio_and_video() {
    let mut sim = Sim::new();
    for _ in 0..3 {
        sim.join(&Profile::camera());
    }
    sim.run(Duration::from_secs(3));
    for viewer in 0..3 {
        let me = sim.person(viewer);
        assert!(me.connected(), "participant {} never connected", viewer + 1);
        for publisher in (1..=3).filter(|p| *p != viewer as u32 + 1) {
            let audio = audio_from(me, publisher).expect("audio");
            // 50 packets/s once connected (the handshake takes part of the first second).
            assert!(audio.received > 80, "audio from {publisher}: {audio:?}");
            assert_eq!(audio.missing(), 0, "audio from {publisher}");
            let (_, video) = video_from(me, publisher).expect("video");
            // The full layer: 180 packets/s.
            assert!(
                video.per_layer[2] > 250,
                "video from {publisher}: {video:?}"
            );
            assert_eq!(video.missing(), 0, "video from {publisher}");
            assert!(video.keyframes[2] >= 1, "video starts with a keyframe");
        }
        assert!(
            sim.people[viewer].errors.is_empty(),
            "{:?}",
            sim.people[viewer].errors
        );
    }
    let stats = sim.engine.stats();
    assert!(stats.packets_forwarded > 0);
}

#[test]
fn lost_packets_are_repaired_by_nack() {
    let mut sim = Sim::new();
    let a = sim.join(&Profile::camera());
    let b = sim.join(&Profile::camera());
    sim.run(Duration::from_secs(1));
    // B's network loses one forwarded packet in 25 the first time it is sent.
    sim.person_mut(b).drop_first_arrivals(1, 25);
    sim.run(Duration::from_secs(4));
    sim.person_mut(b).drop_first_arrivals(0, 1);
    sim.run(Duration::from_millis(500));
    let viewer = sim.person(b);
    assert!(
        viewer.stats.dropped_on_purpose > 25,
        "the simulated loss happened: {}",
        viewer.stats.dropped_on_purpose
    );
    let (_, video) = video_from(viewer, 1).expect("video from A");
    assert!(video.received > 500, "{video:?}");
    assert_eq!(
        video.missing(),
        0,
        "every lost video packet came back: {video:?}"
    );
    // The SFU answered the NACKs itself: the publisher was not asked.
    assert_eq!(sim.person(a).stats.nacks_received, 0);
}

#[test]
fn switching_layer_asks_the_publisher_for_a_keyframe_and_starts_on_it() {
    let mut sim = Sim::new();
    let a = sim.join(&Profile::camera());
    let b = sim.join(&Profile::camera());
    // Past the new subscriber's warm-up keyframes.
    sim.run(Duration::from_secs(10));
    let (_, before) = video_from(sim.person(b), 1).expect("video from A");
    assert_eq!(before.layer, Some(2), "full quality by default");
    let asked_before = sim.person(a).stats.keyframe_requests;

    sim.command(MediaCommand::SetQuality {
        call: CALL,
        participant: 2,
        publisher: 1,
        layer: 0,
    });
    sim.run(Duration::from_millis(500));

    let asked_after = sim.person(a).stats.keyframe_requests;
    assert!(
        asked_after[0] > asked_before[0],
        "a keyframe of the small layer was requested: {asked_before:?} → {asked_after:?}"
    );
    let (_, after) = video_from(sim.person(b), 1).expect("video from A");
    assert_eq!(after.layer, Some(0), "now on the small layer: {after:?}");
    assert!(after.keyframes[0] >= 1, "the switch happened on a keyframe");
    assert_eq!(
        after.missing(),
        0,
        "the sequence stayed continuous: {after:?}"
    );
}

#[test]
fn a_subscribers_picture_loss_reaches_the_publisher() {
    let mut sim = Sim::new();
    let a = sim.join(&Profile::camera());
    let b = sim.join(&Profile::camera());
    sim.run(Duration::from_secs(10));
    let asked_before = sim.person(a).stats.keyframe_requests;
    let (ssrc, _) = video_from(sim.person(b), 1).expect("video from A");
    let now = sim.now;
    sim.person_mut(b)
        .request_keyframe(now, ssrc)
        .expect("picture loss indication");
    sim.run(Duration::from_millis(100));
    let asked_after = sim.person(a).stats.keyframe_requests;
    assert!(
        asked_after[2] > asked_before[2],
        "the publisher was asked for a keyframe of the layer B watches: {asked_before:?} → {asked_after:?}"
    );
}

#[test]
fn a_narrow_downlink_gets_lower_layers_and_recovers_when_it_widens() {
    let mut sim = Sim::new();
    let a = sim.join(&Profile::camera());
    let b = sim.join(&Profile::camera());
    let c = sim.join(&Profile::camera());
    sim.run(Duration::from_secs(3));
    for publisher in [1, 2] {
        let (_, video) = video_from(sim.person(c), publisher).expect("video");
        assert_eq!(video.layer, Some(2), "full quality while nothing limits it");
    }
    let asked_before = sim.person(a).stats.keyframe_requests;
    // C's browser estimate falls to 900 kbit/s: two 720p streams (3.4 Mbit/s) do not
    // fit, two 360p streams (1 Mbit/s) neither; 180p + 360p or two 180p do.
    for remb in [4_000_000, 900_000, 900_000, 900_000] {
        let now = sim.now;
        sim.person_mut(c).report_bandwidth(now, remb).expect("remb");
        sim.run(Duration::from_millis(600));
    }
    let layers: Vec<u8> = [1, 2]
        .iter()
        .map(|p| {
            video_from(sim.person(c), *p)
                .expect("video")
                .1
                .layer
                .expect("layer")
        })
        .collect();
    let bps = |l: u8| [150_000u64, 500_000, 1_700_000][l as usize];
    assert!(
        layers.iter().map(|l| bps(*l)).sum::<u64>() <= 810_000,
        "the layers fit 90 % of the estimate: {layers:?}"
    );
    assert!(
        sim.person(a).stats.keyframe_requests[0] + sim.person(a).stats.keyframe_requests[1]
            > asked_before[0] + asked_before[1],
        "the switch down asked for a keyframe of the lower layer"
    );
    // B, whose downlink is not limited, still gets full quality.
    let (_, to_b) = video_from(sim.person(b), 1).expect("video");
    assert_eq!(to_b.layer, Some(2));

    // The downlink widens again: probes bring the layers back, one step at a time.
    for _ in 0..60 {
        let now = sim.now;
        sim.person_mut(c)
            .report_bandwidth(now, 10_000_000)
            .expect("remb");
        sim.run(Duration::from_millis(600));
    }
    for publisher in [1, 2] {
        let (_, video) = video_from(sim.person(c), publisher).expect("video");
        assert_eq!(video.layer, Some(2), "back to full quality: {video:?}");
        assert_eq!(video.missing(), 0, "{video:?}");
    }
}

#[test]
fn a_renegotiating_simulcast_publisher_keeps_being_forwarded() {
    let mut sim = Sim::new();
    sim.join(&Profile::camera());
    let b = sim.join(&Profile::camera());
    sim.run(Duration::from_secs(2));
    let (_, before) = video_from(sim.person(b), 1).expect("video from A");
    // A shares its screen: a third track, and a renegotiation of its publish connection.
    let now = sim.now;
    sim.person_mut(0).add_screen().expect("screen");
    let offer = sim.person_mut(0).publish_offer(now).expect("offer");
    let (tx, rx) = mpsc::channel(64);
    sim.people[0].events = rx;
    sim.command(MediaCommand::Publish {
        call: CALL,
        participant: 1,
        offer,
        events: std::sync::Arc::new(tx),
    });
    sim.run(Duration::from_secs(2));
    let (_, after) = video_from(sim.person(b), 1).expect("video from A");
    assert!(
        after.received > before.received + 300,
        "A's camera still reaches B after the renegotiation: {before:?} → {after:?}"
    );
    assert!(
        sim.people[0].errors.is_empty(),
        "{:?}",
        sim.people[0].errors
    );
}

/// Packets and keyframes `viewer` received from `publisher`'s screen, over every
/// subscription it had to it.
fn screen_from(viewer: &Participant, publisher: u32) -> (u64, u64, u64) {
    viewer
        .stats
        .streams
        .values()
        .filter(|s| s.publisher == Some(publisher) && s.screen)
        .fold((0, 0, 0), |(received, keyframes, missing), s| {
            (
                received + s.received,
                keyframes + s.keyframes[0],
                missing + s.missing(),
            )
        })
}

#[test]
fn a_screen_is_shown_only_while_it_is_shared() {
    let mut sim = Sim::new();
    sim.join_with(&Profile::camera(), true);
    let b = sim.join(&Profile::camera());
    sim.run(Duration::from_secs(2));
    let (shown, keyframes, missing) = screen_from(sim.person(b), 1);
    assert!(shown > 10, "B sees A's screen: {shown} packets");
    assert!(
        keyframes >= 1 && missing == 0,
        "{keyframes} keyframes, {missing} missing"
    );
    assert!(
        sim.people[b].last_offer.contains("p1-1"),
        "the screen is offered"
    );

    // A stops sharing: the browser swaps the track out and says so.
    sim.share(0, false);
    sim.run(Duration::from_millis(500));
    assert!(
        !sim.people[b].last_offer.contains("p1-1"),
        "B's connection no longer carries A's screen"
    );
    let (_, camera_before) = video_from(sim.person(b), 1).expect("camera");

    // A shares again: B gets the screen back, starting at a keyframe.
    sim.share(0, true);
    sim.run(Duration::from_secs(2));
    assert!(sim.people[b].last_offer.contains("p1-1"), "offered again");
    let (again, keyframes_again, missing) = screen_from(sim.person(b), 1);
    assert!(
        again > shown + 10,
        "the screen flows again: {shown} → {again}"
    );
    assert!(keyframes_again > keyframes, "it restarts at a keyframe");
    assert_eq!(missing, 0);
    let (_, camera_after) = video_from(sim.person(b), 1).expect("camera");
    assert!(
        camera_after.received > camera_before.received + 300,
        "A's camera kept flowing: {camera_before:?} → {camera_after:?}"
    );
    assert!(sim.people[0].errors.is_empty() && sim.people[b].errors.is_empty());
}

/// A participant's network changes during a call (its NAT rebinds, its laptop moves
/// to another network): its packets come from new addresses, and the server follows
/// it there on both connections, with no renegotiation.
#[test]
fn media_follows_a_participant_to_new_addresses() {
    let mut sim = Sim::new();
    let a = sim.join(&Profile::camera());
    let b = sim.join(&Profile::camera());
    sim.run(Duration::from_secs(2));
    let heard = |sim: &Sim| {
        (
            audio_from(sim.person(b), 1).map_or(0, |s| s.received),
            audio_from(sim.person(a), 2).map_or(0, |s| s.received),
            video_from(sim.person(b), 1).map_or(0, |(_, s)| s.received),
        )
    };
    let before = heard(&sim);
    assert!(before.0 > 50 && before.1 > 50, "{before:?}");
    sim.rebind(b);
    sim.run(Duration::from_secs(3));
    let moved = heard(&sim);
    // 50 audio packets a second: most of them arrive after the move (it waits for
    // a connectivity check on the new address).
    assert!(
        moved.0 - before.0 > 100,
        "B hears A at its new address: {before:?} → {moved:?}"
    );
    assert!(
        moved.1 - before.1 > 100,
        "A hears B from its new address: {before:?} → {moved:?}"
    );
    assert!(moved.2 > before.2 + 300, "B sees A: {before:?} → {moved:?}");
    // Past the point where ICE would give up on the old path (5 s silent, then 25 s
    // more): the connections are still up and carrying media.
    sim.run(Duration::from_secs(32));
    let later = heard(&sim);
    assert_eq!(sim.engine.stats().peers, 4, "no connection was closed");
    assert!(later.0 - moved.0 > 1000, "{moved:?} → {later:?}");
    assert!(later.1 - moved.1 > 1000, "{moved:?} → {later:?}");
    assert!(sim.people.iter().all(|p| p.errors.is_empty()));
}

#[test]
fn a_panic_takes_down_only_the_media_of_its_call() {
    let mut sim = Sim::new();
    let (a, b) = (
        sim.join_call(CallKey(1), &Profile::camera(), false),
        sim.join_call(CallKey(1), &Profile::camera(), false),
    );
    let (c, d) = (
        sim.join_call(CallKey(2), &Profile::camera(), false),
        sim.join_call(CallKey(2), &Profile::camera(), false),
    );
    sim.run(Duration::from_secs(2));
    let audio = |sim: &Sim, viewer: usize, from: usize| {
        audio_from(sim.person(viewer), from as u32 + 1).map_or(0, |a| a.received)
    };
    assert!(
        audio(&sim, c, d) > 30 && audio(&sim, a, b) > 30,
        "both calls flow"
    );

    let step = sim.engine.guarded(|e| {
        e.handle_command(
            Instant::now(),
            MediaCommand::Fail {
                call: CallKey(1),
                teardown: false,
            },
        )
    });
    assert_eq!(step, super::engine::Step::Contained(CallKey(1)));
    assert_eq!(sim.engine.stats().panics, 1);
    let (before_c, before_a) = (audio(&sim, c, d), audio(&sim, a, b));
    sim.run(Duration::from_secs(1));
    // The other call goes on untouched: 50 audio packets a second, none lost.
    assert!(audio(&sim, c, d) - before_c >= 45, "call 2 keeps flowing");
    let stream = audio_from(sim.person(c), d as u32 + 1).unwrap();
    assert_eq!(stream.missing(), 0);
    assert!(
        sim.people[c].errors.is_empty(),
        "{:?}",
        sim.people[c].errors
    );
    // The failed call's people are told, and nothing more reaches them.
    for person in [a, b] {
        assert!(
            sim.people[person]
                .errors
                .iter()
                .any(|e| e.starts_with("MediaFailed")),
            "{:?}",
            sim.people[person].errors
        );
    }
    assert_eq!(audio(&sim, a, b), before_a, "call 1's media was dropped");

    // A step that panics outside any call tears nothing down.
    assert_eq!(
        sim.engine.guarded(|_| panic!("not about a call")),
        super::engine::Step::Unattributed
    );
    // Tearing a call down that panics too is reported as a broken engine.
    let step = sim.engine.guarded(|e| {
        e.handle_command(
            Instant::now(),
            MediaCommand::Fail {
                call: CallKey(2),
                teardown: true,
            },
        )
    });
    assert_eq!(step, super::engine::Step::Broken);
}

#[test]
fn a_username_alone_records_no_route() {
    let mut sim = Sim::new();
    let a = sim.join(&Profile::camera());
    sim.join(&Profile::camera());
    sim.run(Duration::from_secs(2));
    assert!(sim.person(a).connected());
    let real = sim.engine.route_count();
    let ufrag = sim.engine.ufrags().next().expect("a peer").to_string();
    // A binding request that names the connection but has no valid integrity:
    // from 100 ports, none is recorded.
    for port in 0..100u16 {
        let route = Route {
            protocol: MediaTransport::Udp,
            local: sim.server,
            peer: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 9)), 20000 + port),
        };
        let request = binding_request(&format!("{ufrag}:x"));
        sim.engine
            .handle_datagram(sim.now, route, bytes::BytesMut::from(&request[..]));
        assert!(!sim.engine.knows_route(&route));
    }
    assert_eq!(sim.engine.route_count(), real, "only the real routes");
    sim.run(Duration::from_millis(500));
    assert!(
        sim.person(a).connected(),
        "the real participant is unaffected"
    );
}

#[test]
fn a_browser_that_nominates_on_its_first_check_gets_connected() {
    // Firefox puts USE-CANDIDATE on its first check of a pair. `rtc` answers such
    // a request only once its own check of the pair has succeeded, so the answer
    // to that check, which carries no username, must reach it.
    let mut sim = Sim::new();
    let now = sim.now;
    let me = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)), 40000);
    let mut browser =
        Participant::new(1, &Profile::camera(), me, me, now, now).expect("participant");
    let offer = browser.publish_offer(now).expect("offer");
    let (events, mut told) = mpsc::channel::<ServerMessage>(64);
    sim.command(MediaCommand::Publish {
        call: CALL,
        participant: 1,
        offer: offer.clone(),
        events: std::sync::Arc::new(events),
    });
    let answer = loop {
        match told.try_recv().expect("a publish answer") {
            ServerMessage::PublishAnswer { sdp } => break sdp,
            _ => continue,
        }
    };
    let sdp_value = |sdp: &str, key: &str| {
        sdp.lines()
            .find_map(|l| l.strip_prefix(key))
            .expect(key)
            .trim()
            .to_string()
    };
    let (server_ufrag, server_pwd) = (
        sdp_value(&answer, "a=ice-ufrag:"),
        sdp_value(&answer, "a=ice-pwd:"),
    );
    let (my_ufrag, my_pwd) = (
        sdp_value(&offer, "a=ice-ufrag:"),
        sdp_value(&offer, "a=ice-pwd:"),
    );
    let route = Route {
        protocol: MediaTransport::Udp,
        local: sim.server,
        peer: me,
    };
    let username = format!("{server_ufrag}:{my_ufrag}");
    let nominate = |txid: u8| {
        stun(
            0x0001,
            [txid; 12],
            &[
                (0x0006, username.as_bytes().to_vec()),
                (0x0024, 1_845_501_695u32.to_be_bytes().to_vec()),
                (0x0025, Vec::new()),
                (0x802a, 7u64.to_be_bytes().to_vec()),
            ],
            &server_pwd,
        )
    };
    // The first check, nominating at once: `rtc` checks the pair in turn.
    sim.engine
        .handle_datagram(now, route, bytes::BytesMut::from(&nominate(1)[..]));
    let mut check = None;
    while let Some(out) = sim.engine.poll_transmit() {
        assert_eq!(out.route, route);
        assert_ne!(
            &out.data[..2],
            &[0x01, 0x01],
            "no answer before its own check"
        );
        if out.data[..2] == [0x00, 0x01] {
            check = Some(out.data[8..20].to_vec());
        }
    }
    let check = check.expect("the server checks the pair");
    // The browser answers that check; then checks again, still nominating.
    let xor_port = (sim.server.port() ^ 0x2112).to_be_bytes();
    let IpAddr::V4(server_ip) = sim.server.ip() else {
        unreachable!()
    };
    let mut mapped = vec![0, 1, xor_port[0], xor_port[1]];
    for (b, m) in server_ip.octets().iter().zip(0x2112_A442u32.to_be_bytes()) {
        mapped.push(b ^ m);
    }
    let response = stun(
        0x0101,
        check.try_into().unwrap(),
        &[(0x0020, mapped)],
        &my_pwd,
    );
    sim.engine
        .handle_datagram(now, route, bytes::BytesMut::from(&response[..]));
    sim.engine
        .handle_datagram(now, route, bytes::BytesMut::from(&nominate(2)[..]));
    let mut answered = false;
    while let Some(out) = sim.engine.poll_transmit() {
        answered |=
            out.route == route && out.data[..2] == [0x01, 0x01] && out.data[8..20] == [2; 12];
    }
    assert!(
        answered,
        "the nomination is answered once the pair checked out"
    );
    assert!(sim.engine.knows_route(&route));
}

/// A STUN message of type `typ` with `attrs` and a MESSAGE-INTEGRITY made with
/// `password`.
fn stun(typ: u16, txid: [u8; 12], attrs: &[(u16, Vec<u8>)], password: &str) -> Vec<u8> {
    use hmac::Mac;
    let mut body = Vec::new();
    for (kind, value) in attrs {
        body.extend_from_slice(&kind.to_be_bytes());
        body.extend_from_slice(&(value.len() as u16).to_be_bytes());
        body.extend_from_slice(value);
        while body.len() % 4 != 0 {
            body.push(0);
        }
    }
    let mut msg = Vec::new();
    msg.extend_from_slice(&typ.to_be_bytes());
    msg.extend_from_slice(&((body.len() + 24) as u16).to_be_bytes());
    msg.extend_from_slice(&0x2112_A442u32.to_be_bytes());
    msg.extend_from_slice(&txid);
    msg.extend_from_slice(&body);
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(password.as_bytes()).unwrap();
    mac.update(&msg);
    msg.extend_from_slice(&0x0008u16.to_be_bytes());
    msg.extend_from_slice(&20u16.to_be_bytes());
    msg.extend_from_slice(&mac.finalize().into_bytes());
    msg
}

/// A STUN Binding request with USERNAME `username` and a MESSAGE-INTEGRITY that
/// is not the right one.
fn binding_request(username: &str) -> Vec<u8> {
    let mut attrs = Vec::new();
    let name = username.as_bytes();
    attrs.extend_from_slice(&0x0006u16.to_be_bytes());
    attrs.extend_from_slice(&(name.len() as u16).to_be_bytes());
    attrs.extend_from_slice(name);
    while attrs.len() % 4 != 0 {
        attrs.push(0);
    }
    attrs.extend_from_slice(&0x0008u16.to_be_bytes());
    attrs.extend_from_slice(&20u16.to_be_bytes());
    attrs.extend_from_slice(&[0xab; 20]);
    let mut msg = Vec::new();
    msg.extend_from_slice(&0x0001u16.to_be_bytes());
    msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    msg.extend_from_slice(&0x2112_A442u32.to_be_bytes());
    msg.extend_from_slice(&[7; 12]);
    msg.extend_from_slice(&attrs);
    msg
}
