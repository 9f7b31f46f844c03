//! The MIME message for one recipient: headers the contract names, quoted-printable UTF-8
//! bodies, `multipart/alternative` when there is HTML, and the deterministic Message-ID.
//!
//! The same recipient in the same campaign always gets the same Message-ID, so a rerun
//! after a crash resends the very message the first attempt may have delivered, and bounce
//! reports can be matched exactly. No CR or LF from the CSV reaches a header: names and
//! subjects pass through `one_line` and lettre encodes non-ASCII text by RFC 2047.

use std::time::SystemTime;

use anyhow::{Result, anyhow};
use lettre::Message;
use lettre::message::header::{ContentTransferEncoding, ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::recipients::{Recipient, one_line};
use crate::render::{Rendered, hex};

/// A message ready for the relay.
#[derive(Debug, Clone)]
pub struct Built {
    /// The Message-ID header's value, with angle brackets.
    pub message_id: String,
    /// The envelope recipient.
    pub rcpt: String,
    /// The bytes, CRLF line ends.
    pub bytes: Vec<u8>,
}

/// `<CAMPAIGN.HASH@DOMAIN>`, HASH from campaign and key.
pub fn message_id(campaign: &str, key: &str, domain: &str) -> String {
    let mut h = Sha256::new();
    h.update(campaign.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    let digest = h.finalize();
    format!("<{campaign}.{}@{domain}>", &hex(&digest)[..32])
}

/// The Message-ID of a test delivery (`--test-to`): never a recipient's own.
pub fn test_message_id(campaign: &str, key: &str, run: &str, domain: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"test");
    h.update([0]);
    h.update(campaign.as_bytes());
    h.update([0]);
    h.update(key.as_bytes());
    h.update([0]);
    h.update(run.as_bytes());
    format!("<{campaign}.test.{}@{domain}>", &hex(&h.finalize())[..32])
}

/// Builds the message. `to` overrides the envelope and To address (test deliveries).
pub fn build(
    config: &Config,
    recipient: &Recipient,
    rendered: &Rendered,
    message_id: &str,
    to: Option<&str>,
    date: SystemTime,
) -> Result<Built> {
    let rcpt = to.unwrap_or(&recipient.email);
    let address = rcpt
        .parse::<lettre::Address>()
        .map_err(|e| anyhow!("{rcpt:?} is not an address the mail library accepts ({e})"))?;
    let name = one_line(&recipient.name);
    let to_box = Mailbox::new(if name.is_empty() { None } else { Some(name) }, address);
    let text = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .header(ContentTransferEncoding::QuotedPrintable)
        .body(crlf(&rendered.text));
    let mut builder = Message::builder()
        .from(config.sender.from.clone())
        .reply_to(config.sender.reply_to.clone())
        .to(to_box)
        .subject(one_line(&rendered.subject))
        .date(date)
        .message_id(Some(message_id.to_string()))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".to_string(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Content-Language"),
            "sv".to_string(),
        ));
    if to.is_some() {
        builder = builder.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Utskick-Test"),
            format!(
                "test delivery of the notice for key {}",
                one_line(&recipient.key)
            ),
        ));
    }
    let message = match &rendered.html {
        Some(html) => builder.multipart(
            MultiPart::alternative().singlepart(text).singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .header(ContentTransferEncoding::QuotedPrintable)
                    .body(crlf(html)),
            ),
        ),
        None => builder.singlepart(text),
    }
    .map_err(|e| anyhow!("cannot build the message: {e}"))?;
    Ok(Built {
        message_id: message_id.to_string(),
        rcpt: rcpt.to_string(),
        bytes: message.formatted(),
    })
}

