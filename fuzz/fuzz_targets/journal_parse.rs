//! The delivery journal reader on arbitrary bytes: never a panic; an error names a line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use utskick::journal::Journal;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = Journal::parse(data, "journal") {
        let msg = format!("{e:#}");
        assert!(msg.starts_with("journal:"), "{msg}");
    }
});
