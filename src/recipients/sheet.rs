//! Workbooks (`.xlsx`, `.ods`) read directly with calamine, so that the operator need not
//! export a CSV (and cannot pick the wrong export): the first sheet or `[recipients] sheet`,
//! every cell as the operator sees it in the sheet.
//!
//! Text cells stay as written (customer numbers keep their leading zeros), numbers lose no
//! digits and gain no `.0`, dates become ISO dates. An `.xlsx` sheet is streamed cell by
//! cell (its shared-string table is held whole, as calamine reads it); an `.ods` sheet is
//! loaded whole, the only way calamine reads one.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use calamine::{Data, DataRef, ExcelDateTime, Ods, Reader, Xlsx};

/// One row of a sheet: its number (first row = 1), its cells from the first column on, and
/// the cells that cannot be read as text (column index, what is wrong).
pub(super) struct SheetRow<'a> {
    pub number: u64,
    pub cells: &'a [String],
    pub errors: &'a [(usize, String)],
}

/// Whether `path` names a workbook this module reads.
pub(super) fn is_workbook(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("xlsx") || e.eq_ignore_ascii_case("ods"))
}

fn is_ods(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("ods"))
}

/// The sheet to read: `wanted`, or the first.
fn pick(names: &[String], wanted: Option<&str>, shown: &str) -> Result<String> {
    match wanted {
        Some(w) => names
            .iter()
            .find(|n| n.as_str() == w)
            .or_else(|| {
                names
                    .iter()
                    .find(|n| n.trim().eq_ignore_ascii_case(w.trim()))
            })
            .cloned()
            .ok_or_else(|| {
                anyhow!(
                    "{shown}: [recipients] sheet {w:?} is not in the workbook (its sheets: {})",
                    names
                        .iter()
                        .map(|n| format!("{n:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }),
        None => names
            .first()
            .cloned()
            .ok_or_else(|| anyhow!("{shown}: the workbook has no sheet")),
    }
}

/// Calls `f` with every row that has a cell, in order, of the sheet `wanted` (or the
/// first); `f` returns false to stop. Returns the sheet's name. (One opening of the
/// workbook reads its shared strings: the sheet is picked and read in the same one.)
pub(super) fn read(
    path: &Path,
    wanted: Option<&str>,
    shown: &str,
    mut f: impl FnMut(SheetRow<'_>) -> Result<bool>,
) -> Result<String> {
    let mut row = RowBuffer::default();
    if is_ods(path) {
        let mut wb: Ods<_> = calamine::open_workbook(path)
            .map_err(|e| anyhow!("{shown}: cannot read the workbook: {e}"))?;
        let sheet = pick(&wb.sheet_names(), wanted, shown)?;
        let range = wb
            .worksheet_range(&sheet)
            .map_err(|e| anyhow!("{shown}: sheet {sheet}: cannot read: {e}"))?;
        let Some((first_row, first_col)) = range.start() else {
            return Ok(sheet);
        };
        for (r, cells) in range.rows().enumerate() {
            row.start(u64::from(first_row) + r as u64 + 1);
            for (c, v) in cells.iter().enumerate() {
                row.set(first_col as usize + c, data_text(v));
            }
            if !row.emit(&mut f)? {
                return Ok(sheet);
            }
        }
        return Ok(sheet);
    }
    let mut wb: Xlsx<_> = calamine::open_workbook(path)
        .map_err(|e| anyhow!("{shown}: cannot read the workbook: {e}"))?;
    let sheet = pick(&wb.sheet_names(), wanted, shown)?;
    let mut cells = wb
        .worksheet_cells_reader(&sheet)
        .map_err(|e| anyhow!("{shown}: sheet {sheet}: cannot read: {e}"))?;
    let mut current: Option<u32> = None;
    loop {
        let cell = cells
            .next_cell()
            .map_err(|e| anyhow!("{shown}: sheet {sheet}: cannot read: {e}"))
            .context("the workbook is damaged or not an .xlsx file")?;
        let Some(cell) = cell else { break };
        let (r, c) = cell.get_position();
        if current != Some(r) {
            if current.is_some() && !row.emit(&mut f)? {
                drop(cells);
                return Ok(sheet);
            }
            current = Some(r);
            row.start(u64::from(r) + 1);
        }
        row.set(c as usize, dataref_text(cell.get_value()));
    }
    if current.is_some() {
        row.emit(&mut f)?;
    }
    drop(cells);
    Ok(sheet)
}

/// The row being put together, its buffers reused from row to row.
#[derive(Default)]
struct RowBuffer {
    number: u64,
    cells: Vec<String>,
    errors: Vec<(usize, String)>,
    used: usize,
}

impl RowBuffer {
    fn start(&mut self, number: u64) {
        self.number = number;
        self.used = 0;
        self.errors.clear();
        for c in &mut self.cells {
            c.clear();
        }
    }

    fn set(&mut self, col: usize, text: Result<String, String>) {
        if col >= self.cells.len() {
            self.cells.resize(col + 1, String::new());
        }
        match text {
            Ok(t) => {
                if !t.is_empty() {
                    self.used = self.used.max(col + 1);
                }
                self.cells[col] = t;
            }
            Err(e) => {
                self.used = self.used.max(col + 1);
                self.errors.push((col, e));
            }
        }
    }

    /// Hands the row on unless it has no cell with anything in it.
    fn emit(&mut self, f: &mut impl FnMut(SheetRow<'_>) -> Result<bool>) -> Result<bool> {
        if self.used == 0 {
            return Ok(true);
        }
        f(SheetRow {
            number: self.number,
            cells: &self.cells[..self.used],
            errors: &self.errors,
        })
    }
}

/// A cell of an `.xlsx` sheet as text.
fn dataref_text(v: &DataRef<'_>) -> Result<String, String> {
    Ok(match v {
        DataRef::Int(i) => i.to_string(),
        DataRef::Float(f) => number_text(*f),
        DataRef::String(s) => s.clone(),
        DataRef::SharedString(s) => (*s).to_string(),
        DataRef::Bool(b) => bool_text(*b),
        DataRef::DateTime(d) => date_text(d),
        DataRef::DateTimeIso(s) | DataRef::DurationIso(s) => s.clone(),
        DataRef::Error(e) => return Err(format!("the cell holds the error {e}")),
        DataRef::Empty => String::new(),
    })
}

/// A cell of an `.ods` sheet as text.
fn data_text(v: &Data) -> Result<String, String> {
    Ok(match v {
        Data::Int(i) => i.to_string(),
        Data::Float(f) => number_text(*f),
        Data::String(s) => s.clone(),
        Data::Bool(b) => bool_text(*b),
        Data::DateTime(d) => date_text(d),
        Data::DateTimeIso(s) => iso_date_text(s),
        Data::DurationIso(s) => s.clone(),
        Data::Error(e) => return Err(format!("the cell holds the error {e}")),
        Data::Empty => String::new(),
    })
}

fn bool_text(b: bool) -> String {
    if b { "TRUE" } else { "FALSE" }.to_string()
}

/// A number as the sheet shows it in its General format: whole numbers without `.0`, others
/// with the digits they have (to 10 decimals, so that 0.1 + 0.2 is 0.3).
fn number_text(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        return format!("{f:.0}");
    }
    let rounded = (f * 1e10).round() / 1e10;
    if rounded.is_finite() && rounded != 0.0 {
        format!("{rounded}")
    } else {
        format!("{f}")
    }
}

/// A date as an ISO date, with the time only where there is one.
fn date_text(d: &ExcelDateTime) -> String {
    let (y, mo, da, h, mi, s, _) = d.to_ymd_hms_milli();
    if d.is_duration() {
        let total = d.as_f64() * 24.0;
        return format!("{:02}:{mi:02}:{s:02}", total.floor() as u64);
    }
    match (h, mi, s) {
        (0, 0, 0) => format!("{y:04}-{mo:02}-{da:02}"),
        (_, _, 0) => format!("{y:04}-{mo:02}-{da:02} {h:02}:{mi:02}"),
        _ => format!("{y:04}-{mo:02}-{da:02} {h:02}:{mi:02}:{s:02}"),
    }
}

/// An `.ods` date (`2023-10-02T00:00:00`) as the ISO date it is.
fn iso_date_text(s: &str) -> String {
    match s.strip_suffix("T00:00:00") {
        Some(date) => date.to_string(),
        None => s.replacen('T', " ", 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::ExcelDateTimeType;

    #[test]
    fn numbers_as_the_sheet_shows_them() {
        assert_eq!(number_text(1001.0), "1001");
        assert_eq!(number_text(-3.0), "-3");
        assert_eq!(number_text(0.1 + 0.2), "0.3");
        assert_eq!(number_text(2.5), "2.5");
        assert_eq!(number_text(19800101.0), "19800101");
    }

    #[test]
    fn dates_become_iso_dates() {
        // 45201 is 2023-10-02 in the 1900 date system.
        let d = ExcelDateTime::new(45201.0, ExcelDateTimeType::DateTime, false);
        assert_eq!(date_text(&d), "2023-10-02");
        let d = ExcelDateTime::new(45201.5, ExcelDateTimeType::DateTime, false);
        assert_eq!(date_text(&d), "2023-10-02 12:00");
        assert_eq!(iso_date_text("2023-10-02T00:00:00"), "2023-10-02");
        assert_eq!(iso_date_text("2023-10-02T08:30:00"), "2023-10-02 08:30:00");
    }

    #[test]
    fn the_sheet_is_picked_by_name_or_first() {
        let names = vec!["Kunder".to_string(), "Blad2".to_string()];
        assert_eq!(pick(&names, None, "k.xlsx").expect("first"), "Kunder");
        assert_eq!(
            pick(&names, Some("blad2"), "k.xlsx").expect("named"),
            "Blad2"
        );
        let e = pick(&names, Some("Saknas"), "k.xlsx")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "k.xlsx: [recipients] sheet \"Saknas\" is not in the workbook (its sheets: \"Kunder\", \"Blad2\")"
        );
    }
}
