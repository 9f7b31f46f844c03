//! `check`'s deliverability lines against a DNS server on loopback serving good and broken
//! SPF, DMARC and DKIM records; DKIM signing with keys made by openssl, verified by an
//! independent verifier (dkimpy, from PyPI) against the key published on that server;
//! `check --verify`; and the links in the templates.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;

use crate::support::daemon::{find_program, unavailable};
use crate::support::dns::{DnsServer, txt};
use crate::support::smtp_server::SmtpServer;
use crate::support::testenv::{Run, TestEnv};

/// A valid DKIM key record (the public half of an Ed25519 key made with openssl).
const SOME_KEY: &str = "v=DKIM1; k=ed25519; p=VvDrt2xGnBSDuVUT2nf59NDoebB5WuB/ESZJ9FS5GM8=";

/// The example mailing, through a plain loopback relay, asking the DNS server `dns`.
fn mailing(server: &SmtpServer, dns: &DnsServer) -> TestEnv {
    let env = TestEnv::example();
    env.relay(server.port());
    ask(&env, dns);
    env
}

/// Points `[check] dns_server` at `dns`.
fn ask(env: &TestEnv, dns: &DnsServer) {
    env.set("check", "dns_server", &format!("\"{}\"", dns.addr()));
}

/// The zone of example.se from (name, TXT value) pairs.
fn zone(records: &[(&str, &str)]) -> DnsServer {
    let lines: Vec<String> = records
        .iter()
        .map(|(name, value)| format!("{name} IN TXT {}", txt(value)))
        .collect();
    DnsServer::start("example.se", &lines.join("\n"))
}

/// The line of `check` for `step`, and the fix line under it (if any).
fn step(run: &Run, step: &str) -> (String, Option<String>) {
    let lines: Vec<&str> = run.stdout.lines().collect();
    let i = lines
        .iter()
        .position(|l| l.split_whitespace().next() == Some(step))
        .unwrap_or_else(|| panic!("no {step} line\n{}", run.all()));
    let fix = lines
        .get(i + 1)
        .filter(|l| l.starts_with("   "))
        .map(|l| l.trim().to_string());
    (lines[i].to_string(), fix)
}

fn ok(run: &Run, name: &str) -> String {
    let (line, _) = step(run, name);
    assert!(
        line.starts_with(&format!("{name:<10} ok ")),
        "{name} not ok: {line}\n{}",
        run.all()
    );
    line
}

fn warn(run: &Run, name: &str) -> (String, String) {
    let (line, fix) = step(run, name);
    assert!(
        line.starts_with(&format!("{name:<10} warn ")),
        "{name} not a warning: {line}\n{}",
        run.all()
    );
    (line, fix.unwrap_or_default())
}

const GOOD_SPF: (&str, &str) = ("@", "v=spf1 ip4:127.0.0.1 -all");
const GOOD_DMARC: (&str, &str) = (
    "_dmarc",
    "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.se",
);

#[test]
fn good_records_pass_for_an_own_relay() {
    let server = SmtpServer::plain();
    let dns = zone(&[GOOD_SPF, GOOD_DMARC, ("default._domainkey", SOME_KEY)]);
    let env = mailing(&server, &dns);
    let run = env.run(&["check"]);
    run.expect_code(0);
    let spf = ok(&run, "spf");
    assert!(
        spf.contains("\"v=spf1 ip4:127.0.0.1 -all\" passes for the relay 127.0.0.1"),
        "{spf}"
    );
    let dkim = ok(&run, "dkim");
    assert!(
        dkim.contains("key published at default._domainkey.example.se"),
        "{dkim}"
    );
    let dmarc = ok(&run, "dmarc");
    assert!(
        dmarc.contains("policy quarantine, alignment dkim relaxed spf relaxed"),
        "{dmarc}"
    );
    let inbox = ok(&run, "inbox");
    assert!(inbox.contains("Gmail and Outlook.com"), "{inbox}");
    assert!(server.received().is_empty(), "check sent a message");
}

