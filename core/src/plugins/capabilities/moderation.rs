//! `moderation` (SDK 1.2): where a caller came from, denying a request and locking
//! the lobby as a signed-in user on the call, rotating a link as its owner, and
//! who the administrators are. For plugins that keep unwanted callers out
//! (spam-guard); the operator grants it like any other capability.

use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::calls::{call_error, live_link};
use super::{ActingUser, Grants, link_record, unavailable};
use crate::accounts::Account;
use crate::links::{self, LinkPatch, LinkWithSecret};
use crate::plugins::bindings::confab::plugin::links::CreatedLink;
use crate::plugins::bindings::confab::plugin::moderation::{Host, Origin};
use crate::plugins::bindings::confab::plugin::types::{Contact, Error};
use crate::plugins::deps::PluginDeps;
use crate::plugins::manifest::Capability;
use crate::plugins::runtime::HostState;
use crate::plugins::{CallerOrigin, OriginOf, PluginCallAction, PluginCallAnswer, PluginCallError};

/// Administrators listed at most (a notice goes to each).
const MAX_ADMINS: u64 = 100;

/// The `moderation` capability.
pub(crate) struct ModerationHost {
    deps: PluginDeps,
    plugin: Arc<str>,
    acting: ActingUser,
}

impl ModerationHost {
    pub(super) fn new(grants: &Grants, deps: &PluginDeps, acting: ActingUser) -> Self {
        Self {
            deps: deps.clone(),
            plugin: grants.name.clone(),
            acting,
        }
    }

    /// `origin` as this plugin sees it: the device id hashed with the plugin's
    /// name (so the cookie's id never leaves the server, and two plugins cannot
    /// match their records), the network as text.
    fn origin(&self, origin: &CallerOrigin) -> Origin {
        Origin {
            device: origin
                .device
                .as_deref()
                .map(|d| device_pseudonym(&self.plugin, d)),
            network: origin.network.map(network_text),
        }
    }

    async fn origin_of(&self, link: &str, of: OriginOf) -> Result<Origin, Error> {
        let link = live_link(&self.deps.store, link).await?;
        match self
            .deps
            .calls
            .plugin_action(link.pk, PluginCallAction::Origin(of))
            .await
        {
            Ok(PluginCallAnswer::Origin(origin)) => Ok(self.origin(&origin)),
            Ok(_) => Err(Error::Unavailable("the call did not answer".into())),
            Err(PluginCallError::NoCall) => {
                Err(Error::NotFound("no call is running on this link".into()))
            }
            Err(e) => Err(call_error(e)),
        }
    }

    /// Carries out `action` on the call of `link`, as `as_user`.
    async fn act(&self, link: &str, as_user: i64, action: PluginCallAction) -> Result<(), Error> {
        self.acting.check(as_user)?;
        let link = live_link(&self.deps.store, link).await?;
        self.deps
            .calls
            .plugin_action(link.pk, action)
            .await
            .map(|_| ())
            .map_err(call_error)
    }

    async fn account(&self, user: i64) -> Result<Account, Error> {
        self.deps
            .store
            .user_by_id(user)
            .await
            .map_err(unavailable)?
            .map(Account::from)
            .ok_or_else(|| Error::NotFound(format!("no user {user}")))
    }

    async fn rotate(&self, as_user: i64, id: &str) -> Result<CreatedLink, Error> {
        self.acting.check(as_user)?;
        let owner = self.account(as_user).await?;
        let store = &self.deps.store;
        let now = self.deps.clock.now();
        let refused = |e: links::LinkError| match e {
            links::LinkError::Store(e) => unavailable(e),
            links::LinkError::NotFound => Error::NotFound("no such link of this user".into()),
            links::LinkError::Revoked => Error::NotFound("this link was revoked".into()),
            other => Error::Invalid(other.to_string()),
        };
        // Approval first: if the rotation then fails, the link is only stricter.
        let patch = LinkPatch {
            guests_need_approval: Some(true),
            ..LinkPatch::default()
        };
        links::update(store, &owner, id, patch, now)
            .await
            .map_err(refused)?;
        let link = links::rotate(store, &owner, id, now)
            .await
            .map_err(refused)?;
        crate::plugins::emit(&self.deps, crate::plugins::Event::LinkUpdated(link.clone()));
        let shared = LinkWithSecret::generate(&link, &self.deps.public_url);
        Ok(CreatedLink {
            link: link_record(&link),
            url: shared.link.url,
        })
    }

    async fn contact(&self, user: i64) -> Result<Contact, Error> {
        let user = self.account(user).await?;
        Ok(Contact {
            name: user.display_name,
            email: user.email,
        })
    }
}

