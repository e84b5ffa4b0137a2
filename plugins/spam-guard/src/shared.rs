//! Shareable blocklists: this server's instance-wide network blocks, exported as a
//! policy list at a token-protected URL, and other Confab servers' lists, fetched
//! through `http-client` from the hosts the operator allows and applied in
//! `lobby-decision`, this server's own rules winning.
//!
//! The list (`GET /p/spam-guard/blocklist`, header `x-blocklist-token`):
//!
//! ```json
//! {"format": "confab-blocklist", "version": 1, "source": "https://a.example",
//!  "generated_at": 1767225600,
//!  "entries": [{"entity": "198.51.100.7/32", "kind": "network",
//!               "recommendation": "block", "reason": "spam", "expires_at": 1769817600}]}
//! ```
//!
//! Only networks are shared: a device pseudonym means nothing on another server.
//! A subscriber takes `kind: network` with `recommendation: block` and ignores the
//! rest; it never shows a list's `reason` to the person turned away (that text is
//! another server's), only to its administrators.
//!
//! | key | value |
//! | --- | --- |
//! | `shared/net/{network}` | [`SharedRule`]: a network another server's list blocks |
//! | `allow/net/{network}` | [`Exception`]: an administrator's exception, which wins over every list |
//! | `source/{n}` | [`SourceStatus`] of subscription `n` (its order in `subscriptions`) |

use confab_plugin_sdk::http::{self, Request};
use confab_plugin_sdk::{Error, HttpRequest, HttpResponse, config, kv, log};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::rules::{DAY_MS, network_of};
use crate::store::{self, Block, Kind, Scope};

/// The list's `format`.
pub const FORMAT: &str = "confab-blocklist";
/// The list's `version`.
pub const VERSION: u32 = 1;
/// The header that carries the export token.
pub const TOKEN_HEADER: &str = "x-blocklist-token";
/// The shortest export token the plugin accepts (shorter: no export).
pub const MIN_TOKEN_CHARS: usize = 24;
/// The most entries a list may have (more: the list is refused).
pub const MAX_ENTRIES: usize = 10_000;
/// The most lists one server subscribes to.
pub const MAX_SUBSCRIPTIONS: usize = 10;
/// The longest block taken from a list, whatever it says.
pub const MAX_DAYS: i64 = 365;
/// A source that cannot be reached keeps its entries this long after its last
/// good fetch, then they lapse.
pub const STALE_DAYS: i64 = 7;
/// Longest reason kept from a list, in characters.
const MAX_REASON_CHARS: usize = 200;
/// What someone turned away by a shared list reads.
pub const SHARED_REASON: &str = "This server does not take requests from your network.";

/// A network another server's list blocks. Times in Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedRule {
    /// The subscription it came from (its place in `subscriptions`) and its host.
    pub source: usize,
    pub host: String,
    /// The list's reason, for administrators only.
    pub reason: String,
    /// The list's expiry, capped; or the source's last good fetch + STALE_DAYS.
    pub until: i64,
}

/// An administrator's exception: this network is never blocked by a shared list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exception {
    pub by: i64,
    pub at: i64,
}

/// How fetching one subscription last went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceStatus {
    pub url: String,
    /// Last fetch that was applied (Unix ms).
    pub synced_at: Option<i64>,
    /// Networks it blocks now.
    pub entries: usize,
    /// Entries it had that this server does not take (other kinds, bad values).
    pub skipped: usize,
    /// Why the last attempt failed, if it did.
    pub error: Option<String>,
    pub tried_at: Option<i64>,
}

pub fn shared_key(network: &str) -> String {
    format!("shared/net/{network}")
}

pub fn allow_key(network: &str) -> String {
    format!("allow/net/{network}")
}

/// One subscription: a list's URL and the token it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub url: String,
    pub token: String,
}

