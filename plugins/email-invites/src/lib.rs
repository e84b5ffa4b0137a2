//! The email-invites plugin: invitations to call links by email.
//!
//! A signed-in user invites people to one of their links; each person gets their
//! own mail (nobody sees the others' addresses), with the link exactly as the user
//! shares it, `Reply-To` the inviter, and, when the link has a schedule, an iMIP
//! calendar invitation (RFC 6047: `METHOD:REQUEST`, the inviter as `ORGANIZER`,
//! the invitee as `ATTENDEE;RSVP=TRUE`), written by the calendar plugin's ICS
//! engine. When the link's schedule changes later, every invitee gets an update
//! (same `UID`, `SEQUENCE` + 1); when the schedule is removed or the link revoked,
//! a cancellation (`METHOD:CANCEL`). Mail goes through the server's outbox
//! (`mail.queue`); the bodies are the plugin's templates `invite.*`, `update.*` and
//! `cancel.*` (`templates/`; operators override them with
//! `plugins.settings.email-invites.templates_dir`), which extend the server's shared
//! frame `email/base.*` (`templates/email/` at the top of the repository,
//! overridden with `templates.dir`).
//!
//! | route | who | what |
//! | --- | --- | --- |
//! | `POST /p/email-invites/invites` | signed in | JSON `{"url": …, "recipients": […], "note": …}` → `202 {"queued": n, "ids": […], "scheduled": bool}` |
//! | `GET /p/email-invites/invites?link=ID` | the link's owner | who was invited, the event's `UID` and `SEQUENCE`, when each mail went out |
//!
//! Errors are JSON, `{"error":{"code":"…","message":"…"}}`, like the server's API:
//! 401 signed out, 404 a link that is not the user's (or revoked), 422 invalid
//! input, 429 a limit (`rate_limited`: the user's `recipients_per_user_per_hour`;
//! `limit_reached`: the manifest's `mail.per-hour`). A refused request queues
//! nothing: everything is checked and every mail written before the first is
//! queued.
//!
//! The modules: [`input`] reads requests, [`when`] puts schedules into words,
//! [`record`] is what is kept per link and how it follows the link, [`store`] the
//! key-value layout, [`mails`] writes the messages, and the routes and the event
//! handling call the server.

pub mod input;
pub mod mails;
pub mod optout;
pub mod record;
pub mod store;
pub mod when;

mod deliver;
mod routes;

use confab_plugin_sdk::{Event, HttpRequest, HttpResponse, Plugin, export_plugin};

struct EmailInvites;

impl Plugin for EmailInvites {
    fn handle_http(request: HttpRequest) -> HttpResponse {
        routes::route(&request)
    }

    fn on_event(event: Event) {
        match event {
            // Rescheduled or unscheduled (the dashboard, the REST API, the calendar).
            Event::LinkUpdated(link) => deliver::follow(&link, false),
            Event::LinkRevoked(link) => deliver::follow(&link, true),
            _ => {}
        }
    }
}

export_plugin!(EmailInvites);
