//! Postgres' COPY text and CSV formats, read incrementally: the client's
//! CopyData messages are cut at arbitrary byte boundaries, so the reader
//! keeps the unfinished record and parses every complete one into text
//! columns (the table's types are applied later, by the INSERT the rows go
//! through).
//!
//! Written by hand: the `csv` crate does not say whether a field was quoted,
//! and Postgres' CSV rule for NULL depends on exactly that (an unquoted empty
//! field is NULL, `""` is the empty string); no crate reads Postgres' text
//! format (backslash escapes, `\N`).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringBuilder};
use datafusion::error::{DataFusionError, Result};
use sluice_types::error::{SluiceError, SqlState};

use crate::sql::copy::{CopyFormat, CopyFormatKind};

/// Rows per batch handed to the INSERT: keeps batches a useful size for the
/// Parquet writer.
pub(super) const BATCH_ROWS: usize = 64 * 1024;
/// Text bytes per batch: with wide rows (hex-encoded images, long vectors)
/// a batch is cut earlier, bounding the memory one batch holds (and keeping
/// a text column far below i32 offsets' limit).
pub(super) const BATCH_BYTES: usize = 8 * 1024 * 1024;

/// What COPY's format readers share: data pushed in arbitrary chunks
/// becomes batches of text columns, one per column of the data.
pub trait RowsReader: std::fmt::Debug + Send {
    /// Rows parsed so far.
    fn rows(&self) -> u64;
    /// Parses every complete row in `data` (after what came before).
    fn push(&mut self, data: &[u8]) -> Result<()>;
    /// The batches completed since the last call.
    fn take_batches(&mut self) -> Vec<Vec<ArrayRef>>;
    /// Ends the data; returns the batches not yet taken.
    fn finish(self: Box<Self>) -> Result<Vec<Vec<ArrayRef>>>;
}

impl RowsReader for CopyReader {
    fn rows(&self) -> u64 {
        CopyReader::rows(self)
    }

    fn push(&mut self, data: &[u8]) -> Result<()> {
        CopyReader::push(self, data)
    }

    fn take_batches(&mut self) -> Vec<Vec<ArrayRef>> {
        CopyReader::take_batches(self)
    }

    fn finish(self: Box<Self>) -> Result<Vec<Vec<ArrayRef>>> {
        CopyReader::finish(*self)
    }
}

/// Parses COPY data pushed in arbitrary chunks into text columns.
#[derive(Debug)]
pub struct CopyReader {
    format: CopyFormat,
    /// Names of the columns each record holds, for error messages.
    names: Vec<String>,
    columns: usize,
    /// Bytes of the record not yet complete.
    pending: Vec<u8>,
    /// How far `pending` has been scanned for a record end.
    scanned: usize,
    /// CSV: whether the scan position is inside a quoted field.
    in_quotes: bool,
    header_pending: bool,
    /// `\.` was seen: everything after it is ignored, as Postgres does.
    ended: bool,
    /// Data lines read so far, for error messages ("line 3").
    line: u64,
    builders: Vec<StringBuilder>,
    rows_in_builders: usize,
    bytes_in_builders: usize,
    batches: Vec<Vec<ArrayRef>>,
    rows: u64,
    /// Scratch space for one record's unescaped fields.
    field_bytes: Vec<u8>,
    field_bounds: Vec<Option<(usize, usize)>>,
    /// The longest record (bytes between two record ends) accepted.
    max_record_bytes: usize,
}

/// The longest COPY record accepted by default. A client's line with no
/// newline, or a CSV quote that never closes, would otherwise grow the
/// buffer until the server runs out of memory. 256 MiB holds any value
/// Sluice reads into memory elsewhere (objects are capped at 256 MiB too).
pub const MAX_COPY_RECORD_BYTES: usize = 256 << 20;

