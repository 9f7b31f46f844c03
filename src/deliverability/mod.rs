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

pub use records::{Finding, Level};

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

impl Provider {
    /// Guesses the provider from the relay's host name.
    pub fn from_host(host: &str) -> Provider {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let under = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
        if under("office365.com") || under("outlook.com") || under("protection.outlook.com") {
            Provider::Microsoft365
        } else if under("gmail.com") || under("google.com") || under("googlemail.com") {
            Provider::Google
        } else if under("amazonaws.com") && host.contains("email-smtp") {
            Provider::Ses
        } else if under("azurecomm.net") {
            Provider::Acs
        } else {
            Provider::Own
        }
    }

    /// The provider by its config name (`[smtp] profile`), None for a name it does not know.
    pub fn from_profile(profile: &str) -> Option<Provider> {
        Some(match profile {
            "microsoft365" => Provider::Microsoft365,
            "google" | "google-relay" => Provider::Google,
            "ses" => Provider::Ses,
            "acs" => Provider::Acs,
            "none" => Provider::Own,
            _ => return None,
        })
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_from_host() {
        assert_eq!(
            Provider::from_host("smtp.office365.com"),
            Provider::Microsoft365
        );
        assert_eq!(
            Provider::from_host("nektab-se.mail.protection.outlook.com"),
            Provider::Microsoft365
        );
        assert_eq!(Provider::from_host("smtp.gmail.com"), Provider::Google);
        assert_eq!(
            Provider::from_host("smtp-relay.gmail.com."),
            Provider::Google
        );
        assert_eq!(
            Provider::from_host("email-smtp.eu-north-1.amazonaws.com"),
            Provider::Ses
        );
        assert_eq!(Provider::from_host("smtp.azurecomm.net"), Provider::Acs);
        assert_eq!(Provider::from_host("smtp.example.se"), Provider::Own);
        assert_eq!(Provider::from_host("127.0.0.1"), Provider::Own);
        // A look-alike is not the provider.
        assert_eq!(Provider::from_host("notoffice365.com"), Provider::Own);
        assert_eq!(Provider::from_host("ec2.amazonaws.com"), Provider::Own);
    }

    #[test]
    fn provider_from_profile() {
        assert_eq!(
            Provider::from_profile("google-relay"),
            Some(Provider::Google)
        );
        assert_eq!(Provider::from_profile("none"), Some(Provider::Own));
        assert_eq!(Provider::from_profile("sendgrid"), None);
    }
}
