//! Header fields of a report and of the messages and header blocks inside it.

use super::*;

pub(crate) fn top_headers<'a, 'x>(message: &'a Message<'x>) -> &'a [Header<'x>] {
    message
        .parts
        .first()
        .map(|p| p.headers.as_slice())
        .unwrap_or_default()
}

pub(crate) fn header<'a, 'x>(headers: &'a [Header<'x>], name: &str) -> Option<&'a HeaderValue<'x>> {
    headers
        .iter()
        .find(|h| h.name.as_str().eq_ignore_ascii_case(name))
        .map(|h| &h.value)
}

pub(crate) fn header_text<'a>(headers: &'a [Header<'_>], name: &str) -> Option<&'a str> {
    match header(headers, name)? {
        HeaderValue::Text(t) => Some(t.as_ref()),
        HeaderValue::TextList(list) => list.first().map(|t| t.as_ref()),
        _ => None,
    }
}

/// The message ids of a header parsed by mail-parser (which drops the angle brackets),
/// normalized to `<id>`.
pub(crate) fn header_ids(headers: &[Header<'_>], name: &str) -> Vec<String> {
    let values: Vec<&str> = match header(headers, name) {
        Some(HeaderValue::Text(t)) => vec![t.as_ref()],
        Some(HeaderValue::TextList(list)) => list.iter().map(|t| t.as_ref()).collect(),
        _ => Vec::new(),
    };
    values.into_iter().filter_map(normalize_id).collect()
}

/// `<id>` from an id with or without angle brackets, if it looks like a Message-ID.
pub(crate) fn normalize_id(id: &str) -> Option<String> {
    let id = id.trim();
    let id = id.strip_prefix('<').unwrap_or(id);
    let id = id.strip_suffix('>').unwrap_or(id);
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.contains('@')
        && !id
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>');
    ok.then(|| format!("<{id}>"))
}

/// Every `<...@...>` in a header value, in order.
pub(crate) fn ids_in(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find('<') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else { break };
        if let Some(id) = normalize_id(&after[..end]) {
            out.push(id);
        }
        rest = &after[end + 1..];
    }
    out
}

/// (type, subtype), lower-cased.
pub(crate) fn content_type(headers: &[Header<'_>]) -> Option<(String, String)> {
    match header(headers, "Content-Type")? {
        HeaderValue::ContentType(ct) => Some((
            ct.ctype().to_ascii_lowercase(),
            ct.subtype().unwrap_or("").to_ascii_lowercase(),
        )),
        _ => None,
    }
}

pub(crate) fn report_type(headers: &[Header<'_>]) -> Option<String> {
    match header(headers, "Content-Type")? {
        HeaderValue::ContentType(ct) => ct.attribute("report-type").map(|s| s.trim().to_string()),
        _ => None,
    }
}

/// A header block as (lower-cased name, unfolded value) pairs, up to the first blank line.
pub(crate) fn header_fields(text: &str) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && !name.contains(' ') {
                fields.push((name.to_ascii_lowercase(), value.trim().to_string()));
            }
        }
    }
    fields
}
