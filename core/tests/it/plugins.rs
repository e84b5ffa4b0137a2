//! Plugins: real components (examples/hello-plugin and the misbehaving
//! tests/plugins/rogue), built for wasm32-wasip2 by the tests, loaded by the host.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use axum::http::StatusCode;
use confab_core::accounts::Role;
use confab_core::config::{Config, PluginSettings};
use confab_core::plugins::{CallInfo, LobbyInfo, Verdict};
use serde_json::{Value, json};

pub use crate::plugin_build::build_plugin;
use crate::support::TestApp;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn hello_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| build_plugin(&repo().join("examples/hello-plugin"), "hello_plugin.wasm"))
}

fn rogue_wasm() -> &'static Path {
    static WASM: OnceLock<PathBuf> = OnceLock::new();
    WASM.get_or_init(|| {
        build_plugin(
            &repo().join("core/tests/plugins/rogue"),
            "rogue_plugin.wasm",
        )
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Installs a plugin the way an operator does: a directory with plugin.toml, the
/// component as plugin.wasm, and the plugin's static files and templates.
fn install(plugins_dir: &Path, crate_dir: &Path, wasm: &Path, name: &str) -> PathBuf {
    let dir = plugins_dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let manifest = std::fs::read_to_string(crate_dir.join("plugin.toml")).unwrap();
    let manifest: String = manifest
        .lines()
        .map(|l| {
            if l.starts_with("component = ") {
                "component = \"plugin.wasm\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("plugin.toml"), manifest).unwrap();
    std::fs::copy(wasm, dir.join("plugin.wasm")).unwrap();
    for sub in ["static", "templates"] {
        if crate_dir.join(sub).is_dir() {
            copy_dir(&crate_dir.join(sub), &dir.join(sub));
        }
    }
    dir
}

fn grant(config: &mut Config, plugin: &str, caps: &[&str], settings: &[(&str, &str)]) {
    config.plugins.settings.insert(
        plugin.into(),
        PluginSettings {
            grant: Some(caps.iter().map(|c| c.to_string()).collect()),
            config: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        },
    );
}

/// Installs the hello plugin (granted what it asks for) and the rogue plugin into a
/// new directory; returns it with the settings for a [`Config`].
pub(crate) fn hello_and_rogue() -> (tempfile::TempDir, impl FnOnce(&mut Config)) {
    let plugins = tempfile::tempdir().unwrap();
    install(
        plugins.path(),
        &repo().join("examples/hello-plugin"),
        hello_wasm(),
        "hello",
    );
    install(
        plugins.path(),
        &repo().join("core/tests/plugins/rogue"),
        rogue_wasm(),
        "rogue",
    );
    let dir = plugins.path().to_path_buf();
    let configure = move |c: &mut Config| {
        c.plugins.dir = dir.display().to_string();
        c.plugins.cache_dir = dir.join(".cache").display().to_string();
        grant(
            c,
            "hello",
            &["kv", "links", "calls", "templates", "web.call-page"],
            &[("greeting", "Hi"), ("blocked-word", "spam")],
        );
        c.plugins.failures_before_disable = 3;
    };
    (plugins, configure)
}

/// An app with the hello plugin installed (and granted what it asks for) and the
/// rogue plugin.
pub(crate) async fn app_with_plugins(
    tweak: impl FnOnce(&mut Config),
) -> (TestApp, tempfile::TempDir) {
    let (plugins, configure) = hello_and_rogue();
    let app = TestApp::sqlite_with(move |c| {
        configure(c);
        tweak(c);
    })
    .await;
    (app, plugins)
}

async fn plugin_info(app: &TestApp, admin: &str, name: &str) -> Value {
    let res = app
        .get(&format!("/api/v1/admin/plugins/{name}"))
        .bearer(admin)
        .send()
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    res.json()
}

#[tokio::test]
async fn a_plugin_serves_pages_with_its_template_settings_and_storage() {
    let (app, _dir) = app_with_plugins(|_| {}).await;
    let first = app.get("/p/hello/?name=Ana").send().await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    let page = first.text();
    assert!(page.contains("Hi, Ana!"), "{page}");
    assert!(page.contains("visited 1 times"), "{page}");
    let second = app.get("/p/hello/?name=%3Cb%3E").send().await.text();
    assert!(
        second.contains("visited 2 times"),
        "the counter is kept: {second}"
    );
    // tera escapes HTML in .html templates
    assert!(
        second.contains("&lt;b&gt;") && !second.contains("<b>"),
        "{second}"
    );
    assert!(
        first.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox allow-scripts"),
        "plugin pages are sandboxed: no access to Confab's cookies, storage or pages"
    );
    assert!(
        !first.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("allow-same-origin")
    );
    let missing = app.get("/p/hello/nothing-here").send().await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let js = app.get("/p/hello/static/hello.js").send().await;
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(js.headers["content-type"], "text/javascript; charset=utf-8");
    assert!(js.text().contains("onMessage"));
    for bad in [
        "/p/hello/static/../plugin.toml",
        "/p/hello/static/%2e%2e/plugin.toml",
        "/p/hello/static/nope.js",
    ] {
        assert_eq!(
            app.get(bad).send().await.status,
            StatusCode::NOT_FOUND,
            "{bad}"
        );
    }
    let unknown = app.get("/p/nobody/").send().await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.error_code(), "not_found");
}

#[tokio::test]
async fn capabilities_the_operator_did_not_grant_are_refused_without_a_trap() {
    let (app, _dir) = app_with_plugins(|c| {
        grant(c, "hello", &["kv"], &[]);
    })
    .await;
    let admin = app.admin_token().await;
    // Templates are requested by the plugin but not granted: the plugin gets a typed
    // error and answers 500 itself; the invocation did not fail.
    let res = app.get("/p/hello/").send().await;
    assert_eq!(res.status, StatusCode::INTERNAL_SERVER_ERROR);
    let body = res.text();
    assert!(
        body.contains("AccessDenied") && body.contains("has not granted templates"),
        "{body}"
    );
    // The rogue plugin asks for no kv at all.
    let res = app.get("/p/rogue/kv").send().await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert!(
        res.text().contains("does not ask for the kv permission"),
        "{}",
        res.text()
    );
    // Links and calls, requested but not granted: typed refusals too.
    let res = app.post("/p/hello/links").bearer(&admin).send().await;
    assert_eq!(res.status, StatusCode::FORBIDDEN, "{}", res.text());
    assert!(
        res.text().contains("AccessDenied") && res.text().contains("has not granted links"),
        "{}",
        res.text()
    );
    let res = app
        .get("/p/hello/roster?link=AAAAAAAAAAAAAAAAAAAAAA")
        .bearer(&admin)
        .send()
        .await;
    assert!(
        res.text().contains("AccessDenied") && res.text().contains("has not granted calls"),
        "{}",
        res.text()
    );
    let hello = plugin_info(&app, &admin, "hello").await;
    assert_eq!(hello["granted"], json!(["kv"]));
    assert_eq!(
        hello["requested"],
        json!(["kv", "links", "calls", "templates", "web.call-page"])
    );
    assert_eq!(hello["failures"], 0);
    assert_eq!(hello["status"], "enabled");
}

#[tokio::test]
async fn plugins_hear_events_and_act_only_as_the_signed_in_user() {
    let (app, _dir) = app_with_plugins(|_| {}).await;
    let token = app.user_with_token("ana@example.org", Role::Member).await;
    let link = app.create_link(&token, "Standup").await;
    let id = link["id"].as_str().unwrap().to_string();
    let mut newest = String::new();
    for _ in 0..100 {
        let res = app.get("/p/hello/newest").send().await;
        if res.status == StatusCode::OK {
            newest = res.text();
            if newest == id {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        newest, id,
        "the plugin stored the link from the link-created event"
    );

    // Creating a link through the plugin: as the user behind the request only.
    let anonymous = app
        .post("/p/hello/links")
        .raw("text/plain", "Plugin call")
        .send()
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let created = app
        .post("/p/hello/links")
        .bearer(&token)
        .raw("text/plain", "Plugin call")
        .send()
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
    let created = created.json();
    let url = created["url"].as_str().unwrap();
    let id = created["id"].as_str().unwrap();
    // The plugin got the full link, with a secret of its own, once.
    let (address, secret) = url.split_once("#k=").unwrap_or_else(|| panic!("{url}"));
    assert_eq!(address, format!("{}/j/{id}", app.state.public_url()));
    assert!(crate::support::is_link_secret(secret), "{url}");
    let mine = app
        .get(&format!("/api/v1/links/{id}"))
        .bearer(&token)
        .send()
        .await;
    assert_eq!(mine.status, StatusCode::OK, "the link belongs to the user");
    assert_eq!(mine.json()["title"], "Plugin call");
    assert!(!mine.text().contains(secret), "later reads have no secret");

    // A bad token is refused before the plugin runs.
    let bad = app.post("/p/hello/links").bearer("cf_nope").send().await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn credentials_and_security_headers_stay_with_the_server() {
    let (app, _dir) = app_with_plugins(|_| {}).await;
    let token = app.user_with_token("bo@example.org", Role::Member).await;
    let echo = app
        .get("/p/rogue/echo?x=1")
        .bearer(&token)
        .header("x-custom", "kept")
        .send()
        .await
        .text();
    assert!(echo.contains("x-custom: kept"), "{echo}");
    assert!(!echo.to_lowercase().contains("authorization"), "{echo}");
    assert!(echo.contains("user: Some("), "{echo}");
    assert!(echo.contains("query: x=1"), "{echo}");
    let res = app.get("/p/rogue/headers").send().await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.headers.get("set-cookie").is_none(),
        "plugins cannot set cookies"
    );
    assert_eq!(res.headers["x-rogue"], "yes");
    // Nothing that acts on the whole origin: wiping its storage, widening a
    // service worker's reach.
    assert!(res.headers.get("clear-site-data").is_none());
    assert!(res.headers.get("service-worker-allowed").is_none());
    // A plugin's static page or picture is sandboxed too.
    let page = app.get("/p/rogue/static/hostile.js").send().await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox allow-scripts")
    );
    assert!(
        res.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .starts_with("sandbox allow-scripts"),
        "the plugin's own CSP is replaced by the server's sandbox"
    );
    let bad = app.get("/p/rogue/status").send().await;
    assert_eq!(bad.status, StatusCode::BAD_GATEWAY);
    assert_eq!(bad.error_code(), "plugin_failed");

    // A browser session posting without the page's Origin or CSRF token is refused.
    let browser = app.sign_in("bo@example.org").await;
    let forged = app
        .post("/p/rogue/echo")
        .cookie(&browser.cookies)
        .header("origin", "https://evil.example")
        .send()
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    assert_eq!(forged.error_code(), "csrf_failed");
    let own = app
        .post("/p/rogue/echo")
        .cookie(&browser.cookies)
        .header("x-csrf-token", &browser.csrf)
        .send()
        .await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(own.text().contains("user: Some("));
}

#[tokio::test]
async fn loops_balloons_and_panics_fail_one_call_and_repeated_failures_switch_the_plugin_off() {
    let (app, _dir) = app_with_plugins(|_| {}).await;
    let admin = app.admin_token().await;
    let looping = app.get("/p/rogue/loop").send().await;
    assert_eq!(looping.status, StatusCode::BAD_GATEWAY);
    assert!(
        looping.text().contains("deadline of 300 ms"),
        "{}",
        looping.text()
    );
    assert_eq!(
        app.get("/p/rogue/ok").send().await.status,
        StatusCode::OK,
        "the plugin still answers"
    );
    let balloon = app.get("/p/rogue/balloon").send().await;
    assert_eq!(balloon.status, StatusCode::BAD_GATEWAY);
    assert!(balloon.text().contains("trapped"), "{}", balloon.text());
    assert_eq!(app.get("/p/rogue/ok").send().await.text(), "still here");
    let info = plugin_info(&app, &admin, "rogue").await;
    assert_eq!(info["failures"], 2);
    assert_eq!(info["consecutive_failures"], 0, "a success resets the run");
    assert!(
        info["last_error"].as_str().unwrap().contains("trapped"),
        "{info}"
    );

    // Three failures in a row switch it off.
    for path in ["/p/rogue/panic", "/p/rogue/loop", "/p/rogue/panic"] {
        assert_eq!(
            app.get(path).send().await.status,
            StatusCode::BAD_GATEWAY,
            "{path}"
        );
    }
    let off = app.get("/p/rogue/ok").send().await;
    assert_eq!(off.status, StatusCode::FORBIDDEN);
    assert_eq!(off.error_code(), "plugin_disabled");
    let info = plugin_info(&app, &admin, "rogue").await;
    assert_eq!(info["status"], "auto_disabled");
    assert!(
        info["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("3 failures in a row"),
        "{info}"
    );
    // Other plugins are unaffected.
    assert_eq!(app.get("/p/hello/").send().await.status, StatusCode::OK);
    let metrics = app.get("/metrics").send().await.text();
    assert!(
        metrics.contains("confab_plugin_auto_disabled_total{plugin=\"rogue\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "confab_plugin_invocations_total{plugin=\"rogue\",hook=\"http\",outcome=\"failed\"} 5"
        ),
        "{metrics}"
    );

    // An administrator switches it back on.
    let on = app
        .post("/api/v1/admin/plugins/rogue/enable")
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(on.status, StatusCode::OK, "{}", on.text());
    assert_eq!(on.json()["status"], "enabled");
    assert_eq!(on.json()["consecutive_failures"], 0);
    assert_eq!(app.get("/p/rogue/ok").send().await.status, StatusCode::OK);
}

#[tokio::test]
async fn lobby_screening_denies_flags_and_falls_back_when_a_plugin_is_late() {
    let (app, _dir) = app_with_plugins(|c| {
        c.plugins
            .settings
            .entry("rogue".into())
            .or_default()
            .lobby_fallback = confab_core::config::LobbyFallback::Flag;
    })
    .await;
    let request = |name: &str| LobbyInfo {
        call: CallInfo {
            link: "abc".into(),
            id: "call1".into(),
            started_at: app.clock_now(),
        },
        request: 0,
        name: name.into(),
        address: None,
        asked_at: app.clock_now(),
        origin: Default::default(),
    };
    let plugins = &app.state.plugins;
    match plugins
        .lobby_decision(app.state.plugin_deps(), &request("Spam King"))
        .await
    {
        Verdict::Deny { plugin, reason } => {
            assert_eq!(plugin, "hello");
            assert!(reason.contains("spam"), "{reason}");
        }
        other => panic!("expected a denial, got {other:?}"),
    }
    assert_eq!(
        plugins
            .lobby_decision(app.state.plugin_deps(), &request("Ana"))
            .await,
        Verdict::Flag(vec![("rogue".into(), "Ana looks suspicious".into())])
    );
    // "slow" makes the rogue plugin loop past its 50 ms decision deadline: the
    // operator's fallback (flag) applies.
    let started = std::time::Instant::now();
    assert_eq!(
        plugins
            .lobby_decision(app.state.plugin_deps(), &request("slow"))
            .await,
        Verdict::Flag(vec![(
            "rogue".into(),
            "could not be screened automatically".into()
        )])
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn administrators_list_disable_enable_and_reload_plugins() {
    let (app, dir) = app_with_plugins(|_| {}).await;
    let admin = app.admin_token().await;
    let member = app.user_with_token("cy@example.org", Role::Member).await;
    let denied = app
        .get("/api/v1/admin/plugins")
        .bearer(&member)
        .send()
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let list = app
        .get("/api/v1/admin/plugins")
        .bearer(&admin)
        .send()
        .await
        .json();
    let names: Vec<&str> = list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello", "rogue"]);
    let hello = &list["plugins"][0];
    assert_eq!(hello["sdk"], "1.3.0");
    assert_eq!(hello["source"], "installed");
    assert_eq!(hello["call_page"], "/p/hello/static/hello.js");
    assert_eq!(hello["config"]["greeting"], "Hi");
    assert_eq!(hello["timers"][0]["name"], "tidy");

    let off = app
        .post("/api/v1/admin/plugins/hello/disable")
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(off.json()["status"], "disabled");
    assert_eq!(
        app.get("/p/hello/").send().await.error_code(),
        "plugin_disabled"
    );
    assert_eq!(
        app.get("/p/hello/static/hello.js").send().await.status,
        StatusCode::NOT_FOUND
    );
    app.post("/api/v1/admin/plugins/hello/enable")
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(app.get("/p/hello/").send().await.status, StatusCode::OK);

    // A new version of the plugin's files: reload picks it up.
    let manifest = dir.path().join("hello/plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("version = \"0.1.0\"", "version = \"0.2.0\""),
    )
    .unwrap();
    let reloaded = app
        .post("/api/v1/admin/plugins/hello/reload")
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(reloaded.status, StatusCode::OK, "{}", reloaded.text());
    assert_eq!(reloaded.json()["version"], "0.2.0");
    // Broken files: the reload is refused and the running version stays.
    std::fs::write(&manifest, "name = \"hello\"\nversion = \"oops\"\n").unwrap();
    let broken = app
        .post("/api/v1/admin/plugins/hello/reload")
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(broken.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(broken.text().contains("plugin.toml"), "{}", broken.text());
    assert_eq!(app.get("/p/hello/").send().await.status, StatusCode::OK);
    let missing = app
        .post("/api/v1/admin/plugins/nobody/reload")
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn changed_files_are_reloaded_and_new_plugins_appear_without_a_restart() {
    let plugins = tempfile::tempdir().unwrap();
    let dir = plugins.path().to_path_buf();
    let app = TestApp::sqlite_with(|c| {
        c.plugins.dir = dir.display().to_string();
        grant(c, "hello", &["kv", "templates"], &[]);
    })
    .await;
    assert_eq!(
        app.get("/p/hello/").send().await.status,
        StatusCode::NOT_FOUND
    );
    let installed = install(
        plugins.path(),
        &repo().join("examples/hello-plugin"),
        hello_wasm(),
        "hello",
    );
    app.state
        .plugins
        .reload_changed(app.state.plugin_deps())
        .await;
    let page = app.get("/p/hello/").send().await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert!(page.text().contains("Hello, world!"));
    // Change the default greeting in the manifest; the watcher's pass reloads it.
    let manifest = installed.join("plugin.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("default = \"Hello\"", "default = \"Howdy\""),
    )
    .unwrap();
    bump_mtime(&manifest);
    app.state
        .plugins
        .reload_changed(app.state.plugin_deps())
        .await;
    assert!(
        app.get("/p/hello/")
            .send()
            .await
            .text()
            .contains("Howdy, world!")
    );
    // Removing the directory unloads the plugin.
    std::fs::remove_dir_all(&installed).unwrap();
    app.state
        .plugins
        .reload_changed(app.state.plugin_deps())
        .await;
    assert_eq!(
        app.get("/p/hello/").send().await.status,
        StatusCode::NOT_FOUND
    );
}

/// File systems with coarse timestamps may keep the old mtime for a quick rewrite.
fn bump_mtime(path: &Path) {
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(later).unwrap();
}

#[tokio::test]
async fn components_for_another_sdk_major_or_broken_files_are_refused_with_the_reason() {
    let plugins = tempfile::tempdir().unwrap();
    let crate_dir = repo().join("core/tests/plugins/rogue");
    // Same component, but claiming SDK 2.3.0 in its version section.
    let v2 = install(plugins.path(), &crate_dir, rogue_wasm(), "v2");
    let bytes = std::fs::read(v2.join("plugin.wasm")).unwrap();
    let needle = b"confab-sdk-version1.3.0";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the SDK embeds its version");
    let mut patched = bytes.clone();
    patched[at + needle.len() - 5] = b'2';
    std::fs::write(v2.join("plugin.wasm"), patched).unwrap();
    std::fs::write(
        v2.join("plugin.toml"),
        std::fs::read_to_string(v2.join("plugin.toml"))
            .unwrap()
            .replace("name = \"rogue\"", "name = \"v2\""),
    )
    .unwrap();
    // Not a component at all.
    let junk = install(plugins.path(), &crate_dir, rogue_wasm(), "junk");
    std::fs::write(junk.join("plugin.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(
        junk.join("plugin.toml"),
        std::fs::read_to_string(junk.join("plugin.toml"))
            .unwrap()
            .replace("name = \"rogue\"", "name = \"junk\""),
    )
    .unwrap();
    // A manifest that asks for an SDK this server does not implement.
    let future = install(plugins.path(), &crate_dir, rogue_wasm(), "future");
    std::fs::write(
        future.join("plugin.toml"),
        std::fs::read_to_string(future.join("plugin.toml"))
            .unwrap()
            .replace("name = \"rogue\"", "name = \"future\"")
            .replace("sdk = \"^1.0\"", "sdk = \"^2\""),
    )
    .unwrap();
    let dir = plugins.path().to_path_buf();
    let app = TestApp::sqlite_with(|c| c.plugins.dir = dir.display().to_string()).await;
    let admin = app.admin_token().await;
    let list = app
        .get("/api/v1/admin/plugins")
        .bearer(&admin)
        .send()
        .await
        .json();
    assert_eq!(list["plugins"], json!([]), "none of them loads");
    let problems = list["problems"].as_array().unwrap();
    let problem = |dir: &str| {
        problems
            .iter()
            .find(|p| p["dir"].as_str().unwrap().ends_with(dir))
            .map(|p| p["error"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no problem for {dir}: {list}"))
    };
    let v2 = problem("v2");
    assert!(
        v2.contains("built for SDK 2.3.0") && v2.contains("1.x"),
        "{v2}"
    );
    assert!(
        problem("junk").contains("not a Confab plugin"),
        "{}",
        problem("junk")
    );
    assert!(
        problem("future").contains("asks for SDK ^2"),
        "{}",
        problem("future")
    );
    // The server itself is fine.
    assert_eq!(app.get("/healthz").send().await.status, StatusCode::OK);
}

#[tokio::test]
async fn compiled_plugins_are_cached_on_disk() {
    let plugins = tempfile::tempdir().unwrap();
    install(
        plugins.path(),
        &repo().join("core/tests/plugins/rogue"),
        rogue_wasm(),
        "rogue",
    );
    let dir = plugins.path().to_path_buf();
    let cache = dir.join("cache");
    let cache_for_config = cache.clone();
    let app = TestApp::sqlite_with(|c| {
        c.plugins.dir = dir.display().to_string();
        c.plugins.cache_dir = cache_for_config.display().to_string();
    })
    .await;
    assert_eq!(app.get("/p/rogue/ok").send().await.status, StatusCode::OK);
    let cached: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
        .collect();
    assert_eq!(cached.len(), 1, "one compiled component");
    // A damaged cache entry is ignored and replaced.
    std::fs::write(cached[0].path(), b"garbage").unwrap();
    let dir2 = plugins.path().to_path_buf();
    let again = TestApp::sqlite_with(|c| {
        c.plugins.dir = dir2.display().to_string();
        c.plugins.cache_dir = cache.display().to_string();
    })
    .await;
    assert_eq!(again.get("/p/rogue/ok").send().await.text(), "still here");
    assert_ne!(std::fs::read(cached[0].path()).unwrap(), b"garbage");
}

/// An app with the rogue plugin alone, granted `caps`, with `patch` applied to its
/// plugin.toml and a deadline that leaves room for real network and database work.
async fn rogue_app(
    patch: impl FnOnce(String) -> String,
    caps: &[&str],
) -> (TestApp, tempfile::TempDir) {
    rogue_app_with(patch, caps, |_| {}).await
}

/// Like [`rogue_app`], with a tweak of the server's configuration.
async fn rogue_app_with(
    patch: impl FnOnce(String) -> String,
    caps: &[&str],
    tweak: impl FnOnce(&mut Config),
) -> (TestApp, tempfile::TempDir) {
    let plugins = install_rogue(patch);
    let app = TestApp::sqlite_with(|c| {
        with_rogue(c, plugins.path(), caps);
        tweak(c);
    })
    .await;
    (app, plugins)
}

/// A plugins directory with the rogue plugin, its manifest patched by `patch`.
fn install_rogue(patch: impl FnOnce(String) -> String) -> tempfile::TempDir {
    let plugins = tempfile::tempdir().unwrap();
    let installed = install(
        plugins.path(),
        &repo().join("core/tests/plugins/rogue"),
        rogue_wasm(),
        "rogue",
    );
    let manifest = installed.join("plugin.toml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("deadline-ms = 300", "deadline-ms = 5000");
    std::fs::write(&manifest, patch(text)).unwrap();
    plugins
}

/// Loads the plugins of `dir` (see [`install_rogue`]), granting the rogue `caps`.
fn with_rogue(c: &mut Config, dir: &Path, caps: &[&str]) {
    c.plugins.dir = dir.display().to_string();
    c.plugins.cache_dir = dir.join(".cache").display().to_string();
    grant(c, "rogue", caps, &[]);
}

/// POSTs `body` to one of the rogue plugin's routes (`/mail`: the subject of the
/// message it queues; `/fetch`: the URL it gets).
async fn ask_rogue(app: &TestApp, route: &str, body: String) -> crate::support::Res {
    app.post(&format!("/p/rogue{route}"))
        .raw("text/plain", body)
        .send()
        .await
}

/// Asserts the answer's status and that its text has every one of `needles`.
fn assert_answer(res: &crate::support::Res, status: StatusCode, needles: &[&str]) {
    let text = res.text();
    assert_eq!(res.status, status, "{text}");
    for needle in needles {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
}

#[tokio::test]
async fn plugins_queue_whole_messages_in_the_outbox_within_their_hourly_limit() {
    let (app, _dir) = rogue_app(|m| m, &["mail"]).await;
    let res = ask_rogue(&app, "/mail", "Our call".into()).await;
    assert_answer(&res, StatusCode::OK, &[]);
    let id: i64 = res.text().parse().expect("the outbox id");
    let queued = app
        .store
        .outbox_message(id)
        .await
        .unwrap()
        .expect("the message is in the outbox");
    assert_eq!(queued.to(), ["Ana <ana@example.org>", "bo@example.org"]);
    assert_eq!(queued.cc(), ["cy@example.org"]);
    let m = &queued.message;
    assert_eq!(m.reply_to.as_deref(), Some("desk@example.org"));
    assert_eq!(m.subject, "Our call");
    assert_eq!(m.body_text, "Join at https://confab.example/j/abc#k=secret");
    assert_eq!(
        m.body_html.as_deref(),
        Some("<p>Join at <a href=\"https://confab.example/j/abc#k=secret\">the call</a></p>")
    );
    assert_eq!(m.plugin.as_deref(), Some("rogue"));
    assert_eq!(m.status, "queued");
    assert_eq!(m.attempts, 0);
    assert_eq!(m.created_at, app.clock_now());
    assert_eq!(m.next_attempt_at, app.clock_now(), "due at once");
    assert_eq!(m.last_error, None);
    let [invite] = &queued.attachments[..] else {
        panic!("one attachment: {:?}", queued.attachments)
    };
    assert_eq!(invite.filename, "invite.ics");
    assert_eq!(
        invite.content_type,
        "text/calendar; charset=UTF-8; method=REQUEST"
    );
    assert_eq!(invite.data, b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n");
    assert!(invite.inline_alternative);

    // A line break in the subject would start a header of its own: refused, and
    // nothing is queued (nor counted against the limit).
    let res = ask_rogue(&app, "/mail", "Hi\r\nBcc: victim@example.org".into()).await;
    assert_answer(
        &res,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["Invalid", "line break"],
    );
    assert_eq!(app.store.outbox_counts().await.unwrap().queued, 1);

    // plugin.toml allows 3 an hour.
    for _ in 0..2 {
        let res = ask_rogue(&app, "/mail", "Again".into()).await;
        assert_answer(&res, StatusCode::OK, &[]);
    }
    let res = ask_rogue(&app, "/mail", "One too many".into()).await;
    assert_answer(
        &res,
        StatusCode::UNPROCESSABLE_ENTITY,
        &["LimitReached", "3 mails per hour"],
    );
    let counts = app.store.outbox_counts().await.unwrap();
    assert_eq!((counts.queued, counts.sent, counts.failed), (3, 0, 0));
    let metrics = app.get("/metrics").send().await.text();
    assert!(
        metrics.contains("confab_mail_outbox_messages{status=\"queued\"} 3"),
        "{metrics}"
    );
}

#[tokio::test]
async fn mail_and_http_are_refused_unless_granted() {
    let (app, _dir) = rogue_app(|m| m, &[]).await;
    let res = ask_rogue(&app, "/mail", "Hi".into()).await;
    assert_answer(
        &res,
        StatusCode::FORBIDDEN,
        &["AccessDenied", "has not granted mail"],
    );
    assert_eq!(app.store.outbox_counts().await.unwrap().queued, 0);
    let res = ask_rogue(&app, "/fetch", "http://127.0.0.1:9/".into()).await;
    assert_answer(
        &res,
        StatusCode::FORBIDDEN,
        &["AccessDenied", "has not granted http-client"],
    );
}

#[tokio::test]
async fn plugins_call_allowed_hosts_and_see_redirects_without_following_them() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::State;
    use axum::http::HeaderMap;
    use axum::routing::get;

    let hits = Arc::new(AtomicUsize::new(0));
    let server = axum::Router::new()
        .route(
            "/hello",
            get(
                |State(hits): State<Arc<AtomicUsize>>, headers: HeaderMap| async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let asker = headers
                        .get("x-rogue")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("nobody")
                        .to_string();
                    ([("x-served-by", "the-test")], format!("hello, {asker}"))
                },
            ),
        )
        .route(
            "/moved",
            get(|| async { (StatusCode::FOUND, [("location", "/hello")], "") }),
        )
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, server).await.unwrap() });

    let (app, _dir) = rogue_app(|m| m, &["http-client"]).await;
    // Status, a response header, the body, and the plugin's request header on the way.
    let res = ask_rogue(&app, "/fetch", format!("http://127.0.0.1:{port}/hello")).await;
    assert_answer(&res, StatusCode::OK, &[]);
    assert_eq!(res.text(), "200\nthe-test\n-\nhello, asks");
    // A redirect comes back as it is.
    let res = ask_rogue(&app, "/fetch", format!("http://127.0.0.1:{port}/moved")).await;
    assert_eq!(res.text(), "302\n-\n/hello\n");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "the redirect was not followed"
    );
    // The same server under a name plugin.toml does not list.
    let res = ask_rogue(&app, "/fetch", format!("http://localhost:{port}/hello")).await;
    assert_answer(
        &res,
        StatusCode::FORBIDDEN,
        &["AccessDenied", "localhost is not among the hosts"],
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1, "nothing was sent");
}

#[tokio::test]
async fn timers_fire_and_cron_timers_fire_at_their_minute_of_the_clock() {
    let (app, _dir) = rogue_app(
        |m| m.replace("[permissions]\n", "[permissions]\nkv = {}\n"),
        &["kv"],
    )
    .await;
    let fired = || async { app.get("/p/rogue/fired").send().await.text() };
    assert_eq!(fired().await, "");
    let plugins = &app.state.plugins;
    plugins
        .fire_timer(app.state.plugin_deps(), "rogue", "hourly")
        .await
        .unwrap();
    assert_eq!(fired().await, "fired:hourly");
    assert_eq!(
        plugins
            .fire_timer(app.state.plugin_deps(), "rogue", "nope")
            .await,
        Err(confab_core::plugins::InvokeError::NotHandled(
            "rogue".into()
        ))
    );

    // The clock says 12:00 UTC; the cron timer is for 12:30.
    let (trigger, shutdown) = confab_core::shutdown::Shutdown::new();
    let timers = tokio::spawn(confab_core::plugins::PluginHost::run_timers(
        app.state.plugin_deps().clone(),
        shutdown,
    ));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(fired().await, "fired:hourly", "not yet");
    app.clock.advance(chrono::Duration::minutes(30));
    let mut seen = String::new();
    for _ in 0..50 {
        seen = fired().await;
        if seen.contains("half-past-noon") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "fired:half-past-noon\nfired:hourly");
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(5), timers)
        .await
        .expect("the timers stop on shutdown")
        .unwrap();
}

/// Two nodes of a cluster, one PostgreSQL database and the NATS bus of this
/// machine (`CONFAB_TEST_NATS_URL`).
mod cluster {
    use super::*;

    /// Nodes a and b of a cluster of their own with the rogue plugin (its manifest
    /// patched by `patch`), granted `kv`, where it notes each run of its hooks.
    async fn two_nodes_with_rogue(
        patch: impl FnOnce(String) -> String,
    ) -> (tempfile::TempDir, TestApp, TestApp) {
        let plugins =
            install_rogue(|m| patch(m.replace("[permissions]\n", "[permissions]\nkv = {}\n")));
        let a = TestApp::postgres_with(|c| {
            with_rogue(c, plugins.path(), &["kv"]);
            crate::cluster::first_node(c, "node-a");
        })
        .await;
        let b = a
            .another_node(|c| c.cluster.node_id = "node-b".into())
            .await;
        (plugins, a, b)
    }

    /// The rogue plugin's timers, due on both nodes, run on one: its cron minute
    /// once, and its `every` timer (10 s here) once each time it is due.
    #[tokio::test]
    async fn a_timer_runs_on_one_node_of_a_cluster_each_time_it_is_due() {
        let (_plugins, a, b) =
            two_nodes_with_rogue(|m| m.replace("every = \"1h\"", "every = \"10s\"")).await;
        let (trigger, shutdown) = confab_core::shutdown::Shutdown::new();
        let timers: Vec<_> = [&a, &b]
            .into_iter()
            .map(|node| {
                tokio::spawn(confab_core::plugins::PluginHost::run_timers(
                    node.state.plugin_deps().clone(),
                    shutdown.clone(),
                ))
            })
            .collect();
        // The clocks say 12:00 UTC; once the timers were seen, both nodes reach the
        // cron timer's 12:30 at once.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        a.clock.advance(chrono::Duration::minutes(30));
        b.clock.advance(chrono::Duration::minutes(30));
        // The `every` timer is due about 10 s and 20 s in, on each node (checked
        // once a second).
        tokio::time::sleep(Duration::from_millis(22_500)).await;
        trigger.trigger();
        for timer in timers {
            timer.await.unwrap();
        }
        let runs = a.get("/p/rogue/runs").send().await.text();
        let runs_of = |timer: &str| -> Vec<u128> {
            let prefix = format!("runs:{timer}:");
            let mut at: Vec<u128> = runs
                .lines()
                .filter_map(|key| key.strip_prefix(prefix.as_str()))
                .map(|nanos| nanos.parse().unwrap())
                .collect();
            at.sort_unstable();
            at
        };
        assert_eq!(runs_of("half-past-noon").len(), 1, "{runs}");
        let every = runs_of("hourly");
        assert_eq!(every.len(), 2, "{runs}");
        let gap_ms = (every[1] - every[0]) / 1_000_000;
        assert!(gap_ms >= 9_000, "two runs {gap_ms} ms apart: {runs}");
        drop(b);
    }

    /// A call's plugin events fire once, on the node that hosts it, whichever
    /// node its people's connections reach.
    #[tokio::test]
    async fn a_call_s_plugin_events_fire_once_on_its_host() {
        let (_plugins, a, b) = two_nodes_with_rogue(|m| m).await;
        let token = a.admin_token().await;
        let link = a.create_link(&token, "Events once").await;
        let id = link["id"].as_str().unwrap();
        let (addr_a, addr_b) = (a.serve().await, b.serve().await);
        let bearer = |token: &str| Some(("authorization", format!("Bearer {token}")));
        let mut host = crate::support::ws::Ws::open_with(&addr_a, id, bearer(&token)).await;
        host.send(json!({ "v": 1, "type": "join" })).await;
        host.expect("joined").await;
        let other = a.user_with_token("other@example.org", Role::Member).await;
        let mut relayed = crate::support::ws::Ws::open_with(&addr_b, id, bearer(&other)).await;
        relayed.send(json!({ "v": 1, "type": "join" })).await;
        relayed.expect("joined").await;
        // Events are handed to plugins off the call's task.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while a
            .get("/p/rogue/runs")
            .send()
            .await
            .text()
            .matches("runs:participant-joined:")
            .count()
            < 2
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // A moment more for a second copy, had there been one.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let runs = a.get("/p/rogue/runs").send().await.text();
        assert_eq!(runs.matches("runs:call-started:").count(), 1, "{runs}");
        assert_eq!(
            runs.matches("runs:participant-joined:").count(),
            2,
            "{runs}"
        );
        drop(b);
    }
}

/// The outbox and the purge, on both databases.
mod in_the_database {
    use chrono::Duration;
    use confab_core::privacy;
    use confab_core::store::{NewAttachment, NewMail, OutboxCounts};

    use crate::support::{TestApp, on_both_databases};

    on_both_databases!(
        the_outbox_keeps_whole_messages_and_counts_them,
        expired_plugin_entries_are_deleted_by_the_purge,
        many_plugin_entries_are_stored_together_within_the_quota
    );

    async fn many_plugin_entries_are_stored_together_within_the_quota(app: TestApp) {
        use confab_core::store::KvSetOutcome;
        let store = &app.store;
        let now = app.clock_now();
        // 600 entries of 4 + 1 bytes (keys k000…): 3,000 bytes, in chunks.
        let entries = |value: &[u8]| -> Vec<(String, Vec<u8>)> {
            (0..600)
                .map(|i| (format!("k{i:03}"), value.to_vec()))
                .collect()
        };
        let outcome = store
            .plugin_kv_set_many("p", entries(b"a"), None, 3_000, now)
            .await
            .unwrap();
        assert!(matches!(outcome, KvSetOutcome::Stored), "{outcome:?}");
        let keys: Vec<String> = ["k000", "k599", "nope"].map(String::from).to_vec();
        let found = store.plugin_kv_get_many("p", &keys, now).await.unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found["k599"], b"a");
        // Replacing them counts their new size only: 600 × 6 bytes is over 3,000.
        let over = store
            .plugin_kv_set_many("p", entries(b"ab"), None, 3_000, now)
            .await
            .unwrap();
        assert!(
            matches!(over, KvSetOutcome::OverQuota { used: 0 }),
            "{over:?}"
        );
        let found = store.plugin_kv_get_many("p", &keys, now).await.unwrap();
        assert_eq!(found["k000"], b"a", "nothing of a refused batch is stored");
        // Within the quota, replacing works; other plugins' entries do not count.
        store
            .plugin_kv_set("q", "big", vec![0; 2_000], None, 3_000, now)
            .await
            .unwrap();
        let outcome = store
            .plugin_kv_set_many("p", entries(b""), None, 3_000, now)
            .await
            .unwrap();
        assert!(matches!(outcome, KvSetOutcome::Stored), "{outcome:?}");
        let found = store.plugin_kv_get_many("p", &keys, now).await.unwrap();
        assert_eq!(found["k000"], b"");

        // 2,400 bytes in use. An entry that expires counts while it lives, not after;
        // a deleted one frees its bytes at once.
        let later = now + Duration::minutes(5);
        let set = |key: &'static str, bytes: usize, expires, at| {
            store.plugin_kv_set("p", key, vec![1; bytes], expires, 3_000, at)
        };
        let stored = |outcome: KvSetOutcome| matches!(outcome, KvSetOutcome::Stored);
        assert!(stored(
            set("tmp", 500, Some(now + Duration::minutes(1)), now)
                .await
                .unwrap()
        ));
        assert!(!stored(set("more", 400, None, now).await.unwrap()));
        assert!(
            stored(set("more", 400, None, later).await.unwrap()),
            "the expired entry no longer counts"
        );
        assert!(!stored(set("most", 200, None, later).await.unwrap()));
        store.plugin_kv_delete("p", "more").await.unwrap();
        assert!(
            stored(set("most", 200, None, later).await.unwrap()),
            "deleting freed the space"
        );
    }

    async fn the_outbox_keeps_whole_messages_and_counts_them(app: TestApp) {
        let outbox = app.state.mail.clone();
        let binary: Vec<u8> = (0..=255).collect();
        let mail = NewMail {
            to: vec!["Ana <ana@example.org>".into()],
            cc: Vec::new(),
            reply_to: None,
            subject: "Grüße".into(),
            text: "Hello".into(),
            html: None,
            attachments: vec![
                NewAttachment {
                    filename: "a.bin".into(),
                    content_type: "application/octet-stream".into(),
                    data: binary.clone(),
                    inline_alternative: false,
                },
                NewAttachment {
                    filename: "b.ics".into(),
                    content_type: "text/calendar".into(),
                    data: b"BEGIN:VCALENDAR".to_vec(),
                    inline_alternative: true,
                },
            ],
            plugin: None,
            message_id: None,
            list_unsubscribe: None,
        };
        let id = outbox.enqueue(mail).await.unwrap();
        let stored = app.store.outbox_message(id).await.unwrap().unwrap();
        assert_eq!(stored.to(), ["Ana <ana@example.org>"]);
        assert!(stored.cc().is_empty());
        assert_eq!(stored.message.subject, "Grüße");
        assert_eq!(stored.message.plugin, None);
        let names: Vec<&str> = stored
            .attachments
            .iter()
            .map(|a| a.filename.as_str())
            .collect();
        assert_eq!(names, ["a.bin", "b.ics"], "in order");
        assert_eq!(stored.attachments[0].data, binary);
        assert!(stored.attachments[1].inline_alternative);
        // The server's outbox is the one plugins get.
        let via_plugins = confab_core::plugins::queue_mail(
            &app.state.mail,
            "p",
            confab_core::plugins::MailMessage {
                to: vec!["bo@example.org".into()],
                cc: vec!["cy@example.org".into()],
                reply_to: Some("desk@example.org".into()),
                subject: "Hi".into(),
                text: "Hello".into(),
                html: Some("<p>Hello</p>".into()),
                attachments: Vec::new(),
            },
            Some("https://confab.example/p/p/unsubscribe?t=x".into()),
        )
        .await
        .unwrap();
        let other = app
            .store
            .outbox_message(via_plugins.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_ne!(other.message.id, id);
        assert_eq!(other.cc(), ["cy@example.org"]);
        assert_eq!(other.message.plugin.as_deref(), Some("p"));
        assert_eq!(
            other.message.list_unsubscribe.as_deref(),
            Some("https://confab.example/p/p/unsubscribe?t=x"),
            "the unsubscribe URL is kept for delivery"
        );
        assert_eq!(stored.message.list_unsubscribe, None);
        assert!(other.attachments.is_empty());
        assert_eq!(app.store.outbox_message(id + 1000).await.unwrap(), None);
        assert_eq!(
            app.store.outbox_counts().await.unwrap(),
            OutboxCounts {
                queued: 2,
                retrying: 0,
                sent: 0,
                failed: 0
            }
        );
    }

    async fn expired_plugin_entries_are_deleted_by_the_purge(app: TestApp) {
        let store = &app.store;
        let t0 = app.clock_now();
        let quota = 1 << 20;
        for (key, expires) in [
            ("old", Some(t0 + Duration::minutes(1))),
            ("later", Some(t0 + Duration::days(1))),
            ("kept", None),
        ] {
            store
                .plugin_kv_set("p", key, b"v".to_vec(), expires, quota, t0)
                .await
                .unwrap();
        }
        let now = t0 + Duration::minutes(2);
        // Expired: hidden from reads, but still in the table (a read as of t0 sees it).
        assert_eq!(store.plugin_kv_get("p", "old", now).await.unwrap(), None);
        assert!(store.plugin_kv_get("p", "old", t0).await.unwrap().is_some());
        let report = privacy::purge(store, now, 30).await.unwrap();
        assert_eq!(report.plugin_kv, 1);
        // Gone from the table.
        assert_eq!(store.plugin_kv_get("p", "old", t0).await.unwrap(), None);
        for key in ["later", "kept"] {
            assert!(
                store.plugin_kv_get("p", key, now).await.unwrap().is_some(),
                "{key}"
            );
        }
    }
}

/// Compiled components shared by the tests that load the bundled plugins, so that
/// each compiles once per run.
pub(crate) fn shared_plugin_cache() -> String {
    repo()
        .join("target/test-plugin-cache")
        .display()
        .to_string()
}

#[tokio::test]
async fn bundled_plugins_load_without_setup_and_an_installed_one_replaces_them() {
    let app = TestApp::sqlite_with(|c| {
        c.plugins.bundled = true;
        c.plugins.cache_dir = shared_plugin_cache();
    })
    .await;
    let admin = app.admin_token().await;
    let names = confab_core::plugins::bundled::names().collect::<Vec<_>>();
    assert!(names.contains(&"calendar"), "{names:?}");
    let info = plugin_info(&app, &admin, "calendar").await;
    assert_eq!(info["source"], "bundled");
    assert_eq!(info["status"], "enabled");
    assert_eq!(
        info["granted"], info["requested"],
        "bundled plugins get what they ask for unless the operator narrows it"
    );
    let data_dir = app.state.config.data_dir.join("bundled-plugins/calendar");
    assert!(data_dir.join("plugin.wasm").is_file());
    assert!(
        std::fs::read_to_string(data_dir.join("plugin.toml"))
            .unwrap()
            .contains("component = \"plugin.wasm\"")
    );

    // An operator's plugin called "calendar" takes the bundled one's place.
    let plugins = tempfile::tempdir().unwrap();
    let dir = install(
        plugins.path(),
        &repo().join("examples/hello-plugin"),
        hello_wasm(),
        "calendar",
    );
    let manifest = std::fs::read_to_string(dir.join("plugin.toml")).unwrap();
    std::fs::write(
        dir.join("plugin.toml"),
        manifest.replacen("name = \"hello\"", "name = \"calendar\"", 1),
    )
    .unwrap();
    let plugins_dir = plugins.path().display().to_string();
    let replaced = TestApp::sqlite_with(move |c| {
        c.plugins.bundled = true;
        c.plugins.dir = plugins_dir;
        c.plugins.cache_dir = shared_plugin_cache();
    })
    .await;
    let admin = replaced.admin_token().await;
    let info = plugin_info(&replaced, &admin, "calendar").await;
    assert_eq!(info["source"], "installed", "{info}");
    let list = replaced
        .get("/api/v1/admin/plugins")
        .bearer(&admin)
        .send()
        .await
        .json();
    assert_eq!(
        list["problems"],
        json!([]),
        "no conflict is reported: {list}"
    );

    // Switched off entirely, nothing bundled is loaded.
    let off = TestApp::sqlite_with(|c| {
        c.plugins.bundled = false;
    })
    .await;
    let admin = off.admin_token().await;
    let list = off
        .get("/api/v1/admin/plugins")
        .bearer(&admin)
        .send()
        .await
        .json();
    assert_eq!(list["plugins"], json!([]), "{list}");
}

#[tokio::test]
async fn a_plugin_at_its_concurrency_limit_answers_busy_without_counting_a_failure() {
    let (app, _dir) = rogue_app_with(
        |m| m.replace("[permissions]\n", "[permissions]\nkv = {}\n"),
        &["kv"],
        |c| c.plugins.max_concurrency = 1,
    )
    .await;
    let admin = app.admin_token().await;
    let request = |name: &str| LobbyInfo {
        call: CallInfo {
            link: "L".into(),
            id: "c".into(),
            started_at: app.clock_now(),
        },
        request: 0,
        name: name.into(),
        address: None,
        asked_at: app.clock_now(),
        origin: Default::default(),
    };
    // With its one slot free, the plugin decides (rogue flags everyone).
    let plugins_host = &app.state.plugins;
    assert_eq!(
        plugins_host
            .lobby_decision(app.state.plugin_deps(), &request("Ana"))
            .await,
        Verdict::Flag(vec![("rogue".into(), "Ana looks suspicious".into())])
    );

    // One long call holds the only slot …
    let router = app.router.clone();
    let holder = tokio::spawn(async move {
        use tower::ServiceExt as _;
        let req = axum::http::Request::post("/p/rogue/sleep")
            .body(axum::body::Body::from("1500"))
            .unwrap();
        router.oneshot(req).await.unwrap().status()
    });
    let mut started = false;
    for _ in 0..100 {
        let now = app.clock_now();
        if app
            .store
            .plugin_kv_get("rogue", "sleeping", now)
            .await
            .unwrap()
            .is_some()
        {
            started = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(started, "the long call started");
    // … so a lobby decision (50 ms to start) finds none and gets the fallback.
    assert_eq!(
        plugins_host
            .lobby_decision(app.state.plugin_deps(), &request("Bob"))
            .await,
        Verdict::Allow
    );
    assert_eq!(holder.await.unwrap(), StatusCode::OK);
    assert_eq!(
        plugins_host
            .lobby_decision(app.state.plugin_deps(), &request("Cleo"))
            .await,
        Verdict::Flag(vec![("rogue".into(), "Cleo looks suspicious".into())]),
        "the slot is free again"
    );

    let metrics = app.get("/metrics").send().await.text();
    assert!(
        metrics.contains(
            r#"confab_plugin_invocations_total{plugin="rogue",hook="lobby-decision",outcome="busy"} 1"#
        ),
        "{metrics}"
    );
    let info = plugin_info(&app, &admin, "rogue").await;
    assert_eq!(info["status"], "enabled");
    assert_eq!(
        info["failures"], 0,
        "busy is not the plugin's failure: {info}"
    );
}

/// An app with hello and rogue whose database and data directory are `data_dir`.
async fn app_on(data_dir: &Path) -> (TestApp, tempfile::TempDir) {
    let (plugins, configure) = hello_and_rogue();
    let data_dir = data_dir.to_path_buf();
    let app = TestApp::sqlite_with(move |c| {
        configure(c);
        c.database.url = format!("sqlite://{}/confab.db?mode=rwc", data_dir.display());
        c.data_dir = data_dir;
    })
    .await;
    (app, plugins)
}

#[tokio::test]
async fn plugin_storage_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let (first, _plugins) = app_on(data.path()).await;
    for visit in 1..=3 {
        let page = first.get("/p/hello/").send().await.text();
        assert!(page.contains(&format!("visited {visit} times")), "{page}");
    }
    first.state.store.clone().close().await;
    drop(first);

    let (second, _plugins) = app_on(data.path()).await;
    let page = second.get("/p/hello/").send().await.text();
    assert!(
        page.contains("visited 4 times"),
        "the counter kept in kv survives the restart: {page}"
    );
}

#[tokio::test]
async fn a_plugin_built_for_sdk_1_0_runs_on_this_server() {
    let crate_dir = repo().join("core/tests/plugins/sdk-1.0");
    let wasm = build_plugin(&crate_dir, "sdk_one_zero_plugin.wasm");
    let plugins = tempfile::tempdir().unwrap();
    install(plugins.path(), &crate_dir, &wasm, "old");
    let dir = plugins.path().to_path_buf();
    let app = TestApp::sqlite_with(move |c| {
        c.plugins.dir = dir.display().to_string();
        c.plugins.cache_dir = dir.join(".cache").display().to_string();
        grant(c, "old", &["kv"], &[]);
    })
    .await;
    let admin = app.admin_token().await;
    let info = plugin_info(&app, &admin, "old").await;
    assert_eq!(info["status"], "enabled", "{info}");
    assert_eq!(info["sdk"], "1.0.0");
    // Its 1.0 imports (kv) and exports (handle-http) are linked to this server's 1.1.
    for visit in 1..=2 {
        let res = app.get("/p/old/").send().await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        assert_eq!(res.text(), format!("built for 1.0, visit {visit}"));
    }
}
