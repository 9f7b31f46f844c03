//! The readable part of a file name derived from a recipient: a slug of the name.
//! `message::file_name` puts it together with the key and a hash of the key, so that every
//! key gets a file of its own inside its folder.

/// `Åsa Öberg-Ek` → `asa-oberg-ek`.
pub fn slug(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        let mapped = match c {
            'å' | 'ä' | 'á' | 'à' | 'â' => 'a',
            'ö' | 'ø' | 'ó' | 'ò' | 'ô' => 'o',
            'é' | 'è' | 'ê' | 'ë' => 'e',
            'ü' | 'ú' => 'u',
            'í' | 'ï' => 'i',
            c if c.is_ascii_alphanumeric() => c,
            _ => '-',
        };
        if mapped == '-' && (out.is_empty() || out.ends_with('-')) {
            continue;
        }
        out.push(mapped);
        if out.len() >= 40 {
            break;
        }
    }
    out.trim_end_matches('-').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slug("Åsa Öberg-Ek"), "asa-oberg-ek");
        assert_eq!(slug("../x"), "x");
    }
}
