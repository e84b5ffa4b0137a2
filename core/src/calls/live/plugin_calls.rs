//! The call and its plugins: screening lobby requests, call messages for a
//! plugin, a plugin's requests, and the events plugins are told.

use std::net::IpAddr;

use crate::calls::{
    CallEvent, DecideError, Decision, Identity, Origin, ParticipantId, RemoveError, RequestId,
};
use crate::plugins::{
    self, CallerOrigin, MemberRole, OriginOf, PluginCallAction, PluginCallAnswer, PluginCallError,
    RosterMember,
};
use crate::protocol::ServerMessage;

use super::command::ClientId;
use super::effects::Effect;
use super::task::{CallTask, Role};

impl CallTask {
    /// Asks the plugins that screen lobby requests about a guest's request, off the
    /// call's task; their verdict comes back as [`Action::Screened`]. The plugins
    /// answer within their deadlines, so the guest waits at most that long.
    pub(super) fn screen(
        &mut self,
        client: ClientId,
        identity: Identity,
        origin: Origin,
        name: String,
        address: Option<IpAddr>,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let request = plugins::LobbyInfo {
            call: self.call_info(),
            request: 0,
            name: name.clone(),
            address: address.map(|a| a.to_string()),
            asked_at: now,
            origin: CallerOrigin {
                device: origin.device.clone(),
                network: origin.network,
            },
        };
        self.effects.push(Effect::Screen {
            client,
            request,
            identity,
            origin,
            name,
        });
    }

    pub(super) fn call_info(&self) -> plugins::CallInfo {
        plugins::CallInfo {
            link: self.link_id.clone(),
            id: self.call_id.clone(),
            started_at: self
                .call
                .started_at()
                .unwrap_or_else(|| self.deps.clock.now()),
        }
    }

