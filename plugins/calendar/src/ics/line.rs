//! Content lines (RFC 5545 §3.1): unfolding, the `name;param=value:value` split,
//! folding at 75 octets, TEXT escaping and parameter quoting.
//!
//! A line keeps its exact text; the name, parameters and value are ranges into it,
//! so a line nobody changes is written back as it came.

use std::ops::Range;

use super::IcsError;

/// Longest line written, in octets, without the CRLF (RFC 5545 §3.1).
pub const FOLD_AT: usize = 75;

/// One unfolded content line.
#[derive(Debug, Clone)]
pub struct ContentLine {
    /// The unfolded text, without the line break.
    pub text: String,
    /// The physical lines it came from, joined with CRLF, when they can be written
    /// back as they are (valid UTF-8 each, at most 75 octets each).
    pub raw: Option<String>,
    /// Where the line starts in the input (1-based physical line number).
    pub line_no: usize,
    name: Range<usize>,
    params: Vec<Param>,
    value: usize,
}

#[derive(Debug, Clone)]
struct Param {
    name: Range<usize>,
    /// The raw values (quotes included), comma-separated in the text.
    value: Option<Range<usize>>,
}

impl ContentLine {
    /// Splits an unfolded line into name, parameters and value.
    pub fn parse(text: String, raw: Option<String>, line_no: usize) -> Result<Self, IcsError> {
        let bad = |why: &str| IcsError::Malformed {
            line: line_no,
            reason: why.to_string(),
        };
        let bytes = text.as_bytes();
        let name_len = bytes.iter().take_while(|&&b| is_name_byte(b)).count();
        if name_len == 0 {
            return Err(bad(
                "a content line must start with a property name (a line that continues the one before must start with a space)",
            ));
        }
        let mut i = name_len;
        let mut params = Vec::new();
        while i < bytes.len() && bytes[i] == b';' {
            i += 1;
            let start = i;
            while i < bytes.len() && is_name_byte(bytes[i]) {
                i += 1;
            }
            if i == start {
                return Err(bad("a parameter has no name"));
            }
            let name = start..i;
            let mut value = None;
            if i < bytes.len() && bytes[i] == b'=' {
                i += 1;
                let vstart = i;
                loop {
                    if i < bytes.len() && bytes[i] == b'"' {
                        match bytes[i + 1..].iter().position(|&b| b == b'"') {
                            Some(end) => i += end + 2,
                            None => {
                                return Err(bad("a quoted parameter value has no closing quote"));
                            }
                        }
                    } else {
                        while i < bytes.len() && !matches!(bytes[i], b',' | b';' | b':' | b'"') {
                            i += 1;
                        }
                    }
                    if i < bytes.len() && bytes[i] == b',' {
                        i += 1;
                    } else {
                        break;
                    }
                }
                value = Some(vstart..i);
            }
            params.push(Param { name, value });
        }
        if i >= bytes.len() || bytes[i] != b':' {
            return Err(bad(
                "a content line must be NAME:value (a long line that was folded without a leading space on the next line?)",
            ));
        }
        Ok(Self {
            name: 0..name_len,
            params,
            value: i + 1,
            text,
            raw,
            line_no,
        })
    }

    /// A new line from its parts; `value` is written as given (escape TEXT first).
    pub fn build(name: &str, params: &[(&str, &str)], value: &str) -> Self {
        let mut text = String::with_capacity(name.len() + value.len() + 16);
        text.push_str(name);
        for (k, v) in params {
            text.push(';');
            text.push_str(k);
            text.push('=');
            text.push_str(v);
        }
        text.push(':');
        text.push_str(value);
        Self::parse(text, None, 0).expect("a line built from valid parts parses")
    }

    /// The property name as written.
    pub fn name(&self) -> &str {
        &self.text[self.name.clone()]
    }

    /// Whether the property is called `name` (names are case-insensitive).
    pub fn is(&self, name: &str) -> bool {
        self.name().eq_ignore_ascii_case(name)
    }

    /// The raw value (escaped as in the file).
    pub fn value(&self) -> &str {
        &self.text[self.value..]
    }

