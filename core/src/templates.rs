//! Page templates: built into the binary from `templates/pages/`, each overridable
//! by a file of the same name under `templates.dir`.

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
];

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
