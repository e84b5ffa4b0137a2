//! The plugin's HTTP API (the table in the crate's documentation).

use confab_plugin_sdk::{
    Error, HttpRequest, HttpResponse, Participant, calls, links, log, moderation,
};
use serde::Deserialize;
use serde_json::json;

use crate::rules::{
    Category, DAY_MS, KEEP_FOR_INVESTIGATION_DAYS, MINUTE_MS, ReportWindow, ReporterRate, identity,
};
use crate::shared::{self, Exception, SourceStatus};
use crate::store::{
    self, Block, Group, Kind, Report, STILL_PART_BYTES, STILL_PARTS, Scope, Status,
};

/// Longest note with a report, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;
/// Longest name a reporter may give for someone in the lobby.
const MAX_NAME_CHARS: usize = 64;
/// Callers shown in one page of the review queue.
const QUEUE_GROUPS: usize = 200;
/// Blocks listed at once.
const BLOCKS_PAGE: u32 = 1000;

fn error(status: u16, code: &str, message: impl Into<String>) -> HttpResponse {
    HttpResponse::error_with_code(status, code, message)
}

/// An SDK error as an HTTP answer.
fn failed(e: Error) -> HttpResponse {
    match e {
        Error::AccessDenied(m) => error(403, "forbidden", m),
        Error::NotFound(m) => error(404, "not_found", m),
        Error::Invalid(m) => error(422, "invalid", m),
        Error::LimitReached(m) => error(429, "limit_reached", m),
        Error::Unavailable(m) => error(503, "unavailable", m),
    }
}

pub(crate) fn route(request: &HttpRequest) -> HttpResponse {
    // Another server's subscription: the token, not a session, says who may read.
    if request.path.trim_matches('/') == "blocklist" {
        return match request.method.as_str() {
            "GET" => shared::export(request),
            _ => error(405, "method_not_allowed", "use GET").with_header("allow", "GET"),
        };
    }
    let Some(user) = request.user else {
        return error(401, "unauthorized", "sign in first");
    };
    let path: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let result = match (request.method.as_str(), path.as_slice()) {
        ("POST", ["reports"]) => file_report(user, &request.body),
        ("GET", ["reports"]) => admin(user).and_then(|()| queue()),
        ("GET", ["reports", id, "evidence"]) => admin(user).and_then(|()| evidence(id)),
        ("POST", ["reports", id]) => admin(user).and_then(|()| review(id, &request.body)),
        ("GET", ["blocks"]) => admin(user).and_then(|()| list_blocks()),
        ("POST", ["blocks"]) => admin(user).and_then(|()| block_on_server(user, &request.body)),
        ("DELETE", ["blocks", id]) => admin(user).and_then(|()| unblock(id)),
        ("POST", ["lobby-lock"]) => lock_lobby(user, &request.body),
        ("POST", ["suspend"]) => suspend(user, &request.body),
        ("POST", ["rotate"]) => rotate(user, &request.body),
        ("GET", ["subscriptions"]) => admin(user).and_then(|()| subscriptions()),
        ("GET", ["shared"]) => admin(user).and_then(|()| shared_rule(&request.query)),
        ("POST", ["exceptions"]) => admin(user).and_then(|()| exception(user, &request.body)),
        _ => Err(error(404, "not_found", "no such page")),
    };
    result.unwrap_or_else(|answer| answer)
}

type Answer = Result<HttpResponse, HttpResponse>;

fn admin(user: i64) -> Result<(), HttpResponse> {
    match moderation::is_admin(user) {
        Ok(true) => Ok(()),
        Ok(false) => Err(error(
            403,
            "forbidden",
            "only administrators see the review queue",
        )),
        Err(e) => Err(failed(e)),
    }
}

