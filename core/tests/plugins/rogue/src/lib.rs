//! A plugin that misbehaves on request, for the sandbox tests.

use confab_plugin_sdk::{
    Decision, HttpRequest, HttpResponse, LobbyRequest, Plugin, export_plugin, kv,
};

struct Rogue;

impl Plugin for Rogue {
    fn handle_http(request: HttpRequest) -> HttpResponse {
        match request.path.as_str() {
            "/ok" => HttpResponse::text(200, "still here"),
            "/loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "/balloon" => {
                let mut chunks: Vec<Vec<u8>> = Vec::new();
                loop {
                    chunks.push(std::hint::black_box(vec![1u8; 4 << 20]));
                }
            }
            "/panic" => panic!("asked to panic"),
            "/stdout" => {
                println!("rogue says hello on stdout");
                eprintln!("rogue says hello on stderr");
                HttpResponse::text(200, "printed")
            }
            "/kv" => match kv::set("k", b"v") {
                Ok(()) => HttpResponse::text(200, "stored"),
                Err(e) => HttpResponse::text(403, format!("{e:?}")),
            },
            "/headers" => HttpResponse::text(200, "headers")
                .with_header("set-cookie", "confab_session=stolen")
                .with_header("content-security-policy", "default-src *")
                .with_header("x-rogue", "yes"),
            "/echo" => {
                let mut lines: Vec<String> = request
                    .headers
                    .iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect();
                lines.push(format!("user: {:?}", request.user));
                lines.push(format!("query: {}", request.query));
                HttpResponse::text(200, lines.join("\n"))
            }
            "/status" => HttpResponse::text(42, "bad status"),
            _ => HttpResponse::text(404, "no such page"),
        }
    }

    fn lobby_decision(request: LobbyRequest) -> Decision {
        if request.name == "slow" {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Decision::Flag(format!("{} looks suspicious", request.name))
    }
}

export_plugin!(Rogue);
