//! config.toml: the raw serde shape and the checked `Config` every command works from.
//!
//! Loading turns the file into checked values once (paths resolved against the config's
//! folder, rates, security modes, addresses), so that the rest of the program never
//! re-validates. Serde parses each value (enums, numbers, rates, socket addresses) and keeps
//! its place in the file; the checks that serde cannot express follow, and every problem of
//! the file is reported in one run, each with its line. Every key outside `[incident]` is
//! known; an unknown key is an error that names it. No secret is ever read from this file:
//! see `secrets`.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use lettre::message::Mailbox;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// The most characters of the operator's input one error line echoes: a value that is a
/// 100,000-deep array must not become a line of 200 KB.
const MAX_ECHO: usize = 200;

// ---------------------------------------------------------------------------------------
// The raw file, as serde reads it

/// One value, parsed by serde on its own and kept with its place in the file: a bad value is
/// reported with its line and does not hide the file's other problems.
#[derive(Debug)]
struct Field<T> {
    span: Range<usize>,
    value: std::result::Result<T, String>,
}

impl<'de, T: DeserializeOwned> Deserialize<'de> for Field<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let spanned = toml::Spanned::<toml::Value>::deserialize(d)?;
        let span = spanned.span();
        let value = T::deserialize(spanned.into_inner()).map_err(|e| e.message().to_string());
        Ok(Field { span, value })
    }
}

/// An optional key.
type Opt<T> = Option<Field<T>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    campaign: Field<String>,
    sender: RawSender,
    smtp: RawSmtp,
    #[serde(default)]
    sending: RawSending,
    recipients: RawRecipients,
    #[serde(default)]
    templates: RawTemplates,
    #[serde(default)]
    journal: RawJournal,
    bounces: Option<RawBounces>,
    #[serde(default)]
    check: RawCheck,
    #[serde(default)]
    dkim: RawDkim,
    #[serde(default)]
    incident: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSender {
    from: Field<String>,
    reply_to: Opt<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    host: Field<String>,
    port: Opt<u16>,
    security: Opt<Security>,
    allow_insecure: Opt<bool>,
    auth: Opt<AuthMethod>,
    username: Opt<String>,
    password_env: Opt<String>,
    password_command: Opt<String>,
    token_command: Opt<String>,
    token_lifetime_secs: Opt<u64>,
    secret_command_timeout_secs: Opt<u64>,
    timeout_secs: Opt<u64>,
    ca_file: Opt<PathBuf>,
    helo_name: Opt<String>,
    profile: Opt<Profile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSending {
    rate: Opt<Rate>,
    burst: Opt<u32>,
    concurrency: Opt<u32>,
    daily_limit: Opt<u64>,
    when_limited: Opt<WhenLimited>,
    quota_retry_mins: Opt<u64>,
    max_attempts: Opt<u32>,
    retry_delay_secs: Opt<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipients {
    path: Field<PathBuf>,
    sheet: Opt<String>,
    email_column: Opt<String>,
    key_column: Opt<String>,
    name_column: Opt<String>,
    language_column: Opt<String>,
    encoding: Opt<CsvEncoding>,
    delimiter: Opt<Delimiter>,
    list_columns: Opt<BTreeMap<String, String>>,
    values: Opt<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplates {
    dir: Opt<PathBuf>,
    default_language: Opt<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJournal {
    path: Opt<PathBuf>,
    archive: Opt<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBounces {
    host: Field<String>,
    port: Opt<u16>,
    security: Opt<Security>,
    username: Field<String>,
    password_env: Opt<String>,
    password_command: Opt<String>,
    folder: Opt<String>,
    ca_file: Opt<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCheck {
    dns_server: Opt<SocketAddr>,
    link_domains: Opt<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDkim {
    domain: Opt<String>,
    selector: Opt<String>,
    key_file: Opt<PathBuf>,
}

// ---------------------------------------------------------------------------------------
// The checked values

/// Transport security towards a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Security {
    /// Plain connection upgraded with STARTTLS (required).
    #[serde(rename = "starttls")]
    StartTls,
    /// Implicit TLS from the first byte.
    #[serde(rename = "tls")]
    Tls,
    /// No encryption (loopback only unless allowed).
    #[serde(rename = "none")]
    None,
}

/// How to log in to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMethod {
    /// No login.
    None,
    /// AUTH PLAIN.
    #[default]
    Plain,
    /// AUTH LOGIN.
    Login,
    /// AUTH XOAUTH2 with a token from `token_command`.
    Xoauth2,
}

/// The kind of relay, for its usual limits (`[smtp] profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// Microsoft 365 / Exchange Online (smtp.office365.com).
    Microsoft365,
    /// Google Workspace or Gmail, a user's mailbox (smtp.gmail.com).
    Google,
    /// Google Workspace's SMTP relay service (smtp-relay.gmail.com).
    GoogleRelay,
    /// Amazon SES (email-smtp.REGION.amazonaws.com).
    Ses,
    /// Azure Communication Services (smtp.azurecomm.net).
    Acs,
    /// A relay with no known limits (a company Postfix).
    None,
}

impl Profile {
    /// The profile a relay host name suggests.
    pub fn guess(host: &str) -> Profile {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host == "smtp.office365.com" || host.ends_with(".mail.protection.outlook.com") {
            Profile::Microsoft365
        } else if host == "smtp-relay.gmail.com" {
            Profile::GoogleRelay
        } else if host == "smtp.gmail.com" || host == "smtp.googlemail.com" {
            Profile::Google
        } else if host.starts_with("email-smtp.") && host.ends_with(".amazonaws.com") {
            Profile::Ses
        } else if host == "smtp.azurecomm.net" {
            Profile::Acs
        } else {
            Profile::None
        }
    }

    /// The rate and the daily limit this kind of relay allows one sender by default, filled
    /// in where the config sets none (README's "Relay profiles" says where they come from).
    pub fn limits(self) -> (Option<Rate>, Option<u64>) {
        let per_min = |count| Rate {
            count,
            per: Duration::from_secs(60),
        };
        match self {
            Profile::Microsoft365 => (Some(per_min(30)), Some(10_000)),
            Profile::Google => (None, Some(2_000)),
            Profile::GoogleRelay => (None, Some(10_000)),
            Profile::Ses => (
                Some(Rate {
                    count: 1,
                    per: Duration::from_secs(1),
                }),
                None,
            ),
            Profile::Acs => (
                Some(Rate {
                    count: 100,
                    per: Duration::from_secs(3600),
                }),
                None,
            ),
            Profile::None => (None, None),
        }
    }

    /// The name used in config.toml.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Microsoft365 => "microsoft365",
            Profile::Google => "google",
            Profile::GoogleRelay => "google-relay",
            Profile::Ses => "ses",
            Profile::Acs => "acs",
            Profile::None => "none",
        }
    }
}

/// Where a secret comes from (never config.toml itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A command's standard output.
    Command(String),
    /// A prompt on the terminal.
    Prompt,
}

/// The checked `[smtp]` section.
#[derive(Debug, Clone)]
pub struct Smtp {
    /// The relay's host.
    pub host: String,
    /// The relay's port.
    pub port: u16,
    /// Transport security.
    pub security: Security,
    /// Login mechanism.
    pub auth: AuthMethod,
    /// Login user.
    pub username: Option<String>,
    /// Where the password or token comes from.
    pub secret: Option<SecretSource>,
    /// Timeout for every step.
    pub timeout: Duration,
    /// An extra trusted root certificate.
    pub ca_file: Option<PathBuf>,
    /// EHLO name.
    pub helo_name: Option<String>,
    /// The kind of relay (set, or guessed from the host).
    pub profile: Profile,
    /// How long a token from `token_command` is used when it does not say (`expires_in`).
    pub token_lifetime: Duration,
    /// How long `password_command` or `token_command` may run.
    pub secret_command_timeout: Duration,
}

impl Smtp {
    /// `host:port`, as the journal records the relay.
    pub fn relay(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A checked rate: `count` messages per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Rate {
    /// Messages per period.
    pub count: u32,
    /// The period.
    pub per: Duration,
}

impl TryFrom<String> for Rate {
    type Error = anyhow::Error;
    fn try_from(text: String) -> Result<Rate> {
        Rate::parse(&text)
    }
}

impl Rate {
    /// Parses `N/s`, `N/min` or `N/h`.
    pub fn parse(text: &str) -> Result<Rate> {
        let Some((n, unit)) = text.split_once('/') else {
            bail!("{text:?} must look like 30/min, 5/s or 1000/h");
        };
        let Ok(count) = n.trim().parse::<u32>() else {
            bail!("{text:?}: {n:?} is not a whole number");
        };
        if count == 0 {
            bail!("{text:?} would never send anything: use at least 1");
        }
        let per = match unit.trim() {
            "s" | "sec" => Duration::from_secs(1),
            "min" | "m" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => bail!("{text:?}: unit {other:?} must be s, min or h"),
        };
        Ok(Rate { count, per })
    }

    /// Messages per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }
}

impl std::fmt::Display for Rate {
    /// In the unit it was configured in: `30/min`, not `0.5/s`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            _ => return write!(f, "{}/{}s", self.count, self.per.as_secs()),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// What a run does when `daily_limit` is reached or the relay reports a daily quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenLimited {
    /// Pause until the window reopens, then go on.
    #[default]
    Wait,
    /// Stop cleanly (exit 3); the next `send` resumes.
    Stop,
}

/// The checked `[sending]` section.
#[derive(Debug, Clone)]
pub struct Sending {
    /// Shared rate limit (set, else the profile's, else 30/min).
    pub rate: Rate,
    /// Burst size.
    pub burst: u32,
    /// Parallel connections.
    pub concurrency: usize,
    /// Deliveries allowed in 24 hours (set, else the profile's).
    pub daily_limit: Option<u64>,
    /// Wait or stop at a daily limit or quota.
    pub when_limited: WhenLimited,
    /// How often to try again after a relay's daily-quota reply, when waiting.
    pub quota_retry: Duration,
    /// Attempts per recipient and run.
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub retry_delay: Duration,
}

/// How the CSV is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum CsvEncoding {
    /// Strict UTF-8 if it decodes, else Windows-1252.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// UTF-8 (BOM allowed).
    #[serde(rename = "utf-8", alias = "utf8", alias = "UTF-8")]
    Utf8,
    /// Windows-1252.
    #[serde(rename = "windows-1252", alias = "cp1252", alias = "Windows-1252")]
    Windows1252,
}

/// The CSV delimiter as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
enum Delimiter {
    #[default]
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = ",")]
    Comma,
    #[serde(rename = ";")]
    Semicolon,
    #[serde(rename = "\t", alias = "\\t", alias = "tab")]
    Tab,
}

