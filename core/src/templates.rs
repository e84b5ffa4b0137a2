//! The server's templates, built into the binary from `templates/`, each
//! overridable by a file of the same name under `templates.dir`:
//!
//! - `pages/*.html`: the web pages (`pages/base.html` is their frame);
//! - `email/base.html` and `email/base.txt`: the frame of mail bodies, shared with
//!   plugins (names under `email/`, [`shared_with_plugins`]). A plugin with the
//!   `templates` permission renders them, and its own templates may
//!   `{% extends "email/base.html" %}`: every plugin's templates are loaded on top
//!   of [`shared`] (`plugins::load`), with the operator's overrides. The HTML frame has the blocks `title`,
//!   `preheader` and `content` (the card's `<tr>` rows), the text frame the block
//!   `content` between the greeting (`recipient_name`) and the reply line
//!   (`inviter`, `inviter_email`).
//!
//! The bodies of invitations, updates and cancellations are not here: they are the
//! email-invites plugin's own templates (`plugins/email-invites/templates/`, which
//! extend the frame), overridden with `plugins.settings.email-invites.templates_dir`.
//! An operator's override from before they moved there (`email/invite.html` …
//! under `templates.dir`, [`MOVED_TO_PLUGINS`]) is still read, with a warning, and
//! the plugin renders it instead of its own.

use std::path::Path;

use tera::Tera;

const BUILT_IN: &[(&str, &str)] = &[
    (
        "pages/base.html",
        include_str!("../../templates/pages/base.html"),
    ),
    (
        "pages/login.html",
        include_str!("../../templates/pages/login.html"),
    ),
    (
        "pages/dashboard.html",
        include_str!("../../templates/pages/dashboard.html"),
    ),
    (
        "pages/join.html",
        include_str!("../../templates/pages/join.html"),
    ),
    (
        "pages/message.html",
        include_str!("../../templates/pages/message.html"),
    ),
    (
        "email/base.html",
        include_str!("../../templates/email/base.html"),
    ),
    (
        "email/base.txt",
        include_str!("../../templates/email/base.txt"),
    ),
];

/// Mail bodies that were built in here and are now the email-invites plugin's own
/// templates (`invite.html` …). None is built in any more; an operator's override
/// of one under `templates.dir`, written before the move, is still loaded as a
/// shared template, and the plugin renders `email/NAME` in preference to its own
/// `NAME` when there is one.
const MOVED_TO_PLUGINS: &[&str] = &[
    "email/invite.html",
    "email/invite.txt",
    "email/update.html",
    "email/update.txt",
    "email/cancel.html",
    "email/cancel.txt",
];

/// Whether plugins may render the server's template `name`.
pub fn shared_with_plugins(name: &str) -> bool {
    name.starts_with("email/")
}

/// Loads the templates, preferring operator overrides from `dir` (if not empty).
pub fn load(dir: &str) -> Result<Tera, String> {
    let sources = sources(dir)?;
    for (name, _) in &sources {
        if MOVED_TO_PLUGINS.contains(&name.as_str()) {
            let own = name.trim_start_matches("email/");
            tracing::warn!(
                file = %Path::new(dir).join(name).display(),
                "this override of a mail body still applies, but the template is the email-invites plugin's now: \
                 move the file to the directory plugins.settings.email-invites.templates_dir names, as {own}"
            );
        }
    }
    build(sources)
}

/// The templates of `server` (as [`load`] made them) that plugins share
/// ([`shared_with_plugins`]): what every plugin's own templates are loaded on top of,
/// so that they can extend `email/base.html`.
pub fn shared(server: &Tera) -> Result<Tera, String> {
    let mut shared = Tera::default();
    shared.extend(server).map_err(|e| format!("{e:?}"))?;
    // tera 1 has no method to drop a template: its `templates` map is public (though
    // left out of its documentation), so the pages are taken out of the copy there.
    shared.templates.retain(|name, _| shared_with_plugins(name));
    shared
        .build_inheritance_chains()
        .map_err(|e| format!("{e:?}"))?;
    Ok(shared)
}

