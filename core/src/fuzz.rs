//! Entry points for fuzzing what a stranger can send, one per input kind. The
//! fuzz targets in `fuzz/` (libFuzzer, on the stable toolchain) and the corpus
//! regression test both call these; each checks what must hold for any input, not
//! only that nothing panics.

use std::str;

/// A signaling message from a client: decoded or refused with an error message.
pub fn signaling(data: &[u8]) {
    let Ok(text) = str::from_utf8(data) else {
        return;
    };
    if let Err(refusal) = crate::protocol::decode(text) {
        let wire = crate::protocol::encode(&refusal);
        assert!(wire.contains("\"type\":\"error\""), "{wire}");
    }
}

/// The `next` parameter after sign-in: wherever it points, the redirect stays on
/// the site and is a valid `Location`.
pub fn next(data: &[u8]) {
    let given = String::from_utf8_lossy(data);
    let to = crate::http::pages::safe_next(&given);
    assert!(to.starts_with('/'), "{given:?} -> {to:?}");
    assert!(
        !to.starts_with("//") && !to.starts_with("/\\"),
        "{given:?} -> {to:?}"
    );
    assert!(
        !to.contains(|c: char| c.is_control() || c == ' '),
        "{given:?} -> {to:?}"
    );
    let base = url::Url::parse("https://confab.invalid/").expect("a valid base");
    let resolved = base.join(&to).expect("the redirect is a valid URL");
    assert_eq!(resolved.origin(), base.origin(), "{given:?} -> {to:?}");
}

/// A plugin manifest (`plugin.toml`).
pub fn manifest(data: &[u8]) {
    let Ok(text) = str::from_utf8(data) else {
        return;
    };
    let _ = crate::plugins::manifest::Manifest::parse(text);
}

/// An email address, as accounts and plugins' mail give them: whatever the checks
/// accept can be put in a message, and nothing accepted can start a header.
pub fn mail_address(data: &[u8]) {
    let Ok(text) = str::from_utf8(data) else {
        return;
    };
    if let Ok(email) = crate::validate::email(text) {
        assert!(!email.contains(['\r', '\n', '\0']), "{email:?}");
    }
    if crate::plugins::capabilities::mail::check_address("to", text).is_ok() {
        assert!(!text.contains(['\r', '\n', '\0']), "{text:?}");
        // Parsed as the outbox will; a refusal there fails the message, cleanly.
        let _ = text.parse::<lettre::message::Mailbox>();
    }
}

/// A byte stream on the ICE-TCP port, cut into reads where the input says.
pub fn tcp_frames(data: &[u8]) {
    crate::sfu::fuzz_tcp_frames(data);
}
