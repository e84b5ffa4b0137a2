//! The call rules, with time passed in.

use super::*;

const OWNER: i64 = 1;

fn t0() -> DateTime<Utc> {
    "2026-11-21T12:00:00Z".parse().unwrap()
}

fn secs(s: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(s)
}

fn call(guests_need_approval: bool, max_participants: u8) -> Call {
    Call::new(
        OWNER,
        CallPolicy {
            guests_need_approval,
            members_need_approval: false,
            max_participants,
        },
        CallRules::default(),
    )
}

fn member(user_id: i64) -> Identity {
    Identity::Member { user_id }
}

fn guest(key: &str) -> Identity {
    Identity::Guest {
        guest_key: key.into(),
    }
}

#[track_caller]
fn joined(outcome: Result<JoinOutcome, JoinError>) -> Seat {
    match outcome {
        Ok(JoinOutcome::Joined(seat)) => seat,
        other => panic!("expected to join, got {other:?}"),
    }
}

#[track_caller]
fn waiting(outcome: Result<JoinOutcome, JoinError>) -> (RequestId, WaitingFor) {
    match outcome {
        Ok(JoinOutcome::Waiting {
            request,
            waiting_for,
        }) => (request, waiting_for),
        other => panic!("expected to wait, got {other:?}"),
    }
}

/// A call with the owner on it and one admitted guest.
fn call_with_guest(admitted_at: i64) -> (Call, ParticipantId, ParticipantId) {
    let mut call = call(true, 32);
    let owner = joined(call.join(member(OWNER), "Owner", t0())).participant;
    let (request, _) = waiting(call.join(guest("g1"), "Guest", secs(admitted_at)));
    let seat = call
        .decide(owner, request, Decision::Admit, secs(admitted_at))
        .unwrap()
        .unwrap();
    call.drain_events();
    (call, owner, seat.participant)
}

#[test]
fn the_owner_joins_directly_and_starts_the_call() {
    let mut call = call(true, 32);
    let seat = joined(call.join(member(OWNER), "Owner", t0()));
    assert_eq!(
        call.drain_events(),
        [
            CallEvent::Started,
            CallEvent::Joined {
                participant: seat.participant
            }
        ]
    );
    assert_eq!(call.started_at(), Some(t0()));
    assert!(call.participant(seat.participant).unwrap().is_owner);
    assert_eq!(seat.resume_token.len(), 32);
}

#[test]
fn a_guest_who_arrives_before_the_host_waits_for_the_host() {
    for guests_need_approval in [true, false] {
        let mut call = call(guests_need_approval, 32);
        let (request, why) = waiting(call.join(guest("early"), "Early bird", t0()));
        assert_eq!(
            why,
            WaitingFor::Host,
            "the lobby cannot be bypassed by arriving early"
        );
        assert!(call.participants().next().is_none());
        assert_eq!(
            call.started_at(),
            None,
            "a waiting guest does not start the call"
        );

        let owner = joined(call.join(member(OWNER), "Owner", secs(60))).participant;
        let events = call.drain_events();
        assert!(events.contains(&CallEvent::LobbyOpened));
        if guests_need_approval {
            assert_eq!(
                call.lobby().next().unwrap().id,
                request,
                "now waiting for approval"
            );
            assert_eq!(
                waiting(call.join(guest("early"), "Early bird", secs(61))).1,
                WaitingFor::Approval
            );
        } else {
            // A no-approval link lets them in as soon as the host is there.
            let admissions = call.drain_admissions();
            assert_eq!(admissions.len(), 1);
            assert_eq!(admissions[0].0, request);
            assert!(events.contains(&CallEvent::Admitted {
                request,
                participant: admissions[0].1.participant,
                by: None
            }));
            assert_eq!(call.participants().count(), 2);
        }
        assert!(call.participant(owner).is_some());
    }
}

#[test]
fn with_a_host_present_guests_on_a_no_approval_link_join_directly() {
    let mut call = call(false, 32);
    joined(call.join(member(OWNER), "Owner", t0()));
    joined(call.join(guest("g"), "Guest", secs(1)));
}

