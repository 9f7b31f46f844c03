//! The From domain's SPF, DMARC and DKIM records, looked up and judged the way Gmail and
//! Outlook.com judge a bulk sender: SPF must authorize the relay, a DKIM key must be
//! published (and the messages signed with it), and a DMARC record must exist with SPF or
//! DKIM aligned to the From domain. Each gap is a warning naming the record to add.
//!
//! The records are parsed by mail-auth; the relay's own address is evaluated against the
//! domain's SPF policy by mail-auth's SPF evaluation, including every include and redirect.

use std::net::IpAddr;

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::{Alignment, Dmarc, Policy};
use mail_auth::spf::{Macro, Mechanism, Spf, verify::SpfParameters};
use mail_auth::{AuthenticatedMessage, DkimResult, MessageAuthenticator, SpfResult};

use super::Provider;
use super::dns::{self, Txt};
use super::signing::Signer;

/// How a finding stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Meets what Gmail and Outlook.com require.
    Ok,
    /// A gap: the mailing may be rejected or land in spam.
    Warn,
}

/// One line of the deliverability report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `spf`, `dmarc`, `dkim` or `inbox` (the verdict).
    pub topic: &'static str,
    /// Ok or a warning.
    pub level: Level,
    /// What was found, in plain words.
    pub text: String,
    /// The record to add or change, for a warning.
    pub fix: Option<String>,
}

impl Finding {
    fn ok(topic: &'static str, text: impl Into<String>) -> Finding {
        Finding {
            topic,
            level: Level::Ok,
            text: text.into(),
            fix: None,
        }
    }

    fn warn(topic: &'static str, text: impl Into<String>, fix: Option<String>) -> Finding {
        Finding {
            topic,
            level: Level::Warn,
            text: text.into(),
            fix,
        }
    }

    /// The warning as one line for the send confirmation: `spf: TEXT (fix: ...)`.
    pub fn line(&self) -> String {
        match &self.fix {
            Some(fix) => format!("{}: {}; {fix}", self.topic, self.text),
            None => format!("{}: {}", self.topic, self.text),
        }
    }
}

/// What is checked, from the config.
#[derive(Debug)]
pub struct Target<'a> {
    /// The From address's domain.
    pub domain: &'a str,
    /// The From address (the envelope sender SPF is evaluated for).
    pub sender: &'a str,
    /// The relay's host name or address.
    pub relay_host: &'a str,
    /// Who runs the relay.
    pub provider: Provider,
    /// `[dkim] selector`, when set.
    pub selector: Option<&'a str>,
    /// utskick's own signing key, when `[dkim] key_file` is set.
    pub signer: Option<&'a Signer>,
}

/// Everything `check` reports about the domain, verdict last.
pub async fn assess(auth: &MessageAuthenticator, target: &Target<'_>) -> Vec<Finding> {
    let spf = spf(auth, target).await;
    let dkim = dkim(auth, target).await;
    let dmarc = dmarc(auth, target).await;
    let verdict = verdict(&spf, &dkim, &dmarc);
    vec![spf, dkim, dmarc, verdict]
}

/// The warnings of an assessment, one line each, for the send confirmation to repeat.
pub fn warning_lines(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .filter(|f| f.level == Level::Warn && f.topic != "inbox")
        .map(Finding::line)
        .collect()
}

/// The finding when DNS cannot be asked at all.
pub fn unavailable(why: String) -> Finding {
    Finding::warn(
        "dns",
        format!("SPF, DKIM and DMARC not checked: {why}"),
        Some("set [check] dns_server = \"IP:53\" to a resolver that answers".to_string()),
    )
}

/// The one SPF record among a name's TXT records: None when there is none, Err with the
/// count when there are several (a permanent error for every receiver, RFC 7208 4.5).
pub fn spf_record(records: &[String]) -> Result<Option<&str>, usize> {
    let spf: Vec<&str> = records
        .iter()
        .map(String::as_str)
        .filter(|r| {
            let r = r.trim_start().to_ascii_lowercase();
            r == "v=spf1" || r.starts_with("v=spf1 ")
        })
        .collect();
    match spf.len() {
        0 => Ok(None),
        1 => Ok(Some(spf[0])),
        n => Err(n),
    }
}

