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
use lettre::message::{Body, Mailbox, MultiPart, SinglePart};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::recipients::{Recipient, one_line};
use crate::render::Rendered;
use crate::text::hex;

/// Where a message goes: to the recipient, or as a test delivery (`--test-to`) to another
/// address.
#[derive(Debug, Clone, Copy)]
pub enum Delivery<'a> {
    /// The recipient's own notice.
    Notice,
    /// A test delivery of the recipient's notice to `to`, in run `run`.
    Test {
        /// The test address.
        to: &'a lettre::Address,
        /// The run, so that each test delivery has its own Message-ID.
        run: &'a str,
    },
}

/// One recipient's message, prepared once for preview, send and test sends alike: what
/// identifies it, where it goes, its file name and its bytes.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The Message-ID header's value, with angle brackets.
    pub message_id: String,
    /// The envelope recipient (the row's address, or the test address).
    pub rcpt: lettre::Address,
    /// The file holding it in a preview or the archive (see [`file_name`]).
    pub file_name: String,
    /// Its language (`Content-Language`).
    pub language: &'static str,
    /// The rendered notice.
    pub rendered: Rendered,
    /// The wire bytes, CRLF line ends (see [`build`]).
    pub bytes: Vec<u8>,
}

/// The row's address as the mail library holds it: parsed once per row, typed from then on.
pub fn address(recipient: &Recipient) -> Result<lettre::Address> {
    recipient.email.parse::<lettre::Address>().map_err(|e| {
        anyhow!(
            "{:?} is not an address the mail library accepts ({e})",
            recipient.email
        )
    })
}

/// Prepares one recipient's message from its parsed address and rendered notice.
pub fn prepare(
    config: &Config,
    recipient: &Recipient,
    address: lettre::Address,
    rendered: Rendered,
    delivery: Delivery<'_>,
    date: SystemTime,
) -> Result<Prepared> {
    let (message_id, rcpt, test) = match delivery {
        Delivery::Notice => (
            message_id(&config.campaign, &recipient.key, &config.sender.domain),
            address,
            false,
        ),
        Delivery::Test { to, run } => (
            test_message_id(&config.campaign, &recipient.key, run, &config.sender.domain),
            to.clone(),
            true,
        ),
    };
    let language = rendered.language;
    let bytes = build(
        config,
        recipient,
        &rendered,
        &Envelope {
            message_id: &message_id,
            to: &rcpt,
            test,
            language,
        },
        date,
    )?;
    Ok(Prepared {
        message_id,
        rcpt,
        file_name: file_name(&recipient.key, &recipient.name),
        language,
        rendered,
        bytes,
    })
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

/// The `.eml` file name of a recipient's message: readable (the key's safe characters and
/// a slug of the name) and unique per key (a hash of the whole key), so that keys that
/// differ only in characters a file name cannot hold (`anna.ek@`, `anna_ek@`, `anna+ek@`)
/// never share a file; only `[a-z0-9_-]` and one `.`, so it stays inside its folder
/// whatever the key holds (`/`, `..`), and at most 104 bytes however long the key.
pub fn file_name(key: &str, name: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    let slug = crate::recipients::slug(name);
    if !slug.is_empty() {
        out.push('-');
        out.push_str(&slug);
    }
    let mut h = Sha256::new();
    h.update(b"utskick file\0");
    h.update(key.as_bytes());
    out.push('-');
    out.push_str(&hex(&h.finalize())[..16]);
    out.push_str(".eml");
    out
}

/// What goes in the headers besides the recipient's row and notice.
struct Envelope<'a> {
    message_id: &'a str,
    to: &'a lettre::Address,
    /// A test delivery: marked as such in a header.
    test: bool,
    language: &'a str,
}

