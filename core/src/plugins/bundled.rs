//! The plugins shipped inside the `confab` binary (built from `plugins/` by
//! `core/build.rs`). At start they are written to `{data_dir}/bundled-plugins/{name}/`
//! and loaded from there like any plugin, with [`super::PluginOrigin::Bundled`]: granted
//! what their manifests ask for unless the operator narrows it. A plugin of the same
//! name in `plugins.dir` replaces the bundled one.

use std::path::{Path, PathBuf};

/// A plugin embedded in the binary.
pub struct Bundled {
    pub name: &'static str,
    /// Its `plugin.toml`, as in the source tree.
    pub manifest: &'static str,
    /// The component (wasm32-wasip2).
    pub component: &'static [u8],
    /// Files of `static/` and `templates/`, by path relative to the plugin.
    pub files: &'static [(&'static str, &'static [u8])],
}

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));

/// Names of the bundled plugins.
pub fn names() -> impl Iterator<Item = &'static str> {
    BUNDLED.iter().map(|b| b.name)
}

/// Writes the bundled plugins under `dir` (a directory each) and returns those
/// directories. Files already there with the same content are left alone, so their
/// modification times stay and the host does not reload them.
pub fn install(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for plugin in BUNDLED {
        let home = dir.join(plugin.name);
        write_if_changed(
            &home.join("plugin.toml"),
            manifest_for_install(plugin.manifest).as_bytes(),
        )?;
        write_if_changed(&home.join("plugin.wasm"), plugin.component)?;
        for (path, bytes) in plugin.files {
            write_if_changed(&home.join(path), bytes)?;
        }
        out.push(home);
    }
    Ok(out)
}

/// The manifest with `component` pointing at the installed `plugin.wasm`.
fn manifest_for_install(manifest: &str) -> String {
    manifest
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("component") && line.contains('=') {
                "component = \"plugin.wasm\""
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if std::fs::read(path).is_ok_and(|current| current == bytes) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // Written whole, then renamed: a watching host never sees half a file.
    let partial = path.with_extension("partial");
    std::fs::write(&partial, bytes)?;
    std::fs::rename(&partial, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_installed_manifest_points_at_the_installed_component() {
        let manifest =
            "name = \"x\"\ncomponent = \"../../target/wasm32-wasip2/release/x.wasm\"\nhooks = []";
        let installed = manifest_for_install(manifest);
        assert!(
            installed.contains("component = \"plugin.wasm\""),
            "{installed}"
        );
        assert!(installed.contains("name = \"x\"") && installed.contains("hooks = []"));
    }

    #[test]
    fn installing_twice_leaves_unchanged_files_alone() {
        let dir = std::env::temp_dir().join(format!("confab-bundled-{}", std::process::id()));
        let file = dir.join("a/b.txt");
        write_if_changed(&file, b"one").unwrap();
        let first = std::fs::metadata(&file).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_if_changed(&file, b"one").unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().modified().unwrap(), first);
        write_if_changed(&file, b"two").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
