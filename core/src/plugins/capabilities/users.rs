//! `users`: the acting user's own name and address, nobody else's.

use super::{ActingUser, unavailable};
use crate::plugins::bindings::confab::plugin::types::{Contact, Error};
use crate::plugins::bindings::confab::plugin::users::Host;
use crate::plugins::deps::PluginDeps;
use crate::plugins::manifest::Capability;
use crate::plugins::runtime::HostState;
use crate::store::Store;

/// The `users` capability: reads the acting user's own record.
pub(crate) struct UsersHost {
    store: Store,
    acting: ActingUser,
}

impl UsersHost {
    pub(super) fn new(deps: &PluginDeps, acting: ActingUser) -> Self {
        Self {
            store: deps.store.clone(),
            acting,
        }
    }

    async fn contact(&self, as_user: i64) -> Result<Contact, Error> {
        self.acting.check(as_user)?;
        let user = self
            .store
            .user_by_id(as_user)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| Error::NotFound(format!("no user {as_user}")))?;
        Ok(Contact {
            name: user.display_name,
            email: user.email,
        })
    }
}

impl Host for HostState {
    async fn get_contact(&mut self, as_user: i64) -> wasmtime::Result<Result<Contact, Error>> {
        Ok(async {
            let users = self.granted(Capability::Users, |c| c.users.as_mut())?;
            users.contact(as_user).await
        }
        .await)
    }
}