impl Delimiter {
    fn byte(self) -> Option<u8> {
        match self {
            Delimiter::Auto => None,
            Delimiter::Comma => Some(b','),
            Delimiter::Semicolon => Some(b';'),
            Delimiter::Tab => Some(b'\t'),
        }
    }
}

/// The checked `[recipients]` section.
#[derive(Debug, Clone)]
pub struct Recipients {
    /// The CSV (or .xlsx/.ods workbook), resolved.
    pub path: PathBuf,
    /// The workbook's sheet to read (default: the first).
    pub sheet: Option<String>,
    /// The address column.
    pub email_column: String,
    /// The key column, if any.
    pub key_column: Option<String>,
    /// The display-name column.
    pub name_column: String,
    /// The column giving each row's language, if any.
    pub language_column: Option<String>,
    /// The encoding.
    pub encoding: CsvEncoding,
    /// The delimiter, or None to detect it.
    pub delimiter: Option<u8>,
    /// List columns and their separators.
    pub list_columns: Vec<(String, String)>,
    /// Allowed values per column (`[recipients.values]`).
    pub values: BTreeMap<String, Vec<String>>,
}

/// The checked `[templates]` section.
#[derive(Debug, Clone)]
pub struct Templates {
    /// The folder, resolved: the default language's templates, one folder per other language.
    pub dir: PathBuf,
    /// The language of the templates in `dir` itself.
    pub default_language: String,
}

/// The checked `[journal]` section.
#[derive(Debug, Clone)]
pub struct Journal {
    /// The journal file, resolved.
    pub path: PathBuf,
    /// The archive folder, resolved.
    pub archive: Option<PathBuf>,
}

/// The checked `[bounces]` section.
#[derive(Debug, Clone)]
pub struct Bounces {
    /// IMAP host.
    pub host: String,
    /// IMAP port.
    pub port: u16,
    /// Transport security.
    pub security: Security,
    /// IMAP user.
    pub username: String,
    /// Where the password comes from.
    pub secret: SecretSource,
    /// The folder to read.
    pub folder: String,
    /// An extra trusted root certificate.
    pub ca_file: Option<PathBuf>,
}

