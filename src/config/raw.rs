//! The raw file, as serde reads it: every value a `Field`, parsed on its own and kept with
//! its place in the file, so that `load` reports each bad value with its line and none hides
//! another.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{AuthMethod, CsvEncoding, Profile, Rate, Security, WhenLimited};

/// One value, parsed by serde on its own and kept with its place in the file: a bad value is
/// reported with its line and does not hide the file's other problems.
#[derive(Debug)]
pub(super) struct Field<T> {
    pub(super) span: Range<usize>,
    pub(super) value: std::result::Result<T, String>,
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
pub(super) type Opt<T> = Option<Field<T>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) campaign: Field<String>,
    pub(super) sender: RawSender,
    pub(super) smtp: RawSmtp,
    #[serde(default)]
    pub(super) sending: RawSending,
    pub(super) recipients: RawRecipients,
    #[serde(default)]
    pub(super) templates: RawTemplates,
    #[serde(default)]
    pub(super) journal: RawJournal,
    pub(super) bounces: Option<RawBounces>,
    #[serde(default)]
    pub(super) check: RawCheck,
    #[serde(default)]
    pub(super) dkim: RawDkim,
    #[serde(default)]
    pub(super) incident: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSender {
    pub(super) from: Field<String>,
    pub(super) reply_to: Opt<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSmtp {
    pub(super) host: Field<String>,
    pub(super) port: Opt<u16>,
    pub(super) security: Opt<Security>,
    pub(super) allow_insecure: Opt<bool>,
    pub(super) auth: Opt<AuthMethod>,
    pub(super) username: Opt<String>,
    pub(super) password_env: Opt<String>,
    pub(super) password_command: Opt<String>,
    pub(super) token_command: Opt<String>,
    pub(super) token_lifetime_secs: Opt<u64>,
    pub(super) secret_command_timeout_secs: Opt<u64>,
    pub(super) timeout_secs: Opt<u64>,
    pub(super) ca_file: Opt<PathBuf>,
    pub(super) helo_name: Opt<String>,
    pub(super) profile: Opt<Profile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSending {
    pub(super) rate: Opt<Rate>,
    pub(super) burst: Opt<u32>,
    pub(super) concurrency: Opt<u32>,
    pub(super) daily_limit: Opt<u64>,
    pub(super) when_limited: Opt<WhenLimited>,
    pub(super) quota_retry_mins: Opt<u64>,
    pub(super) max_attempts: Opt<u32>,
    pub(super) retry_delay_secs: Opt<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecipients {
    pub(super) path: Field<PathBuf>,
    pub(super) sheet: Opt<String>,
    pub(super) email_column: Opt<String>,
    pub(super) key_column: Opt<String>,
    pub(super) name_column: Opt<String>,
    pub(super) language_column: Opt<String>,
    pub(super) encoding: Opt<CsvEncoding>,
    pub(super) delimiter: Opt<Delimiter>,
    pub(super) list_columns: Opt<BTreeMap<String, String>>,
    pub(super) values: Opt<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTemplates {
    pub(super) dir: Opt<PathBuf>,
    pub(super) default_language: Opt<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJournal {
    pub(super) path: Opt<PathBuf>,
    pub(super) archive: Opt<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBounces {
    pub(super) host: Field<String>,
    pub(super) port: Opt<u16>,
    pub(super) security: Opt<Security>,
    pub(super) username: Field<String>,
    pub(super) password_env: Opt<String>,
    pub(super) password_command: Opt<String>,
    pub(super) folder: Opt<String>,
    pub(super) ca_file: Opt<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCheck {
    pub(super) dns_server: Opt<SocketAddr>,
    pub(super) link_domains: Opt<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDkim {
    pub(super) domain: Opt<String>,
    pub(super) selector: Opt<String>,
    pub(super) key_file: Opt<PathBuf>,
}

/// The CSV delimiter as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub(super) enum Delimiter {
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
    pub(super) fn byte(self) -> Option<u8> {
        match self {
            Delimiter::Auto => None,
            Delimiter::Comma => Some(b','),
            Delimiter::Semicolon => Some(b';'),
            Delimiter::Tab => Some(b'\t'),
        }
    }
}
