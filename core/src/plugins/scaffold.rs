//! `confab plugin new NAME`: a plugin crate that builds and loads as it is.

use std::path::{Path, PathBuf};

use crate::policy::valid_plugin_name;

/// Where the new crate gets `confab-plugin-sdk` from.
pub enum SdkSource {
    /// A path to the `sdk/` directory (inside a Confab checkout).
    Path(PathBuf),
    /// The published crate.
    Registry,
}

/// Writes a new plugin crate into `dir` (which must not exist yet) and returns the
/// files it wrote.
pub fn scaffold(name: &str, dir: &Path, sdk: &SdkSource) -> Result<Vec<PathBuf>, String> {
    if !valid_plugin_name(name) {
        return Err(format!(
            "{name:?} is not a plugin name: use 1–64 of a-z, 0-9 and -"
        ));
    }
    if dir.exists() {
        return Err(format!("{} already exists", dir.display()));
    }
    let krate = format!("{name}-plugin");
    let artifact = krate.replace('-', "_");
    let dependency = match sdk {
        SdkSource::Path(path) => format!("{{ path = {:?} }}", path.display().to_string()),
        SdkSource::Registry => format!("\"{}\"", super::SDK_VERSION.major),
    };
    let files = [
        (
            "Cargo.toml",
            format!(
                r#"[package]
name = "{krate}"
version = "0.1.0"
edition = "2024"
publish = false

# A plugin is a WebAssembly component: build it with
#   cargo build --release --target wasm32-wasip2
[workspace]

[lib]
crate-type = ["cdylib"]

[dependencies]
confab-plugin-sdk = {dependency}

[profile.release]
opt-level = "s"
lto = true
strip = true
"#
            ),
        ),
        (
            "rust-toolchain.toml",
            "[toolchain]\nchannel = \"stable\"\ntargets = [\"wasm32-wasip2\"]\n".to_string(),
        ),
        (
            "plugin.toml",
            format!(
                r#"name = "{name}"
version = "0.1.0"
description = "What {name} does"
sdk = "^{major}.{minor}"
component = "target/wasm32-wasip2/release/{artifact}.wasm"
hooks = ["http", "events"]
events = ["link-created"]

[permissions]
kv = {{ quota-bytes = 65536 }}

[limits]
memory-mib = 32
deadline-ms = 200

# Web code runs in a sandboxed frame on the call page; static/call-page.js uses the
# handle /static/plugin-kit.js gives it (the SDK's README, "Web code in sandboxed frames").
[web]
static = "static"
call-page = "call-page.js"
"#,
                major = super::SDK_VERSION.major,
                minor = super::SDK_VERSION.minor,
            ),
        ),
        (
            "src/lib.rs",
            format!(
                r#"//! The {name} plugin.

use confab_plugin_sdk::{{Event, HttpRequest, HttpResponse, Plugin, export_plugin, kv, log}};

struct {type_name};

impl Plugin for {type_name} {{
    /// `GET /p/{name}/` answers with how many links were created since the plugin started
    /// counting.
    fn handle_http(request: HttpRequest) -> HttpResponse {{
        match (request.method.as_str(), request.path.as_str()) {{
            ("GET", "/") => {{
                let count = kv::get_string("links-created").ok().flatten().unwrap_or_else(|| "0".into());
                HttpResponse::text(200, format!("{name}: {{count}} links created"))
            }}
            _ => HttpResponse::text(404, "not found"),
        }}
    }}

    fn on_event(event: Event) {{
        if let Event::LinkCreated(link) = event {{
            let count = kv::get_string("links-created")
                .ok()
                .flatten()
                .and_then(|c| c.parse::<u64>().ok())
                .unwrap_or(0);
            if let Err(e) = kv::set("links-created", (count + 1).to_string()) {{
                log::warn(&format!("cannot count link {{}}: {{e:?}}", link.id));
            }}
        }}
    }}
}}

export_plugin!({type_name});
"#,
                type_name = type_name(name),
            ),
        ),
        (
            "README.md",
            format!(
                "# {name}\n\nA Confab plugin.\n\n```sh\ncargo build --release --target wasm32-wasip2\n```\n\nThen point the server at this directory (`plugins.paths = [\"{}\"]` in confab.toml)\nand grant what `plugin.toml` asks for:\n\n```toml\n[plugins.settings.{name}]\ngrant = [\"kv\", \"web.call-page\"]\n```\n\nThe server reloads the plugin when you rebuild it. See the SDK's README for every\nhook and capability.\n",
                dir.display()
            ),
        ),
        (
            "static/call-page.js",
            format!(
                r#"// The {name} plugin on the call page. This module runs in a sandboxed frame:
// it reaches the call and the plugin's own routes only through `plugin`, the
// handle the kit gives it (see the SDK's README, "Web code in sandboxed frames").
export default async function setup(plugin) {{
  const title = document.createElement("h3");
  title.textContent = "{name}";
  const count = document.createElement("p");
  const people = document.createElement("p");
  people.className = "hint";
  plugin.element.append(title, count, people);

  const showPeople = (list) => {{
    people.textContent = `${{list.length}} on the call`;
  }};
  showPeople(plugin.participants());
  plugin.onParticipants(showPeople);

  // GET /p/{name}/ as the person who views the page.
  const response = await plugin.fetch("/");
  count.textContent = response.ok ? await response.text() : `The plugin answered ${{response.status}}.`;
}}
"#
            ),
        ),
        (".gitignore", "/target\n".to_string()),
    ];
    let mut written = Vec::new();
    for (file, text) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// `watch-together` → `WatchTogether`.
fn type_name(name: &str) -> String {
    let mut out = String::new();
    for part in name.split('-').filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            if out.is_empty() && first.is_ascii_digit() {
                out.push('P');
            }
            out.push(first.to_ascii_uppercase());
            out.extend(chars);
        }
    }
    if out.is_empty() {
        "MyPlugin".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_rust_identifiers() {
        assert_eq!(type_name("watch-together"), "WatchTogether");
        assert_eq!(type_name("3d"), "P3d");
        assert_eq!(type_name("a--b"), "AB");
    }

    #[test]
    fn a_scaffold_has_a_valid_manifest_and_refuses_bad_names_and_existing_dirs() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("greeter");
        let files = scaffold("greeter", &dir, &SdkSource::Registry).unwrap();
        assert_eq!(files.len(), 7);
        let manifest = super::super::Manifest::parse(
            &std::fs::read_to_string(dir.join("plugin.toml")).unwrap(),
        )
        .unwrap();
        assert_eq!(manifest.name, "greeter");
        assert_eq!(
            manifest.component,
            "target/wasm32-wasip2/release/greeter_plugin.wasm"
        );
        // Its web code runs in a frame, through the kit.
        assert_eq!(manifest.web.call_page.as_deref(), Some("call-page.js"));
        assert_eq!(
            manifest.requested(),
            [
                super::super::Capability::Kv,
                super::super::Capability::WebCallPage
            ]
        );
        let module = std::fs::read_to_string(dir.join("static/call-page.js")).unwrap();
        assert!(module.contains("export default async function setup(plugin)"));
        assert!(module.contains("plugin.fetch(\"/\")"));
        assert!(
            scaffold("greeter", &dir, &SdkSource::Registry)
                .unwrap_err()
                .contains("already exists")
        );
        assert!(scaffold("Bad Name", &tmp.path().join("x"), &SdkSource::Registry).is_err());
    }
}
