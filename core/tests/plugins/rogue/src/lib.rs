//! A plugin that misbehaves on request, for the sandbox tests.

use confab_plugin_sdk::{
    Decision, Error, Event, HttpRequest, HttpResponse, LobbyRequest, Plugin, export_plugin, http,
    kv, mail,
};

struct Rogue;

impl Plugin for Rogue {
    fn handle_http(request: HttpRequest) -> HttpResponse {
        match request.path.as_str() {
            "/ok" => HttpResponse::text(200, "still here"),
            "/page" => HttpResponse::html(
                200,
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>rogue</title>\
                 <script type=\"module\" src=\"/p/rogue/static/hostile-page.js\"></script></head>\
                 <body><pre id=\"results\">probing</pre></body></html>",
            ),
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
                Err(e) => refused(e),
            },
            "/headers" => HttpResponse::text(200, "headers")
                .with_header("set-cookie", "confab_session=stolen")
                .with_header("content-security-policy", "default-src *")
                .with_header("clear-site-data", "\"storage\", \"cookies\"")
                .with_header("service-worker-allowed", "/")
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
            "/mail" => queue_mail(&request.body),
            "/fetch" => fetch(&request.body),
            // Holds its slot for the number of milliseconds in the body; notes in kv
            // that it started (the tests grant `kv` for this).
            "/sleep" => {
                let ms = request.text().unwrap_or("").trim().parse().unwrap_or(100);
                if let Err(e) = kv::set("sleeping", b"yes") {
                    return refused(e);
                }
                std::thread::sleep(std::time::Duration::from_millis(ms));
                HttpResponse::text(200, "slept")
            }
            "/fired" => match kv::keys("fired:", None, 100) {
                Ok(keys) => HttpResponse::text(200, keys.join("\n")),
                Err(e) => refused(e),
            },
            "/runs" => match kv::keys("runs:", None, 100) {
                Ok(keys) => HttpResponse::text(200, keys.join("\n")),
                Err(e) => refused(e),
            },
            _ => HttpResponse::text(404, "no such page"),
        }
    }

    /// Notes each call event under its own key (where the tests grant `kv`).
    fn on_event(event: Event) {
        let kind = match event {
            Event::CallStarted(_) => "call-started",
            Event::ParticipantJoined(_) => "participant-joined",
            _ => return,
        };
        let _ = kv::set(&format!("runs:{kind}:{}", nanos()), b"1");
    }

    /// Notes that the timer fired, and each run under its own key (the tests
    /// grant `kv` for this).
    fn on_timer(name: String) {
        let _ = kv::set(&format!("fired:{name}"), b"1");
        let _ = kv::set(&format!("runs:{name}:{}", nanos()), b"1");
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

/// The capability's error as the response: 403 for a refusal, 422 otherwise.
/// Nanoseconds since the Unix epoch: a key of its own for each run.
fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

fn refused(error: Error) -> HttpResponse {
    let status = if matches!(error, Error::AccessDenied(_)) {
        403
    } else {
        422
    };
    HttpResponse::text(status, format!("{error:?}"))
}

/// Queues a message whose subject is the request body; answers the outbox id.
fn queue_mail(subject: &[u8]) -> HttpResponse {
    let message = mail::Message {
        to: vec!["Ana <ana@example.org>".into(), "bo@example.org".into()],
        cc: vec!["cy@example.org".into()],
        reply_to: Some("desk@example.org".into()),
        subject: String::from_utf8_lossy(subject).into_owned(),
        text: "Join at https://confab.example/j/abc#k=secret".into(),
        html: Some(
            "<p>Join at <a href=\"https://confab.example/j/abc#k=secret\">the call</a></p>".into(),
        ),
        attachments: vec![mail::Attachment {
            filename: "invite.ics".into(),
            content_type: "text/calendar; charset=UTF-8; method=REQUEST".into(),
            data: b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n".to_vec(),
            inline_alternative: true,
        }],
    };
    match mail::queue(&message) {
        Ok(id) => HttpResponse::text(200, id),
        Err(e) => refused(e),
    }
}

/// GETs the URL in the request body with an `x-rogue` header; answers the status, the
/// `x-served-by` and `location` headers and the body, one per line.
fn fetch(url: &[u8]) -> HttpResponse {
    let request = http::Request {
        method: "GET".into(),
        url: String::from_utf8_lossy(url).into_owned(),
        headers: vec![("x-rogue".into(), "asks".into())],
        body: Vec::new(),
        timeout_ms: Some(5000),
    };
    match http::send(&request) {
        Ok(response) => {
            let header = |name: &str| {
                response
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map_or("-", |(_, v)| v.as_str())
                    .to_string()
            };
            let lines = [
                response.status.to_string(),
                header("x-served-by"),
                header("location"),
                String::from_utf8_lossy(&response.body).into_owned(),
            ];
            HttpResponse::text(200, lines.join("\n"))
        }
        Err(e) => refused(e),
    }
}

export_plugin!(Rogue);
