//! `preview`: the dry run. Validates every row, renders every message, and writes the
//! messages as `.eml` files plus a page to read them in a browser: the variants of the
//! notice with their counts, every recipient findable, each message shown as the customer
//! sees it.
//!
//! It goes through exactly the same preflight and message preparation as `send`; only
//! the transport is missing. The files hold personal data: 0600 in a 0700 folder.

mod page;
mod variants;

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result};

use crate::cli::PreviewArgs;
use crate::config::Config;
use crate::exit_codes::ExitCode;
use crate::mailing::Mailing;
use crate::message::{Delivery, Prepared};
use crate::output::Output;
use crate::{Fail, ResultExt, private};

pub use page::html_escape;
use page::{Index, Meta, Note, VariantView};
use variants::{MAX_EXAMPLES, Variants};

const MARKER: &str = ".utskick-preview";

/// Notes about rare variants shown at most (the rest summed up in one more).
const RARE_NOTES: usize = 20;

/// Runs `preview`.
pub fn run(config: Config, args: &PreviewArgs, out: &Output) -> Result<ExitCode, Fail> {
    let mailing = Mailing::open(config)?;
    crate::deliverability::signing::for_config(&mailing.config).input()?;
    let dir = args.out.clone().unwrap_or_else(|| {
        crate::config::resolve(&mailing.config.dir, std::path::Path::new("preview"))
    });
    prepare_dir(&dir).input()?;
    let limit = args.limit.unwrap_or(u64::MAX);
    let rc = &mailing.config.recipients;
    let identity: Vec<String> = [
        rc.key_column.clone(),
        Some(rc.email_column.clone()),
        Some(rc.name_column.clone()),
    ]
    .into_iter()
    .flatten()
    .collect();
    let sources = template_sources(&mailing.templates.dir).input()?;
    let mut variants = Variants::new(&sources, identity);
    let title = format!("utskick preview: {}", mailing.config.campaign);
    let mut index = Index::create(&dir, &title, &mailing.config.sender.from.to_string()).input()?;
    let mut files = Files {
        dir: &dir,
        names: HashSet::new(),
        limit,
    };
    let (mut own, mut examples) = (0u64, Vec::new());
    // With --variants, each group's example until the groups are merged into variants.
    let mut group_examples: Vec<Option<Prepared>> = Vec::new();
    // With --variants only the examples are prepared in full, on this thread.
    let full = if args.variants { 0 } else { limit };
    let pre = mailing.preflight(full, |recipient, prepared| {
        // The language of a row not prepared in full is the templates' one.
        let language =
            prepared.map_or_else(|| mailing.templates.language_of(recipient), |p| p.language);
        let (group, new) = variants.group_of(recipient, language);
        let row = index.add(recipient, group)?;
        if let Some(p) = prepared {
            files.message(p)?;
            page::write_view(&dir, row, recipient, p, true)?;
            own += 1;
        }
        if new && variants.groups.len() <= MAX_EXAMPLES {
            match prepared {
                Some(p) => variants.set_example(group, row, recipient, p),
                None => {
                    let example = mailing.prepare(recipient, Delivery::Notice, mailing.date)?;
                    page::write_view(&dir, row, recipient, &example, args.variants)?;
                    examples.push(row);
                    variants.set_example(group, row, recipient, &example);
                    if args.variants {
                        group_examples.resize_with(group + 1, || None);
                        group_examples[group] = Some(example);
                    }
                }
            }
        }
        Ok(())
    })?;
    let (list, of_group) = variants.finish();
    for v in &list {
        if let Some(Some(p)) = group_examples.get(v.group) {
            files.message(p).input()?;
        }
    }
    let mut notes = notes(&pre, &list, variants.groups.len(), pre.rendered);
    for w in &pre.scan.warnings {
        out.warn(&w.to_string());
    }
    for w in crate::deliverability::links::preflight_warnings(&mailing.config) {
        out.warn(&w);
        notes.push(Note {
            kind: "warn",
            text: w,
            line: None,
            column: None,
            variant: None,
        });
    }
    let errors = pre.error_lines();
    for e in &errors {
        out.error_line(e);
    }
    let mut all_notes: Vec<Note> = errors
        .iter()
        .map(|e| Note {
            kind: "err",
            text: e.clone(),
            line: None,
            column: None,
            variant: None,
        })
        .collect();
    all_notes.append(&mut notes);
    let written = files.names.len() as u64;
    index
        .finish(&Meta {
            own,
            examples,
            written,
            mode: if args.variants { "variants" } else { "all" },
            groups: of_group,
            variants: list
                .iter()
                .map(|v| VariantView {
                    n: v.count,
                    ex: v.example,
                    vals: v.values.clone(),
                    lang: v.language,
                    subject: v.subject.clone(),
                })
                .collect(),
            notes: all_notes,
            email_column: rc.email_column.clone(),
        })
        .input()?;
    let invalid = pre.invalid();
    out.summary(&format!(
        "rows {}, valid {}, invalid {}, warnings {}, rendered {}, written {} to {}",
        pre.scan.rows,
        pre.rendered,
        invalid,
        pre.scan.warnings.len(),
        pre.rendered,
        written,
        dir.display()
    ));
    out.info(&format!(
        "{} variant{} of the notice",
        list.len(),
        if list.len() == 1 { "" } else { "s" }
    ));
    if invalid > 0 && !args.skip_invalid {
        return Err(Fail::Input(anyhow::anyhow!(
            "{invalid} of {} rows cannot be sent: {}",
            pre.scan.rows,
            pre.what_to_do()
        )));
    }
    if pre.rendered == 0 {
        return Err(Fail::Input(anyhow::anyhow!("no recipient can be sent")));
    }
    out.info(&format!(
        "open {} in a browser to read the messages",
        dir.join("index.html").display()
    ));
    Ok(ExitCode::Success)
}