    /// The value of parameter `name`, unquoted (the first value of a list), with
    /// RFC 6868 caret escapes decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        let p = self
            .params
            .iter()
            .find(|p| self.text[p.name.clone()].eq_ignore_ascii_case(name))?;
        let raw = &self.text[p.value.clone()?];
        let raw = raw
            .strip_prefix('"')
            .and_then(|r| r.split('"').next())
            .unwrap_or(raw);
        Some(decode_caret(raw))
    }

    /// The name and parameters as written (everything before the value's colon).
    pub fn head(&self) -> &str {
        &self.text[..self.value - 1]
    }

    /// The same name and parameters with another value (already escaped).
    pub fn with_value(&self, value: &str) -> Self {
        let mut text = String::with_capacity(self.value + value.len());
        text.push_str(&self.text[..self.value]);
        text.push_str(value);
        Self {
            name: self.name.clone(),
            params: self.params.clone(),
            value: self.value,
            text,
            raw: None,
            line_no: self.line_no,
        }
    }

    /// Writes the line with CRLF: as it came if it came well folded, else folded.
    pub fn write(&self, out: &mut String) {
        match &self.raw {
            Some(raw) => out.push_str(raw),
            None => fold_into(&self.text, out),
        }
        out.push_str("\r\n");
    }
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.'
}

/// Writes `text` folded: at most 75 octets per physical line (the leading space of a
/// continuation counts), never inside a UTF-8 character. No trailing CRLF.
pub fn fold_into(text: &str, out: &mut String) {
    let mut rest = text;
    let mut limit = FOLD_AT;
    loop {
        if rest.len() <= limit {
            out.push_str(rest);
            return;
        }
        let mut cut = limit;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push_str("\r\n ");
        rest = &rest[cut..];
        limit = FOLD_AT - 1;
    }
}

/// `text` folded, with CRLF line breaks and no trailing CRLF.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 64 * 3);
    fold_into(text, &mut out);
    out
}

/// Escapes a TEXT value (RFC 5545 §3.3.11): backslash, semicolon, comma and line
/// breaks; other control characters (but tab) are dropped.
pub fn escape_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\r' => {
                if chars.peek() != Some(&'\n') {
                    out.push_str("\\n");
                }
            }
            '\n' => out.push_str("\\n"),
            '\t' => out.push('\t'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Reads a TEXT value: `\n`/`\N` are line breaks, `\\`, `\;`, `\,` and (as written
/// by some clients) `\:` the characters; any other backslash stays.
pub fn unescape_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n' | 'N') => out.push('\n'),
            Some(c @ ('\\' | ';' | ',' | ':')) => out.push(c),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// A parameter value as written: quoted when it holds `:`, `;` or `,`, with `"`,
/// line breaks and `^` caret-encoded (RFC 6868) and other controls dropped.
pub fn param_value(value: &str) -> String {
    let mut body = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '^' => body.push_str("^^"),
            '"' => body.push_str("^'"),
            '\n' => body.push_str("^n"),
            c if c.is_control() => {}
            c => body.push(c),
        }
    }
    if body.contains([':', ';', ',']) || body.starts_with(' ') || body.ends_with(' ') {
        format!("\"{body}\"")
    } else {
        body
    }
}

fn decode_caret(value: &str) -> String {
    if !value.contains('^') {
        return value.to_string();
    }
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '^' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('^') => out.push('^'),
            Some('\'') => out.push('"'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('^');
                out.push(other);
            }
            None => out.push('^'),
        }
    }
    out
}