#[test]
fn missing_dmarc_is_nxdomain_and_a_warning_with_the_record_to_add() {
    let server = SmtpServer::plain();
    let dns = zone(&[GOOD_SPF, ("default._domainkey", SOME_KEY)]);
    let env = mailing(&server, &dns);
    let run = env.run(&["check"]);
    // A gap in DNS is a warning: a send would still start.
    run.expect_code(0);
    let (line, fix) = warn(&run, "dmarc");
    assert!(
        line.contains(
            "example.se has no DMARC record: Gmail and Outlook.com reject bulk mail without one"
        ),
        "{line}"
    );
    assert_eq!(
        fix,
        "add: _dmarc.example.se TXT \"v=DMARC1; p=none; rua=mailto:dmarc@example.se\" (p=quarantine once SPF and DKIM pass)"
    );
    let (inbox, _) = warn(&run, "inbox");
    assert!(inbox.contains("DMARC not in order"), "{inbox}");
}

#[test]
fn dmarc_p_none_is_a_warning_to_quarantine() {
    let server = SmtpServer::plain();
    let dns = zone(&[
        GOOD_SPF,
        ("_dmarc", "v=DMARC1; p=none; rua=mailto:dmarc@example.se"),
        ("default._domainkey", SOME_KEY),
    ]);
    let env = mailing(&server, &dns);
    let run = env.run(&["check"]);
    run.expect_code(0);
    let (line, fix) = warn(&run, "dmarc");
    assert!(line.contains("policy none"), "{line}");
    assert!(
        line.contains("fraudsters can imitate this very notice"),
        "{line}"
    );
    assert_eq!(
        fix,
        "once SPF and DKIM pass, change it to: _dmarc.example.se TXT \"v=DMARC1; p=quarantine; rua=mailto:dmarc@example.se\""
    );
    // p=none meets the bulk-sender minimum.
    ok(&run, "inbox");
}

#[test]
fn spf_without_the_relays_include_is_a_warning() {
    let server = SmtpServer::plain();
    let dns = zone(&[
        ("@", "v=spf1 include:_spf.google.com ~all"),
        GOOD_DMARC,
        ("selector1._domainkey", SOME_KEY),
    ]);
    let env = mailing(&server, &dns);
    env.set("smtp", "profile", "\"microsoft365\"");
    let run = env.run(&["check"]);
    run.expect_code(0);
    let (line, fix) = warn(&run, "spf");
    assert!(
        line.contains(
            "does not include Microsoft 365's servers (include:spf.protection.outlook.com)"
        ),
        "{line}"
    );
    assert_eq!(
        fix,
        "add: example.se TXT \"v=spf1 include:_spf.google.com include:spf.protection.outlook.com ~all\""
    );
    // Microsoft 365's selector1 is looked for, and found.
    let dkim = ok(&run, "dkim");
    assert!(dkim.contains("selector1._domainkey.example.se"), "{dkim}");
    let (inbox, _) = warn(&run, "inbox");
    assert!(inbox.contains("SPF not in order"), "{inbox}");

    // With the include, SPF is in order.
    let dns = zone(&[
        ("@", "v=spf1 include:spf.protection.outlook.com -all"),
        GOOD_DMARC,
        ("selector1._domainkey", SOME_KEY),
    ]);
    ask(&env, &dns);
    let run = env.run(&["check"]);
    let spf = ok(&run, "spf");
    assert!(spf.contains("covers Microsoft 365"), "{spf}");
    ok(&run, "inbox");
}

#[test]
fn spf_that_fails_for_the_own_relays_address_names_it() {
    let server = SmtpServer::plain();
    let dns = zone(&[
        ("@", "v=spf1 ip4:192.0.2.10 -all"),
        GOOD_DMARC,
        ("default._domainkey", SOME_KEY),
    ]);
    let env = mailing(&server, &dns);
    let run = env.run(&["check"]);
    run.expect_code(0);
    let (line, fix) = warn(&run, "spf");
    assert!(
        line.contains("does not pass for the relay 127.0.0.1 (127.0.0.1: fail)"),
        "{line}"
    );
    assert!(
        fix.starts_with("add: example.se TXT \"v=spf1 ip4:192.0.2.10 ip4:127.0.0.1 -all\""),
        "{fix}"
    );
    // No SPF record at all.
    let dns = zone(&[GOOD_DMARC, ("default._domainkey", SOME_KEY)]);
    ask(&env, &dns);
    let run = env.run(&["check"]);
    let (line, fix) = warn(&run, "spf");
    assert!(line.contains("example.se has no SPF record"), "{line}");
    assert!(fix.contains("\"v=spf1 ip4:127.0.0.1 -all\""), "{fix}");
}

