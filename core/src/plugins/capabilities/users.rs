//! `users`: the acting user's own name and address, nobody else's.

use super::unavailable;
use crate::plugins::bindings::confab::plugin::types::{Contact, Error};
use crate::plugins::bindings::confab::plugin::users::Host;
use crate::plugins::manifest::Capability;
use crate::plugins::runtime::HostState;

impl HostState {
    async fn users_contact(&mut self, as_user: i64) -> Result<Contact, Error> {
        self.grants.check(Capability::Users)?;
        self.acting_as(as_user)?;
        let user = self
            .app
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
        Ok(self.users_contact(as_user).await)
    }
}
