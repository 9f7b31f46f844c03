//! Link hygiene in the notice. A breach notice that links to a stranger's domain, through a
//! URL shortener or with tracking parameters looks like the phishing it warns about, and
//! spam filters score it so: such links are warnings in preflight (`check`, `preview`).
//! Allowed are the From domain, the authorities the shipped templates point to, and
//! `[check] link_domains`. Links are found by linkify and parsed by url.

use std::path::{Path, PathBuf};

use linkify::{LinkFinder, LinkKind};

/// Domains a notice may link to without a warning besides the From domain and
/// `[check] link_domains`: the authorities the shipped templates name.
pub const AUTHORITIES: &[&str] = &["imy.se", "polisen.se", "cert.se", "msb.se"];

/// URL shorteners: the reader cannot see where the link goes, and filters know it.
const SHORTENERS: &[&str] = &[
    "bit.ly",
    "bitly.com",
    "tinyurl.com",
    "t.co",
    "goo.gl",
    "ow.ly",
    "is.gd",
    "buff.ly",
    "rebrand.ly",
    "cutt.ly",
    "shorturl.at",
    "tiny.cc",
    "rb.gy",
    "bl.ink",
    "lnkd.in",
    "s.id",
    "t.ly",
    "v.gd",
    "shorte.st",
    "adf.ly",
    "tr.im",
    "qr.net",
    "x.co",
];

/// Query parameters that track the reader (exact names; `utm_` is a prefix).
const TRACKING: &[&str] = &[
    "fbclid",
    "gclid",
    "dclid",
    "gbraid",
    "wbraid",
    "msclkid",
    "mc_eid",
    "mc_cid",
    "_hsenc",
    "_hsmi",
    "mkt_tok",
    "yclid",
    "igshid",
    "twclid",
    "ttclid",
    "li_fat_id",
    "_ga",
    "oly_enc_id",
    "oly_anon_id",
    "vero_id",
    "wickedid",
    "s_cid",
    "ck_subscriber_id",
];

/// The domains allowed for a mailing from `from_domain` with `extra` configured.
pub fn allowed(from_domain: &str, extra: &[String]) -> Vec<String> {
    let mut out = vec![from_domain.to_ascii_lowercase()];
    out.extend(AUTHORITIES.iter().map(|d| d.to_string()));
    out.extend(
        extra
            .iter()
            .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase()),
    );
    out
}

fn under(host: &str, domain: &str) -> bool {
    host == domain
        || host
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

/// What is wrong with one link, None when nothing is.
pub fn judge(link: &str, allowed: &[String]) -> Option<String> {
    let with_scheme = if link.contains("://") {
        link.to_string()
    } else {
        format!("https://{link}")
    };
    let url = url::Url::parse(&with_scheme).ok()?;
    let host = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
    let mut problems = Vec::new();
    if SHORTENERS.iter().any(|s| under(&host, s)) {
        problems.push(format!(
            "{host} is a URL shortener: the reader cannot see where it leads, and spam filters mark it"
        ));
    } else if !allowed.iter().any(|d| under(&host, d)) {
        problems.push(format!(
            "{host} is not the sender's domain nor one allowed in [check] link_domains"
        ));
    }
    let tracking: Vec<String> = url
        .query_pairs()
        .map(|(k, _)| k.into_owned())
        .filter(|k| {
            let k = k.to_ascii_lowercase();
            k.starts_with("utm_") || TRACKING.contains(&k.as_str())
        })
        .collect();
    if !tracking.is_empty() {
        problems.push(format!(
            "tracking parameter(s) {}: a breach notice should not track its reader",
            tracking.join(", ")
        ));
    }
    if url.scheme() == "http" {
        problems.push("plain http: link over https".to_string());
    }
    if problems.is_empty() {
        None
    } else {
        Some(problems.join("; "))
    }
}

/// The links in `text` (with a scheme, or starting with `www.`) with their 1-based lines. Tera expressions inside a link are not
/// followed: a link whose domain comes from a variable is checked where that variable is.
pub fn links(text: &str) -> Vec<(usize, String)> {
    let mut finder = LinkFinder::new();
    finder.kinds(&[LinkKind::Url]);
    finder.url_must_have_scheme(false);
    finder
        .links(text)
        // Without a scheme only `www.` names count: Tera's `recipient.name` and file
        // names such as `config.toml` look like domains too.
        .filter(|l| {
            let s = l.as_str();
            (s.contains("://") || s.to_ascii_lowercase().starts_with("www."))
                && !s.contains("{{")
                && !s.contains("{%")
        })
        .map(|l| {
            let line = 1 + text[..l.start()].matches('\n').count();
            (line, l.as_str().to_string())
        })
        .collect()
}

fn template_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            template_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "txt" || e == "html") {
            out.push(p);
        }
    }
}

