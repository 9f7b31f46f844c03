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
    let dir = args.out.clone().unwrap_or_else(|| {
        crate::config::resolve(&mailing.config.dir, std::path::Path::new("preview"))
    });
    prepare_dir(&dir).input()?;
    let limit = args.limit.unwrap_or(u64::MAX);
    crate::deliverability::signing::for_config(&mailing.config).input()?;
    let mut index = Index::create(&dir, &mailing).input()?;
    let mut written = 0u64;
    let date = std::time::SystemTime::now();
    let pre = mailing.preflight(limit, |recipient, rendered| {
        let Some(rendered) = rendered else {
            return Ok(());
        };
        let id = crate::message::message_id(
            &mailing.config.campaign,
            &recipient.key,
            &mailing.config.sender.domain,
        );
        let built = crate::message::build(&mailing.config, recipient, rendered, &id, None, date)?;
        let name = format!("{}.eml", file_stem(&recipient.key, &recipient.name));
        private::write_file(&dir.join(&name), &built.bytes)?;
        index.add(recipient, rendered, &name)?;
        written += 1;
        Ok(())
    })?;
    let mut warnings: Vec<String> = pre.scan.warnings.iter().map(|w| w.to_string()).collect();
    warnings.extend(crate::deliverability::links::preflight_warnings(
        &mailing.config,
    ));
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
body{font:15px/1.4 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#f4f5f7}
header{padding:.7em 1.2em;background:#23395d;color:#fff;display:flex;flex-wrap:wrap;align-items:baseline;gap:.3em 1.2em}
header h1{font-size:1.15em;margin:0}
header div{opacity:.85}
#notes{padding:0 1.2em}
#notes:empty{display:none}
.warn{background:#fff4ce;border-left:4px solid #c08a00;padding:.4em .8em;margin:.6em 0 0}
.err{background:#fde7e9;border-left:4px solid #b00020;padding:.4em .8em;margin:.6em 0 0}
main{padding:.8em 1.2em 1.2em}
#find{display:flex;align-items:center;gap:.8em;margin-bottom:.5em}
#find label{font-weight:600;white-space:nowrap}
#search{flex:1;max-width:32em;box-sizing:border-box;padding:.45em .6em;font-size:1em;border:1px solid #8a8f98;border-radius:4px}
#list{background:#fff;border:1px solid #d5d8dd;border-radius:4px;max-height:40vh;overflow:auto}
table{border-collapse:collapse;width:100%}
th{position:sticky;top:0;background:#eef0f3;font-weight:600}
td,th{text-align:left;padding:.28em .7em;border-bottom:1px solid #eceef1;font-size:.9em;white-space:nowrap}
td:last-child{white-space:normal;color:#4a4f57}
tbody tr{cursor:pointer}
tbody tr:hover{background:#f1f5fc}
tr.sel,tr.sel:hover{background:#dbe7ff}
#view{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:.8em 1em;margin-top:.8em}
#view h2{font-size:.8em;text-transform:uppercase;letter-spacing:.05em;color:#555b65;margin:0 0 .3em}
#meta{grid-column:1/3;background:#fff;border:1px solid #d5d8dd;border-radius:4px;padding:.5em .8em;display:grid;grid-template-columns:auto 1fr;gap:.1em .8em}
#meta div{overflow-wrap:anywhere}
#meta .k{color:#555b65}
#meta .none{grid-column:1/3}
iframe{display:block;width:100%;box-sizing:border-box;height:calc(100vh - 6em);min-height:24em;border:1px solid #d5d8dd;border-radius:4px;background:#fff}
pre{box-sizing:border-box;white-space:pre-wrap;background:#fff;border:1px solid #d5d8dd;border-radius:4px;padding:.8em 1em;height:calc(100vh - 6em);min-height:24em;overflow:auto;margin:0;font:13px/1.45 ui-monospace,"DejaVu Sans Mono",monospace}
@media (max-width:900px){#view{grid-template-columns:1fr}#meta{grid-column:1}}
</style></head><body>
<header><h1>{{TITLE}}</h1><div>Från: {{FROM}} · <span id="count"></span></div></header>
<div id="notes"></div>
<main><section aria-label="Mottagare"><div id="find"><label for="search">Sök mottagare</label>
<input id="search" type="search" autocomplete="off" placeholder="namn, e-post eller nyckel"></div>
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
data.forEach(function(m,i){var tr=el('tr');tr.dataset.i=i;tr.dataset.key=m.key;
[m.key,m.name,m.email,m.affected].forEach(function(v){tr.appendChild(el('td','',v));});
tr.addEventListener('click',function(){show(i);});rows.appendChild(tr);trs.push(tr);});
function show(i){var m=data[i];trs.forEach(function(t){t.classList.remove('sel');});trs[i].classList.add('sel');
var meta=document.getElementById('meta');meta.textContent='';
[['Till',m.name?m.name+' <'+m.email+'>':m.email],['Ämne',m.subject],['Fil',m.file+' · CSV-rad '+m.line]].forEach(function(p){
meta.appendChild(el('div','k',p[0]+':'));meta.appendChild(el('div','',p[1]));});
document.getElementById('html').srcdoc=m.html||'<p>(ingen HTML-del)</p>';
document.getElementById('text').textContent=m.text;}
function clear(){trs.forEach(function(t){t.classList.remove('sel');});
var meta=document.getElementById('meta');meta.textContent='';meta.appendChild(el('div','none','Ingen mottagare matchar sökningen.'));
document.getElementById('html').srcdoc='';document.getElementById('text').textContent='';}
search.addEventListener('input',function(){var q=search.value.trim().toLowerCase();var first=-1,hits=0;
data.forEach(function(m,i){var hit=!q||(m.key+' '+m.name+' '+m.email).toLowerCase().indexOf(q)>=0;
trs[i].style.display=hit?'':'none';if(hit){hits++;if(first<0)first=i;}});
document.getElementById('count').textContent=(q?hits+' av ':'')+data.length+' meddelanden';
if(first>=0)show(first);else clear();});
function fromHash(){var h=location.hash;if(h.indexOf('#q=')!==0)return false;
var q;try{q=decodeURIComponent(h.slice(3).replace(/\+/g,' '));}catch(e){return false;}
search.value=q;search.dispatchEvent(new Event('input'));return true;}
window.addEventListener('hashchange',fromHash);
if(!fromHash()&&data.length)show(0);
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
