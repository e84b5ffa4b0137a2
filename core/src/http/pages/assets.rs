//! The files under `core/static/`, built into the binary and served at
//! `/static/{*file}`.

use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One file of `core/static/`, built into the binary: its path under `/static/`
/// and its contents.
macro_rules! static_file {
    ($path:literal) => {
        ($path, include_str!(concat!("../../../static/", $path)))
    };
}

/// Every file under `core/static/` (a test checks that none is missing).
pub(super) const STATIC_FILES: &[(&str, &str)] = &[
    static_file!("app.css"),
    static_file!("dashboard.js"),
    static_file!("call.js"),
    static_file!("media.js"),
    static_file!("plugins.js"),
    static_file!("e2ee.js"),
    static_file!("e2ee-worker.js"),
    static_file!("call-crypto.js"),
    static_file!("call/signaling.js"),
    static_file!("call/state.js"),
    static_file!("call/secret.js"),
    static_file!("call/views.js"),
    static_file!("call/tiles.js"),
    static_file!("call/ducking.js"),
    static_file!("lib/dom.js"),
    static_file!("lib/time.js"),
    static_file!("lib/random.js"),
    static_file!("lib/plugin-frames.js"),
    static_file!("plugin-kit.js"),
    static_file!("lib/base64.js"),
    static_file!("lib/still.js"),
    static_file!("lib/activity.js"),
];

pub(super) async fn static_file(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let Some(&(_, body)) = STATIC_FILES.iter().find(|(path, _)| *path == file) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let content_type = if file.ends_with(".css") {
        "text/css; charset=utf-8"
    } else {
        "text/javascript; charset=utf-8"
    };
    let etag = format!("\"{}\"", &crate::secret::sha256_hex(body)[..16]);
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        == Some(etag.as_str())
    {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CACHE_CONTROL, "public, max-age=300".to_string()),
            (header::ETAG, etag),
            // Plugin frames (an opaque origin) load the kit as a cross-origin module.
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*".to_string()),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_under_core_static_is_served() {
        fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    let relative = path.strip_prefix(root).unwrap();
                    out.push(relative.to_string_lossy().into_owned());
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static");
        let mut on_disk = Vec::new();
        walk(&root, &root, &mut on_disk);
        on_disk.sort();
        let mut served: Vec<String> = STATIC_FILES.iter().map(|(p, _)| p.to_string()).collect();
        served.sort();
        assert_eq!(
            served, on_disk,
            "list new files of core/static in STATIC_FILES"
        );
    }
}
