//! People who asked not to get invitations: RFC 8058 one-click unsubscribe, the
//! suppression list every invitation checks first, and the count of invitations
//! reported as unwanted against whoever sent them.
//!
//! Every mail carries one URL, `/p/email-invites/unsubscribe?t=TOKEN`, as its
//! `List-Unsubscribe` header and as the visible "Don't send me invitations / report
//! this invitation" link. The token names the sender, the link and a hash of the
//! recipient's address, signed with a key only this plugin holds, so the URL works
//! for years without anything stored per mail, and nobody can unsubscribe someone
//! else or report on a sender's behalf by guessing. Addresses are kept only as
//! hashes: the suppression list holds no address.
//!
//! | key | value |
//! | --- | --- |
//! | `secret/{random}` | a signing key (32 bytes); made once, on the first invitation |
//! | `suppress/{address hash}` | [`Suppression`] (JSON): since when, and which senders this person reported; expires after `retention_days` |
//! | `reported/{user}` | [`Reported`] (JSON): the sender's name and address and when their invitations were reported; expires after `retention_days` |

use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use confab_plugin_sdk::{Error, config, kv, log};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long suppressions and report counts are kept when the operator sets no
/// `retention_days` (the server's `privacy.retention_days` default).
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// The most report times kept per sender (the oldest go first).
pub const MAX_REPORTS_PER_SENDER: usize = 1000;
/// The most senders one suppression remembers having reported.
const MAX_REPORTED_SENDERS: usize = 100;
/// The route, under the plugin's prefix.
pub const ROUTE: &str = "/p/email-invites/unsubscribe";

const SECRET_PREFIX: &str = "secret/";

/// What the sender of a refused invitation is told, per recipient.
pub const SUPPRESSED_REASON: &str = "This person asked not to get invitations from this server.";

/// The operator's `retention_days`, or the default.
pub fn retention_days() -> u32 {
    match config::get("retention_days").map(|v| v.trim().parse::<u32>()) {
        None => DEFAULT_RETENTION_DAYS,
        Some(Ok(days)) if (1..=3650).contains(&days) => days,
        Some(_) => {
            log::warn(&format!(
                "retention_days is not a whole number of days from 1 to 3650; using {DEFAULT_RETENTION_DAYS}"
            ));
            DEFAULT_RETENTION_DAYS
        }
    }
}

fn retention() -> Duration {
    Duration::from_secs(u64::from(retention_days()) * 86_400)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash an address is kept under: the same for every spelling of its case.
pub fn address_hash(email: &str) -> String {
    let digest = Sha256::new()
        .chain_update(b"confab-email-invites/address\0")
        .chain_update(email.trim().to_lowercase().as_bytes())
        .finalize();
    hex(&digest[..16])
}

/// HMAC-SHA256 (RFC 2104).
fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner = Sha256::new()
        .chain_update(block.map(|b| b ^ 0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(block.map(|b| b ^ 0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// Equal, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What an unsubscribe token says: who sent the invitation, for which link, to
/// which address (its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub sender: i64,
    pub link: String,
    pub address: String,
}

impl Token {
    fn payload(&self) -> String {
        format!("{}.{}.{}", self.sender, self.link, self.address)
    }

    /// `{sender}.{link}.{address hash}.{signature}`: URL-safe as it is.
    pub fn sign(&self, key: &[u8]) -> String {
        let payload = self.payload();
        let signature = hmac(key, payload.as_bytes());
        format!("{payload}.{}", hex(&signature[..16]))
    }

    /// The token's parts, if it is well formed (not yet whether it is genuine).
    fn parse(text: &str) -> Option<(Self, &str)> {
        if text.len() > 200 {
            return None;
        }
        let mut parts = text.split('.');
        let (sender, link, address, signature) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex32 = |s: &str| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit());
        let link_ok =
            !link.is_empty() && link.len() <= 64 && link.bytes().all(|b| b.is_ascii_alphanumeric());
        if parts.next().is_some() || !link_ok || !hex32(address) || !hex32(signature) {
            return None;
        }
        let token = Self {
            sender: sender.parse().ok()?,
            link: link.to_string(),
            address: address.to_ascii_lowercase(),
        };
        Some((token, signature))
    }

    /// The token in `text`, if one of `keys` signed it.
    pub fn verify(text: &str, keys: &[Vec<u8>]) -> Option<Self> {
        let (token, signature) = Self::parse(text)?;
        let payload = token.payload();
        let genuine = keys.iter().any(|key| {
            let expected = hex(&hmac(key, payload.as_bytes())[..16]);
            same(
                expected.as_bytes(),
                signature.to_ascii_lowercase().as_bytes(),
            )
        });
        genuine.then_some(token)
    }
}

/// 32 bytes from the sandbox's random source (the keys the standard library
/// seeds its hash maps with, drawn from WASI `random`).
fn random_key() -> Vec<u8> {
    let state = std::collections::hash_map::RandomState::new();
    let mut key = Vec::with_capacity(32);
    for round in 0u64..4 {
        let mut hasher = state.build_hasher();
        hasher.write_u64(round);
        key.extend_from_slice(&hasher.finish().to_le_bytes());
    }
    key
}

/// Every signing key this plugin holds (normally one).
pub fn keys() -> Result<Vec<Vec<u8>>, Error> {
    let names = kv::keys(SECRET_PREFIX, None, 16)?;
    if names.is_empty() {
        return Ok(Vec::new());
    }
    Ok(kv::get_many(&names)?.into_iter().flatten().collect())
}

/// The key new tokens are signed with, made on first use. Two first invitations
/// at once may each make one; both stay (under their own names), so every token
/// either signed still verifies.
pub fn signing_key() -> Result<Vec<u8>, Error> {
    if let Some(key) = keys()?.into_iter().next() {
        return Ok(key);
    }
    let key = random_key();
    kv::set(&format!("{SECRET_PREFIX}{}", hex(&key[..8])), key.clone())?;
    Ok(key)
}

/// The URL of the unsubscribe page for `token`, on the server at `public`.
pub fn url(public: &str, token: &str) -> String {
    format!("{}{ROUTE}?t={token}", public.trim_end_matches('/'))
}

/// Writes the unsubscribe URLs of one request's mails.
pub struct Signer {
    key: Vec<u8>,
    public: String,
}

impl Signer {
    /// With the plugin's signing key (made on first use) and the server's address.
    pub fn load() -> Result<Self, Error> {
        Ok(Self {
            key: signing_key()?,
            public: config::public_url(),
        })
    }

    /// The URL for the mail `sender` sends `email` about `link`.
    pub fn url(&self, sender: i64, link: &str, email: &str) -> String {
        let token = Token {
            sender,
            link: link.to_string(),
            address: address_hash(email),
        };
        url(&self.public, &token.sign(&self.key))
    }
}

/// Someone who asked not to get invitations. Times are Unix seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    pub since: i64,
    /// The senders this person reported, each counted once.
    #[serde(default)]
    pub reported: Vec<i64>,
}

fn suppress_key(address: &str) -> String {
    format!("suppress/{address}")
}

/// The suppression of the address with hash `address`, if there is one.
pub fn suppression(address: &str) -> Result<Option<Suppression>, Error> {
    Ok(kv::get(&suppress_key(address))?.and_then(|v| serde_json::from_slice(&v).ok()))
}

/// Which of `emails` asked not to get invitations, by their position: one read.
pub fn suppressed(emails: &[&str]) -> Result<HashSet<usize>, Error> {
    if emails.is_empty() {
        return Ok(HashSet::new());
    }
    let keys: Vec<String> = emails
        .iter()
        .map(|e| suppress_key(&address_hash(e)))
        .collect();
    Ok(kv::get_many(&keys)?
        .into_iter()
        .enumerate()
        .filter_map(|(i, value)| value.map(|_| i))
        .collect())
}

fn save_suppression(address: &str, entry: &Suppression) -> Result<(), Error> {
    let json = serde_json::to_vec(entry).map_err(|e| Error::Invalid(e.to_string()))?;
    kv::set_with_ttl(&suppress_key(address), json, retention())
}

/// A sender's invitations that were reported as unwanted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reported {
    pub name: Option<String>,
    pub email: Option<String>,
    /// When, in Unix seconds, oldest first.
    pub at: Vec<i64>,
}

impl Reported {
    /// Reports in the `days` before `now`.
    pub fn recent(&self, now: i64, days: u32) -> Vec<i64> {
        let since = now - i64::from(days) * 86_400;
        self.at.iter().copied().filter(|&t| t > since).collect()
    }
}

pub fn reported_key(user: i64) -> String {
    format!("reported/{user}")
}

/// What came of an unsubscribe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The address was already on the list.
    pub already: bool,
    /// This report counted against the sender (not when this person had reported
    /// the same sender before).
    pub counted: bool,
}