fn crlf(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 32);
    for line in text.split_inclusive('\n') {
        let body = line.strip_suffix('\n').unwrap_or(line);
        let body = body.strip_suffix('\r').unwrap_or(body);
        out.push_str(body);
        if line.ends_with('\n') {
            out.push_str("\r\n");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipients::FieldValue;

    fn config() -> Config {
        Config::parse(
            "campaign = \"c-1\"\n[sender]\nfrom = \"Företaget Ö AB <dataskydd@example.se>\"\n[smtp]\nhost = \"127.0.0.1\"\nsecurity = \"none\"\nauth = \"none\"\n[recipients]\npath = \"r.csv\"\n",
            std::path::Path::new("/x/config.toml"),
        )
        .expect("config")
    }

    fn recipient(name: &str) -> Recipient {
        Recipient {
            line: 2,
            key: "1042".into(),
            email: "anna@example.se".into(),
            name: name.into(),
            fields: vec![("name".into(), FieldValue::Text(name.into()))],
        }
    }

    fn rendered() -> Rendered {
        Rendered {
            subject: "Viktig information om dina personuppgifter – åäö".into(),
            text: "Hej Åsa!\nRad två.\n".into(),
            html: Some("<p>Hej &Aring;sa</p>\n".into()),
        }
    }

    fn headers(bytes: &[u8]) -> String {
        let text = String::from_utf8_lossy(bytes);
        text.split("\r\n\r\n")
            .next()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn message_id_is_stable_and_distinct() {
        let a = message_id("c-1", "1042", "example.se");
        assert_eq!(a, message_id("c-1", "1042", "example.se"));
        assert_ne!(a, message_id("c-1", "1043", "example.se"));
        assert_ne!(a, message_id("c-2", "1042", "example.se"));
        assert!(a.starts_with("<c-1.") && a.ends_with("@example.se>"), "{a}");
        assert_eq!(a.len(), "<c-1.@example.se>".len() + 32);
        assert_ne!(a, test_message_id("c-1", "1042", "r", "example.se"));
    }

    #[test]
    fn headers_of_the_contract() {
        let c = config();
        let id = message_id("c-1", "1042", "example.se");
        let b = build(
            &c,
            &recipient("Åsa Öberg"),
            &rendered(),
            &id,
            None,
            SystemTime::UNIX_EPOCH,
        )
        .expect("builds");
        let h = headers(&b.bytes);
        assert!(h.contains(&format!("Message-ID: {id}")), "{h}");
        assert!(h.contains("Auto-Submitted: auto-generated"), "{h}");
        assert!(h.contains("Content-Language: sv"), "{h}");
        assert!(
            h.contains("Subject: Viktig information om dina personuppgifter =?utf-8?b?"),
            "subject RFC 2047: {h}"
        );
        assert!(h.contains("Reply-To: dataskydd@example.se"), "{h}");
        assert!(h.contains("Date: Thu, 01 Jan 1970"), "{h}");
        assert!(h.contains("multipart/alternative"), "{h}");
        assert!(h.is_ascii());
        let body = String::from_utf8_lossy(&b.bytes);
        assert!(body.contains("Content-Transfer-Encoding: quoted-printable"));
        assert!(body.contains("Hej =C3=85sa!"), "{body}");
        assert_eq!(b.rcpt, "anna@example.se");
    }

    #[test]
    fn header_injection_through_name_is_impossible() {
        let c = config();
        let evil = "Anna\r\nBcc: evil@example.com\r\nX-Evil: 1";
        let b = build(
            &c,
            &recipient(evil),
            &rendered(),
            "<x@example.se>",
            None,
            SystemTime::UNIX_EPOCH,
        )
        .expect("builds");
        let h = headers(&b.bytes);
        for line in h.split("\r\n") {
            assert!(!line.starts_with("Bcc:"), "{h}");
            assert!(!line.starts_with("X-Evil:"), "{h}");
        }
        let mut r = rendered();
        r.subject = "Hej\r\nBcc: evil@example.com".into();
        let b = build(
            &c,
            &recipient("A"),
            &r,
            "<x@example.se>",
            None,
            SystemTime::UNIX_EPOCH,
        )
        .expect("builds");
        assert!(
            !headers(&b.bytes)
                .split("\r\n")
                .any(|l| l.starts_with("Bcc:"))
        );
    }

    #[test]
    fn text_only_and_test_delivery() {
        let c = config();
        let mut r = rendered();
        r.html = None;
        let b = build(
            &c,
            &recipient(""),
            &r,
            "<x@example.se>",
            Some("me@example.se"),
            SystemTime::UNIX_EPOCH,
        )
        .expect("builds");
        let h = headers(&b.bytes);
        assert!(h.contains("Content-Type: text/plain; charset=utf-8"), "{h}");
        assert!(h.contains("To: me@example.se"), "{h}");
        assert!(h.contains("X-Utskick-Test:"), "{h}");
        assert_eq!(b.rcpt, "me@example.se");
    }

    #[test]
    fn crlf_normalizes() {
        assert_eq!(crlf("a\nb\r\nc"), "a\r\nb\r\nc");
    }
}
