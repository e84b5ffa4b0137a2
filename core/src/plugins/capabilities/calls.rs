//! `calls`: the roster of a live call, messages on the plugin's channel to the
//! people on it, and removing a participant as a signed-in user would.

use std::sync::Arc;

use super::{ActingUser, Grants, unavailable};
use crate::links::{self, PublicLink};
use crate::plugins::bindings::confab::plugin::calls::{ActivityMember, ActivityRole, Host};
use crate::plugins::bindings::confab::plugin::types::{Error, Participant};
use crate::plugins::deps::{LiveCalls, PluginDeps};
use crate::plugins::manifest::Capability;
use crate::plugins::runtime::HostState;
use crate::store::Store;

/// What a plugin can ask of a live call (the `calls` capability); the call task
/// (`calls::live`) carries it out.
#[derive(Debug, Clone)]
pub enum PluginCallAction {
    Roster,
    /// Who is in `plugin`'s shared activity.
    Activity {
        plugin: String,
    },
    /// Send `payload` on the plugin's channel to one participant or everyone.
    Send {
        plugin: String,
        to: Option<u32>,
        payload: Vec<u8>,
    },
    /// Remove a participant as the signed-in user `as_user`, who must be on the call.
    Remove {
        as_user: i64,
        participant: u32,
    },
    /// Where a participant or a waiting request came from (`moderation`).
    Origin(OriginOf),
    /// Deny a waiting request as `as_user`, who must be on the call (`moderation`).
    Deny {
        as_user: i64,
        request: u32,
    },
    /// Lock or unlock the lobby as `as_user`, who must be on the call (`moderation`).
    LockLobby {
        as_user: i64,
        locked: bool,
    },
    /// Suspend or resume every guest as `as_user`, who must be on the call
    /// (`moderation`).
    SuspendGuests {
        as_user: i64,
        suspended: bool,
    },
}

/// What a member is in a shared activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberRole {
    Host,
    Member,
    Guest,
}

/// Whose origin a plugin asks for.
#[derive(Debug, Clone, Copy)]
pub enum OriginOf {
    Participant(u32),
    Request(u32),
}

/// What the call answers a plugin's request with.
#[derive(Debug, Clone)]
pub enum PluginCallAnswer {
    Done,
    Roster(Vec<RosterMember>),
    /// The members of an activity, in the order they joined.
    Activity(Vec<(u32, MemberRole)>),
    Origin(CallerOrigin),
}

/// Where a caller came from, as the call knows it: the device id of their guest
/// cookie and their network (an IPv4 address, or the start of an IPv6 /64). The
/// `moderation` capability hashes the device before a plugin sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerOrigin {
    pub device: Option<String>,
    pub network: Option<std::net::IpAddr>,
}

/// Why a plugin's request to a call did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginCallError {
    NoCall,
    NoSuchParticipant,
    NoSuchRequest,
    NotAllowed(String),
    Busy,
}

/// Someone on a call, as plugins see them.
#[derive(Debug, Clone)]
pub struct RosterMember {
    pub id: u32,
    pub name: String,
    pub user: Option<i64>,
    pub joined_at: chrono::DateTime<chrono::Utc>,
}

/// Largest payload a plugin may send in one message.
pub use confab_plugin_contract::limits::CALLS_MAX_PAYLOAD_BYTES as MAX_PAYLOAD_BYTES;

pub(super) fn call_error(err: PluginCallError) -> Error {
    match err {
        PluginCallError::NoCall => Error::NotFound("no call is running on this link".into()),
        PluginCallError::NoSuchParticipant => {
            Error::NotFound("no such participant on this call".into())
        }
        PluginCallError::NoSuchRequest => {
            Error::NotFound("no such request in this call's lobby".into())
        }
        PluginCallError::NotAllowed(why) => Error::AccessDenied(why),
        PluginCallError::Busy => {
            Error::Unavailable("the call is busy; try again in a moment".into())
        }
    }
}

/// The active link `link` (a public id), or why a plugin cannot reach its call.
pub(super) async fn live_link(
    store: &Store,
    link: &str,
) -> Result<crate::store::link::Model, Error> {
    match links::resolve(store, link).await {
        Ok(PublicLink::Active(link)) => Ok(link),
        Ok(PublicLink::Revoked(_)) => Err(Error::NotFound("this link was revoked".into())),
        Ok(PublicLink::NotFound) => Err(Error::NotFound("no such link".into())),
        Err(links::LinkError::Store(e)) => Err(unavailable(e)),
        Err(e) => Err(Error::Invalid(e.to_string())),
    }
}