/// The one place where a message's wire bytes are made: headers of the contract and the
/// MIME body, and the DKIM signature over them where `[dkim] key_file` is set.
fn build(
    config: &Config,
    recipient: &Recipient,
    rendered: &Rendered,
    envelope: &Envelope<'_>,
    date: SystemTime,
) -> Result<Vec<u8>> {
    let name = one_line(&recipient.name);
    let to_box = Mailbox::new(
        if name.is_empty() { None } else { Some(name) },
        envelope.to.clone(),
    );
    // A name lettre would leave unquoted though it is no RFC 5322 phrase (`K.`).
    let quoted_to = crate::recipients::to_header(&to_box);
    let text = SinglePart::builder()
        .header(
            ContentType::parse(crate::flowed::CONTENT_TYPE)
                .map_err(|e| anyhow!("cannot build the text part's Content-Type: {e}"))?,
        )
        .body(qp_body(&crate::flowed::encode(&rendered.text)));
    let mut builder = Message::builder()
        .from(config.sender.from.clone())
        .reply_to(config.sender.reply_to.clone())
        .to(to_box);
    if let Some(to) = quoted_to {
        builder = builder.raw_header(to);
    }
    builder = builder
        .subject(one_line(&rendered.subject))
        .date(date)
        .message_id(Some(envelope.message_id.to_string()))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-generated".to_string(),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Content-Language"),
            envelope.language.to_string(),
        ));
    if envelope.test {
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
                    .body(qp_body(html)),
            ),
        ),
        None => builder.singlepart(text),
    }
    .map_err(|e| anyhow!("cannot build the message: {e}"))?;
    // Signed here, so that preview, archive and relay see the same bytes.
    crate::deliverability::signing::sign_message(config, message.formatted())
}

/// A body in quoted-printable (RFC 2045 6.7), encoded here rather than by lettre, which
/// scans and converts every body several times: building messages is most of the CPU a
/// fast send spends.
fn qp_body(text: &str) -> Body {
    Body::dangerous_pre_encoded(
        quoted_printable(text),
        ContentTransferEncoding::QuotedPrintable,
    )
}

/// Bytes written as they are in quoted-printable: printable ASCII but `=`.
const fn qp_literals() -> [bool; 256] {
    let mut t = [false; 256];
    let mut b = b'!';
    while b <= b'~' {
        t[b as usize] = b != b'=';
        b += 1;
    }
    t
}
const QP_LITERAL: [bool; 256] = qp_literals();

/// Bytes copied as they are inside a line: the literals, and space and tab (which are
/// encoded only at the end of a line).
const fn qp_plain() -> [bool; 256] {
    let mut t = qp_literals();
    t[b' ' as usize] = true;
    t[b'\t' as usize] = true;
    t
}
const QP_PLAIN: [bool; 256] = qp_plain();

/// Quoted-printable with CRLF line ends and lines of at most 76 characters: printable
/// ASCII but `=` as is, everything else as `=XX`, white space at a line's end encoded.
/// Runs of plain bytes are found with one table lookup a byte and copied whole: this is
/// on the hot path of a fast send.
pub fn quoted_printable(text: &str) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = Vec::with_capacity(text.len() + text.len() / 2 + 16);
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.extend_from_slice(b"\r\n");
        }
        let line = line.strip_suffix('\r').unwrap_or(line).as_bytes();
        let len = line.len();
        let mut col = 0usize;
        let mut i = 0usize;
        while i < len {
            // A run of plain bytes that fits before the soft break; never the line's last
            // byte, which is white space to encode or may take the 76th column.
            let end = (len - 1).min(i + 75usize.saturating_sub(col));
            let mut j = i;
            while j < end && QP_PLAIN[usize::from(line[j])] {
                j += 1;
            }
            out.extend_from_slice(&line[i..j]);
            col += j - i;
            i = j;
            let b = line[i];
            let last = i + 1 == len;
            let literal = QP_LITERAL[usize::from(b)] || (!last && (b == b' ' || b == b'\t'));
            let width = if literal { 1 } else { 3 };
            if col + width > 75 && !(last && col + width <= 76) {
                out.extend_from_slice(b"=\r\n");
                col = 0;
                continue;
            }
            if literal {
                out.push(b);
            } else {
                out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
            col += width;
            i += 1;
        }
    }
    out
}