#[test]
fn the_first_decision_wins_and_only_authenticated_participants_decide() {
    let mut call = call(true, 32);
    let owner = joined(call.join(member(OWNER), "Owner", t0())).participant;
    let colleague = joined(call.join(member(2), "Colleague", secs(1))).participant;
    let (request, why) = waiting(call.join(guest("g"), "Guest", secs(2)));
    assert_eq!(why, WaitingFor::Approval);
    call.drain_events();

    let seat = call
        .decide(colleague, request, Decision::Admit, secs(5))
        .unwrap()
        .unwrap();
    assert_eq!(
        call.decide(owner, request, Decision::Deny, secs(5)),
        Err(DecideError::NoSuchRequest)
    );
    assert_eq!(
        call.drain_events(),
        [CallEvent::Admitted {
            request,
            participant: seat.participant,
            by: Some(colleague)
        }]
    );

    let (other, _) = waiting(call.join(guest("h"), "Another", secs(6)));
    assert_eq!(
        call.decide(seat.participant, other, Decision::Admit, secs(7)),
        Err(DecideError::NotAllowed)
    );
    assert_eq!(
        call.decide(ParticipantId(999), other, Decision::Admit, secs(7)),
        Err(DecideError::NotOnCall)
    );
    assert_eq!(call.lobby().count(), 1, "refused decisions change nothing");
}

#[test]
fn a_guest_denied_twice_is_blocked_for_the_rest_of_the_call() {
    let mut call = call(true, 32);
    let owner = joined(call.join(member(OWNER), "Owner", t0())).participant;
    let (first, _) = waiting(call.join(guest("pest"), "Pest", secs(1)));
    call.decide(owner, first, Decision::Deny, secs(2)).unwrap();
    let (second, _) = waiting(call.join(guest("pest"), "Pest", secs(3)));
    assert_ne!(first, second);
    call.drain_events();
    call.decide(owner, second, Decision::Deny, secs(4)).unwrap();
    assert_eq!(
        call.drain_events(),
        [CallEvent::Denied {
            request: second,
            by: owner,
            blocked: true
        }]
    );
    assert_eq!(
        call.join(guest("pest"), "Pest", secs(5)).unwrap_err(),
        JoinError::Blocked
    );
    assert_eq!(call.lobby().count(), 0);
    waiting(call.join(guest("someone-else"), "Friend", secs(6)));
}

#[test]
fn asking_again_while_waiting_keeps_the_place() {
    let mut call = call(true, 32);
    joined(call.join(member(OWNER), "Owner", t0()));
    let (a, _) = waiting(call.join(guest("g"), "Guest", secs(1)));
    let (b, _) = waiting(call.join(guest("g"), "Guest", secs(2)));
    assert_eq!(a, b);
    assert_eq!(call.lobby().count(), 1);
    call.withdraw(a);
    assert_eq!(call.lobby().count(), 0);
    assert!(call.drain_events().contains(&CallEvent::RequestEnded {
        request: a,
        why: RequestEnd::Withdrawn
    }));
}

#[test]
fn anyone_authenticated_may_remove_a_guest_within_the_window() {
    let (mut call, _owner, guest_id) = call_with_guest(10);
    let colleague = joined(call.join(member(2), "Colleague", secs(11))).participant;
    // 30 s after the guest joined: still inside the window.
    call.remove(colleague, guest_id, secs(40)).unwrap();
    assert!(call.participant(guest_id).is_none());
    assert!(call.drain_events().contains(&CallEvent::Removed {
        participant: guest_id,
        by: colleague
    }));
}

#[test]
fn after_the_window_only_the_owner_may_remove_a_guest() {
    let (mut call, owner, guest_id) = call_with_guest(10);
    let colleague = joined(call.join(member(2), "Colleague", secs(11))).participant;
    assert_eq!(
        call.remove(colleague, guest_id, secs(41)),
        Err(RemoveError::WindowPassed { window_secs: 30 })
    );
    assert!(
        call.participant(guest_id).is_some(),
        "a refused removal changes nothing"
    );
    call.remove(owner, guest_id, secs(3600)).unwrap();
    assert!(call.participant(guest_id).is_none());
}

