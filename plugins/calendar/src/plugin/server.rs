//! What the plugin asks of the server, through the SDK's capabilities (SDK 1.1):
//! links with their schedule, the organizer's address, the public URL.

use confab_plugin_sdk::links::{self, CreatedLink, NewLink};
use confab_plugin_sdk::{Error, Link, Schedule, config, users};

use super::input::Times;
use crate::ics::{self, Person};

/// The server's record of `times`.
pub fn schedule(times: &Times) -> Schedule {
    Schedule {
        start: times.start.timestamp_millis(),
        end: times.end.timestamp_millis(),
        time_zone: times.time_zone.clone(),
        rrule: times.rrule.clone(),
    }
}

/// Creates a link for `user`, with its schedule on the server's record when given.
pub fn create_link(user: i64, title: &str, times: Option<&Times>) -> Result<CreatedLink, Error> {
    let params = NewLink {
        title: title.to_string(),
        max_participants: None,
    };
    match times {
        Some(times) => links::create_scheduled(user, &params, &schedule(times)),
        None => links::create(user, &params),
    }
}

/// New links for `user`, one per title, in order.
pub fn create_links(user: i64, titles: &[String]) -> Result<Vec<CreatedLink>, Error> {
    let mut created = Vec::with_capacity(titles.len());
    // The server makes at most 1000 at once; a calendar has at most that many events.
    for chunk in titles.chunks(1000) {
        let params: Vec<NewLink> = chunk
            .iter()
            .map(|title| NewLink {
                title: title.clone(),
                max_participants: None,
            })
            .collect();
        created.extend(links::create_many(user, &params)?);
    }
    Ok(created)
}

/// The link `id` if it still works (exists and is not revoked).
pub fn live_link(id: &str) -> Option<Link> {
    links::get(id).ok().filter(|l| l.revoked_at.is_none())
}

/// The link `id` if `user` owns it and it still works.
pub fn owned_live_link(user: i64, id: &str) -> Result<Link, Error> {
    match live_link(id) {
        Some(link) if link.owner == user => Ok(link),
        _ => Err(Error::NotFound(
            "no working link of yours has this id".into(),
        )),
    }
}

/// The signed-in user's name and address, for `ORGANIZER`.
pub fn user_contact(user: i64) -> Option<Person> {
    match users::contact(user) {
        Ok(contact) => Some(Person {
            email: contact.email,
            name: Some(contact.name).filter(|n| !n.trim().is_empty()),
        }),
        Err(e) => {
            confab_plugin_sdk::log::warn(&format!("cannot read the organizer's address: {e:?}"));
            None
        }
    }
}

/// The server's address, e.g. `https://meet.example.org`.
pub fn public_url() -> String {
    config::public_url().trim_end_matches('/').to_string()
}

/// The link to write into a calendar for link `id`: the one the user shares (see
/// [`ics::shared_link`]), or the server's own address for it.
pub fn share_url(id: &str, given: Option<&str>) -> Result<String, String> {
    ics::shared_link(&public_url(), id, given)
}
