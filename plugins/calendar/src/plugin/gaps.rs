//! What the plugin needs from the server that the SDK (`confab:plugin@1.0.0`) does
//! not offer yet, each behind one function so the real capability replaces the
//! stopgap in one place.
//!
//! | need | WIT wanted (1.x, additive) | stopgap today |
//! | --- | --- | --- |
//! | create a link with its schedule | `links.new-link` gains nothing (records never change within 1.x); instead `links.create-scheduled: func(as-user: s64, params: new-link, schedule: schedule) -> result<created-link, error>` with `record schedule { start: s64, end: s64, time-zone: string, rrule: option<string> }` (Unix ms; validated like the REST API's `schedule`) | the link is created without a schedule; the schedule lives in the plugin's key-value store only, so the server's link page and `describe()` do not show it |
//! | read a link's schedule | `links.schedule: func(id: string) -> result<option<schedule>, error>` | only calls scheduled through this plugin are known |
//! | the shareable URL of an existing link | `links.share-url: func(as-user: s64, id: string) -> result<string, error>` (the owner only; the full URL with its fragment, as `created-link.url`) | the URL returned by `links.create` is kept in the plugin's key-value store with the call or event it was made for; links made elsewhere cannot get an "Add to calendar" file |
//! | the signed-in user's address, for `ORGANIZER` | `users.contact: func(as-user: s64) -> result<contact, error>` with `record contact { name: string, email: option<string> }` (only the acting user) | the organizer's address comes from the request (`organizer`), or invitations cannot be written |
//! | the server's public URL, for absolute feed links | `config.public-url: func() -> string` | the page turns the feed path into an absolute `webcal://` link in the browser |

use confab_plugin_sdk::links::{self, CreatedLink, NewLink};
use confab_plugin_sdk::{Error, Link};

use crate::ics::Person;

/// When a call is planned, for the server's own record of the link.
#[derive(Debug, Clone)]
#[allow(
    dead_code,
    reason = "read once the SDK can create a link with its schedule"
)]
pub struct LinkSchedule {
    pub start_ms: i64,
    pub end_ms: i64,
    pub time_zone: String,
    pub rrule: Option<String>,
}

/// Creates a link for `user`. With `links.create-scheduled` the schedule goes to
/// the server too; today it is kept by the plugin only.
pub fn create_link(
    user: i64,
    title: &str,
    schedule: Option<&LinkSchedule>,
) -> Result<CreatedLink, Error> {
    let _ = schedule;
    links::create(
        user,
        &NewLink {
            title: title.to_string(),
            max_participants: None,
        },
    )
}

/// The link `id` if it still works (exists and is not revoked).
pub fn live_link(id: &str) -> Option<Link> {
    links::get(id).ok().filter(|l| l.revoked_at.is_none())
}

/// The signed-in user's name and address, for `ORGANIZER`. Today: unknown.
pub fn user_contact(user: i64) -> Option<Person> {
    let _ = user;
    None
}
