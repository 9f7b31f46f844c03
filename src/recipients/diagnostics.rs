//! What a finding about the recipient file is, where it points, and how many are kept.

use std::fmt;

/// Errors (and warnings) above this many are counted, not kept: a million bad rows must not
/// fill memory. Whoever lists them says how many more there were.
pub const MAX_KEPT_DIAGNOSTICS: usize = 10_000;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The row cannot be sent.
    Error,
    /// Worth the operator's eye; the row is sent.
    Warning,
}

/// One finding about the CSV, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the operator named it.
    pub file: String,
    /// The workbook's sheet, for a workbook (`line` is then the sheet's row).
    pub sheet: Option<String>,
    /// The physical line where the record starts (header = 1).
    pub line: u64,
    /// The column, where one is to blame.
    pub column: Option<String>,
    /// What is wrong.
    pub message: String,
    /// Error or warning.
    pub severity: Severity,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
        }
        match &self.sheet {
            Some(sheet) => write!(f, "{}: sheet {sheet}, row {}: ", self.file, self.line)?,
            None => write!(f, "{}:{}: ", self.file, self.line)?,
        }
        if let Some(c) = &self.column {
            write!(f, "column {c}: ")?;
        }
        write!(f, "{}", self.message)
    }
}

/// Adds `d` to `list` unless the list already holds `MAX_KEPT_DIAGNOSTICS`.
pub fn keep(list: &mut Vec<Diagnostic>, d: Diagnostic) {
    if list.len() < MAX_KEPT_DIAGNOSTICS {
        list.push(d);
    }
}
