//! The layout qmail made common: a line that starts with the failed address (`<addr>:`,
//! `"addr":`, `<addr>`, `addr: reply`), then its diagnostic as the lines that follow up to
//! a blank line (or, when the address stands alone, the next paragraph). qmail writes it
//! ("Hi. This is the qmail-send program ..."), and so do Postfix's human-readable part
//! (`<addr>: host mx[ip] said: 550 ...`, continued indented), Yahoo and AOL ("Sorry, we
//! were unable to deliver your message to the following address. / `<addr>:` / Remote host
//! said: 550 ..."), GMX (`"addr":` under Exim's wording) and OpenSMTPD (`addr: 550 ...`).

use super::*;

/// At most this many recipients are read from one text (a bound for hostile input).
const MAX_RECIPIENTS: usize = 1000;

pub(crate) fn recipients(text: &Text<'_>) -> Vec<BounceRecipient> {
    let lines = &text.lines;
    let mut found = Vec::new();
    let mut i = 0;
    while i < lines.len() && found.len() < MAX_RECIPIENTS {
        let Some((email, first)) = address_line(lines[i]) else {
            i += 1;
            continue;
        };
        let indent = indent_of(lines[i]);
        let mut diagnostic: Vec<&str> = Vec::new();
        if !first.is_empty() {
            diagnostic.push(first);
        }
        let mut j = i + 1;
        while j < lines.len() && !lines[j].trim().is_empty() {
            // Another address at the same indent starts the next recipient; one indented
            // deeper is part of this diagnostic (Postfix repeats the address there).
            if indent_of(lines[j]) <= indent && address_line(lines[j]).is_some() {
                break;
            }
            diagnostic.push(lines[j].trim());
            j += 1;
        }
        if diagnostic.is_empty() && j < lines.len() {
            // `<addr>` alone, its reason in the next paragraph (GMX's "Reason:").
            let next = lines[j..].iter().position(|l| !l.trim().is_empty());
            if let Some(k) = next.map(|k| j + k)
                && address_line(lines[k]).is_none()
            {
                let paragraph = next_paragraph(lines, k - 1);
                found.extend(text.recipient(email, &paragraph));
                i = k + 1;
                continue;
            }
        }
        found.extend(text.recipient(email, &diagnostic.join(" ")));
        i = j.max(i + 1);
    }
    found
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// The address a line starts with, and the rest of the line after its colon, when the line
/// is `<addr>`, `<addr>:...`, `"addr"`, `"addr":...` or `addr:...`.
fn address_line(line: &str) -> Option<(String, &str)> {
    let t = line.trim();
    let (inside, rest) = if let Some(after) = t.strip_prefix('<') {
        after.split_once('>')?
    } else if let Some(after) = t.strip_prefix('"') {
        after.split_once('"')?
    } else {
        let (before, rest) = t.split_once(':')?;
        if before.contains(char::is_whitespace) {
            return None;
        }
        (before, rest)
    };
    let rest = rest.trim();
    let rest = match rest.strip_prefix(':') {
        Some(r) => r.trim(),
        None if rest.is_empty() => rest,
        None if !t.starts_with(['<', '"']) => rest,
        None => return None,
    };
    if !inside.contains('@') || inside.contains(char::is_whitespace) {
        return None;
    }
    Some((extract_email(inside)?, rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lines() {
        let get = |l| address_line(l).map(|(e, r)| (e, r.to_string()));
        assert_eq!(get("<A@b.se>:"), Some(("a@b.se".into(), String::new())));
        assert_eq!(
            get("<a@b.se>: host x said: 550 no"),
            Some(("a@b.se".into(), "host x said: 550 no".into()))
        );
        assert_eq!(get("\"a@b.se\":"), Some(("a@b.se".into(), String::new())));
        assert_eq!(get("  <a@b.se>"), Some(("a@b.se".into(), String::new())));
        assert_eq!(
            get("a@b.se: 550 5.2.2 full"),
            Some(("a@b.se".into(), "550 5.2.2 full".into()))
        );
        assert_eq!(get("<a@b.se> is full"), None);
        assert_eq!(get("To: a@b.se"), None);
        assert_eq!(get("Remote host said: 550"), None);
        assert_eq!(get("<not an address>:"), None);
    }
}
