//! The notice's languages: the default language's templates in `templates/` itself, one
//! subfolder per other language (`templates/en/`), and which of them each row gets.
//!
//! A row's language comes from `[recipients] language_column`. A row whose language has no
//! templates still gets a notice, in the default language, and preflight warns naming the
//! rows (`Tally`): a customer must never be left out because of a language code.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::recipients::{Diagnostic, FieldValue, Recipient, Severity};

use super::{BODY_HTML, BODY_TEXT, SUBJECT};

/// One language's templates, by their names in Tera (`subject.txt`, `en/subject.txt`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Language {
    /// The tag, lower-case: the default language's, or its folder's name. `'static` so that
    /// every message can carry it without allocating (`Language::new` leaks a few bytes
    /// once per language and load).
    pub(super) code: &'static str,
    /// The subject template.
    pub(super) subject: String,
    /// The plain-text body.
    pub(super) body_text: String,
    /// The HTML body, where the language has one.
    pub(super) body_html: Option<String>,
}

impl Language {
    /// The language whose templates are in `prefix` (`""` or `"en/"`), given which of the
    /// optional HTML it has.
    pub(super) fn new(code: &str, prefix: &str, has_html: bool) -> Language {
        Language {
            code: Box::leak(code.to_string().into_boxed_str()),
            subject: format!("{prefix}{SUBJECT}"),
            body_text: format!("{prefix}{BODY_TEXT}"),
            body_html: has_html.then(|| format!("{prefix}{BODY_HTML}")),
        }
    }
}

/// Whether a folder name is a language tag as BCP 47 writes them (`en`, `pt-br`, `sr-latn`):
/// letters, digits and hyphens, a letter first. Other folders (`images/`) are not languages.
pub(super) fn is_language_tag(name: &str) -> bool {
    let mut parts = name.split('-');
    let first_ok = parts
        .next()
        .is_some_and(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphabetic()));
    first_ok
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// The subfolders of `dir` that hold templates of another language, sorted, lower-case.
/// A folder named after the default language is an error: its templates are `dir` itself.
pub(super) fn other_languages(dir: &Path, default: &str) -> Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // The missing folder itself is reported with the missing subject.txt.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let path = entry.path();
        let holds_templates = path.is_dir()
            && [SUBJECT, BODY_TEXT, BODY_HTML]
                .iter()
                .any(|f| path.join(f).exists());
        if !holds_templates || !is_language_tag(&name) {
            continue;
        }
        if name.to_ascii_lowercase() == default {
            bail!(
                "{}: {default} is the default language ([templates] default_language), whose templates are in {} itself: move them there, or set another default_language",
                path.display(),
                dir.display()
            );
        }
        if name != name.to_ascii_lowercase() {
            bail!(
                "{}: name language folders in lower case ({})",
                path.display(),
                name.to_ascii_lowercase()
            );
        }
        found.push(name);
    }
    found.sort();
    Ok(found)
}

/// Which language a row's cell asks for, among the languages there are templates for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Choice<'a> {
    /// The language at this index (0 is the default).
    Known(usize),
    /// A language without templates: the row gets the default language.
    Missing(&'a str),
}

/// The language `asked` names among `languages` (index 0 the default): empty is the
/// default; case and surrounding spaces do not matter; a regional variant (`en-GB`) gets
/// its language (`en`) when only that has templates.
pub(super) fn choose<'a>(languages: &[Language], asked: &'a str) -> Choice<'a> {
    let asked = asked.trim();
    if asked.is_empty() {
        return Choice::Known(0);
    }
    let find = |tag: &str| {
        languages
            .iter()
            .position(|l| l.code.eq_ignore_ascii_case(tag))
    };
    let primary = asked.split(['-', '_']).next().unwrap_or(asked);
    match find(asked).or_else(|| find(primary)) {
        Some(i) => Choice::Known(i),
        None => Choice::Missing(asked),
    }
}

/// A row's cell in the language column (header names match ignoring case), if any.
pub(super) fn cell<'r>(recipient: &'r Recipient, column: &str) -> &'r str {
    recipient
        .fields
        .iter()
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(column))
        .and_then(|(_, v)| match v {
            FieldValue::Text(t) => Some(t.as_str()),
            FieldValue::List(_) => None,
        })
        .unwrap_or("")
}

/// At most this many lines are named in one warning about a language without templates.
const LINES_NAMED: usize = 20;

/// The rows preflight saw per language, to warn about the languages without templates.
#[derive(Debug, Default)]
pub struct Tally {
    /// Lines of the rows asking for a language without templates, by what they asked.
    missing: BTreeMap<String, (Vec<u64>, u64)>,
    /// Rows per language they get.
    counts: BTreeMap<String, u64>,
}

impl Tally {
    /// Books one row that gets `code`, having asked for a language without templates when
    /// `missing` is set.
    pub(super) fn note(&mut self, line: u64, code: &str, missing: Option<&str>) {
        if let Some(count) = self.counts.get_mut(code) {
            *count += 1;
        } else {
            self.counts.insert(code.to_string(), 1);
        }
        if let Some(asked) = missing {
            let entry = self.missing.entry(asked.to_ascii_lowercase()).or_default();
            if entry.0.len() < LINES_NAMED {
                entry.0.push(line);
            }
            entry.1 += 1;
        }
    }