/// Collects every string in the `[incident]` table with its key path.
fn strings(value: &serde_json::Value, path: &str, out: &mut Vec<(String, String)>) {
    match value {
        serde_json::Value::String(s) => out.push((path.to_string(), s.clone())),
        serde_json::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                strings(v, &format!("{path}[{i}]"), out);
            }
        }
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                strings(v, &p, out);
            }
        }
        _ => {}
    }
}

/// The warnings for the templates in `dir` and the `[incident]` values (which the
/// templates print): `FILE:LINE: link URL: PROBLEM`.
pub fn warnings(
    dir: &Path,
    config_file: &Path,
    incident: &serde_json::Value,
    allowed: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    let mut files = Vec::new();
    template_files(dir, &mut files);
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        for (line, link) in links(&text) {
            if let Some(problem) = judge(&link, allowed) {
                out.push(format!("{}:{line}: link {link}: {problem}", file.display()));
            }
        }
    }
    let mut values = Vec::new();
    strings(incident, "incident", &mut values);
    for (key, value) in values {
        for (_, link) in links(&value) {
            if let Some(problem) = judge(&link, allowed) {
                out.push(format!(
                    "{}: {key}: link {link}: {problem}",
                    config_file.display()
                ));
            }
        }
    }
    out
}

/// The link warnings of a mailing's templates and `[incident]` values.
pub fn preflight_warnings(config: &crate::config::Config) -> Vec<String> {
    warnings(
        &config.templates_dir,
        &config.path,
        &config.incident,
        &allowed(&config.sender.domain, &config.check.link_domains),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow() -> Vec<String> {
        allowed("example.se", &["kundservice.example.com".to_string()])
    }

    #[test]
    fn own_and_authority_links_pass() {
        let a = allow();
        assert_eq!(judge("https://www.imy.se", &a), None);
        assert_eq!(judge("https://polisen.se/anmal", &a), None);
        assert_eq!(judge("https://example.se/dataintrang", &a), None);
        assert_eq!(judge("www.example.se", &a), None);
        assert_eq!(judge("https://kundservice.example.com/x", &a), None);
    }

    #[test]
    fn strangers_shorteners_and_trackers_warn() {
        let a = allow();
        let w = judge("https://example.com/x", &a).expect("warns");
        assert!(w.contains("example.com is not the sender's domain"), "{w}");
        // A look-alike ending in an allowed name is not under it.
        assert!(judge("https://evilimy.se/", &a).is_some());
        let w = judge("https://bit.ly/3xYz", &a).expect("warns");
        assert!(w.contains("bit.ly is a URL shortener"), "{w}");
        let w = judge(
            "https://example.se/info?utm_source=mail&utm_campaign=breach&id=4",
            &a,
        )
        .expect("warns");
        assert!(
            w.contains("tracking parameter(s) utm_source, utm_campaign"),
            "{w}"
        );
        let w = judge("https://www.imy.se/?fbclid=abc", &a).expect("warns");
        assert!(w.contains("fbclid"), "{w}");
        let w = judge("http://example.se/", &a).expect("warns");
        assert!(w.contains("plain http"), "{w}");
    }

    #[test]
    fn links_are_found_with_their_lines() {
        let text = "Hej!\nLäs mer på https://www.imy.se.\n<a href=\"https://bit.ly/x\">här</a>\nhttps://{{ incident.webbplats }}/x\n";
        let got = links(text);
        assert_eq!(
            got,
            [
                (2, "https://www.imy.se".to_string()),
                (3, "https://bit.ly/x".to_string())
            ]
        );
    }

    #[test]
    fn shipped_templates_have_no_warnings() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let w = warnings(
            &root.join("templates"),
            &root.join("config.toml"),
            &serde_json::json!({"webbplats": "www.example.se"}),
            &allowed("example.se", &[]),
        );
        assert!(w.is_empty(), "{w:?}");
    }
}