#[test]
fn missing_dkim_key_names_the_selectors_tried() {
    let server = SmtpServer::plain();
    let dns = zone(&[GOOD_SPF, GOOD_DMARC]);
    let env = mailing(&server, &dns);
    env.set("smtp", "profile", "\"microsoft365\"");
    let run = env.run(&["check"]);
    run.expect_code(0);
    let (line, fix) = warn(&run, "dkim");
    assert!(
        line.contains(
            "no DKIM key at selector1._domainkey.example.se, selector2._domainkey.example.se"
        ),
        "{line}"
    );
    assert!(
        fix.contains("onmicrosoft.com") && fix.contains("CNAME selector1._domainkey.example.se"),
        "{fix}"
    );
    // [dkim] selector names the one to look for.
    env.set("dkim", "selector", "\"utskick2026\"");
    let run = env.run(&["check"]);
    let (line, _) = warn(&run, "dkim");
    assert!(
        line.contains("no DKIM key at utskick2026._domainkey.example.se:"),
        "{line}"
    );
}

/// openssl's private key in `dir` (mode 0600) and the DKIM record of its public half,
/// made with openssl too.
fn openssl_key(dir: &Path, algorithm: &str) -> Option<(PathBuf, String)> {
    find_program("openssl").or_else(|| unavailable("openssl is not installed"))?;
    let path = dir.join(format!("dkim-{algorithm}.pem"));
    let mut genpkey = Command::new("openssl");
    genpkey
        .args(["genpkey", "-algorithm", algorithm, "-out"])
        .arg(&path);
    if algorithm == "RSA" {
        genpkey.args(["-pkeyopt", "rsa_keygen_bits:2048"]);
    }
    let out = genpkey.output().expect("runs openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&path)
        .output()
        .expect("runs openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let record = if algorithm == "RSA" {
        format!("v=DKIM1; k=rsa; p={}", b64(&out.stdout))
    } else {
        // RFC 8463: the raw 32-byte key, the end of the SubjectPublicKeyInfo.
        format!(
            "v=DKIM1; k=ed25519; p={}",
            b64(&out.stdout[out.stdout.len() - 32..])
        )
    };
    Some((path, record))
}

/// dkimpy's verdict on each of `emls` ("pass" or "fail"), reading the key from the
/// loopback DNS server; None (skip, or a failure under CI) when Python or dkimpy is missing.
fn dkimpy(dns: &DnsServer, emls: &[PathBuf]) -> Option<Vec<String>> {
    const SNIPPET: &str = r#"
import sys, dkim, dns.resolver
host, port = sys.argv[1], int(sys.argv[2])
r = dns.resolver.Resolver(configure=False)
r.nameservers = [host]
r.port = port
def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    try:
        a = r.resolve(name, "TXT", tcp=True, lifetime=timeout)
    except dns.resolver.NXDOMAIN:
        return None
    return b"".join(a[0].strings)
for path in sys.argv[3:]:
    print("pass" if dkim.verify(open(path, "rb").read(), dnsfunc=dnsfunc) else "fail")
"#;
    let python = find_program("python3").or_else(|| unavailable("python3 is not installed"))?;
    let probe = Command::new(&python)
        .args(["-c", "import dkim, dns.resolver, nacl.signing"])
        .output()
        .expect("runs python3");
    if !probe.status.success() {
        return unavailable(
            "dkimpy is not installed (python3 -m pip install dkimpy dnspython pynacl)",
        );
    }
    let out = Command::new(&python)
        .args(["-c", SNIPPET])
        .arg(dns.addr().ip().to_string())
        .arg(dns.addr().port().to_string())
        .args(emls)
        .output()
        .expect("runs dkimpy");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdicts: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(verdicts.len(), emls.len(), "{verdicts:?}");
    Some(verdicts)
}

fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    files.sort();
    files
}

