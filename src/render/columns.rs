//! Which CSV columns reach Tera: only those the templates name as `recipient.NAME`.
//!
//! A column no template names cannot change what they render; leaving it out keeps the
//! map small (Tera scans maps of up to six keys instead of hashing, BENCHMARKS.md of
//! 2026-11-27) and keeps what the templates never print, such as the personnummer, out of
//! the renderer altogether.

use serde::Serialize;

use crate::recipients::Recipient;

/// `recipient` for one render: every column, or only those the templates name.
pub(super) struct RecipientView<'a> {
    pub(super) recipient: &'a Recipient,
    pub(super) columns: Option<&'a [String]>,
}

impl Serialize for RecipientView<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Some(columns) = self.columns else {
            return self.recipient.serialize(s);
        };
        let fields = &self.recipient.fields;
        let mut map = s.serialize_map(None)?;
        for (k, v) in fields.iter().filter(|(k, _)| columns.contains(k)) {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The columns the templates read, when every `recipient` in their text is followed by
/// `.NAME` (or `?.NAME`); None (every column) when one is not, or when they dump the whole
/// context. The whole text is read, comments and strings too: what they name only adds
/// columns, or gives every column, which is harmless either way.
pub(super) fn columns_read<'a>(texts: impl Iterator<Item = &'a str>) -> Option<Vec<String>> {
    let (columns, other_use) = columns_named(texts);
    (!other_use).then_some(columns)
}

/// Every `NAME` in `recipient.NAME` (or `recipient?.NAME`) in the texts, and whether
/// `recipient` is also used in any other way (or the whole context dumped).
pub(super) fn columns_named<'a>(texts: impl Iterator<Item = &'a str>) -> (Vec<String>, bool) {
    const WORD: &str = "recipient";
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut columns: Vec<String> = Vec::new();
    let mut other_use = false;
    for text in texts {
        other_use |= text.contains("__tera_context");
        for (at, _) in text.match_indices(WORD) {
            let before = text[..at].chars().next_back();
            let rest = &text[at + WORD.len()..];
            if before.is_some_and(ident) || rest.starts_with(ident) {
                continue;
            }
            let rest = rest.trim_start();
            let Some(rest) = rest.strip_prefix("?.").or_else(|| rest.strip_prefix('.')) else {
                other_use = true;
                continue;
            };
            let rest = rest.trim_start();
            let end = rest.find(|c: char| !ident(c)).unwrap_or(rest.len());
            if end == 0 {
                other_use = true;
                continue;
            }
            let name = &rest[..end];
            if !columns.iter().any(|c| c == name) {
                columns.push(name.to_string());
            }
        }
    }
    (columns, other_use)
}

/// The text without its `{# … #}` comments (an unclosed one runs to the end).
pub(super) fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{#") {
        out.push_str(&rest[..start]);
        rest = rest[start + 2..]
            .find("#}")
            .map_or("", |end| &rest[start + 2 + end + 2..]);
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recipients::FieldValue;
    use tera::Tera;

    #[test]
    fn columns_the_templates_read() {
        let read = |texts: &[&str]| columns_read(texts.iter().copied());
        assert_eq!(
            read(&[
                "Hej {{ recipient.name }}{% if \"bank\" in recipient.affected %}",
                "{{ recipient?.customer_id }} {{ recipient . name }}",
            ]),
            Some(vec!["name".into(), "affected".into(), "customer_id".into()])
        );
        // No `recipient` at all: no column is needed.
        assert_eq!(read(&["Hej {{ incident.foretag }}"]), Some(vec![]));
        // A word that merely contains it is not it.
        assert_eq!(
            read(&["{{ my_recipient_list }} {{ recipients }} {{ recipient.email }}"]),
            Some(vec!["email".into()])
        );
        // Any other use of `recipient` may read any column: all of them go in.
        for text in [
            "{{ recipient }}",
            "{{ recipient[\"e-post\"] }}",
            "{{ recipient | json_encode }}",
            "{% set r = recipient %}{{ r.personnummer }}",
            "{{ __tera_context }}",
            "Dear recipient, {{ recipient.name }}",
            "{{ recipient.",
        ] {
            assert_eq!(read(&["{{ recipient.name }}", text]), None, "{text}");
        }
    }

    #[test]
    fn comments_name_no_column() {
        let text = "{#- recipient.COLUMN for each column -#}Hej {{ recipient.name }}{# x #}\
                    {{ recipient.affected }}{# unclosed recipient.nope";
        assert_eq!(
            without_comments(text),
            "Hej {{ recipient.name }}{{ recipient.affected }}"
        );
        assert_eq!(
            columns_named([without_comments(text).as_str()].into_iter()),
            (vec!["name".to_string(), "affected".to_string()], false)
        );
        assert_eq!(
            columns_named(["{{ recipient | json_encode }} {{ recipient.name }}"].into_iter()),
            (vec!["name".to_string()], true)
        );
    }

    #[test]
    fn a_column_no_template_names_stays_out() {
        let mut tera = Tera::new();
        let text = "{{ recipient.name }}|{{ recipient.personnummer is defined }}";
        tera.add_raw_template("t", text).expect("compiles");
        let recipient = Recipient {
            line: 2,
            key: "1".into(),
            email: "a@example.se".into(),
            name: "Åsa".into(),
            fields: vec![
                ("name".into(), FieldValue::Text("Åsa".into())),
                (
                    "personnummer".into(),
                    FieldValue::Text("19800101-0000".into()),
                ),
            ],
        };
        let columns = columns_read([text].into_iter());
        assert_eq!(
            columns,
            Some(vec!["name".to_string(), "personnummer".to_string()])
        );
        let render = |columns: Option<&[String]>| {
            let mut ctx = tera::Context::new();
            ctx.insert(
                "recipient",
                &RecipientView {
                    recipient: &recipient,
                    columns,
                },
            );
            tera.render("t", &ctx).expect("renders")
        };
        assert_eq!(render(columns.as_deref()), "Åsa|true");
        assert_eq!(render(Some(&["name".to_string()])), "Åsa|false");
        assert_eq!(render(None), "Åsa|true");
    }
}
