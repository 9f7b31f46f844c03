//! The notice's text: loading the Tera templates, the context every template sees, and
//! rendering one recipient's notice.
//!
//! Tera 2 reports an undefined variable with template, line and column, so rendering every
//! row in preflight proves the templates fit the CSV before a single message goes out.
//! `body.html` is autoescaped (Tera escapes names ending in `.html`); the text templates are
//! not, which is right for text. The SHA-256 of the templates goes into every journal run so
//! that half the customers never get one text and half another by accident.
//!
//! `columns` says which CSV columns reach Tera, `dates` writes the incident's dates,
//! `threads` gives each render thread what it must not share.

mod columns;
mod dates;
mod threads;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tera::Tera;

use crate::config::Config;
use crate::recipients::{Recipient, one_line};

use columns::{RecipientView, columns_named, columns_read, without_comments};
pub use dates::{days_from_civil, svensk_datum};
pub use threads::{MAX_RENDER_THREADS, render_threads, seed_hash_maps_per_thread};
/// Lower-case hex (the one helper, in `text`), for the callers that took it from here.
pub use crate::text::hex;

/// The template file names, in the order they are hashed.
pub const SUBJECT: &str = "subject.txt";
/// The plain-text body.
pub const BODY_TEXT: &str = "body.txt";
/// The optional HTML body.
pub const BODY_HTML: &str = "body.html";

/// Compiles the templates into a fresh Tera with the globals (`incident`, `campaign`,
/// `sender`) serialized anew, so that no value is shared with another copy.
fn compile(sources: &[(&str, String)], config: &Config) -> std::result::Result<Tera, Vec<String>> {
    let dir = &config.templates_dir;
    let mut tera = Tera::new();
    tera.autoescape_on([".html"]);
    dates::register(&mut tera);
    let mut problems = Vec::new();
    for (name, text) in sources {
        if let Err(e) = tera.add_raw_template(name, text) {
            problems.push(tera_error_line(&e, dir));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let from = &config.sender.from;
    let sender = SenderView {
        from: from.to_string(),
        name: from.name.clone().unwrap_or_default(),
        email: from.email.to_string(),
        reply_to: config.sender.reply_to.email.to_string(),
    };
    let globals = tera.global_context();
    globals.insert("incident", &config.incident);
    globals.insert("campaign", &config.campaign);
    globals.insert("sender", &sender);
    Ok(tera)
}

/// A rendered notice for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The subject, on one line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body, where `body.html` exists.
    pub html: Option<String>,
}

/// The loaded templates.
pub struct Templates {
    /// One compiled copy for occasional use, then one per render worker (`threads`).
    copies: threads::Copies,
    /// The columns the templates read as `recipient.NAME`; None when they use `recipient`
    /// in any other way, and then every column goes in (`columns_read`).
    columns: Option<Vec<String>>,
    /// The columns named as `recipient.NAME` outside comments, to tell the operator about a
    /// name the CSV lacks.
    pub named_columns: Vec<String>,
    has_html: bool,
    /// SHA-256 over the template files' names and bytes.
    pub sha256: String,
    /// Where they were read from.
    pub dir: PathBuf,
}

#[derive(Serialize)]
struct SenderView {
    from: String,
    name: String,
    email: String,
    reply_to: String,
}

impl Templates {
    /// Reads and compiles the templates in the config's folder.
    pub fn load(config: &Config) -> Result<Templates> {
        let dir = &config.templates_dir;
        let mut hasher = Sha256::new();
        let mut problems = Vec::new();
        let mut sources = Vec::new();
        for (name, required) in [(SUBJECT, true), (BODY_TEXT, true), (BODY_HTML, false)] {
            let path = dir.join(name);
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
                Err(e) => {
                    problems.push(format!("{}: cannot read template: {e}", path.display()));
                    continue;
                }
            };
            hasher.update(name.as_bytes());
            hasher.update([0]);
            hasher.update((text.len() as u64).to_le_bytes());
            hasher.update(text.as_bytes());
            sources.push((name, text));
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
        let copies = threads::Copies::new(|| compile(&sources, config))
            .map_err(|problems| anyhow::anyhow!("{}", problems.join("\n")))?;
        let uncommented: Vec<String> = sources.iter().map(|(_, t)| without_comments(t)).collect();
        Ok(Templates {
            columns: columns_read(sources.iter().map(|(_, text)| text.as_str())),
            named_columns: columns_named(uncommented.iter().map(String::as_str)).0,
            copies,
            has_html: sources.iter().any(|(n, _)| *n == BODY_HTML),
            sha256: hex(&hasher.finalize()),
            dir: dir.clone(),
        })
    }

    /// Whether the notice has an HTML part.
    pub fn has_html(&self) -> bool {
        self.has_html
    }

    /// Render worker `worker`'s own copy of the templates (`threads`): the pipeline hands
    /// one to each of its threads.
    pub fn renderer(&self, worker: usize) -> Renderer<'_> {
        Renderer {
            templates: self,
            tera: self.copies.worker(worker),
        }
    }

    /// The copy for occasional renders from any thread.
    fn shared(&self) -> Renderer<'_> {
        Renderer {
            templates: self,
            tera: self.copies.shared(),
        }
    }

    /// Renders the three templates for one recipient (see `Renderer::render`).
    pub fn render(&self, recipient: &Recipient) -> Result<Rendered> {
        self.shared().render(recipient)
    }

    /// Checks that one recipient's notice renders (see `Renderer::check`).
    pub fn check(&self, recipient: &Recipient) -> Result<String> {
        self.shared().check(recipient)
    }

    /// What the templates see as `recipient`: the columns they name.
    fn view<'a>(&'a self, recipient: &'a Recipient, all: bool) -> RecipientView<'a> {
        RecipientView {
            recipient,
            columns: if all { None } else { self.columns.as_deref() },
        }
    }

    /// `attempt` with only the columns the templates name, and, should that fail, once more
    /// with every column: a row that fails is rare, and its error message (Tera lists the
    /// fields `recipient` has) then names every column of the CSV.
    fn with_columns<T>(&self, attempt: impl Fn(bool) -> Result<T>) -> Result<T> {
        match attempt(false) {
            Err(_) if self.columns.is_some() => attempt(true),
            done => done,
        }
    }
}

