//! `preview` on the shipped example and on bad input: exit codes, the exact error lines,
//! the written files parsed back with a MIME parser.

use std::os::unix::fs::PermissionsExt;

use mail_parser::MessageParser;

use crate::support::testenv::TestEnv;

/// The text between `start` and the next `end` after it.
fn cut<'a>(page: &'a str, start: &str, end: &str) -> &'a str {
    let from = page.find(start).unwrap_or_else(|| panic!("no {start:?}")) + start.len();
    let to = from
        + page[from..]
            .find(end)
            .unwrap_or_else(|| panic!("no {end:?}"));
    &page[from..to]
}

/// The recipients of preview/index.html (its JSON rows), each with what its message page
/// `vN.html` shows: key, name, email, line, the list columns' values as the page shows
/// them (`affected`), and file, subject, text and html.
pub(crate) fn index_entries(env: &TestEnv) -> Vec<serde_json::Value> {
    let html = env.read("preview/index.html");
    let rows = cut(
        &html,
        "<script id=\"rows\" type=\"application/json\">",
        "</script>",
    );
    let rows: Vec<serde_json::Value> =
        serde_json::from_str(&rows.replace("\\u003c", "<")).expect("index JSON");
    let meta: serde_json::Value = serde_json::from_str(
        &cut(
            &html,
            "<script id=\"pagedata\" type=\"application/json\">",
            "</script>",
        )
        .replace("\\u003c", "<"),
    )
    .expect("page data JSON");
    let mut out = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let view = env.path(&format!("preview/v{i}.html"));
        if !view.exists() {
            continue;
        }
        let page = std::fs::read_to_string(view).expect("message page");
        out.push(serde_json::json!({
            "key": row[0], "name": row[1], "email": row[2], "line": row[3],
            "affected": meta["cats"][row[5].as_u64().unwrap_or(u64::MAX) as usize],
            "file": crate::browser::decode(cut(&page, "<b>Fil:</b> ", " · ")),
            "subject": crate::browser::decode(cut(&page, "<title>", "</title>")),
            "text": crate::browser::decode(cut(&page, "<pre id=\"text\">", "</pre>")),
            "html": crate::browser::decode(cut(&page, "srcdoc=\"", "\"")),
        }));
    }
    out
}

#[test]
fn example_previews_every_recipient_and_files_parse_back() {
    let env = TestEnv::example();
    let run = env.run(&["preview"]);
    run.expect_code(0);
    assert!(
        run.stdout
            .contains("rows 12, valid 12, invalid 0, warnings 1, rendered 12, written 12"),
        "{}",
        run.all()
    );
    // The household address shared by two keys is a warning naming both lines.
    assert!(
        run.stderr
            .contains("recipients.example.csv:7: column email:"),
        "{}",
        run.stderr
    );
    let entries = index_entries(&env);
    assert_eq!(entries.len(), 12);
    let mut personnummer = std::collections::HashMap::new();
    let mut reader = csv::Reader::from_path(env.path("recipients.example.csv")).expect("csv");
    for r in reader.records() {
        let r = r.expect("record");
        personnummer.insert(r[0].to_string(), r[3].to_string());
    }
    let dir = env.path("preview");
    assert_eq!(
        std::fs::metadata(&dir).expect("dir").permissions().mode() & 0o777,
        0o700
    );
    for entry in &entries {
        let file = dir.join(entry["file"].as_str().expect("file"));
        assert_eq!(
            std::fs::metadata(&file).expect("eml").permissions().mode() & 0o777,
            0o600
        );
        let bytes = std::fs::read(&file).expect("read eml");
        let msg = MessageParser::default()
            .parse(&bytes)
            .expect("parses as MIME");
        assert_eq!(msg.subject(), entry["subject"].as_str(), "{file:?}");
        let text = msg.body_text(0).expect("text part");
        let want = entry["text"].as_str().expect("text");
        assert_eq!(
            text.replace("\r\n", "\n").trim_end(),
            want.trim_end(),
            "{file:?}"
        );
        let html = msg.body_html(0).expect("html part");
        assert_eq!(
            html.replace("\r\n", "\n").trim_end(),
            entry["html"].as_str().expect("html").trim_end()
        );
        // Headers of the contract.
        let to = msg.to().and_then(|a| a.first()).expect("To");
        assert_eq!(to.address(), entry["email"].as_str());
        assert_eq!(to.name(), entry["name"].as_str().filter(|n| !n.is_empty()));
        let id = msg.message_id().expect("Message-ID");
        assert!(
            id.starts_with("nektab-2023-10.") && id.ends_with("@example.se"),
            "{id}"
        );
        assert_eq!(
            msg.header_raw("Auto-Submitted").map(str::trim),
            Some("auto-generated")
        );
        assert_eq!(
            msg.header_raw("Content-Language").map(str::trim),
            Some("sv")
        );
        assert!(msg.date().is_some());
        assert_eq!(
            msg.reply_to()
                .and_then(|a| a.first())
                .and_then(|a| a.address()),
            Some("dataskydd@example.se")
        );
        // Never the personnummer, in any part.
        let pnr = &personnummer[entry["key"].as_str().expect("key")];
        let digits: String = pnr.chars().filter(char::is_ascii_digit).collect();
        for hay in [
            text.to_string(),
            html.to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ] {
            assert!(
                !hay.contains(pnr.as_str()) && !hay.contains(&digits),
                "personnummer in {file:?}"
            );
        }
    }
    // Swedish letters survive the round trip.
    let asa = entries.iter().find(|e| e["key"] == "1001").expect("1001");
    assert!(asa["name"].as_str().expect("name").contains('Å'));
    assert!(
        asa["text"]
            .as_str()
            .expect("text")
            .contains("Hej Åsa Öberg")
    );
}

