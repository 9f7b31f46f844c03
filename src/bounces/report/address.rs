//! Addresses in reports: a bare, lower-cased address from whatever wrapping a server puts
//! around it (`<a@b>:`, `rfc822; a@b`, `a@b<mailto:a@b>`).

/// A lower-cased bare address from a token such as `<Anna@Example.se>:` or `rfc822;a@b`.
pub(crate) fn extract_email(token: &str) -> Option<String> {
    let token = token.trim().trim_matches(|c: char| {
        matches!(
            c,
            '<' | '>' | '"' | '\'' | '(' | ')' | '[' | ']' | ',' | ';' | ':' | '.'
        )
    });
    let token = token.strip_prefix("mailto:").unwrap_or(token);
    let (local, domain) = token.rsplit_once('@')?;
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(c, '<' | '>' | '@' | ',' | ';' | '(' | ')' | '[' | ']')
        });
    let domain_ok = !domain.is_empty()
        && domain.len() <= 255
        && !domain.starts_with(['.', '-'])
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
    (local_ok && domain_ok).then(|| token.to_lowercase())
}

/// `rfc822; <Anna@Example.se>` → `anna@example.se`.
pub(crate) fn recipient_field_address(value: &str) -> Option<String> {
    let address = value.split_once(';').map_or(value, |(_, a)| a);
    extract_email(address)
}