/// Signs with an openssl key of `algorithm`: check gives the record to publish (the one
/// openssl derives), then, published, says the signatures verify; every previewed and
/// every sent (and archived) message is signed, and dkimpy verifies them.
fn signs_and_verifies(algorithm: &str, label: &str) {
    let env = TestEnv::example();
    let Some((key, record)) = openssl_key(env.root(), algorithm) else {
        return;
    };
    let selector = format!("{}2026", algorithm.to_ascii_lowercase());
    env.set("dkim", "selector", &format!("\"{selector}\""));
    env.set(
        "dkim",
        "key_file",
        &format!("{:?}", key.display().to_string()),
    );
    let server = SmtpServer::plain();
    env.relay(server.port());

    // Not yet published: the warning gives exactly the record openssl derives.
    let empty = zone(&[GOOD_SPF, GOOD_DMARC]);
    ask(&env, &empty);
    let run = env.run(&["check"]);
    run.expect_code(0);
    let (line, fix) = warn(&run, "dkim");
    assert!(
        line.contains(&format!(
            "no key is published at {selector}._domainkey.example.se"
        )),
        "{line}"
    );
    assert_eq!(
        fix,
        format!("add: {selector}._domainkey.example.se TXT \"{record}\"")
    );

    // Published: check proves the key signs what verifies against it.
    let name = format!("{selector}._domainkey");
    let dns = zone(&[GOOD_SPF, GOOD_DMARC, (name.as_str(), record.as_str())]);
    ask(&env, &dns);
    let run = env.run(&["check"]);
    run.expect_code(0);
    let signs = format!(
        "utskick signs ({label}, d=example.se s={selector}) and the key at {selector}._domainkey.example.se verifies its signatures"
    );
    if label == "RSA" {
        let dkim = ok(&run, "dkim");
        assert!(dkim.contains(&signs), "{dkim}");
        ok(&run, "inbox");
    } else {
        // Verified, but not every receiver counts Ed25519: a warning towards RSA.
        let (dkim, fix) = warn(&run, "dkim");
        assert!(dkim.contains(&signs), "{dkim}");
        assert!(
            dkim.contains("may not count an Ed25519 signature"),
            "{dkim}"
        );
        assert!(fix.contains("-algorithm RSA"), "{fix}");
    }

    // Preview: every message signed, and dkimpy verifies each.
    env.run(&["preview"]).expect_code(0);
    let previews = eml_files(&env.path("preview"));
    assert!(!previews.is_empty());
    for eml in &previews {
        let text = std::fs::read_to_string(eml).expect("read eml");
        assert!(
            text.starts_with("DKIM-Signature: v=1;"),
            "{}",
            eml.display()
        );
    }
    // The same verifier refuses a message changed after signing.
    let tampered = env.path("tampered.eml");
    let text = std::fs::read_to_string(&previews[0]).expect("read");
    std::fs::write(&tampered, text.replacen("Subject: ", "Subject: FW: ", 1)).expect("write");
    let mut files = previews.clone();
    files.push(tampered);
    let Some(verdicts) = dkimpy(&dns, &files) else {
        return;
    };
    let mut want = vec!["pass"; previews.len()];
    want.push("fail");
    assert_eq!(verdicts, want, "dkimpy on {files:?}");

    // Send with an archive: what the relay got is what was archived, signed, verifying.
    env.set("journal", "archive", "\"sent\"");
    env.run(&["send", "--yes"]).expect_code(0);
    let received = server.received();
    assert_eq!(received.len(), previews.len());
    let archived = eml_files(&env.path("sent"));
    assert_eq!(archived.len(), received.len());
    for eml in &archived {
        let bytes = std::fs::read(eml).expect("read archive");
        assert!(
            bytes.starts_with(b"DKIM-Signature: v=1;"),
            "{}",
            eml.display()
        );
        assert!(
            received.iter().any(|r| r.data == bytes),
            "{} is not what the relay received",
            eml.display()
        );
    }
    let verdicts = dkimpy(&dns, &archived).unwrap_or_default();
    assert_eq!(
        verdicts,
        vec!["pass"; archived.len()],
        "dkimpy on {archived:?}"
    );
}

