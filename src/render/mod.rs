//! The notice's text: loading the Tera templates, the context every template sees, and
//! rendering one recipient's notice.
//!
//! Tera 2 reports an undefined variable with template, line and column, so rendering every
//! row in preflight proves the templates fit the CSV before a single message goes out.
//! `body.html` is autoescaped (Tera escapes names ending in `.html`); the text templates are
//! not, which is right for text. The SHA-256 of the templates goes into every journal run so
//! that half the customers never get one text and half another by accident.
//!
//! `languages` picks each row's templates, `columns` says which CSV columns reach Tera,
//! `dates` writes the incident's dates, `threads` gives each render thread its own copy.

mod columns;
mod dates;
mod languages;
mod threads;

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tera::Tera;

use crate::config::Config;
use crate::recipients::{Recipient, one_line};

use crate::text::hex;
use columns::{RecipientView, columns_named, columns_read, without_comments};
pub use dates::{days_from_civil, english_date, svensk_datum};
pub use languages::Tally;
use languages::{Choice, Language};
pub use threads::{MAX_RENDER_THREADS, render_threads};

/// The template file names, in the order they are hashed.
pub const SUBJECT: &str = "subject.txt";
/// The plain-text body.
pub const BODY_TEXT: &str = "body.txt";
/// The optional HTML body.
pub const BODY_HTML: &str = "body.html";