/// Splits `input` into unfolded content lines. Physical lines end with CRLF or LF;
/// one starting with a space or tab continues the line before. Empty lines are
/// skipped. A UTF-8 character split by a fold is put back together.
pub fn unfold(input: &[u8]) -> Result<Vec<ContentLine>, IcsError> {
    let mut lines = Vec::new();
    // The logical line being collected: its bytes, its physical pieces and whether
    // those pieces can be written back unchanged.
    let mut current: Option<(Vec<u8>, Vec<Range<usize>>, usize)> = None;
    let mut offset = 0;
    let mut line_no = 0;
    let finish = |current: Option<(Vec<u8>, Vec<Range<usize>>, usize)>,
                  lines: &mut Vec<ContentLine>|
     -> Result<(), IcsError> {
        let Some((bytes, pieces, start_line)) = current else {
            return Ok(());
        };
        let text = String::from_utf8(bytes).map_err(|_| IcsError::NotUtf8 { line: start_line })?;
        let raw = keep_raw(input, &pieces);
        lines.push(ContentLine::parse(text, raw, start_line)?);
        Ok(())
    };
    while offset < input.len() {
        line_no += 1;
        let end = input[offset..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(input.len(), |p| offset + p);
        let mut piece_end = end;
        if piece_end > offset && input[piece_end - 1] == b'\r' {
            piece_end -= 1;
        }
        let piece = offset..piece_end;
        offset = end + 1;
        let bytes = &input[piece.clone()];
        match bytes.first() {
            None => {
                finish(current.take(), &mut lines)?;
            }
            Some(b' ' | b'\t') => match current.as_mut() {
                Some((text, pieces, _)) => {
                    text.extend_from_slice(&bytes[1..]);
                    pieces.push(piece);
                }
                None => {
                    return Err(IcsError::Malformed {
                        line: line_no,
                        reason: "a folded continuation line does not follow a content line".into(),
                    });
                }
            },
            Some(_) => {
                finish(current.take(), &mut lines)?;
                current = Some((bytes.to_vec(), vec![piece], line_no));
            }
        }
    }
    finish(current, &mut lines)?;
    Ok(lines)
}

fn keep_raw(input: &[u8], pieces: &[Range<usize>]) -> Option<String> {
    let mut raw = String::new();
    for (i, piece) in pieces.iter().enumerate() {
        if piece.len() > FOLD_AT {
            return None;
        }
        let text = std::str::from_utf8(&input[piece.clone()]).ok()?;
        if i > 0 {
            raw.push_str("\r\n");
        }
        raw.push_str(text);
    }
    Some(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_names_parameters_and_values() {
        let line = ContentLine::parse(
            "ATTENDEE;CN=\"Doe, Jane\";ROLE=REQ-PARTICIPANT;X-A=a,\"b:c\":mailto:j@example.org"
                .into(),
            None,
            1,
        )
        .unwrap();
        assert_eq!(line.name(), "ATTENDEE");
        assert_eq!(line.param("cn").as_deref(), Some("Doe, Jane"));
        assert_eq!(line.param("ROLE").as_deref(), Some("REQ-PARTICIPANT"));
        assert_eq!(line.value(), "mailto:j@example.org");
        assert_eq!(
            line.head(),
            "ATTENDEE;CN=\"Doe, Jane\";ROLE=REQ-PARTICIPANT;X-A=a,\"b:c\""
        );
    }

    #[test]
    fn refuses_what_is_not_a_content_line() {
        for bad in ["no colon here", ":value", "X;=a:b", "X;A=\"open:value"] {
            assert!(ContentLine::parse(bad.into(), None, 3).is_err(), "{bad}");
        }
    }

    #[test]
    fn folds_at_75_octets_without_splitting_characters() {
        let text = format!("DESCRIPTION:{}", "Café – Zoë 会議 ".repeat(20));
        let folded = fold(&text);
        for (i, piece) in folded.split("\r\n").enumerate() {
            assert!(
                piece.len() <= FOLD_AT,
                "{piece:?} is {} octets",
                piece.len()
            );
            if i > 0 {
                assert!(piece.starts_with(' '));
            }
        }
        let lines = unfold(folded.as_bytes()).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].text, text);
    }

    #[test]
    fn puts_characters_split_by_a_fold_back_together() {
        let mut bytes = b"SUMMARY:caf".to_vec();
        let e = "é".as_bytes();
        bytes.push(e[0]);
        bytes.extend_from_slice(b"\r\n ");
        bytes.push(e[1]);
        bytes.extend_from_slice(b" ok\r\n");
        let lines = unfold(&bytes).unwrap();
        assert_eq!(lines[0].text, "SUMMARY:café ok");
        assert!(
            lines[0].raw.is_none(),
            "such a line is refolded when written"
        );
    }

    #[test]
    fn escapes_and_unescapes_text() {
        let text = "a, b; c\\d\nnext\r\nline";
        let escaped = escape_text(text);
        assert_eq!(escaped, "a\\, b\\; c\\\\d\\nnext\\nline");
        assert_eq!(unescape_text(&escaped), "a, b; c\\d\nnext\nline");
        assert_eq!(unescape_text("x\\:y\\N"), "x:y\n");
    }

    #[test]
    fn quotes_parameter_values_that_need_it() {
        assert_eq!(param_value("Ana"), "Ana");
        assert_eq!(param_value("Doe, Jane"), "\"Doe, Jane\"");
        assert_eq!(param_value("say \"hi\""), "say ^'hi^'");
        let line = ContentLine::build("X", &[("CN", &param_value("a \"b\": c^"))], "v");
        assert_eq!(line.param("CN").as_deref(), Some("a \"b\": c^"));
    }
}