/// Whether the record has `include:DOMAIN` itself (not through another include).
pub fn has_include(spf: &Spf, domain: &str) -> bool {
    spf.directives.iter().any(|d| match &d.mechanism {
        Mechanism::Include {
            macro_string: Macro::Literal(name),
        } => std::str::from_utf8(name)
            .is_ok_and(|n| n.trim_end_matches('.').eq_ignore_ascii_case(domain)),
        _ => false,
    })
}

/// The record with `mechanism` added before its `all` (or at the end, with `-all` after
/// it, where it has none); a new record when there is none.
pub fn spf_with(record: Option<&str>, mechanism: &str) -> String {
    let Some(record) = record else {
        return format!("v=spf1 {mechanism} -all");
    };
    let terms: Vec<&str> = record.split_whitespace().collect();
    let is_all = |t: &&str| {
        let t = t.trim_start_matches(['+', '-', '~', '?']);
        t.eq_ignore_ascii_case("all") || t.to_ascii_lowercase().starts_with("redirect=")
    };
    match terms.iter().position(is_all) {
        Some(i) => {
            let mut out: Vec<&str> = terms[..i].to_vec();
            out.push(mechanism);
            out.extend_from_slice(&terms[i..]);
            out.join(" ")
        }
        None => format!("{} {mechanism} -all", terms.join(" ")),
    }
}

async fn spf(auth: &MessageAuthenticator, t: &Target<'_>) -> Finding {
    let d = t.domain;
    let records = match dns::txt(auth, d).await {
        Txt::Records(r) => r,
        Txt::Missing => Vec::new(),
        Txt::Failed(e) => {
            return Finding::warn("spf", format!("cannot look up TXT {d}: {e}"), None);
        }
    };
    let record = match spf_record(&records) {
        Ok(r) => r,
        Err(n) => {
            return Finding::warn(
                "spf",
                format!("{d} has {n} SPF records: receivers treat that as no SPF at all"),
                Some(format!("keep one TXT record at {d} starting with v=spf1")),
            );
        }
    };
    let fix = |mechanism: &str| Some(format!("add: {d} TXT \"{}\"", spf_with(record, mechanism)));
    let Some(raw) = record else {
        let text =
            format!("{d} has no SPF record: Gmail and Outlook.com reject bulk mail without SPF");
        return match t.provider.spf_include() {
            Some(inc) => Finding::warn("spf", text, fix(&format!("include:{inc}"))),
            None => Finding::warn("spf", text, own_fix(auth, t, None).await),
        };
    };
    let parsed = match Spf::parse(raw.as_bytes()) {
        Ok(p) => p,
        Err(e) => {
            return Finding::warn(
                "spf",
                format!(
                    "{d}'s SPF record \"{raw}\" does not parse ({e}): receivers treat it as a permanent error"
                ),
                None,
            );
        }
    };
    if let Some(inc) = t.provider.spf_include() {
        if has_include(&parsed, inc) {
            return Finding::ok(
                "spf",
                format!("{d} \"{raw}\" covers {} (include:{inc})", t.provider.name()),
            );
        }
        return Finding::warn(
            "spf",
            format!(
                "{d} \"{raw}\" does not include {}'s servers (include:{inc}): messages through {} fail SPF",
                t.provider.name(),
                t.relay_host
            ),
            fix(&format!("include:{inc}")),
        );
    }
    // An own relay: evaluate the policy for each of its addresses, as a receiver would.
    let ips = match dns::addresses(auth, t.relay_host).await {
        Ok(ips) if !ips.is_empty() => ips,
        Ok(_) | Err(_) => {
            return Finding::warn(
                "spf",
                format!(
                    "{d} has \"{raw}\", but the relay {} does not resolve, so its coverage cannot be checked",
                    t.relay_host
                ),
                None,
            );
        }
    };
    let mut failing = Vec::new();
    for ip in &ips {
        let result = auth
            .verify_spf(SpfParameters::verify_mail_from(
                *ip,
                t.relay_host,
                t.relay_host,
                t.sender,
            ))
            .await
            .result();
        if result != SpfResult::Pass {
            failing.push((*ip, result));
        }
    }
    if failing.is_empty() {
        let list: Vec<String> = ips.iter().map(IpAddr::to_string).collect();
        return Finding::ok(
            "spf",
            format!(
                "{d} \"{raw}\" passes for the relay {} ({})",
                t.relay_host,
                list.join(", ")
            ),
        );
    }
    let shown: Vec<String> = failing
        .iter()
        .map(|(ip, r)| format!("{ip}: {}", r.to_string().to_ascii_lowercase()))
        .collect();
    Finding::warn(
        "spf",
        format!(
            "{d} \"{raw}\" does not pass for the relay {} ({})",
            t.relay_host,
            shown.join(", ")
        ),
        own_fix(auth, t, Some(raw)).await,
    )
}