impl CopyReader {
    /// A reader of records with one field per named column.
    pub fn new(format: CopyFormat, names: Vec<String>) -> Self {
        let header_pending = format.header;
        let columns = names.len();
        Self {
            format,
            names,
            columns,
            pending: Vec::new(),
            scanned: 0,
            in_quotes: false,
            header_pending,
            ended: false,
            line: 0,
            builders: new_builders(columns),
            rows_in_builders: 0,
            bytes_in_builders: 0,
            batches: Vec::new(),
            rows: 0,
            field_bytes: Vec::new(),
            field_bounds: Vec::new(),
            max_record_bytes: MAX_COPY_RECORD_BYTES,
        }
    }

    /// The same reader with another bound on one record's bytes.
    pub fn with_max_record_bytes(mut self, bytes: usize) -> Self {
        self.max_record_bytes = bytes;
        self
    }

    /// Rows parsed so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Parses every complete record in `data` (after what came before).
    pub fn push(&mut self, data: &[u8]) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        self.pending.extend_from_slice(data);
        let mut start = 0;
        let mut i = self.scanned;
        let csv = self.format.kind == CopyFormatKind::Csv;
        while i < self.pending.len() {
            let byte = self.pending[i];
            if csv
                && self.in_quotes
                && byte == self.format.escape
                && self.format.escape != self.format.quote
            {
                // An escape inside quotes protects the next byte; wait for
                // it if the chunk ends here.
                if i + 1 == self.pending.len() {
                    break;
                }
                i += 2;
                continue;
            }
            if csv && byte == self.format.quote {
                self.in_quotes = !self.in_quotes;
            } else if byte == b'\n' && !self.in_quotes {
                let record = std::mem::take(&mut self.pending);
                let result = self.record(&record[start..i]);
                self.pending = record;
                result?;
                start = i + 1;
                if self.ended {
                    self.pending.clear();
                    self.scanned = 0;
                    return Ok(());
                }
            }
            i += 1;
        }
        self.pending.drain(..start);
        self.scanned = i - start;
        if self.pending.len() > self.max_record_bytes {
            let why = if self.in_quotes {
                "a quoted CSV field that never closes"
            } else {
                "a line without an end"
            };
            // The partial record is dropped: the COPY fails, and nothing of
            // it may stay in memory while the client goes on sending.
            self.pending = Vec::new();
            self.scanned = 0;
            self.ended = true;
            return Err(SluiceError::new(
                SqlState::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "COPY record longer than {} bytes ({why}) (COPY line {})",
                    self.max_record_bytes,
                    self.line + 1
                ),
            )
            .into());
        }
        Ok(())
    }

    /// The batches of text columns completed since the last call (the rows
    /// of a record cut by the chunk's end stay for the next push).
    pub fn take_batches(&mut self) -> Vec<Vec<ArrayRef>> {
        std::mem::take(&mut self.batches)
    }

    /// Parses the last record (data need not end with a newline) and returns
    /// the parsed rows not yet taken as batches of text columns.
    pub fn finish(mut self) -> Result<Vec<Vec<ArrayRef>>> {
        if !self.ended && !self.pending.is_empty() {
            if self.in_quotes {
                return Err(self.error("unterminated CSV quoted field"));
            }
            let record = std::mem::take(&mut self.pending);
            self.record(&record)?;
        }
        self.flush();
        Ok(self.batches)
    }

    fn record(&mut self, mut record: &[u8]) -> Result<()> {
        self.line += 1;
        if let Some(stripped) = record.strip_suffix(b"\r") {
            record = stripped;
        }
        if record == b"\\." {
            self.ended = true;
            return Ok(());
        }
        if self.header_pending {
            self.header_pending = false;
            return Ok(());
        }
        self.field_bytes.clear();
        self.field_bounds.clear();
        match self.format.kind {
            // Binary data goes to the binary reader.
            CopyFormatKind::Text | CopyFormatKind::Binary => self.text_fields(record),
            CopyFormatKind::Csv => self.csv_fields(record),
        }
        if self.field_bounds.len() < self.columns {
            return Err(self.error(&format!(
                "missing data for column \"{}\"",
                self.names[self.field_bounds.len()]
            )));
        }
        if self.field_bounds.len() > self.columns {
            return Err(self.error("extra data after last expected column"));
        }
        for (column, bounds) in self.field_bounds.iter().enumerate() {
            match bounds {
                None => self.builders[column].append_null(),
                Some((start, end)) => {
                    let text =
                        std::str::from_utf8(&self.field_bytes[*start..*end]).map_err(|_| {
                            DataFusionError::from(SluiceError::new(
                                SqlState::CHARACTER_NOT_IN_REPERTOIRE,
                                format!(
                                    "invalid byte sequence for encoding \"UTF8\" (COPY line {})",
                                    self.line
                                ),
                            ))
                        })?;
                    self.builders[column].append_value(text);
                }
            }
        }
        self.rows += 1;
        self.rows_in_builders += 1;
        self.bytes_in_builders += self.field_bytes.len();
        if self.rows_in_builders >= BATCH_ROWS || self.bytes_in_builders >= BATCH_BYTES {
            self.flush();
        }
        Ok(())
    }

    /// Text format: fields split at the delimiter, `\N` (the NULL string,
    /// compared before unescaping) is NULL, backslash escapes decoded.
    fn text_fields(&mut self, record: &[u8]) {
        let delimiter = self.format.delimiter;
        let null = self.format.null.as_bytes();
        let mut raw_start = 0;
        let mut i = 0;
        let mut start = self.field_bytes.len();
        loop {
            if i == record.len() || record[i] == delimiter {
                if &record[raw_start..i] == null {
                    self.field_bytes.truncate(start);
                    self.field_bounds.push(None);
                } else {
                    self.field_bounds
                        .push(Some((start, self.field_bytes.len())));
                }
                if i == record.len() {
                    return;
                }
                i += 1;
                raw_start = i;
                start = self.field_bytes.len();
                continue;
            }
            if record[i] == b'\\' && i + 1 < record.len() {
                i += 1 + unescape(&record[i + 1..], &mut self.field_bytes);
                continue;
            }
            self.field_bytes.push(record[i]);
            i += 1;
        }
    }

    /// CSV format: quoted fields may hold delimiters, newlines and doubled
    /// quotes; an unquoted field equal to the NULL string is NULL.
    fn csv_fields(&mut self, record: &[u8]) {
        let CopyFormat {
            delimiter,
            quote,
            escape,
            ..
        } = self.format;
        let null = self.format.null.as_bytes();
        let mut i = 0;
        loop {
            let start = self.field_bytes.len();
            let mut quoted = false;
            while i < record.len() && record[i] != delimiter {
                if record[i] == quote {
                    quoted = true;
                    i += 1;
                    while i < record.len() {
                        let byte = record[i];
                        if byte == escape
                            && i + 1 < record.len()
                            && (record[i + 1] == quote || record[i + 1] == escape)
                            && (escape != quote || record[i + 1] == quote)
                        {
                            self.field_bytes.push(record[i + 1]);
                            i += 2;
                        } else if byte == quote {
                            i += 1;
                            break;
                        } else {
                            self.field_bytes.push(byte);
                            i += 1;
                        }
                    }
                } else {
                    self.field_bytes.push(record[i]);
                    i += 1;
                }
            }
            if !quoted && &self.field_bytes[start..] == null {
                self.field_bytes.truncate(start);
                self.field_bounds.push(None);
            } else {
                self.field_bounds
                    .push(Some((start, self.field_bytes.len())));
            }
            if i >= record.len() {
                return;
            }
            i += 1;
        }
    }

    fn flush(&mut self) {
        if self.rows_in_builders == 0 {
            return;
        }
        let columns = std::mem::replace(&mut self.builders, new_builders(self.columns))
            .into_iter()
            .map(|mut b| Arc::new(b.finish()) as ArrayRef)
            .collect();
        self.batches.push(columns);
        self.rows_in_builders = 0;
        self.bytes_in_builders = 0;
    }

    fn error(&self, message: &str) -> DataFusionError {
        SluiceError::new(
            SqlState::BAD_COPY_FILE_FORMAT,
            format!("{message} (COPY line {})", self.line),
        )
        .into()
    }
}

