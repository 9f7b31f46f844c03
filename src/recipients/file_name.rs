//! File names derived from a recipient: the key first (unique per key), then a readable
//! slug of the name, nothing that could leave the folder.

/// Name of a file holding the given recipient (key, then a slug of the name).
pub fn file_stem(key: &str, name: &str) -> String {
    let mut out: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(60)
        .collect();
    let slug = slug(name);
    if !slug.is_empty() {
        out.push('-');
        out.push_str(&slug);
    }
    out
}

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
        assert_eq!(file_stem("1042", "Bo Ek"), "1042-bo-ek");
        assert_eq!(file_stem("../x", ""), "___x");
    }
}