fn body<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, HttpResponse> {
    serde_json::from_slice(bytes)
        .map_err(|e| error(422, "invalid", format!("the request is not valid: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewReport {
    link: String,
    participant: Option<u32>,
    request: Option<u32>,
    /// The name the reporter sees for someone in the lobby.
    name: Option<String>,
    category: Category,
    #[serde(default)]
    note: Option<String>,
    /// A still of the person: `data:image/jpeg;base64,…` or `data:image/png;base64,…`.
    evidence: Option<String>,
    #[serde(default = "default_action")]
    action: String,
}

fn default_action() -> String {
    "report".into()
}

/// Who was reported.
struct Target {
    name: String,
    user: Option<i64>,
    origin: moderation::Origin,
}

fn file_report(user: i64, bytes: &[u8]) -> Answer {
    let input: NewReport = body(bytes)?;
    let settings = crate::settings();
    let now = crate::now_ms();
    if !matches!(
        input.action.as_str(),
        "report" | "remove" | "deny" | "block"
    ) {
        return Err(error(
            422,
            "invalid",
            "action is one of report, remove, deny and block",
        ));
    }
    let note = input.note.clone().unwrap_or_default();
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(error(
            422,
            "invalid",
            format!("a note is at most {MAX_NOTE_CHARS} characters"),
        ));
    }
    let still = match &input.evidence {
        Some(data) => Some(decode_still(data)?),
        None => None,
    };
    let link = links::get(&input.link).map_err(failed)?;
    if link.revoked_at.is_some() {
        return Err(error(404, "not_found", "this link was revoked"));
    }
    let roster = calls::roster(&input.link).map_err(failed)?;
    let Some(reporter) = roster.iter().find(|p| p.user == Some(user)) else {
        return Err(error(
            403,
            "forbidden",
            "only people on the call can report someone on it",
        ));
    };
    let target = match (input.participant, input.request) {
        (Some(id), None) => on_call(&input.link, &roster, reporter, id)?,
        (None, Some(request)) => {
            let origin = moderation::request_origin(&input.link, request).map_err(failed)?;
            let name: String = input
                .name
                .clone()
                .unwrap_or_default()
                .chars()
                .take(MAX_NAME_CHARS)
                .collect();
            Target {
                name,
                user: None,
                origin,
            }
        }
        _ => {
            return Err(error(
                422,
                "invalid",
                "name either a participant or a lobby request",
            ));
        }
    };
    if input.request.is_some() && input.action == "remove" {
        return Err(error(
            422,
            "invalid",
            "someone in the lobby is denied, not removed",
        ));
    }
    if input.participant.is_some() && input.action == "deny" {
        return Err(error(
            422,
            "invalid",
            "someone on the call is removed, not denied",
        ));
    }
    if target.user.is_some() && input.action == "block" {
        return Err(error(
            422,
            "invalid",
            "signed-in people are not blocked; report them to an administrator",
        ));
    }
    let rate_key = format!("rate/{user}");
    let mut rate: ReporterRate = store::get_record(&rate_key).map_err(failed)?;
    if !rate.allow(now, &settings) {
        return Err(error(
            429,
            "rate_limited",
            format!(
                "you can file at most {} reports an hour",
                settings.reports_per_user_per_hour
            ),
        ));
    }
    store::put_record(&rate_key, &rate, std::time::Duration::from_secs(3600)).map_err(failed)?;

    // The action first: a report whose removal was refused still counts, and says why.
    let mut removed = false;
    let mut denied = false;
    let mut problem: Option<String> = None;
    match (input.action.as_str(), input.participant, input.request) {
        ("remove" | "block", Some(p), _) => match calls::remove(&input.link, user, p) {
            Ok(()) => removed = true,
            Err(e) => problem = Some(format!("They could not be removed: {}", message(&e))),
        },
        ("deny" | "block", _, Some(r)) => match moderation::deny_request(&input.link, user, r) {
            Ok(()) => denied = true,
            Err(e) => problem = Some(format!("The request could not be denied: {}", message(&e))),
        },
        _ => {}
    }
    if denied {
        crate::decide::watch_link(&input.link, target.origin.network.as_deref(), true, now);
    }
    let who = identity(
        target.origin.device.as_deref(),
        target.origin.network.as_deref(),
    );
    let mut report = Report {
        id: crate::new_id(),
        at: now,
        link: link.id.clone(),
        link_title: link.title.clone(),
        reporter: user,
        reporter_name: reporter.name.clone(),
        name: target.name.clone(),
        user: target.user,
        identity: who.clone(),
        device: target.origin.device.clone(),
        network: target.origin.network.clone(),
        // What administrators read: the IPv4 address, or the IPv6 /64.
        address: target
            .origin
            .network
            .as_deref()
            .map(|n| n.strip_suffix("/32").unwrap_or(n).to_string()),
        category: input.category,
        note: note.trim().to_string(),
        still_parts: 0,
        still_type: None,
        action: input.action.clone(),
        escalated: false,
        status: if removed || denied {
            Status::Actioned
        } else {
            Status::New
        },
        keep_until: None,
    };
    let mut blocked = false;
    if input.action == "block" && target.user.is_none() {
        blocked = block_from_link(&link.id, &target, &report, Some(user), now, &settings)?;
    }
    // Several people reporting the same guest: removed and blocked from the link.
    let mut escalated = false;
    if target.user.is_none()
        && let (Some(who), Some(participant)) = (&who, input.participant)
    {
        let key = format!("escalation/{}/{who}", link.id);
        let mut window: ReportWindow = store::get_record(&key).map_err(failed)?;
        if window.add(user, now, &settings) {
            escalated = true;
            if !removed {
                // As any of the reporters who may (the link's owner always may).
                removed = window
                    .reporters()
                    .into_iter()
                    .any(|reporter| calls::remove(&link.id, reporter, participant).is_ok());
            }
            if !blocked {
                blocked = block_from_link(&link.id, &target, &report, None, now, &settings)?;
            }
            problem = (!removed).then(|| "Several people reported them and they are blocked from this link, but nobody who reported them may remove them any more; the host can.".to_string());
        }
        let keep = std::time::Duration::from_millis(
            u64::try_from(settings.escalation_minutes * MINUTE_MS).unwrap_or(0),
        );
        store::put_record(&key, &window, keep).map_err(failed)?;
    }
    report.escalated = escalated;
    if removed || blocked || denied {
        report.status = Status::Actioned;
    }
    let parts: Vec<Vec<u8>> = match &still {
        Some((kind, bytes)) => {
            report.still_type = Some((*kind).to_string());
            bytes.chunks(STILL_PART_BYTES).map(<[u8]>::to_vec).collect()
        }
        None => Vec::new(),
    };
    report.still_parts = parts.len();
    store::put_report(&report, &parts, now, settings.retention_days).map_err(failed)?;
    if let Some(who) = &who {
        add_to_group(who, &report, now, settings.retention_days).map_err(failed)?;
    }
    store::mark_pending(&report.id, now, settings.retention_days).map_err(failed)?;
    Ok(HttpResponse::json(
        201,
        json!({
            "report": report.id,
            "removed": removed,
            "denied": denied,
            "blocked": blocked,
            "escalated": escalated,
            "problem": problem,
        })
        .to_string(),
    ))
}

/// The reported participant, who must be on the call and not the reporter.
fn on_call(
    link: &str,
    roster: &[Participant],
    reporter: &Participant,
    id: u32,
) -> Result<Target, HttpResponse> {
    if id == reporter.id {
        return Err(error(422, "invalid", "you cannot report yourself"));
    }
    let Some(p) = roster.iter().find(|p| p.id == id) else {
        return Err(error(
            404,
            "not_found",
            "that person is no longer on the call",
        ));
    };
    let origin = moderation::participant_origin(link, id).map_err(failed)?;
    Ok(Target {
        name: p.name.clone(),
        user: p.user,
        origin,
    })
}

fn message(e: &Error) -> String {
    match e {
        Error::AccessDenied(m)
        | Error::NotFound(m)
        | Error::Invalid(m)
        | Error::LimitReached(m)
        | Error::Unavailable(m) => m.clone(),
    }
}

/// `data:image/…;base64,…` → the image's type and bytes (JPEG or PNG, checked by
/// their first bytes, at most [`STILL_PARTS`] × [`STILL_PART_BYTES`]).
pub fn decode_still(data: &str) -> Result<(&'static str, Vec<u8>), HttpResponse> {
    use base64::Engine as _;
    let limit = STILL_PARTS * STILL_PART_BYTES;
    // Base64 is 4/3 of the bytes: refuse an oversized string before decoding it.
    if data.len() > limit / 3 * 4 + 64 {
        return Err(error(
            413,
            "too_large",
            format!("a still is at most {} KiB", limit / 1024),
        ));
    }
    let encoded = data
        .strip_prefix("data:image/jpeg;base64,")
        .or_else(|| data.strip_prefix("data:image/png;base64,"))
        .ok_or_else(|| error(422, "invalid", "a still is a JPEG or PNG data: URL"))?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| error(422, "invalid", "the still is not valid base64"))?;
    let kind = if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        "image/jpeg"
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else {
        return Err(error(
            422,
            "invalid",
            "the still is not a JPEG or PNG image",
        ));
    };
    if bytes.len() > limit {
        return Err(error(
            413,
            "too_large",
            format!("a still is at most {} KiB", limit / 1024),
        ));
    }
    Ok((kind, bytes))
}

/// Blocks the reported guest from the link, by device and by network; true when a
/// block was made (the server knew at least one of the two).
fn block_from_link(
    link: &str,
    target: &Target,
    report: &Report,
    by: Option<i64>,
    now: i64,
    settings: &crate::rules::Settings,
) -> Result<bool, HttpResponse> {
    let reason = "You can't join calls on this link: someone on an earlier call blocked you.";
    let made = make_blocks(
        Scope::Link(link.to_string()),
        &target.origin.device,
        &target.origin.network,
        reason,
        Some(&report.id),
        by,
        now,
        settings,
    )?;
    Ok(made > 0)
}

#[allow(clippy::too_many_arguments)]
fn make_blocks(
    scope: Scope,
    device: &Option<String>,
    network: &Option<String>,
    reason: &str,
    report: Option<&str>,
    by: Option<i64>,
    now: i64,
    settings: &crate::rules::Settings,
) -> Result<usize, HttpResponse> {
    let mut made = 0;
    for (kind, value) in [(Kind::Dev, device), (Kind::Net, network)] {
        let Some(value) = value else { continue };
        let block = Block {
            id: crate::new_id(),
            scope: scope.clone(),
            kind,
            value: value.clone(),
            reason: reason.to_string(),
            report: report.map(str::to_string),
            by,
            created_at: now,
            expires_at: now + settings.block_days * DAY_MS,
        };
        store::put_block(&block, now).map_err(failed)?;
        made += 1;
    }
    Ok(made)
}

fn add_to_group(who: &str, report: &Report, now: i64, retention_days: i64) -> Result<(), Error> {
    let mut group = store::group(who)?.unwrap_or_else(|| Group {
        identity: who.to_string(),
        ..Group::default()
    });
    if !group.names.contains(&report.name) {
        group.names.push(report.name.clone());
    }
    group.address = report.address.clone().or(group.address);
    group.network = report.network.clone().or(group.network);
    group.device = report.device.clone().or(group.device);
    group.reports.push(report.id.clone());
    if group.reports.len() > store::GROUP_REPORTS {
        group.reports.remove(0);
    }
    group.last_at = report.at;
    store::put_group(&group, report.expires_at(retention_days), now)
}

/// The review queue: every caller with reports, newest first.
fn queue() -> Answer {
    let mut groups = store::groups().map_err(failed)?;
    groups.sort_by_key(|g| std::cmp::Reverse(g.last_at));
    groups.truncate(QUEUE_GROUPS);
    let mut out = Vec::new();
    for group in groups {
        let mut reports = store::reports(&group.reports).map_err(failed)?;
        if reports.is_empty() {
            continue;
        }
        reports.sort_by_key(|r| std::cmp::Reverse(r.at));
        let status = if reports.iter().any(|r| r.status == Status::New) {
            Status::New
        } else if reports.iter().any(|r| r.status == Status::Actioned) {
            Status::Actioned
        } else {
            Status::Dismissed
        };
        let blocked = match &group.block {
            Some(id) => store::block_by_id(id).map_err(failed)?,
            None => None,
        };
        out.push(json!({
            "identity": group.identity,
            "names": group.names,
            "address": group.address,
            "device": group.device.is_some(),
            "status": status,
            "blocked": blocked.map(|b| json!({"id": b.id, "scope": b.scope.name(), "expires_at": b.expires_at})),
            "reports": reports.iter().map(|r| json!({
                "id": r.id,
                "category": r.category,
                "note": r.note,
                "evidence": r.still_parts > 0,
                "reporter": r.reporter_name,
                "link": r.link,
                "link_title": r.link_title,
                "action": r.action,
                "escalated": r.escalated,
                "at": r.at,
                "status": r.status,
                "keep_until": r.keep_until,
            })).collect::<Vec<_>>(),
        }));
    }
    Ok(HttpResponse::json(200, json!({"groups": out}).to_string()))
}

fn evidence(id: &str) -> Answer {
    let report = store::report(id)
        .map_err(failed)?
        .ok_or_else(|| error(404, "not_found", "no such report"))?;
    let bytes = store::still(&report)
        .map_err(failed)?
        .ok_or_else(|| error(404, "not_found", "this report has no still"))?;
    let kind = report.still_type.unwrap_or_else(|| "image/jpeg".into());
    Ok(HttpResponse {
        status: 200,
        headers: vec![
            ("content-type".into(), kind),
            ("cache-control".into(), "private, no-store".into()),
        ],
        body: bytes,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewChange {
    status: Option<Status>,
    keep: Option<bool>,
}

fn review(id: &str, bytes: &[u8]) -> Answer {
    let change: ReviewChange = body(bytes)?;
    let settings = crate::settings();
    let now = crate::now_ms();
    let mut report = store::report(id)
        .map_err(failed)?
        .ok_or_else(|| error(404, "not_found", "no such report"))?;
    if let Some(status) = change.status {
        report.status = status;
    }
    match change.keep {
        Some(true) => report.keep_until = Some(report.at + KEEP_FOR_INVESTIGATION_DAYS * DAY_MS),
        Some(false) => report.keep_until = None,
        None => {}
    }
    if report.expires_at(settings.retention_days) <= now {
        // Unkept past the retention period: gone now, as it would have been.
        report.keep_until = None;
    }
    store::put_report(&report, &[], now, settings.retention_days).map_err(failed)?;
    store::retime_still(&report, now, settings.retention_days).map_err(failed)?;
    if let Some(who) = &report.identity
        && let Some(group) = store::group(who).map_err(failed)?
    {
        let until = store::reports(&group.reports)
            .map_err(failed)?
            .iter()
            .map(|r| r.expires_at(settings.retention_days))
            .max()
            .unwrap_or(now);
        store::put_group(&group, until, now).map_err(failed)?;
    }
    Ok(HttpResponse::json(
        200,
        json!({"id": report.id, "status": report.status, "keep_until": report.keep_until})
            .to_string(),
    ))
}

fn list_blocks() -> Answer {
    let (blocks, _) = store::blocks(None, BLOCKS_PAGE).map_err(failed)?;
    let out: Vec<_> = blocks
        .iter()
        .map(|b| {
            json!({
                "id": b.id,
                "scope": b.scope.name(),
                "link": match &b.scope { Scope::Link(l) => Some(l.clone()), _ => None },
                "kind": b.kind,
                "reason": b.reason,
                "report": b.report,
                "created_at": b.created_at,
                "expires_at": b.expires_at,
            })
        })
        .collect();
    Ok(HttpResponse::json(200, json!({"blocks": out}).to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBlock {
    report: String,
    scope: String,
    days: Option<i64>,
}

fn block_on_server(user: i64, bytes: &[u8]) -> Answer {
    let input: NewBlock = body(bytes)?;
    if input.scope != "instance" {
        return Err(error(
            422,
            "invalid",
            "administrators block on the whole server (scope instance)",
        ));
    }
    let mut settings = crate::settings();
    if let Some(days) = input.days {
        if !(1..=3650).contains(&days) {
            return Err(error(422, "invalid", "a block lasts 1 to 3650 days"));
        }
        settings.block_days = days;
    }
    let now = crate::now_ms();
    let mut report = store::report(&input.report)
        .map_err(failed)?
        .ok_or_else(|| error(404, "not_found", "no such report"))?;
    if report.user.is_some() {
        return Err(error(
            422,
            "invalid",
            "signed-in people are not blocked; suspend their account instead",
        ));
    }
    let reason = "You can't join calls on this server: an administrator blocked your network.";
    // Instance-wide, the network: a device cookie is only valid for one link.
    let made = make_blocks(
        Scope::Instance,
        &None,
        &report.network,
        reason,
        Some(&report.id),
        Some(user),
        now,
        &settings,
    )?;
    if made == 0 {
        return Err(error(
            422,
            "invalid",
            "the server saw no address for this person, so there is nothing to block",
        ));
    }
    let block = report
        .network
        .as_ref()
        .map(|n| store::block_key(&Scope::Instance, Kind::Net, n));
    let block_id = match block {
        Some(key) => store::first_block(&[key]).map_err(failed)?.map(|b| b.id),
        None => None,
    };
    if let Some(who) = &report.identity
        && let Some(mut group) = store::group(who).map_err(failed)?
    {
        group.block = block_id.clone();
        let retention = crate::settings().retention_days;
        let reports = store::reports(&group.reports).map_err(failed)?;
        // Kept as long as its longest-kept report.
        let until = reports
            .iter()
            .map(|r| r.expires_at(retention))
            .max()
            .unwrap_or(now);
        store::put_group(&group, until, now).map_err(failed)?;
        // Every report of this caller is dealt with.
        for mut r in reports {
            if r.status == Status::New {
                r.status = Status::Actioned;
                store::put_report(&r, &[], now, retention).map_err(failed)?;
            }
        }
    }
    report.status = Status::Actioned;
    store::put_report(&report, &[], now, crate::settings().retention_days).map_err(failed)?;
    log::info("an administrator blocked a reported caller on the whole server");
    Ok(HttpResponse::json(
        201,
        json!({"block": block_id}).to_string(),
    ))
}

fn unblock(id: &str) -> Answer {
    match store::remove_block(id).map_err(failed)? {
        Some(_) => Ok(HttpResponse {
            status: 204,
            headers: Vec::new(),
            body: Vec::new(),
        }),
        None => Err(error(404, "not_found", "no such block")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LobbyLock {
    link: String,
    locked: bool,
}

fn lock_lobby(user: i64, bytes: &[u8]) -> Answer {
    let input: LobbyLock = body(bytes)?;
    moderation::lock_lobby(&input.link, user, input.locked).map_err(failed)?;
    Ok(HttpResponse::json(
        200,
        json!({"locked": input.locked}).to_string(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Suspend {
    link: String,
    suspended: bool,
}

fn suspend(user: i64, bytes: &[u8]) -> Answer {
    let input: Suspend = body(bytes)?;
    moderation::suspend_guests(&input.link, user, input.suspended).map_err(failed)?;
    log::info(if input.suspended {
        "someone on a call suspended its guests"
    } else {
        "someone on a call resumed its guests"
    });
    Ok(HttpResponse::json(
        200,
        json!({"suspended": input.suspended}).to_string(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotate {
    link: String,
}

fn rotate(user: i64, bytes: &[u8]) -> Answer {
    let input: Rotate = body(bytes)?;
    // Only the new id: the page keeps the call's own secret (`#k=`), so the people
    // on the call and those invited with the new address share one key.
    let rotated = moderation::rotate_link(user, &input.link).map_err(failed)?;
    Ok(HttpResponse::json(
        200,
        json!({"id": rotated.link.id}).to_string(),
    ))
}

/// `GET /subscriptions`: the shared lists this server applies, how each last
/// fetch went, and the administrators' exceptions.
fn subscriptions() -> Answer {
    let text = confab_plugin_sdk::config::get("subscriptions").unwrap_or_default();
    let (subs, problems) = shared::subscriptions(&text);
    let mut lists = Vec::new();
    for (n, sub) in subs.iter().enumerate() {
        let status: SourceStatus = store::get_record(&format!("source/{n}")).map_err(failed)?;
        let status = if status.url == sub.url {
            status
        } else {
            SourceStatus::default()
        };
        lists.push(json!({
            "url": sub.url,
            "synced_at": status.synced_at,
            "tried_at": status.tried_at,
            "entries": status.entries,
            "skipped": status.skipped,
            "error": status.error,
        }));
    }
    let keys = confab_plugin_sdk::kv::keys("allow/net/", None, 1000).map_err(failed)?;
    let exceptions: Vec<&str> = keys
        .iter()
        .filter_map(|k| k.strip_prefix("allow/net/"))
        .collect();
    let token = confab_plugin_sdk::config::get("export_token").unwrap_or_default();
    Ok(HttpResponse::json(
        200,
        json!({
            "exporting": token.trim().chars().count() >= shared::MIN_TOKEN_CHARS,
            "subscriptions": lists,
            "problems": problems,
            "exceptions": exceptions,
        })
        .to_string(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewException {
    network: String,
    allow: bool,
}

/// `POST /exceptions`: an administrator's word on a network, over every shared
/// list: `allow` true, never blocked by one; false, the lists apply again.
fn exception(user: i64, bytes: &[u8]) -> Answer {
    let input: NewException = body(bytes)?;
    let Some(network) = shared::canonical_network(input.network.trim()) else {
        return Err(error(
            422,
            "invalid",
            "give a network as this server writes them: a.b.c.d/32, or an IPv6 /64",
        ));
    };
    let key = shared::allow_key(&network);
    if input.allow {
        let value = serde_json::to_vec(&Exception {
            by: user,
            at: crate::now_ms(),
        })
        .map_err(|e| error(500, "internal", e.to_string()))?;
        confab_plugin_sdk::kv::set(&key, value).map_err(failed)?;
    } else {
        confab_plugin_sdk::kv::delete(&key).map_err(failed)?;
    }
    Ok(HttpResponse::json(
        200,
        json!({"network": network, "allow": input.allow}).to_string(),
    ))
}

/// `GET /shared?network=…`: whether a shared list blocks this network here, which
/// server's list and why, and whether an exception lets it through: what an
/// administrator looks up when someone says they are turned away.
fn shared_rule(query: &str) -> Answer {
    let network = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("network="))
        .map(|v| {
            v.replace("%2F", "/")
                .replace("%2f", "/")
                .replace("%3A", ":")
                .replace("%3a", ":")
        })
        .unwrap_or_default();
    let Some(network) = shared::canonical_network(network.trim()) else {
        return Err(error(
            422,
            "invalid",
            "give ?network= as this server writes them: a.b.c.d/32, or an IPv6 /64",
        ));
    };
    let keys = [shared::shared_key(&network), shared::allow_key(&network)];
    let values = confab_plugin_sdk::kv::get_many(&keys).map_err(failed)?;
    let now = crate::now_ms();
    let rule = values[0]
        .as_deref()
        .and_then(|v| serde_json::from_slice::<shared::SharedRule>(v).ok())
        .filter(|r| r.until > now)
        .map(|r| json!({"host": r.host, "reason": r.reason, "until": r.until}));
    Ok(HttpResponse::json(
        200,
        json!({"network": network, "rule": rule, "exception": values[1].is_some()}).to_string(),
    ))
}
