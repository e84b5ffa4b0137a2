//! Building a plugin crate for `wasm32-wasip2` with plain cargo, from a test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// Builds the plugin crate in `crate_dir` with
/// `cargo build --release --target wasm32-wasip2` and returns the path of its
/// component (the `.wasm` file).
///
/// The build goes to `plugin-builds/` inside the crate's (or its workspace's)
/// target directory, never to the target directory of the `cargo test` that runs
/// the caller, which that cargo keeps locked. None of the running cargo's settings
/// (`CARGO_*` but `CARGO_HOME`, `RUSTC_*`, `RUSTFLAGS`) reach the build. Each crate
/// is built once per process; later calls return the same path.
///
/// # Panics
///
/// When cargo cannot be run, the build fails (cargo's messages are on stderr) or
/// the crate produces no `.wasm` file (its `crate-type` must include `cdylib`).
pub fn build(crate_dir: impl AsRef<Path>) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<PathBuf, PathBuf>>> = Mutex::new(None);
    let crate_dir = crate_dir.as_ref();
    let crate_dir = crate_dir
        .canonicalize()
        .unwrap_or_else(|e| panic!("cannot find the plugin crate {}: {e}", crate_dir.display()));
    // One build at a time: the first caller builds, the others wait for its result.
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(wasm) = built.get(&crate_dir) {
        return wasm.clone();
    }
    let wasm = build_now(&crate_dir);
    built.insert(crate_dir, wasm.clone());
    wasm
}

/// `cargo` with none of the calling cargo's settings.
fn cargo(crate_dir: &Path, keep: &[&str]) -> Command {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.current_dir(crate_dir);
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let inherited = key.starts_with("CARGO_") && key != "CARGO_HOME";
        if (inherited || key.starts_with("RUSTC_") || key == "RUSTFLAGS") && !keep.contains(&key) {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn run_json(mut cmd: Command, what: &str) -> Vec<serde_json::Value> {
    let output = cmd
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to {what}: {e}"));
    assert!(
        output.status.success(),
        "cargo could not {what} ({}); its messages are above",
        output.status
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn build_now(crate_dir: &Path) -> PathBuf {
    let manifest = crate_dir.join("Cargo.toml");
    let manifest = manifest.canonicalize().unwrap_or(manifest);
    // Where the crate's own builds go (its workspace's, or CARGO_TARGET_DIR).
    let mut metadata = cargo(crate_dir, &["CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR"]);
    metadata
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(&manifest);
    let target = run_json(metadata, "read the crate's metadata")
        .first()
        .and_then(|m| m["target_directory"].as_str())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate_dir.join("target"))
        .join("plugin-builds");

    let mut build = cargo(crate_dir, &[]);
    build
        .args(["build", "--release", "--target", "wasm32-wasip2", "--quiet"])
        .args([
            "--message-format",
            "json-render-diagnostics",
            "--manifest-path",
        ])
        .arg(&manifest)
        .env("CARGO_TARGET_DIR", &target);
    let what = format!("build {} for wasm32-wasip2", crate_dir.display());
    let messages = run_json(build, &what);
    messages
        .iter()
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["manifest_path"]
                .as_str()
                .and_then(|p| Path::new(p).canonicalize().ok())
                .is_some_and(|p| p == manifest)
        })
        .flat_map(|m| m["filenames"].as_array().cloned().unwrap_or_default())
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        .unwrap_or_else(|| {
            panic!(
                "building {} produced no .wasm file: its [lib] crate-type must include \"cdylib\"",
                crate_dir.display()
            )
        })
}