#[test]
fn guests_cannot_remove_and_members_cannot_be_removed() {
    let (mut call, owner, guest_id) = call_with_guest(0);
    let second = {
        let (request, _) = waiting(call.join(guest("g2"), "Second", secs(1)));
        call.decide(owner, request, Decision::Admit, secs(1))
            .unwrap()
            .unwrap()
            .participant
    };
    assert_eq!(
        call.remove(guest_id, second, secs(2)),
        Err(RemoveError::NotAllowed)
    );
    assert_eq!(
        call.remove(owner, owner, secs(2)),
        Err(RemoveError::NotAGuest)
    );
    assert_eq!(
        call.remove(owner, ParticipantId(99), secs(2)),
        Err(RemoveError::NoSuchParticipant)
    );
    assert_eq!(call.participants().count(), 3);
}

fn origin(connection: u64, device: &str, network: &str) -> Origin {
    Origin {
        connection: Some(connection),
        device: Some(device.into()),
        network: Some(network_of(network.parse().unwrap())),
    }
}

#[test]
fn a_removed_guest_stays_out_whatever_key_they_send() {
    let mut call = call(false, 32);
    let owner = joined(call.join(member(OWNER), "Owner", t0())).participant;
    let from = origin(7, "device-1", "198.51.100.7");
    let guest_id =
        joined(call.join_from(guest("g"), from.clone(), "Guest", false, secs(1))).participant;
    call.remove(owner, guest_id, secs(5)).unwrap();
    // The same key, the same connection with a new key, the same device with a new
    // key on a new connection: all refused.
    assert_eq!(
        call.may_ask(&guest("g"), &Origin::default()),
        Err(JoinError::Removed)
    );
    let same_connection = Origin {
        device: None,
        network: None,
        ..from.clone()
    };
    assert_eq!(
        call.join_from(guest("new-key"), same_connection, "Guest", false, secs(6))
            .unwrap_err(),
        JoinError::Removed
    );
    let same_device = Origin {
        connection: Some(8),
        network: None,
        ..from.clone()
    };
    assert_eq!(
        call.join_from(guest("newer-key"), same_device, "Guest", false, secs(7))
            .unwrap_err(),
        JoinError::Removed
    );
    // A new browser on the same network waits, flagged, though guests join directly.
    let (request, why) = waiting(call.join_from(
        guest("neighbour"),
        origin(9, "device-2", "198.51.100.7"),
        "Neighbour",
        false,
        secs(8),
    ));
    assert_eq!(why, WaitingFor::Approval);
    let flagged = call.lobby().find(|r| r.id == request).unwrap();
    assert_eq!(flagged.concerns, vec![Concern::SameNetworkAsRemoved]);
    // Admitted, they are on the call like anyone else.
    assert!(
        call.decide(owner, request, Decision::Admit, secs(9))
            .unwrap()
            .is_some()
    );
    // Someone new on another network joins directly.
    joined(call.join_from(
        guest("other"),
        origin(10, "device-3", "203.0.113.1"),
        "Other",
        false,
        secs(10),
    ));
}

#[test]
fn a_guest_denied_twice_with_new_keys_on_one_device_is_blocked() {
    let mut call = call(true, 32);
    let owner = joined(call.join(member(OWNER), "Owner", t0())).participant;
    for (n, key) in ["first-key", "second-key"].into_iter().enumerate() {
        let from = origin(20 + n as u64, "device-x", "2001:db8:1:2::5");
        let (request, _) = waiting(call.join_from(guest(key), from, "Pest", false, secs(1)));
        call.decide(owner, request, Decision::Deny, secs(2))
            .unwrap();
    }
    let fresh_key_same_device = origin(30, "device-x", "2001:db8:9::1");
    assert_eq!(
        call.join_from(
            guest("third-key"),
            fresh_key_same_device,
            "Pest",
            false,
            secs(3)
        )
        .unwrap_err(),
        JoinError::Blocked
    );
    // Another address in the same IPv6 /64 is flagged as the blocked guest's network.
    let (request, _) = waiting(call.join_from(
        guest("fourth-key"),
        Origin {
            network: Some(network_of("2001:db8:1:2::99".parse().unwrap())),
            ..Origin::default()
        },
        "Someone",
        false,
        secs(4),
    ));
    let r = call.lobby().find(|r| r.id == request).unwrap();
    assert_eq!(r.concerns, vec![Concern::SameNetworkAsBlocked]);
}