    pub(super) fn plugin_action(
        &mut self,
        action: PluginCallAction,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<PluginCallAnswer, PluginCallError> {
        match action {
            PluginCallAction::Roster => Ok(PluginCallAnswer::Roster(
                self.call
                    .participants()
                    .map(|p| RosterMember {
                        id: p.id.0,
                        name: p.name.clone(),
                        user: p.identity.user_id(),
                        joined_at: p.joined_at,
                    })
                    .collect(),
            )),
            PluginCallAction::Activity { plugin } => {
                let members = self
                    .activities
                    .members(&plugin)
                    .into_iter()
                    .map(|(p, host)| {
                        let guest = super::activities::is_guest_of(&self.call, p);
                        let role = match (host, guest) {
                            (true, _) => MemberRole::Host,
                            (false, true) => MemberRole::Guest,
                            (false, false) => MemberRole::Member,
                        };
                        (p.0, role)
                    })
                    .collect();
                Ok(PluginCallAnswer::Activity(members))
            }
            PluginCallAction::Send {
                plugin,
                to,
                payload,
            } => {
                use base64::Engine as _;
                let message = ServerMessage::Plugin {
                    plugin,
                    payload: base64::engine::general_purpose::STANDARD.encode(payload),
                };
                match to {
                    Some(id) => {
                        let client = self
                            .client_with(Role::On(ParticipantId(id)))
                            .ok_or(PluginCallError::NoSuchParticipant)?;
                        self.tell(client, message);
                    }
                    None => {
                        self.tell_everyone_on_call(&message);
                    }
                }
                Ok(PluginCallAnswer::Done)
            }
            PluginCallAction::Remove {
                as_user,
                participant,
            } => {
                let me = self.member_on_call(as_user, "remove anyone")?;
                self.call
                    .remove(me, ParticipantId(participant), now)
                    .map_err(|e| match e {
                        RemoveError::NoSuchParticipant => PluginCallError::NoSuchParticipant,
                        other => PluginCallError::NotAllowed(other.to_string()),
                    })?;
                Ok(PluginCallAnswer::Done)
            }
            PluginCallAction::Origin(of) => {
                let (identity, origin) = match of {
                    OriginOf::Participant(id) => self
                        .call
                        .participant(ParticipantId(id))
                        .map(|p| (&p.identity, &p.origin))
                        .ok_or(PluginCallError::NoSuchParticipant)?,
                    OriginOf::Request(id) => self
                        .call
                        .lobby()
                        .find(|r| r.id == RequestId(id))
                        .map(|r| (&r.identity, &r.origin))
                        .ok_or(PluginCallError::NoSuchRequest)?,
                };
                Ok(PluginCallAnswer::Origin(CallerOrigin {
                    // A signed-in person is their account, whatever guest cookie
                    // their browser kept from an earlier visit.
                    device: (!identity.is_authenticated())
                        .then(|| origin.device.clone())
                        .flatten(),
                    network: origin.network,
                }))
            }
            PluginCallAction::Deny { as_user, request } => {
                let me = self.member_on_call(as_user, "deny anyone")?;
                self.call
                    .decide(me, RequestId(request), Decision::Deny, now)
                    .map_err(|e| match e {
                        DecideError::NoSuchRequest => PluginCallError::NoSuchRequest,
                        other => PluginCallError::NotAllowed(other.to_string()),
                    })?;
                Ok(PluginCallAnswer::Done)
            }
            PluginCallAction::LockLobby { as_user, locked } => {
                let me = self.member_on_call(as_user, "lock the lobby")?;
                self.call
                    .set_lobby_locked(me, locked)
                    .map_err(|e| PluginCallError::NotAllowed(e.to_string()))?;
                Ok(PluginCallAnswer::Done)
            }
            PluginCallAction::SuspendGuests { as_user, suspended } => {
                let me = self.member_on_call(as_user, "suspend the guests")?;
                self.call
                    .suspend_guests(me, suspended)
                    .map_err(|e| PluginCallError::NotAllowed(e.to_string()))?;
                Ok(PluginCallAnswer::Done)
            }
        }
    }

    /// The participant of signed-in user `as_user`, whom a plugin acts as.
    fn member_on_call(&self, as_user: i64, to: &str) -> Result<ParticipantId, PluginCallError> {
        self.call
            .participants()
            .find(|p| p.identity == Identity::Member { user_id: as_user })
            .map(|p| p.id)
            .ok_or_else(|| {
                PluginCallError::NotAllowed(format!("the user is not on this call, so cannot {to}"))
            })
    }

    /// Tells plugins what happened on the call.
    pub(super) fn tell_plugins(&mut self, event: &CallEvent) {
        let call = self.call_info();
        let plugin_event = match *event {
            CallEvent::Started => plugins::Event::CallStarted(call),
            CallEvent::Ended => plugins::Event::CallEnded(call),
            // Straight in, or admitted from the lobby: either way the person joined.
            CallEvent::Joined { participant } | CallEvent::Admitted { participant, .. } => {
                let Some(p) = self.call.participant(participant) else {
                    return;
                };
                let info = plugins::ParticipantInfo {
                    id: p.id.0,
                    name: p.name.clone(),
                    user: p.identity.user_id(),
                    joined_at: p.joined_at,
                };
                self.plugin_people.insert(participant, info.clone());
                plugins::Event::ParticipantJoined(call, info)
            }
            CallEvent::Left { participant, .. } => {
                let Some(info) = self.plugin_people.remove(&participant) else {
                    return;
                };
                plugins::Event::ParticipantLeft(call, info)
            }
            CallEvent::Removed { participant, by } => {
                let Some(info) = self.plugin_people.remove(&participant) else {
                    return;
                };
                plugins::Event::ParticipantRemoved {
                    call,
                    participant: info,
                    by: by.0,
                }
            }
            CallEvent::LobbyRequested { request } => {
                let Some(r) = self.call.lobby().find(|r| r.id == request) else {
                    return;
                };
                plugins::Event::LobbyRequest(plugins::LobbyInfo {
                    call,
                    request: request.0,
                    name: r.name.clone(),
                    address: None,
                    asked_at: r.asked_at,
                    origin: CallerOrigin::default(),
                })
            }
            _ => return,
        };
        self.effects.push(Effect::Emit(plugin_event));
    }
}