/// The checked `[check]` section.
#[derive(Debug, Clone, Default)]
pub struct Check {
    /// The DNS server for deliverability look-ups (default: the system's resolver).
    pub dns_server: Option<SocketAddr>,
    /// Domains the templates may link to besides the From domain and the authorities'
    /// sites (empty: only those).
    pub link_domains: Vec<String>,
}

/// The checked `[dkim]` section.
#[derive(Debug, Clone, Default)]
pub struct Dkim {
    /// The signing domain (`d=`; default: the From domain).
    pub domain: Option<String>,
    /// The selector (`s=`), to sign with or to look up in `check`.
    pub selector: Option<String>,
    /// The private key (PEM, RSA or Ed25519, mode 0600), resolved: messages are signed
    /// where it is set.
    pub key_file: Option<PathBuf>,
}

/// The sender, checked.
#[derive(Debug, Clone)]
pub struct Sender {
    /// The From mailbox.
    pub from: Mailbox,
    /// The Reply-To mailbox.
    pub reply_to: Mailbox,
    /// The From address's domain, for Message-IDs.
    pub domain: String,
}

/// The whole checked config.
#[derive(Debug, Clone)]
pub struct Config {
    /// The config file.
    pub path: PathBuf,
    /// Its folder: every relative path inside it is resolved against this.
    pub dir: PathBuf,
    /// The campaign name.
    pub campaign: String,
    /// The sender.
    pub sender: Sender,
    /// The relay.
    pub smtp: Smtp,
    /// Rate and retries.
    pub sending: Sending,
    /// The CSV.
    pub recipients: Recipients,
    /// The templates folder, resolved (the same as `templates.dir`).
    pub templates_dir: PathBuf,
    /// The templates.
    pub templates: Templates,
    /// The journal.
    pub journal: Journal,
    /// The bounce mailbox.
    pub bounces: Option<Bounces>,
    /// Deliverability checks.
    pub check: Check,
    /// DKIM signing and look-up.
    pub dkim: Dkim,
    /// The `[incident]` table, as JSON for the templates.
    pub incident: serde_json::Value,
}

// ---------------------------------------------------------------------------------------
// Loading and checking

/// The problems found in one file, each with its line where it has one.
struct Problems<'a> {
    text: &'a str,
    shown: String,
    lines: Vec<String>,
}

impl Problems<'_> {
    /// A problem at a place in the file (`None`: the file as a whole).
    fn at(&mut self, span: Option<&Range<usize>>, msg: impl Display) {
        let msg = bounded(&msg.to_string());
        match span {
            Some(s) => {
                let line = 1 + self.text[..s.start.min(self.text.len())]
                    .matches('\n')
                    .count();
                self.lines.push(format!("{}:{line}: {msg}", self.shown));
            }
            None => self.lines.push(format!("{}: {msg}", self.shown)),
        }
    }

    /// A required key's value; a bad one is reported (None).
    fn req<T>(&mut self, what: &str, f: Field<T>) -> Option<(T, Range<usize>)> {
        match f.value {
            Ok(v) => Some((v, f.span)),
            Err(e) => {
                self.at(Some(&f.span), format!("{what}: {e}"));
                None
            }
        }
    }

    /// An optional key's value: `Some(None)` when it is missing, `None` when it is bad
    /// (reported).
    fn opt<T>(&mut self, what: &str, f: Opt<T>) -> Option<Option<(T, Range<usize>)>> {
        match f {
            None => Some(None),
            Some(f) => self.req(what, f).map(Some),
        }
    }

    /// An optional key's value or `default`; a bad value is reported and gives `default`
    /// too (the run stops on the reported problem anyway).
    fn or<T>(&mut self, what: &str, f: Opt<T>, default: T) -> T {
        self.opt(what, f).flatten().map_or(default, |(v, _)| v)
    }
}

/// Input echoed in an error, on one line (control characters escaped, as serde's messages
/// may quote a value holding a line break) and cut to `MAX_ECHO` characters.
fn bounded(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_ECHO + 8));
    for (n, c) in text.chars().enumerate() {
        if n == MAX_ECHO {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

impl Config {
    /// Reads and checks the config file; every problem found is reported in one error.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "config {} not found: run `utskick init DIR` to start a mailing, or name the config with --config PATH",
                    path.display()
                )
            } else {
                anyhow::anyhow!("cannot read config {}: {e}", path.display())
            }
        })?;
        Config::parse(&text, path)
    }

    /// Checks config text as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let mut p = Problems {
            text,
            shown: path.display().to_string(),
            lines: Vec::new(),
        };
        let raw: RawConfig = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                syntax_problem(&mut p, &e);
                bail!("{}", p.lines.join("\n"));
            }
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let checked = check_all(raw, &dir, &mut p);
        match checked {
            Some(mut config) if p.lines.is_empty() => {
                config.path = path.to_path_buf();
                config.dir = dir;
                Ok(config)
            }
            _ => bail!("{}", p.lines.join("\n")),
        }
    }
}

/// A TOML syntax error, a wrong type, an unknown key or a missing one.
fn syntax_problem(p: &mut Problems, e: &toml::de::Error) {
    let msg = e.message().trim_end();
    // A key missing from the top level: the span is the whole file, whose first line says
    // nothing useful.
    if let Some(name) = msg
        .strip_prefix("missing field `")
        .and_then(|m| m.strip_suffix('`'))
        && e.span().is_none_or(|s| s.start == 0)
    {
        if SECTIONS.contains(&name) {
            p.at(None, format!("missing section [{name}]"));
        } else {
            p.at(None, format!("missing key `{name}` at the top of the file"));
        }
        return;
    }
    match e.span() {
        Some(s) => {
            let text = p.text;
            let start = s.start.min(text.len());
            let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
            let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
            let snippet = bounded(text[line_start..line_end].trim());
            p.at(Some(&s), format!("{} (in: {snippet})", bounded(msg)));
        }
        None => p.at(None, msg),
    }
}

/// The sections of the file, for "missing section" errors.
const SECTIONS: [&str; 9] = [
    "sender",
    "smtp",
    "sending",
    "recipients",
    "templates",
    "journal",
    "bounces",
    "check",
    "dkim",
];