#[test]
fn the_lobby_holds_a_bounded_number_of_requests_per_call_and_per_network() {
    let mut call = call(true, 32);
    joined(call.join(member(OWNER), "Owner", t0()));
    let rules = CallRules::default();
    for n in 0..rules.max_waiting_per_network {
        waiting(call.join_from(
            guest(&format!("k{n}")),
            origin(n as u64, &format!("d{n}"), "192.0.2.1"),
            "G",
            false,
            secs(1),
        ));
    }
    assert_eq!(
        call.join_from(
            guest("one-more"),
            origin(99, "d99", "192.0.2.1"),
            "G",
            false,
            secs(1)
        )
        .unwrap_err(),
        JoinError::TooManyFromNetwork
    );
    for n in rules.max_waiting_per_network..rules.max_lobby_requests {
        let network = format!("10.0.{}.{}", n / 200, n % 200);
        waiting(call.join_from(
            guest(&format!("k{n}")),
            origin(n as u64, &format!("d{n}"), &network),
            "G",
            false,
            secs(2),
        ));
    }
    assert_eq!(call.lobby().count(), rules.max_lobby_requests);
    assert_eq!(
        call.join_from(
            guest("late"),
            origin(500, "d500", "172.16.0.1"),
            "G",
            false,
            secs(3)
        )
        .unwrap_err(),
        JoinError::LobbyFull
    );
    // Members are not strangers: they still get in line.
    call.join(member(9), "Member", secs(3)).unwrap();
}

#[test]
fn only_signed_in_people_suspend_the_guests_which_locks_the_lobby_until_they_resume() {
    let mut call = call(false, 32);
    let owner = joined(call.join(member(OWNER), "Owner", t0())).participant;
    let guest_on = joined(call.join(guest("on"), "On", secs(1))).participant;
    call.drain_events();
    assert_eq!(
        call.suspend_guests(guest_on, true),
        Err(DecideError::NotAllowed)
    );
    assert!(!call.guests_suspended());
    call.suspend_guests(owner, true).unwrap();
    assert!(call.guests_suspended() && call.lobby_locked());
    let events = call.drain_events();
    assert!(events.contains(&CallEvent::GuestsSuspended {
        suspended: true,
        by: owner
    }));
    assert!(events.contains(&CallEvent::LobbyLockChanged {
        locked: true,
        by: owner
    }));
    assert_eq!(
        call.join(guest("new"), "New", secs(3)).unwrap_err(),
        JoinError::LobbyLocked
    );
    // Twice is once.
    call.suspend_guests(owner, true).unwrap();
    assert!(call.drain_events().is_empty());
    call.suspend_guests(owner, false).unwrap();
    assert!(!call.guests_suspended() && !call.lobby_locked());
}

#[test]
fn a_locked_lobby_takes_no_new_requests_but_keeps_the_waiting_ones() {
    let mut call = call(false, 32);
    let owner = joined(call.join(member(OWNER), "Owner", t0())).participant;
    let guest_on = joined(call.join(guest("on"), "On", secs(1))).participant;
    assert_eq!(
        call.set_lobby_locked(guest_on, true),
        Err(DecideError::NotAllowed)
    );
    let (request, _) = waiting(call.join_with(guest("held"), "Held", true, secs(2)));
    call.set_lobby_locked(owner, true).unwrap();
    assert!(call.drain_events().contains(&CallEvent::LobbyLockChanged {
        locked: true,
        by: owner
    }));
    assert_eq!(
        call.join(guest("new"), "New", secs(3)).unwrap_err(),
        JoinError::LobbyLocked
    );
    // Asking again while waiting keeps the place; the request can still be admitted.
    waiting(call.join_with(guest("held"), "Held", true, secs(3)));
    assert!(
        call.decide(owner, request, Decision::Admit, secs(4))
            .unwrap()
            .is_some()
    );
    // The owner and members who join directly are not held back.
    joined(call.join(member(5), "Member", secs(5)));
    call.set_lobby_locked(owner, false).unwrap();
    joined(call.join(guest("new"), "New", secs(6)));
}

#[test]
fn closing_a_call_ends_it_and_every_request_at_once() {
    let mut call = call(true, 32);
    joined(call.join(member(OWNER), "Owner", t0()));
    let (request, _) = waiting(call.join(guest("g"), "Guest", secs(1)));
    call.drain_events();
    call.close(RequestEnd::LinkRevoked);
    assert!(call.is_ended());
    assert_eq!(call.participants().count(), 0);
    assert_eq!(
        call.drain_events(),
        vec![
            CallEvent::RequestEnded {
                request,
                why: RequestEnd::LinkRevoked
            },
            CallEvent::Closed,
            CallEvent::Ended,
        ]
    );
}

