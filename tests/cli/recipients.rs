//! Issue 17: customer lists as Excel and LibreOffice really write them. A stray quote never
//! merges rows; line numbers are physical for every line ending; allowed values; headers in
//! any case with Excel's empty trailing columns; UTF-16; workbooks read directly. The
//! office-suite files are tests/recipients/kunder*, made by LibreOffice from one source
//! sheet with tests/recipients/make-fixtures.sh.

use mail_parser::MessageParser;

use crate::preview::index_entries;
use crate::support::smtp_server::SmtpServer;
use crate::support::testenv::{Run, TestEnv, repo};

const CSV: &str = "recipients.example.csv";

/// The example pointed at `server`.
fn example(server: &SmtpServer) -> TestEnv {
    let env = TestEnv::example();
    env.relay(server.port());
    env
}

/// A valid row of the example's shape.
fn row(key: u32) -> String {
    format!("{key},Kund {key},kund{key}@example.se,19800101-0000,Storgatan 1,namn|adress,ja")
}

const HEADER: &str = "customer_id,name,email,personnummer,address,affected,confirmed";

/// `.eml` files in preview/.
fn written(env: &TestEnv) -> usize {
    std::fs::read_dir(env.path("preview"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml"))
            })
            .count()
        })
        .unwrap_or(0)
}

/// Preview and send both refuse with exit 2, nothing written or sent; returns preview's run.
#[track_caller]
fn refused(env: &TestEnv, server: &SmtpServer) -> Run {
    let preview = env.run(&["preview"]);
    preview.expect_code(2);
    assert_eq!(written(env), 0, "preview wrote messages\n{}", preview.all());
    let send = env.run(&["send", "--yes"]);
    send.expect_code(2);
    assert!(server.received().is_empty(), "{}", send.all());
    assert_eq!(server.connections(), 0, "{}", send.all());
    preview
}

#[test]
fn a_quote_left_open_in_row_2_of_201_is_refused_naming_its_line() {
    let server = SmtpServer::plain();
    let env = example(&server);
    let mut text = format!("{HEADER}\n");
    for key in 1..=201 {
        let mut r = row(key);
        if key == 2 {
            // The last column opens a quote that nothing closes.
            r = r.replace(",ja", ",\"ja");
        }
        text.push_str(&r);
        text.push('\n');
    }
    env.write(CSV, &text);
    let preview = refused(&env, &server);
    preview.expect_stderr(&format!(
        "{CSV}:3: column confirmed: a quote opens a field on this line and is never closed: the rest of the file (200 lines) would be one field; close the quote or remove it"
    ));
    assert!(!env.path("preview/index.html").exists());
    assert!(env.journal().is_empty());
}

#[test]
fn a_quote_that_swallows_rows_before_closing_is_refused_a_two_line_address_is_not() {
    let server = SmtpServer::plain();
    let env = example(&server);
    // Row 3's name opens a quote; row 6's quoted address closes it.
    let text = format!(
        "{HEADER}\r\n{}\r\n{}\r\n3,\"Kund 3,kund3@example.se,19800101-0000,Storgatan 1,namn,ja\r\n{}\r\n{}\r\n6,Kund 6,kund6@example.se,19800101-0000,\"Storgatan 6\r\n2 tr\",namn,ja\r\n",
        row(1),
        row(2),
        row(4),
        row(5)
    );
    env.write(CSV, &text);
    refused(&env, &server).expect_stderr(&format!(
        "{CSV}:4: column name: a quote opens a field on this line that runs on over 2 line(s) that read as whole rows (the first on line 5); close the quote or remove it"
    ));
    // Without the stray quote the same file is six customers, the two-line address intact.
    env.write(CSV, text.replace("3,\"Kund 3", "3,Kund 3"));
    let preview = env.run(&["preview"]);
    preview.expect_code(0);
    assert!(
        preview.stdout.contains("rows 6, valid 6, invalid 0"),
        "{}",
        preview.all()
    );
    let lines: Vec<u64> = index_entries(&env)
        .iter()
        .map(|e| e["line"].as_u64().expect("line"))
        .collect();
    assert_eq!(lines, vec![2, 3, 4, 5, 6, 7]);
}

