//! Address rules: what a recipient's address must look like before any relay sees it, in
//! words an operator understands, and the domain put into the form relays compare (lower
//! case, IDN as punycode).

use crate::text::quoted_excerpt;

/// Checks an address and returns it with the domain in lower-case ASCII (IDN to punycode).
/// The error says, in words an operator understands, what is wrong.
pub fn normalize_email(raw: &str) -> std::result::Result<String, String> {
    let text = raw.trim_matches(|c: char| c == ' ' || c == '\u{a0}');
    if text.is_empty() {
        return Err("the address is empty".into());
    }
    let shown = || quoted_excerpt(text);
    if text.contains(['\r', '\n']) {
        return Err(format!("{} contains a line break", shown()));
    }
    if text.contains('<') || text.contains('>') || text.contains('(') {
        return Err(format!(
            "{} is not a bare address: put only the address (name@example.se) in this column, the name in its own",
            shown()
        ));
    }
    if text.contains(',') || text.contains(';') {
        // One @: a typo (Excel users hit the comma beside the dot), not a list.
        if text.matches('@').count() <= 1 {
            let fixed = text.replace([',', ';'], ".");
            return Err(format!(
                "{} contains {}: write {} if a dot was meant (an address has no commas or semicolons)",
                shown(),
                if text.contains(',') {
                    "a comma"
                } else {
                    "a semicolon"
                },
                quoted_excerpt(&fixed)
            ));
        }
        return Err(format!(
            "{} holds more than one address; one per row",
            shown()
        ));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{} is not a valid address: it contains a space",
            shown()
        ));
    }
    let Some((local, domain)) = text.rsplit_once('@') else {
        return Err(format!("{} is not a valid address: no @", shown()));
    };
    if local.is_empty() {
        return Err(format!(
            "{} is not a valid address: nothing before @",
            shown()
        ));
    }
    if domain.is_empty() {
        return Err(format!(
            "{} is not a valid address: no domain after @",
            shown()
        ));
    }
    if local.contains('@') || local.contains('"') {
        return Err(format!(
            "{} is not a valid address: quoted or several @ are not accepted",
            shown()
        ));
    }
    if !local.is_ascii() {
        return Err(format!(
            "{}: letters like å, ä, ö before @ are not supported by most relays; check the address with the customer",
            shown()
        ));
    }
    if local.len() > 64 {
        return Err(format!(
            "{} is not a valid address: more than 64 characters before @",
            shown()
        ));
    }
    if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
        return Err(format!(
            "{} is not a valid address: a dot at the start or end of the name, or two dots",
            shown()
        ));
    }
    // RFC 5322 atext, and the dot.
    let atext = |c: char| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '!' | '#'
                    | '$'
                    | '%'
                    | '&'
                    | '\''
                    | '*'
                    | '+'
                    | '-'
                    | '/'
                    | '='
                    | '?'
                    | '^'
                    | '_'
                    | '`'
                    | '{'
                    | '|'
                    | '}'
                    | '~'
                    | '.'
            )
    };
    if let Some(bad) = local.chars().find(|c| !atext(*c)) {
        return Err(format!(
            "{} is not a valid address: {bad:?} is not allowed before @",
            shown()
        ));
    }
    if domain.ends_with('.') {
        return Err(format!(
            "{} is not a valid address: the domain ends with a dot",
            shown()
        ));
    }
    let ascii = if domain.is_ascii() {
        domain.to_ascii_lowercase()
    } else {
        match idna::domain_to_ascii_strict(domain) {
            Ok(d) => d,
            Err(_) => {
                return Err(format!(
                    "{}: the domain {domain:?} is not a valid internationalized domain name",
                    shown()
                ));
            }
        }
    };
    if ascii.len() > 253 {
        return Err(format!(
            "{} is not a valid address: the domain is too long",
            shown()
        ));
    }
    let labels: Vec<&str> = ascii.split('.').collect();
    if labels.len() < 2 {
        return Err(format!(
            "{} is not a valid address: the domain {domain:?} has no dot (example.se)",
            shown()
        ));
    }
    for label in &labels {
        if label.is_empty() {
            return Err(format!(
                "{} is not a valid address: the domain has an empty part (two dots)",
                shown()
            ));
        }
        if label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(format!(
                "{} is not a valid address: {label:?} is not a valid part of a domain",
                shown()
            ));
        }
    }
    if labels
        .last()
        .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
    {
        return Err(format!(
            "{} is not a valid address: the domain ends in a number",
            shown()
        ));
    }
    let mut address = String::with_capacity(local.len() + 1 + ascii.len());
    address.push_str(local);
    address.push('@');
    address.push_str(&ascii);
    Ok(address)
}

/// The To header for `mailbox`, where lettre would write it wrong: lettre leaves a one-word
/// name with a dot unquoted (`To: K. <k@example.se>`), which RFC 5322 allows only as an
/// obsolete phrase and strict parsers refuse; such a name is quoted here. None where
/// lettre's own header is right (every other name: lettre quotes or encodes it).
pub fn to_header(
    mailbox: &lettre::message::Mailbox,
) -> Option<lettre::message::header::HeaderValue> {
    use lettre::message::header::{HeaderName, HeaderValue};
    let name = mailbox.name.as_deref()?;
    let lettre_writes_plain = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !lettre_writes_plain || !name.contains('.') {
        return None;
    }
    // lettre's Display of a mailbox (what it parses the envelope from) quotes it.
    let raw = mailbox.to_string();
    // Only letters, digits, `-`, `_` and `.`: nothing to escape inside the quotes.
    let encoded = format!("\"{name}\" <{}>", mailbox.email);
    Some(HeaderValue::dangerous_new_pre_encoded(
        HeaderName::new_from_ascii_str("To"),
        raw,
        encoded,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comma_for_a_dot_is_named_as_such_with_the_fix() {
        let e = normalize_email("anna@example,com").unwrap_err();
        assert_eq!(
            e,
            "\"anna@example,com\" contains a comma: write \"anna@example.com\" if a dot was meant (an address has no commas or semicolons)"
        );
        let e = normalize_email("anna@example.se, bo@example.se").unwrap_err();
        assert!(e.contains("more than one address"), "{e}");
        let e = normalize_email("anna@example.se;bo@example.se").unwrap_err();
        assert!(e.contains("more than one address"), "{e}");
    }

    #[test]
    fn addresses() {
        assert_eq!(
            normalize_email(" a.b+c@Example.SE ").as_deref(),
            Ok("a.b+c@example.se")
        );
        assert_eq!(
            normalize_email("kund@räksmörgås.se").as_deref(),
            Ok("kund@xn--rksmrgs-5wao1o.se")
        );
        for bad in [
            "",
            "anna",
            "anna@",
            "@example.se",
            "a b@example.se",
            "a@example",
            "a@example.se.",
            "Anna <a@example.se>",
            "a@example.se (Anna)",
            ".a@example.se",
            "a..b@example.se",
            "a@-x.se",
            "åsa@example.se",
            "a@example.se\r\nBcc: x@y.se",
            "a@b@example.se",
            "a@example.123",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
    }
}