#[test]
fn ipv6_addresses_count_as_their_64_and_mapped_ipv4_as_ipv4() {
    assert_eq!(
        network_of("2001:db8:aa:bb:1:2:3:4".parse().unwrap()),
        "2001:db8:aa:bb::".parse::<IpAddr>().unwrap()
    );
    assert_eq!(
        network_of("::ffff:192.0.2.9".parse().unwrap()),
        "192.0.2.9".parse::<IpAddr>().unwrap()
    );
}

#[test]
fn a_full_call_says_so() {
    let mut call = call(true, 3);
    let owner = joined(call.join(member(OWNER), "Owner", t0())).participant;
    let mut guests = Vec::new();
    for key in ["a", "b"] {
        let (request, _) = waiting(call.join(guest(key), key, secs(1)));
        let seat = call
            .decide(owner, request, Decision::Admit, secs(2))
            .unwrap()
            .unwrap();
        guests.push(seat.participant);
    }
    // Asking to join a full call is answered at once, guest or member.
    assert_eq!(
        call.join(guest("c"), "Late", secs(3)).unwrap_err(),
        JoinError::Full
    );
    assert_eq!(
        call.join(member(7), "Member", secs(4)).unwrap_err(),
        JoinError::Full
    );
    assert_eq!(call.lobby().count(), 0);
    assert_eq!(call.participants().count(), 3);
    call.leave(guests[0]);
    joined(call.join(member(7), "Member", secs(5)));
    assert_eq!(call.participants().count(), 3);
}

#[test]
fn admitting_into_a_full_call_is_refused_and_the_request_keeps_waiting() {
    let mut call = call(true, 2);
    let owner = joined(call.join(member(OWNER), "Owner", t0())).participant;
    let (first, _) = waiting(call.join(guest("x"), "X", secs(1)));
    let (second, _) = waiting(call.join(guest("y"), "Y", secs(1)));
    call.decide(owner, first, Decision::Admit, secs(2)).unwrap();
    assert_eq!(
        call.decide(owner, second, Decision::Admit, secs(3)),
        Err(DecideError::Full)
    );
    assert_eq!(call.lobby().count(), 1);
}

#[test]
fn the_participant_limit_never_exceeds_32() {
    let mut call = Call::new(
        OWNER,
        CallPolicy {
            guests_need_approval: false,
            members_need_approval: false,
            max_participants: 200,
        },
        CallRules::default(),
    );
    joined(call.join(member(OWNER), "Owner", t0()));
    for n in 0..31 {
        joined(call.join(guest(&format!("g{n}")), "Guest", secs(1)));
    }
    assert_eq!(
        call.join(guest("33rd"), "One too many", secs(2))
            .unwrap_err(),
        JoinError::Full
    );
}

#[test]
fn lobby_requests_time_out() {
    let mut call = call(true, 32);
    joined(call.join(member(OWNER), "Owner", t0()));
    let (request, _) = waiting(call.join(guest("g"), "Guest", t0()));
    call.drain_events();
    assert_eq!(call.next_deadline(), Some(t0() + Duration::minutes(10)));
    call.tick(t0() + Duration::minutes(10) - Duration::seconds(1));
    assert_eq!(call.lobby().count(), 1);
    call.tick(t0() + Duration::minutes(10));
    assert_eq!(call.lobby().count(), 0);
    assert_eq!(
        call.drain_events(),
        [CallEvent::RequestEnded {
            request,
            why: RequestEnd::TimedOut
        }]
    );
    assert_eq!(call.next_deadline(), None);
}