/// The SPF record that authorizes an own relay's addresses.
async fn own_fix(
    auth: &MessageAuthenticator,
    t: &Target<'_>,
    record: Option<&str>,
) -> Option<String> {
    let ips = dns::addresses(auth, t.relay_host).await.ok()?;
    let mechanisms: Vec<String> = ips
        .iter()
        .map(|ip| match ip {
            IpAddr::V4(v4) => format!("ip4:{v4}"),
            IpAddr::V6(v6) => format!("ip6:{v6}"),
        })
        .collect();
    if mechanisms.is_empty() {
        return None;
    }
    Some(format!(
        "add: {} TXT \"{}\" (the address the relay sends from, if it is not {})",
        t.domain,
        spf_with(record, &mechanisms.join(" ")),
        t.relay_host
    ))
}

/// The selectors to look for: the configured one, or the provider's usual ones.
pub fn selectors<'a>(t: &Target<'a>) -> Vec<&'a str> {
    if let Some(s) = t.signer {
        return vec![s.selector.as_str()];
    }
    match t.selector {
        Some(s) => vec![s],
        None => t.provider.usual_selectors().to_vec(),
    }
}

/// The organizational domain, roughly: the last two labels (right for .se, .com, .nu and
/// most others; a public-suffix list would be needed for co.uk and the like).
pub fn org_domain(domain: &str) -> String {
    let labels: Vec<&str> = domain.trim_end_matches('.').split('.').collect();
    let n = labels.len();
    if n <= 2 {
        domain.to_ascii_lowercase()
    } else {
        labels[n - 2..].join(".").to_ascii_lowercase()
    }
}

/// Whether a DKIM signature by `signing` is aligned with From `from` under `mode`.
pub fn aligned(signing: &str, from: &str, mode: Alignment) -> bool {
    match mode {
        Alignment::Strict => signing.eq_ignore_ascii_case(from),
        Alignment::Relaxed => org_domain(signing) == org_domain(from),
    }
}

