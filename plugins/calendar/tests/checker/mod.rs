//! The independent parser: runs `check_ics.py` (Python's `icalendar` package) on a
//! produced file. Shared by this crate's tests and the server's
//! (`core/tests/it/calendar.rs` includes this file).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Once;

use serde_json::Value;

/// Fails (never skips) when Python or its `icalendar` package is missing.
fn require_python() {
    static CHECKED: Once = Once::new();
    CHECKED.call_once(|| {
        let status = Command::new("python3")
            .args(["-c", "import icalendar"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(_) => panic!(
                "the independent-parser tests need Python's icalendar package: pip install icalendar"
            ),
            Err(e) => panic!(
                "the independent-parser tests need python3 ({e}) with the icalendar package: pip install icalendar"
            ),
        }
    });
}

/// Writes `ics` to `dir/name` and runs `script` (check_ics.py) on it with `expect`;
/// fails with what the checker found wrong.
pub fn check_ics(script: &Path, dir: &Path, name: &str, ics: &str, expect: Value) {
    require_python();
    std::fs::create_dir_all(dir).unwrap();
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, ics).unwrap();
    let mut child = Command::new("python3")
        .arg(script)
        .arg(&path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(expect.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{name} ({}):\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