#[test]
fn a_dropped_participant_resumes_within_the_grace_period() {
    let mut call = call(true, 32);
    let seat = joined(call.join(member(OWNER), "Owner", t0()));
    joined(call.join(member(2), "Colleague", t0()));
    call.connection_dropped(seat.participant, secs(10));
    assert_eq!(
        call.participant(seat.participant).unwrap().connection,
        Connection::Dropped { since: secs(10) }
    );
    call.tick(secs(30));
    assert_eq!(
        call.resume(&seat.resume_token, secs(30)),
        Ok(seat.participant),
        "same place, no lobby"
    );
    assert_eq!(
        call.participant(seat.participant).unwrap().connection,
        Connection::Connected
    );
    assert_eq!(
        call.resume("not-a-token", secs(30)),
        Err(ResumeError::Expired)
    );

    call.connection_dropped(seat.participant, secs(100));
    call.tick(secs(131));
    assert!(call.participant(seat.participant).is_none());
    assert!(call.drain_events().contains(&CallEvent::Left {
        participant: seat.participant,
        why: LeaveReason::ConnectionLost
    }));
    assert_eq!(
        call.resume(&seat.resume_token, secs(131)),
        Err(ResumeError::Expired),
        "told plainly to rejoin"
    );
}

#[test]
fn the_call_ends_when_the_last_participant_is_gone() {
    let (mut call, owner, guest_id) = call_with_guest(0);
    call.leave(owner);
    assert!(!call.is_ended(), "the guest is still on the call");
    assert!(!call.host_present());
    let (request, why) = waiting(call.join(guest("late"), "Late", secs(5)));
    assert_eq!(why, WaitingFor::Host, "with no host, newcomers wait");
    call.drain_events();
    call.leave(guest_id);
    assert!(call.is_ended());
    assert_eq!(
        call.drain_events(),
        [
            CallEvent::Left {
                participant: guest_id,
                why: LeaveReason::Left
            },
            CallEvent::RequestEnded {
                request,
                why: RequestEnd::CallEnded
            },
            CallEvent::Ended,
        ]
    );
}

#[test]
fn everyone_disconnected_past_the_grace_period_ends_the_call() {
    let mut call = call(true, 32);
    let a = joined(call.join(member(OWNER), "Owner", t0())).participant;
    let b = joined(call.join(member(2), "Colleague", t0())).participant;
    call.connection_dropped(a, secs(1));
    call.connection_dropped(b, secs(2));
    call.tick(secs(31));
    assert!(!call.is_ended());
    call.tick(secs(33));
    assert!(call.is_ended());
}

#[test]
fn members_wait_for_approval_when_the_link_says_so() {
    let mut call = Call::new(
        OWNER,
        CallPolicy {
            guests_need_approval: true,
            members_need_approval: true,
            max_participants: 32,
        },
        CallRules::default(),
    );
    assert_eq!(
        waiting(call.join(member(2), "Colleague", t0())).1,
        WaitingFor::Host
    );
    let owner = joined(call.join(member(OWNER), "Owner", secs(1))).participant;
    let request = call.lobby().next().unwrap().id;
    call.decide(owner, request, Decision::Admit, secs(2))
        .unwrap()
        .unwrap();
    assert_eq!(call.participants().count(), 2);
}

#[test]
fn a_flagged_guest_waits_in_the_lobby_even_where_guests_join_directly() {
    let mut call = call(false, 32);
    joined(call.join(member(OWNER), "Owner", t0()));
    joined(call.join(guest("plain"), "Plain", secs(1)));
    let (request, waiting_for) =
        waiting(call.join_with(guest("flagged"), "Flagged", true, secs(2)));
    assert_eq!(waiting_for, WaitingFor::Approval);
    assert!(call.lobby().any(|r| r.id == request && r.name == "Flagged"));
    // Members are never held back by a flag on their own request.
    joined(call.join_with(member(7), "Member", true, secs(3)));
}

#[test]
fn may_ask_refuses_blocked_guests_and_full_calls_before_any_screening() {
    let mut call = call(true, 2);
    let owner = joined(call.join(member(OWNER), "Owner", t0())).participant;
    assert_eq!(call.may_ask(&guest("g"), &Origin::default()), Ok(()));
    for n in 0..2 {
        let (request, _) = waiting(call.join(guest("g"), "Guest", secs(n)));
        call.decide(owner, request, Decision::Deny, secs(n))
            .unwrap();
    }
    assert_eq!(
        call.may_ask(&guest("g"), &Origin::default()),
        Err(JoinError::Blocked)
    );
    joined(call.join(member(2), "Second", secs(5)));
    assert_eq!(
        call.may_ask(&guest("other"), &Origin::default()),
        Err(JoinError::Full)
    );
}
