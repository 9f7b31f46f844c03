//! The preview page: `index.html`, which lists every recipient and every variant from a
//! compact JSON index and finds anyone in it, and one small page per shown message
//! (`vN.html`: the HTML part as the customer sees it beside the text part), which the
//! index loads into a frame only when that message is shown. So the index of 100,000
//! recipients stays at a few MB: no message body is in it.
//!
//! Nothing on either page is fetched from anywhere: a content security policy forbids it,
//! and the HTML part sits in a frame sandboxed with no permissions at all.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::message::Prepared;
use crate::private;
use crate::recipients::{FieldValue, Recipient};

/// The page up to the rows' JSON (styles and markup).
const HEAD: &str = include_str!("page.html");
/// The page's script.
const SCRIPT: &str = include_str!("page.js");

/// The streaming `index.html`: head, one JSON row per recipient, then the variants,
/// notes and script.
pub struct Index {
    file: BufWriter<File>,
    path: PathBuf,
    rows: u64,
    /// Distinct category texts (the list columns' values), so that each row holds a number.
    cats: ahash::AHashMap<String, u32>,
    cat_list: Vec<String>,
    /// Reused for every row: its categories, and its JSON.
    cat: String,
    line: Vec<u8>,
}

/// What the page says besides the rows.
#[derive(Debug, serde::Serialize)]
pub struct Meta {
    /// Rows (from the first) whose own message was written (`vN.html`).
    pub own: u64,
    /// Other rows whose page was written: the variants' examples.
    pub examples: Vec<u64>,
    /// Messages written (`.eml` files).
    pub written: u64,
    /// `all` (a message per recipient) or `variants` (one per variant).
    pub mode: &'static str,
    /// Each group's variant.
    pub groups: Vec<usize>,
    /// The variants.
    pub variants: Vec<VariantView>,
    /// Errors and warnings, errors first.
    pub notes: Vec<Note>,
    /// The address column (a warning about it leads to every row with that address).
    pub email_column: String,
}

/// A variant as the page shows it.
#[derive(Debug, serde::Serialize)]
pub struct VariantView {
    /// Recipients.
    pub n: u64,
    /// The example row.
    pub ex: Option<u64>,
    /// What sets it apart: (column, value).
    pub vals: Vec<(String, String)>,
    /// Its language.
    pub lang: &'static str,
    /// Its example's subject.
    pub subject: String,
}

/// One warning or error at the top of the page.
#[derive(Debug, serde::Serialize)]
pub struct Note {
    /// `err` or `warn`.
    pub kind: &'static str,
    /// As printed on stderr.
    pub text: String,
    /// The CSV line it names (its rows).
    pub line: Option<u64>,
    /// The column it names.
    pub column: Option<String>,
    /// The variant it is about.
    pub variant: Option<usize>,
}

impl Index {
    /// Starts `DIR/index.html`.
    pub fn create(dir: &Path, title: &str, from: &str) -> Result<Index> {
        let path = dir.join("index.html");
        let file = private::create_file(&path)?;
        let mut index = Index {
            file: BufWriter::with_capacity(1 << 16, file),
            path,
            rows: 0,
            cats: ahash::AHashMap::new(),
            cat_list: Vec::new(),
            cat: String::new(),
            line: Vec::new(),
        };
        let head = HEAD
            .replace("{{TITLE}}", &html_escape(title))
            .replace("{{FROM}}", &html_escape(from));
        index
            .file
            .write_all(head.as_bytes())
            .with_context(|| format!("cannot write {}", index.path.display()))?;
        Ok(index)
    }

    /// Adds a recipient in group `group`; returns its row number. Runs for every row,
    /// so the buffers are reused and a category text seen before is not copied.
    pub fn add(&mut self, r: &Recipient, group: usize) -> Result<u64> {
        categories(r, &mut self.cat);
        let cat = match self.cats.get(self.cat.as_str()) {
            Some(&c) => c,
            None => {
                let c = self.cat_list.len() as u32;
                self.cats.insert(self.cat.clone(), c);
                self.cat_list.push(self.cat.clone());
                c
            }
        };
        self.line.clear();
        if self.rows > 0 {
            self.line.extend_from_slice(b",\n");
        }
        let row = (&r.key, &r.name, &r.email, r.line, group, cat);
        serde_json::to_writer(&mut self.line, &row).context("cannot write the index")?;
        let written = if memchr::memchr(b'<', &self.line).is_some() {
            let text = String::from_utf8_lossy(&self.line);
            self.file.write_all(script_safe(&text).as_bytes())
        } else {
            self.file.write_all(&self.line)
        };
        written.with_context(|| format!("cannot write {}", self.path.display()))?;
        self.rows += 1;
        Ok(self.rows - 1)
    }

