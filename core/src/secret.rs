//! Random identifiers and secrets, and how they are stored (hashed).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::distributions::Alphanumeric;
use rand::{Rng, RngCore};
use sha2::{Digest, Sha256};

/// `len` characters from `[0-9A-Za-z]`, from the OS-seeded CSPRNG.
///
/// Alphanumerics only: they survive being pasted into mail and chat apps, which cut
/// links at punctuation, and need no escaping anywhere. Each character carries
/// log2(62) ≈ 5.95 bits.
pub fn random_base62(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// `bytes` random bytes straight from the operating system's CSPRNG, as unpadded
/// base64url (`[A-Za-z0-9_-]`, 4 characters per 3 bytes): for keys that go into a
/// URL fragment, where every character is safe and each carries 6 bits.
pub fn random_base64url(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// SHA-256 of `value`, hex encoded. Tokens and session ids are high-entropy random
/// strings, so a fast hash is enough to make a database leak useless.
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A secret value that must not end up in logs: `Debug` prints `Secret(…)`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_ids_are_alphanumeric_and_distinct() {
        let a = random_base62(22);
        let b = random_base62(22);
        assert_eq!(a.len(), 22);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }

    #[test]
    fn random_base64url_is_unpadded_url_safe_and_distinct() {
        let a = random_base64url(16);
        let b = random_base64url(16);
        assert_eq!(a.len(), 22, "16 bytes are 22 characters without padding");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(a, b);
        let decoded = URL_SAFE_NO_PAD.decode(&a).unwrap();
        assert_eq!(decoded.len(), 16);
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let s = Secret::new("cf_supersecret".into());
        assert!(!format!("{s:?}").contains("supersecret"));
        assert_eq!(s.expose(), "cf_supersecret");
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