/// The operator's `subscriptions`: one per line (or `;`), `URL TOKEN`. Bad lines
/// are left out with the reason, which the status shows.
pub fn subscriptions(text: &str) -> (Vec<Subscription>, Vec<String>) {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for line in text
        .split(['\n', ';'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let mut words = line.split_whitespace();
        let (Some(url), Some(token), None) = (words.next(), words.next(), words.next()) else {
            problems.push("a subscription is written `URL TOKEN`".to_string());
            continue;
        };
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            problems.push(format!("{url} is not an http(s) URL"));
            continue;
        }
        if out.len() == MAX_SUBSCRIPTIONS {
            problems.push(format!("at most {MAX_SUBSCRIPTIONS} subscriptions"));
            break;
        }
        out.push(Subscription {
            url: url.to_string(),
            token: token.to_string(),
        });
    }
    (out, problems)
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /blocklist`: the instance-wide network blocks, for whoever has the token.
pub fn export(request: &HttpRequest) -> HttpResponse {
    let expected = config::get("export_token").unwrap_or_default();
    let expected = expected.trim();
    if expected.chars().count() < MIN_TOKEN_CHARS {
        return HttpResponse::error_with_code(
            404,
            "not_found",
            "This server does not share its blocklist (no export_token is set).",
        );
    }
    let given = request.header(TOKEN_HEADER).unwrap_or_default();
    if !same(given.as_bytes(), expected.as_bytes()) {
        return HttpResponse::error_with_code(
            401,
            "unauthorized",
            format!("Send the list's token in the {TOKEN_HEADER} header."),
        );
    }
    let now = crate::now_ms();
    let mut entries = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let keys = match kv::keys("block/all/net/", after.as_deref(), 1000) {
            Ok(keys) => keys,
            Err(e) => return unavailable(e),
        };
        let values = match kv::get_many(&keys) {
            Ok(values) => values,
            Err(e) => return unavailable(e),
        };
        let blocks: Vec<Block> = values
            .into_iter()
            .flatten()
            .filter_map(|v| serde_json::from_slice::<Block>(&v).ok())
            .filter(|b| b.scope == Scope::Instance && b.kind == Kind::Net && b.expires_at > now)
            .collect();
        // The reports behind this page's blocks, in one read.
        let ids: Vec<String> = blocks.iter().filter_map(|b| b.report.clone()).collect();
        let categories: std::collections::BTreeMap<String, &'static str> =
            match store::reports(&ids) {
                Ok(reports) => reports
                    .into_iter()
                    .map(|r| (r.id, r.category.describe()))
                    .collect(),
                Err(e) => return unavailable(e),
            };
        for block in blocks {
            let reason = block
                .report
                .as_deref()
                .and_then(|id| categories.get(id).copied())
                .unwrap_or("blocked by an administrator");
            entries.push(json!({
                "entity": block.value,
                "kind": "network",
                "recommendation": "block",
                "reason": reason,
                "expires_at": block.expires_at / 1000,
            }));
        }
        if keys.len() < 1000 || entries.len() >= MAX_ENTRIES {
            break;
        }
        after = keys.last().cloned();
    }
    entries.truncate(MAX_ENTRIES);
    HttpResponse::json(
        200,
        json!({
            "format": FORMAT,
            "version": VERSION,
            "source": config::public_url(),
            "generated_at": now / 1000,
            "entries": entries,
        })
        .to_string(),
    )
    .with_header("cache-control", "no-store")
}

fn unavailable(e: Error) -> HttpResponse {
    log::warn(&format!("the blocklist could not be read: {e:?}"));
    HttpResponse::error_with_code(
        503,
        "unavailable",
        "The blocklist cannot be read now; try again later.",
    )
}

/// A list as it arrives.
#[derive(Deserialize)]
struct List {
    format: String,
    version: u32,
    entries: Vec<serde_json::Value>,
}

/// What a list says, checked: the networks to block with their reason and end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub rules: Vec<(String, String, i64)>,
    pub skipped: usize,
}

/// Reads a list's body (`now` in Unix ms). Refused whole when it is not a list of
/// this format and version, or has more than [`MAX_ENTRIES`] entries; an entry
/// that is not a network to block, or has no valid network or expiry, is skipped.
pub fn parse(body: &[u8], now: i64) -> Result<Parsed, String> {
    let list: List =
        serde_json::from_slice(body).map_err(|e| format!("the list is not valid JSON: {e}"))?;
    if list.format != FORMAT || list.version != VERSION {
        return Err(format!(
            "the list is {} version {}, not {FORMAT} version {VERSION}",
            list.format, list.version
        ));
    }
    if list.entries.len() > MAX_ENTRIES {
        return Err(format!("the list has more than {MAX_ENTRIES} entries"));
    }
    let mut rules = Vec::new();
    let mut skipped = 0;
    for entry in &list.entries {
        let text = |name: &str| entry.get(name).and_then(|v| v.as_str());
        let network = text("entity").and_then(canonical_network);
        let expires = entry
            .get("expires_at")
            .and_then(|v| v.as_i64())
            .and_then(|s| s.checked_mul(1000));
        match (text("kind"), text("recommendation"), network, expires) {
            (Some("network"), Some("block"), Some(network), Some(until)) if until > now => {
                let reason: String = text("reason")
                    .unwrap_or_default()
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_REASON_CHARS)
                    .collect();
                rules.push((network, reason, until.min(now + MAX_DAYS * DAY_MS)));
            }
            _ => skipped += 1,
        }
    }
    Ok(Parsed { rules, skipped })
}

/// `a.b.c.d/32`, or an IPv6 `/64`, written as this server writes its own; none
/// for anything else (a wider network, a host name, junk).
pub fn canonical_network(entity: &str) -> Option<String> {
    let (address, _) = entity.split_once('/')?;
    network_of(address).filter(|network| network == entity)
}

/// `sync-blocklists`: fetches every subscription and applies what it says.
pub fn sync_all() {
    let (subs, problems) = subscriptions(&config::get("subscriptions").unwrap_or_default());
    for problem in &problems {
        log::warn(&format!("subscriptions: {problem}"));
    }
    for (n, sub) in subs.iter().enumerate() {
        let now = crate::now_ms();
        let mut status: SourceStatus =
            store::get_record(&format!("source/{n}")).unwrap_or_default();
        if status.url != sub.url {
            status = SourceStatus {
                url: sub.url.clone(),
                ..SourceStatus::default()
            };
        }
        status.tried_at = Some(now);
        match fetch(sub, now)
            .and_then(|parsed| apply(n, sub, &parsed, now).map(|count| (count, parsed.skipped)))
        {
            Ok((count, skipped)) => {
                status.synced_at = Some(now);
                status.entries = count;
                status.skipped = skipped;
                status.error = None;
            }
            Err(why) => {
                log::warn(&format!(
                    "the blocklist of subscription {n} was not applied: {why}"
                ));
                status.error = Some(why);
            }
        }
        if let Err(e) = store::put_record(
            &format!("source/{n}"),
            &status,
            std::time::Duration::from_secs(30 * 86_400),
        ) {
            log::warn(&format!(
                "the status of subscription {n} was not kept: {e:?}"
            ));
        }
    }
}

fn fetch(sub: &Subscription, now: i64) -> Result<Parsed, String> {
    let response = http::send(&Request {
        method: "GET".into(),
        url: sub.url.clone(),
        headers: vec![
            (TOKEN_HEADER.to_string(), sub.token.clone()),
            ("accept".to_string(), "application/json".to_string()),
        ],
        body: Vec::new(),
        timeout_ms: Some(10_000),
    })
    .map_err(|e| format!("the request failed: {e:?}"))?;
    if response.status != 200 {
        return Err(format!("the server answered {}", response.status));
    }
    parse(&response.body, now)
}

/// Makes the shared rules of subscription `n` what `parsed` says: new and renewed
/// entries written, those the list no longer has removed. Returns how many it has.
fn apply(n: usize, sub: &Subscription, parsed: &Parsed, now: i64) -> Result<usize, String> {
    let host = sub
        .url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split(['/', '?', '#']).next())
        .unwrap_or_default()
        .to_string();
    let stale_after = now + STALE_DAYS * DAY_MS;
    let wanted: std::collections::BTreeMap<String, SharedRule> = parsed
        .rules
        .iter()
        .map(|(network, reason, until)| {
            let rule = SharedRule {
                source: n,
                host: host.clone(),
                reason: reason.clone(),
                until: (*until).min(stale_after),
            };
            (shared_key(network), rule)
        })
        .collect();
    // What this source had before and no longer has goes.
    let mut after: Option<String> = None;
    loop {
        let keys = kv::keys("shared/net/", after.as_deref(), 1000).map_err(|e| format!("{e:?}"))?;
        let values = kv::get_many(&keys).map_err(|e| format!("{e:?}"))?;
        for (key, value) in keys.iter().zip(values) {
            let Some(rule) = value.and_then(|v| serde_json::from_slice::<SharedRule>(&v).ok())
            else {
                continue;
            };
            if (rule.source == n && !wanted.contains_key(key)) || rule.until <= now {
                kv::delete(key).map_err(|e| format!("{e:?}"))?;
            }
        }
        if keys.len() < 1000 {
            break;
        }
        after = keys.last().cloned();
    }
    let entries: Vec<(String, Vec<u8>)> = wanted
        .iter()
        .filter_map(|(key, rule)| Some((key.clone(), serde_json::to_vec(rule).ok()?)))
        .collect();
    for chunk in entries.chunks(1000) {
        kv::set_many(chunk).map_err(|e| format!("{e:?}"))?;
    }
    Ok(wanted.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscriptions_are_url_and_token_per_line() {
        let (subs, problems) = subscriptions(
            "https://a.example/p/spam-guard/blocklist t0k3n\n  ; http://b.example/x tok\nbad\nftp://c.example/x t",
        );
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0].url, "https://a.example/p/spam-guard/blocklist");
        assert_eq!(subs[0].token, "t0k3n");
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn only_networks_to_block_are_taken_and_expiries_are_capped() {
        let now = 1_000_000_000_000;
        let later = now / 1000 + 3600;
        let body = json!({
            "format": FORMAT, "version": 1,
            "entries": [
                {"entity": "198.51.100.7/32", "kind": "network", "recommendation": "block", "reason": "spam\u{7}", "expires_at": later},
                {"entity": "2001:db8:1:2::/64", "kind": "network", "recommendation": "block", "reason": "x", "expires_at": later + 400 * 86_400},
                {"entity": "198.51.100.0/24", "kind": "network", "recommendation": "block", "expires_at": later},
                {"entity": "dev-1", "kind": "device", "recommendation": "block", "expires_at": later},
                {"entity": "198.51.100.8/32", "kind": "network", "recommendation": "review", "expires_at": later},
                {"entity": "198.51.100.9/32", "kind": "network", "recommendation": "block", "expires_at": now / 1000 - 1},
                {"entity": "198.51.100.10/32", "kind": "network", "recommendation": "block"},
                "junk"
            ]
        })
        .to_string();
        let parsed = parse(body.as_bytes(), now).unwrap();
        assert_eq!(
            parsed.rules,
            vec![
                (
                    "198.51.100.7/32".to_string(),
                    "spam".to_string(),
                    later * 1000
                ),
                (
                    "2001:db8:1:2::/64".to_string(),
                    "x".to_string(),
                    now + MAX_DAYS * DAY_MS
                ),
            ]
        );
        assert_eq!(parsed.skipped, 6);
        for bad in [
            json!({"format": "other", "version": 1, "entries": []}).to_string(),
            json!({"format": FORMAT, "version": 2, "entries": []}).to_string(),
            "not json".to_string(),
        ] {
            assert!(parse(bad.as_bytes(), now).is_err(), "{bad}");
        }
        let many =
            json!({"format": FORMAT, "version": 1, "entries": vec![json!({}); MAX_ENTRIES + 1]});
        assert!(parse(many.to_string().as_bytes(), now).is_err());
    }
}