async fn dkim(auth: &MessageAuthenticator, t: &Target<'_>) -> Finding {
    if let Some(signer) = t.signer {
        return own_key(auth, t, signer).await;
    }
    let d = t.domain;
    let selectors = selectors(t);
    if selectors.is_empty() {
        return Finding::warn(
            "dkim",
            format!(
                "{}'s DKIM selectors are random tokens: name yours in [dkim] selector to have it checked",
                t.provider.name()
            ),
            None,
        );
    }
    let mut tried = Vec::new();
    for sel in &selectors {
        let name = format!("{sel}._domainkey.{d}");
        match dns::txt(auth, &name).await {
            Txt::Records(records) => {
                for r in &records {
                    match DomainKey::parse(r.as_bytes()) {
                        Ok(_) => {
                            let who = match t.provider {
                                Provider::Own => "; whether your relay signs with it shows in a test message: send --test-to yourself, save it and run check --verify FILE".to_string(),
                                p => format!(" ({} signs with it once DKIM is on for {d})", p.name()),
                            };
                            return Finding::ok("dkim", format!("key published at {name}{who}"));
                        }
                        Err(mail_auth::Error::Dkim(DkimError::RevokedPublicKey)) => {
                            return Finding::warn(
                                "dkim",
                                format!(
                                    "the key at {name} is revoked (empty p=): signatures with it fail"
                                ),
                                Some(dkim_fix(t)),
                            );
                        }
                        Err(_) => {}
                    }
                }
                tried.push(format!("{name} (no valid key)"));
            }
            Txt::Missing => tried.push(name),
            Txt::Failed(e) => tried.push(format!("{name} (lookup failed: {e})")),
        }
    }
    Finding::warn(
        "dkim",
        format!(
            "no DKIM key at {}: Gmail and Outlook.com reject bulk mail that is not DKIM-signed",
            tried.join(", ")
        ),
        Some(dkim_fix(t)),
    )
}

/// How to get a DKIM key published, per provider.
fn dkim_fix(t: &Target<'_>) -> String {
    let d = t.domain;
    match t.provider {
        Provider::Microsoft365 => format!(
            "Microsoft 365 signs with your tenant's onmicrosoft.com domain until DKIM is switched on for {d}: publish CNAME selector1._domainkey.{d} -> selector1-{}._domainkey.TENANT.onmicrosoft.com (and selector2 likewise), then enable DKIM for {d} in the Defender portal (Email authentication settings)",
            d.replace('.', "-")
        ),
        Provider::Google => format!(
            "generate the key in the Google Admin console (Apps > Google Workspace > Gmail > Authenticate email), publish it as TXT google._domainkey.{d}, then start authentication"
        ),
        Provider::Ses => format!(
            "verify {d} with Easy DKIM in the SES console and publish its three CNAME records"
        ),
        Provider::Acs => format!(
            "add {d} as a custom domain in Azure Communication Services and publish its two selector CNAME records"
        ),
        Provider::Own => format!(
            "have the relay sign, or let utskick sign: generate a key (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out dkim.pem; chmod 600 dkim.pem), set [dkim] selector and key_file, and run check again for the TXT record to publish at SELECTOR._domainkey.{d}"
        ),
    }
}

/// utskick signs: the key must be published at the selector and be the public half of
/// key_file. Proven by signing a probe message and verifying it against DNS.
async fn own_key(auth: &MessageAuthenticator, t: &Target<'_>, signer: &Signer) -> Finding {
    let name = signer.dns_name();
    let fix = Some(format!("add: {name} TXT \"{}\"", signer.dns_record()));
    match dns::txt(auth, &name).await {
        Txt::Missing => {
            return Finding::warn(
                "dkim",
                format!(
                    "utskick signs with {} ({}), but no key is published at {name}: every signature fails",
                    signer.key_file.display(),
                    signer.algorithm()
                ),
                fix,
            );
        }
        Txt::Failed(e) => {
            return Finding::warn("dkim", format!("cannot look up TXT {name}: {e}"), None);
        }
        Txt::Records(_) => {}
    }
    let probe = format!(
        "From: <{}>\r\nTo: <probe@{}>\r\nSubject: utskick check\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\nMessage-ID: <check@{}>\r\n\r\nprobe\r\n",
        t.sender, t.domain, t.domain
    );
    let signed = match signer.sign(probe.as_bytes()) {
        Ok(s) => s,
        Err(e) => return Finding::warn("dkim", format!("{e:#}"), None),
    };
    let Some(message) = AuthenticatedMessage::parse(&signed) else {
        return Finding::warn("dkim", "the signed probe message does not parse", None);
    };
    let results = auth.verify_dkim(&message).await;
    match results.first().map(|r| r.result()) {
        Some(DkimResult::Pass) => {
            let alignment = if aligned(&signer.domain, t.domain, Alignment::Relaxed) {
                String::new()
            } else {
                format!(
                    "; but d={} is not aligned with the From domain {}: DMARC will not count it",
                    signer.domain, t.domain
                )
            };
            let text = format!(
                "utskick signs ({}, d={} s={}) and the key at {name} verifies its signatures{alignment}",
                signer.algorithm(),
                signer.domain,
                signer.selector
            );
            if !alignment.is_empty() {
                Finding::warn(
                    "dkim",
                    text,
                    Some(format!("set [dkim] domain = \"{}\"", t.domain)),
                )
            } else if signer.algorithm() == "Ed25519" {
                // RFC 8463 signatures are not verified by every receiver; Gmail and
                // Outlook.com have not announced that they count them.
                Finding::warn(
                    "dkim",
                    format!("{text}; but Gmail and Outlook.com may not count an Ed25519 signature"),
                    Some("sign with an RSA key: openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out dkim.pem".to_string()),
                )
            } else if alignment.is_empty() {
                Finding::ok("dkim", text)
            } else {
                Finding::warn(
                    "dkim",
                    text,
                    Some(format!("set [dkim] domain = \"{}\"", t.domain)),
                )
            }
        }
        other => Finding::warn(
            "dkim",
            format!(
                "the key published at {name} does not verify what {} signs ({}): is it the public half of that key?",
                signer.key_file.display(),
                other.map_or("no result".to_string(), |r| format!("{r:?}"))
            ),
            fix,
        ),
    }
}