#[cfg(test)]
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
            language: "sv",
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

    /// The recipient's notice, or a test delivery to `to`.
    fn prep(r: &Recipient, rendered: Rendered, to: Option<&str>) -> Prepared {
        let to = to.map(|t| t.parse::<lettre::Address>().expect("test address"));
        let delivery = match &to {
            Some(to) => Delivery::Test { to, run: "r" },
            None => Delivery::Notice,
        };
        let address = address(r).expect("address");
        prepare(
            &config(),
            r,
            address,
            rendered,
            delivery,
            SystemTime::UNIX_EPOCH,
        )
        .expect("builds")
    }

    #[test]
    fn headers_of_the_contract() {
        let id = message_id("c-1", "1042", "example.se");
        let b = prep(&recipient("Åsa Öberg"), rendered(), None);
        assert_eq!(b.message_id, id);
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
        assert_eq!(b.rcpt.to_string(), "anna@example.se");
        assert_eq!(b.language, "sv");
    }

    #[test]
    fn header_injection_through_name_is_impossible() {
        let evil = "Anna\r\nBcc: evil@example.com\r\nX-Evil: 1";
        let b = prep(&recipient(evil), rendered(), None);
        let h = headers(&b.bytes);
        for line in h.split("\r\n") {
            assert!(!line.starts_with("Bcc:"), "{h}");
            assert!(!line.starts_with("X-Evil:"), "{h}");
        }
        let mut r = rendered();
        r.subject = "Hej\r\nBcc: evil@example.com".into();
        let b = prep(&recipient("A"), r, None);
        assert!(
            !headers(&b.bytes)
                .split("\r\n")
                .any(|l| l.starts_with("Bcc:"))
        );
    }

    #[test]
    fn text_only_and_test_delivery() {
        let mut r = rendered();
        r.html = None;
        let b = prep(&recipient(""), r, Some("me@example.se"));
        let h = headers(&b.bytes);
        assert!(h.contains("Content-Type: text/plain; charset=utf-8"), "{h}");
        assert!(h.contains("To: me@example.se"), "{h}");
        assert!(h.contains("X-Utskick-Test:"), "{h}");
        assert_eq!(b.rcpt.to_string(), "me@example.se");
        assert_eq!(
            b.message_id,
            test_message_id("c-1", "1042", "r", "example.se")
        );
        assert!(h.contains(&format!("Message-ID: {}", b.message_id)), "{h}");
    }

    #[test]
    fn file_names_are_unique_per_key_and_stay_in_their_folder() {
        let names: Vec<String> = [
            "anna.ek@example.se",
            "anna_ek@example.se",
            "anna+ek@example.se",
        ]
        .iter()
        .map(|k| file_name(k, ""))
        .collect();
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), 3, "{names:?}");
        assert_eq!(file_name("1042", "Bo Ek"), file_name("1042", "Bo Ek"));
        assert!(file_name("1042", "Bo Ek").starts_with("1042-bo-ek-"));
        let long = "x".repeat(5000);
        for key in [
            "../../etc/passwd",
            "..",
            "/",
            "a/b\\c",
            "\0",
            long.as_str(),
            "Ö€😀",
        ] {
            let name = file_name(key, "../Åsa/..");
            assert!(name.len() <= 104, "{name}");
            assert!(name.ends_with(".eml"), "{name}");
            assert_eq!(name.matches('.').count(), 1, "{name}");
            assert!(!name.contains('/') && !name.contains('\\'), "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
                "{name}"
            );
            assert_ne!(file_name(key, ""), file_name(&format!("{key}x"), ""));
        }
        // Keys differing only in case are different keys: different files, also on a
        // file system that ignores case.
        assert_ne!(
            file_name("Anna", "").to_lowercase(),
            file_name("anna", "").to_lowercase()
        );
    }

    /// Decodes quoted-printable (for the tests).
    fn qp_decode(bytes: &[u8]) -> Vec<u8> {
        let text = std::str::from_utf8(bytes).expect("ascii");
        let mut out = Vec::new();
        let joined = text.replace("=\r\n", "");
        let b = joined.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'=' {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("hex digits"));
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        out
    }

    #[test]
    fn quoted_printable_round_trips_within_76_columns() {
        let long = "Å".repeat(100);
        let cases = [
            "Hej Åsa!\r\nRad två = tre.\r\n",
            "slut med blanksteg \r\noch tab\t\r\n",
            long.as_str(),
            "x".repeat(200).as_str(),
            "a = b ".repeat(40).as_str(),
            "",
            "\r\n\r\n",
            ".punkt först\r\nFrom början",
        ]
        .map(str::to_string);
        for case in cases {
            let enc = quoted_printable(&case);
            assert!(enc.is_ascii(), "{case:?}");
            for line in enc.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                assert!(line.len() <= 76, "{} > 76 in {case:?}", line.len());
                assert!(!line.ends_with(b" ") && !line.ends_with(b"\t"), "{case:?}");
            }
            assert_eq!(qp_decode(&enc), case.as_bytes(), "{case:?}");
        }
        assert_eq!(quoted_printable("a\nb"), b"a\r\nb", "LF becomes CRLF");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn quoted_printable_of_any_text(text in "[a-zåäöÅÄÖ =\t.\r\n€😀]{0,400}") {
            let enc = quoted_printable(&text);
            proptest::prop_assert!(enc.is_ascii());
            for line in enc.split(|&b| b == b'\n') {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                proptest::prop_assert!(line.len() <= 76);
                proptest::prop_assert!(!line.ends_with(b" ") && !line.ends_with(b"\t"));
            }
            // Every line end becomes CRLF; any other CR is kept (encoded).
            let want: Vec<&str> = text
                .split('\n')
                .map(|l| l.strip_suffix('\r').unwrap_or(l))
                .collect();
            proptest::prop_assert_eq!(qp_decode(&enc), want.join("\r\n").into_bytes());
        }
    }

    #[test]
    fn crlf_normalizes() {
        assert_eq!(crlf("a\nb\r\nc"), "a\r\nb\r\nc");
    }
}