/// The Message-ID of every written message, in index order.
fn message_ids(env: &TestEnv) -> Vec<String> {
    index_entries(env)
        .iter()
        .map(|e| {
            let file = env.path("preview").join(e["file"].as_str().expect("file"));
            let bytes = std::fs::read(file).expect("eml");
            MessageParser::default()
                .parse(&bytes)
                .and_then(|m| m.message_id().map(str::to_string))
                .expect("id")
        })
        .collect()
}

#[test]
fn same_recipient_same_message_id_across_runs() {
    let env = TestEnv::example();
    env.run(&["preview"]).expect_code(0);
    let first = message_ids(&env);
    env.run(&["preview"]).expect_code(0);
    assert_eq!(first, message_ids(&env));
    let unique: std::collections::HashSet<&String> = first.iter().collect();
    assert_eq!(unique.len(), 12);
}

#[test]
fn limit_writes_first_n_but_validates_all() {
    let env = TestEnv::example();
    let mut csv = env.read("recipients.example.csv");
    csv.push_str("2001,Sista Raden,sista.@example,19800101-0000,x,namn,ja\n");
    env.write("recipients.example.csv", csv);
    let run = env.run(&["preview", "--limit", "2"]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("column email: \"sista.@example\" is not a valid address"),
        "{}",
        run.stderr
    );
    let run = env.run(&["preview", "--limit", "2", "--skip-invalid"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("rows 13, valid 12, invalid 1"),
        "{}",
        run.stdout
    );
    // The page lists every valid row; two have their own message, the others are shown
    // by their variant's example, which has no .eml.
    let html = env.read("preview/index.html");
    let rows = cut(
        &html,
        "<script id=\"rows\" type=\"application/json\">",
        "</script>",
    );
    let rows: Vec<serde_json::Value> = serde_json::from_str(rows).expect("rows");
    assert_eq!(rows.len(), 12);
    let entries = index_entries(&env);
    let own: Vec<&serde_json::Value> = entries
        .iter()
        .filter(|e| {
            env.path("preview")
                .join(e["file"].as_str().expect("file"))
                .is_file()
        })
        .collect();
    assert_eq!(own.len(), 2, "{entries:?}");
    assert_eq!(own[0]["key"], "1001");
    assert_eq!(own[1]["key"], "1002");
    let emls = std::fs::read_dir(env.path("preview"))
        .expect("dir")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "eml"))
        })
        .count();
    assert_eq!(emls, 2);
}

