//! `users`: the acting user's own name and address, nobody else's.

use super::{ActingUser, unavailable};
use crate::accounts::Account;
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

    async fn is_admin(&self, as_user: i64) -> Result<bool, Error> {
        self.acting.check(as_user)?;
        let user = self.store.user_by_id(as_user).await.map_err(unavailable)?;
        Ok(user.is_some_and(|u| Account::from(u).is_admin()))
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

    async fn is_admin(&mut self, as_user: i64) -> wasmtime::Result<Result<bool, Error>> {
        Ok(async {
            let users = self.granted(Capability::Users, |c| c.users.as_mut())?;
            users.is_admin(as_user).await
        }
        .await)
    }
}
