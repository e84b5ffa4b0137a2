//! `lobby-decision`: turn away who is blocked, and watch the link for signs that
//! it leaked.

use std::time::Duration;

use confab_plugin_sdk::{Decision, LobbyRequest, kv, log, moderation};

use crate::rules::{LinkActivity, MINUTE_MS, network_of};
use crate::shared;
use crate::store::{self, Kind, Scope, block_key};

/// Who is asking, as far as a block can tell.
pub(crate) struct Caller {
    pub device: Option<String>,
    pub network: Option<String>,
}

/// The keys of every block that could apply to `caller` on this link: the link's
/// and the server's, by device and by network. One read answers them all.
pub(crate) fn block_keys(link: &str, caller: &Caller) -> Vec<String> {
    let scopes = [Scope::Link(link.to_string()), Scope::Instance];
    let mut keys = Vec::with_capacity(4);
    for scope in &scopes {
        if let Some(device) = &caller.device {
            keys.push(block_key(scope, Kind::Dev, device));
        }
        if let Some(network) = &caller.network {
            keys.push(block_key(scope, Kind::Net, network));
        }
    }
    keys
}

pub(crate) fn decide(request: &LobbyRequest) -> Decision {
    let now = crate::now_ms();
    let caller = match moderation::screened_origin() {
        Ok(origin) => Caller {
            device: origin.device,
            network: origin.network,
        },
        // Without the moderation grant: the address alone.
        Err(_) => Caller {
            device: None,
            network: request.address.as_deref().and_then(network_of),
        },
    };
    let mut keys = block_keys(&request.call.link, &caller);
    let own = keys.len();
    if let Some(network) = &caller.network {
        keys.push(shared::allow_key(network));
        keys.push(shared::shared_key(network));
    }
    let values = match kv::get_many(&keys) {
        Ok(values) => values,
        Err(e) => {
            log::warn(&format!("could not read the blocks: {e:?}"));
            return Decision::Flag("Could not check this request against the blocklist".into());
        }
    };
    let verdict = verdict(&values, own, now);
    watch_link(
        &request.call.link,
        caller.network.as_deref(),
        verdict.is_some(),
        now,
    );
    match verdict {
        Some(reason) => Decision::Deny(reason),
        None => Decision::Allow,
    }
}

/// Why the caller is turned away, if they are: `values` are the entries under
/// [`block_keys`] (the first `own`), then, with a network, its exception and its
/// shared rule. This server's blocks come first; an administrator's exception
/// beats any shared list; a shared rule applies until it lapses.
pub(crate) fn verdict(values: &[Option<Vec<u8>>], own: usize, now: i64) -> Option<String> {
    let parse_block = |v: &Option<Vec<u8>>| {
        v.as_deref()
            .and_then(|v| serde_json::from_slice::<store::Block>(v).ok())
    };
    if let Some(block) = values[..own].iter().find_map(parse_block) {
        return Some(block.reason);
    }
    let excepted = values.get(own).is_some_and(Option::is_some);
    let shared = values
        .get(own + 1)
        .and_then(|v| v.as_deref())
        .and_then(|v| serde_json::from_slice::<shared::SharedRule>(v).ok())
        .filter(|rule| rule.until > now);
    (!excepted && shared.is_some()).then(|| shared::SHARED_REASON.to_string())
}

/// Counts the request towards leaked-link detection and warns the owner when the
/// link crosses a threshold.
pub(crate) fn watch_link(link: &str, network: Option<&str>, denied: bool, now: i64) {
    let settings = crate::settings();
    let key = format!("activity/{link}");
    let Ok(mut activity) = store::get_record::<LinkActivity>(&key) else {
        return;
    };
    let signs = activity.record(network, denied, now, &settings);
    let keep =
        Duration::from_millis(u64::try_from(2 * settings.leak_minutes * MINUTE_MS).unwrap_or(0));
    if let Err(e) = store::put_record(&key, &activity, keep) {
        log::warn(&format!("could not count a join request: {e:?}"));
    }
    if signs.warn {
        crate::notify::link_may_have_leaked(link, signs.networks, signs.denials);
    }
}
