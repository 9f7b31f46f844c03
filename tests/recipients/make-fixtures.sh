#!/usr/bin/env bash
# Makes the office-suite fixtures of the recipient tests from one source sheet, kunder.csv,
# with LibreOffice Calc headless (Debian: libreoffice-calc-nogui), the way an operator's
# office suite writes them:
#   kunder-1252.csv  ';'-separated Windows-1252, as Swedish Excel's "CSV (semikolonavgränsad)"
#                    (LibreOffice on Linux ends lines with LF; Excel's CRLF is hand-written
#                    in tests/cli/recipients.rs)
#   kunder-utf16.txt UTF-16 LE with BOM, tab-separated, as Excel's "Unicode text"
#   kunder.xlsx      an Excel workbook (customer numbers as text, dates as dates)
#   kunder.ods       an OpenDocument spreadsheet
# Run it from anywhere; it writes beside itself. The outputs are committed, so the tests
# need no LibreOffice; run this again after changing kunder.csv.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The import: ',' separated, '"' quoted, UTF-8 (76), from line 1; columns 1 to 7 as text
# (2), so customer numbers keep their leading zeros, column 8 as a date Y-M-D (5).
import='CSV:44,34,76,1,1/2/2/2/3/2/4/2/5/2/6/2/7/2/8/5'
# A profile of its own, so that an operator's running LibreOffice is not disturbed.
profile="file://$work/profile"
office() {
  soffice "-env:UserInstallation=$profile" --headless --norestore --infilter="$import" "$@" >/dev/null
}
cp "$here/kunder.csv" "$work/kunder.csv"
cd "$work"
# The export filters' options: separator (59 ';', 9 tab), quote (34 '"'), character set
# (1 Windows-1252, 65535 UTF-16), starting line 1.
office --convert-to 'xlsx:Calc MS Excel 2007 XML' kunder.csv
office --convert-to 'ods:calc8' kunder.csv
mkdir -p out1252 out16
office --convert-to 'csv:Text - txt - csv (StarCalc):59,34,1,1' --outdir out1252 kunder.csv
office --convert-to 'txt:Text - txt - csv (StarCalc):9,34,65535,1' --outdir out16 kunder.csv
cp kunder.xlsx kunder.ods "$here/"
cp out1252/kunder.csv "$here/kunder-1252.csv"
cp out16/kunder.txt "$here/kunder-utf16.txt"
ls -l "$here"/kunder*
