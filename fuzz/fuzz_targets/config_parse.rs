//! config.toml on arbitrary text: checking must never panic, and every error line must
//! name the file.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use utskick::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = Config::parse(text, Path::new("/fuzz/config.toml")) {
        let msg = format!("{e:#}");
        for line in msg.lines() {
            assert!(line.starts_with("/fuzz/config.toml"), "{msg}");
        }
    }
});