fn new_builders(columns: usize) -> Vec<StringBuilder> {
    (0..columns).map(|_| StringBuilder::new()).collect()
}

/// Decodes the escape after a backslash; returns how many bytes it used.
fn unescape(rest: &[u8], out: &mut Vec<u8>) -> usize {
    let byte = rest[0];
    let simple = match byte {
        b'b' => Some(0x08),
        b'f' => Some(0x0c),
        b'n' => Some(b'\n'),
        b'r' => Some(b'\r'),
        b't' => Some(b'\t'),
        b'v' => Some(0x0b),
        _ => None,
    };
    if let Some(decoded) = simple {
        out.push(decoded);
        return 1;
    }
    if (b'0'..=b'7').contains(&byte) {
        let digits = rest
            .iter()
            .take(3)
            .take_while(|b| (b'0'..=b'7').contains(*b))
            .count();
        let value = rest[..digits]
            .iter()
            .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
        out.push((value & 0xff) as u8);
        return digits;
    }
    if byte == b'x' {
        let digits = rest[1..]
            .iter()
            .take(2)
            .take_while(|b| b.is_ascii_hexdigit())
            .count();
        if digits > 0 {
            let hex = std::str::from_utf8(&rest[1..1 + digits]).unwrap_or("0");
            out.push(u8::from_str_radix(hex, 16).unwrap_or(0));
            return 1 + digits;
        }
    }
    // Any other escaped byte stands for itself (`\\`, `\<delimiter>`).
    out.push(byte);
    1
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, StringArray};

    #[test]
    fn one_record_is_bounded() {
        let sqlstate = |e: &DataFusionError| SluiceError::find(e).map(|e| e.sqlstate);
        // A line that never ends, sent in chunks.
        let mut reader = CopyReader::new(CopyFormat::new(CopyFormatKind::Text), names(1))
            .with_max_record_bytes(64);
        reader.push(b"ok\n").expect("a short record");
        reader.push(&[b'x'; 40]).expect("still under the bound");
        let err = reader.push(&[b'x'; 40]).expect_err("over the bound");
        assert_eq!(
            sqlstate(&err),
            Some(SqlState::PROGRAM_LIMIT_EXCEEDED),
            "{err}"
        );
        assert!(err.to_string().contains("a line without an end"), "{err}");
        assert!(reader.pending.is_empty(), "the partial record is dropped");
        // A CSV quote that never closes, across many lines.
        let mut reader = CopyReader::new(CopyFormat::new(CopyFormatKind::Csv), names(1))
            .with_max_record_bytes(64);
        reader.push(b"\"opened\n").expect("a quote opens");
        let mut failed = None;
        for _ in 0..10 {
            if let Err(e) = reader.push(b"still inside the quote\n") {
                failed = Some(e);
                break;
            }
        }
        let err = failed.expect("an unclosed quote is bounded");
        assert!(err.to_string().contains("never closes"), "{err}");
        // Records under the bound are unaffected.
        let rows = read(CopyFormat::new(CopyFormatKind::Text), 1, &[b"a\nb\n"]).expect("rows");
        assert_eq!(rows.len(), 2);
    }

    fn names(columns: usize) -> Vec<String> {
        (1..=columns).map(|i| format!("c{i}")).collect()
    }

    fn read(
        format: CopyFormat,
        columns: usize,
        chunks: &[&[u8]],
    ) -> Result<Vec<Vec<Option<String>>>> {
        let mut reader = CopyReader::new(format, names(columns));
        for chunk in chunks {
            reader.push(chunk)?;
        }
        let batches = reader.finish()?;
        let mut rows = Vec::new();
        for batch in batches {
            let columns: Vec<&StringArray> = batch
                .iter()
                .map(|c| c.as_any().downcast_ref::<StringArray>().unwrap())
                .collect();
            for row in 0..columns[0].len() {
                rows.push(
                    columns
                        .iter()
                        .map(|c| (!c.is_null(row)).then(|| c.value(row).to_owned()))
                        .collect(),
                );
            }
        }
        Ok(rows)
    }

    fn row(values: &[Option<&str>]) -> Vec<Option<String>> {
        values.iter().map(|v| v.map(str::to_owned)).collect()
    }

    #[test]
    fn text_format_escapes_nulls_and_chunking() {
        let text = CopyFormat::new(CopyFormatKind::Text);
        let data = b"1\ta\\tb\\\\c\n2\t\\N\n3\t\\101\\x42\\\t\r\n\\.\nignored\n";
        let expected = vec![
            row(&[Some("1"), Some("a\tb\\c")]),
            row(&[Some("2"), None]),
            row(&[Some("3"), Some("AB\t")]),
        ];
        assert_eq!(read(text.clone(), 2, &[data]).unwrap(), expected);
        // Every split point gives the same rows.
        for cut in 0..data.len() {
            let (a, b) = data.split_at(cut);
            assert_eq!(
                read(text.clone(), 2, &[a, b]).unwrap(),
                expected,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn csv_quotes_nulls_header_and_multiline_fields() {
        let mut csv = CopyFormat::new(CopyFormatKind::Csv);
        csv.header = true;
        let data = b"id,name\n1,\"a,b\"\n2,\n3,\"\"\n4,\"say \"\"hi\"\"\nthere\"";
        let expected = vec![
            row(&[Some("1"), Some("a,b")]),
            row(&[Some("2"), None]),
            row(&[Some("3"), Some("")]),
            row(&[Some("4"), Some("say \"hi\"\nthere")]),
        ];
        for cut in 0..data.len() {
            let (a, b) = data.split_at(cut);
            assert_eq!(
                read(csv.clone(), 2, &[a, b]).unwrap(),
                expected,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn csv_with_a_backslash_escape() {
        let mut csv = CopyFormat::new(CopyFormatKind::Csv);
        csv.escape = b'\\';
        let rows = read(csv, 1, &[b"\"a\\\"b\"\n"]).unwrap();
        assert_eq!(rows, vec![row(&[Some("a\"b")])]);
    }

    #[test]
    fn bad_records_are_errors_with_the_line() {
        let text = CopyFormat::new(CopyFormatKind::Text);
        let err = read(text.clone(), 2, &[b"1\ta\n2\n"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("missing data for column \"c2\" (COPY line 2)"),
            "{err}"
        );
        let err = read(text.clone(), 2, &[b"1\ta\tb\n"]).unwrap_err();
        assert!(
            err.to_string()
                .contains("extra data after last expected column"),
            "{err}"
        );
        let err = read(text, 1, &[b"\xff\n"]).unwrap_err();
        assert!(err.to_string().contains("invalid byte sequence"), "{err}");
        let csv = CopyFormat::new(CopyFormatKind::Csv);
        let err = read(csv, 1, &[b"\"open\n"]).unwrap_err();
        assert!(
            err.to_string().contains("unterminated CSV quoted field"),
            "{err}"
        );
    }

    #[test]
    fn large_inputs_are_cut_into_batches() {
        let text = CopyFormat::new(CopyFormatKind::Text);
        let mut reader = CopyReader::new(text, names(1));
        let data: Vec<u8> = (0..BATCH_ROWS + 10)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        reader.push(&data).unwrap();
        assert_eq!(reader.rows(), (BATCH_ROWS + 10) as u64);
        let batches = reader.finish().unwrap();
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1][0].len(), 10);
    }
}
