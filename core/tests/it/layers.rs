//! The layers of `core/src` point one way (docs/architecture.md): this reads every
//! `crate::…` path in the non-test code of each top-level module and fails on an
//! import that points up, or on SQL (`sea_orm`) outside `store`.
//!
//! The imports that still point the wrong way are listed in [`KNOWN`]. The list only
//! shrinks: a new upward import fails, and so does an entry that no longer holds
//! (remove it when the import is gone).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that import no other module of the crate.
const GROUND: &[&str] = &[
    "clock",
    "config",
    "limits",
    "secret",
    "shutdown",
    "store",
    "templates",
    "validate",
];
/// Modules over the ground that know nothing of calls, media, plugins or the edges.
const DOMAIN: &[&str] = &[
    "accounts", "cluster", "links", "mail", "metrics", "policy", "privacy",
];
/// The outermost edges: the router (which mounts the signaling WebSocket) and the
/// fuzz targets. Nothing imports them.
const EDGES: &[&str] = &["http", "fuzz"];

/// Imports that point the wrong way today, as (from, to).
const KNOWN: &[(&str, &str)] = &[];

/// The one module that talks SQL (sea_orm).
const SQL: &[&str] = &["store"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file without its inline `#[cfg(test)] mod tests { … }` (by convention at
/// the end).
fn non_test(text: &str) -> &str {
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let next = text[at + line.len()..].lines().next().unwrap_or("").trim();
        if line.trim() == "#[cfg(test)]" && next.starts_with("mod ") && next.ends_with('{') {
            return &text[..at];
        }
        at += line.len();
    }
    text
}

/// Test-only files of a module (`#[cfg(test)] mod tests;`).
fn is_test_file(path: &Path) -> bool {
    let name = path.file_stem().unwrap().to_string_lossy();
    name == "tests" || name.ends_with("_tests")
}

/// Every top-level module named by a `crate::` path in `text`, including each
/// name of a `use crate::{a, b::c}` group.
fn crate_paths(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 1;
            let mut name = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => name.clear(),
                    c if depth == 1 && (c.is_alphanumeric() || c == '_') => {
                        name.push(c);
                        if modules.contains(&name) {
                            found.insert(name.clone());
                        }
                    }
                    _ if depth == 1 && !modules.contains(&name) => name.clear(),
                    _ => {}
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(&name) {
                found.insert(name);
            }
        }
    }
    found
}

/// For each top-level module: the modules it imports, and whether it uses sea_orm.
fn imports() -> BTreeMap<String, (BTreeSet<String>, bool)> {
    let root = src();
    let mut modules = BTreeSet::new();
    for entry in std::fs::read_dir(&root).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        // The binary (main.rs and its command groups in cli/) is an entry point.
        if name != "lib" && name != "main" && name != "cli" {
            modules.insert(name);
        }
    }
    let mut out = BTreeMap::new();
    let mut all = Vec::new();
    files(&root, &mut all);
    for file in all {
        let relative = file.strip_prefix(&root).unwrap();
        let first = relative.components().next().unwrap();
        let module = Path::new(first.as_os_str())
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        if !modules.contains(&module) || is_test_file(&file) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let code = non_test(&text);
        let entry = out
            .entry(module.clone())
            .or_insert_with(|| (BTreeSet::new(), false));
        for used in crate_paths(code, &modules) {
            if used != module {
                entry.0.insert(used);
            }
        }
        entry.1 |= code.contains("sea_orm");
    }
    out
}

/// Whether `from` importing `to` points down (or sideways within its layer).
fn allowed(from: &str, to: &str) -> bool {
    let layer = |m: &str| {
        if GROUND.contains(&m) {
            0
        } else if DOMAIN.contains(&m) {
            1
        } else if m == "sfu" {
            2
        } else if m == "plugins" {
            3
        } else if m == "protocol" {
            4
        } else if m == "calls" {
            5
        } else if m == "signaling" {
            6
        } else if EDGES.contains(&m) {
            7
        } else {
            panic!("module {m} is in no layer: add it to docs/architecture.md and to this test")
        }
    };
    match (layer(from), layer(to)) {
        // The ground stands on nothing.
        (0, _) => false,
        (a, b) => b <= a,
    }
}

#[test]
fn the_layers_point_one_way_and_only_the_store_speaks_sql() {
    let found = imports();
    let mut wrong = Vec::new();
    let mut stale = Vec::new();
    for (from, (uses, _)) in &found {
        for to in uses {
            let known = KNOWN.contains(&(from.as_str(), to.as_str()));
            if !allowed(from, to) && !known {
                wrong.push(format!("{from} imports {to}"));
            }
        }
    }
    for (from, to) in KNOWN {
        if !found.get(*from).is_some_and(|(uses, _)| uses.contains(*to)) {
            stale.push(format!("{from} no longer imports {to}"));
        }
    }
    for (module, (_, sql)) in &found {
        if *sql && !SQL.contains(&module.as_str()) {
            wrong.push(format!("{module} uses sea_orm; only store may"));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers (docs/architecture.md): {wrong:?}"
    );
    assert!(
        stale.is_empty(),
        "known exceptions that no longer hold; remove them from KNOWN/SQL: {stale:?}"
    );
}

#[test]
fn the_reader_finds_grouped_and_inline_paths() {
    let modules: BTreeSet<String> = ["calls", "sfu", "store", "http"]
        .into_iter()
        .map(String::from)
        .collect();
    let text = "use crate::{calls::{A, B}, sfu};\nfn f() { crate::store::x(); crate::AppState; }";
    let found = crate_paths(text, &modules);
    assert_eq!(
        found.into_iter().collect::<Vec<_>>(),
        ["calls", "sfu", "store"]
    );
    let with_tests = "use crate::calls;\n#[cfg(test)]\nmod tests {\n use crate::http;\n}\n";
    assert!(!crate_paths(non_test(with_tests), &modules).contains("http"));
    let declared = "#[cfg(test)]\nmod tests;\nuse crate::http;\n";
    assert!(crate_paths(non_test(declared), &modules).contains("http"));
}