/// The `.eml` files a preview writes: one per key, at most `limit`.
struct Files<'a> {
    dir: &'a Path,
    names: HashSet<String>,
    limit: u64,
}

impl Files<'_> {
    fn message(&mut self, p: &Prepared) -> Result<()> {
        if self.names.len() as u64 >= self.limit {
            return Ok(());
        }
        if !self.names.insert(p.file_name.clone()) {
            anyhow::bail!(
                "two keys would share the file {}: nothing more is written",
                p.file_name
            );
        }
        private::write_file(&self.dir.join(&p.file_name), &p.bytes)
    }
}

/// The page's warnings: the CSV's, then rows whose variant no one else gets.
fn notes(
    pre: &crate::mailing::Preflight,
    list: &[variants::Variant],
    groups: usize,
    rows: u64,
) -> Vec<Note> {
    let mut notes: Vec<Note> = pre
        .scan
        .warnings
        .iter()
        .map(|w| Note {
            kind: "warn",
            text: w.to_string(),
            line: Some(w.line),
            column: w.column.clone(),
            variant: None,
        })
        .collect();
    if groups > MAX_EXAMPLES {
        notes.push(Note {
            kind: "warn",
            text: format!(
                "{groups} groups of rows: only the first {MAX_EXAMPLES} have an example. The templates branch on a column that differs on nearly every row"
            ),
            line: None,
            column: None,
            variant: None,
        });
    }
    if rows >= 20 {
        let rare: Vec<usize> = (0..list.len()).filter(|&v| list[v].count == 1).collect();
        for &v in rare.iter().take(RARE_NOTES) {
            let what: Vec<String> = list[v]
                .values
                .iter()
                .map(|(c, x)| format!("{c}: {}", if x.is_empty() { "(tomt)" } else { x }))
                .collect();
            notes.push(Note {
                kind: "warn",
                text: format!(
                    "Ovanlig rad: bara en av {rows} mottagare får variant #{} ({})",
                    v + 1,
                    what.join(", ")
                ),
                line: None,
                column: None,
                variant: Some(v),
            });
        }
        if rare.len() > RARE_NOTES {
            notes.push(Note {
                kind: "warn",
                text: format!(
                    "... och {} fler varianter med en enda mottagare",
                    rare.len() - RARE_NOTES
                ),
                line: None,
                column: None,
                variant: None,
            });
        }
    }
    notes
}

