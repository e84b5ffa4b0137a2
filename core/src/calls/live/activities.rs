//! The call and its shared activities: `activity_*` messages checked against who
//! sends them, carried out by the call's [`Activities`], and their deliveries
//! turned into messages for connections.

use crate::calls::activity::{Delivery, Recipients};
use crate::calls::{Call, ParticipantId};
use crate::protocol::{ErrorCode, ServerMessage, error};

use super::command::{ActivityRequest, ClientId};
use super::task::{CallTask, Role};

type Now = chrono::DateTime<chrono::Utc>;

/// Whether participant `p` of `call` is a web guest (their role in an activity).
pub(super) fn is_guest_of(call: &Call, p: ParticipantId) -> bool {
    call.participant(p)
        .is_some_and(|p| !p.identity.is_authenticated())
}

impl CallTask {
    /// An `activity_*` message from `client`.
    pub(super) fn activity(
        &mut self,
        client: ClientId,
        role: Role,
        plugin: String,
        request: ActivityRequest,
        now: Now,
    ) {
        let Some(me) = self.on_call(client, role) else {
            return;
        };
        if !self.deps.host.runs_activities(&plugin) {
            return self.tell(
                client,
                error(
                    ErrorCode::PluginUnavailable,
                    format!("{plugin} is not a plugin with activities here"),
                ),
            );
        }
        let call = &self.call;
        let is_guest = |p| is_guest_of(call, p);
        let activities = &mut self.activities;
        let result = match request {
            ActivityRequest::Join => Ok(activities.join(&plugin, me, now, &is_guest)),
            ActivityRequest::Leave => activities.leave(&plugin, me, now, &is_guest),
            ActivityRequest::Send { to, payload } => activities.send(&plugin, me, to, payload),
            ActivityRequest::Update { payload } => activities.update(&plugin, me, payload),
            ActivityRequest::Snapshot {
                newcomer,
                seq,
                payload,
            } => activities.snapshot(&plugin, me, newcomer, seq, payload),
        };
        match result {
            Ok(deliveries) => self.deliver_activity(deliveries),
            Err(refusal) => self.tell(client, error(refusal.code, refusal.message)),
        }
    }

    /// `participant` is on the call (joined, admitted or back): what activities run.
    pub(super) fn activities_for_newcomer(&mut self, participant: ParticipantId) {
        let Some(client) = self.client_with(Role::On(participant)) else {
            return;
        };
        let call = &self.call;
        let is_guest = |p| is_guest_of(call, p);
        for message in self.activities.presences(&is_guest) {
            self.tell(client, message);
        }
    }

    /// `participant` left the call: out of every activity.
    pub(super) fn activities_left(&mut self, participant: ParticipantId, now: Now) {
        let call = &self.call;
        let is_guest = |p| is_guest_of(call, p);
        let deliveries = self.activities.left_call(participant, now, &is_guest);
        self.deliver_activity(deliveries);
    }

    /// Time passed: newcomers nobody answered get the server's copy.
    pub(super) fn activities_tick(&mut self, now: Now) {
        let deliveries = self.activities.tick(now);
        self.deliver_activity(deliveries);
    }

    fn deliver_activity(&mut self, deliveries: Vec<Delivery>) {
        for Delivery { to, message } in deliveries {
            match to {
                Recipients::Everyone => self.tell_everyone_on_call(&message),
                Recipients::One(p) => self.tell_participant(p, message),
                Recipients::Some(list) => {
                    for p in list {
                        self.tell_participant(p, message.clone());
                    }
                }
            }
        }
    }

    /// A message for `participant`'s connection, if they are connected.
    fn tell_participant(&mut self, participant: ParticipantId, message: ServerMessage) {
        if let Some(client) = self.client_with(Role::On(participant)) {
            self.tell(client, message);
        }
    }
}
