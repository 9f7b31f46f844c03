//! The header row: which column is the address, the key, the name, the lists and the
//! columns with allowed values, and what is wrong with it, all problems at once.
//!
//! Names match ignoring case and surrounding spaces (Excel users write `Email` or
//! ` e-post `); two headers equal that way are an error. Empty columns at the end (Excel's
//! `;;`) are not columns. A column the config names reaches the templates under the
//! config's spelling, so that `recipient.email` works whatever the header's case.

use std::collections::HashMap;

use anyhow::{Result, bail};

use super::CsvSource;
use super::values::Allowed;
use crate::config;
use crate::text::excerpt;

/// A header name as compared.
fn fold(name: &str) -> String {
    name.trim().to_lowercase()
}

impl CsvSource {
    /// Takes the header's names (as written) and finds the configured columns in them.
    pub(super) fn check_header(
        &mut self,
        names: Vec<String>,
        cfg: &config::Recipients,
    ) -> Result<()> {
        let mut names: Vec<String> = names.iter().map(|h| h.trim().to_string()).collect();
        while names.last().is_some_and(String::is_empty) {
            names.pop();
        }
        self.headers = names;
        let at = self.at(self.header_line);
        let mut problems = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, h) in self.headers.iter().enumerate() {
            if h.is_empty() {
                problems.push(format!("{at}: column {}: the header has no name", i + 1));
            } else if h.len() > 256 {
                problems.push(format!(
                    "{at}: column {}: a header name of {} bytes is not a column name ({})",
                    i + 1,
                    h.len(),
                    excerpt(h, 40)
                ));
            } else if let Some(first) = seen.insert(fold(h), i) {
                let earlier = &self.headers[first];
                let how = if earlier == h {
                    String::new()
                } else {
                    format!(
                        " (as {}: names match ignoring case and spaces)",
                        excerpt(earlier, 60)
                    )
                };
                problems.push(format!(
                    "{at}: column {}: appears twice in the header{how}",
                    excerpt(h, 60)
                ));
            }
        }
        let delim = match self.delimiter {
            b'\t' => "tab".to_string(),
            d => format!("{:?}", d as char),
        };
        let found = shown_headers(&self.headers);
        let mixed = self.sheet.is_none()
            && [',', ';', '\t']
                .iter()
                .filter(|&&c| c != self.delimiter as char)
                .any(|&c| self.headers.iter().any(|h| h.contains(c)));
        let hint = if mixed {
            "; the header mixes delimiters: use one of , ; or tab throughout, or set [recipients] delimiter"
        } else {
            ""
        };
        let found_how = if self.sheet.is_some() {
            format!("found: {found}")
        } else {
            format!("found: {found}; delimiter {delim}")
        };
        let width = self.headers.len();
        let headers = &mut self.headers;
        // Finds a configured column and gives it the config's spelling.
        let mut find = |name: &str| -> Option<usize> {
            let i = headers.iter().position(|h| fold(h) == fold(name))?;
            headers[i] = name.trim().to_string();
            Some(i)
        };
        match find(&cfg.email_column) {
            Some(i) => self.email_idx = i,
            None => problems.push(format!(
                "{at}: column {}: missing from the header ({found_how}){hint}",
                cfg.email_column,
            )),
        }
        if let Some(k) = &cfg.key_column {
            match find(k) {
                Some(i) => self.key_idx = Some(i),
                None => problems.push(format!(
                    "{at}: column {k}: key_column is missing from the header (found: {found})",
                )),
            }
        }
        self.name_idx = find(&cfg.name_column);
        self.list_seps = vec![None; width];
        for (col, sep) in &cfg.list_columns {
            match find(col) {
                Some(i) => self.list_seps[i] = Some(sep.clone()),
                None => problems.push(format!(
                    "{at}: column {col}: named in list_columns but missing from the header"
                )),
            }
        }
        self.allowed = vec![None; width];
        let mut warnings = Vec::new();
        for (col, values) in &cfg.values {
            match find(col) {
                Some(i) => self.allowed[i] = Some(Allowed::new(values)),
                // An optional column the templates read where a file has it: no error, but
                // said, since a misspelt key would otherwise check nothing.
                None => warnings.push(col.clone()),
            }
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
        self.header_warnings = warnings
            .into_iter()
            .map(|col| {
                self.diagnostic(
                    self.header_line,
                    Some(&col),
                    "named in [recipients.values] but not in the header: its allowed values check nothing".to_string(),
                    super::Severity::Warning,
                )
            })
            .collect();
        Ok(())
    }
}

/// The header names for an error message: each bounded, at most 20 of them.
fn shown_headers(headers: &[String]) -> String {
    let mut shown: Vec<String> = headers.iter().take(20).map(|h| excerpt(h, 40)).collect();
    if headers.len() > 20 {
        shown.push(format!("and {} more", headers.len() - 20));
    }
    shown.join(", ")
}
