//! Variants: the distinct versions of the notice in a mailing. Two messages are one
//! variant when their text differs only in the customer's own identity fields: the key,
//! the name, the address, and the columns the templates only print.
//!
//! A row's group is found without rendering it, from the values of the columns the
//! templates branch on (every column they name in a `{% %}` tag or in a printed
//! expression that is more than the column itself), plus the message's language: cheap
//! enough for every row of a large mailing. Groups whose examples read the same once the
//! example's identity fields are masked (`ja` and `Ja` where the template treats them
//! alike) are then merged into one variant, so a variant is what the customer reads.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::message::Prepared;
use crate::recipients::{FieldValue, Recipient};

/// Groups beyond this many get no example of their own (a template that prints a column
/// differing on every row, say): the page says so instead of writing a file per row.
pub const MAX_EXAMPLES: usize = 1000;

/// One group of rows with the same values in the branching columns.
#[derive(Debug, Clone)]
pub struct Group {
    /// (column, value as shown) for each branching column.
    pub values: Vec<(String, String)>,
    /// The message language.
    pub language: &'static str,
    /// Rows in the group.
    pub count: u64,
    /// The row (numbered from 0 in the page) whose message is the group's example.
    pub example: Option<u64>,
    /// The example's subject.
    pub subject: String,
    /// A hash of the example's text with its identity fields masked.
    masked: Option<[u8; 32]>,
}

/// A variant: groups that read the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    /// The first group's values (what sets it apart).
    pub values: Vec<(String, String)>,
    /// Its language.
    pub language: &'static str,
    /// Rows in it.
    pub count: u64,
    /// The example row.
    pub example: Option<u64>,
    /// The example's subject.
    pub subject: String,
    /// Its first group (whose example is its example).
    pub group: usize,
}

/// Finds each row's group as the rows come.
#[derive(Debug)]
pub struct Variants {
    /// The columns whose values set a group apart (None: every column but the identity
    /// ones, because the templates use `recipient` in a way that cannot be followed).
    branching: Option<Vec<String>>,
    /// The identity columns (never part of a group's values).
    identity: Vec<String>,
    index: ahash::AHashMap<String, usize>,
    /// The groups, in order of their first row.
    pub groups: Vec<Group>,
    key: String,
}

impl Variants {
    /// Groups by the columns the template sources branch on; `identity` are the key, name
    /// and address columns.
    pub fn new(sources: &[String], identity: Vec<String>) -> Variants {
        let branching = branching_columns(sources).map(|columns| {
            columns
                .into_iter()
                .filter(|c| !identity.contains(c))
                .collect()
        });
        Variants {
            branching,
            identity,
            index: ahash::AHashMap::new(),
            groups: Vec::new(),
            key: String::new(),
        }
    }

    /// The columns that set groups apart (None: every non-identity column).
    #[cfg(test)]
    pub fn branching(&self) -> Option<&[String]> {
        self.branching.as_deref()
    }

    /// The group of a row, and whether it is new (it then wants an example). Runs for
    /// every row on the thread that takes rows in CSV order: one key built in a reused
    /// buffer and one lookup, no allocation for a group already seen.
    pub fn group_of(&mut self, r: &Recipient, language: &'static str) -> (usize, bool) {
        let mut key = std::mem::take(&mut self.key);
        key.clear();
        key.push_str(language);
        self.each_value(r, |column, value| {
            key.push('\u{1f}');
            key.push_str(column);
            key.push('\u{1e}');
            match value {
                FieldValue::Text(t) => key.push_str(t),
                FieldValue::List(items) => {
                    for item in items {
                        key.push_str(item);
                        key.push('\u{1d}');
                    }
                }
            }
        });
        if let Some(&g) = self.index.get(key.as_str()) {
            self.groups[g].count += 1;
            self.key = key;
            return (g, false);
        }
        let g = self.groups.len();
        self.index.insert(key.clone(), g);
        self.key = key;
        let mut values = Vec::new();
        self.each_value(r, |column, value| {
            values.push((column.to_string(), shown(value)))
        });
        self.groups.push(Group {
            values,
            language,
            count: 1,
            example: None,
            subject: String::new(),
            masked: None,
        });
        (g, true)
    }

    /// Calls `f` on each (column, value) of the row that sets groups apart.
    fn each_value(&self, r: &Recipient, mut f: impl FnMut(&str, &FieldValue)) {
        match &self.branching {
            Some(columns) => {
                for c in columns {
                    if let Some((k, v)) = r.fields.iter().find(|(k, _)| k == c) {
                        f(k, v);
                    }
                }
            }
            None => {
                for (k, v) in &r.fields {
                    if !self.identity.contains(k) {
                        f(k, v);
                    }
                }
            }
        }
    }

    /// Records the example of group `g`: row `row`, whose message is `prepared`.
    pub fn set_example(&mut self, g: usize, row: u64, r: &Recipient, prepared: &Prepared) {
        if let Some(group) = self.groups.get_mut(g) {
            group.example = Some(row);
            group.subject = prepared.rendered.subject.clone();
            group.masked = Some(masked_hash(r, prepared));
        }
    }

