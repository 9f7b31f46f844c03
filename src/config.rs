//! config.toml: the raw serde shape and the checked `Config` every command works from.
//!
//! Loading turns the file into checked values once (paths resolved against the config's
//! folder, rate syntax, security modes, addresses), so that the rest of the program never
//! re-validates. Every key outside `[incident]` is known; an unknown key is an error that
//! names it. No secret is ever read from this file: see `secrets`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use lettre::message::Mailbox;
use serde::Deserialize;

/// The raw file, as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// Names this mailing in Message-IDs and the journal.
    campaign: String,
    /// Who the notice comes from.
    sender: RawSender,
    /// The company's SMTP relay.
    smtp: RawSmtp,
    /// Rate, concurrency and retries.
    #[serde(default)]
    sending: RawSending,
    /// The customer CSV.
    recipients: RawRecipients,
    /// Where the Tera templates are.
    #[serde(default)]
    templates: RawTemplates,
    /// The delivery journal.
    #[serde(default)]
    journal: RawJournal,
    /// The IMAP mailbox where delivery reports arrive.
    bounces: Option<RawBounces>,
    /// Free-form facts about the incident, for the templates.
    #[serde(default)]
    incident: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSender {
    /// The From header, `Name <address>`.
    from: String,
    /// The Reply-To address (default: the From address).
    reply_to: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSmtp {
    /// The relay's host name or IP address.
    host: String,
    /// The relay's port (default 587, or 465 for `tls`, 25 for `none`).
    port: Option<u16>,
    /// `starttls`, `tls` (implicit) or `none`.
    #[serde(default = "default_security")]
    security: String,
    /// Allow `security = "none"` to a host that is not loopback.
    #[serde(default)]
    allow_insecure: bool,
    /// `none`, `plain`, `login` or `xoauth2`.
    #[serde(default = "default_auth")]
    auth: String,
    /// The user name to log in with.
    username: Option<String>,
    /// The environment variable holding the password.
    password_env: Option<String>,
    /// A command whose standard output is the password.
    password_command: Option<String>,
    /// A command whose standard output is an OAuth2 access token (xoauth2).
    token_command: Option<String>,
    /// Seconds allowed for each step: connect, TLS, each command, the data transfer.
    #[serde(default = "default_timeout")]
    timeout_secs: u64,
    /// An extra trusted root certificate (PEM), for an internal relay.
    ca_file: Option<PathBuf>,
    /// The name to greet the relay with in EHLO (default: this machine's host name).
    helo_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSending {
    /// `N/s`, `N/min` or `N/h`, shared by all connections.
    #[serde(default = "default_rate")]
    rate: String,
    /// How many messages may start at once after a pause.
    #[serde(default = "default_burst")]
    burst: u32,
    /// SMTP connections in parallel.
    #[serde(default = "default_concurrency")]
    concurrency: u32,
    /// Stop cleanly after this many deliveries in 24 hours; the next send resumes.
    daily_limit: Option<u64>,
    /// Attempts per recipient and run, for transient failures.
    #[serde(default = "default_max_attempts")]
    max_attempts: u32,
    /// Seconds before the second attempt; doubles after.
    #[serde(default = "default_retry_delay")]
    retry_delay_secs: u64,
}

impl Default for RawSending {
    fn default() -> Self {
        RawSending {
            rate: default_rate(),
            burst: default_burst(),
            concurrency: default_concurrency(),
            daily_limit: None,
            max_attempts: default_max_attempts(),
            retry_delay_secs: default_retry_delay(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecipients {
    /// The CSV file.
    path: PathBuf,
    /// The column holding the address.
    #[serde(default = "default_email_column")]
    email_column: String,
    /// The column identifying a recipient (default: the lower-cased address).
    key_column: Option<String>,
    /// The column holding the display name.
    #[serde(default = "default_name_column")]
    name_column: String,
    /// `auto`, `utf-8` or `windows-1252`.
    #[serde(default = "default_auto")]
    encoding: String,
    /// `auto`, `,`, `;` or `\t`.
    #[serde(default = "default_auto")]
    delimiter: String,
    /// Columns split into lists, with their separator.
    #[serde(default)]
    list_columns: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplates {
    /// The folder with subject.txt, body.txt and optional body.html.
    #[serde(default = "default_templates_dir")]
    dir: PathBuf,
}

impl Default for RawTemplates {
    fn default() -> Self {
        RawTemplates {
            dir: default_templates_dir(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJournal {
    /// The JSON Lines delivery journal.
    #[serde(default = "default_journal_path")]
    path: PathBuf,
    /// A folder keeping the exact bytes of every delivered message, by key.
    archive: Option<PathBuf>,
}

impl Default for RawJournal {
    fn default() -> Self {
        RawJournal {
            path: default_journal_path(),
            archive: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBounces {
    /// The IMAP server's host name.
    host: String,
    /// The IMAP port (default 993 for `tls`, 143 for `starttls`).
    port: Option<u16>,
    /// `tls` (implicit), `starttls` or `none` (loopback only).
    #[serde(default = "default_imap_security")]
    security: String,
    /// The mailbox user.
    username: String,
    /// The environment variable holding the IMAP password.
    password_env: Option<String>,
    /// A command whose standard output is the IMAP password.
    password_command: Option<String>,
    /// The folder to read.
    #[serde(default = "default_folder")]
    folder: String,
    /// An extra trusted root certificate (PEM).
    ca_file: Option<PathBuf>,
}

fn default_security() -> String {
    "starttls".into()
}
fn default_imap_security() -> String {
    "tls".into()
}
fn default_auth() -> String {
    "plain".into()
}
fn default_timeout() -> u64 {
    30
}
fn default_rate() -> String {
    "30/min".into()
}
fn default_burst() -> u32 {
    1
}
fn default_concurrency() -> u32 {
    4
}
fn default_max_attempts() -> u32 {
    3
}
fn default_retry_delay() -> u64 {
    5
}
fn default_email_column() -> String {
    "email".into()
}
fn default_name_column() -> String {
    "name".into()
}
fn default_auto() -> String {
    "auto".into()
}
fn default_templates_dir() -> PathBuf {
    "templates".into()
}
fn default_journal_path() -> PathBuf {
    "delivery-log.jsonl".into()
}
fn default_folder() -> String {
    "INBOX".into()
}

/// Transport security towards a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Plain connection upgraded with STARTTLS (required).
    StartTls,
    /// Implicit TLS from the first byte.
    Tls,
    /// No encryption (loopback only unless allowed).
    None,
}

/// How to log in to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// No login.
    None,
    /// AUTH PLAIN.
    Plain,
    /// AUTH LOGIN.
    Login,
    /// AUTH XOAUTH2 with a token from `token_command`.
    Xoauth2,
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
}

impl Smtp {
    /// `host:port`, as the journal records the relay.
    pub fn relay(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A checked rate: `count` messages per `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Messages per period.
    pub count: u32,
    /// The period.
    pub per: Duration,
}

impl Rate {
    /// Parses `N/s`, `N/min` or `N/h`.
    pub fn parse(text: &str) -> Result<Rate> {
        let (n, unit) = text
            .split_once('/')
            .with_context(|| format!("rate {text:?} must look like 30/min, 5/s or 1000/h"))?;
        let count: u32 = n
            .trim()
            .parse()
            .with_context(|| format!("rate {text:?}: {n:?} is not a whole number"))?;
        if count == 0 {
            bail!("rate {text:?} would never send anything: use at least 1");
        }
        let per = match unit.trim() {
            "s" | "sec" => Duration::from_secs(1),
            "min" | "m" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            other => bail!("rate {text:?}: unit {other:?} must be s, min or h"),
        };
        Ok(Rate { count, per })
    }

    /// Messages per second.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }
}

/// The checked `[sending]` section.
#[derive(Debug, Clone)]
pub struct Sending {
    /// Shared rate limit.
    pub rate: Rate,
    /// Burst size.
    pub burst: u32,
    /// Parallel connections.
    pub concurrency: usize,
    /// Deliveries allowed in 24 hours.
    pub daily_limit: Option<u64>,
    /// Attempts per recipient and run.
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub retry_delay: Duration,
}

/// How the CSV is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CsvEncoding {
    /// Strict UTF-8 if it decodes, else Windows-1252.
    Auto,
    /// UTF-8 (BOM allowed).
    Utf8,
    /// Windows-1252.
    Windows1252,
}

/// The checked `[recipients]` section.
#[derive(Debug, Clone)]
pub struct Recipients {
    /// The CSV, resolved.
    pub path: PathBuf,
    /// The address column.
    pub email_column: String,
    /// The key column, if any.
    pub key_column: Option<String>,
    /// The display-name column.
    pub name_column: String,
    /// The encoding.
    pub encoding: CsvEncoding,
    /// The delimiter, or None to detect it.
    pub delimiter: Option<u8>,
    /// List columns and their separators.
    pub list_columns: Vec<(String, String)>,
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
    /// The templates folder, resolved.
    pub templates_dir: PathBuf,
    /// The journal.
    pub journal: Journal,
    /// The bounce mailbox.
    pub bounces: Option<Bounces>,
    /// The `[incident]` table, as JSON for the templates.
    pub incident: serde_json::Value,
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
        let shown = path.display();
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim_end().to_string();
            // A key missing from the top level: the span is the whole file, whose first
            // line says nothing useful.
            if let Some(name) = msg
                .strip_prefix("missing field `")
                .and_then(|m| m.strip_suffix('`'))
                && e.span().is_none_or(|s| s.start == 0)
            {
                return if SECTIONS.contains(&name) {
                    anyhow::anyhow!("{shown}: missing section [{name}]")
                } else {
                    anyhow::anyhow!("{shown}: missing key `{name}` at the top of the file")
                };
            }
            let (line, snippet) = match e.span() {
                Some(s) => {
                    let start = s.start.min(text.len());
                    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
                    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
                    (
                        format!(":{}", 1 + text[..start].matches('\n').count()),
                        format!(" (in: {})", text[line_start..line_end].trim()),
                    )
                }
                None => (String::new(), String::new()),
            };
            anyhow::anyhow!("{shown}{line}: {msg}{snippet}")
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut problems: Vec<String> = Vec::new();
        let mut check = |r: Result<()>| {
            if let Err(e) = r {
                let e = format!("{e:#}");
                match locate(text, &e) {
                    Some(line) => problems.push(format!("{shown}:{line}: {e}")),
                    None => problems.push(format!("{shown}: {e}")),
                }
            }
        };

        let campaign = raw.campaign.trim().to_string();
        check(check_campaign(&campaign));

        let from = parse_mailbox(&raw.sender.from).with_context(|| "[sender] from".to_string());
        let reply_to = match &raw.sender.reply_to {
            Some(r) => parse_mailbox(r).map(Some).context("[sender] reply_to"),
            None => Ok(None),
        };
        let (from, reply_to) = match (from, reply_to) {
            (Ok(f), Ok(r)) => {
                let r = r.unwrap_or_else(|| Mailbox::new(None, f.email.clone()));
                (Some(f), Some(r))
            }
            (f, r) => {
                check(f.map(|_| ()));
                check(r.map(|_| ()));
                (None, None)
            }
        };

        let smtp = check_smtp(&raw.smtp, &dir);
        let smtp = match smtp {
            Ok(s) => Some(s),
            Err(e) => {
                check(Err(e));
                None
            }
        };
        let sending = match check_sending(&raw.sending) {
            Ok(s) => Some(s),
            Err(e) => {
                check(Err(e));
                None
            }
        };
        let recipients = match check_recipients(&raw.recipients, &dir) {
            Ok(r) => Some(r),
            Err(e) => {
                check(Err(e));
                None
            }
        };
        let bounces = match raw.bounces.as_ref().map(check_bounces) {
            Some(Ok(b)) => Some(b),
            Some(Err(e)) => {
                check(Err(e));
                None
            }
            None => None,
        };
        let incident = toml_to_json(toml::Value::Table(raw.incident));
        let resolve = |p: &Path| resolve(&dir, p);

        match (from, reply_to, smtp, sending, recipients) {
            (Some(from), Some(reply_to), Some(smtp), Some(sending), Some(recipients))
                if problems.is_empty() =>
            {
                let domain = from.email.domain().to_ascii_lowercase();
                Ok(Config {
                    path: path.to_path_buf(),
                    campaign,
                    sender: Sender {
                        from,
                        reply_to,
                        domain,
                    },
                    smtp,
                    sending,
                    recipients,
                    templates_dir: resolve(&raw.templates.dir),
                    journal: Journal {
                        path: resolve(&raw.journal.path),
                        archive: raw.journal.archive.as_deref().map(resolve),
                    },
                    bounces: bounces.map(|mut b| {
                        b.ca_file = b.ca_file.as_deref().map(resolve);
                        b
                    }),
                    incident,
                    dir,
                })
            }
            _ => bail!("{}", problems.join("\n")),
        }
    }
}

/// The sections of the file, for "missing section" errors.
const SECTIONS: [&str; 7] = [
    "sender",
    "smtp",
    "sending",
    "recipients",
    "templates",
    "journal",
    "bounces",
];

/// The line (1-based) a checked value's problem is about: problems read `[section] key ...`
/// or `[section]: key ...` (top-level ones `key ...`); the key's line, else the section's.
fn locate(text: &str, problem: &str) -> Option<usize> {
    let (section, rest) = match problem.strip_prefix('[') {
        Some(p) => {
            let (section, rest) = p.split_once(']')?;
            (section.trim(), rest.trim_start_matches([':', ' ']))
        }
        None => ("", problem),
    };
    let key: String = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let mut current = String::new();
    let mut section_line = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(header) = line.strip_prefix('[') {
            let name = header.trim_start_matches('[');
            let name = name.split(']').next().unwrap_or("").trim();
            current = name.to_string();
            if current == section && section_line.is_none() {
                section_line = Some(i + 1);
            }
            continue;
        }
        if current == section
            && !key.is_empty()
            && let Some(after) = line.strip_prefix(key.as_str())
            && after.trim_start().starts_with('=')
        {
            return Some(i + 1);
        }
    }
    section_line
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

/// Whether `host` names this machine's loopback interface.
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

fn parse_security(text: &str, what: &str) -> Result<Security> {
    match text {
        "starttls" => Ok(Security::StartTls),
        "tls" => Ok(Security::Tls),
        "none" => Ok(Security::None),
        other => bail!("{what} security {other:?} must be starttls, tls or none"),
    }
}

fn secret_source(
    env: &Option<String>,
    command: &Option<String>,
    what: &str,
) -> Result<SecretSource> {
    match (env, command) {
        (Some(_), Some(_)) => bail!("{what}: set password_env or password_command, not both"),
        (Some(e), None) => Ok(SecretSource::Env(e.clone())),
        (None, Some(c)) => Ok(SecretSource::Command(c.clone())),
        (None, None) => Ok(SecretSource::Prompt),
    }
}

fn check_smtp(raw: &RawSmtp, dir: &Path) -> Result<Smtp> {
    let security = parse_security(&raw.security, "[smtp]")?;
    if raw.host.trim().is_empty() {
        bail!("[smtp] host must not be empty");
    }
    check_host_name(raw.host.trim(), "[smtp] host")?;
    if let Some(helo) = &raw.helo_name {
        check_host_name(helo, "[smtp] helo_name")?;
    }
    if security == Security::None && !raw.allow_insecure && !is_loopback(&raw.host) {
        bail!(
            "[smtp] security = \"none\" would send personal data unencrypted to {}: use starttls or tls, or set allow_insecure = true if the network is trusted",
            raw.host
        );
    }
    let auth = match raw.auth.as_str() {
        "none" => AuthMethod::None,
        "plain" => AuthMethod::Plain,
        "login" => AuthMethod::Login,
        "xoauth2" => AuthMethod::Xoauth2,
        other => bail!("[smtp] auth {other:?} must be none, plain, login or xoauth2"),
    };
    let secret = match auth {
        AuthMethod::None => None,
        AuthMethod::Xoauth2 => match &raw.token_command {
            Some(c) => Some(SecretSource::Command(c.clone())),
            None => bail!(
                "[smtp] auth = \"xoauth2\" needs token_command (a command printing an access token)"
            ),
        },
        AuthMethod::Plain | AuthMethod::Login => Some(secret_source(
            &raw.password_env,
            &raw.password_command,
            "[smtp]",
        )?),
    };
    if auth != AuthMethod::None && raw.username.as_deref().unwrap_or("").is_empty() {
        bail!("[smtp] auth = {:?} needs username", raw.auth);
    }
    if raw.timeout_secs == 0 {
        bail!("[smtp] timeout_secs must be at least 1");
    }
    let port = raw.port.unwrap_or(match security {
        Security::StartTls => 587,
        Security::Tls => 465,
        Security::None => 25,
    });
    if port == 0 {
        bail!("[smtp] port must not be 0");
    }
    Ok(Smtp {
        host: raw.host.trim().to_string(),
        port,
        security,
        auth,
        username: raw.username.clone(),
        secret,
        timeout: Duration::from_secs(raw.timeout_secs),
        ca_file: raw.ca_file.as_deref().map(|c| resolve(dir, c)),
        helo_name: raw.helo_name.clone(),
    })
}

fn check_sending(raw: &RawSending) -> Result<Sending> {
    let rate = Rate::parse(&raw.rate).context("[sending]")?;
    if raw.burst == 0 {
        bail!("[sending] burst must be at least 1");
    }
    if raw.concurrency == 0 || raw.concurrency > 64 {
        bail!("[sending] concurrency must be between 1 and 64");
    }
    if raw.max_attempts == 0 {
        bail!("[sending] max_attempts must be at least 1");
    }
    if raw.daily_limit == Some(0) {
        bail!("[sending] daily_limit must be at least 1 (leave it out for no limit)");
    }
    Ok(Sending {
        rate,
        burst: raw.burst,
        concurrency: raw.concurrency as usize,
        daily_limit: raw.daily_limit,
        max_attempts: raw.max_attempts,
        retry_delay: Duration::from_secs(raw.retry_delay_secs),
    })
}

fn check_recipients(raw: &RawRecipients, dir: &Path) -> Result<Recipients> {
    let encoding = match raw.encoding.to_ascii_lowercase().as_str() {
        "auto" => CsvEncoding::Auto,
        "utf-8" | "utf8" => CsvEncoding::Utf8,
        "windows-1252" | "cp1252" => CsvEncoding::Windows1252,
        other => bail!("[recipients] encoding {other:?} must be auto, utf-8 or windows-1252"),
    };
    let delimiter = match raw.delimiter.as_str() {
        "auto" => None,
        "," => Some(b','),
        ";" => Some(b';'),
        "\t" | "\\t" | "tab" => Some(b'\t'),
        other => bail!("[recipients] delimiter {other:?} must be auto, \",\", \";\" or \"\\t\""),
    };
    if raw.email_column.trim().is_empty() {
        bail!("[recipients] email_column must not be empty");
    }
    let mut list_columns = Vec::new();
    for (column, sep) in &raw.list_columns {
        if sep.is_empty() {
            bail!("[recipients] list_columns: separator for {column:?} must not be empty");
        }
        list_columns.push((column.trim().to_string(), sep.clone()));
    }
    Ok(Recipients {
        path: resolve(dir, &raw.path),
        email_column: raw.email_column.trim().to_string(),
        key_column: raw
            .key_column
            .as_ref()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty()),
        name_column: raw.name_column.trim().to_string(),
        encoding,
        delimiter,
        list_columns,
    })
}

fn check_bounces(raw: &RawBounces) -> Result<Bounces> {
    let security = parse_security(&raw.security, "[bounces]")?;
    check_host_name(&raw.host, "[bounces] host")?;
    if raw.folder.chars().any(char::is_control) {
        bail!(
            "[bounces] folder {:?} holds a control character",
            raw.folder
        );
    }
    if security == Security::None && !is_loopback(&raw.host) {
        bail!("[bounces] security = \"none\" is allowed only towards loopback");
    }
    let port = raw.port.unwrap_or(match security {
        Security::Tls => 993,
        _ => 143,
    });
    Ok(Bounces {
        host: raw.host.clone(),
        port,
        security,
        username: raw.username.clone(),
        secret: secret_source(&raw.password_env, &raw.password_command, "[bounces]")?,
        folder: raw.folder.clone(),
        ca_file: raw.ca_file.clone(),
    })
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