/// Every section checked; None where any value was bad (each reported).
fn check_all(raw: RawConfig, dir: &Path, p: &mut Problems) -> Option<Config> {
    let campaign = p.req("campaign", raw.campaign).and_then(|(c, span)| {
        let c = c.trim().to_string();
        match check_campaign(&c) {
            Ok(()) => Some(c),
            Err(e) => {
                p.at(Some(&span), e);
                None
            }
        }
    });
    let sender = check_sender(raw.sender, p);
    let smtp = check_smtp(raw.smtp, dir, p);
    let profile = smtp.as_ref().map_or(Profile::None, |s| s.profile);
    let sending = check_sending(raw.sending, profile, p);
    let recipients = check_recipients(raw.recipients, dir, p);
    let templates = check_templates(raw.templates, dir, p);
    let journal = Journal {
        path: resolve(
            dir,
            &p.or(
                "[journal] path",
                raw.journal.path,
                "delivery-log.jsonl".into(),
            ),
        ),
        archive: p
            .opt("[journal] archive", raw.journal.archive)
            .flatten()
            .map(|(a, _)| resolve(dir, &a)),
    };
    let bounces = raw.bounces.map(|b| check_bounces(b, dir, p));
    let check = Check {
        dns_server: p
            .opt("[check] dns_server", raw.check.dns_server)
            .flatten()
            .map(|(a, _)| a),
        link_domains: p
            .or("[check] link_domains", raw.check.link_domains, Vec::new())
            .into_iter()
            .map(|d| d.trim().trim_end_matches('.').to_ascii_lowercase())
            .collect(),
    };
    let dkim = check_dkim(raw.dkim, dir, p);
    let incident = toml_to_json(toml::Value::Table(raw.incident));
    Some(Config {
        path: PathBuf::new(),
        dir: PathBuf::new(),
        campaign: campaign?,
        sender: sender?,
        smtp: smtp?,
        sending: sending?,
        recipients: recipients?,
        templates_dir: templates.as_ref()?.dir.clone(),
        templates: templates?,
        journal,
        bounces: bounces.map_or(Some(None), |b| b.map(Some))?,
        check,
        dkim: dkim?,
        incident,
    })
}

fn check_sender(raw: RawSender, p: &mut Problems) -> Option<Sender> {
    let from = p
        .req("[sender] from", raw.from)
        .and_then(|(f, span)| match parse_mailbox(&f) {
            Ok(m) => Some(m),
            Err(e) => {
                p.at(Some(&span), format!("[sender] from: {e:#}"));
                None
            }
        });
    let reply_to = match p.opt("[sender] reply_to", raw.reply_to)? {
        Some((r, span)) => match parse_mailbox(&r) {
            Ok(m) => Some(m),
            Err(e) => {
                p.at(Some(&span), format!("[sender] reply_to: {e:#}"));
                return None;
            }
        },
        None => None,
    };
    let from = from?;
    let reply_to = reply_to.unwrap_or_else(|| Mailbox::new(None, from.email.clone()));
    let domain = from.email.domain().to_ascii_lowercase();
    Some(Sender {
        from,
        reply_to,
        domain,
    })
}

/// A host name, an IP address or an address literal (`[::1]`): nothing that could end a
/// command line (the name goes into EHLO and TLS) or hide in an error message.
fn check_host_name(host: &str, what: &str) -> Result<()> {
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'));
    if !ok {
        bail!("{what} {host:?} is not a host name or an IP address");
    }
    Ok(())
}

/// Where a password comes from: the environment or a command, else a prompt.
fn secret_source(
    p: &mut Problems,
    section: &str,
    env: Opt<String>,
    command: Opt<String>,
) -> Option<SecretSource> {
    let env = p.opt(&format!("{section} password_env"), env)?;
    let command = p.opt(&format!("{section} password_command"), command)?;
    match (env, command) {
        (Some(_), Some((_, span))) => {
            p.at(
                Some(&span),
                format!("{section}: set password_env or password_command, not both"),
            );
            None
        }
        (Some((e, _)), None) => Some(SecretSource::Env(e)),
        (None, Some((c, _))) => Some(SecretSource::Command(c)),
        (None, None) => Some(SecretSource::Prompt),
    }
}

/// Seconds from the file, at least 1.
fn seconds(p: &mut Problems, what: &str, f: Opt<u64>, default: u64) -> Option<Duration> {
    match p.opt(what, f)? {
        Some((0, span)) => {
            p.at(Some(&span), format!("{what} must be at least 1"));
            None
        }
        Some((n, _)) => Some(Duration::from_secs(n)),
        None => Some(Duration::from_secs(default)),
    }
}

fn check_smtp(raw: RawSmtp, dir: &Path, p: &mut Problems) -> Option<Smtp> {
    let host = p.req("[smtp] host", raw.host).and_then(|(h, span)| {
        let h = h.trim().to_string();
        let checked = if h.is_empty() {
            Err(anyhow::anyhow!("[smtp] host must not be empty"))
        } else {
            check_host_name(&h, "[smtp] host")
        };
        match checked {
            Ok(()) => Some((h, span)),
            Err(e) => {
                p.at(Some(&span), e);
                None
            }
        }
    });
    let helo_name = match p.opt("[smtp] helo_name", raw.helo_name) {
        Some(Some((h, span))) => match check_host_name(&h, "[smtp] helo_name") {
            Ok(()) => Some(Some(h)),
            Err(e) => {
                p.at(Some(&span), e);
                None
            }
        },
        Some(None) => Some(None),
        None => None,
    };
    let security = p.opt("[smtp] security", raw.security);
    let allow_insecure = p.or("[smtp] allow_insecure", raw.allow_insecure, false);
    let auth = p.opt("[smtp] auth", raw.auth);
    let username = p.opt("[smtp] username", raw.username);
    let port = p.opt("[smtp] port", raw.port);
    let timeout = seconds(p, "[smtp] timeout_secs", raw.timeout_secs, 30);
    let token_lifetime = seconds(
        p,
        "[smtp] token_lifetime_secs",
        raw.token_lifetime_secs,
        3000,
    );
    let secret_command_timeout = seconds(
        p,
        "[smtp] secret_command_timeout_secs",
        raw.secret_command_timeout_secs,
        30,
    );
    let ca_file = p.opt("[smtp] ca_file", raw.ca_file);
    let profile = p.opt("[smtp] profile", raw.profile);
    let token_command = p.opt("[smtp] token_command", raw.token_command);
    let (host, host_span) = host?;
    let (security, security_span) = match security? {
        Some((s, span)) => (s, span),
        None => (Security::StartTls, host_span.clone()),
    };
    let (auth, auth_span) = match auth? {
        Some((a, span)) => (a, Some(span)),
        None => (AuthMethod::default(), None),
    };
    if security == Security::None && !allow_insecure && !is_loopback(&host) {
        p.at(
            Some(&security_span),
            format!(
                "[smtp] security = \"none\" would send personal data unencrypted to {host}: use starttls or tls, or set allow_insecure = true if the network is trusted"
            ),
        );
    }
    let secret = match auth {
        AuthMethod::None => None,
        AuthMethod::Xoauth2 => match token_command? {
            Some((c, _)) => Some(SecretSource::Command(c)),
            None => {
                p.at(
                    auth_span.as_ref(),
                    "[smtp] auth = \"xoauth2\" needs token_command (a command printing an access token)",
                );
                None
            }
        },
        AuthMethod::Plain | AuthMethod::Login => Some(secret_source(
            p,
            "[smtp]",
            raw.password_env,
            raw.password_command,
        )?),
    };
    let username = username?.map(|(u, _)| u).filter(|u| !u.is_empty());
    if auth != AuthMethod::None && username.is_none() {
        p.at(
            auth_span.as_ref().or(Some(&host_span)),
            format!(
                "[smtp] auth = {:?} needs username",
                format!("{auth:?}").to_ascii_lowercase()
            ),
        );
    }
    let port = match port? {
        Some((0, span)) => {
            p.at(Some(&span), "[smtp] port must not be 0");
            0
        }
        Some((n, _)) => n,
        None => match security {
            Security::StartTls => 587,
            Security::Tls => 465,
            Security::None => 25,
        },
    };
    let profile = profile?.map_or_else(|| Profile::guess(&host), |(pr, _)| pr);
    Some(Smtp {
        host,
        port,
        security,
        auth,
        username,
        secret,
        timeout: timeout?,
        ca_file: ca_file?.map(|(c, _)| resolve(dir, &c)),
        helo_name: helo_name?,
        profile,
        token_lifetime: token_lifetime?,
        secret_command_timeout: secret_command_timeout?,
    })
}

