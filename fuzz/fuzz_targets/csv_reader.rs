//! The recipient CSV reader on arbitrary bytes: opening (encoding, delimiter, header) and
//! scanning every row must never panic, and the row counts must add up.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use utskick::config::{CsvEncoding, Recipients};
use utskick::recipients::CsvSource;

/// One file per fuzzing process, rewritten for every input.
fn path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("utskick-fuzz-{}.csv", std::process::id()))
    })
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the configuration, the rest is the file.
    let (choice, bytes) = data.split_first().map_or((0, data), |(c, r)| (*c, r));
    if std::fs::write(path(), bytes).is_err() {
        return;
    }
    let cfg = Recipients {
        path: path().clone(),
        email_column: "email".into(),
        key_column: (choice & 1 == 1).then(|| "id".into()),
        name_column: "name".into(),
        encoding: match (choice >> 1) % 3 {
            0 => CsvEncoding::Auto,
            1 => CsvEncoding::Utf8,
            _ => CsvEncoding::Windows1252,
        },
        delimiter: match (choice >> 3) % 4 {
            0 => None,
            1 => Some(b','),
            2 => Some(b';'),
            _ => Some(b'\t'),
        },
        list_columns: vec![("affected".into(), "|".into())],
    };
    let Ok(source) = CsvSource::open(&cfg) else {
        return;
    };
    let mut valid = 0u64;
    let scan = source
        .scan(|_| {
            valid += 1;
            Ok(())
        })
        .expect("scan fails only on I/O or the callback");
    assert_eq!(scan.valid, valid);
    assert_eq!(scan.rows, scan.valid + scan.invalid);
});
