//! The preview page in a real browser: `preview` on the shipped example, then
//! `preview/index.html` in headless Chromium (Debian's `chromium`, which `.ci/run` installs).
//!
//! No driver: Chromium's own `--dump-dom` gives the page as its scripts left it, and the
//! page's fragment drives it through its own handlers: `#q=TEXT` types TEXT into the
//! search box, `#keys=ArrowDown,Enter` presses keys in it, `#v=N` picks variant N,
//! `#note=N` follows warning N. Every run goes through a local proxy that refuses and
//! records every request: the page must load nothing from the network.
//!
//! Without Chromium the tests print `skipped: chromium not installed` and pass, unless `CI`
//! is set. `UTSKICK_UPDATE_SCREENSHOT=1 cargo test browser` refreshes `docs/preview.png`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::support::testenv::{TestEnv, repo};

const EXAMPLE_ROWS: usize = 12;
/// How long one Chromium run may take (a cold start on a loaded CI machine is slow).
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(90);

/// One Chromium at a time: the machine is shared with the other tests.
static CHROMIUM_LOCK: Mutex<()> = Mutex::new(());

// ----- finding and running Chromium --------------------------------------------------

fn find_chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// Chromium, or `None` after printing why the test is skipped; with `CI` set, a missing
/// Chromium fails the test.
fn chromium_or_skip() -> Option<PathBuf> {
    match find_chromium() {
        Some(exe) => Some(exe),
        None if std::env::var_os("CI").is_some() => {
            panic!("chromium not installed, and CI is set: .ci/run installs Debian's chromium")
        }
        None => {
            eprintln!("skipped: chromium not installed");
            None
        }
    }
}

/// A local HTTP proxy that answers every request with 403 and records its first line
/// (`GET http://host/path HTTP/1.1` or `CONNECT host:443 HTTP/1.1`).
struct Proxy {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    fn start() -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (requests, stop) = (requests.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(mut conn) = conn else { continue };
                    let line = first_line(&mut conn);
                    requests
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(line);
                    let _ = conn.write_all(
                        b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            })
        };
        Proxy {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    /// Every request but Chromium's own calls home (see [`chromium_own`]).
    fn requests(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|r| !chromium_own(r))
            .cloned()
            .collect()
    }
}

/// Requests Chromium makes for itself at startup whatever the flags (an on-demand
/// component's update check, the account service): not the page's. Matched narrowly, by
/// exact host and path; the page source is also checked for remote URLs directly.
fn chromium_own(request: &str) -> bool {
    [
        "CONNECT update.googleapis.com:443 ",
        "POST http://update.googleapis.com/service/update2/json?",
        "CONNECT accounts.google.com:443 ",
        "GET http://clients2.google.com/time/1/current?",
    ]
    .iter()
    .any(|own| request.starts_with(own))
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn first_line(conn: &mut TcpStream) -> String {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let mut bytes = Vec::new();
    let mut buf = [0u8; 1024];
    while !bytes.contains(&b'\n') && bytes.len() < 8192 {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&bytes);
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        "(a connection without a request)".to_string()
    } else {
        line
    }
}

/// One headless Chromium run on `url` through `proxy`, with a fresh profile; returns stdout.
fn headless(exe: &Path, proxy: &Proxy, extra: &[&str], url: &str) -> String {
    let _one = CHROMIUM_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let tmp = tempfile::Builder::new()
        .prefix("utskick-chromium")
        .tempdir()
        .expect("tempdir");
    let profile = tmp.path().join("profile");
    let (stdout_path, stderr_path) = (tmp.path().join("stdout"), tmp.path().join("stderr"));
    let mut cmd = Command::new(exe);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--mute-audio",
        "--no-pings",
        "--disable-domain-reliability",
        "--disable-client-side-phishing-detection",
        "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,Translate,MediaRouter,CertificateTransparencyComponentUpdater",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--proxy-server=http://127.0.0.1:{}", proxy.port))
    // Chromium never sends loopback through a proxy unless told to.
    .arg("--proxy-bypass-list=<-loopback>")
    .args(extra)
    .arg(url)
    .env_clear()
    .env("PATH", std::env::var_os("PATH").unwrap_or_default())
    .env("HOME", tmp.path())
    .stdin(Stdio::null())
    .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
    .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
    // Its own process group, so that the browser's helpers go with it.
    .process_group(0);
    let mut child = cmd.spawn().expect("start chromium");
    let group = child.id() as libc::pid_t;
    let deadline = Instant::now() + CHROMIUM_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // SAFETY: signals only the process group this test started (its id is the child's pid).
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
    if status.is_none() {
        let _ = child.wait();
    }
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let Some(status) = status else {
        panic!(
            "chromium did not finish within {CHROMIUM_TIMEOUT:?} on {url}\n--- stderr\n{stderr}"
        );
    };
    assert!(
        status.success(),
        "chromium failed on {url}: {status}\n--- stderr\n{stderr}"
    );
    std::fs::read_to_string(&stdout_path).expect("chromium's output")
}

