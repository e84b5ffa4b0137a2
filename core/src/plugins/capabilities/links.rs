//! `links`: call links, on behalf of the user the plugin acts for, with that user's
//! rights (exactly the checks of the REST API).

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{ActingUser, Grants, link_record, unavailable};
use crate::accounts::Account;
use crate::links::{
    self, LinkError, LinkPatch, LinkWithSecret, NewLink as CoreNewLink, ScheduleInput,
};
use crate::plugins::bindings::confab::plugin::links::{CreatedLink, Host, NewLink};
use crate::plugins::bindings::confab::plugin::types::{Error, Link, Schedule};
use crate::plugins::deps::PluginDeps;
use crate::plugins::manifest::Capability;
use crate::plugins::runtime::HostState;
use crate::store::{LinkFilter, link};

use confab_plugin_contract::limits::{
    LINKS_MAX_CREATE_AT_ONCE as MAX_CREATE_AT_ONCE, LINKS_MAX_LIST as MAX_LIST,
};

fn link_error(err: LinkError) -> Error {
    match err {
        LinkError::Invalid(invalid) => Error::Invalid(invalid.to_string()),
        LinkError::NotFound => Error::NotFound("no such link".into()),
        LinkError::Revoked => Error::NotFound("this link was revoked".into()),
        LinkError::CreationDisabled => Error::AccessDenied(err.to_string()),
        LinkError::Store(e) => unavailable(e),
    }
}

/// A schedule from a plugin, for the same checks as the REST API's.
fn schedule_input(schedule: Schedule) -> Result<ScheduleInput, Error> {
    let time = |ms: i64, field: &str| {
        DateTime::<Utc>::from_timestamp_millis(ms)
            .ok_or_else(|| Error::Invalid(format!("schedule.{field}: not a time")))
    };
    Ok(ScheduleInput {
        start: time(schedule.start, "start")?,
        end: time(schedule.end, "end")?,
        time_zone: Some(schedule.time_zone),
        rrule: schedule.rrule,
    })
}

/// A plugin's new link, for the same checks as the REST API's.
fn core_input(params: NewLink) -> CoreNewLink {
    CoreNewLink {
        title: params.title,
        max_participants: params
            .max_participants
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
        ..Default::default()
    }
}

fn schedule_record(schedule: &links::Schedule) -> Schedule {
    Schedule {
        start: schedule.start.timestamp_millis(),
        end: schedule.end.timestamp_millis(),
        time_zone: schedule.time_zone.clone(),
        rrule: schedule.rrule.clone(),
    }
}

/// The `links` capability: call links, as the acting user.
pub(crate) struct LinksHost {
    deps: PluginDeps,
    plugin: Arc<str>,
    acting: ActingUser,
}

impl LinksHost {
    pub(super) fn new(grants: &Grants, deps: &PluginDeps, acting: ActingUser) -> Self {
        Self {
            deps: deps.clone(),
            plugin: grants.name.clone(),
            acting,
        }
    }

    async fn account(&self, as_user: i64) -> Result<Account, Error> {
        self.acting.check(as_user)?;
        self.deps
            .store
            .user_by_id(as_user)
            .await
            .map_err(unavailable)?
            .map(Account::from)
            .ok_or_else(|| Error::NotFound(format!("no user {as_user}")))
    }

    async fn create(
        &self,
        as_user: i64,
        params: NewLink,
        schedule: Option<Schedule>,
    ) -> Result<CreatedLink, Error> {
        let mut input = core_input(params);
        input.schedule = schedule.map(schedule_input).transpose()?;
        let mut created = self.create_links(as_user, vec![input]).await?;
        created
            .pop()
            .ok_or_else(|| Error::Unavailable("the link was not made".into()))
    }

    /// Up to [`MAX_CREATE_AT_ONCE`] links; each is checked before any is written,
    /// and the inserts go to the store's writer together, so they share commits.
    async fn create_many(
        &self,
        as_user: i64,
        params: Vec<NewLink>,
    ) -> Result<Vec<CreatedLink>, Error> {
        if params.len() > MAX_CREATE_AT_ONCE {
            return Err(Error::LimitReached(format!(
                "at most {MAX_CREATE_AT_ONCE} links at once, not {}",
                params.len()
            )));
        }
        let inputs = params.into_iter().map(core_input).collect();
        self.create_links(as_user, inputs).await
    }

    /// Makes the links as `as_user` would through the REST API, and tells the
    /// plugins about each. The plugin gets each link's secret in `url`, once, like
    /// the REST API's answer; the events carry no secret.
    async fn create_links(
        &self,
        as_user: i64,
        inputs: Vec<CoreNewLink>,
    ) -> Result<Vec<CreatedLink>, Error> {
        let owner = self.account(as_user).await?;
        let policy = self
            .deps
            .policy
            .get(&self.deps.store)
            .await
            .map_err(unavailable)?;
        let now = self.deps.clock.now();
        let created = links::create_many(&self.deps.store, &policy, &owner, inputs, now)
            .await
            .map_err(link_error)?;
        self.deps.metrics.links_created.inc_by(created.len() as u64);
        tracing::info!(plugin = %self.plugin, user = owner.id, count = created.len(), "a plugin created links");
        Ok(created
            .into_iter()
            .map(|link| {
                let shared = LinkWithSecret::generate(&link, &self.deps.public_url);
                crate::plugins::emit(&self.deps, crate::plugins::Event::LinkCreated(link.clone()));
                CreatedLink {
                    link: link_record(&link),
                    url: shared.link.url,
                }
            })
            .collect())
    }