/// The template files' text, of every language (the templates folder and its subfolders),
/// for the variants to see which columns they branch on.
fn template_sources(dir: &Path) -> Result<Vec<String>> {
    let mut dirs = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            dirs.push(path);
        }
    }
    let mut sources = Vec::new();
    for d in dirs {
        for name in [
            crate::render::SUBJECT,
            crate::render::BODY_TEXT,
            crate::render::BODY_HTML,
        ] {
            match std::fs::read_to_string(d.join(name)) {
                Ok(text) => sources.push(text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("cannot read {}", d.join(name).display()));
                }
            }
        }
    }
    Ok(sources)
}

/// Creates the folder 0700, or empties an earlier preview in it.
fn prepare_dir(dir: &Path) -> Result<()> {
    if dir.exists() {
        if !dir.is_dir() {
            anyhow::bail!("{} exists and is not a folder", dir.display());
        }
        let marker = dir.join(MARKER);
        let empty = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read {}", dir.display()))?
            .next()
            .is_none();
        if !marker.exists() && !empty {
            anyhow::bail!(
                "{} is not empty and was not written by utskick preview: choose another --out",
                dir.display()
            );
        }
        for entry in
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?
        {
            let path = entry?.path();
            let ours = path.extension().is_some_and(|e| e == "eml" || e == "html");
            if ours {
                std::fs::remove_file(&path)
                    .with_context(|| format!("cannot remove {}", path.display()))?;
            }
        }
        private::restrict_dir(dir)?;
    } else {
        private::create_dir(dir)?;
    }
    private::write_file(&dir.join(MARKER), b"written by utskick preview\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipients::{Diagnostic, Severity};

    fn variant(count: u64, confirmed: &str) -> variants::Variant {
        variants::Variant {
            values: vec![("confirmed".into(), confirmed.into())],
            language: "sv",
            count,
            example: Some(0),
            subject: String::new(),
            group: 0,
        }
    }

    #[test]
    fn notes_lead_to_rows_and_rare_variants() {
        let mut pre = crate::mailing::Preflight::default();
        pre.scan.warnings.push(Diagnostic {
            file: "r.csv".into(),
            sheet: None,
            line: 7,
            column: Some("email".into()),
            message: "shared".into(),
            severity: Severity::Warning,
        });
        let list = [variant(30, "ja"), variant(1, ""), variant(1, "nej")];
        let found = notes(&pre, &list, 3, 32);
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(
            (found[0].line, found[0].column.as_deref()),
            (Some(7), Some("email"))
        );
        assert_eq!(found[1].variant, Some(1));
        assert!(
            found[1].text.contains("variant #2 (confirmed: (tomt))"),
            "{}",
            found[1].text
        );
        assert_eq!(found[2].variant, Some(2));
        // A small mailing has nothing unusual about a variant of one.
        assert_eq!(notes_of(&list, 3, 12), 0);
        // Too many groups: said once.
        let many: Vec<variants::Variant> = (0..30).map(|_| variant(1, "x")).collect();
        let n = notes(
            &crate::mailing::Preflight::default(),
            &many,
            MAX_EXAMPLES + 1,
            30,
        );
        assert!(n[0].text.contains("only the first"), "{}", n[0].text);
        assert_eq!(
            n.len(),
            1 + RARE_NOTES + 1,
            "capped, with a line for the rest"
        );
    }

    fn notes_of(list: &[variants::Variant], groups: usize, rows: u64) -> usize {
        notes(&crate::mailing::Preflight::default(), list, groups, rows).len()
    }
}