fn file_url(path: &Path) -> String {
    let path = path.canonicalize().expect("absolute path");
    let text = path.to_str().expect("UTF-8 path");
    assert!(
        text.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c)),
        "a path that needs escaping in a URL: {text}"
    );
    format!("file://{text}")
}

/// The shipped example, previewed; returns the env and `preview/index.html`'s URL.
fn previewed() -> (TestEnv, String) {
    let env = TestEnv::example();
    env.run(&["preview"]).expect_code(0);
    let url = file_url(&env.path("preview/index.html"));
    (env, url)
}

/// Categories the generated rows take, in turn: combinations of those the shipped config
/// allows (`[recipients.values]`), and none.
const GENERATED_AFFECTED: [&str; 9] = [
    "namn|adress|personnummer|bank",
    "namn|epost",
    "namn|adress",
    "namn|telefon",
    "namn|adress|personnummer",
    "namn|adress|bank|epost|telefon",
    "adress|telefon",
    "namn",
    "",
];

/// A generated mailing of `rows` customers: affected and confirmed vary independently
/// (confirmed as `ja`, `Ja` or `nej`: the templates read `ja` and `Ja` alike), names and
/// keys differ on every row, and every 15th row shares the address of the row before it
/// (a warning each). Returns each row's (key, name, affected, confirmed).
fn generated(env: &TestEnv, rows: usize) -> Vec<(String, String, String, String)> {
    let first = [
        "Anna", "Bo", "Cecilia", "Dan", "Eva", "Fredrik", "Göran", "Åsa",
    ];
    let last = [
        "Ek",
        "Holm",
        "Lind",
        "Öberg",
        "Sjöström",
        "Ström-Dahl",
        "Al-Sayed",
    ];
    let mut csv = String::from("customer_id,name,email,personnummer,address,affected,confirmed\n");
    let mut out = Vec::new();
    for i in 0..rows {
        let key = format!("{}", 500_001 + i);
        let name = format!("{} {}", first[i % first.len()], last[(i / 3) % last.len()]);
        let affected = GENERATED_AFFECTED[(i / 2) % GENERATED_AFFECTED.len()];
        let confirmed = ["ja", "nej", "Ja"][(i / 7) % 3];
        let mailbox = if i % 15 == 14 {
            500_000 + i
        } else {
            500_001 + i
        };
        csv.push_str(&format!(
            "{key},{name},kund{mailbox}@example.se,19800101-0000,Gatan {i},{affected},{confirmed}\n"
        ));
        out.push((key, name, affected.to_string(), confirmed.to_string()));
    }
    env.write("recipients.example.csv", csv);
    out
}

// ----- reading the DOM Chromium dumped -----------------------------------------------

/// The text between `start` (inclusive) and the next `end` (exclusive) after it.
fn between<'a>(dom: &'a str, start: &str, end: &str) -> &'a str {
    let from = dom
        .find(start)
        .unwrap_or_else(|| panic!("no {start:?} in the page:\n{dom}"));
    let rest = &dom[from..];
    let to = rest
        .find(end)
        .unwrap_or_else(|| panic!("no {end:?} after {start:?} in the page"));
    &rest[..to]
}

/// Markup to text: tags dropped, the entities the serializer writes decoded.
fn text_of(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    decode(&out)
}