/// A whole number from the file, at least 1.
fn at_least_one<T: PartialEq + From<u8>>(
    p: &mut Problems,
    what: &str,
    f: Opt<T>,
    hint: &str,
) -> Option<Option<T>> {
    match p.opt(what, f)? {
        Some((n, span)) if n == T::from(0) => {
            p.at(Some(&span), format!("{what} must be at least 1{hint}"));
            None
        }
        Some((n, _)) => Some(Some(n)),
        None => Some(None),
    }
}

fn check_sending(raw: RawSending, profile: Profile, p: &mut Problems) -> Option<Sending> {
    let (profile_rate, profile_daily) = profile.limits();
    let rate = p.opt("[sending] rate", raw.rate);
    let burst = at_least_one(p, "[sending] burst", raw.burst, "");
    let concurrency = match p.opt("[sending] concurrency", raw.concurrency) {
        Some(Some((n, span))) if n == 0 || n > 64 => {
            p.at(
                Some(&span),
                "[sending] concurrency must be between 1 and 64",
            );
            None
        }
        Some(c) => Some(c.map_or(4, |(n, _)| n as usize)),
        None => None,
    };
    let max_attempts = at_least_one(p, "[sending] max_attempts", raw.max_attempts, "");
    let daily_limit = at_least_one(
        p,
        "[sending] daily_limit",
        raw.daily_limit,
        " (leave it out for no limit)",
    );
    let when_limited = p.or(
        "[sending] when_limited",
        raw.when_limited,
        WhenLimited::default(),
    );
    let quota_retry_mins = at_least_one(p, "[sending] quota_retry_mins", raw.quota_retry_mins, "");
    let retry_delay = p.or("[sending] retry_delay_secs", raw.retry_delay_secs, 5);
    let rate = rate?.map(|(r, _)| r).or(profile_rate).unwrap_or(Rate {
        count: 30,
        per: Duration::from_secs(60),
    });
    Some(Sending {
        rate,
        burst: burst?.unwrap_or(1),
        concurrency: concurrency?,
        daily_limit: daily_limit?.or(profile_daily),
        when_limited,
        quota_retry: Duration::from_secs(60 * quota_retry_mins?.unwrap_or(30)),
        max_attempts: max_attempts?.unwrap_or(3),
        retry_delay: Duration::from_secs(retry_delay),
    })
}

/// A column name from the file, trimmed; empty counts as not set.
fn column(p: &mut Problems, what: &str, f: Opt<String>) -> Option<Option<String>> {
    Some(
        p.opt(what, f)?
            .map(|(c, _)| c.trim().to_string())
            .filter(|c| !c.is_empty()),
    )
}

fn check_recipients(raw: RawRecipients, dir: &Path, p: &mut Problems) -> Option<Recipients> {
    let path = p.req("[recipients] path", raw.path);
    let sheet = p.opt("[recipients] sheet", raw.sheet);
    let email_column = match p.opt("[recipients] email_column", raw.email_column) {
        Some(Some((c, span))) if c.trim().is_empty() => {
            p.at(Some(&span), "[recipients] email_column must not be empty");
            None
        }
        Some(c) => Some(c.map_or_else(|| "email".to_string(), |(c, _)| c.trim().to_string())),
        None => None,
    };
    let key_column = column(p, "[recipients] key_column", raw.key_column);
    let name_column = column(p, "[recipients] name_column", raw.name_column);
    let language_column = column(p, "[recipients] language_column", raw.language_column);
    let encoding = p.or(
        "[recipients] encoding",
        raw.encoding,
        CsvEncoding::default(),
    );
    let delimiter = p.or(
        "[recipients] delimiter",
        raw.delimiter,
        Delimiter::default(),
    );
    let list_columns = match p.opt("[recipients] list_columns", raw.list_columns) {
        Some(Some((map, span))) => {
            let mut list = Vec::new();
            for (column, sep) in map {
                if sep.is_empty() {
                    p.at(
                        Some(&span),
                        format!(
                            "[recipients] list_columns: separator for {column:?} must not be empty"
                        ),
                    );
                }
                list.push((column.trim().to_string(), sep));
            }
            Some(list)
        }
        Some(None) => Some(Vec::new()),
        None => None,
    };
    let values = p.opt("[recipients] values", raw.values).map(|v| {
        v.map(|(map, _)| {
            map.into_iter()
                .map(|(column, allowed)| (column.trim().to_string(), allowed))
                .collect()
        })
        .unwrap_or_default()
    });
    Some(Recipients {
        path: resolve(dir, &path?.0),
        sheet: sheet?.map(|(s, _)| s),
        email_column: email_column?,
        key_column: key_column?,
        name_column: name_column?.unwrap_or_else(|| "name".to_string()),
        language_column: language_column?,
        encoding,
        delimiter: delimiter.byte(),
        list_columns: list_columns?,
        values: values?,
    })
}

