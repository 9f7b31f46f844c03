//! `check --verify FILE.eml`: a test message as it arrived in a real mailbox (sent with
//! `send --test-to`, saved from the mail client) tells what no DNS lookup can: whether the
//! relay signed it, and what the receiving server concluded. Its DKIM signatures are
//! verified here against DNS (mail-auth), and its Authentication-Results headers, which
//! the receiver wrote, are reported per mechanism (spf, dkim, dmarc).

use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator};

use super::records::{Finding, Level};

/// One mechanism's result in an Authentication-Results header (RFC 8601).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MethodResult {
    /// Who wrote the header (the authserv-id), e.g. `mx.google.com`.
    pub server: String,
    /// `spf`, `dkim`, `dmarc`, `arc`, ...
    pub method: String,
    /// `pass`, `fail`, `none`, `softfail`, ...
    pub result: String,
    /// The properties that say what was checked, e.g. `header.d=example.se`.
    pub properties: Vec<String>,
}

/// Drops RFC 5322 comments (parentheses, nested, with quoted pairs).
fn without_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut depth = 0usize;
    let mut escaped = false;
    let mut quoted = false;
    for c in value.chars() {
        if escaped {
            escaped = false;
            if depth == 0 {
                out.push(c);
            }
            continue;
        }
        match c {
            '\\' => {
                escaped = true;
                if depth == 0 {
                    out.push(c);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The results in one Authentication-Results header value.
pub fn parse_authentication_results(value: &str) -> Vec<MethodResult> {
    let clean = without_comments(value);
    let parts: Vec<&str> = clean.split(';').map(str::trim).collect();
    // The first part is the authserv-id; Outlook.com leaves it out and starts with a
    // result, which is then read as one.
    let first = parts.first().copied().unwrap_or_default();
    let first_word = first.split_whitespace().next().unwrap_or_default();
    let (server, results) = if first_word.contains('=') {
        (String::new(), &parts[..])
    } else {
        (first_word.to_string(), parts.get(1..).unwrap_or_default())
    };
    let mut out = Vec::new();
    for part in results {
        let mut words = part.split_whitespace();
        let Some((method, result)) = words.next().and_then(|w| w.split_once('=')) else {
            continue;
        };
        let method = method
            .split('/')
            .next()
            .unwrap_or(method)
            .to_ascii_lowercase();
        if method == "none" {
            continue;
        }
        out.push(MethodResult {
            server: server.clone(),
            method,
            result: result.to_ascii_lowercase(),
            properties: words
                .filter(|w| w.contains('='))
                .map(str::to_string)
                .collect(),
        });
    }
    out
}

/// Verifies the message's DKIM signatures against DNS and reads its
/// Authentication-Results; one finding per signature (`signature`) and per mechanism the
/// receiver reported (`spf`, `dkim`, `dmarc`, else `received`).
pub async fn verify(auth: &MessageAuthenticator, bytes: &[u8]) -> Result<Vec<Finding>, String> {
    let message = AuthenticatedMessage::parse(bytes)
        .ok_or_else(|| "not an email message (no header block)".to_string())?;
    let mut findings = Vec::new();
    if message.dkim_headers.is_empty() {
        findings.push(Finding {
            topic: "signature",
            level: Level::Warn,
            text: "the message has no DKIM-Signature: neither the relay nor utskick signed it"
                .into(),
            fix: Some("set [dkim] key_file, or switch DKIM signing on at the relay".into()),
        });
    } else {
        for output in auth.verify_dkim(&message).await {
            let (d, s) = output
                .signature()
                .map_or(("?".to_string(), "?".to_string()), |sig| {
                    (sig.d.clone(), sig.s.clone())
                });
            let (level, text) = match output.result() {
                DkimResult::Pass => (Level::Ok, format!("signature d={d} s={s} verifies")),
                DkimResult::Neutral(e)
                | DkimResult::Fail(e)
                | DkimResult::PermError(e)
                | DkimResult::TempError(e) => (
                    Level::Warn,
                    format!("signature d={d} s={s} does not verify: {e}"),
                ),
                DkimResult::None => (Level::Warn, format!("signature d={d} s={s}: no result")),
            };
            let from_domain = message
                .from
                .first()
                .and_then(|f| f.rsplit_once('@'))
                .map(|(_, dom)| dom.to_ascii_lowercase());
            let aligned = from_domain.as_deref().is_some_and(|fd| {
                super::records::aligned(&d, fd, mail_auth::dmarc::Alignment::Relaxed)
            });
            let text = match (&from_domain, aligned) {
                (Some(fd), false) => format!("{text}; d={d} is not aligned with From {fd}"),
                _ => text,
            };
            let level = if aligned { level } else { Level::Warn };
            findings.push(Finding {
                topic: "signature",
                level,
                text,
                fix: None,
            });
        }
    }
    let mut any = false;
    for (name, value) in &message.headers {
        if !name.eq_ignore_ascii_case(b"Authentication-Results") {
            continue;
        }
        let value = String::from_utf8_lossy(value).replace(['\r', '\n'], " ");
        for r in parse_authentication_results(&value) {
            any = true;
            let level = if r.result == "pass" {
                Level::Ok
            } else {
                Level::Warn
            };
            let detail = if r.properties.is_empty() {
                String::new()
            } else {
                format!(" ({})", r.properties.join(" "))
            };
            findings.push(Finding {
                topic: match r.method.as_str() {
                    "spf" => "spf",
                    "dkim" => "dkim",
                    "dmarc" => "dmarc",
                    _ => "received",
                },
                level,
                text: if r.server.is_empty() {
                    format!("the receiver reports {}={}{detail}", r.method, r.result)
                } else {
                    format!("{} reports {}={}{detail}", r.server, r.method, r.result)
                },
                fix: None,
            });
        }
    }
    if !any {
        findings.push(Finding {
            topic: "received",
            level: Level::Warn,
            text: "no Authentication-Results header: save the message as it arrived in the mailbox (Gmail: Show original > Download; Outlook: Save as)".into(),
            fix: None,
        });
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gmail_authentication_results() {
        // As Gmail writes it (folded, with comments).
        let v = "mx.google.com;\r\n       dkim=pass header.i=@example.se header.s=sel1 header.b=AbCd;\r\n       spf=pass (google.com: domain of dataskydd@example.se designates 192.0.2.10 as permitted sender) smtp.mailfrom=dataskydd@example.se;\r\n       dmarc=pass (p=QUARANTINE sp=QUARANTINE dis=NONE) header.from=example.se";
        let r = parse_authentication_results(&v.replace("\r\n", " "));
        let got: Vec<(&str, &str)> = r
            .iter()
            .map(|m| (m.method.as_str(), m.result.as_str()))
            .collect();
        assert_eq!(got, [("dkim", "pass"), ("spf", "pass"), ("dmarc", "pass")]);
        assert!(r.iter().all(|m| m.server == "mx.google.com"));
        assert_eq!(r[1].properties, ["smtp.mailfrom=dataskydd@example.se"]);
        assert_eq!(r[2].properties, ["header.from=example.se"]);
    }

    #[test]
    fn outlook_authentication_results() {
        // As Outlook.com writes it: the authserv-id names the receiving domain's tenant.
        let v = "spf=softfail (sender IP is 192.0.2.10) smtp.mailfrom=example.se; dkim=none (message not signed) header.d=none;dmarc=fail action=none header.from=example.se;compauth=fail reason=001";
        let r = parse_authentication_results(v);
        let got: Vec<(&str, &str)> = r
            .iter()
            .map(|m| (m.method.as_str(), m.result.as_str()))
            .collect();
        // No authserv-id: the first part is a result too.
        assert_eq!(
            got,
            [
                ("spf", "softfail"),
                ("dkim", "none"),
                ("dmarc", "fail"),
                ("compauth", "fail")
            ]
        );
        assert!(r.iter().all(|m| m.server.is_empty()));
        let r = parse_authentication_results("outlook.com; spf=softfail smtp.mailfrom=example.se");
        assert_eq!(r[0].result, "softfail");
    }

    #[test]
    fn none_and_nested_comments() {
        assert!(parse_authentication_results("mx.example.net; none").is_empty());
        assert_eq!(
            without_comments("a (b (c) d) e \"(kept)\""),
            "a  e \"(kept)\""
        );
    }
}