/// Compiles the templates into a fresh Tera with the globals (`incident`, `campaign`,
/// `sender`) serialized anew, so that no value is shared with another copy.
fn compile(
    sources: &[(String, String)],
    config: &Config,
) -> std::result::Result<Tera, Vec<String>> {
    let dir = &config.templates_dir;
    let mut tera = Tera::new();
    tera.autoescape_on([".html"]);
    dates::register(&mut tera);
    let mut problems = Vec::new();
    for (name, text) in sources {
        if let Err(e) = tera.add_raw_template(name, text) {
            problems.push(syntax_error_line(&e, dir, text));
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
    /// The language it is written in (`Content-Language`).
    pub language: &'static str,
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
    /// The languages, the default first (`languages`).
    languages: Vec<Language>,
    /// The column giving each row's language; None: every row gets the default.
    language_column: Option<String>,
    /// SHA-256 over the template files' names and bytes, every language's.
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
    /// Reads and compiles the templates in the config's folder: the default language's in
    /// the folder itself, and, where the config names a language column, every other
    /// language's in its subfolder. Every problem of every file is reported at once.
    pub fn load(config: &Config) -> Result<Templates> {
        let dir = &config.templates_dir;
        let default = config.templates.default_language.as_str();
        let language_column = config.recipients.language_column.clone();
        let others = match &language_column {
            Some(_) => languages::other_languages(dir, default)?,
            None => Vec::new(),
        };
        let mut hasher = Sha256::new();
        let mut problems = Vec::new();
        let mut sources: Vec<(String, String)> = Vec::new();
        let mut languages = Vec::new();
        let prefixes = std::iter::once((default, String::new())).chain(
            others
                .iter()
                .map(|code| (code.as_str(), format!("{code}/"))),
        );
        for (code, prefix) in prefixes {
            let mut has_html = false;
            for (file, required) in [(SUBJECT, true), (BODY_TEXT, true), (BODY_HTML, false)] {
                let name = format!("{prefix}{file}");
                let path = dir.join(&name);
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
                    Err(e) => {
                        problems.push(format!("{}: cannot read template: {e}", path.display()));
                        continue;
                    }
                };
                // The default language's files hash as they did before languages, so that
                // a journal of a mailing in one language still matches.
                hasher.update(name.as_bytes());
                hasher.update([0]);
                hasher.update((text.len() as u64).to_le_bytes());
                hasher.update(text.as_bytes());
                has_html |= file == BODY_HTML;
                sources.push((name, text));
            }
            languages.push(Language::new(code, &prefix, has_html));
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
            languages,
            language_column,
            sha256: hex(&hasher.finalize()),
            dir: dir.clone(),
        })
    }

    /// The languages there are templates for, the default first.
    pub fn languages(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.languages.iter().map(|l| l.code)
    }

    /// The language a row's notice is written in (the default where its own has no
    /// templates).
    pub fn language_of(&self, recipient: &Recipient) -> &'static str {
        self.language(recipient).code
    }

    /// The language a row gets, and what it asked for when that has no templates.
    fn choice<'r>(&self, recipient: &'r Recipient) -> Choice<'r> {
        match &self.language_column {
            Some(column) => languages::choose(&self.languages, languages::cell(recipient, column)),
            None => Choice::Known(0),
        }
    }

    fn language(&self, recipient: &Recipient) -> &Language {
        match self.choice(recipient) {
            Choice::Known(i) => &self.languages[i],
            Choice::Missing(_) => &self.languages[0],
        }
    }

    /// Books the row's language in `tally` (preflight's count, and its warning about rows
    /// whose language has no templates).
    pub fn note_language(&self, tally: &mut Tally, recipient: &Recipient) {
        let (code, missing) = match self.choice(recipient) {
            Choice::Known(i) => (self.languages[i].code, None),
            Choice::Missing(asked) => (self.languages[0].code, Some(asked)),
        };
        tally.note(recipient.line, code, missing);
    }

    /// The warnings of a finished tally: one per language without templates, naming the
    /// rows (`file` as the operator named the CSV), or one when the CSV lacks the language
    /// column altogether (every row then gets the default language).
    pub fn language_warnings(
        &self,
        tally: &Tally,
        file: &str,
        headers: &[String],
    ) -> Vec<crate::recipients::Diagnostic> {
        let Some(column) = &self.language_column else {
            return Vec::new();
        };
        let default = self.languages[0].code;
        if !headers
            .iter()
            .any(|h| h.trim().eq_ignore_ascii_case(column))
        {
            return vec![crate::recipients::Diagnostic {
                file: file.to_string(),
                sheet: None,
                line: 1,
                column: Some(column.clone()),
                message: format!(
                    "[recipients] language_column names {column:?}, but the file has no such column: every row gets the default language, {default}; add the column, or correct language_column"
                ),
                severity: crate::recipients::Severity::Warning,
            }];
        }
        tally.warnings(file, column, &self.dir, default)
    }

    /// Whether the notice in the default language has an HTML part.
    pub fn has_html(&self) -> bool {
        self.languages[0].body_html.is_some()
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
    pub fn any_thread(&self) -> Renderer<'_> {
        Renderer {
            templates: self,
            tera: self.copies.shared(),
        }
    }

    /// Renders the three templates for one recipient (see `Renderer::render`).
    pub fn render(&self, recipient: &Recipient) -> Result<Rendered> {
        self.any_thread().render(recipient)
    }

    /// Checks that one recipient's notice renders (see `Renderer::check`).
    pub fn check(&self, recipient: &Recipient) -> Result<String> {
        self.any_thread().check(recipient)
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
        let language = t.language(recipient);
        let mut ctx = tera::Context::new();
        ctx.insert("recipient", &t.view(recipient, all));
        let run = |name: &str| {
            self.tera
                .render(name, &ctx)
                .map_err(|e| anyhow::anyhow!(tera_error_line(&e, &t.dir)))
        };
        let subject = one_line(&run(&language.subject)?);
        if subject.is_empty() {
            bail!(
                "{}: the subject renders empty",
                t.dir.join(&language.subject).display()
            );
        }
        let text = run(&language.body_text)?;
        if text.trim().is_empty() {
            bail!(
                "{}: the body renders empty",
                t.dir.join(&language.body_text).display()
            );
        }
        let html = match &language.body_html {
            Some(name) => Some(run(name)?),
            None => None,
        };
        Ok(Rendered {
            subject,
            text,
            html,
            language: language.code,
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
        let language = t.language(recipient);
        let mut ctx = tera::Context::new();
        ctx.insert("recipient", &t.view(recipient, all));
        let subject = one_line(
            &self
                .tera
                .render(&language.subject, &ctx)
                .map_err(|e| anyhow::anyhow!(tera_error_line(&e, &t.dir)))?,
        );
        if subject.is_empty() {
            bail!(
                "{}: the subject renders empty",
                t.dir.join(&language.subject).display()
            );
        }
        let bodies = std::iter::once(&language.body_text).chain(&language.body_html);
        for name in bodies {
            let mut counter = Counter(false);
            self.tera
                .render_to(name, &ctx, &mut counter)
                .map_err(|e| anyhow::anyhow!(tera_error_line(&e, &t.dir)))?;
            if !counter.0 && *name == language.body_text {
                bail!("{}: the body renders empty", t.dir.join(name).display());
            }
        }
        Ok(subject)
    }
}

/// A template's syntax error as one line, naming what Tera's message leaves out: the tag
/// it does not know (`{% endfr %}`: "unknown tag endfr").
fn syntax_error_line(e: &tera::Error, dir: &Path, source: &str) -> String {
    let line = tera_error_line(e, dir);
    let tera::ErrorKind::SyntaxError(r) = e.kind() else {
        return line;
    };
    if r.message() != "Unknown tag" {
        return line;
    }
    let word: String = source
        .get(r.span().range.start..)
        .unwrap_or("")
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .take(40)
        .collect();
    if word.is_empty() {
        return line;
    }
    let known = "if, elif, else, endif, for, endfor, set, filter, block, macro, include, raw";
    match line.strip_suffix("Unknown tag") {
        Some(place) => format!(
            "{place}unknown tag {word:?} in {{% {word} %}}: the tags are {known} (check the spelling)"
        ),
        None => line,
    }
}

/// Tera's rendered reports (`error: MESSAGE` and ` --> NAME:LINE:COL` under it) as
/// `templates/NAME:LINE:COL: MESSAGE`, one per report; empty when the text holds none.
fn report_lines(text: &str, dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut message: Option<&str> = None;
    for line in text.lines() {
        if let Some(m) = line.trim_start().strip_prefix("error: ") {
            message = Some(m);
        } else if let (Some(m), Some(place)) = (message, line.trim_start().strip_prefix("--> ")) {
            out.push(format!(
                "{}: {}",
                dir.join(place.trim()).display(),
                one_line(m)
            ));
            message = None;
        }
    }
    out
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
            // Tera checks filters, tests and functions after parsing and reports each
            // unknown one as its own rendered report: one line each.
            let reports = report_lines(&e.to_string(), dir);
            if !reports.is_empty() {
                return reports.join("\n");
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipients::FieldValue;

    /// The shipped config and templates.
    fn shipped() -> Templates {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let config = Config::load(&root.join("config.toml")).expect("shipped config");
        Templates::load(&config).expect("shipped templates")
    }

    const CATEGORIES: [&str; 6] = ["namn", "adress", "personnummer", "bank", "epost", "telefon"];

    fn customer(affected: &[&str], language: &str, confirmed: &str) -> Recipient {
        Recipient {
            line: 2,
            key: "1042".into(),
            email: "kund@example.se".into(),
            name: "Åsa Öberg".into(),
            fields: vec![
                ("customer_id".into(), FieldValue::Text("1042".into())),
                ("name".into(), FieldValue::Text("Åsa Öberg".into())),
                (
                    "personnummer".into(),
                    FieldValue::Text("19800101-0000".into()),
                ),
                (
                    "kontonummer".into(),
                    FieldValue::Text("8327-9 123 456 789-0".into()),
                ),
                (
                    "affected".into(),
                    FieldValue::List(affected.iter().map(|s| s.to_string()).collect()),
                ),
                ("confirmed".into(), FieldValue::Text(confirmed.into())),
                ("language".into(), FieldValue::Text(language.into())),
            ],
        }
    }

    /// The advice, by a phrase each has in each language.
    const ADVICE: [(char, &str, &str); 6] = [
        (
            'A',
            "Håll koll på ditt bankkonto",
            "Keep an eye on your bank account",
        ),
        ('B', "Kontakta din bank", "Contact your bank"),
        ('D', "bedrägerispärr hos", "fraud alert (bedrägerispärr)"),
        (
            'C',
            "Var på din vakt mot mejl",
            "Be on your guard against emails",
        ),
        ('F', "Var uppmärksam på brev", "Watch out for letters"),
        ('E', "polisanmäl det", "report it to the Swedish Police"),
    ];

    /// The advice a customer with these data must get, in order: bank and invoices first
    /// only where bank details or the personnummer are concerned, otherwise the warning
    /// about fraudulent mails, texts and calls first; the fraud alert where the
    /// personnummer is concerned; the police last.
    fn expected_advice(affected: &[&str]) -> String {
        let (bank, pnr, address) = (
            affected.contains(&"bank"),
            affected.contains(&"personnummer"),
            affected.contains(&"adress"),
        );
        let mut order = String::new();
        if bank || pnr {
            order.push('A');
        }
        if bank {
            order.push('B');
        }
        if pnr {
            order.push('D');
        }
        order.push('C');
        if address && !bank && !pnr {
            order.push('F');
        }
        order.push('E');
        order
    }

    /// The advice in a text part: its numbered items, which must count 1, 2, 3, ….
    fn text_advice(text: &str, english: bool) -> String {
        let heading = if english {
            "What you can do"
        } else {
            "Det här kan du göra"
        };
        let section = text.split(heading).nth(1).expect("the advice section");
        let section = section.split("\n\n\n").next().expect("section end");
        let items: Vec<&str> = section
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
            .collect();
        for (i, item) in items.iter().enumerate() {
            assert!(
                item.starts_with(&format!("{}. ", i + 1)),
                "numbering: {section}"
            );
        }
        classify(&items, english)
    }

    /// The advice in the HTML part: the items of its ordered list.
    fn html_advice(html: &str, english: bool) -> String {
        let list = html.split("<ol").nth(1).expect("the advice list");
        let list = list.split("</ol>").next().expect("list end");
        let items: Vec<&str> = list.split("<li").skip(1).collect();
        classify(&items, english)
    }

    fn classify(items: &[&str], english: bool) -> String {
        items
            .iter()
            .map(|item| {
                let found: Vec<char> = ADVICE
                    .iter()
                    .filter(|(_, sv, en)| item.contains(if english { en } else { sv }))
                    .map(|(c, _, _)| *c)
                    .collect();
                assert_eq!(found.len(), 1, "one piece of advice per item: {item}");
                found[0]
            })
            .collect()
    }

    #[test]
    fn advice_is_ranked_for_the_customers_data_in_both_languages() {
        let templates = shipped();
        for mask in 0u32..(1 << CATEGORIES.len()) {
            let affected: Vec<&str> = CATEGORIES
                .iter()
                .enumerate()
                .filter(|(i, _)| mask & (1 << i) != 0)
                .map(|(_, c)| *c)
                .collect();
            for (language, english) in [("sv", false), ("en", true)] {
                let r = customer(
                    &affected,
                    language,
                    if mask % 2 == 0 { "ja" } else { "nej" },
                );
                let rendered = templates.render(&r).expect("renders");
                assert_eq!(rendered.language, language);
                let want = expected_advice(&affected);
                assert_eq!(
                    text_advice(&rendered.text, english),
                    want,
                    "{language} {affected:?} text"
                );
                let html = rendered.html.as_deref().expect("html");
                assert_eq!(
                    html_advice(html, english),
                    want,
                    "{language} {affected:?} html"
                );
                for body in [rendered.text.as_str(), html] {
                    assert!(
                        !body.contains("19800101"),
                        "the personnummer is never printed"
                    );
                    assert!(!body.contains("8327"), "no bank number is ever printed");
                }
                // Every category is named in the customer's language.
                for (code, sv, en) in [
                    (
                        "bank",
                        "bankuppgifter (kontonummer)",
                        "bank details (account number)",
                    ),
                    ("epost", "e-postadress", "email address"),
                    ("telefon", "telefonnummer", "phone number"),
                ] {
                    let named = rendered.text.contains(if english { en } else { sv });
                    assert_eq!(
                        named,
                        affected.contains(&code),
                        "{language} {affected:?} {code}"
                    );
                }
            }
        }
    }

    #[test]
    fn confirmed_or_possible_in_both_languages() {
        let templates = shipped();
        for (language, confirmed, possible) in [
            (
                "sv",
                "Utredningen visar att de här uppgifterna om dig har förts ut",
                "Vi vet inte säkert",
            ),
            (
                "en",
                "The investigation shows that the following information about you was taken",
                "We do not know for certain",
            ),
        ] {
            let yes = templates
                .render(&customer(&["namn"], language, "ja"))
                .expect("renders");
            let no = templates
                .render(&customer(&["namn"], language, "nej"))
                .expect("renders");
            let unknown = templates
                .render(&customer(&["namn"], language, ""))
                .expect("renders");
            assert!(
                yes.text.contains(confirmed) && !yes.text.contains(possible),
                "{language}"
            );
            assert!(
                no.text.contains(possible) && !no.text.contains(confirmed),
                "{language}"
            );
            assert!(unknown.text.contains(possible), "{language}");
        }
    }

    #[test]
    fn every_language_is_hashed_and_a_missing_one_gets_the_default() {
        let templates = shipped();
        assert_eq!(templates.languages().collect::<Vec<_>>(), ["sv", "en"]);
        let german = templates
            .render(&customer(&["namn"], "de", "ja"))
            .expect("renders");
        assert_eq!(german.language, "sv");
        assert!(german.subject.starts_with("Viktig information"));
        let mut tally = Tally::default();
        templates.note_language(&mut tally, &customer(&["namn"], "de", "ja"));
        templates.note_language(&mut tally, &customer(&["namn"], "EN", "ja"));
        assert_eq!(tally.counts().get("sv"), Some(&1));
        assert_eq!(tally.counts().get("en"), Some(&1));

        // The hash changes with the English templates too.
        let t = tempfile::tempdir().expect("tmp");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        std::fs::copy(root.join("config.toml"), t.path().join("config.toml")).expect("copy");
        for f in [SUBJECT, BODY_TEXT, BODY_HTML] {
            std::fs::create_dir_all(t.path().join("templates/en")).expect("dir");
            std::fs::copy(
                root.join("templates").join(f),
                t.path().join("templates").join(f),
            )
            .expect("copy");
            std::fs::copy(
                root.join("templates/en").join(f),
                t.path().join("templates/en").join(f),
            )
            .expect("copy");
        }
        let config = Config::load(&t.path().join("config.toml")).expect("config");
        let before = Templates::load(&config).expect("loads").sha256;
        assert_eq!(before, templates.sha256);
        let path = t.path().join("templates/en/body.txt");
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str("PS.\n");
        std::fs::write(&path, text).expect("write");
        assert_ne!(Templates::load(&config).expect("loads").sha256, before);
    }

    #[test]
    fn an_unknown_tag_is_named() {
        let t = tempfile::tempdir().expect("tmp");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        std::fs::copy(root.join("config.toml"), t.path().join("config.toml")).expect("copy");
        std::fs::create_dir(t.path().join("templates")).expect("dir");
        std::fs::write(t.path().join("templates/subject.txt"), "Hej").expect("write");
        std::fs::write(
            t.path().join("templates/body.txt"),
            "Hej\n{% for a in incident.atgarder %}{{ a }}\n{% endfr %}\n",
        )
        .expect("write");
        let mut config = Config::load(&t.path().join("config.toml")).expect("config");
        config.recipients.language_column = None;
        let err = Templates::load(&config).err().expect("a syntax error");
        let line = err.to_string();
        assert!(
            line.contains("templates/body.txt:3:4: unknown tag \"endfr\" in {% endfr %}"),
            "{line}"
        );
        assert!(
            line.contains("the tags are if, elif, else, endif, for, endfor"),
            "{line}"
        );
        assert!(!line.contains('\n'), "{line}");
    }
}