/// HTML entities as the pages write them, decoded (also for the preview tests).
pub(crate) fn decode(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// A recipient row as the page drew it.
#[derive(Debug)]
struct Row {
    key: String,
    /// The cursor (up/down) is on it.
    selected: bool,
    /// Its message is the one shown.
    shown: bool,
}

/// The rows the list drew (the ones in view: the list never draws all of a large mailing).
fn rows(dom: &str) -> Vec<Row> {
    let body = between(dom, "<div id=\"spacer\"", "</section>");
    body.split("<div class=\"row")
        .skip(1)
        .map(|div| {
            let tag = &div[..div.find('>').expect("a row's tag ends")];
            let class = tag.split('"').next().unwrap_or("");
            let key = tag
                .split("data-key=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("a row without data-key: {tag}"));
            Row {
                key: decode(key),
                selected: class.split(' ').any(|c| c == "sel"),
                shown: class.split(' ').any(|c| c == "shown"),
            }
        })
        .collect()
}

fn keys(dom: &str) -> Vec<String> {
    rows(dom).into_iter().map(|r| r.key).collect()
}

fn selected(dom: &str) -> Vec<String> {
    rows(dom)
        .into_iter()
        .filter(|r| r.selected)
        .map(|r| r.key)
        .collect()
}

fn shown(dom: &str) -> Vec<String> {
    rows(dom)
        .into_iter()
        .filter(|r| r.shown)
        .map(|r| r.key)
        .collect()
}

/// The meta box (To, key, variant, subject) as text.
fn meta(dom: &str) -> String {
    text_of(between(dom, "<div id=\"meta\"", "<iframe"))
}

/// The message frame's opening tag, attributes as serialized.
fn iframe(dom: &str) -> String {
    decode(between(dom, "<iframe id=\"msg\"", ">"))
}

/// The file the message frame shows (relative to the page), if any.
fn frame_src(dom: &str) -> Option<String> {
    let tag = iframe(dom);
    let src = tag.split(" src=\"").nth(1)?.split('"').next()?.to_string();
    (src != "about:blank").then_some(src)
}

fn count(dom: &str) -> String {
    text_of(between(dom, "<span id=\"count\">", "</span>"))
        .trim()
        .to_string()
}

/// The variants table's rows as text.
fn variant_rows(dom: &str) -> Vec<String> {
    let body = between(dom, "<tbody id=\"vrows\">", "</tbody>");
    body.split("<tr ")
        .skip(1)
        .map(|tr| {
            let text = text_of(&tr[tr.find('>').unwrap_or(0)..]);
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        })
        .collect()
}

/// The recipient count of each variant row.
fn variant_counts(dom: &str) -> Vec<u64> {
    let body = between(dom, "<tbody id=\"vrows\">", "</tbody>");
    body.split("<td class=\"n\">")
        .skip(1)
        .map(|td| {
            td[..td.find('<').expect("cell end")]
                .parse()
                .expect("a count")
        })
        .collect()
}

/// The `data-` attribute the page sets on body when it is ready.
fn body_data(dom: &str, name: &str) -> Option<f64> {
    let tag = between(dom, "<body", ">");
    tag.split(&format!("data-{name}=\""))
        .nth(1)?
        .split('"')
        .next()?
        .parse()
        .ok()
}

/// A message page (`vN.html`) the frame points at.
fn view_page(env: &TestEnv, src: &str) -> String {
    assert!(
        src.starts_with('v') && src.ends_with(".html") && !src.contains('/'),
        "{src}"
    );
    env.read(&format!("preview/{src}"))
}

// ----- the tests ---------------------------------------------------------------------

#[test]
fn preview_page_lists_searches_and_shows_in_chromium() {
    let Some(exe) = chromium_or_skip() else {
        return;
    };
    // The proxy is seen to catch a page's request, so its silence below means something.
    let control = tempfile::tempdir().expect("tempdir");
    let control_page = control.path().join("control.html");
    std::fs::write(
        &control_page,
        "<!doctype html><title>control</title><img src=\"http://utskick-control.invalid/pixel.png\">",
    )
    .expect("control page");
    let proxy = Proxy::start();
    headless(&exe, &proxy, &["--dump-dom"], &file_url(&control_page));
    let seen = proxy.requests();
    assert!(
        seen.iter().any(|r| r.contains("utskick-control.invalid")),
        "the proxy did not see the control page's request: {seen:?}"
    );
    drop(proxy);

    let (env, url) = previewed();
    let proxy = Proxy::start();

    // As opened: every recipient listed, the first one shown, the warning on top.
    let dom = headless(&exe, &proxy, &["--dump-dom"], &url);
    let all = keys(&dom);
    assert_eq!(all.len(), EXAMPLE_ROWS, "rows: {all:?}");
    assert_eq!(selected(&dom), ["1001"]);
    assert_eq!(shown(&dom), ["1001"]);
    assert_eq!(count(&dom), format!("{EXAMPLE_ROWS} mottagare"));
    let m = meta(&dom);
    assert!(m.contains("Åsa Öberg <asa.oberg@example.se>"), "{m}");
    let notes = between(&dom, "<div id=\"notes\">", "<main>");
    assert!(
        notes.contains("note warn") && notes.contains("familjen.holm@example.org"),
        "the CSV's warning is not at the top: {notes}"
    );
    // Ten variants: 1001 and 1005 read alike (ja, all four categories), as do 1002 and
    // 1012 (nej, the same four); every other row has a combination of its own.
    let variants = variant_rows(&dom);
    assert_eq!(variants.len(), 10, "{variants:?}");
    assert_eq!(
        variant_counts(&dom).iter().sum::<u64>(),
        EXAMPLE_ROWS as u64
    );
    assert_eq!(&variant_counts(&dom)[..2], [2, 2]);
    assert!(
        variants[0].contains("confirmed: ja")
            && variants[0].contains("affected: namn, adress, personnummer, bank"),
        "{variants:?}"
    );
    // The message is a file of its own in a frame sandboxed with no permissions at all;
    // the page holds no message body.
    let frame = iframe(&dom);
    assert!(frame.contains(" sandbox=\"\""), "not sandboxed: {frame}");
    let src = frame_src(&dom).expect("a message shown");
    let view = view_page(&env, &src);
    assert!(view.contains("Hej Åsa Öberg,"), "{src}: no text part");
    assert!(
        view.contains("<iframe sandbox srcdoc="),
        "{src}: no sandboxed HTML part"
    );
    assert!(view.contains("1001-asa-oberg-"), "{src}: no file name");
    let page = env.read("preview/index.html");
    assert!(
        !page.contains("Vad har hänt?"),
        "a message body in index.html"
    );

    // Searching for a customer: only the matching row is listed, and their message shown.
    let dom = headless(
        &exe,
        &proxy,
        &["--dump-dom"],
        &format!("{url}#q=Sj%C3%B6str%C3%B6m"),
    );
    assert_eq!(keys(&dom), ["1003"]);
    assert_eq!(count(&dom), format!("1 av {EXAMPLE_ROWS} mottagare"));
    let m = meta(&dom);
    assert!(
        m.contains("Till:") && m.contains("Märta Sjöström <marta.sjostrom@example.org>"),
        "{m}"
    );
    assert!(
        m.contains("Ämne:") && m.contains("Viktig information om dina personuppgifter"),
        "{m}"
    );
    let view = view_page(&env, &frame_src(&dom).expect("shown"));
    assert!(view.contains("Hej Märta Sjöström,"), "{view}");
    assert!(view.contains("1003-marta-sjostrom-"), "{view}");
    assert!(!view.contains("Åsa"), "another recipient's message");

    // By category: "telefon" finds the three whose affected list holds it.
    let dom = headless(&exe, &proxy, &["--dump-dom"], &format!("{url}#q=telefon"));
    assert_eq!(keys(&dom), ["1007", "1008", "1011"]);

    // Case does not matter; a shared address finds both of the household.
    let dom = headless(&exe, &proxy, &["--dump-dom"], &format!("{url}#q=HOLM"));
    assert_eq!(keys(&dom), ["1004", "1005"]);
    assert!(meta(&dom).contains("Anders Holm"));

    // The keyboard: down twice and Enter shows the third; in a search, down and Enter the
    // second match.
    let dom = headless(
        &exe,
        &proxy,
        &["--dump-dom"],
        &format!("{url}#keys=ArrowDown,ArrowDown,Enter"),
    );
    assert_eq!(selected(&dom), ["1003"]);
    assert_eq!(shown(&dom), ["1003"]);
    assert!(meta(&dom).contains("Märta Sjöström"), "{}", meta(&dom));
    let dom = headless(
        &exe,
        &proxy,
        &["--dump-dom"],
        &format!("{url}#q=holm&keys=ArrowDown,Enter,ArrowUp"),
    );
    assert_eq!(selected(&dom), ["1004"], "up moved the cursor back");
    assert_eq!(shown(&dom), ["1005"], "Enter showed the second");
    assert!(meta(&dom).contains("Karin Holm"));

    // The warning leads to its rows: both of the shared address.
    let dom = headless(&exe, &proxy, &["--dump-dom"], &format!("{url}#note=0"));
    assert_eq!(keys(&dom), ["1004", "1005"]);

    // No match: nothing listed, nothing shown.
    let dom = headless(
        &exe,
        &proxy,
        &["--dump-dom"],
        &format!("{url}#q=ingen-s%C3%A5dan"),
    );
    assert!(keys(&dom).is_empty(), "{:?}", rows(&dom));
    assert_eq!(frame_src(&dom), None);
    assert!(meta(&dom).contains("Ingen mottagare"));

    let requests = proxy.requests();
    assert!(
        requests.is_empty(),
        "the preview page made network requests: {requests:?}"
    );

    // The pages refer to nothing remote: outside the messages' own text, no http(s) URL,
    // and a policy that forbids loading any.
    let data_start = page
        .find("<script id=\"rows\" type=\"application/json\">")
        .expect("the data block");
    let data_end = data_start + page[data_start..].find("<script>").expect("its end");
    let outside = format!("{}{}", &page[..data_start], &page[data_end..]);
    for scheme in ["http://", "https://", "src=\"//", "url("] {
        assert!(
            !outside.contains(scheme),
            "the page refers to {scheme} outside the data"
        );
    }
    for p in [outside.as_str(), view.as_str()] {
        assert!(
            p.contains("Content-Security-Policy") && p.contains("default-src 'none'"),
            "no content security policy"
        );
    }
}

#[test]
fn generated_mailing_page_counts_variants_and_finds_by_category() {
    let Some(exe) = chromium_or_skip() else {
        return;
    };
    let env = TestEnv::example();
    let rows = 630;
    let data = generated(&env, rows);
    // One variant per combination of affected and confirmed as the templates read it.
    let expected: std::collections::BTreeSet<(String, String)> = data
        .iter()
        .map(|(_, _, a, c)| (a.clone(), c.to_lowercase()))
        .collect();
    assert_eq!(expected.len(), GENERATED_AFFECTED.len() * 2);
    // Only the first 8 rows get a message of their own.
    let run = env.run(&["preview", "--limit", "8"]);
    run.expect_code(0);
    assert!(
        run.stderr
            .contains(&format!("{} variants of the notice", expected.len()))
            || run
                .stdout
                .contains(&format!("{} variants of the notice", expected.len())),
        "{}",
        run.all()
    );
    let url = file_url(&env.path("preview/index.html"));
    let proxy = Proxy::start();

    let dom = headless(&exe, &proxy, &["--dump-dom"], &url);
    assert_eq!(variant_rows(&dom).len(), expected.len());
    let counts = variant_counts(&dom);
    assert_eq!(counts.iter().sum::<u64>(), rows as u64);
    for (k, (affected, confirmed)) in expected.iter().enumerate() {
        let want = data
            .iter()
            .filter(|(_, _, a, c)| a == affected && c.to_lowercase() == *confirmed)
            .count() as u64;
        assert!(
            counts.contains(&want),
            "variant {k} ({affected}, {confirmed}): {counts:?}"
        );
    }
    assert_eq!(count(&dom), format!("{rows} mottagare"));
    assert!(
        keys(&dom).len() < 60,
        "the list drew {} rows: it must draw only those in view",
        keys(&dom).len()
    );
    assert!(
        body_data(&dom, "ready-ms").is_some(),
        "the page never got ready"
    );

    // By category: every row whose list holds "telefon", in CSV order.
    let telefon: Vec<&String> = data
        .iter()
        .filter(|(_, _, a, _)| a.split('|').any(|c| c == "telefon"))
        .map(|(k, _, _, _)| k)
        .collect();
    let dom = headless(
        &exe,
        &proxy,
        &["--dump-dom"],
        &format!("{url}#q=telefon&keys=ArrowDown,ArrowDown,ArrowDown,Enter"),
    );
    assert_eq!(
        count(&dom),
        format!("{} av {rows} mottagare", telefon.len())
    );
    assert_eq!(
        keys(&dom)[..3],
        [telefon[0].clone(), telefon[1].clone(), telefon[2].clone()]
    );
    assert_eq!(selected(&dom), [telefon[3].clone()]);
    assert_eq!(shown(&dom), [telefon[3].clone()]);
    assert!(body_data(&dom, "search-ms").is_some());
    // The fourth match lies past --limit 8: the page shows its variant's example, says
    // so, and the example is of the same variant (it lists the telephone number).
    let fourth = data
        .iter()
        .position(|(k, _, _, _)| k == telefon[3])
        .expect("row");
    assert!(
        fourth >= 8,
        "the data changed: the fourth match is row {fourth}"
    );
    let m = meta(&dom);
    assert!(m.contains("Visar variantens exempel"), "{m}");
    assert!(m.contains("skrevs inte (--limit)"), "{m}");
    let src = frame_src(&dom).expect("a message shown");
    let example_row: usize = src[1..src.len() - 5].parse().expect("vN.html");
    assert_eq!(
        data[example_row].2, data[fourth].2,
        "an example of another variant"
    );
    let view = view_page(&env, &src);
    assert!(
        view.contains("Telefonnummer") || view.contains("telefonnummer"),
        "{src}"
    );
    // The first match is within the limit: its own message, no such note.
    let dom = headless(&exe, &proxy, &["--dump-dom"], &format!("{url}#q=telefon"));
    assert_eq!(shown(&dom), [telefon[0].clone()]);
    assert!(!meta(&dom).contains("Visar variantens exempel"));
    let own = data
        .iter()
        .position(|(k, _, _, _)| k == telefon[0])
        .expect("row");
    assert_eq!(frame_src(&dom), Some(format!("v{own}.html")));

    // Down far past the rows drawn at first: the list follows the cursor.
    let downs = vec!["ArrowDown"; 100].join(",");
    let dom = headless(
        &exe,
        &proxy,
        &["--dump-dom"],
        &format!("{url}#keys={downs},Enter"),
    );
    assert_eq!(selected(&dom), [data[100].0.clone()]);
    assert!(meta(&dom).contains(&data[100].1), "{}", meta(&dom));

    // A variant picked: its rows, and its example.
    let dom = headless(&exe, &proxy, &["--dump-dom"], &format!("{url}#v=2"));
    assert_eq!(count(&dom), format!("{} av {rows} mottagare", counts[1]));
    assert!(requests_none(&proxy));

    // --variants: one message per variant, and every customer still found.
    let run = env.run(&["preview", "--variants"]);
    run.expect_code(0);
    let emls = std::fs::read_dir(env.path("preview"))
        .expect("preview/")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml"))
        })
        .count();
    assert_eq!(emls, expected.len());
    assert!(
        run.stdout
            .contains(&format!("written {} to", expected.len())),
        "{}",
        run.all()
    );
    let last = &data[rows - 1];
    let dom = headless(
        &exe,
        &proxy,
        &["--dump-dom"],
        &format!("{url}#q={}", last.0),
    );
    assert_eq!(keys(&dom), std::slice::from_ref(&last.0));
    let m = meta(&dom);
    assert!(m.contains("preview --variants"), "{m}");
    assert!(frame_src(&dom).is_some());
    assert!(requests_none(&proxy));
}