/// One compiled copy of the templates, ready to render: `Templates::renderer` gives each
/// render thread its own.
pub struct Renderer<'a> {
    templates: &'a Templates,
    tera: &'a Tera,
}

/// Notes whether a body has anything but white space, without keeping it.
struct Counter(bool);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if !self.0 {
            self.0 = buf.iter().any(|b| !b.is_ascii_whitespace());
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Renderer<'_> {
    /// Renders the three templates for one recipient. The error is one line naming the
    /// template file, line and column.
    pub fn render(&self, recipient: &Recipient) -> Result<Rendered> {
        self.templates
            .with_columns(|all| self.render_view(recipient, all))
    }

    fn render_view(&self, recipient: &Recipient, all: bool) -> Result<Rendered> {
        let t = self.templates;
        let mut ctx = tera::Context::new();
        ctx.insert("recipient", &t.view(recipient, all));
        let run = |name: &str| {
            self.tera
                .render(name, &ctx)
                .map_err(|e| anyhow::anyhow!(tera_error_line(&e, &t.dir)))
        };
        let subject = one_line(&run(SUBJECT)?);
        if subject.is_empty() {
            bail!(
                "{}: the subject renders empty",
                t.dir.join(SUBJECT).display()
            );
        }
        let text = run(BODY_TEXT)?;
        if text.trim().is_empty() {
            bail!(
                "{}: the body renders empty",
                t.dir.join(BODY_TEXT).display()
            );
        }
        let html = if t.has_html {
            Some(run(BODY_HTML)?)
        } else {
            None
        };
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }

    /// Renders the three templates for one recipient as `render` does, with the same
    /// errors, but keeps only the subject: the preflight of a large mailing needs to know
    /// that every message renders, not every message's text.
    pub fn check(&self, recipient: &Recipient) -> Result<String> {
        self.templates
            .with_columns(|all| self.check_view(recipient, all))
    }

    fn check_view(&self, recipient: &Recipient, all: bool) -> Result<String> {
        let t = self.templates;
        let mut ctx = tera::Context::new();
        ctx.insert("recipient", &t.view(recipient, all));
        let subject = one_line(
            &self
                .tera
                .render(SUBJECT, &ctx)
                .map_err(|e| anyhow::anyhow!(tera_error_line(&e, &t.dir)))?,
        );
        if subject.is_empty() {
            bail!(
                "{}: the subject renders empty",
                t.dir.join(SUBJECT).display()
            );
        }
        let mut names = vec![BODY_TEXT];
        if t.has_html {
            names.push(BODY_HTML);
        }
        for name in names {
            let mut counter = Counter(false);
            self.tera
                .render_to(name, &ctx, &mut counter)
                .map_err(|e| anyhow::anyhow!(tera_error_line(&e, &t.dir)))?;
            if !counter.0 && name == BODY_TEXT {
                bail!(
                    "{}: the body renders empty",
                    t.dir.join(BODY_TEXT).display()
                );
            }
        }
        Ok(subject)
    }
}

/// A Tera error as one line: `templates/body.txt:12:5: message`.
fn tera_error_line(e: &tera::Error, dir: &Path) -> String {
    match e.kind() {
        tera::ErrorKind::SyntaxError(r) | tera::ErrorKind::RenderingError(r) => {
            let span = r.span();
            format!(
                "{}:{}:{}: {}",
                dir.join(r.filename()).display(),
                span.start_line,
                span.start_col + 1,
                one_line(r.message())
            )
        }
        _ => {
            let mut msg = one_line(&e.to_string());
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                msg.push_str(": ");
                msg.push_str(&one_line(&s.to_string()));
                source = s.source();
            }
            format!("{}: {msg}", dir.display())
        }
    }
}