#[test]
fn every_bad_row_reported_with_line_and_column_in_one_run() {
    let env = TestEnv::example();
    env.write(
        "recipients.example.csv",
        "customer_id,name,email,personnummer,address,affected,confirmed\n\
         1,Anna,anna.@example,1,x,namn,ja\n\
         2,Bo,bo@example.se,1,\"Gata 1\n123 45 Ort\",namn,ja\n\
         3,Cilla,cilla@example.se,1,x,namn\n\
         2,Dubblett,d@example.se,1,x,namn,ja\n\
         5,Eva,Eva <eva@example.se>,1,x,namn,ja\n",
    );
    let run = env.run(&["preview"]);
    run.expect_code(2);
    let lines: Vec<&str> = run.stderr.lines().collect();
    let expect = [
        "recipients.example.csv:2: column email: \"anna.@example\" is not a valid address: a dot at the start or end of the name, or two dots",
        "recipients.example.csv:5: has 6 fields but the header has 7 (a stray delimiter or quote?)",
        "recipients.example.csv:6: column customer_id: key \"2\" appears again: first on line 3",
        "recipients.example.csv:7: column email: \"Eva <eva@example.se>\" is not a bare address: put only the address (name@example.se) in this column, the name in its own",
    ];
    for e in expect {
        assert!(lines.contains(&e), "missing {e:?} in\n{}", run.stderr);
    }
    assert!(
        run.stderr.contains("error: 4 of 5 rows cannot be sent"),
        "{}",
        run.stderr
    );
    assert!(!env.path("preview/index.html").exists() || index_entries(&env).len() == 1);
}

#[test]
fn excel_semicolon_windows_1252_with_crlf() {
    let env = TestEnv::example();
    let text = "customer_id;name;email;personnummer;address;affected;confirmed\r\n\
                1;Åsa Öberg;asa@example.se;1;Storgatan 1;namn|adress;ja\r\n\
                2;Märta Sjöström;marta@example.se;1;\"Väg 2\r\n123 45 Ort\";namn;nej\r\n";
    let (bytes, _, unmappable) = encoding_rs::WINDOWS_1252.encode(text);
    assert!(!unmappable);
    env.write("recipients.example.csv", bytes.as_ref());
    let run = env.run(&["preview"]);
    run.expect_code(0);
    let entries = index_entries(&env);
    assert_eq!(entries[0]["name"], "Åsa Öberg");
    assert_eq!(entries[1]["name"], "Märta Sjöström");
    assert!(
        entries[1]["text"]
            .as_str()
            .expect("text")
            .contains("Hej Märta Sjöström")
    );
}