    /// The variants, and for each group its variant's number.
    pub fn finish(&self) -> (Vec<Variant>, Vec<usize>) {
        let mut variants: Vec<Variant> = Vec::new();
        let mut by_text: HashMap<(&str, [u8; 32]), usize> = HashMap::new();
        let mut of_group = Vec::with_capacity(self.groups.len());
        for (g, group) in self.groups.iter().enumerate() {
            let same = group
                .masked
                .and_then(|m| by_text.get(&(group.language, m)).copied());
            match same {
                Some(v) => {
                    variants[v].count += group.count;
                    of_group.push(v);
                }
                None => {
                    if let Some(m) = group.masked {
                        by_text.insert((group.language, m), variants.len());
                    }
                    of_group.push(variants.len());
                    variants.push(Variant {
                        values: group.values.clone(),
                        language: group.language,
                        count: group.count,
                        example: group.example,
                        subject: group.subject.clone(),
                        group: g,
                    });
                }
            }
        }
        (variants, of_group)
    }
}

/// A cell as the page shows it: list items joined with commas.
pub fn shown(value: &FieldValue) -> String {
    match value {
        FieldValue::Text(t) => t.clone(),
        FieldValue::List(items) => items.join(", "),
    }
}

/// The example's subject, text and HTML with the customer's key, name and address (also
/// as HTML escapes them) masked, hashed.
fn masked_hash(r: &Recipient, prepared: &Prepared) -> [u8; 32] {
    let mut values: Vec<(String, &str)> = Vec::new();
    for (value, mark) in [
        (r.name.as_str(), "\u{1}NAME\u{1}"),
        (r.email.as_str(), "\u{1}EMAIL\u{1}"),
        (r.key.as_str(), "\u{1}KEY\u{1}"),
    ] {
        if !value.is_empty() {
            values.push((value.to_string(), mark));
            let escaped = super::page::html_escape(value);
            if escaped != value {
                values.push((escaped, mark));
            }
        }
    }
    // Longest first, so that a name holding the key is masked whole.
    values.sort_by_key(|v| std::cmp::Reverse(v.0.len()));
    let mask = |text: &str| {
        let mut out = text.to_string();
        for (value, mark) in &values {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), mark);
            }
        }
        out
    };
    let rendered = &prepared.rendered;
    let mut h = Sha256::new();
    for part in [
        Some(rendered.subject.as_str()),
        Some(rendered.text.as_str()),
        rendered.html.as_deref(),
    ] {
        let part = part.map(mask).unwrap_or_default();
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// The columns the templates branch on: every `recipient.NAME` in a `{% %}` tag, or in a
/// `{{ }}` that prints more than the column itself (optionally through filters). None
/// when `recipient` is used in a way this cannot follow (`recipient["x"]`, passed whole).
pub fn branching_columns(sources: &[String]) -> Option<Vec<String>> {
    let mut branching: Vec<String> = Vec::new();
    for source in sources {
        let mut rest = source.as_str();
        while let Some(open) = rest
            .find("{{")
            .into_iter()
            .chain(rest.find("{%"))
            .chain(rest.find("{#"))
            .min()
        {
            let kind = &rest[open..open + 2];
            let close = match kind {
                "{{" => "}}",
                "{%" => "%}",
                _ => "#}",
            };
            let after = &rest[open + 2..];
            let end = after.find(close).unwrap_or(after.len());
            let inner = &after[..end];
            rest = after.get(end + 2..).unwrap_or("");
            if kind == "{#" {
                continue;
            }
            let inner = inner.trim_matches('-').trim();
            let uses = column_uses(inner)?;
            if uses.is_empty() {
                continue;
            }
            if kind == "{{" && uses.len() == 1 && only_printed(inner) {
                continue;
            }
            for column in uses {
                if !branching.contains(&column) {
                    branching.push(column);
                }
            }
        }
    }
    Some(branching)
}

/// `recipient.NAME` optionally followed by filters that name no other recipient field.
fn only_printed(expr: &str) -> bool {
    let head = expr.split('|').next().unwrap_or("").trim();
    let Some(name) = head
        .strip_prefix("recipient.")
        .or_else(|| head.strip_prefix("recipient?."))
    else {
        return false;
    };
    name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && expr.matches("recipient").count() == 1
}

/// The columns an expression names as `recipient.NAME`; None for any other use of
/// `recipient`.
fn column_uses(expr: &str) -> Option<Vec<String>> {
    const WORD: &str = "recipient";
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    for (at, _) in expr.match_indices(WORD) {
        let before = expr[..at].chars().next_back();
        let rest = &expr[at + WORD.len()..];
        if before.is_some_and(|c| ident(c) || c == '.') || rest.starts_with(ident) {
            continue;
        }
        let rest = rest.trim_start();
        let rest = rest.strip_prefix("?.").or_else(|| rest.strip_prefix('.'))?;
        let rest = rest.trim_start();
        let end = rest.find(|c: char| !ident(c)).unwrap_or(rest.len());
        if end == 0 {
            return None;
        }
        out.push(rest[..end].to_string());
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Rendered;

    fn recipient(key: &str, name: &str, affected: &[&str], confirmed: &str) -> Recipient {
        Recipient {
            line: 2,
            key: key.into(),
            email: format!("{key}@example.se"),
            name: name.into(),
            fields: vec![
                ("customer_id".into(), FieldValue::Text(key.into())),
                ("name".into(), FieldValue::Text(name.into())),
                (
                    "email".into(),
                    FieldValue::Text(format!("{key}@example.se")),
                ),
                (
                    "affected".into(),
                    FieldValue::List(affected.iter().map(|s| s.to_string()).collect()),
                ),
                ("confirmed".into(), FieldValue::Text(confirmed.into())),
                ("kundnr".into(), FieldValue::Text(format!("K{key}"))),
            ],
        }
    }

    #[test]
    fn branching_columns_of_tags_and_expressions() {
        let src = "Hej {{ recipient.name }} {{ recipient.kundnr | upper }}\n\
                   {% if recipient.confirmed in [\"ja\"] %}x{% endif %}\n\
                   {%- for k in recipient.affected %}{{ k }}{% endfor %}\n\
                   {{ 3 if \"bank\" in recipient.bank else 2 }}\n\
                   {# {% if recipient.commented %} #}";
        assert_eq!(
            branching_columns(&[src.to_string()]),
            Some(vec![
                "confirmed".to_string(),
                "affected".to_string(),
                "bank".to_string()
            ])
        );
        assert_eq!(
            branching_columns(&["{{ recipient[\"x\"] }}".to_string()]),
            None
        );
        assert_eq!(
            branching_columns(&["{{ myrecipient.x }} {{ a.recipient }}".to_string()]),
            Some(vec![])
        );
    }

    #[test]
    fn the_shipped_templates_branch_on_affected_and_confirmed() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let sources: Vec<String> = ["subject.txt", "body.txt", "body.html"]
            .iter()
            .map(|n| std::fs::read_to_string(dir.join(n)).expect("template"))
            .collect();
        let v = Variants::new(
            &sources,
            vec!["customer_id".into(), "name".into(), "email".into()],
        );
        assert_eq!(
            v.branching(),
            Some(&["confirmed".to_string(), "affected".to_string()][..])
        );
    }

    fn prepared(r: &Recipient, text: &str) -> Prepared {
        Prepared {
            message_id: String::new(),
            rcpt: r.email.parse().expect("address"),
            file_name: String::new(),
            language: "sv",
            rendered: Rendered {
                subject: "Ämne".into(),
                text: text.into(),
                html: Some(format!("<p>{}</p>", super::super::page::html_escape(text))),
            },
            bytes: Vec::new(),
        }
    }

    #[test]
    fn identity_and_printed_columns_do_not_split_variants() {
        let mut v = Variants::new(
            &["{{ recipient.name }}{{ recipient.kundnr }}{% if recipient.confirmed == \"ja\" %}{% endif %}{% for a in recipient.affected %}{% endfor %}".to_string()],
            vec!["customer_id".into(), "name".into(), "email".into()],
        );
        let rows = [
            recipient("1", "Anna", &["namn"], "ja"),
            recipient("2", "Bo", &["namn"], "ja"),
            recipient("3", "Cia", &["namn", "bank"], "ja"),
            recipient("4", "Dan", &["namn"], "nej"),
            recipient("5", "O'Brien", &["namn"], "Ja"),
        ];
        let mut groups = Vec::new();
        for (i, r) in rows.iter().enumerate() {
            let (g, new) = v.group_of(r, "sv");
            groups.push(g);
            if new {
                // "Ja" reads as "ja" does: the same text once the name is masked.
                let yes = if r.field("confirmed") == Some(&FieldValue::Text("nej".into())) {
                    "kan finnas"
                } else {
                    "finns"
                };
                let text = format!(
                    "Hej {}, dina uppgifter {yes}: {}",
                    r.name,
                    shown(r.field("affected").expect("affected"))
                );
                v.set_example(g, i as u64, r, &prepared(r, &text));
            }
        }
        assert_eq!(groups, [0, 0, 1, 2, 3]);
        let (variants, of_group) = v.finish();
        assert_eq!(of_group, [0, 1, 2, 0], "the Ja group joins the ja one");
        assert_eq!(variants.len(), 3);
        assert_eq!(variants[0].count, 3);
        assert_eq!(variants[0].example, Some(0));
        assert_eq!(
            variants[1].values,
            [
                ("confirmed".to_string(), "ja".to_string()),
                ("affected".to_string(), "namn, bank".to_string())
            ]
        );
        // Another language is another variant whatever the text.
        let (g, new) = v.group_of(&rows[0], "en");
        assert!(new);
        v.set_example(
            g,
            9,
            &rows[0],
            &prepared(&rows[0], "Hej Anna, dina uppgifter finns: namn"),
        );
        assert_eq!(v.finish().0.len(), 4);
    }
}
