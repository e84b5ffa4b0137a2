//! What the `http-client` capability lets through: headers a plugin may set.
//! (Which hosts it may call is [`crate::host_allowed`] over its manifest's list.)

/// Whether a plugin may send the header `name: value`: not empty, no line break
/// or NUL in the value, and none of the headers the server's client owns (`host`,
/// `content-length`, `transfer-encoding`, `connection`, `upgrade`).
pub fn header_allowed(name: &str, value: &str) -> bool {
    !name.is_empty()
        && !value.contains(['\r', '\n', '\0'])
        && !matches!(
            name.to_ascii_lowercase().as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection" | "upgrade"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clients_own_headers_and_line_breaks_are_refused() {
        assert!(header_allowed("Authorization", "Bearer x"));
        assert!(!header_allowed("Host", "evil.example"));
        assert!(!header_allowed("Content-Length", "1"));
        assert!(!header_allowed("X-A", "a\r\nX-B: b"));
        assert!(!header_allowed("", "x"));
    }
}