fn check_templates(raw: RawTemplates, dir: &Path, p: &mut Problems) -> Option<Templates> {
    let folder = p.or("[templates] dir", raw.dir, "templates".into());
    let language = match p.opt("[templates] default_language", raw.default_language)? {
        Some((l, span)) => {
            let l = l.trim().to_ascii_lowercase();
            if l.is_empty() || !l.chars().all(|c| c.is_ascii_alphabetic() || c == '-') {
                p.at(
                    Some(&span),
                    format!(
                        "[templates] default_language {l:?} must be a language tag such as sv or en"
                    ),
                );
                return None;
            }
            l
        }
        None => "sv".to_string(),
    };
    Some(Templates {
        dir: resolve(dir, &folder),
        default_language: language,
    })
}

fn check_bounces(raw: RawBounces, dir: &Path, p: &mut Problems) -> Option<Bounces> {
    let host = p.req("[bounces] host", raw.host).and_then(|(h, span)| {
        match check_host_name(&h, "[bounces] host") {
            Ok(()) => Some((h, span)),
            Err(e) => {
                p.at(Some(&span), e);
                None
            }
        }
    });
    let security = p.opt("[bounces] security", raw.security);
    let username = p.req("[bounces] username", raw.username);
    let port = p.opt("[bounces] port", raw.port);
    let folder = match p.opt("[bounces] folder", raw.folder) {
        Some(Some((f, span))) if f.chars().any(char::is_control) => {
            p.at(
                Some(&span),
                format!("[bounces] folder {f:?} holds a control character"),
            );
            None
        }
        Some(f) => Some(f.map_or_else(|| "INBOX".to_string(), |(f, _)| f)),
        None => None,
    };
    let ca_file = p.opt("[bounces] ca_file", raw.ca_file);
    let secret = secret_source(p, "[bounces]", raw.password_env, raw.password_command);
    let (host, host_span) = host?;
    let security = security?.map_or(Security::Tls, |(s, _)| s);
    if security == Security::None && !is_loopback(&host) {
        p.at(
            Some(&host_span),
            "[bounces] security = \"none\" is allowed only towards loopback",
        );
    }
    Some(Bounces {
        port: port?.map_or(
            match security {
                Security::Tls => 993,
                _ => 143,
            },
            |(n, _)| n,
        ),
        host,
        security,
        username: username?.0,
        secret: secret?,
        folder: folder?,
        ca_file: ca_file?.map(|(c, _)| resolve(dir, &c)),
    })
}

fn check_dkim(raw: RawDkim, dir: &Path, p: &mut Problems) -> Option<Dkim> {
    let domain = p.opt("[dkim] domain", raw.domain)?;
    let selector = p.opt("[dkim] selector", raw.selector)?;
    let key_file = p.opt("[dkim] key_file", raw.key_file)?;
    if let (Some((_, span)), None) = (&key_file, &selector) {
        p.at(
            Some(span),
            "[dkim] key_file needs selector (the name under _domainkey where the public key is published)",
        );
        return None;
    }
    let name = |v: Option<(String, Range<usize>)>| {
        v.map(|(s, _)| s.trim().trim_end_matches('.').to_ascii_lowercase())
    };
    Some(Dkim {
        domain: name(domain),
        selector: name(selector),
        key_file: key_file.map(|(k, _)| resolve(dir, &k)),
    })
}