/// The example with `bad` as the address of its third row (line 4) and a blank line after
/// the header, in `ending` line ends: errors and the preview's lines are physical.
#[test]
fn line_numbers_are_physical_for_lf_crlf_cr_and_blank_lines() {
    for (what, ending) in [("LF", "\n"), ("CRLF", "\r\n"), ("CR", "\r")] {
        let env = TestEnv::example();
        let lines = [
            HEADER.to_string(),
            String::new(),
            row(1),
            String::new(),
            String::new(),
            row(2).replace("kund2@example.se", "kund2.@example"),
            row(3),
        ];
        env.write(CSV, lines.join(ending) + ending);
        let run = env.run(&["preview", "--skip-invalid"]);
        run.expect_code(0).expect_stderr(&format!(
            "{CSV}:6: column email: \"kund2.@example\" is not a valid address"
        ));
        let lines: Vec<u64> = index_entries(&env)
            .iter()
            .map(|e| e["line"].as_u64().expect("line"))
            .collect();
        assert_eq!(lines, vec![3, 7], "{what}");
    }
}

#[test]
fn excel_semicolon_windows_1252_crlf_lines() {
    let env = TestEnv::example();
    let text = "customer_id;name;email;personnummer;address;affected;confirmed\r\n\
                1;Åsa Öberg;asa@example.se;19800101-0000;\"Storgatan 1\r\n123 45 Storstad\";namn;ja\r\n\
                2;Jöns Åkesson;jöns@example.se;19800101-0000;Ängsgränd 3;namn;nej\r\n";
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(text);
    env.write(CSV, bytes.as_ref());
    env.run(&["preview"]).expect_code(2).expect_stderr(&format!(
        "{CSV}:4: column email: \"jöns@example.se\": letters like å, ä, ö before @"
    ));
}

#[test]
fn values_outside_the_allowed_ones_name_line_column_value_and_the_nearest() {
    let server = SmtpServer::plain();
    let env = example(&server);
    let text = format!(
        "{HEADER}\n{}\n{}\n{}\n{}\n",
        row(1).replace("namn|adress", "namn|personumer"),
        row(2).replace("namn|adress", "Namn | ADRESS "),
        row(3).replace(",ja", ",jo"),
        row(4).replace("namn|adress", "kreditkort"),
    );
    env.write(CSV, &text);
    let preview = env.run(&["preview"]);
    preview
        .expect_code(2)
        .expect_stderr(&format!("{CSV}:2: column affected: \"personumer\" is not an allowed value; the nearest allowed is \"personnummer\" (allowed: \"namn\", \"adress\", \"personnummer\", \"bank\", \"epost\", \"telefon\")"))
        .expect_stderr(&format!("{CSV}:4: column confirmed: \"jo\" is not an allowed value; the nearest allowed is \"ja\""))
        .expect_stderr(&format!("{CSV}:5: column affected: \"kreditkort\" is not an allowed value; the nearest allowed is"));
    assert!(
        preview.stdout.contains("rows 4, valid 1, invalid 3"),
        "{}",
        preview.all()
    );
    let send = env.run(&["send", "--yes"]);
    send.expect_code(2);
    assert!(server.received().is_empty());
    // The valid row reaches the templates in the config's spelling: the address advice.
    let entries = index_entries(&env);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["affected"], "namn, adress");
    let text = entries[0]["text"].as_str().expect("text");
    assert!(
        text.contains("och din adress") || text.contains("postadress"),
        "{text}"
    );
}