/// Puts the address of `token` on the suppression list; with `report`, counts the
/// invitation against its sender, whose name and address are `sender`.
pub fn unsubscribe(
    token: &Token,
    report: bool,
    sender: (Option<String>, Option<String>),
    now: i64,
) -> Result<Outcome, Error> {
    let existing = suppression(&token.address)?;
    let already = existing.is_some();
    let mut entry = existing.unwrap_or(Suppression {
        since: now,
        reported: Vec::new(),
    });
    let counted = report
        && !entry.reported.contains(&token.sender)
        && entry.reported.len() < MAX_REPORTED_SENDERS;
    if counted {
        entry.reported.push(token.sender);
        let key = reported_key(token.sender);
        let mut reported: Reported = kv::get(&key)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default();
        let (name, email) = sender;
        reported.name = name.or(reported.name);
        reported.email = email.or(reported.email);
        reported.at = reported.recent(now, retention_days());
        reported.at.push(now);
        let overflow = reported.at.len().saturating_sub(MAX_REPORTS_PER_SENDER);
        reported.at.drain(..overflow);
        let json = serde_json::to_vec(&reported).map_err(|e| Error::Invalid(e.to_string()))?;
        kv::set_with_ttl(&key, json, retention())?;
    }
    if !already || counted {
        save_suppression(&token.address, &entry)?;
    }
    Ok(Outcome { already, counted })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_verifies_only_with_its_key_and_unchanged() {
        let key = b"0123456789abcdef0123456789abcdef".to_vec();
        let token = Token {
            sender: 7,
            link: "AbC123".into(),
            address: address_hash("Bo@Example.org"),
        };
        let text = token.sign(&key);
        assert_eq!(
            Token::verify(&text, std::slice::from_ref(&key)),
            Some(token.clone())
        );
        assert_eq!(
            token.address,
            address_hash(" bo@example.ORG "),
            "case and spaces do not matter"
        );
        let other = b"another key, another key, another".to_vec();
        assert_eq!(Token::verify(&text, std::slice::from_ref(&other)), None);
        assert_eq!(Token::verify(&text, &[other, key.clone()]), Some(token));
        // Another sender, link or address, or a cut signature: refused.
        for forged in [
            text.replacen("7.", "8.", 1),
            text.replace("AbC123", "AbC124"),
            text[..text.len() - 1].to_string(),
            format!("{text}.x"),
            String::new(),
            "7.AbC123".into(),
        ] {
            assert_eq!(
                Token::verify(&forged, std::slice::from_ref(&key)),
                None,
                "{forged}"
            );
        }
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2 of RFC 4231.
        assert_eq!(
            hex(&hmac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