/// A path from the config, relative to its folder. Beside a config in the current folder
/// paths stay as written (`templates`, not `./templates`): that is how the operator reads
/// them in messages.
pub fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if dir == Path::new(".") {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

fn check_campaign(campaign: &str) -> Result<()> {
    if campaign.is_empty() {
        bail!("campaign must not be empty");
    }
    if !campaign
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || campaign.starts_with('.')
        || campaign.ends_with('.')
        || campaign.contains("..")
    {
        bail!(
            "campaign {campaign:?} may hold only letters a-z, digits, '-', '_' and single dots (it goes into every Message-ID)"
        );
    }
    Ok(())
}

/// Parses `Name <addr>` or `addr`, refusing CR/LF.
pub fn parse_mailbox(text: &str) -> Result<Mailbox> {
    if text.contains(['\r', '\n']) {
        bail!("{text:?} contains a line break");
    }
    text.trim()
        .parse::<Mailbox>()
        .map_err(|e| anyhow::anyhow!("{text:?} is not a valid address ({e})"))
}

/// Whether `host` names this machine's loopback interface.
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// TOML to JSON for the templates, dates as their text.
fn toml_to_json(value: toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => serde_json::Value::String(s),
        toml::Value::Integer(i) => serde_json::Value::from(i),
        toml::Value::Float(f) => serde_json::Value::from(f),
        toml::Value::Boolean(b) => serde_json::Value::Bool(b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(toml_to_json).collect())
        }
        toml::Value::Table(t) => {
            serde_json::Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
campaign = "test-1"
[sender]
from = "Företaget AB <dataskydd@example.se>"
[smtp]
host = "127.0.0.1"
port = 2525
security = "none"
auth = "none"
[recipients]
path = "r.csv"
"#;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("/x/config.toml"))
    }

    #[test]
    fn minimal_config_gets_defaults_and_resolved_paths() {
        let c = parse(MINIMAL).expect("valid");
        assert_eq!(c.recipients.path, Path::new("/x/r.csv"));
        assert_eq!(c.journal.path, Path::new("/x/delivery-log.jsonl"));
        assert_eq!(c.templates_dir, Path::new("/x/templates"));
        assert_eq!(
            c.sending.rate,
            Rate {
                count: 30,
                per: Duration::from_secs(60)
            }
        );
        assert_eq!(c.sending.max_attempts, 3);
        assert_eq!(c.sender.domain, "example.se");
        assert_eq!(c.sender.reply_to.email.to_string(), "dataskydd@example.se");
        assert_eq!(c.recipients.email_column, "email");
        assert_eq!(c.recipients.key_column, None);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = parse(&format!("{MINIMAL}\n[journal]\npaht = \"x\"\n")).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("paht"), "{msg}");
        assert!(msg.contains("/x/config.toml:"), "{msg}");
    }

    #[test]
    fn incident_is_free_form() {
        let c = parse(&format!(
            "{MINIMAL}\n[incident]\nnamn = \"NEKTAB\"\nupptackt = 2023-10-06\n[incident.kontakt]\nepost = \"a@example.se\"\n"
        ))
        .expect("valid");
        assert_eq!(c.incident["namn"], "NEKTAB");
        assert_eq!(c.incident["upptackt"], "2023-10-06");
        assert_eq!(c.incident["kontakt"]["epost"], "a@example.se");
    }

    #[test]
    fn rates() {
        assert_eq!(Rate::parse("5/s").expect("ok").per_second(), 5.0);
        assert_eq!(Rate::parse("30/min").expect("ok").per_second(), 0.5);
        assert_eq!(Rate::parse("3600/h").expect("ok").per_second(), 1.0);
        for bad in ["0/min", "x/min", "30", "30/day", "-1/s", ""] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn insecure_relay_refused_unless_allowed() {
        let text = MINIMAL.replace("127.0.0.1", "smtp.example.se");
        let err = parse(&text).unwrap_err();
        assert!(format!("{err:#}").contains("unencrypted"));
        let allowed = text.replace(
            "security = \"none\"",
            "security = \"none\"\nallow_insecure = true",
        );
        assert!(parse(&allowed).is_ok());
    }

    #[test]
    fn several_problems_reported_together() {
        let text = MINIMAL
            .replace("campaign = \"test-1\"", "campaign = \"bad name\"")
            .replace("auth = \"none\"", "auth = \"cram\"");
        let msg = format!("{:#}", parse(&text).unwrap_err());
        assert!(msg.contains("campaign"), "{msg}");
        assert!(msg.contains("cram"), "{msg}");
    }

    #[test]
    fn wrong_type_and_missing_section() {
        let msg = format!(
            "{:#}",
            parse(&MINIMAL.replace("port = 2525", "port = \"x\"")).unwrap_err()
        );
        assert!(msg.contains("port") || msg.contains("integer"), "{msg}");
        let msg = format!("{:#}", parse("campaign = \"a\"\n").unwrap_err());
        assert!(msg.contains("sender"), "{msg}");
    }

    #[test]
    fn auth_needs_user_and_secret_source() {
        let text = MINIMAL.replace("auth = \"none\"", "auth = \"plain\"");
        assert!(format!("{:#}", parse(&text).unwrap_err()).contains("username"));
        let text = text.replace(
            "auth = \"plain\"",
            "auth = \"plain\"\nusername = \"u\"\npassword_env = \"P\"",
        );
        let c = parse(&text).expect("valid");
        assert_eq!(c.smtp.secret, Some(SecretSource::Env("P".into())));
        let x = MINIMAL.replace("auth = \"none\"", "auth = \"xoauth2\"\nusername = \"u\"");
        assert!(format!("{:#}", parse(&x).unwrap_err()).contains("token_command"));
    }

    #[test]
    fn every_bad_value_is_reported_in_one_run_with_its_line() {
        let text = MINIMAL
            .replace("security = \"none\"", "security = \"ssl\"")
            .replace("auth = \"none\"", "auth = \"cram\"")
            .replace(
                "path = \"r.csv\"",
                "path = \"r.csv\"\nencoding = \"latin1\"",
            );
        let msg = format!("{:#}", parse(&text).unwrap_err());
        let lines: Vec<&str> = msg.lines().collect();
        assert_eq!(lines.len(), 3, "{msg}");
        assert!(
            lines[0].starts_with("/x/config.toml:8: [smtp] security: unknown variant `ssl`"),
            "{msg}"
        );
        assert!(
            lines[1].starts_with("/x/config.toml:9: [smtp] auth: unknown variant `cram`"),
            "{msg}"
        );
        assert!(
            lines[2]
                .starts_with("/x/config.toml:12: [recipients] encoding: unknown variant `latin1`"),
            "{msg}"
        );
    }

    #[test]
    fn an_error_line_echoes_at_most_a_couple_of_hundred_characters() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let text = MINIMAL.replace("port = 2525", &format!("port = {deep}"));
        let msg = format!("{:#}", parse(&text).unwrap_err());
        assert!(msg.starts_with("/x/config.toml:"), "{msg}");
        assert!(
            msg.len() < 600,
            "{} bytes: {}",
            msg.len(),
            &msg[..600.min(msg.len())]
        );
        let long = MINIMAL.replace("\"test-1\"", &format!("\"{}\"", "x y".repeat(10_000)));
        let msg = format!("{:#}", parse(&long).unwrap_err());
        assert!(msg.len() < 600, "{} bytes", msg.len());
    }

    #[test]
    fn profile_is_guessed_from_the_host_and_fills_unset_limits() {
        for (host, profile) in [
            ("smtp.office365.com", Profile::Microsoft365),
            ("SMTP.Office365.com.", Profile::Microsoft365),
            ("smtp.gmail.com", Profile::Google),
            ("smtp-relay.gmail.com", Profile::GoogleRelay),
            ("email-smtp.eu-north-1.amazonaws.com", Profile::Ses),
            ("smtp.azurecomm.net", Profile::Acs),
            ("smtp.example.se", Profile::None),
        ] {
            assert_eq!(Profile::guess(host), profile, "{host}");
        }
        let m365 = MINIMAL
            .replace("127.0.0.1", "smtp.office365.com")
            .replace("security = \"none\"", "security = \"starttls\"");
        let c = parse(&m365).expect("valid");
        assert_eq!(c.smtp.profile, Profile::Microsoft365);
        assert_eq!(c.sending.rate.to_string(), "30/min");
        assert_eq!(c.sending.daily_limit, Some(10_000));
        // Set values win over the profile's, and a profile can be named against the guess.
        let set = format!("{m365}\n[sending]\nrate = \"10/min\"\ndaily_limit = 500\n");
        let c = parse(&set).expect("valid");
        assert_eq!(
            (c.sending.rate.to_string(), c.sending.daily_limit),
            ("10/min".into(), Some(500))
        );
        let named = MINIMAL.replace("port = 2525", "port = 2525\nprofile = \"acs\"");
        let c = parse(&named).expect("valid");
        assert_eq!(
            (c.smtp.profile, c.sending.rate.to_string()),
            (Profile::Acs, "100/h".into())
        );
        let c = parse(MINIMAL).expect("valid");
        assert_eq!(
            (c.smtp.profile, c.sending.daily_limit),
            (Profile::None, None)
        );
    }

    #[test]
    fn additions_of_2026_12_01_are_read_with_their_defaults() {
        let c = parse(MINIMAL).expect("valid");
        assert_eq!(c.smtp.token_lifetime, Duration::from_secs(3000));
        assert_eq!(c.smtp.secret_command_timeout, Duration::from_secs(30));
        assert_eq!(c.sending.when_limited, WhenLimited::Wait);
        assert_eq!(c.sending.quota_retry, Duration::from_secs(30 * 60));
        assert_eq!(c.templates.default_language, "sv");
        assert!(c.recipients.values.is_empty() && c.recipients.language_column.is_none());
        assert!(c.dkim.key_file.is_none() && c.check.dns_server.is_none());

        let text = format!(
            "{}\nlanguage_column = \"språk\"\nsheet = \"Kunder\"\n[recipients.values]\naffected = [\"namn\", \"bank\"]\n[templates]\ndefault_language = \"SV\"\n[sending]\nwhen_limited = \"stop\"\nquota_retry_mins = 5\n[check]\ndns_server = \"127.0.0.1:5353\"\nlink_domains = [\"Example.se.\"]\n[dkim]\nselector = \"s1\"\nkey_file = \"dkim.pem\"\n",
            MINIMAL.trim_end()
        );
        let c = parse(&text).expect("valid");
        assert_eq!(c.recipients.language_column.as_deref(), Some("språk"));
        assert_eq!(c.recipients.sheet.as_deref(), Some("Kunder"));
        assert_eq!(c.recipients.values["affected"], ["namn", "bank"]);
        assert_eq!(c.templates.default_language, "sv");
        assert_eq!(c.sending.when_limited, WhenLimited::Stop);
        assert_eq!(c.sending.quota_retry, Duration::from_secs(300));
        assert_eq!(
            c.check.dns_server,
            Some("127.0.0.1:5353".parse().expect("addr"))
        );
        assert_eq!(c.check.link_domains, ["example.se"]);
        assert_eq!(c.dkim.key_file.as_deref(), Some(Path::new("/x/dkim.pem")));

        let bad = text
            .replace("selector = \"s1\"\n", "")
            .replace("127.0.0.1:5353", "dns.example.se")
            .replace("when_limited = \"stop\"", "when_limited = \"later\"");
        let msg = format!("{:#}", parse(&bad).unwrap_err());
        assert!(
            msg.contains("[sending] when_limited: unknown variant `later`"),
            "{msg}"
        );
        assert!(msg.contains("[check] dns_server: "), "{msg}");
        assert!(msg.contains("[dkim] key_file needs selector"), "{msg}");
    }

    #[test]
    fn rate_shows_in_the_unit_it_was_set_in() {
        for text in ["30/min", "5/s", "1000/h"] {
            assert_eq!(Rate::parse(text).expect("ok").to_string(), text);
        }
        assert_eq!(Rate::parse("31 / m").expect("ok").to_string(), "31/min");
    }

    #[test]
    fn loopback_detection() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("localhost"));
        assert!(is_loopback("[::1]"));
        assert!(!is_loopback("smtp.example.se"));
        assert!(!is_loopback("10.0.0.1"));
    }
}

