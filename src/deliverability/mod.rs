//! Will the notice reach the inbox? Gmail (since 2024) and Outlook.com (since May 2025)
//! require a sender of more than 5,000 messages a day to pass SPF and DKIM with DMARC
//! aligned to the From domain, and one breach mailing makes a company such a sender. This
//! module looks the From domain's records up in DNS and says, in plain words, what is
//! missing and which record to add (`records`), signs messages with DKIM where the relay
//! does not (`signing`), verifies a received test message (`verify`) and checks the links
//! in the templates (`links`). DNS goes through hickory-resolver, SPF, DKIM and DMARC
//! through mail-auth: no record parser of our own.

pub mod dns;
pub mod links;
pub mod records;
pub mod signing;
pub mod verify;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{Config, Profile};

pub use records::{Finding, Level};
pub use signing::Signer;

/// Who runs the relay, as far as deliverability is concerned: which SPF include covers it
/// and which DKIM selectors it publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Microsoft 365 / Exchange Online.
    Microsoft365,
    /// Google Workspace (smtp.gmail.com or smtp-relay.gmail.com).
    Google,
    /// Amazon SES.
    Ses,
    /// Azure Communication Services.
    Acs,
    /// The company's own server (Postfix, Exchange on premises, a hosting provider's relay).
    Own,
}

impl From<Profile> for Provider {
    fn from(p: Profile) -> Provider {
        match p {
            Profile::Microsoft365 => Provider::Microsoft365,
            Profile::Google | Profile::GoogleRelay => Provider::Google,
            Profile::Ses => Provider::Ses,
            Profile::Acs => Provider::Acs,
            Profile::None => Provider::Own,
        }
    }
}

impl Provider {
    /// The provider's name for the operator.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Microsoft365 => "Microsoft 365",
            Provider::Google => "Google Workspace",
            Provider::Ses => "Amazon SES",
            Provider::Acs => "Azure Communication Services",
            Provider::Own => "your own relay",
        }
    }

    /// The SPF include that authorizes the provider's outgoing servers, None for an own
    /// relay (whose address is evaluated instead).
    pub fn spf_include(self) -> Option<&'static str> {
        match self {
            // ACS sends from Exchange Online Protection's servers.
            Provider::Microsoft365 | Provider::Acs => Some("spf.protection.outlook.com"),
            Provider::Google => Some("_spf.google.com"),
            Provider::Ses => Some("amazonses.com"),
            Provider::Own => None,
        }
    }

    /// The selectors the provider publishes its DKIM keys under, tried when `[dkim]
    /// selector` is not set. SES's Easy DKIM selectors are random tokens: none to guess.
    pub fn usual_selectors(self) -> &'static [&'static str] {
        match self {
            Provider::Microsoft365 => &["selector1", "selector2"],
            Provider::Google => &["google"],
            Provider::Ses => &[],
            Provider::Acs => &[
                "selector1-azurecomm-prod-net",
                "selector2-azurecomm-prod-net",
            ],
            // opendkim's and rspamd's defaults, and the usual hand-picked names.
            Provider::Own => &["default", "mail", "dkim", "s1"],
        }
    }
}

/// `[check]` and `[dkim]` as the look-ups need them, with the key loaded.
pub struct Settings {
    /// The DNS server, or None for the system's resolver.
    pub dns_server: Option<SocketAddr>,
    /// Who runs the relay.
    pub provider: Provider,
    /// `[dkim] selector`.
    pub selector: Option<String>,
    /// utskick's own signing key, where `[dkim] key_file` is set.
    pub signer: Option<Arc<Signer>>,
}

impl Settings {
    /// From the checked config; the key file is read here (errors name it).
    pub fn from_config(config: &Config) -> anyhow::Result<Settings> {
        Ok(Settings {
            dns_server: config.check.dns_server,
            provider: config.smtp.profile.into(),
            selector: config.dkim.selector.clone(),
            signer: signing::for_config(config)?,
        })
    }

    /// What `records::assess` checks.
    pub fn target<'a>(&'a self, config: &'a Config) -> records::Target<'a> {
        records::Target {
            domain: &config.sender.domain,
            sender: config.sender.from.email.as_ref(),
            relay_host: &config.smtp.host,
            provider: self.provider,
            selector: self.selector.as_deref(),
            signer: self.signer.as_deref(),
        }
    }
}

/// How long all of `check`'s DNS look-ups together may take.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The From domain's SPF, DKIM and DMARC findings, verdict last; a single warning when
/// DNS cannot be used at all or the look-ups take longer than `DEADLINE`.
pub async fn assess(config: &Config, settings: &Settings) -> Vec<Finding> {
    let auth = match dns::authenticator(settings.dns_server) {
        Ok(a) => a,
        Err(e) => return vec![records::unavailable(format!("{e:#}"))],
    };
    let target = settings.target(config);
    match tokio::time::timeout(DEADLINE, records::assess(&auth, &target)).await {
        Ok(findings) => findings,
        Err(_) => vec![records::unavailable(format!(
            "the DNS look-ups took longer than {} s",
            DEADLINE.as_secs()
        ))],
    }
}

/// The deliverability warnings for the send confirmation to repeat, one line each (empty
/// when all is in order). Blocks on DNS (at most `DEADLINE`); call it outside async code.
pub fn confirmation_warnings(config: &Config) -> Vec<String> {
    let settings = match Settings::from_config(config) {
        Ok(s) => s,
        Err(e) => return vec![format!("{e:#}")],
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return vec![format!("deliverability not checked: {e}")],
    };
    records::warning_lines(&runtime.block_on(assess(config, &settings)))
}

/// The send confirmation's question with the deliverability warnings after it, each on a
/// line of its own, so that the operator answers knowing them.
pub fn confirmation(question: &str, config: &Config) -> String {
    let mut out = question.to_string();
    for w in confirmation_warnings(config) {
        out.push_str("\n  warning:  ");
        out.push_str(&w);
    }
    out
}
