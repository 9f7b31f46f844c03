//! A reader of `format=flowed` text parts (RFC 3676 section 4), written from the RFC for
//! the tests, independently of the program's encoder: what a mail client that supports
//! flowed text shows.

/// The text a flowed-aware client shows for a part: quote depth per line, one leading
/// space removed (space-stuffing), a line ending in a space joined with the next line of
/// the same depth (with `delsp`, that space is deleted), the signature line `-- ` hard.
pub fn decode(part: &str, delsp: bool) -> String {
    let mut out = String::new();
    let mut open_depth: Option<usize> = None;
    for raw in part.split_inclusive('\n') {
        let line = raw.trim_end_matches('\n').trim_end_matches('\r');
        let depth = line.bytes().take_while(|b| *b == b'>').count();
        let mut content = &line[depth..];
        if let Some(stuffed) = content.strip_prefix(' ') {
            content = stuffed;
        }
        if open_depth.is_some_and(|d| d != depth) {
            out.push('\n');
            open_depth = None;
        }
        if open_depth.is_none() {
            out.push_str(&">".repeat(depth));
        }
        let flowed = content.ends_with(' ') && content != "-- ";
        if flowed {
            let kept = if delsp {
                &content[..content.len() - 1]
            } else {
                content
            };
            out.push_str(kept);
            open_depth = Some(depth);
        } else {
            out.push_str(content);
            if raw.ends_with('\n') {
                out.push('\n');
            }
            open_depth = None;
        }
    }
    out
}
