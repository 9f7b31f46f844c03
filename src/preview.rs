//! `preview`: the dry run. Validates every row, renders every message, and writes the
//! messages as `.eml` files plus one self-contained `index.html` to read them in a browser.
//!
//! It goes through exactly the same preflight and message building as `send`; only the
//! transport is missing. The files hold personal data: 0600 in a 0700 folder.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::cli::PreviewArgs;
use crate::config::Config;
use crate::exit_codes::ExitCode;
use crate::mailing::Mailing;
use crate::output::Output;
use crate::recipients::{FieldValue, Recipient, file_stem};
use crate::render::Rendered;
use crate::{Fail, ResultExt, private};

const MARKER: &str = ".utskick-preview";

/// Runs `preview`.
pub fn run(config: Config, args: &PreviewArgs, out: &Output) -> Result<ExitCode, Fail> {
    let mailing = Mailing::open(config)?;
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| mailing.config.dir.join("preview"));
    prepare_dir(&dir).input()?;
    let limit = args.limit.unwrap_or(u64::MAX);
    let mut index = Index::create(&dir, &mailing).input()?;
    let mut written = 0u64;
    let date = std::time::SystemTime::now();
    let pre = mailing.preflight(limit, |recipient, rendered| {
        let Some(rendered) = rendered else {
            return Ok(());
        };
        let id = crate::message::message_id(&mailing.config.campaign, &recipient.key, &mailing.config.sender.domain);
        let built = crate::message::build(&mailing.config, recipient, rendered, &id, None, date)?;
        let name = format!("{}.eml", file_stem(&recipient.key, &recipient.name));
        private::write_file(&dir.join(&name), &built.bytes)?;
        index.add(recipient, rendered, &name)?;
        written += 1;
        Ok(())
    })?;
    let warnings: Vec<String> = pre.scan.warnings.iter().map(|w| w.to_string()).collect();
    let errors = pre.error_lines();
    index.finish(&warnings, &errors).input()?;
    for w in &warnings {
        out.warn(w);
    }
    for e in &errors {
        out.error_line(e);
    }
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
    if invalid > 0 && !args.skip_invalid {
        return Err(Fail::Input(anyhow::anyhow!(
            "{invalid} of {} rows cannot be sent: correct them, or leave them out with --skip-invalid",
            pre.scan.rows
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
            let ours = path.extension().is_some_and(|e| e == "eml")
                || path.file_name().is_some_and(|n| n == "index.html");
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

/// The streaming `index.html`: header, one JSON entry per message, footer.
struct Index {
    file: BufWriter<File>,
    path: PathBuf,
    first: bool,
}

impl Index {
    fn create(dir: &Path, mailing: &Mailing) -> Result<Index> {
        let path = dir.join("index.html");
        let file = private::create_file(&path)?;
        let mut index = Index {
            file: BufWriter::new(file),
            path,
            first: true,
        };
        let title = format!("utskick preview: {}", mailing.config.campaign);
        write!(
            index.file,
            "{}",
            INDEX_HEAD
                .replace("{{TITLE}}", &html_escape(&title))
                .replace(
                    "{{FROM}}",
                    &html_escape(&mailing.config.sender.from.to_string())
                )
        )?;
        Ok(index)
    }

    fn add(&mut self, r: &Recipient, rendered: &Rendered, file: &str) -> Result<()> {
        let affected: Vec<String> = r
            .fields
            .iter()
            .filter_map(|(_, v)| match v {
                FieldValue::List(items) => Some(items.join(", ")),
                FieldValue::Text(_) => None,
            })
            .collect();
        let entry = serde_json::json!({
            "key": r.key,
            "name": r.name,
            "email": r.email,
            "line": r.line,
            "subject": rendered.subject,
            "affected": affected.join("; "),
            "text": rendered.text,
            "html": rendered.html,
            "file": file,
        });
        if !self.first {
            self.file.write_all(b",\n")?;
        }
        self.first = false;
        self.file
            .write_all(script_safe(&entry.to_string()).as_bytes())?;
        Ok(())
    }

    fn finish(mut self, warnings: &[String], errors: &[String]) -> Result<()> {
        let notes = serde_json::json!({ "warnings": warnings, "errors": errors });
        write!(
            self.file,
            "{}",
            INDEX_TAIL.replace("{{NOTES}}", &script_safe(&notes.to_string()))
        )?;
        self.file
            .flush()
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// JSON inside `<script>`: `<` escaped so no `</script>` or `<!--` can end it.
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
}

/// Escapes text for HTML.
pub fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
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

const INDEX_HEAD: &str = r#"<!doctype html>
<html lang="sv"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; frame-src 'self' about:; img-src data:">
<title>{{TITLE}}</title>
<style>
body{font:15px/1.4 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#f6f6f4}
header{padding:.8em 1.2em;background:#23395d;color:#fff}
header h1{font-size:1.15em;margin:0}
#notes{padding:0 1.2em}
.warn{background:#fff4ce;border-left:4px solid #c08a00;padding:.4em .8em;margin:.5em 0}
.err{background:#fde7e9;border-left:4px solid #b00020;padding:.4em .8em;margin:.5em 0}
main{display:grid;grid-template-columns:minmax(280px,30%) 1fr;gap:1em;padding:1em 1.2em}
#list{background:#fff;border:1px solid #ddd;max-height:80vh;overflow:auto}
#search{width:100%;box-sizing:border-box;padding:.5em;font-size:1em;border:1px solid #999;margin-bottom:.5em}
table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:.35em .5em;border-bottom:1px solid #eee;vertical-align:top;font-size:.92em}
tr.sel{background:#dbe7ff}
tbody tr{cursor:pointer}
#view{display:grid;grid-template-columns:1fr 1fr;gap:1em}
#view h2{font-size:1em;margin:.2em 0}
iframe{width:100%;height:75vh;border:1px solid #ccc;background:#fff}
pre{white-space:pre-wrap;background:#fff;border:1px solid #ccc;padding:1em;height:75vh;overflow:auto;margin:0;font-size:.9em}
#meta{grid-column:1/3;background:#fff;border:1px solid #ddd;padding:.6em .8em}
</style></head><body>
<header><h1>{{TITLE}}</h1><div>Från: {{FROM}} · <span id="count"></span></div></header>
<div id="notes"></div>
<main><section aria-label="Mottagare"><label for="search">Sök mottagare (namn, e-post, nyckel)</label>
<input id="search" type="search" autocomplete="off" placeholder="Sök…">
<div id="list"><table><thead><tr><th>Nyckel</th><th>Namn</th><th>E-post</th><th>Berörda uppgifter</th></tr></thead><tbody id="rows"></tbody></table></div></section>
<section id="view" aria-live="polite"><div id="meta"></div><div><h2>HTML</h2><iframe id="html" sandbox title="HTML-versionen"></iframe></div><div><h2>Text</h2><pre id="text"></pre></div></section></main>
<script id="data" type="application/json">[
"#;

const INDEX_TAIL: &str = r#"
]</script>
<script id="notesdata" type="application/json">{{NOTES}}</script>
<script>
(function(){
var data=JSON.parse(document.getElementById('data').textContent);
var notes=JSON.parse(document.getElementById('notesdata').textContent);
var rows=document.getElementById('rows'),search=document.getElementById('search');
function el(tag,cls,text){var e=document.createElement(tag);if(cls)e.className=cls;if(text!==undefined)e.textContent=text;return e;}
var n=document.getElementById('notes');
notes.errors.forEach(function(t){n.appendChild(el('div','err',t));});
notes.warnings.forEach(function(t){n.appendChild(el('div','warn',t));});
document.getElementById('count').textContent=data.length+' meddelanden';
var trs=[];
data.forEach(function(m,i){var tr=el('tr');tr.dataset.i=i;
[m.key,m.name,m.email,m.affected].forEach(function(v){tr.appendChild(el('td','',v));});
tr.addEventListener('click',function(){show(i);});rows.appendChild(tr);trs.push(tr);});
function show(i){var m=data[i];trs.forEach(function(t){t.classList.remove('sel');});trs[i].classList.add('sel');
var meta=document.getElementById('meta');meta.textContent='';
meta.appendChild(el('div','', 'Till: '+(m.name?m.name+' <'+m.email+'>':m.email)));
meta.appendChild(el('div','', 'Ämne: '+m.subject));
meta.appendChild(el('div','', 'Fil: '+m.file+' · CSV-rad '+m.line));
document.getElementById('html').srcdoc=m.html||'<p>(ingen HTML-del)</p>';
document.getElementById('text').textContent=m.text;}
search.addEventListener('input',function(){var q=search.value.toLowerCase();var first=-1;
data.forEach(function(m,i){var hit=!q||(m.key+' '+m.name+' '+m.email).toLowerCase().indexOf(q)>=0;
trs[i].style.display=hit?'':'none';if(hit&&first<0)first=i;});if(first>=0)show(first);});
if(data.length)show(0);
})();
</script></body></html>
"#;

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
    }
}