#[test]
fn template_errors_name_file_line_and_column() {
    let env = TestEnv::example();
    env.write("templates/subject.txt", "Hej {{ recipient.fornamn }}");
    let run = env.run(&["preview"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("templates/subject.txt:1:"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("(first on CSV line 2; 12 rows)"),
        "{}",
        run.stderr
    );
    // Only the columns the templates name reach them, but an error lists every column.
    run.expect_stderr(
        "Available fields: address, affected, confirmed, customer_id, email, name, personnummer",
    );
    env.write("templates/subject.txt", "Hej {% if %}");
    let run = env.run(&["preview"]);
    run.expect_code(2);
    assert!(
        run.stderr.contains("templates/subject.txt:1:"),
        "{}",
        run.stderr
    );
}

/// The shipped notice must say which data are affected: a CSV whose list column is named
/// otherwise is refused with a line naming the missing column (from `list_columns`, or,
/// where the config was changed to match the CSV, from what the templates read), besides
/// the template's own error. A missing `confirmed` column is only a warning: the notice
/// then says "kan finnas".
#[test]
fn a_column_the_templates_read_but_the_csv_lacks_is_named() {
    let env = TestEnv::example();
    env.write(
        "recipients.example.csv",
        "customer_id,name,email,berorda,confirmed\n1,Anna,anna@example.se,namn,ja\n",
    );
    env.run(&["preview"]).expect_code(2).expect_stderr(
        "recipients.example.csv:1: column affected: named in list_columns but missing from the header",
    );
    let config = env.read("config.toml");
    let list = "list_columns = { affected = \"|\" }";
    assert!(config.contains(list), "{config}");
    env.write(
        "config.toml",
        config.replace(list, "list_columns = { berorda = \"|\" }"),
    );
    env.run(&["preview"])
        .expect_code(2)
        .expect_stderr(
            "warning: recipients.example.csv:1: column affected: the templates read recipient.affected, but the file has no such column\n",
        )
        .expect_stderr("templates/body.txt:");

    env.write("config.toml", config);
    env.write(
        "recipients.example.csv",
        "customer_id,name,email,affected\n1,Anna,anna@example.se,namn|adress\n",
    );
    env.run(&["preview"]).expect_code(0).expect_stderr(
        "warning: recipients.example.csv:1: column confirmed: the templates read recipient.confirmed, but the file has no such column",
    );
    let entries = index_entries(&env);
    let text = entries[0]["text"].as_str().expect("text");
    assert!(text.contains("uppgifter om dig kan finnas"), "{text}");
    assert!(text.contains("Hej Anna,"), "{text}");
}

#[test]
fn an_out_folder_that_is_not_ours_is_refused() {
    let env = TestEnv::example();
    env.write("mine/important.txt", "keep me");
    let run = env.run(&["preview", "--out", "mine"]);
    run.expect_code(2);
    assert!(
        run.stderr
            .contains("is not empty and was not written by utskick preview"),
        "{}",
        run.stderr
    );
    assert_eq!(env.read("mine/important.txt"), "keep me");
}

#[test]
fn header_injection_through_the_csv_never_makes_a_header() {
    let env = TestEnv::example();
    env.write(
        "recipients.example.csv",
        "customer_id,name,email,personnummer,address,affected,confirmed\n\
         1,\"Anna\r\nBcc: evil@example.com\",anna@example.se,1,x,namn,ja\n",
    );
    env.run(&["preview"]).expect_code(0);
    let entries = index_entries(&env);
    let bytes = std::fs::read(
        env.path("preview")
            .join(entries[0]["file"].as_str().expect("file")),
    )
    .expect("eml");
    let text = String::from_utf8_lossy(&bytes);
    let head = text.split("\r\n\r\n").next().expect("header block");
    assert!(
        !head
            .lines()
            .any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
        "{head}"
    );
    let msg = MessageParser::default().parse(&bytes).expect("parses");
    assert!(msg.bcc().is_none());
}

/// Every `.eml` in preview/: its file name and the address in its To.
fn written_to(env: &TestEnv) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(env.path("preview")).expect("preview/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|x| x != "eml") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("eml");
        let msg = MessageParser::default().parse(&bytes).expect("parses");
        let to = msg
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .expect("To")
            .to_string();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        out.push((name, to));
    }
    out.sort();
    out
}

#[test]
fn keys_that_differ_only_in_punctuation_get_a_file_each() {
    // The default key is the address: these three once shared one file.
    let env = TestEnv::example();
    env.unset("recipients", "key_column");
    env.write(
        "recipients.example.csv",
        "customer_id,name,email,personnummer,address,affected,confirmed\n\
         1,Anna Ek,anna.ek@example.se,1,x,namn,ja\n\
         2,Anna Ek,anna_ek@example.se,1,x,namn|adress,ja\n\
         3,Anna Ek,anna+ek@example.se,1,x,namn,nej\n",
    );
    let run = env.run(&["preview"]);
    run.expect_code(0);
    assert!(
        run.stdout.contains("rendered 3, written 3 "),
        "{}",
        run.all()
    );
    let files = written_to(&env);
    let mut addresses: Vec<&str> = files.iter().map(|(_, to)| to.as_str()).collect();
    addresses.sort();
    assert_eq!(
        addresses,
        [
            "anna+ek@example.se",
            "anna.ek@example.se",
            "anna_ek@example.se"
        ],
        "{files:?}"
    );
    // The index links each customer to their own letter.
    let entries = index_entries(&env);
    assert_eq!(entries.len(), 3);
    for e in &entries {
        let file = e["file"].as_str().expect("file");
        let to = &files
            .iter()
            .find(|(name, _)| name == file)
            .expect("linked file")
            .1;
        assert_eq!(Some(to.as_str()), e["email"].as_str(), "{file}");
    }
}

#[test]
fn hostile_and_long_keys_stay_inside_the_folder() {
    let env = TestEnv::example();
    let long = "k".repeat(3000);
    env.write(
        "recipients.example.csv",
        format!(
            "customer_id,name,email,personnummer,address,affected,confirmed\n\
             ../../escaped,A,a@example.se,1,x,namn,ja\n\
             a/b/c,B,b@example.se,1,x,namn,ja\n\
             ..,C,c@example.se,1,x,namn,ja\n\
             /etc/passwd,D,d@example.se,1,x,namn,ja\n\
             {long},E,e@example.se,1,x,namn,ja\n\
             {long}x,F,f@example.se,1,x,namn,ja\n"
        ),
    );
    let before: Vec<_> = std::fs::read_dir(env.root()).expect("root").collect();
    let run = env.run(&["preview"]);
    run.expect_code(0);
    assert!(run.stdout.contains("written 6 "), "{}", run.all());
    let files = written_to(&env);
    assert_eq!(files.len(), 6, "{files:?}");
    for (name, _) in &files {
        assert!(name.len() <= 120, "{name}");
    }
    // Nothing appeared beside the preview folder, nor above the test's folder.
    let after: Vec<_> = std::fs::read_dir(env.root()).expect("root").collect();
    assert_eq!(before.len() + 1, after.len(), "only preview/ is new");
    assert!(
        !env.root()
            .parent()
            .expect("parent")
            .join("escaped.eml")
            .exists()
    );
    let entries = index_entries(&env);
    let linked: std::collections::HashSet<&str> =
        entries.iter().filter_map(|e| e["file"].as_str()).collect();
    assert_eq!(linked.len(), 6);
}

#[test]
fn keys_that_differ_only_in_punctuation_get_an_archive_file_each() {
    // The archive names its files as preview does: one file per key, each holding that
    // customer's own message exactly as the relay received it.
    let server = crate::support::smtp_server::SmtpServer::plain();
    let env = TestEnv::example();
    env.relay(server.port());
    env.set("journal", "archive", "\"sent\"");
    env.unset("recipients", "key_column");
    let addresses = [
        "anna.ek@example.se",
        "anna_ek@example.se",
        "anna+ek@example.se",
    ];
    env.write(
        "recipients.example.csv",
        format!(
            "customer_id,name,email,personnummer,address,affected,confirmed\n\
             1,Anna Ek,{},1,x,namn,ja\n2,Anna Ek,{},1,x,namn,ja\n3,Anna Ek,{},1,x,namn,ja\n",
            addresses[0], addresses[1], addresses[2]
        ),
    );
    env.run(&["send", "--yes"]).expect_code(0);
    let received = server.wait_for_received(3, std::time::Duration::from_secs(5));
    assert_eq!(received.len(), 3);
    let mut archived: Vec<(String, Vec<u8>)> = std::fs::read_dir(env.path("sent"))
        .expect("archive")
        .map(|e| {
            let path = e.expect("entry").path();
            let name = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("archived"))
        })
        .collect();
    archived.sort();
    assert_eq!(
        archived.len(),
        3,
        "{:?}",
        archived.iter().map(|a| &a.0).collect::<Vec<_>>()
    );
    let mut to: Vec<String> = Vec::new();
    for (name, bytes) in &archived {
        let msg = MessageParser::default().parse(bytes).expect("parses");
        let addr = msg
            .to()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .expect("To")
            .to_string();
        let got = received
            .iter()
            .find(|r| r.rcpt_to.iter().any(|t| t.eq_ignore_ascii_case(&addr)))
            .unwrap_or_else(|| panic!("{name}: the relay got nothing for {addr}"));
        assert!(got.data == *bytes, "{name}: not the bytes the relay got");
        to.push(addr);
    }
    to.sort();
    let mut want: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    want.sort();
    assert_eq!(to, want);
}