    /// Rows per language, as they get it.
    pub fn counts(&self) -> &BTreeMap<String, u64> {
        &self.counts
    }

    /// One warning per language without templates, naming its rows.
    pub fn warnings(&self, file: &str, column: &str, dir: &Path, default: &str) -> Vec<Diagnostic> {
        self.missing
            .iter()
            .map(|(asked, (lines, rows))| {
                let mut named: Vec<String> = lines.iter().map(u64::to_string).collect();
                if *rows > lines.len() as u64 {
                    named.push(format!("{} more", rows - lines.len() as u64));
                }
                let (lines_word, them) = if *rows == 1 {
                    ("line", "it gets")
                } else {
                    ("lines", "they get")
                };
                Diagnostic {
                    file: file.to_string(),
                    sheet: None,
                    line: lines.first().copied().unwrap_or(1),
                    column: Some(column.to_string()),
                    message: format!(
                        "language {asked:?} has no templates ({} is missing) on {rows} row(s), {lines_word} {}: {them} the default language, {default}; add the folder, or correct the column",
                        dir.join(asked).display(),
                        named.join(", ")
                    ),
                    severity: Severity::Warning,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn langs() -> Vec<Language> {
        vec![
            Language::new("sv", "", true),
            Language::new("en", "en/", true),
            Language::new("pt-br", "pt-br/", false),
        ]
    }

    #[test]
    fn a_row_gets_its_language_or_the_default() {
        let l = langs();
        assert_eq!(choose(&l, ""), Choice::Known(0));
        assert_eq!(choose(&l, "  "), Choice::Known(0));
        assert_eq!(choose(&l, "sv"), Choice::Known(0));
        assert_eq!(choose(&l, "SV"), Choice::Known(0));
        assert_eq!(choose(&l, " en "), Choice::Known(1));
        assert_eq!(choose(&l, "EN"), Choice::Known(1));
        assert_eq!(choose(&l, "en-GB"), Choice::Known(1));
        assert_eq!(choose(&l, "en_US"), Choice::Known(1));
        assert_eq!(choose(&l, "pt-BR"), Choice::Known(2));
        assert_eq!(choose(&l, "de"), Choice::Missing("de"));
        assert_eq!(choose(&l, "pt"), Choice::Missing("pt"));
        assert_eq!(l[1].subject, "en/subject.txt");
        assert_eq!(l[2].body_html, None);
    }

    #[test]
    fn language_folders() {
        for ok in ["en", "de", "pt-br", "sr-latn", "fil"] {
            assert!(is_language_tag(ok), "{ok}");
        }
        for not in ["", "e", "en_", "1en", "-en", "en--x", "a b", "toolongname"] {
            assert!(!is_language_tag(not), "{not}");
        }
        let t = tempfile::tempdir().expect("tmp");
        for d in ["en", "de", "assets_folder", "fi"] {
            std::fs::create_dir(t.path().join(d)).expect("dir");
        }
        std::fs::write(t.path().join("en/subject.txt"), "s").expect("write");
        std::fs::write(t.path().join("de/body.txt"), "b").expect("write");
        std::fs::write(t.path().join("assets_folder/subject.txt"), "s").expect("write");
        // fi/ is empty: not a language.
        assert_eq!(
            other_languages(t.path(), "sv").expect("reads"),
            ["de", "en"]
        );
        let err = other_languages(t.path(), "en").expect_err("the default's own folder");
        assert!(
            err.to_string().contains("en is the default language"),
            "{err}"
        );
        assert_eq!(
            other_languages(&t.path().join("nope"), "sv").expect("missing"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_warning_names_the_rows() {
        let mut t = Tally::default();
        t.note(2, "sv", None);
        t.note(3, "sv", Some("DE"));
        t.note(5, "en", None);
        t.note(9, "sv", Some("de"));
        t.note(12, "sv", Some("fr"));
        assert_eq!(t.counts().get("sv"), Some(&4));
        assert_eq!(t.counts().get("en"), Some(&1));
        let w = t.warnings("r.csv", "language", Path::new("templates"), "sv");
        let lines: Vec<String> = w.iter().map(Diagnostic::to_string).collect();
        assert_eq!(
            lines,
            [
                "warning: r.csv:3: column language: language \"de\" has no templates (templates/de is missing) on 2 row(s), lines 3, 9: they get the default language, sv; add the folder, or correct the column",
                "warning: r.csv:12: column language: language \"fr\" has no templates (templates/fr is missing) on 1 row(s), line 12: it gets the default language, sv; add the folder, or correct the column",
            ]
        );
        let mut many = Tally::default();
        for line in 2..40 {
            many.note(line, "sv", Some("de"));
        }
        let w = many.warnings("r.csv", "language", Path::new("templates"), "sv");
        assert!(w[0].message.contains("lines 2, 3, "), "{}", w[0].message);
        assert!(w[0].message.contains(", 21, 18 more:"), "{}", w[0].message);
    }
}