/// The `calls` capability: the live calls of this node, through [`LiveCalls`].
pub(crate) struct CallsHost {
    store: Store,
    calls: Arc<dyn LiveCalls>,
    plugin: Arc<str>,
    acting: ActingUser,
}

impl CallsHost {
    pub(super) fn new(grants: &Grants, deps: &PluginDeps, acting: ActingUser) -> Self {
        Self {
            store: deps.store.clone(),
            calls: deps.calls.clone(),
            plugin: grants.name.clone(),
            acting,
        }
    }

    async fn live_link(&self, link: &str) -> Result<crate::store::link::Model, Error> {
        live_link(&self.store, link).await
    }

    async fn roster(&self, link: String) -> Result<Vec<Participant>, Error> {
        let link = self.live_link(&link).await?;
        match self
            .calls
            .plugin_action(link.pk, PluginCallAction::Roster)
            .await
        {
            Ok(PluginCallAnswer::Roster(roster)) => Ok(roster
                .into_iter()
                .map(|p| Participant {
                    id: p.id,
                    name: p.name,
                    user: p.user,
                    joined_at: p.joined_at.timestamp_millis(),
                })
                .collect()),
            Ok(_) => Ok(Vec::new()),
            Err(PluginCallError::NoCall) => Ok(Vec::new()),
            Err(e) => Err(call_error(e)),
        }
    }

    async fn activity(&self, link: String) -> Result<Vec<ActivityMember>, Error> {
        let link = self.live_link(&link).await?;
        let action = PluginCallAction::Activity {
            plugin: self.plugin.to_string(),
        };
        match self.calls.plugin_action(link.pk, action).await {
            Ok(PluginCallAnswer::Activity(members)) => Ok(members
                .into_iter()
                .map(|(participant, role)| ActivityMember {
                    participant,
                    role: match role {
                        MemberRole::Host => ActivityRole::Host,
                        MemberRole::Member => ActivityRole::Member,
                        MemberRole::Guest => ActivityRole::Guest,
                    },
                })
                .collect()),
            Ok(_) | Err(PluginCallError::NoCall) => Ok(Vec::new()),
            Err(e) => Err(call_error(e)),
        }
    }

    async fn send(&self, link: String, to: Option<u32>, payload: Vec<u8>) -> Result<(), Error> {
        let link = self.live_link(&link).await?;
        if payload.len() > MAX_PAYLOAD_BYTES {
            return Err(Error::LimitReached(format!(
                "messages are at most {MAX_PAYLOAD_BYTES} bytes"
            )));
        }
        let action = PluginCallAction::Send {
            plugin: self.plugin.to_string(),
            to,
            payload,
        };
        self.calls
            .plugin_action(link.pk, action)
            .await
            .map(|_| ())
            .map_err(call_error)
    }

    async fn remove(&self, link: String, as_user: i64, participant: u32) -> Result<(), Error> {
        self.acting.check(as_user)?;
        let link = self.live_link(&link).await?;
        self.calls
            .plugin_action(
                link.pk,
                PluginCallAction::Remove {
                    as_user,
                    participant,
                },
            )
            .await
            .map(|_| ())
            .map_err(call_error)
    }
}

impl HostState {
    fn calls(&mut self) -> Result<&mut CallsHost, Error> {
        self.granted(Capability::Calls, |c| c.calls.as_mut())
    }
}

impl Host for HostState {
    async fn roster(&mut self, link: String) -> wasmtime::Result<Result<Vec<Participant>, Error>> {
        Ok(async { self.calls()?.roster(link).await }.await)
    }

    async fn activity(
        &mut self,
        link: String,
    ) -> wasmtime::Result<Result<Vec<ActivityMember>, Error>> {
        Ok(async { self.calls()?.activity(link).await }.await)
    }

    async fn send(
        &mut self,
        link: String,
        to: Option<u32>,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(async { self.calls()?.send(link, to, payload).await }.await)
    }

    async fn remove(
        &mut self,
        link: String,
        as_user: i64,
        participant: u32,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(async { self.calls()?.remove(link, as_user, participant).await }.await)
    }
}
