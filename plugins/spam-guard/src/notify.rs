//! Telling people: the link's owner when a link looks leaked (on the call page and
//! by mail), and the administrators of new reports (one mail per batch).

use confab_plugin_sdk::{calls, config, links, log, mail, moderation, templates};
use serde_json::json;

use crate::store;

/// Reports put in one mail to the administrators; more wait for the next.
const BATCH: u32 = 100;

/// What the call page's module shows the owner (plain JSON on the plugin's
/// channel: the plugin itself sends it, so it is not encrypted).
pub(crate) fn leaked_notice(link: &str, networks: usize, denials: usize) -> Vec<u8> {
    json!({"type": "leaked", "link": link, "addresses": networks, "denials": denials})
        .to_string()
        .into_bytes()
}

pub(crate) fn link_may_have_leaked(link_id: &str, networks: usize, denials: usize) {
    let link = match links::get(link_id) {
        Ok(link) => link,
        Err(e) => {
            log::warn(&format!("a leaked link's owner could not be told: {e:?}"));
            return;
        }
    };
    // On the call page, wherever the owner is on the call.
    if let Ok(roster) = calls::roster(link_id) {
        let notice = leaked_notice(link_id, networks, denials);
        for p in roster.iter().filter(|p| p.user == Some(link.owner)) {
            if let Err(e) = calls::send_to(link_id, p.id, &notice) {
                log::warn(&format!(
                    "the leaked-link notice did not reach the owner: {e:?}"
                ));
            }
        }
    }
    // And by mail, in case they are not on the call.
    let Ok(owner) = moderation::contact(link.owner) else {
        return;
    };
    let context = json!({
        "recipient_name": owner.name,
        "title": link.title,
        "networks": networks,
        "denials": denials,
        "minutes": crate::settings().leak_minutes,
        "dashboard": format!("{}/", config::public_url()),
    })
    .to_string();
    let (Ok(text), html) = (
        templates::render("leaked.txt", &context),
        templates::render("leaked.html", &context).ok(),
    ) else {
        log::warn("the leaked-link mail could not be written");
        return;
    };
    let message = mail::Message {
        to: vec![mail::mailbox(&owner.name, &owner.email)],
        cc: Vec::new(),
        reply_to: None,
        subject: format!(
            "Your call link “{}” may have been shared",
            link.title.replace(['\r', '\n'], " ")
        ),
        text,
        html,
        attachments: Vec::new(),
    };
    if let Err(e) = mail::queue(&message) {
        log::warn(&format!("the leaked-link mail was not queued: {e:?}"));
    }
}

/// One mail to each administrator listing the reports filed since the last one.
pub(crate) fn admins_of_new_reports() {
    let Ok(ids) = store::pending(BATCH) else {
        return;
    };
    if ids.is_empty() {
        return;
    }
    let reports = match store::reports(&ids) {
        Ok(reports) => reports,
        Err(e) => {
            log::warn(&format!("new reports could not be read: {e:?}"));
            return;
        }
    };
    let admins = match moderation::admins() {
        Ok(admins) => admins,
        Err(e) => {
            log::warn(&format!("the administrators could not be found: {e:?}"));
            return;
        }
    };
    let listed: Vec<_> = reports
        .iter()
        .map(|r| {
            json!({
                "category": r.category.describe(),
                "name": r.name,
                "reporter": r.reporter_name,
                "link": r.link_title,
                "action": r.action,
                "escalated": r.escalated,
                "still": r.still_parts > 0,
            })
        })
        .collect();
    let subject = match listed.len() {
        1 => "1 new report on Confab".to_string(),
        n => format!("{n} new reports on Confab"),
    };
    for admin in &admins {
        let context = json!({
            "recipient_name": admin.name,
            "count": listed.len(),
            "reports": listed,
            "dashboard": format!("{}/", config::public_url()),
        })
        .to_string();
        let (Ok(text), html) = (
            templates::render("reports.txt", &context),
            templates::render("reports.html", &context).ok(),
        ) else {
            log::warn("the reports mail could not be written");
            return;
        };
        let message = mail::Message {
            to: vec![mail::mailbox(&admin.name, &admin.email)],
            cc: Vec::new(),
            reply_to: None,
            subject: subject.clone(),
            text,
            html,
            attachments: Vec::new(),
        };
        // A notice, not the record: the reports stay in the queue whatever happens
        // to one administrator's mail, and nobody gets the same batch twice.
        if let Err(e) = mail::queue(&message) {
            log::warn(&format!("a reports mail was not queued: {e:?}"));
        }
    }
    if let Err(e) = store::clear_pending(&ids) {
        log::warn(&format!("sent reports stay marked as new: {e:?}"));
    }
}