/// The built-in templates, each replaced by its override in `dir` if there is one,
/// and the overrides of [`MOVED_TO_PLUGINS`] that are there.
fn sources(dir: &str) -> Result<Vec<(String, String)>, String> {
    let read = |name: &str| -> Result<Option<String>, String> {
        let Some(path) = (!dir.is_empty())
            .then(|| Path::new(dir).join(name))
            .filter(|p| p.is_file())
        else {
            return Ok(None);
        };
        std::fs::read_to_string(&path)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let mut sources: Vec<(String, String)> = Vec::with_capacity(BUILT_IN.len());
    for &(name, text) in BUILT_IN {
        let text = read(name)?.unwrap_or_else(|| text.to_string());
        sources.push((name.to_string(), text));
    }
    for &name in MOVED_TO_PLUGINS {
        if let Some(text) = read(name)? {
            sources.push((name.to_string(), text));
        }
    }
    Ok(sources)
}

fn build(sources: impl IntoIterator<Item = (String, String)>) -> Result<Tera, String> {
    let mut tera = Tera::default();
    // Autoescaping applies to names ending in .html: every user-supplied string is escaped.
    tera.add_raw_templates(sources)
        .map_err(|e| format!("{e:?}"))?;
    Ok(tera)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The email-invites plugin's bodies, which extend the shared frame.
    const BODIES: [(&str, &str); 6] = [
        (
            "invite.html",
            include_str!("../../plugins/email-invites/templates/invite.html"),
        ),
        (
            "invite.txt",
            include_str!("../../plugins/email-invites/templates/invite.txt"),
        ),
        (
            "update.html",
            include_str!("../../plugins/email-invites/templates/update.html"),
        ),
        (
            "update.txt",
            include_str!("../../plugins/email-invites/templates/update.txt"),
        ),
        (
            "cancel.html",
            include_str!("../../plugins/email-invites/templates/cancel.html"),
        ),
        (
            "cancel.txt",
            include_str!("../../plugins/email-invites/templates/cancel.txt"),
        ),
    ];

    /// The plugin's bodies on top of the shared templates, as `plugins::load` loads
    /// a plugin's templates.
    fn plugin_templates(server: &Tera) -> Tera {
        let mut tera = shared(server).unwrap();
        for (name, text) in BODIES {
            tera.add_raw_template(name, text)
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        }
        tera
    }

    /// `child` written out as one template: each of its blocks put into `frame` in
    /// place of the frame's empty block of that name, trimmed as the block's `-%}`
    /// and `{%-` trim it.
    fn flattened(frame: &str, child: &str) -> String {
        let mut out = frame.to_string();
        for block in ["title", "preheader", "content"] {
            let Some(open) = child.find(&format!("{{% block {block} ")) else {
                continue;
            };
            let body_start = open + child[open..].find("%}").unwrap() + 2;
            let close = child.find(&format!(" endblock {block} %}}")).unwrap();
            let body_end = child[..close].rfind("{%").unwrap();
            let mut body = &child[body_start..body_end];
            if child[..body_start].ends_with("-%}") {
                body = body.trim_start();
            }
            if child[body_end..].starts_with("{%-") {
                body = body.trim_end();
            }
            let empty = format!("{{% block {block} %}}{{% endblock {block} %}}");
            assert_eq!(out.matches(&empty).count(), 1, "{block} in the frame");
            out = out.replace(&empty, body);
        }
        out
    }

    #[test]
    fn the_built_in_templates_load_and_plugins_share_only_the_mail_frame() {
        let server = load("").unwrap();
        let mut names: Vec<&str> = server.get_template_names().collect();
        names.sort_unstable();
        assert_eq!(names.len(), BUILT_IN.len(), "{names:?}");
        assert!(!names.iter().any(|n| MOVED_TO_PLUGINS.contains(n)));
        let for_plugins = shared(&server).unwrap();
        let mut names: Vec<&str> = for_plugins.get_template_names().collect();
        names.sort_unstable();
        assert_eq!(names, ["email/base.html", "email/base.txt"]);
    }

    /// The bodies render through the frame exactly as the same text written out in
    /// one template (which is what they were before the frame was taken out), for
    /// every combination of the values they test.
    #[test]
    fn the_bodies_render_as_if_the_frame_were_written_into_them() {
        let server = load("").unwrap();
        let plugin = plugin_templates(&server);
        let mut written_out = Tera::default();
        for (name, text) in BODIES {
            let frame = if name.ends_with(".html") {
                "email/base.html"
            } else {
                "email/base.txt"
            };
            let frame_text = BUILT_IN.iter().find(|(n, _)| *n == frame).unwrap().1;
            written_out
                .add_raw_template(name, &flattened(frame_text, text))
                .unwrap_or_else(|e| panic!("{name} written out: {e:?}"));
        }
        let optional = [
            ("recipient_name", serde_json::json!("Bo \"Bobby\" <Lee>")),
            ("inviter", serde_json::json!("Ana & Co")),
            ("inviter_email", serde_json::json!("ana@example.org")),
            (
                "when",
                serde_json::json!(
                    "Tuesday 1 December 2026, 10:00–10:45 (Europe/Berlin, UTC+01:00)"
                ),
            ),
            ("repeats", serde_json::json!("every week on Tuesday")),
            (
                "previous_when",
                serde_json::json!("Monday 30 November 2026, 09:00–09:30"),
            ),
            ("note", serde_json::json!("See you <there>\nBring 'snacks'")),
            (
                "calendar",
                serde_json::json!({"summary": "Sync", "method": "REQUEST", "sequence": 1, "filename": "invite.ics"}),
            ),
            ("revoked", serde_json::json!(true)),
        ];
        for mask in 0u32..(1 << optional.len()) {
            let mut context = serde_json::json!({
                "notice": "invite",
                "title": "Weekly <sync> & \"plans\"",
                "url": "https://meet.example.org/j/abc123#k=s3cr3t",
            });
            for (i, (key, value)) in optional.iter().enumerate() {
                context[*key] = if mask & (1 << i) != 0 {
                    value.clone()
                } else if *key == "revoked" {
                    serde_json::json!(false)
                } else {
                    serde_json::Value::Null
                };
            }
            let context = tera::Context::from_value(context).unwrap();
            for (name, _) in BODIES {
                assert_eq!(
                    plugin.render(name, &context).unwrap(),
                    written_out.render(name, &context).unwrap(),
                    "{name} with {context:?}"
                );
            }
        }
    }

    #[test]
    fn overrides_replace_the_frame_and_old_overrides_of_the_bodies_still_load() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("email")).unwrap();
        std::fs::write(
            dir.path().join("email/base.txt"),
            "Hi!\n{% block content %}{% endblock content %}\n-- \nExample Org\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("email/invite.txt"),
            "Come to {{ title }}: {{ url }}\n",
        )
        .unwrap();
        let server = load(dir.path().to_str().unwrap()).unwrap();
        let mut plugin = shared(&server).unwrap();
        let mut names: Vec<&str> = plugin.get_template_names().collect();
        names.sort_unstable();
        assert_eq!(
            names,
            ["email/base.html", "email/base.txt", "email/invite.txt"]
        );
        for (name, text) in BODIES {
            plugin.add_raw_template(name, text).unwrap();
        }
        let context = tera::Context::from_value(serde_json::json!({
            "title": "Sync", "url": "https://x.example/j/a", "inviter": null,
            "inviter_email": null, "recipient_name": null, "when": null, "repeats": null,
            "previous_when": null, "note": null, "calendar": null, "revoked": false,
        }))
        .unwrap();
        assert_eq!(
            plugin.render("email/invite.txt", &context).unwrap(),
            "Come to Sync: https://x.example/j/a\n"
        );
        let update = plugin.render("update.txt", &context).unwrap();
        assert!(
            update.starts_with("Hi!\nThe call changed: Sync\n"),
            "{update}"
        );
        assert!(update.ends_with("\n-- \nExample Org\n"), "{update}");
    }
}
