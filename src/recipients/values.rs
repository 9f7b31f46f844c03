//! Allowed values per column (`[recipients.values]`): a typo in a category (`personumer`)
//! would reach the customer as written and silently drop the advice that category brings,
//! so any value outside the list is an error naming the nearest allowed one.
//!
//! Values compare ignoring case and surrounding spaces; in a list column each item is a
//! value. The cell reaches the templates in the spelling of the list, so that a template's
//! `"personnummer" in recipient.affected` holds for `Personnummer` too.

/// The allowed values of one column.
#[derive(Debug, Clone)]
pub(super) struct Allowed {
    /// (folded, as written in the config), in config order.
    values: Vec<(String, String)>,
}

/// A value compared: trimmed, lower case.
fn fold(value: &str) -> String {
    value.trim().to_lowercase()
}

impl Allowed {
    /// The allowed values as the config lists them.
    pub(super) fn new(values: &[String]) -> Allowed {
        Allowed {
            values: values
                .iter()
                .map(|v| (fold(v), v.trim().to_string()))
                .collect(),
        }
    }

    /// The value in the config's spelling, or the error for it.
    pub(super) fn check(&self, value: &str) -> Result<String, String> {
        let folded = fold(value);
        if let Some((_, written)) = self.values.iter().find(|(f, _)| *f == folded) {
            return Ok(written.clone());
        }
        let shown = crate::text::quoted_excerpt(value.trim());
        let listed = self
            .values
            .iter()
            .map(|(_, w)| format!("{w:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        Err(match self.nearest(&folded) {
            Some(near) => format!(
                "{shown} is not an allowed value; the nearest allowed is {near:?} (allowed: {listed})"
            ),
            None => format!("{shown} is not an allowed value (allowed: {listed})"),
        })
    }

    /// The allowed value closest by edit distance (the first of equals, in config order);
    /// None only when the list allows nothing but the empty value.
    fn nearest(&self, folded: &str) -> Option<&str> {
        self.values
            .iter()
            .filter(|(f, _)| !f.is_empty())
            .map(|(f, w)| (strsim::levenshtein(folded, f), w.as_str()))
            .min_by_key(|(d, _)| *d)
            .map(|(_, w)| w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn categories() -> Allowed {
        Allowed::new(
            &["namn", "adress", "personnummer", "bank", "epost", "telefon"].map(String::from),
        )
    }

    #[test]
    fn case_and_spaces_do_not_count_and_give_the_config_spelling() {
        assert_eq!(
            categories().check(" Personnummer "),
            Ok("personnummer".into())
        );
        assert_eq!(categories().check("EPOST"), Ok("epost".into()));
        let confirmed = Allowed::new(&["ja", "nej", ""].map(String::from));
        assert_eq!(confirmed.check("  "), Ok("".into()));
        assert_eq!(confirmed.check("Ja"), Ok("ja".into()));
    }

    #[test]
    fn a_wrong_value_names_the_nearest_allowed_one() {
        let e = categories().check("personumer").unwrap_err();
        assert_eq!(
            e,
            "\"personumer\" is not an allowed value; the nearest allowed is \"personnummer\" (allowed: \"namn\", \"adress\", \"personnummer\", \"bank\", \"epost\", \"telefon\")"
        );
        let e = categories().check("adresss").unwrap_err();
        assert!(e.contains("the nearest allowed is \"adress\""), "{e}");
        let e = categories().check("kreditkort").unwrap_err();
        assert!(
            e.starts_with("\"kreditkort\" is not an allowed value; the nearest allowed is"),
            "{e}"
        );
        let confirmed = Allowed::new(&["ja", "nej", ""].map(String::from));
        let e = confirmed.check("jo").unwrap_err();
        assert!(e.contains("the nearest allowed is \"ja\""), "{e}");
        let only_empty = Allowed::new(&["".to_string()]);
        assert_eq!(
            only_empty.check("x").unwrap_err(),
            "\"x\" is not an allowed value (allowed: \"\")"
        );
    }
}
