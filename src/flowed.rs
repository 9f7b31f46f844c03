//! The text part as `format=flowed` (RFC 3676): each paragraph of the rendered text is
//! wrapped at 72 columns with soft line breaks (a line ending in a space), so a phone joins
//! the lines again and reflows them to its width, while a terminal shows 72 columns.
//!
//! The templates write one paragraph or list item per line; a line break in the template
//! is a hard break and stays one, so lists, headings and addresses keep their shape. Lines
//! break only at spaces, never inside a word, so `DelSp` stays `no` (the default) and is
//! not sent.

/// Where lines are wrapped: RFC 3676 section 4.2 recommends at most 72 characters.
pub const WIDTH: usize = 72;

/// The `Content-Type` of a text part encoded by `encode`.
pub const CONTENT_TYPE: &str = "text/plain; charset=utf-8; format=flowed";

/// `text` as format=flowed with `\n` line ends: every line longer than `WIDTH` broken at
/// spaces into lines that end in a space (soft breaks), trailing white space of hard lines
/// removed (it would make them soft), lines that begin with a space, `>` or `From `
/// space-stuffed. A word longer than `WIDTH` stays whole on its own line.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 16);
    let ends_with_newline = text.ends_with('\n');
    let body = text.strip_suffix('\n').unwrap_or(text);
    for (n, line) in body.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let line = line.strip_suffix('\r').unwrap_or(line);
        // The usual signature separator is the one hard line that keeps its space.
        if line == "-- " {
            out.push_str(line);
            continue;
        }
        wrap(line.trim_end_matches([' ', '\t']), &mut out);
    }
    if ends_with_newline {
        out.push('\n');
    }
    out
}

/// Appends one paragraph, wrapped, with `\n` between its lines.
fn wrap(paragraph: &str, out: &mut String) {
    let mut rest = paragraph;
    loop {
        let mut cut = soft_break(rest);
        // A line of just "-- " reads as a signature separator, a hard break: take the next
        // words onto it.
        while &rest[..cut] == "-- " {
            cut += soft_break(&rest[cut..]);
        }
        let (line, after) = rest.split_at(cut);
        stuff(line, out);
        if after.is_empty() {
            return;
        }
        out.push('\n');
        rest = after;
    }
}

/// Where the first line of `text` ends: after the last run of spaces that leaves at most
/// `WIDTH` characters before it (the spaces stay at the line's end: the soft break), or
/// after the first run of spaces when the first word alone is longer; the whole text when
/// it fits or has no space to break at.
fn soft_break(text: &str) -> usize {
    if text.chars().count() <= WIDTH {
        return text.len();
    }
    let mut best = None;
    let mut chars = 0usize;
    let mut iter = text.char_indices().peekable();
    while let Some((i, c)) = iter.next() {
        if c == ' ' {
            // The end of this run of spaces.
            let mut end = i + 1;
            while let Some(&(j, ' ')) = iter.peek() {
                end = j + 1;
                iter.next();
                chars += 1;
            }
            if end >= text.len() {
                break;
            }
            if chars <= WIDTH || best.is_none() {
                best = Some(end);
            }
            if chars > WIDTH {
                break;
            }
        }
        chars += 1;
    }
    best.unwrap_or(text.len())
}

/// Appends a line, with the space RFC 3676 section 4.4 puts before a line that begins with
/// a space, `>` (which would read as a quote) or `From ` (which mbox would mangle).
fn stuff(line: &str, out: &mut String) {
    if line.starts_with([' ', '>']) || line.starts_with("From ") {
        out.push(' ');
    }
    out.push_str(line);
}