/// Where a domain's DMARC policy is: its own `_dmarc` record, or else its organizational
/// domain's (RFC 7489 6.6.3), whose `sp` then applies.
async fn dmarc_record(
    auth: &MessageAuthenticator,
    domain: &str,
) -> Result<Option<(String, String)>, String> {
    let mut names = vec![format!("_dmarc.{domain}")];
    let org = org_domain(domain);
    if org != domain.to_ascii_lowercase() {
        names.push(format!("_dmarc.{org}"));
    }
    for name in names {
        match dns::txt(auth, &name).await {
            Txt::Records(records) => {
                if let Some(r) = records
                    .iter()
                    .find(|r| r.trim_start().to_ascii_lowercase().starts_with("v=dmarc1"))
                {
                    return Ok(Some((name, r.clone())));
                }
            }
            Txt::Missing => {}
            Txt::Failed(e) => return Err(format!("cannot look up TXT {name}: {e}")),
        }
    }
    Ok(None)
}

fn policy_name(p: Policy) -> &'static str {
    match p {
        Policy::None => "none",
        Policy::Quarantine => "quarantine",
        Policy::Reject => "reject",
        Policy::Unspecified => "unspecified",
    }
}

fn alignment_name(a: Alignment) -> &'static str {
    match a {
        Alignment::Relaxed => "relaxed",
        Alignment::Strict => "strict",
    }
}

/// Judges a parsed DMARC record for the From domain.
pub fn judge_dmarc(d: &str, name: &str, raw: &str, dmarc: &Dmarc, t: &Target<'_>) -> Finding {
    let policy = if name.eq_ignore_ascii_case(&format!("_dmarc.{d}")) {
        dmarc.p
    } else {
        dmarc.sp
    };
    let mut text = format!(
        "{name} \"{raw}\": policy {}, alignment dkim {} spf {}",
        policy_name(policy),
        alignment_name(dmarc.adkim),
        alignment_name(dmarc.aspf)
    );
    if let Some(signer) = t.signer
        && !aligned(&signer.domain, d, dmarc.adkim)
    {
        text.push_str(&format!(
            "; utskick signs as d={}, which this alignment does not accept for {d}",
            signer.domain
        ));
        return Finding::warn("dmarc", text, Some(format!("set [dkim] domain = \"{d}\"")));
    }
    match policy {
        Policy::None | Policy::Unspecified => {
            text.push_str(": meets Gmail's and Outlook.com's minimum, but asks receivers to do nothing with mail that fails, so fraudsters can imitate this very notice");
            Finding::warn(
                "dmarc",
                text,
                Some(format!(
                    "once SPF and DKIM pass, change it to: {name} TXT \"{}\"",
                    with_policy(raw, "quarantine")
                )),
            )
        }
        Policy::Quarantine | Policy::Reject => Finding::ok("dmarc", text),
    }
}

