//! The server's templates, built into the binary from `templates/`, each
//! overridable by a file of the same name under `templates.dir`:
//!
//! - `pages/*.html`: the web pages;
//! - `email/*.html` and `email/*.txt`: the bodies of invitations, updates and
//!   cancellations, which plugins with the `templates` permission render (a plugin's
//!   own template of the same name wins).

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
        "email/invite.html",
        include_str!("../../templates/email/invite.html"),
    ),
    (
        "email/invite.txt",
        include_str!("../../templates/email/invite.txt"),
    ),
    (
        "email/update.html",
        include_str!("../../templates/email/update.html"),
    ),
    (
        "email/update.txt",
        include_str!("../../templates/email/update.txt"),
    ),
    (
        "email/cancel.html",
        include_str!("../../templates/email/cancel.html"),
    ),
    (
        "email/cancel.txt",
        include_str!("../../templates/email/cancel.txt"),
    ),
];

/// Whether plugins may render the server's template `name`.
pub fn shared_with_plugins(name: &str) -> bool {
    name.starts_with("email/")
}

/// Loads the templates, preferring operator overrides from `dir` (if not empty).
pub fn load(dir: &str) -> Result<Tera, String> {
    let mut sources: Vec<(String, String)> = Vec::with_capacity(BUILT_IN.len());
    for (name, text) in BUILT_IN {
        let override_path = (!dir.is_empty()).then(|| Path::new(dir).join(name));
        let text = match override_path.filter(|p| p.is_file()) {
            Some(path) => {
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => (*text).to_string(),
        };
        sources.push((name.to_string(), text));
    }
    let mut tera = Tera::default();
    // Autoescaping applies to names ending in .html: every user-supplied string is escaped.
    tera.add_raw_templates(sources)
        .map_err(|e| format!("{e:?}"))?;
    Ok(tera)
}