#[test]
fn rsa_2048_key_from_openssl_signs_and_dkimpy_verifies() {
    signs_and_verifies("RSA", "RSA");
}

#[test]
fn ed25519_key_from_openssl_signs_and_dkimpy_verifies() {
    signs_and_verifies("ed25519", "Ed25519");
}

#[test]
fn a_key_file_others_can_read_stops_preview_and_check() {
    let env = TestEnv::example();
    let Some((key, _)) = openssl_key(env.root(), "ed25519") else {
        return;
    };
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    env.set("dkim", "selector", "\"s1\"");
    env.set(
        "dkim",
        "key_file",
        &format!("{:?}", key.display().to_string()),
    );
    let run = env.run(&["preview"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("is mode 644") && run.stderr.contains("chmod 600"),
        "{}",
        run.all()
    );
    assert!(
        !env.path("preview").join("index.html").exists(),
        "preview wrote files"
    );
    let run = env.run(&["check"]);
    run.expect_code(2);
    let (line, _) = step(&run, "dkim");
    assert!(line.contains("FAIL") && line.contains("mode 644"), "{line}");
}

#[test]
fn verify_reports_the_signature_and_the_receivers_results() {
    let env = TestEnv::example();
    let Some((key, record)) = openssl_key(env.root(), "RSA") else {
        return;
    };
    env.set("dkim", "selector", "\"rsa1\"");
    env.set(
        "dkim",
        "key_file",
        &format!("{:?}", key.display().to_string()),
    );
    let dns = zone(&[GOOD_SPF, GOOD_DMARC, ("rsa1._domainkey", record.as_str())]);
    ask(&env, &dns);
    env.run(&["preview", "--limit", "1"]).expect_code(0);
    let eml = eml_files(&env.path("preview")).remove(0);
    let signed = std::fs::read(&eml).expect("read");
    // As Gmail delivers it: its own headers in front of the message.
    let mut received = b"Authentication-Results: mx.google.com;\r\n       dkim=pass header.i=@example.se header.s=rsa1 header.b=abc;\r\n       spf=pass (google.com: domain of dataskydd@example.se designates 127.0.0.1 as permitted sender) smtp.mailfrom=dataskydd@example.se;\r\n       dmarc=pass (p=QUARANTINE sp=QUARANTINE dis=NONE) header.from=example.se\r\n".to_vec();
    received.extend_from_slice(&signed);
    env.write("received.eml", &received);
    let run = env.run(&["check", "--verify", "received.eml"]);
    run.expect_code(0);
    let signature = ok(&run, "signature");
    assert!(
        signature.contains("signature d=example.se s=rsa1 verifies"),
        "{signature}"
    );
    for (mechanism, detail) in [
        ("spf", "smtp.mailfrom=dataskydd@example.se"),
        ("dkim", "header.i=@example.se"),
        ("dmarc", "header.from=example.se"),
    ] {
        let line = ok(&run, mechanism);
        assert!(
            line.contains(&format!("mx.google.com reports {mechanism}=pass")),
            "{line}"
        );
        assert!(line.contains(detail), "{line}");
    }

    // An unsigned message as Outlook.com files it: no signature, softfail, dmarc fail.
    let unsigned = "Authentication-Results: spf=softfail (sender IP is 192.0.2.10)\r\n smtp.mailfrom=example.se; dkim=none (message not signed)\r\n header.d=none;dmarc=fail action=none header.from=example.se;compauth=fail\r\n reason=001\r\nFrom: NEKTAB <dataskydd@example.se>\r\nTo: test@outlook.com\r\nSubject: Test\r\nDate: Tue, 01 Dec 2026 08:00:00 +0000\r\nMessage-ID: <t@example.se>\r\n\r\nHej\r\n";
    env.write("outlook.eml", unsigned);
    let run = env.run(&["check", "--verify", "outlook.eml"]);
    run.expect_code(1);
    let (signature, fix) = warn(&run, "signature");
    assert!(
        signature.contains("the message has no DKIM-Signature"),
        "{signature}"
    );
    assert!(fix.contains("[dkim] key_file"), "{fix}");
    let (spf, _) = warn(&run, "spf");
    assert!(
        spf.contains("the receiver reports spf=softfail (smtp.mailfrom=example.se)"),
        "{spf}"
    );
    let (dkim, _) = warn(&run, "dkim");
    assert!(dkim.contains("dkim=none"), "{dkim}");
    let (dmarc, _) = warn(&run, "dmarc");
    assert!(dmarc.contains("dmarc=fail"), "{dmarc}");
    assert!(
        run.stderr.contains("outlook.eml does not pass"),
        "{}",
        run.all()
    );
}

#[test]
fn links_to_strangers_shorteners_and_trackers_are_preflight_warnings() {
    let server = SmtpServer::plain();
    let dns = zone(&[GOOD_SPF, GOOD_DMARC, ("default._domainkey", SOME_KEY)]);
    let env = mailing(&server, &dns);
    // The shipped templates link only to the authorities.
    let run = env.run(&["check"]);
    let links = ok(&run, "links");
    assert!(
        links.contains("example.se, imy.se, polisen.se, cert.se, msb.se"),
        "{links}"
    );

    let body = env.read("templates/body.txt");
    env.write(
        "templates/body.txt",
        format!(
            "{body}\nLäs mer: https://bit.ly/3nektab\nhttps://example.se/info?utm_source=mail&id=1\nhttps://kundportal.example.net/logga-in\n"
        ),
    );
    let n = body.lines().count();
    let run = env.run(&["check"]);
    run.expect_code(0);
    let warnings: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("links      warn "))
        .collect();
    assert_eq!(warnings.len(), 3, "{}", run.stdout);
    assert!(
        warnings[0].contains(&format!(
            "templates/body.txt:{}: link https://bit.ly/3nektab: bit.ly is a URL shortener",
            n + 2
        )),
        "{}",
        warnings[0]
    );
    assert!(
        warnings[1].contains("tracking parameter(s) utm_source"),
        "{}",
        warnings[1]
    );
    assert!(
        warnings[2].contains("kundportal.example.net is not the sender's domain nor one allowed in [check] link_domains"),
        "{}",
        warnings[2]
    );
    // preview warns the same way.
    let run = env.run(&["preview"]);
    run.expect_code(0);
    run.expect_stderr("link https://bit.ly/3nektab");
    // link_domains allows the portal.
    env.set("check", "link_domains", "[\"example.net\"]");
    let run = env.run(&["check"]);
    let warnings = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("links      warn "))
        .count();
    assert_eq!(warnings, 2, "{}", run.stdout);
}

#[test]
fn the_send_confirmation_repeats_the_warnings() {
    let Some(script) =
        find_program("script").or_else(|| unavailable("script (util-linux) is not installed"))
    else {
        return;
    };
    let server = SmtpServer::plain();
    let dns = zone(&[GOOD_SPF, ("default._domainkey", SOME_KEY)]);
    let env = mailing(&server, &dns);
    // A terminal to ask on (script's pseudo-terminal), answered "no".
    let bin = crate::support::testenv::bin();
    let mut cmd = Command::new(script);
    cmd.args(["-q", "-e", "-c"])
        .arg(format!("{} send", bin.display()))
        .arg("/dev/null")
        .current_dir(env.root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", env.root())
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("runs script");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        // Answer once the question is there; the terminal keeps the line until it is read.
        stdin.write_all(b"no\n").expect("answer");
    }
    let out = child.wait_with_output().expect("script ends");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("About to send"), "{text}");
    assert!(
        text.contains("warning:  dmarc: example.se has no DMARC record"),
        "{text}"
    );
    assert!(text.contains("add: _dmarc.example.se TXT"), "{text}");
    assert!(text.contains("not confirmed: nothing was sent"), "{text}");
    assert!(server.received().is_empty(), "sent without a yes");
}
