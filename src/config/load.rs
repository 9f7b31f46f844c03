//! Checking the raw file into a `Config`: each section's values, what serde cannot say
//! (ranges, host names, combinations of keys), the profile's limits where none are set, and
//! every problem of the file collected with its line, each line bounded.

use std::fmt::Display;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use lettre::message::Mailbox;

use super::raw::{
    Delimiter, Field, Opt, RawBounces, RawConfig, RawDkim, RawRecipients, RawSender, RawSending,
    RawSmtp, RawTemplates,
};
use super::{
    AuthMethod, Bounces, Check, Config, CsvEncoding, Dkim, Journal, Profile, Rate, Recipients,
    SecretSource, Security, Sender, Sending, Smtp, Templates, WhenLimited,
};

/// The most characters of the operator's input one error line echoes: a value that is a
/// 100,000-deep array must not become a line of 200 KB.
const MAX_ECHO: usize = 200;

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
    crate::text::excerpt(text, MAX_ECHO)
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
mod proptests {
    //! Arbitrary text to `Config::parse`: never a panic, every error names the file.
    use super::*;
    use anyhow::Result;
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