#[cfg(test)]
mod proptests {
    //! Arbitrary text to `Config::parse`: never a panic, every error names the file.
    use super::*;
    use proptest::prelude::*;

    const BASE: &str = r#"campaign = "test-1"
[sender]
from = "Företaget AB <dataskydd@example.se>"
reply_to = "dataskydd@example.se"
[smtp]
host = "127.0.0.1"
port = 2525
security = "none"
auth = "none"
timeout_secs = 30
[sending]
rate = "30/min"
burst = 1
concurrency = 4
max_attempts = 3
retry_delay_secs = 5
[recipients]
path = "r.csv"
key_column = "id"
encoding = "auto"
delimiter = "auto"
list_columns = { affected = "|" }
[templates]
dir = "templates"
[journal]
path = "j.jsonl"
[incident]
namn = "X"
"#;

    fn parse(text: &str) -> Result<(), TestCaseError> {
        match Config::parse(text, Path::new("/x/config.toml")) {
            Ok(c) => {
                prop_assert!(!c.campaign.is_empty());
                prop_assert!(c.sending.rate.count > 0);
                prop_assert!(c.sending.concurrency >= 1);
                prop_assert!(!c.smtp.timeout.is_zero());
            }
            Err(e) => {
                let msg = format!("{e:#}");
                for line in msg.lines() {
                    prop_assert!(line.starts_with("/x/config.toml"), "{msg}");
                }
            }
        }
        Ok(())
    }

    /// TOML-ish values and fragments.
    fn value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("\"\"".to_string()),
            Just("0".to_string()),
            Just("-1".to_string()),
            Just("99999999999999999999".to_string()),
            Just("true".to_string()),
            Just("\"0/min\"".to_string()),
            Just("\"5/s\"".to_string()),
            Just("\"none\"".to_string()),
            Just("\"tls\"".to_string()),
            Just("\"xoauth2\"".to_string()),
            Just("[1, 2]".to_string()),
            Just("{ a = 1 }".to_string()),
            Just("2023-10-06".to_string()),
            Just("\"\\u0000\"".to_string()),
            Just("\"a\\nb\"".to_string()),
            Just("\"smtp.example.se\"".to_string()),
            "[a-z0-9 /<>@.\"=\\[\\]{},\n-]{0,20}",
            any::<String>().prop_map(|s| format!("{s:?}")),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            parse(&text)?;
        }

        #[test]
        fn one_value_replaced_never_panics(line in 0usize..29, v in value()) {
            let text: Vec<String> = BASE
                .lines()
                .enumerate()
                .map(|(i, l)| match (i == line, l.split_once(" = ")) {
                    (true, Some((k, _))) => format!("{k} = {v}"),
                    (true, None) => v.clone(),
                    _ => l.to_string(),
                })
                .collect();
            parse(&text.join("\n"))?;
        }

        #[test]
        fn lines_dropped_or_duplicated_never_panic(ops in prop::collection::vec((0usize..29, 0u8..3), 0..6)) {
            let mut lines: Vec<&str> = BASE.lines().collect();
            for (i, op) in ops {
                if lines.is_empty() {
                    break;
                }
                let i = i % lines.len();
                match op {
                    0 => {
                        lines.remove(i);
                    }
                    1 => lines.insert(i, lines[i]),
                    _ => {
                        let j = (i + 1) % lines.len();
                        lines.swap(i, j);
                    }
                }
            }
            parse(&lines.join("\n"))?;
        }

        #[test]
        fn rates_never_panic(text in "[0-9 ]{0,12}/?[a-z ]{0,5}") {
            if let Ok(r) = Rate::parse(&text) {
                prop_assert!(r.count > 0 && r.per_second() > 0.0);
            }
        }
    }
}