/// The DMARC record with `p=` set to `policy`.
pub fn with_policy(raw: &str, policy: &str) -> String {
    let tags: Vec<String> = raw
        .split(';')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| {
            if t.to_ascii_lowercase().starts_with("p=") {
                format!("p={policy}")
            } else {
                t.to_string()
            }
        })
        .collect();
    tags.join("; ")
}

async fn dmarc(auth: &MessageAuthenticator, t: &Target<'_>) -> Finding {
    let d = t.domain;
    match dmarc_record(auth, d).await {
        Err(e) => Finding::warn("dmarc", e, None),
        Ok(None) => Finding::warn(
            "dmarc",
            format!("{d} has no DMARC record: Gmail and Outlook.com reject bulk mail without one"),
            Some(format!(
                "add: _dmarc.{d} TXT \"v=DMARC1; p=none; rua=mailto:dmarc@{d}\" (p=quarantine once SPF and DKIM pass)"
            )),
        ),
        Ok(Some((name, raw))) => match Dmarc::parse(raw.as_bytes()) {
            Ok(dmarc) => judge_dmarc(d, &name, &raw, &dmarc, t),
            Err(e) => Finding::warn(
                "dmarc",
                format!("{name} \"{raw}\" does not parse ({e}): receivers ignore it"),
                Some(format!(
                    "replace it with: _dmarc.{d} TXT \"v=DMARC1; p=none; rua=mailto:dmarc@{d}\""
                )),
            ),
        },
    }
}