    /// Ends the page.
    pub fn finish(mut self, meta: &Meta) -> Result<()> {
        let mut json = serde_json::to_value(meta).context("cannot write the index")?;
        json["cats"] = serde_json::json!(self.cat_list);
        write!(
            self.file,
            "\n]</script>\n<script id=\"pagedata\" type=\"application/json\">{}</script>\n<script>\n{}</script></body></html>\n",
            script_safe(&json.to_string()),
            SCRIPT
        )
        .and_then(|()| self.file.flush())
        .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// The list columns' values, as the page shows and searches them, into `out`.
fn categories(r: &Recipient, out: &mut String) {
    out.clear();
    for (_, v) in &r.fields {
        if let FieldValue::List(items) = v {
            if !out.is_empty() {
                out.push_str("; ");
            }
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(item);
            }
        }
    }
}

/// Writes `DIR/vROW.html`: one message as the customer sees it, HTML beside text;
/// `eml` says whether its `.eml` file is written too.
pub fn write_view(
    dir: &Path,
    row: u64,
    r: &Recipient,
    prepared: &Prepared,
    eml: bool,
) -> Result<()> {
    let rendered = &prepared.rendered;
    let to = if r.name.is_empty() {
        prepared.rcpt.to_string()
    } else {
        format!("{} <{}>", r.name, prepared.rcpt)
    };
    let html = match &rendered.html {
        Some(h) => format!(
            "<iframe sandbox srcdoc=\"{}\" title=\"HTML-versionen\"></iframe>",
            html_escape(h)
        ),
        None => "<p class=\"none\">(ingen HTML-del)</p>".to_string(),
    };
    let page = format!(
        "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; frame-src about:; img-src data:\">\n\
<title>{subject}</title>\n<style>{VIEW_STYLE}</style></head><body>\n\
<div class=\"meta\"><span><b>Till:</b> {to}</span><span><b>Ämne:</b> {subject}</span><span><b>Fil:</b> {file} · CSV-rad {line} · {lang}</span></div>\n\
<div class=\"two\"><section><h2>HTML</h2>{html}</section><section><h2>Text</h2><pre id=\"text\">{text}</pre></section></div>\n\
</body></html>\n",
        lang = html_escape(prepared.language),
        subject = html_escape(&rendered.subject),
        to = html_escape(&to),
        file = if eml {
            html_escape(&prepared.file_name)
        } else {
            "(ingen .eml: variantens exempel)".to_string()
        },
        line = r.line,
        text = html_escape(&rendered.text),
    );
    private::write_file(&dir.join(format!("v{row}.html")), page.as_bytes())
}

const VIEW_STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#f4f5f7}\
.meta{display:flex;flex-wrap:wrap;gap:.2em 1.4em;padding:.45em .8em;background:#fff;border-bottom:1px solid #d5d8dd;font-size:.92em}\
.meta b{color:#555b65;font-weight:600}\
.two{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,min(80ch,56%));gap:.6em;padding:.6em}\
h2{font-size:.8em;text-transform:uppercase;letter-spacing:.05em;color:#555b65;margin:0 0 .3em}\
iframe,pre{display:block;width:100%;box-sizing:border-box;height:calc(100vh - 5.5em);min-height:24em;border:1px solid #d5d8dd;border-radius:4px;background:#fff;margin:0}\
pre{white-space:pre;padding:.8em 1em;overflow:auto;font:11px/1.45 ui-monospace,\"DejaVu Sans Mono\",monospace}\
@media (max-width:640px){.two{grid-template-columns:1fr}iframe,pre{height:70vh}}";

/// JSON inside `<script>`: `<` escaped so no `</script>` or `<!--` can end it.
fn script_safe(json: &str) -> std::borrow::Cow<'_, str> {
    if json.contains('<') {
        std::borrow::Cow::Owned(json.replace('<', "\\u003c"))
    } else {
        std::borrow::Cow::Borrowed(json)
    }
}

/// Escapes text for HTML.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes() {
        assert_eq!(
            html_escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(script_safe("\"</script>\""), "\"\\u003c/script>\"");
        assert_eq!(script_safe("plain"), "plain");
    }

    #[test]
    fn categories_join_every_list_column() {
        let r = Recipient {
            line: 2,
            key: "1".into(),
            email: "a@example.se".into(),
            name: "A".into(),
            fields: vec![
                (
                    "affected".into(),
                    FieldValue::List(vec!["namn".into(), "bank".into()]),
                ),
                ("name".into(), FieldValue::Text("A".into())),
                ("kanal".into(), FieldValue::List(vec!["sms".into()])),
            ],
        };
        let mut out = String::from("old");
        categories(&r, &mut out);
        assert_eq!(out, "namn, bank; sms");
    }
}