    /// Link `id`, active or revoked.
    async fn resolved(&self, id: &str) -> Result<link::Model, Error> {
        match links::resolve(&self.deps.store, id).await {
            Ok(links::PublicLink::Active(link)) | Ok(links::PublicLink::Revoked(link)) => Ok(link),
            Ok(links::PublicLink::NotFound) => Err(Error::NotFound("no such link".into())),
            Err(e) => Err(link_error(e)),
        }
    }

    async fn get(&self, id: String) -> Result<Link, Error> {
        Ok(link_record(&self.resolved(&id).await?))
    }

    async fn schedule(&self, id: String) -> Result<Option<Schedule>, Error> {
        let link = self.resolved(&id).await?;
        Ok(links::Schedule::from_row(&link)
            .as_ref()
            .map(schedule_record))
    }

    async fn set_schedule(
        &self,
        as_user: i64,
        id: String,
        schedule: Option<Schedule>,
    ) -> Result<(), Error> {
        let schedule = schedule.map(schedule_input).transpose()?;
        let owner = self.account(as_user).await?;
        let patch = LinkPatch {
            schedule: Some(schedule),
            ..Default::default()
        };
        let now = self.deps.clock.now();
        let link = links::update(&self.deps.store, &owner, &id, patch, now)
            .await
            .map_err(link_error)?;
        crate::plugins::emit(&self.deps, crate::plugins::Event::LinkUpdated(link));
        Ok(())
    }

    async fn list(&self, as_user: i64) -> Result<Vec<Link>, Error> {
        let owner = self.account(as_user).await?;
        let (items, _) = links::list(&self.deps.store, &owner, LinkFilter::All, None, MAX_LIST)
            .await
            .map_err(link_error)?;
        Ok(items.iter().map(link_record).collect())
    }

    async fn revoke(&self, as_user: i64, id: String) -> Result<(), Error> {
        let owner = self.account(as_user).await?;
        let now = self.deps.clock.now();
        let before = links::owned(&self.deps.store, &owner, &id)
            .await
            .map_err(link_error)?;
        let link = links::revoke(&self.deps.store, &owner, &id, now)
            .await
            .map_err(link_error)?;
        if before.revoked_at.is_none() {
            crate::plugins::emit(&self.deps, crate::plugins::Event::LinkRevoked(link));
        }
        Ok(())
    }
}

impl HostState {
    fn links(&mut self) -> Result<&mut LinksHost, Error> {
        self.granted(Capability::Links, |c| c.links.as_mut())
    }
}

impl Host for HostState {
    async fn create(
        &mut self,
        as_user: i64,
        params: NewLink,
    ) -> wasmtime::Result<Result<CreatedLink, Error>> {
        Ok(async { self.links()?.create(as_user, params, None).await }.await)
    }

    async fn create_scheduled(
        &mut self,
        as_user: i64,
        params: NewLink,
        schedule: Schedule,
    ) -> wasmtime::Result<Result<CreatedLink, Error>> {
        Ok(async { self.links()?.create(as_user, params, Some(schedule)).await }.await)
    }

    async fn create_many(
        &mut self,
        as_user: i64,
        params: Vec<NewLink>,
    ) -> wasmtime::Result<Result<Vec<CreatedLink>, Error>> {
        Ok(async { self.links()?.create_many(as_user, params).await }.await)
    }

    async fn get_schedule(
        &mut self,
        id: String,
    ) -> wasmtime::Result<Result<Option<Schedule>, Error>> {
        Ok(async { self.links()?.schedule(id).await }.await)
    }

    async fn set_schedule(
        &mut self,
        as_user: i64,
        id: String,
        schedule: Option<Schedule>,
    ) -> wasmtime::Result<Result<(), Error>> {
        Ok(async { self.links()?.set_schedule(as_user, id, schedule).await }.await)
    }

    async fn get(&mut self, id: String) -> wasmtime::Result<Result<Link, Error>> {
        Ok(async { self.links()?.get(id).await }.await)
    }

    async fn list_owned(&mut self, as_user: i64) -> wasmtime::Result<Result<Vec<Link>, Error>> {
        Ok(async { self.links()?.list(as_user).await }.await)
    }

    async fn revoke(&mut self, as_user: i64, id: String) -> wasmtime::Result<Result<(), Error>> {
        Ok(async { self.links()?.revoke(as_user, id).await }.await)
    }
}