/// What Gmail and Outlook.com will make of it, in one line.
pub fn verdict(spf: &Finding, dkim: &Finding, dmarc: &Finding) -> Finding {
    let mut gaps = Vec::new();
    if spf.level == Level::Warn {
        gaps.push("SPF");
    }
    if dkim.level == Level::Warn {
        gaps.push("DKIM");
    }
    // p=none meets the requirement; only a missing or broken record is a gap here.
    if dmarc.level == Level::Warn && !dmarc.text.contains("policy none") {
        gaps.push("DMARC");
    }
    if gaps.is_empty() {
        Finding::ok(
            "inbox",
            "Gmail and Outlook.com's rules for bulk senders (SPF, DKIM, aligned DMARC) are met",
        )
    } else {
        Finding::warn(
            "inbox",
            format!(
                "Gmail and Outlook.com will reject or junk this mailing: {} not in order (see above); a send --test-to a Gmail and an Outlook.com address and check --verify show the result",
                gaps.join(", ")
            ),
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_spf_record_among_txt() {
        let r = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(spf_record(&r(&["google-site-verification=x"])), Ok(None));
        assert_eq!(
            spf_record(&r(&["x", "v=spf1 -all"])),
            Ok(Some("v=spf1 -all"))
        );
        assert_eq!(spf_record(&r(&["v=spf1 a -all", "v=spf1 mx -all"])), Err(2));
        assert_eq!(spf_record(&r(&["v=spf10 -all"])), Ok(None));
    }

    #[test]
    fn include_is_found_only_literally() {
        let spf = Spf::parse(b"v=spf1 ip4:192.0.2.1 include:spf.protection.outlook.com -all")
            .expect("parses");
        assert!(has_include(&spf, "spf.protection.outlook.com"));
        assert!(!has_include(&spf, "_spf.google.com"));
    }

    #[test]
    fn spf_suggestion_goes_before_all() {
        assert_eq!(
            spf_with(Some("v=spf1 mx ~all"), "include:_spf.google.com"),
            "v=spf1 mx include:_spf.google.com ~all"
        );
        assert_eq!(
            spf_with(Some("v=spf1 mx"), "ip4:192.0.2.1"),
            "v=spf1 mx ip4:192.0.2.1 -all"
        );
        assert_eq!(
            spf_with(None, "include:amazonses.com"),
            "v=spf1 include:amazonses.com -all"
        );
        assert_eq!(
            spf_with(Some("v=spf1 redirect=_spf.example.se"), "ip4:192.0.2.1"),
            "v=spf1 ip4:192.0.2.1 redirect=_spf.example.se"
        );
    }

    #[test]
    fn alignment() {
        assert!(aligned("example.se", "example.se", Alignment::Strict));
        assert!(!aligned("mail.example.se", "example.se", Alignment::Strict));
        assert!(aligned("mail.example.se", "example.se", Alignment::Relaxed));
        assert!(!aligned(
            "tenant.onmicrosoft.com",
            "example.se",
            Alignment::Relaxed
        ));
        assert_eq!(org_domain("news.mail.example.se"), "example.se");
    }

    #[test]
    fn dmarc_policy_is_replaced() {
        assert_eq!(
            with_policy("v=DMARC1; p=none; rua=mailto:d@example.se", "quarantine"),
            "v=DMARC1; p=quarantine; rua=mailto:d@example.se"
        );
    }

    fn target() -> Target<'static> {
        Target {
            domain: "example.se",
            sender: "dataskydd@example.se",
            relay_host: "smtp.office365.com",
            provider: Provider::Microsoft365,
            selector: None,
            signer: None,
        }
    }

    /// The finding for From `domain` whose policy is `raw`, found at `name`.
    fn judged(domain: &str, name: &str, raw: &str) -> Finding {
        let dmarc = Dmarc::parse(raw.as_bytes()).expect("parses");
        judge_dmarc(domain, name, raw, &dmarc, &target())
    }

    #[test]
    fn dmarc_judged() {
        let f = judged("example.se", "_dmarc.example.se", "v=DMARC1; p=none");
        assert_eq!(f.level, Level::Warn);
        assert!(f.text.contains("policy none"), "{f:?}");
        assert!(f.fix.as_deref().is_some_and(|x| x.contains("p=quarantine")));
        let f = judged(
            "example.se",
            "_dmarc.example.se",
            "v=DMARC1; p=reject; adkim=s",
        );
        assert_eq!(f.level, Level::Ok, "{f:?}");
        assert!(
            f.text
                .contains("policy reject, alignment dkim strict spf relaxed"),
            "{f:?}"
        );
        // A subdomain without its own record gets the organizational domain's sp.
        let f = judged(
            "news.example.se",
            "_dmarc.example.se",
            "v=DMARC1; p=reject; sp=none",
        );
        assert!(f.text.contains("policy none"), "{f:?}");
    }

    #[test]
    fn verdict_names_the_gaps() {
        let ok = |t| Finding::ok(t, "fine");
        let warn = |t, text: &str| Finding::warn(t, text, None);
        assert_eq!(
            verdict(&ok("spf"), &ok("dkim"), &ok("dmarc")).level,
            Level::Ok
        );
        // p=none is no gap for the verdict.
        assert_eq!(
            verdict(
                &ok("spf"),
                &ok("dkim"),
                &warn("dmarc", "x: policy none, ...")
            )
            .level,
            Level::Ok
        );
        let v = verdict(&warn("spf", "no"), &ok("dkim"), &warn("dmarc", "no record"));
        assert_eq!(v.level, Level::Warn);
        assert!(v.text.contains("SPF, DMARC not in order"), "{v:?}");
    }

    #[test]
    fn warning_lines_leave_out_the_verdict_and_the_good() {
        let f = vec![
            Finding::ok("spf", "fine"),
            Finding::warn("dkim", "no key", Some("add: x".into())),
            Finding::warn("inbox", "bad", None),
        ];
        assert_eq!(warning_lines(&f), ["dkim: no key; add: x"]);
    }
}
