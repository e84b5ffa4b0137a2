//! Reading requests: query strings, forms, multipart uploads, JSON. No capability
//! calls here, so it is tested on the host.

use std::collections::HashMap;

/// Decodes `application/x-www-form-urlencoded` text (also a query string). A key
/// given twice keeps its first value.
pub fn form(text: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(percent_decode(k))
            .or_insert_with(|| percent_decode(v));
    }
    out
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                match raw
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The media type of a `content-type` header, lower case, without parameters.
pub fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// A parameter of a header value such as `multipart/form-data; boundary=…`.
pub fn header_param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().trim_matches('"').to_string())
    })
}

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub name: String,
    pub filename: Option<String>,
    pub data: Vec<u8>,
}

/// Splits a `multipart/form-data` body (RFC 7578) into its parts.
pub fn multipart(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    if boundary.is_empty() || boundary.len() > 70 {
        return Err("the multipart boundary is missing or too long".into());
    }
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut parts = Vec::new();
    let mut at = find(body, delimiter, 0).ok_or("the multipart body has no boundary")?;
    loop {
        at += delimiter.len();
        if body[at..].starts_with(b"--") {
            return Ok(parts);
        }
        // The rest of the boundary line.
        let line_end = find(body, b"\r\n", at).ok_or("a multipart boundary line is cut off")?;
        let headers_start = line_end + 2;
        let headers_end =
            find(body, b"\r\n\r\n", headers_start).ok_or("a multipart part has no headers")?;
        let headers = String::from_utf8_lossy(&body[headers_start..headers_end]);
        let data_start = headers_end + 4;
        let mut closing = b"\r\n".to_vec();
        closing.extend_from_slice(delimiter);
        let data_end = find(body, &closing, data_start).ok_or("a multipart part is not closed")?;
        let mut name = String::new();
        let mut filename = None;
        for header in headers.split("\r\n") {
            let Some((key, value)) = header.split_once(':') else {
                continue;
            };
            if key.trim().eq_ignore_ascii_case("content-disposition") {
                name = header_param(value, "name").unwrap_or_default();
                filename = header_param(value, "filename");
            }
        }
        parts.push(Part {
            name,
            filename,
            data: body[data_start..data_end].to_vec(),
        });
        at = data_end + 2;
    }
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > haystack.len() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// A file name for a download: the stem of `original` (letters, digits, `-`, `_`,
/// `.`), with `suffix` and `.ics`.
pub fn download_name(original: Option<&str>, suffix: &str) -> String {
    let stem = original
        .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n))
        .map(|n| n.strip_suffix(".ics").unwrap_or(n))
        .unwrap_or("calendar");
    let clean: String = stem
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .take(64)
        .collect();
    let clean = if clean.trim_matches('.').is_empty() {
        "calendar".to_string()
    } else {
        clean
    };
    format!("{clean}{suffix}.ics")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_forms() {
        let f = form("ics=BEGIN%3AVCALENDAR%0D%0A&label=Join+now&x=%zz&ics=second");
        assert_eq!(f["ics"], "BEGIN:VCALENDAR\r\n");
        assert_eq!(f["label"], "Join now");
        assert_eq!(f["x"], "%zz");
        assert_eq!(form("a=%").get("a").map(String::as_str), Some("%"));
        assert_eq!(form("a=%4").get("a").map(String::as_str), Some("%4"));
    }

    #[test]
    fn splits_multipart_bodies() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"label\"\r\n\r\nJoin\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"Team call.ics\"\r\nContent-Type: text/calendar\r\n\r\nBEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n\r\n--XyZ--\r\n";
        let parts = multipart(body, "XyZ").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "label");
        assert_eq!(parts[0].data, b"Join");
        assert_eq!(parts[1].filename.as_deref(), Some("Team call.ics"));
        assert_eq!(parts[1].data, b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n");
        assert!(multipart(b"no boundary here", "XyZ").is_err());
        assert!(
            multipart(
                b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nopen",
                "XyZ"
            )
            .is_err()
        );
    }

    #[test]
    fn names_downloads_safely() {
        assert_eq!(
            download_name(Some("Team call.ics"), "-confab"),
            "Teamcall-confab.ics"
        );
        assert_eq!(download_name(Some("C:\\x\\..\\evil\".ics"), ""), "evil.ics");
        assert_eq!(download_name(Some(".."), ""), "calendar.ics");
        assert_eq!(download_name(None, "-confab"), "calendar-confab.ics");
    }

    #[test]
    fn finds_header_parameters() {
        assert_eq!(
            header_param("multipart/form-data; boundary=\"a b\"", "boundary").as_deref(),
            Some("a b")
        );
        assert_eq!(media_type("Text/Calendar; charset=utf-8"), "text/calendar");
    }
}
