//! The host side of the capabilities a plugin imports.
//!
//! Each capability has a host object (`KvHost`, `LinksHost`, …) holding only the
//! parts of the server it uses. An invocation gets [`Capabilities`]: the objects of
//! the capabilities the plugin was granted, built from its [`Grants`], and `None`
//! for the others. So an ungranted capability is refused in one place
//! ([`HostState::granted`]) with a typed `error.access-denied`, never a trap, and no
//! method has to remember to check.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::bindings::confab::plugin::types::{self, Error};
use super::deps::PluginDeps;
use super::manifest::{Capability, Manifest};
use super::runtime::HostState;
use crate::store::{StoreError, link};

pub(crate) mod calls;
mod config;
mod http_client;
mod kv;
mod links;
mod log;
pub(crate) mod mail;
mod moderation;
mod templates;
mod users;

/// What one loaded plugin may do: its manifest's requests, narrowed by the
/// operator's grants, and the settings the operator gave it.
pub struct Grants {
    pub name: Arc<str>,
    pub granted: BTreeSet<Capability>,
    pub manifest: Manifest,
    /// Settings with the manifest's defaults filled in.
    pub config: BTreeMap<String, String>,
    /// The plugin's tera templates, when it ships any.
    pub templates: Option<tera::Tera>,
    /// The hosts `http-client` may call: the manifest's, and the operator's
    /// `http_hosts` where the manifest allows them.
    pub http_hosts: Vec<String>,
    /// When the plugin queued its recent mails (for `mail.per-hour`).
    /// Held while counting this plugin's last hour of mail and queueing one more,
    /// so that concurrent calls cannot both take the last slot.
    pub(crate) mail_turn: tokio::sync::Mutex<()>,
}

impl Grants {
    pub fn new(
        manifest: Manifest,
        granted: BTreeSet<Capability>,
        config: BTreeMap<String, String>,
        templates: Option<tera::Tera>,
    ) -> Self {
        Self {
            name: manifest.name.as_str().into(),
            granted,
            http_hosts: manifest.http_hosts().to_vec(),
            manifest,
            config,
            templates,
            mail_turn: tokio::sync::Mutex::new(()),
        }
    }

    /// Why the plugin may not use `capability`, which it was not granted.
    pub fn refusal(&self, capability: Capability) -> Error {
        let why = if self.manifest.permissions.requested().contains(&capability) {
            format!(
                "the operator has not granted {capability} to this plugin (plugins.settings.{}.grant)",
                self.name
            )
        } else {
            format!("plugin.toml does not ask for the {capability} permission")
        };
        Error::AccessDenied(why)
    }
}

/// The host objects of the capabilities one invocation may use.
pub(crate) struct Capabilities {
    kv: Option<kv::KvHost>,
    links: Option<links::LinksHost>,
    users: Option<users::UsersHost>,
    calls: Option<calls::CallsHost>,
    mail: Option<mail::MailHost>,
    http_client: Option<http_client::HttpClientHost>,
    templates: Option<templates::TemplatesHost>,
    moderation: Option<moderation::ModerationHost>,
}

impl Capabilities {
    /// The host objects of what `grants` allows, acting for `acting_user` (the
    /// signed-in user of the request being handled, or the user behind the event).
    pub(crate) fn granted(
        grants: &Arc<Grants>,
        deps: &PluginDeps,
        acting_user: Option<i64>,
    ) -> Self {
        let acting = ActingUser(acting_user);
        let has = |capability| grants.granted.contains(&capability);
        Self {
            kv: has(Capability::Kv).then(|| kv::KvHost::new(grants, deps)),
            links: has(Capability::Links).then(|| links::LinksHost::new(grants, deps, acting)),
            users: has(Capability::Users).then(|| users::UsersHost::new(deps, acting)),
            calls: has(Capability::Calls).then(|| calls::CallsHost::new(grants, deps, acting)),
            mail: has(Capability::Mail).then(|| mail::MailHost::new(grants, deps)),
            http_client: has(Capability::HttpClient)
                .then(|| http_client::HttpClientHost::new(grants)),
            templates: has(Capability::Templates)
                .then(|| templates::TemplatesHost::new(grants, deps)),
            moderation: has(Capability::Moderation)
                .then(|| moderation::ModerationHost::new(grants, deps, acting)),
        }
    }
}

impl HostState {
    /// The host object of `capability`, or why the plugin may not use it.
    fn granted<T>(
        &mut self,
        capability: Capability,
        host: impl FnOnce(&mut Capabilities) -> Option<&mut T>,
    ) -> Result<&mut T, Error> {
        let grants = &self.grants;
        host(&mut self.capabilities).ok_or_else(|| grants.refusal(capability))
    }
}

/// The user a plugin may act as: only the one it is acting for now (the signed-in
/// user of the request it handles, or the user behind the event).
#[derive(Debug, Clone, Copy)]
struct ActingUser(Option<i64>);

impl ActingUser {
    fn check(self, as_user: i64) -> Result<(), Error> {
        match self.0 {
            Some(user) if user == as_user => Ok(()),
            Some(_) => Err(Error::AccessDenied(
                "a plugin may act only as the user it is handling a request for".into(),
            )),
            None => Err(Error::AccessDenied(
                "no signed-in user is behind this call, so the plugin cannot act as one".into(),
            )),
        }
    }
}

impl types::Host for HostState {}

fn unavailable(err: StoreError) -> Error {
    tracing::warn!(error = %err, "a plugin's capability call failed in the database");
    Error::Unavailable("the server's database did not answer; try again later".into())
}

fn millis(t: chrono::DateTime<chrono::Utc>) -> i64 {
    t.timestamp_millis()
}

/// A link as plugins see it.
pub fn link_record(link: &link::Model) -> types::Link {
    types::Link {
        id: link.public_id.clone(),
        title: link.title.clone(),
        owner: link.owner_id,
        max_participants: u32::try_from(link.max_participants).unwrap_or(0),
        policy: if link.guests_need_approval {
            "ask".into()
        } else {
            "open".into()
        },
        created_at: millis(link.created_at),
        revoked_at: link.revoked_at.map(millis),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_whether_the_manifest_or_the_operator_is_missing() {
        let manifest = Manifest::parse(
            "name = \"m\"\nversion = \"1.0.0\"\nsdk = \"^1\"\n[permissions]\nlinks = {}\n",
        )
        .unwrap();
        let grants = Grants::new(manifest, BTreeSet::new(), BTreeMap::new(), None);
        let Error::AccessDenied(why) = grants.refusal(Capability::Links) else {
            panic!("links must be refused")
        };
        assert!(why.contains("has not granted links"), "{why}");
        let Error::AccessDenied(why) = grants.refusal(Capability::Kv) else {
            panic!("kv must be refused")
        };
        assert!(why.contains("does not ask for the kv"), "{why}");
    }
}
