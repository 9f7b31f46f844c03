//! One way to run the built `utskick` in tests: a temp folder holding a copy of the shipped
//! example (config.toml, templates, CSV), a clean environment, and helpers to edit the
//! config, run a command and read the journal.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// What a run printed and how it exited.
#[derive(Debug)]
pub struct Run {
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with both streams unless the exit code is `code`.
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "expected exit {code}, got {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        self
    }

    /// Panics with stderr unless it holds `text`.
    #[track_caller]
    pub fn expect_stderr(&self, text: &str) -> &Run {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}\n--- stderr\n{}",
            self.stderr
        );
        self
    }

    /// stdout and stderr together.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

/// A temp folder with the shipped example in it.
pub struct TestEnv {
    dir: tempfile::TempDir,
}

/// The repository's root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The built binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_utskick"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

impl TestEnv {
    /// The shipped example, pointing at nothing yet (loopback port 2525).
    pub fn example() -> TestEnv {
        let env = TestEnv::empty();
        let root = repo();
        std::fs::copy(root.join("config.toml"), env.path("config.toml")).expect("copy config");
        std::fs::copy(
            root.join("recipients.example.csv"),
            env.path("recipients.example.csv"),
        )
        .expect("copy csv");
        copy_dir(&root.join("templates"), &env.path("templates"));
        env
    }

    /// An empty temp folder.
    pub fn empty() -> TestEnv {
        TestEnv {
            dir: tempfile::Builder::new()
                .prefix("utskick-test")
                .tempdir()
                .expect("tempdir"),
        }
    }

    /// The folder.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A path inside the folder.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a file inside the folder.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) {
        let p = self.path(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, contents).expect("write");
    }

    /// Reads a file inside the folder.
    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// Sets `[section] key = value` (value as TOML, e.g. `"\"none\""` or `"3"`) in config.toml.
    pub fn set(&self, section: &str, key: &str, value: &str) {
        let text = self.read("config.toml");
        let mut doc: toml::Table = text.parse().expect("config parses");
        let v: toml::Value = format!("v = {value}")
            .parse::<toml::Table>()
            .expect("value parses")
            .remove("v")
            .expect("value");
        let table = if section.is_empty() {
            &mut doc
        } else {
            doc.entry(section.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .expect("section is a table")
        };
        table.insert(key.to_string(), v);
        self.write("config.toml", toml::to_string(&doc).expect("serializes"));
    }

    /// Removes `[section] key` from config.toml.
    pub fn unset(&self, section: &str, key: &str) {
        let mut doc: toml::Table = self.read("config.toml").parse().expect("config parses");
        if let Some(t) = doc.get_mut(section).and_then(|t| t.as_table_mut()) {
            t.remove(key);
        }
        self.write("config.toml", toml::to_string(&doc).expect("serializes"));
    }

    /// Points the config at a plain loopback relay on `port`, fast: no rate limit to speak
    /// of, short timeouts, no retry delay.
    pub fn relay(&self, port: u16) {
        self.set("smtp", "host", "\"127.0.0.1\"");
        self.set("smtp", "port", &port.to_string());
        self.set("smtp", "security", "\"none\"");
        self.set("smtp", "auth", "\"none\"");
        self.set("smtp", "timeout_secs", "5");
        self.set("sending", "rate", "\"1000/s\"");
        self.set("sending", "retry_delay_secs", "0");
    }

    /// Points the config at the shared Postfix: STARTTLS trusting its CA, AUTH PLAIN as its
    /// user with the password read from the environment variable `password_var`.
    pub fn postfix_relay(&self, postfix: &super::postfix::Postfix, password_var: &str) {
        self.set("smtp", "host", &format!("{:?}", postfix.host()));
        self.set("smtp", "port", &postfix.port().to_string());
        self.set("smtp", "security", "\"starttls\"");
        self.set("smtp", "auth", "\"plain\"");
        self.set("smtp", "username", &format!("{:?}", postfix.user()));
        self.set("smtp", "password_env", &format!("{password_var:?}"));
        self.set(
            "smtp",
            "ca_file",
            &format!("{:?}", postfix.ca_pem_path().display().to_string()),
        );
        self.set("smtp", "timeout_secs", "20");
        self.set("sending", "rate", "\"1000/s\"");
        self.set("sending", "retry_delay_secs", "0");
    }

    /// A command for the binary in this folder, with a clean environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .current_dir(self.root())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.root())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    /// Runs the binary to completion.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd(args).output().expect("runs utskick"))
    }

    /// Runs with extra environment variables.
    pub fn run_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Run {
        let mut c = self.cmd(args);
        for (k, v) in vars {
            c.env(k, v);
        }
        Run::from(c.output().expect("runs utskick"))
    }

    /// The journal's events.
    pub fn journal(&self) -> Vec<serde_json::Value> {
        let Ok(text) = std::fs::read_to_string(self.path("delivery-log.jsonl")) else {
            return Vec::new();
        };
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("journal line {l:?}: {e}")))
            .collect()
    }

    /// The journal's events of one kind.
    pub fn events(&self, kind: &str) -> Vec<serde_json::Value> {
        self.journal()
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }

    /// Each key's latest event kind (the state as the contract defines it, roughly).
    pub fn latest(&self) -> std::collections::BTreeMap<String, String> {
        let mut m = std::collections::BTreeMap::new();
        // What each key's latest attempt replaced, for `withdrawn` to put back.
        let mut before: std::collections::BTreeMap<String, Option<String>> = Default::default();
        for e in self.journal() {
            if e["test"] == true {
                continue;
            }
            if let Some(k) = e["key"].as_str() {
                let kind = e["event"].as_str().unwrap_or("").to_string();
                let state = match (kind.as_str(), e["class"].as_str()) {
                    ("failed", Some(c)) => format!("failed-{c}"),
                    ("attempt", _) => {
                        before.insert(k.to_string(), m.get(k).cloned());
                        "unknown".to_string()
                    }
                    ("withdrawn", _) => match before.remove(k).flatten() {
                        Some(s) => s,
                        None => {
                            m.remove(k);
                            continue;
                        }
                    },
                    ("bounced", Some("transient")) => continue,
                    _ => kind,
                };
                m.insert(k.to_string(), state);
            }
        }
        m
    }

    /// The example CSV's addresses in order.
    pub fn example_addresses(&self) -> Vec<String> {
        let mut r = csv::Reader::from_path(self.path("recipients.example.csv")).expect("csv");
        let h = r.headers().expect("headers").clone();
        let i = h.iter().position(|c| c == "email").expect("email column");
        r.records()
            .map(|x| x.expect("record")[i].to_string())
            .collect()
    }
}
