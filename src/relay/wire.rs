//! The bytes a message goes out as in DATA.

/// A message ready for DATA. Built once, on the cores that build messages, so that the
/// connection only writes it: lettre's codec would dot-stuff it byte by byte, and that was
/// a tenth of a fast send's CPU.
#[derive(Debug)]
pub struct Wire {
    /// The message's size as built.
    pub(super) len: usize,
    /// Dot-stuffed and ended with CRLF.CRLF, when the message is text (it is 7-bit).
    pub(super) stuffed: Option<String>,
    /// Otherwise the message, without its last CRLF, for lettre to dot-stuff and end.
    pub(super) body: Vec<u8>,
}

impl Wire {
    /// Prepares `bytes` (a whole message ending in CRLF) for DATA; the relay receives
    /// exactly `bytes`.
    pub fn new(bytes: &[u8]) -> Wire {
        let body = bytes.strip_suffix(b"\r\n").unwrap_or(bytes);
        match std::str::from_utf8(body) {
            Ok(text) => {
                let mut out = String::with_capacity(text.len() + 64);
                let mut rest = text;
                if rest.starts_with('.') {
                    out.push('.');
                }
                while let Some(i) = memchr::memmem::find(rest.as_bytes(), b"\r\n.") {
                    out.push_str(&rest[..i + 2]);
                    out.push('.');
                    rest = &rest[i + 2..];
                }
                out.push_str(rest);
                out.push_str("\r\n.\r\n");
                Wire {
                    len: bytes.len(),
                    stuffed: Some(out),
                    body: Vec::new(),
                }
            }
            Err(_) => Wire {
                len: bytes.len(),
                stuffed: None,
                body: body.to_vec(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire_text(bytes: &[u8]) -> String {
        Wire::new(bytes).stuffed.expect("a text message")
    }

    #[test]
    fn wire_dot_stuffs_like_the_smtp_codec_and_ends_the_data() {
        assert_eq!(wire_text(b"a\r\nb\r\n"), "a\r\nb\r\n.\r\n");
        assert_eq!(
            wire_text(b".start\r\nx\r\n.\r\n..two\r\nend.\r\n"),
            "..start\r\nx\r\n..\r\n...two\r\nend.\r\n.\r\n"
        );
        // A bare LF is no line end in SMTP: left as lettre leaves it.
        assert_eq!(wire_text(b"a\n.b\r\n"), "a\n.b\r\n.\r\n");
        // Without a final CRLF the relay still gets a line end before the dot.
        assert_eq!(wire_text(b"x"), "x\r\n.\r\n");
        assert_eq!(Wire::new(b"abc\r\n").len, 5);
        // Not UTF-8: lettre's codec does the work.
        let w = Wire::new(b"\xff.\r\n");
        assert!(w.stuffed.is_none());
        assert_eq!(w.body, b"\xff.");
    }
}
