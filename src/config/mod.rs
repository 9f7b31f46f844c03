//! config.toml: the raw serde shape and the checked `Config` every command works from.
//!
//! Loading turns the file into checked values once (paths resolved against the config's
//! folder, rates, security modes, addresses), so that the rest of the program never
//! re-validates. Serde parses each value (enums, numbers, rates, socket addresses) and keeps
//! its place in the file; the checks that serde cannot express follow, and every problem of
//! the file is reported in one run, each with its line. Every key outside `[incident]` is
//! known; an unknown key is an error that names it. No secret is ever read from this file:
//! see `secrets`.

mod load;
mod raw;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use lettre::message::Mailbox;
use serde::Deserialize;

pub use crate::relay::profile::Profile;
pub use load::{is_loopback, parse_mailbox, resolve};

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
