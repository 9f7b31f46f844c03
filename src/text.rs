//! Small text jobs the whole crate shares: text made to fit on one header or log line,
//! input shown in an error message without flooding the terminal, and lower-case hex.
//!
//! They exist once here because every module that reads what a user, a file or a server
//! wrote needs them, and copies drift (one copy escaped control characters, another cut at
//! a different length).

use std::fmt::Write;

/// The text on one line: control characters (CR, LF, tab, ...) and every kind of white
/// space become one space, runs fold, ends trimmed. Everything that may reach a header goes
/// through this.
pub fn one_line(text: &str) -> String {
    one_line_within(text, usize::MAX)
}

/// `one_line`, cut to at most `max` characters (never ending in the space before a cut
/// word): for a line of a report or log that quotes text a server or a file wrote.
pub fn one_line_within(text: &str, max: usize) -> String {
    if already_one_line(text) && (max == usize::MAX || text.chars().count() <= max) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len().min(max.saturating_mul(4)));
    let mut count = 0usize;
    let mut pending_space = false;
    for c in text.chars() {
        if breaks_line(c) {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            if count + 1 >= max {
                break;
            }
            out.push(' ');
            count += 1;
            pending_space = false;
        }
        if count >= max {
            break;
        }
        out.push(c);
        count += 1;
    }
    out
}

/// White space or a control character: what `one_line` turns into a space.
fn breaks_line(c: char) -> bool {
    c.is_control() || c.is_whitespace()
}

/// Whether `one_line` would give `text` back as it is: single spaces only between words,
/// nothing else that is white space or a control character. Most names and subjects are
/// like that, and checking is cheaper than rebuilding them character by character.
fn already_one_line(text: &str) -> bool {
    let mut after_space = true;
    for c in text.chars() {
        if c == ' ' {
            if after_space {
                return false;
            }
            after_space = true;
        } else if breaks_line(c) {
            return false;
        } else {
            after_space = false;
        }
    }
    !after_space || text.is_empty()
}

/// At most `max` characters of `text`, control characters escaped, for error messages: a
/// cell or a key may be megabytes long or hold terminal escapes.
pub fn excerpt(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            let _ = write!(out, "… ({} bytes)", text.len());
            break;
        }
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    out
}

/// Input quoted for an error message (`"anna.@example"`), shortened when long.
pub fn quoted_excerpt(text: &str) -> String {
    const MAX: usize = 100;
    if text.chars().count() <= MAX {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(MAX).collect();
    format!("{head:?}… ({} bytes)", text.len())
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The long way round, for comparison with the shortcut.
    fn folded(text: &str) -> String {
        text.split(breaks_line)
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn one_line_strips_header_breakers() {
        assert_eq!(
            one_line("Anna\r\nBcc: evil@example.com"),
            "Anna Bcc: evil@example.com"
        );
        assert_eq!(one_line("  a\t\tb \u{2028} c "), "a b c");
        for text in [
            "",
            " ",
            "a",
            "a b",
            "a  b",
            " a",
            "a ",
            "Åsa Öberg",
            "a\u{a0}b",
            "a\u{85}b",
            "a\u{2029}b",
        ] {
            assert_eq!(one_line(text), folded(text), "{text:?}");
        }
    }

    #[test]
    fn one_line_within_cuts_without_a_trailing_space() {
        assert_eq!(one_line_within("  a \r\n b\u{0}c  ", 500), "a b c");
        assert_eq!(one_line_within("abc def", 4), "abc");
        assert_eq!(one_line_within("abc def", 5), "abc d");
        assert_eq!(one_line_within("abcdef", 3), "abc");
        assert_eq!(one_line_within("abc", 3), "abc");
        assert_eq!(one_line_within("", 0), "");
    }

    #[test]
    fn excerpts_escape_and_cut() {
        assert_eq!(excerpt("a\u{1b}[31mb", 40), "a\\u{1b}[31mb");
        assert_eq!(excerpt("abcdef", 3), "abc… (6 bytes)");
        assert_eq!(excerpt("abc", 3), "abc");
        assert_eq!(quoted_excerpt("anna.@example"), "\"anna.@example\"");
        let long = "x".repeat(150);
        assert_eq!(
            quoted_excerpt(&long),
            format!("{:?}… (150 bytes)", "x".repeat(100))
        );
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0, 0x0f, 0xa5, 0xff]), "000fa5ff");
        assert_eq!(hex(&[]), "");
    }

    mod proptests {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(1000))]

            #[test]
            fn one_line_shortcut_agrees_with_folding(text in "[ a\\t\\r\\nÅ\\u{a0}\\u{85}\\u{2028}\\u{7f}-]{0,12}") {
                prop_assert_eq!(one_line(&text), folded(&text));
            }

            #[test]
            fn one_line_within_is_a_prefix_of_one_line(text in "[ ab\\t\\r\\nÅ]{0,16}", max in 0usize..20) {
                let cut = one_line_within(&text, max);
                prop_assert!(cut.chars().count() <= max);
                prop_assert!(one_line(&text).starts_with(&cut));
                prop_assert!(!cut.ends_with(' '));
            }
        }
    }
}
