use super::*;

fn t0() -> DateTime<Utc> {
    "2026-12-05T12:00:00Z".parse().unwrap()
}

fn p(n: u32) -> ParticipantId {
    ParticipantId(n)
}

/// Participant 3 is the only guest.
fn is_guest(p: ParticipantId) -> bool {
    p.0 == 3
}

const PLUGIN: &str = "watch-together";

fn messages_for(out: &[Delivery], who: ParticipantId) -> Vec<ServerMessage> {
    out.iter()
        .filter(|d| match &d.to {
            Recipients::Everyone => true,
            Recipients::One(one) => *one == who,
            Recipients::Some(list) => list.contains(&who),
        })
        .map(|d| d.message.clone())
        .collect()
}

fn snapshot_of(out: &[Delivery], who: ParticipantId) -> (u64, Option<String>, bool) {
    messages_for(out, who)
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::ActivitySnapshot {
                seq,
                payload,
                complete,
                ..
            } => Some((seq, payload, complete)),
            _ => None,
        })
        .expect("a snapshot")
}

fn updates_for(out: &[Delivery], who: ParticipantId) -> Vec<u64> {
    messages_for(out, who)
        .into_iter()
        .filter_map(|m| match m {
            ServerMessage::ActivityUpdate { seq, .. } => Some(seq),
            _ => None,
        })
        .collect()
}

fn one_activity(rules: ActivityRules) -> Activities {
    let mut a = Activities::new(rules);
    a.join(PLUGIN, p(1), t0(), &is_guest);
    a
}