fn requests_none(proxy: &Proxy) -> bool {
    let r = proxy.requests();
    assert!(r.is_empty(), "network requests: {r:?}");
    true
}

/// PNG signature, then the IHDR chunk's width and height.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "not a PNG"
    );
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

#[test]
fn preview_page_screenshot() {
    let Some(exe) = chromium_or_skip() else {
        return;
    };
    let (env, url) = previewed();
    let proxy = Proxy::start();
    for (name, width, height, fragment) in [
        ("preview.png", 1400, 1000, "#q=bank"),
        ("preview-phone.png", 390, 844, ""),
    ] {
        let shot = env.path(name);
        headless(
            &exe,
            &proxy,
            &[
                &format!("--screenshot={}", shot.display()),
                &format!("--window-size={width},{height}"),
                "--hide-scrollbars",
                // Time for the message's frames to paint on a loaded machine.
                "--virtual-time-budget=5000",
            ],
            &format!("{url}{fragment}"),
        );
        let bytes = std::fs::read(&shot).expect("chromium wrote the screenshot");
        assert_eq!(png_size(&bytes), (width, height));
        // A blank or unstyled page compresses to a few kilobytes; the rendered page does not.
        assert!(
            bytes.len() > 20_000,
            "suspiciously small screenshot: {} bytes",
            bytes.len()
        );
        if std::env::var_os("UTSKICK_UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
            let docs = repo().join("docs");
            std::fs::create_dir_all(&docs).expect("docs/");
            std::fs::write(docs.join(name), &bytes).expect("docs/");
            eprintln!("wrote {}", docs.join(name).display());
        }
    }
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());
}