#[cfg(test)]
mod proptests {
    //! Whatever the CSV holds in name and key and the template renders as subject, the
    //! header block stays what it must be: printable ASCII lines, folded only with leading
    //! white space, exactly the headers we put there, each once, and a To that still names
    //! the recipient's address.
    use super::*;
    use crate::recipients::FieldValue;
    use proptest::prelude::*;

    fn config() -> Config {
        Config::parse(
            "campaign = \"c-1\"\n[sender]\nfrom = \"Företaget Ö AB <dataskydd@example.se>\"\n[smtp]\nhost = \"127.0.0.1\"\nsecurity = \"none\"\nauth = \"none\"\n[recipients]\npath = \"r.csv\"\n",
            std::path::Path::new("/x/config.toml"),
        )
        .expect("config")
    }

    /// Text that tries to break out of a header.
    fn hostile() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("\r\n".to_string()),
            Just("\n".to_string()),
            Just("\r".to_string()),
            Just("\r\n ".to_string()),
            Just("Bcc: evil@example.com".to_string()),
            Just("\r\nBcc: evil@example.com\r\n".to_string()),
            Just("=?utf-8?b?QmNjOiBldmls?=".to_string()),
            Just("=?utf-8?q?a=0D=0ABcc:_x?=".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just("<x@example.com>".to_string()),
            Just(", y@example.com".to_string()),
            Just(";:()[]".to_string()),
            Just("\u{0}".to_string()),
            Just("\u{85}".to_string()),
            Just("\u{2028}".to_string()),
            Just("\t".to_string()),
            Just("Åsa Öberg".to_string()),
            Just("😀".to_string()),
            Just(" ".to_string()),
            Just("x".repeat(90)),
            any::<char>().prop_map(String::from),
        ];
        prop_oneof![
            prop::collection::vec(piece, 0..12).prop_map(|p| p.concat()),
            any::<String>(),
        ]
    }

    /// The header block, unfolded into (name, value) pairs; fails on any bad line.
    fn unfold(bytes: &[u8]) -> Result<Vec<(String, String)>, TestCaseError> {
        let text = std::str::from_utf8(bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (head, _) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| TestCaseError::fail("no end of headers"))?;
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.split("\r\n") {
            prop_assert!(
                line.bytes()
                    .all(|b| b == b'\t' || (0x20..0x7f).contains(&b)),
                "not printable ASCII: {:?}",
                line
            );
            prop_assert!(line.len() <= 998, "line longer than RFC 5322 allows");
            if line.starts_with([' ', '\t']) {
                let last = headers
                    .last_mut()
                    .ok_or_else(|| TestCaseError::fail("continuation first"))?;
                last.1.push_str(line);
            } else {
                let (name, value) = line
                    .split_once(':')
                    .ok_or_else(|| TestCaseError::fail(format!("not a header: {line:?}")))?;
                prop_assert!(
                    !name.is_empty()
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
                    "bad header name {:?}",
                    name
                );
                headers.push((name.to_string(), value.to_string()));
            }
        }
        Ok(headers)
    }

    fn check(name: &str, subject: &str, key: &str, to: Option<&str>) -> Result<(), TestCaseError> {
        let c = config();
        let recipient = Recipient {
            line: 2,
            key: key.to_string(),
            email: "anna@example.se".into(),
            name: name.to_string(),
            fields: vec![("name".into(), FieldValue::Text(name.to_string()))],
        };
        let rendered = crate::render::Rendered {
            subject: subject.to_string(),
            text: "Hej!\n".into(),
            html: None,
            language: "sv",
        };
        let test_to = to.map(|t| t.parse::<lettre::Address>().expect("test address"));
        let (id, delivery) = match &test_to {
            Some(to) => (
                test_message_id("c-1", key, "r", "example.se"),
                Delivery::Test { to, run: "r" },
            ),
            None => (message_id("c-1", key, "example.se"), Delivery::Notice),
        };
        let Ok(address) = address(&recipient) else {
            return Ok(());
        };
        let built = match prepare(
            &c,
            &recipient,
            address,
            rendered,
            delivery,
            SystemTime::UNIX_EPOCH,
        ) {
            Ok(b) => b,
            // Refusing is fine; what goes out must be sound.
            Err(_) => return Ok(()),
        };
        let headers = unfold(&built.bytes)?;
        let mut names: Vec<String> = headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .collect();
        names.sort();
        let mut expected = vec![
            "auto-submitted",
            "content-language",
            "content-transfer-encoding",
            "content-type",
            "date",
            "from",
            "message-id",
            "mime-version",
            "reply-to",
            "subject",
            "to",
        ];
        if to.is_some() {
            expected.push("x-utskick-test");
        }
        expected.sort();
        prop_assert_eq!(names, expected);
        let get = |n: &str| {
            headers
                .iter()
                .find(|(h, _)| h.eq_ignore_ascii_case(n))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        prop_assert_eq!(get("Message-ID"), id);
        // The parsed To is exactly one mailbox, the recipient's address.
        let parsed = mail_parser::MessageParser::default()
            .parse(&built.bytes)
            .ok_or_else(|| TestCaseError::fail("mail-parser cannot parse it"))?;
        let to_addr = parsed.to().ok_or_else(|| TestCaseError::fail("no To"))?;
        let all: Vec<_> = to_addr.iter().collect();
        prop_assert_eq!(all.len(), 1, "To: {:?}", get("To"));
        prop_assert_eq!(
            all[0].address().map(str::to_ascii_lowercase),
            Some(to.unwrap_or("anna@example.se").to_string()),
            "To: {:?}",
            get("To")
        );
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn hostile_name_and_subject_stay_in_their_headers(name in hostile(), subject in hostile()) {
            check(&name, &subject, "1042", None)?;
        }

        #[test]
        fn hostile_key_stays_in_the_test_header(key in hostile(), name in hostile()) {
            check(&name, "Ämne", &key, Some("me@example.se"))?;
        }
    }
}