/// A device id as plugin `plugin` sees it: 22 hex digits of a hash.
fn device_pseudonym(plugin: &str, device: &str) -> String {
    let digest = Sha256::digest(format!("confab-plugin-device\n{plugin}\n{device}").as_bytes());
    digest[..11].iter().map(|b| format!("{b:02x}")).collect()
}

/// `198.51.100.7/32`, or `2001:db8:1:2::/64`.
fn network_text(network: IpAddr) -> String {
    match network {
        IpAddr::V4(v4) => format!("{v4}/32"),
        IpAddr::V6(v6) => format!("{v6}/64"),
    }
}

impl HostState {
    fn moderation(&mut self) -> Result<&mut ModerationHost, Error> {
        self.granted(Capability::Moderation, |c| c.moderation.as_mut())
    }
}

impl Host for HostState {
    async fn screened_origin(&mut self) -> wasmtime::Result<Result<Origin, Error>> {
        Ok(async {
            let screened = self.screened.clone();
            let host = self.moderation()?;
            screened
                .map(|origin| host.origin(&origin))
                .ok_or_else(|| Error::NotFound("no lobby request is being decided".into()))
        }
        .await)
    }

    async fn request_origin(
        &mut self,
        link: String,
        request: u32,
    ) -> wasmtime::Result<Result<Origin, Error>> {
        Ok(async {
            self.moderation()?
                .origin_of(&link, OriginOf::Request(request))
                .await
        }
        .await)
    }

    async fn participant_origin(
        &mut self,
        link: String,
        participant: u32,
    ) -> wasmtime::Result<Result<Origin, Error>> {
        Ok(async {
            self.moderation()?
                .origin_of(&link, OriginOf::Participant(participant))
                .await
        }
        .await)
    }

    async fn deny_request(
        &mut self,
        link: String,
        as_user: i64,
        request: u32,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(async {
            self.moderation()?
                .act(&link, as_user, PluginCallAction::Deny { as_user, request })
                .await
        }
        .await)
    }

    async fn lock_lobby(
        &mut self,
        link: String,
        as_user: i64,
        locked: bool,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(async {
            self.moderation()?
                .act(
                    &link,
                    as_user,
                    PluginCallAction::LockLobby { as_user, locked },
                )
                .await
        }
        .await)
    }

    async fn suspend_guests(
        &mut self,
        link: String,
        as_user: i64,
        suspended: bool,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(async {
            self.moderation()?
                .act(
                    &link,
                    as_user,
                    PluginCallAction::SuspendGuests { as_user, suspended },
                )
                .await
        }
        .await)
    }

    async fn rotate_link(
        &mut self,
        as_user: i64,
        id: String,
    ) -> wasmtime::Result<Result<CreatedLink, Error>> {
        Ok(async { self.moderation()?.rotate(as_user, &id).await }.await)
    }

    async fn is_admin(&mut self, user: i64) -> wasmtime::Result<Result<bool, Error>> {
        Ok(async {
            let host = self.moderation()?;
            match host.deps.store.user_by_id(user).await {
                Ok(found) => Ok(found.is_some_and(|u| Account::from(u).is_admin())),
                Err(e) => Err(unavailable(e)),
            }
        }
        .await)
    }

    async fn admins(&mut self) -> wasmtime::Result<Result<Vec<Contact>, Error>> {
        Ok(async {
            let host = self.moderation()?;
            let admins = host
                .deps
                .store
                .admins(MAX_ADMINS)
                .await
                .map_err(unavailable)?;
            Ok(admins
                .into_iter()
                .map(|u| Contact {
                    name: u.display_name,
                    email: u.email,
                })
                .collect())
        }
        .await)
    }

    async fn contact_of(&mut self, user: i64) -> wasmtime::Result<Result<Contact, Error>> {
        Ok(async { self.moderation()?.contact(user).await }.await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_device_has_another_pseudonym_for_each_plugin_and_the_network_its_prefix() {
        let a = device_pseudonym("spam-guard", "AbCdEf0123456789xyzABC");
        assert_eq!(a.len(), 22);
        assert_eq!(a, device_pseudonym("spam-guard", "AbCdEf0123456789xyzABC"));
        assert_ne!(a, device_pseudonym("other", "AbCdEf0123456789xyzABC"));
        assert!(!a.contains("AbCdEf"));
        assert_eq!(
            network_text("198.51.100.7".parse().unwrap()),
            "198.51.100.7/32"
        );
        assert_eq!(
            network_text("2001:db8:1:2::".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
    }
}