#[test]
fn headers_in_any_case_and_excels_trailing_empty_columns() {
    let env = TestEnv::example();
    let text = "Customer_ID; Name ;EMAIL;Personnummer;Address;Affected;Confirmed;;\r\n\
                1;Åsa;asa@example.se;19800101-0000;Gata 1;namn|bank;JA;;\r\n\
                ;;;;;;;;\r\n\
                2;Bo;bo@example.se;19800101-0000;Gata 2;namn;nej;;\r\n";
    env.write(CSV, text);
    let run = env.run(&["preview"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("rows 2, valid 2, invalid 0"),
        "{}",
        run.all()
    );
    let entries = index_entries(&env);
    assert_eq!(entries[0]["key"], "1");
    assert_eq!(entries[0]["name"], "Åsa");
    let text = entries[0]["text"].as_str().expect("text");
    // `JA` is `ja` for the templates: the confirmed wording, and the bank advice.
    assert!(text.contains("uppgifter om dig finns"), "{text}");
    assert!(text.contains("Kontakta din bank"), "{text}");
    assert_eq!(entries[1]["line"], 4);
    env.write(
        CSV,
        "customer_id,name,email,Email,affected,confirmed\n1,A,a@example.se,a@example.se,namn,ja\n",
    );
    env.run(&["preview"]).expect_code(2).expect_stderr(&format!(
        "{CSV}:1: column Email: appears twice in the header (as email: names match ignoring case and spaces)"
    ));
}

/// A one-word name with a dot goes into To quoted, as RFC 5322 wants a phrase.
#[test]
fn a_one_word_name_with_a_dot_is_quoted_in_to() {
    let env = TestEnv::example();
    env.write(
        CSV,
        format!(
            "{HEADER}\n1,K.,k@example.se,19800101-0000,Gata 1,namn,ja\n2,Bo Ek Jr.,bo@example.se,19800101-0000,Gata 2,namn,ja\n"
        ),
    );
    env.run(&["preview"]).expect_code(0);
    let mut to = Vec::new();
    for e in index_entries(&env) {
        let bytes = std::fs::read(env.path("preview").join(e["file"].as_str().expect("file")))
            .expect("eml");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let line = text
            .lines()
            .find(|l| l.starts_with("To: "))
            .expect("To")
            .to_string();
        let msg = MessageParser::default().parse(&bytes).expect("parses");
        let first = msg.to().and_then(|a| a.first()).expect("a To address");
        assert_eq!(first.name(), e["name"].as_str(), "{line}");
        to.push(line);
    }
    assert_eq!(
        to,
        vec![
            "To: \"K.\" <k@example.se>".to_string(),
            "To: \"Bo Ek Jr.\" <bo@example.se>".to_string()
        ]
    );
}

/// The office-suite fixtures, copied into a temp example pointed at `file`.
fn fixture(file: &str) -> TestEnv {
    let env = TestEnv::example();
    let from = repo().join("tests/recipients").join(file);
    std::fs::copy(&from, env.path(file)).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    env.set("recipients", "path", &format!("{file:?}"));
    // The office-suite fixtures have no language column: every row is Swedish.
    env.unset("recipients", "language_column");
    env
}

/// Every row of `status --failed-csv` (all pending: every column as read), header first.
fn cells_as_read(env: &TestEnv) -> Vec<Vec<String>> {
    env.run(&["status", "--failed-csv", "rows.csv"])
        .expect_code(0);
    let bytes = std::fs::read(env.path("rows.csv")).expect("rows.csv");
    let text = String::from_utf8(bytes).expect("UTF-8");
    let text = text.strip_prefix('\u{feff}').expect("BOM");
    let first = text.lines().next().unwrap_or_default();
    let delimiter = [b'\t', b';', b',']
        .into_iter()
        .find(|&d| first.contains(d as char))
        .expect("a delimiter");
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(delimiter)
        .from_reader(text.as_bytes());
    r.records()
        .map(|r| {
            let r = r.expect("record");
            // Leave out the state and reason columns `status` adds.
            r.iter().take(8).map(str::to_string).collect()
        })
        .collect()
}

#[test]
fn what_libreoffice_writes_reads_the_same_from_csv_unicode_text_xlsx_and_ods() {
    let want: Vec<Vec<String>> = vec![
        vec![
            "customer_id",
            "name",
            "email",
            "personnummer",
            "address",
            "affected",
            "confirmed",
            "kund_sedan",
        ],
        vec![
            "00101",
            "Åsa Öberg",
            "asa.oberg@example.se",
            "19800101-0000",
            "Storgatan 1\n123 45 Storstad",
            "namn|adress|personnummer|bank",
            "ja",
            "",
        ],
        vec![
            "00102",
            "K.",
            "k.punkt@example.se",
            "19550615-0000",
            "c/o Nilsson; Lövstigen 4",
            "namn|epost",
            "nej",
            "2019-11-30",
        ],
        vec![
            "00103",
            "Märta Sjöström",
            "marta.sjostrom@example.org",
            "19920229-0002",
            "Ängsgränd 3",
            "namn|epost",
            "",
            "2021-03-04",
        ],
        vec![
            "00104",
            "Holm, Anders",
            "familjen.holm@example.org",
            "19700312-0003",
            "Kyrkbacken 7",
            "namn|adress|personnummer",
            "Ja",
            "2008-01-15",
        ],
    ]
    .into_iter()
    .map(|r| r.into_iter().map(String::from).collect())
    .collect();
    for file in [
        "kunder-1252.csv",
        "kunder-utf16.txt",
        "kunder.xlsx",
        "kunder.ods",
    ] {
        let env = fixture(file);
        let run = env.run(&["preview"]);
        run.expect_code(0);
        assert!(
            run.stdout
                .contains("rows 4, valid 4, invalid 0, warnings 0"),
            "{file}: {}",
            run.all()
        );
        let entries = index_entries(&env);
        let keys: Vec<&str> = entries
            .iter()
            .map(|e| e["key"].as_str().expect("key"))
            .collect();
        assert_eq!(keys, vec!["00101", "00102", "00103", "00104"], "{file}");
        let text = entries[0]["text"].as_str().expect("text");
        assert!(text.contains("ditt kundnummer, 00101,"), "{file}: {text}");
        let lines: Vec<u64> = entries
            .iter()
            .map(|e| e["line"].as_u64().expect("line"))
            .collect();
        let want_lines = if file.ends_with(".xlsx") || file.ends_with(".ods") {
            vec![2, 3, 4, 5]
        } else {
            vec![2, 4, 5, 6]
        };
        assert_eq!(lines, want_lines, "{file}");
        assert_eq!(cells_as_read(&env), want, "{file}");
    }
}

#[test]
fn workbook_errors_name_the_sheet_and_row_and_another_sheet_can_be_named() {
    for file in ["kunder.xlsx", "kunder.ods"] {
        let env = fixture(file);
        let config = env.read("config.toml");
        let allowed = "confirmed = [\"ja\", \"nej\", \"\"]";
        assert!(config.contains(allowed), "{config}");
        env.write(
            "config.toml",
            config.replace(allowed, "confirmed = [\"nej\", \"\"]"),
        );
        let run = env.run(&["preview"]);
        run.expect_code(2).expect_stderr(&format!(
            "{file}: sheet kunder, row 2: column confirmed: \"ja\" is not an allowed value; the nearest allowed is \"nej\" (allowed: \"nej\", \"\")"
        ));
        run.expect_stderr(&format!(
            "{file}: sheet kunder, row 5: column confirmed: \"Ja\""
        ));
        let env = fixture(file);
        env.set("recipients", "sheet", "\"Blad9\"");
        env.run(&["preview"]).expect_code(2).expect_stderr(&format!(
            "{file}: [recipients] sheet \"Blad9\" is not in the workbook (its sheets: \"kunder\")"
        ));
        env.set("recipients", "sheet", "\"kunder\"");
        env.run(&["preview"]).expect_code(0);
    }
}
