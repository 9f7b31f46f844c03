//! The header row: which column is the address, the key, the name and the lists, and what
//! is wrong with it, all problems at once.

use std::collections::HashSet;

use anyhow::{Result, bail};

use super::{CsvSource, csv_error_text};
use crate::config;
use crate::text::excerpt;

impl CsvSource {
    pub(super) fn check_header(&mut self, cfg: &config::Recipients) -> Result<()> {
        let mut reader = self.csv_reader()?;
        let headers = reader
            .headers()
            .map_err(|e| {
                anyhow::anyhow!(
                    "{}:1: cannot read the header row: {}",
                    self.shown,
                    csv_error_text(&e)
                )
            })?
            .clone();
        self.headers = headers.iter().map(|h| h.trim().to_string()).collect();
        let mut problems = Vec::new();
        let mut seen = HashSet::new();
        for (i, h) in self.headers.iter().enumerate() {
            if h.is_empty() {
                problems.push(format!(
                    "{}:1: column {}: the header has no name",
                    self.shown,
                    i + 1
                ));
            } else if h.len() > 256 {
                problems.push(format!(
                    "{}:1: column {}: a header name of {} bytes is not a column name ({})",
                    self.shown,
                    i + 1,
                    h.len(),
                    excerpt(h, 40)
                ));
            } else if !seen.insert(h.as_str()) {
                problems.push(format!(
                    "{}:1: column {}: appears twice in the header",
                    self.shown,
                    excerpt(h, 60)
                ));
            }
        }
        let find = |name: &str| self.headers.iter().position(|h| h == name);
        let delim = match self.delimiter {
            b'\t' => "tab".to_string(),
            d => format!("{:?}", d as char),
        };
        let found = shown_headers(&self.headers);
        let mixed = [',', ';', '\t']
            .iter()
            .filter(|&&c| c != self.delimiter as char)
            .any(|&c| self.headers.iter().any(|h| h.contains(c)));
        let hint = if mixed {
            "; the header mixes delimiters: use one of , ; or tab throughout, or set [recipients] delimiter"
        } else {
            ""
        };
        match find(&cfg.email_column) {
            Some(i) => self.email_idx = i,
            None => problems.push(format!(
                "{}:1: column {}: missing from the header (found: {found}; delimiter {delim}){hint}",
                self.shown, cfg.email_column,
            )),
        }
        if let Some(k) = &cfg.key_column {
            match find(k) {
                Some(i) => self.key_idx = Some(i),
                None => problems.push(format!(
                    "{}:1: column {k}: key_column is missing from the header (found: {found})",
                    self.shown,
                )),
            }
        }
        self.name_idx = find(&cfg.name_column);
        self.list_seps = vec![None; self.headers.len()];
        for (col, sep) in &cfg.list_columns {
            match find(col) {
                Some(i) => self.list_seps[i] = Some(sep.clone()),
                None => problems.push(format!(
                    "{}:1: column {col}: named in list_columns but missing from the header",
                    self.shown
                )),
            }
        }
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
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
