//! What plugins are told: call events, and the call, participant and lobby
//! request they are about.

use chrono::{DateTime, Utc};

use super::PluginDeps;
use crate::store::link;

use super::*;

/// Something that happened, for the plugins that listen to it.
#[derive(Debug, Clone)]
pub enum Event {
    LinkCreated(link::Model),
    LinkUpdated(link::Model),
    LinkRevoked(link::Model),
    CallStarted(CallInfo),
    CallEnded(CallInfo),
    ParticipantJoined(CallInfo, ParticipantInfo),
    ParticipantLeft(CallInfo, ParticipantInfo),
    ParticipantRemoved {
        call: CallInfo,
        participant: ParticipantInfo,
        by: u32,
    },
    LobbyRequest(LobbyInfo),
}

/// One run of a link, as plugins see it.
#[derive(Debug, Clone)]
pub struct CallInfo {
    pub link: String,
    pub id: String,
    pub started_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct ParticipantInfo {
    pub id: u32,
    pub name: String,
    pub user: Option<i64>,
    pub joined_at: DateTime<Utc>,
}

/// Someone asking to join.
#[derive(Debug, Clone)]
pub struct LobbyInfo {
    pub call: CallInfo,
    /// 0 while the request is being screened (it has no number yet).
    pub request: u32,
    pub name: String,
    pub address: Option<String>,
    pub asked_at: DateTime<Utc>,
    /// Where the guest came from, for `moderation.screened-origin` while the
    /// request is screened (events carry none).
    pub origin: super::CallerOrigin,
}

impl Event {
    pub(super) fn kind(&self) -> manifest::EventKind {
        use manifest::EventKind as K;
        match self {
            Event::LinkCreated(_) => K::LinkCreated,
            Event::LinkUpdated(_) => K::LinkUpdated,
            Event::LinkRevoked(_) => K::LinkRevoked,
            Event::CallStarted(_) => K::CallStarted,
            Event::CallEnded(_) => K::CallEnded,
            Event::ParticipantJoined(..) => K::ParticipantJoined,
            Event::ParticipantLeft(..) => K::ParticipantLeft,
            Event::ParticipantRemoved { .. } => K::ParticipantRemoved,
            Event::LobbyRequest(_) => K::LobbyRequest,
        }
    }

    /// The user behind the event, whom a plugin may act for while handling it.
    pub(super) fn actor(&self) -> Option<i64> {
        match self {
            Event::LinkCreated(l) | Event::LinkUpdated(l) | Event::LinkRevoked(l) => {
                Some(l.owner_id)
            }
            _ => None,
        }
    }

    pub(super) fn to_wit(&self) -> wit_hooks::Event {
        match self {
            Event::LinkCreated(l) => wit_hooks::Event::LinkCreated(link_record(l)),
            Event::LinkUpdated(l) => wit_hooks::Event::LinkUpdated(link_record(l)),
            Event::LinkRevoked(l) => wit_hooks::Event::LinkRevoked(link_record(l)),
            Event::CallStarted(c) => wit_hooks::Event::CallStarted(c.to_wit()),
            Event::CallEnded(c) => wit_hooks::Event::CallEnded(c.to_wit()),
            Event::ParticipantJoined(c, p) => {
                wit_hooks::Event::ParticipantJoined(wit_hooks::ParticipantEvent {
                    call: c.to_wit(),
                    participant: p.to_wit(),
                })
            }
            Event::ParticipantLeft(c, p) => {
                wit_hooks::Event::ParticipantLeft(wit_hooks::ParticipantEvent {
                    call: c.to_wit(),
                    participant: p.to_wit(),
                })
            }
            Event::ParticipantRemoved {
                call,
                participant,
                by,
            } => wit_hooks::Event::ParticipantRemoved(wit_hooks::Removal {
                call: call.to_wit(),
                participant: participant.to_wit(),
                by: *by,
            }),
            Event::LobbyRequest(r) => wit_hooks::Event::LobbyRequest(r.to_wit()),
        }
    }
}

impl CallInfo {
    pub(super) fn to_wit(&self) -> wit::Call {
        wit::Call {
            link: self.link.clone(),
            id: self.id.clone(),
            started_at: self.started_at.timestamp_millis(),
        }
    }
}

impl ParticipantInfo {
    pub(super) fn to_wit(&self) -> wit::Participant {
        wit::Participant {
            id: self.id,
            name: self.name.clone(),
            user: self.user,
            joined_at: self.joined_at.timestamp_millis(),
        }
    }
}

impl LobbyInfo {
    pub(super) fn to_wit(&self) -> wit::LobbyRequest {
        wit::LobbyRequest {
            call: self.call.to_wit(),
            request: self.request,
            name: self.name.clone(),
            address: self.address.clone(),
            asked_at: self.asked_at.timestamp_millis(),
        }
    }
}

/// Tells the plugins that listen. Never waits: each plugin has its own queue and
/// handles its events in order.
pub fn emit(deps: &PluginDeps, event: Event) {
    deps.plugins.emit(deps, event);
}