#[test]
fn the_first_member_hosts_and_starts_from_an_empty_state() {
    let mut a = Activities::new(ActivityRules::default());
    let out = a.join(PLUGIN, p(1), t0(), &is_guest);
    assert_eq!(snapshot_of(&out, p(1)), (0, None, true));
    let presence = messages_for(&out, p(2));
    assert_eq!(
        presence,
        vec![ServerMessage::Activity {
            plugin: PLUGIN.into(),
            host: Some(1),
            members: vec![ActivityMember {
                participant: 1,
                role: ActivityRole::Host
            }],
        }],
        "everyone on the call hears of it, members or not"
    );
    let out = a.join(PLUGIN, p(3), t0(), &is_guest);
    let roles: Vec<ActivityRole> = messages_for(&out, p(2))
        .into_iter()
        .find_map(|m| match m {
            ServerMessage::Activity { members, .. } => {
                Some(members.iter().map(|m| m.role).collect())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(roles, vec![ActivityRole::Host, ActivityRole::Guest]);
}

#[test]
fn updates_are_numbered_in_order_and_sent_to_every_member_the_sender_included() {
    let mut a = one_activity(ActivityRules::default());
    a.join(PLUGIN, p(2), t0(), &is_guest);
    let first = a.update(PLUGIN, p(2), "AAAA".into()).unwrap();
    let second = a.update(PLUGIN, p(1), "BBBB".into()).unwrap();
    assert_eq!(updates_for(&first, p(1)), vec![1]);
    assert_eq!(updates_for(&first, p(2)), vec![1]);
    assert_eq!(updates_for(&second, p(2)), vec![2]);
    assert!(
        updates_for(&second, p(5)).is_empty(),
        "not to those outside it"
    );
}

#[test]
fn a_newcomer_gets_the_earliest_members_snapshot_and_the_updates_it_missed() {
    let mut a = one_activity(ActivityRules::default());
    a.update(PLUGIN, p(1), "u1".into()).unwrap();
    a.update(PLUGIN, p(1), "u2".into()).unwrap();
    a.join(PLUGIN, p(2), t0(), &is_guest);
    let out = a.join(PLUGIN, p(4), t0(), &is_guest);
    assert!(
        messages_for(&out, p(1)).contains(&ServerMessage::ActivitySnapshotRequest {
            plugin: PLUGIN.into(),
            newcomer: 4
        }),
        "the earliest member is asked"
    );
    // Member 1's page had applied update 1 only when it answered.
    let out = a
        .snapshot(PLUGIN, p(1), Some(p(4)), 1, "state@1".into())
        .unwrap();
    assert_eq!(snapshot_of(&out, p(4)), (1, Some("state@1".into()), true));
    assert_eq!(updates_for(&out, p(4)), vec![2], "update 2 from the log");
    // Answered once: a second answer is refused.
    let again = a.snapshot(PLUGIN, p(1), Some(p(4)), 2, "x".into());
    assert_eq!(again.unwrap_err().code, ErrorCode::NoSuchParticipant);
}

#[test]
fn without_an_answer_in_time_the_newcomer_gets_the_servers_copy() {
    let mut a = one_activity(ActivityRules::default());
    a.update(PLUGIN, p(1), "u1".into()).unwrap();
    a.snapshot(PLUGIN, p(1), None, 1, "state@1".into()).unwrap();
    a.update(PLUGIN, p(1), "u2".into()).unwrap();
    a.join(PLUGIN, p(2), t0(), &is_guest);
    assert_eq!(a.next_deadline(), Some(t0() + Duration::seconds(1)));
    assert!(
        a.tick(t0() + Duration::milliseconds(999)).is_empty(),
        "not before the wait is over"
    );
    let out = a.tick(t0() + Duration::seconds(1));
    assert_eq!(snapshot_of(&out, p(2)), (1, Some("state@1".into()), true));
    assert_eq!(updates_for(&out, p(2)), vec![2]);
    assert_eq!(a.next_deadline(), None);
    // The late answer finds nobody waiting.
    assert!(
        a.snapshot(PLUGIN, p(1), Some(p(2)), 2, "late".into())
            .is_err()
    );
}

#[test]
fn a_log_that_overflowed_says_the_copy_is_incomplete() {
    let rules = ActivityRules {
        log_entries: 3,
        ..ActivityRules::default()
    };
    let mut a = one_activity(rules);
    for n in 0..5 {
        a.update(PLUGIN, p(1), format!("u{n}")).unwrap();
    }
    a.join(PLUGIN, p(2), t0(), &is_guest);
    let out = a.tick(t0() + Duration::seconds(2));
    assert_eq!(snapshot_of(&out, p(2)), (0, None, false));
    assert!(
        messages_for(&out, p(2))
            .iter()
            .any(|m| matches!(m, ServerMessage::ActivitySnapshot { next: 3, .. })),
        "the page goes on from the first update the server still had"
    );
    assert_eq!(updates_for(&out, p(2)), vec![3, 4, 5]);
    // A stored snapshot makes the log short again.
    a.snapshot(PLUGIN, p(1), None, 5, "state@5".into()).unwrap();
    a.join(PLUGIN, p(4), t0(), &is_guest);
    let out = a.tick(t0() + Duration::seconds(2));
    assert_eq!(snapshot_of(&out, p(4)), (5, Some("state@5".into()), true));
}

#[test]
fn the_log_is_bounded_in_bytes_too() {
    let rules = ActivityRules {
        log_bytes: 10,
        ..ActivityRules::default()
    };
    let mut a = one_activity(rules);
    for _ in 0..4 {
        a.update(PLUGIN, p(1), "abcd".into()).unwrap();
    }
    a.join(PLUGIN, p(2), t0(), &is_guest);
    let out = a.tick(t0() + Duration::seconds(2));
    assert_eq!(updates_for(&out, p(2)), vec![3, 4]);
}

#[test]
fn only_members_send_update_or_answer_and_only_to_members() {
    let mut a = one_activity(ActivityRules::default());
    assert_eq!(
        a.update(PLUGIN, p(2), "x".into()).unwrap_err().code,
        ErrorCode::NotInActivity
    );
    assert_eq!(
        a.send(PLUGIN, p(2), None, "x".into()).unwrap_err().code,
        ErrorCode::NotInActivity
    );
    assert_eq!(
        a.send("other", p(1), None, "x".into()).unwrap_err().code,
        ErrorCode::NotInActivity
    );
    assert_eq!(
        a.send(PLUGIN, p(1), Some(vec![p(2)]), "x".into())
            .unwrap_err()
            .code,
        ErrorCode::NoSuchParticipant
    );
    assert_eq!(
        a.snapshot(PLUGIN, p(1), None, 7, "x".into())
            .unwrap_err()
            .code,
        ErrorCode::BadMessage,
        "a snapshot of an update that never was"
    );
    a.join(PLUGIN, p(2), t0(), &is_guest);
    a.join(PLUGIN, p(4), t0(), &is_guest);
    let out = a.send(PLUGIN, p(1), Some(vec![p(4)]), "hi".into()).unwrap();
    assert_eq!(messages_for(&out, p(4)).len(), 1);
    assert!(messages_for(&out, p(2)).is_empty());
    let out = a.send(PLUGIN, p(1), None, "all".into()).unwrap();
    assert_eq!(messages_for(&out, p(2)).len(), 1);
    assert!(
        messages_for(&out, p(1)).is_empty(),
        "not back to the sender"
    );
}

#[test]
fn the_host_passes_to_the_earliest_member_and_the_last_to_leave_ends_it() {
    let mut a = one_activity(ActivityRules::default());
    a.join(PLUGIN, p(2), t0(), &is_guest);
    a.update(PLUGIN, p(1), "u1".into()).unwrap();
    let out = a.leave(PLUGIN, p(1), t0(), &is_guest).unwrap();
    assert!(matches!(
        &messages_for(&out, p(9))[..],
        [ServerMessage::Activity { host: Some(2), .. }]
    ));
    let out = a.left_call(p(2), t0(), &is_guest);
    assert!(matches!(
        &messages_for(&out, p(9))[..],
        [ServerMessage::Activity { host: None, members, .. }] if members.is_empty()
    ));
    assert!(a.presences(&is_guest).is_empty());
    // Started again, it starts from nothing.
    let out = a.join(PLUGIN, p(4), t0(), &is_guest);
    assert_eq!(snapshot_of(&out, p(4)), (0, None, true));
}

#[test]
fn when_the_asked_member_leaves_the_next_one_is_asked() {
    let mut a = one_activity(ActivityRules::default());
    a.join(PLUGIN, p(2), t0(), &is_guest);
    a.snapshot(PLUGIN, p(1), Some(p(2)), 0, "s".into()).unwrap();
    a.join(PLUGIN, p(4), t0(), &is_guest);
    let out = a.leave(PLUGIN, p(1), t0(), &is_guest).unwrap();
    assert!(
        messages_for(&out, p(2)).contains(&ServerMessage::ActivitySnapshotRequest {
            plugin: PLUGIN.into(),
            newcomer: 4
        })
    );
    let out = a
        .snapshot(PLUGIN, p(2), Some(p(4)), 0, "s2".into())
        .unwrap();
    assert_eq!(snapshot_of(&out, p(4)), (0, Some("s2".into()), true));
}