/// The text a format=flowed reader shows (`DelSp=no`): space-stuffing removed, each line
/// that ends in a space joined with the next line of the same quote depth. For tests and
/// for anything that shows a sent message's text.
pub fn decode(flowed: &str) -> String {
    let mut out = String::with_capacity(flowed.len());
    let mut open: Option<usize> = None;
    let ends_with_newline = flowed.ends_with('\n');
    let body = flowed.strip_suffix('\n').unwrap_or(flowed);
    for line in body.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let depth = line.chars().take_while(|c| *c == '>').count();
        let content = &line[depth..];
        let content = content.strip_prefix(' ').unwrap_or(content);
        if let Some(d) = open
            && d != depth
        {
            // A soft break into another quote depth is a hard one (RFC 3676 4.5).
            out.push('\n');
            open = None;
        }
        if open.is_none() {
            out.push_str(&">".repeat(depth));
        }
        out.push_str(content);
        let soft = content.ends_with(' ') && content != "-- ";
        if soft {
            open = Some(depth);
        } else {
            out.push('\n');
            open = None;
        }
    }
    // A text without a final newline gets none.
    if !ends_with_newline && out.ends_with('\n') {
        out.pop();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_paragraph_breaks_softly_at_72_columns() {
        let paragraph = "Vi måste tyvärr berätta att NEKTAB har drabbats av ett dataintrång och att uppgifter om dig kan finnas bland det som angriparna har kommit över.";
        let flowed = encode(&format!("Hej Åsa,\n\n{paragraph}\n"));
        assert_eq!(
            flowed,
            "Hej Åsa,\n\n\
             Vi måste tyvärr berätta att NEKTAB har drabbats av ett dataintrång och \n\
             att uppgifter om dig kan finnas bland det som angriparna har kommit \n\
             över.\n"
        );
        for line in flowed.lines() {
            assert!(line.trim_end().chars().count() <= WIDTH, "{line:?}");
        }
        assert_eq!(decode(&flowed), format!("Hej Åsa,\n\n{paragraph}\n"));
    }

    #[test]
    fn lists_and_headings_keep_their_shape() {
        let text = "Vad har hänt?\n-------------\n  - namn\n  - postadress\n\
                    1. Håll koll på ditt bankkonto och på fakturor och brev som kommer till dig, varje dag.\n\
                    2. Kontakta din bank.\n";
        let flowed = encode(text);
        assert_eq!(
            flowed,
            "Vad har hänt?\n-------------\n   - namn\n   - postadress\n\
             1. Håll koll på ditt bankkonto och på fakturor och brev som kommer till \n\
             dig, varje dag.\n\
             2. Kontakta din bank.\n"
        );
        assert_eq!(decode(&flowed), text);
    }

    #[test]
    fn hard_lines_lose_trailing_space_and_special_starts_are_stuffed() {
        assert_eq!(encode("Hej   \nDå\t\n"), "Hej\nDå\n");
        assert_eq!(
            encode(">citat\nFrom here\n Indrag\n-- \nSign"),
            " >citat\n From here\n  Indrag\n-- \nSign"
        );
        assert_eq!(
            decode(" >citat\n From here\n  Indrag\n-- \nSign"),
            ">citat\nFrom here\n Indrag\n-- \nSign"
        );
    }

    #[test]
    fn a_dash_dash_space_never_ends_up_alone_on_a_soft_line() {
        // Without care the second line would be "-- " and the third the long word.
        let text = format!("{} -- {}", "a".repeat(70), "b".repeat(75));
        let flowed = encode(&text);
        assert!(flowed.split('\n').all(|l| l != "-- "), "{flowed:?}");
        assert_eq!(decode(&flowed), text);
    }

    #[test]
    fn a_long_word_is_never_broken() {
        let url = format!("https://example.se/{}", "a".repeat(90));
        let flowed = encode(&format!("Se {url} nu"));
        assert_eq!(flowed, format!("Se \n{url} \nnu"));
        assert_eq!(decode(&flowed), format!("Se {url} nu"));
        assert_eq!(encode(&url), url);
    }

    #[test]
    fn quotes_from_a_flowed_reply_are_read_per_depth() {
        // A soft break joins lines of one depth; into another depth it is a hard break.
        assert_eq!(decode("> a \n> b\n>> c \nd\n"), ">a b\n>>c \nd\n");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Whatever the text, a flowed reader gets it back (less the trailing white space
        /// of its lines), and no line is longer than 72 characters unless it holds a
        /// single word that is.
        #[test]
        fn what_is_encoded_reads_back(text in "([a-zåäö>F]{0,12}( {1,3}|\n|-- \n|From )?){0,40}") {
            let flowed = encode(&text);
            let expected: String = {
                let ends = text.ends_with('\n');
                let body = text.strip_suffix('\n').unwrap_or(&text);
                let mut lines: Vec<String> = body
                    .split('\n')
                    .map(|l| if l == "-- " { l.to_string() } else { l.trim_end_matches([' ', '\t']).to_string() })
                    .collect();
                if ends { lines.push(String::new()); }
                lines.join("\n")
            };
            prop_assert_eq!(decode(&flowed), expected);
            for line in flowed.split('\n') {
                let shown = line.trim_end_matches(' ');
                let stuffed_width = WIDTH + 1;
                prop_assert!(
                    shown.chars().count() <= stuffed_width || !shown.trim_start().contains(' '),
                    "{:?}", line
                );
            }
        }
    }
}
