//! Misbehaves on request, so that confab-plugin-test's own tests can check the
//! sandbox: `/loop`, `/balloon`, `/panic`, `/status`, `/echo` (the request's headers
//! back, with headers the server does not let a plugin set), `/stdout`, `/clock`
//! (the plugin's wall clock) and `/kv` (a capability it does not ask for).

use confab_plugin_sdk::{HttpRequest, HttpResponse, Plugin, export_plugin, kv};

struct Probe;

impl Plugin for Probe {
    fn handle_http(request: HttpRequest) -> HttpResponse {
        match request.path.as_str() {
            "/loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/balloon" => {
                let mut kept = Vec::new();
                loop {
                    kept.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&kept);
                }
            }
            "/panic" => panic!("asked to panic"),
            "/status" => HttpResponse::text(42, "not a status"),
            "/echo" => {
                let mut names: Vec<&str> =
                    request.headers.iter().map(|(n, _)| n.as_str()).collect();
                names.sort();
                HttpResponse::text(200, names.join(","))
                    .with_header("set-cookie", "session=stolen")
                    .with_header("x-probe", "yes")
            }
            "/stdout" => {
                println!("to stdout");
                eprintln!("to stderr");
                HttpResponse::text(200, "printed")
            }
            "/clock" => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis());
                HttpResponse::text(200, now.to_string())
            }
            "/kv" => match kv::set("k", "v") {
                Ok(()) => HttpResponse::text(200, "stored"),
                Err(e) => HttpResponse::text(403, format!("{e:?}")),
            },
            _ => HttpResponse::text(404, "not found"),
        }
    }
}

export_plugin!(Probe);
