//! Checks on user-supplied text shared by every resource.

/// A rejected input value: which field, and why, in words a user understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: &'static str,
    pub message: String,
}

impl Invalid {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Trims `value` and checks it has `min..=max` characters (Unicode scalar values, so
/// every script counts the same) and no control characters.
pub fn text(field: &'static str, value: &str, min: usize, max: usize) -> Result<String, Invalid> {
    let trimmed = value.trim();
    let count = trimmed.chars().count();
    if count < min || count > max {
        return Err(Invalid::new(
            field,
            if min > 0 {
                format!("must be {min} to {max} characters")
            } else {
                format!("must be at most {max} characters")
            },
        ));
    }
    let multiline_ok = max > 256; // long text (descriptions) may contain line breaks
    if trimmed
        .chars()
        .any(|c| c.is_control() && !(multiline_ok && (c == '\n' || c == '\r' || c == '\t')))
    {
        return Err(Invalid::new(field, "must not contain control characters"));
    }
    Ok(trimmed.to_string())
}

/// Lowercases and checks an email address (the practical subset of RFC 5321).
pub fn email(value: &str) -> Result<String, Invalid> {
    let value = value.trim().to_lowercase();
    let bad = || {
        Invalid::new(
            "email",
            "must be a valid email address, like ada@example.org",
        )
    };
    if value.len() > 254 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    let (local, domain) = value.rsplit_once('@').ok_or_else(bad)?;
    let domain_ok = !domain.is_empty()
        && domain.len() <= 253
        && domain.contains('.')
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        });
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c));
    if domain_ok && local_ok {
        Ok(value)
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_counts_characters_not_bytes() {
        assert_eq!(text("name", "  Zoë 李  ", 1, 64).unwrap(), "Zoë 李");
        assert!(text("name", &"李".repeat(64), 1, 64).is_ok());
        assert!(text("name", &"李".repeat(65), 1, 64).is_err());
        assert!(text("name", "   ", 1, 64).is_err());
        assert!(text("name", "a\u{7}b", 1, 64).is_err());
        assert!(text("description", "line\nbreak", 0, 2000).is_ok());
        assert!(text("title", "line\nbreak", 1, 200).is_err());
    }

    #[test]
    fn emails() {
        assert_eq!(email(" Ada@Example.ORG ").unwrap(), "ada@example.org");
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.org",
            "ada@example",
            "a b@example.org",
            "ada@ex..org",
            "ada@@example.org",
            "ada@example.org\r\nBcc: x@y.z",
        ] {
            assert!(email(bad).is_err(), "{bad:?} accepted");
        }
    }
}
