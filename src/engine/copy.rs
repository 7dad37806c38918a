//! `COPY` data in PostgreSQL's text and CSV formats.
//!
//! [`CopyIn`] parses the bytes of `COPY ... FROM STDIN` as they arrive, record by record
//! (a record may span chunks, and in CSV a quoted field may span lines), into typed Arrow
//! batches for the target table. The first bad record is remembered with its line number
//! and everything after it is ignored; the statement then fails whole and nothing is
//! committed, as in PostgreSQL. [`encode_rows`] writes query results out in the same
//! formats for `COPY ... TO STDOUT`.

use std::sync::Arc;

use datafusion::arrow::array::{
    new_null_array, Array, ArrayRef, BooleanArray, RecordBatch, StringBuilder,
};
use datafusion::arrow::compute::{cast_with_options, CastOptions};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use super::error::{EngineError, Result};
use super::sql::CopyFormat;
use crate::storage::TextLimit;

mod binary;

const BATCH_ROWS: usize = 64 * 1024;

/// An in-progress `COPY ... FROM STDIN`.
pub struct CopyIn {
    table: String,
    schema: SchemaRef,
    /// For each COPY column, its index in `schema`.
    columns: Vec<usize>,
    format: CopyFormat,
    pending: Vec<u8>,
    /// Line number (1-based) of the first byte of `pending`.
    line: usize,
    skip_header: bool,
    ended: bool,
    builders: Vec<StringBuilder>,
    /// Line number of each buffered row, to name it if its values do not convert.
    row_lines: Vec<usize>,
    batches: Vec<RecordBatch>,
    error: Option<EngineError>,
    /// The declared lengths of text columns (by index in `schema`).
    limits: Vec<(usize, TextLimit)>,
}

impl CopyIn {
    /// `columns` are the COPY column names (empty: all columns of the table in order).
    pub fn new(
        table: &str,
        schema: SchemaRef,
        columns: &[String],
        format: CopyFormat,
    ) -> Result<Self> {
        let columns = if columns.is_empty() {
            (0..schema.fields().len()).collect()
        } else {
            columns
                .iter()
                .map(|c| {
                    schema.index_of(c).map_err(|_| {
                        EngineError::BadCopyData(format!(
                            "column \"{c}\" of relation \"{table}\" does not exist"
                        ))
                    })
                })
                .collect::<Result<Vec<_>>>()?
        };
        Ok(CopyIn {
            table: table.to_string(),
            builders: columns.iter().map(|_| StringBuilder::new()).collect(),
            skip_header: format.header,
            schema,
            columns,
            format,
            pending: Vec::new(),
            line: 1,
            ended: false,
            row_lines: Vec::new(),
            batches: Vec::new(),
            error: None,
            limits: Vec::new(),
        })
    }

    /// Check the declared lengths of text columns (`varchar(n)`, `char(n)`; by index in
    /// the table's schema) record by record, so that a value too long names its line.
    pub fn with_limits(mut self, limits: &[(usize, TextLimit)]) -> Self {
        self.limits = limits.to_vec();
        self
    }

    pub fn column_count(&self) -> usize {
        self.columns.len()
    }

    /// The wire format code of this COPY (0 text/CSV, 1 binary).
    pub fn wire_format(&self) -> i8 {
        i8::from(self.format.binary)
    }

    /// Take the next chunk of COPY data.
    pub fn feed(&mut self, data: &[u8]) {
        if self.error.is_some() || self.ended {
            return;
        }
        self.pending.extend_from_slice(data);
        if let Err(e) = self.parse_complete_records(false) {
            self.error = Some(e);
            self.pending = Vec::new();
        }
    }

    /// The data is complete: return the parsed batches, or the first error.
    pub fn finish(mut self) -> Result<Vec<RecordBatch>> {
        if self.error.is_none() && !self.ended {
            if let Err(e) = self.parse_complete_records(true) {
                self.error = Some(e);
            }
        }
        if self.error.is_none() {
            if let Err(e) = self.flush() {
                self.error = Some(e);
            }
        }
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.batches),
        }
    }

    fn parse_complete_records(&mut self, at_end: bool) -> Result<()> {
        let buf = std::mem::take(&mut self.pending);
        let mut pos = 0;
        let mut fields: Vec<Option<String>> = Vec::with_capacity(self.columns.len());
        while pos < buf.len() && !self.ended {
            fields.clear();
            let start_line = self.line;
            let parsed = if self.format.binary && self.skip_header {
                binary::parse_header(&buf[pos..], at_end)
            } else if self.format.binary {
                let types: Vec<&DataType> = self
                    .columns
                    .iter()
                    .map(|&i| self.schema.field(i).data_type())
                    .collect();
                binary::parse_tuple(&buf[pos..], &types, at_end, &mut fields)
            } else if self.format.csv {
                parse_csv_record(&buf[pos..], &self.format, at_end, &mut fields)
            } else {
                parse_text_record(&buf[pos..], &self.format, at_end, &mut fields)
            }
            .map_err(|msg| self.bad(start_line, msg))?;
            let Some((used, lines)) = parsed else { break };
            let raw = &buf[pos..pos + used];
            pos += used;
            self.line += lines;
            let end = if self.format.binary {
                raw == binary::TRAILER && !self.skip_header
            } else {
                is_end_marker(raw)
            };
            if end {
                self.ended = true;
                break;
            }
            if self.skip_header {
                self.skip_header = false;
                continue;
            }
            if fields.len() > self.columns.len() {
                return Err(self.bad(start_line, "extra data after last expected column".into()));
            }
            if fields.len() < self.columns.len() {
                let missing = self.schema.field(self.columns[fields.len()]).name().clone();
                return Err(self.bad(start_line, format!("missing data for column \"{missing}\"")));
            }
            for (b, f) in self.builders.iter_mut().zip(fields.drain(..)) {
                b.append_option(f);
            }
            self.row_lines.push(start_line);
            if self.row_lines.len() >= BATCH_ROWS {
                self.flush()?;
            }
        }
        self.pending = buf[pos..].to_vec();
        if at_end && !self.pending.is_empty() && !self.ended {
            let what = if self.format.binary {
                "incomplete binary COPY data"
            } else {
                "unterminated CSV quoted field"
            };
            return Err(self.bad(self.line, what.into()));
        }
        Ok(())
    }

    /// An error naming the line of the first value of `column` longer than `limit`.
    fn check_lengths(&self, column: &ArrayRef, name: &str, limit: &TextLimit) -> Result<()> {
        match limit.first_too_long(column) {
            Some(i) => Err(EngineError::ValueTooLong {
                type_name: limit.type_name(),
                context: format!(
                    " (COPY {}, line {}, column {name})",
                    self.table, self.row_lines[i]
                ),
            }),
            None => Ok(()),
        }
    }

    fn bad(&self, line: usize, msg: String) -> EngineError {
        EngineError::BadCopyData(format!("{msg} (COPY {}, line {line})", self.table))
    }

    /// Convert the buffered text rows into a typed batch.
    fn flush(&mut self) -> Result<()> {
        let rows = self.row_lines.len();
        if rows == 0 {
            return Ok(());
        }
        let mut text: Vec<Option<ArrayRef>> = vec![None; self.schema.fields().len()];
        for (b, &idx) in self.builders.iter_mut().zip(&self.columns) {
            text[idx] = Some(Arc::new(b.finish()));
        }
        let options = CastOptions {
            safe: true,
            ..Default::default()
        };
        let mut columns = Vec::with_capacity(text.len());
        for (field, t) in self.schema.fields().iter().zip(text) {
            let Some(t) = t else {
                columns.push(new_null_array(field.data_type(), rows));
                continue;
            };
            let typed = match field.data_type() {
                DataType::Boolean => parse_bool(&t),
                other => cast_with_options(&t, other, &options).map_err(EngineError::from_arrow)?,
            };
            // A value that was present but did not convert came back NULL.
            if typed.null_count() != t.null_count() {
                if let Some(i) = (0..rows).find(|&i| t.is_valid(i) && typed.is_null(i)) {
                    let value = ArrayFormatter::try_new(t.as_ref(), &FormatOptions::default())
                        .map(|f| f.value(i).to_string())
                        .unwrap_or_default();
                    return Err(self.bad(
                        self.row_lines[i],
                        format!(
                            "invalid input syntax for type {} in column \"{}\": \"{value}\"",
                            field.data_type(),
                            field.name()
                        ),
                    ));
                }
            }
            if let Some((_, limit)) = self.limits.iter().find(|(i, _)| *i == columns.len()) {
                self.check_lengths(&typed, field.name(), limit)?;
            }
            columns.push(typed);
        }
        self.batches.push(
            RecordBatch::try_new(self.schema.clone(), columns).map_err(EngineError::from_arrow)?,
        );
        self.row_lines.clear();
        Ok(())
    }
}

fn parse_bool(t: &ArrayRef) -> ArrayRef {
    let strings = datafusion::arrow::array::as_string_array(t.as_ref());
    Arc::new(
        strings
            .iter()
            .map(|v| {
                v.and_then(|s| match s.trim().to_ascii_lowercase().as_str() {
                    "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
                    "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
                    _ => None,
                })
            })
            .collect::<BooleanArray>(),
    )
}

fn is_end_marker(raw: &[u8]) -> bool {
    let trimmed = raw.strip_suffix(b"\n").unwrap_or(raw);
    let trimmed = trimmed.strip_suffix(b"\r").unwrap_or(trimmed);
    trimmed == b"\\."
}

type Parsed = std::result::Result<Option<(usize, usize)>, String>;

/// One text-format record from the start of `buf`: its fields, bytes used and lines
/// consumed, or `None` if the record is not complete yet.
fn parse_text_record(
    buf: &[u8],
    f: &CopyFormat,
    at_end: bool,
    out: &mut Vec<Option<String>>,
) -> Parsed {
    let end = match buf.iter().position(|&b| b == b'\n') {
        Some(n) => n,
        None if at_end => buf.len(),
        None => return Ok(None),
    };
    let used = (end + 1).min(buf.len());
    let mut line = &buf[..end];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    if line == b"\\." {
        return Ok(Some((used, 1)));
    }
    for raw in line.split(|&b| b == f.delimiter) {
        if raw == f.null.as_bytes() {
            out.push(None);
            continue;
        }
        out.push(Some(unescape_text(raw)?));
    }
    Ok(Some((used, 1)))
}

fn unescape_text(raw: &[u8]) -> std::result::Result<String, String> {
    if !raw.contains(&b'\\') {
        return String::from_utf8(raw.to_vec())
            .map_err(|_| "invalid byte sequence for encoding \"UTF8\"".to_string());
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' || i + 1 == raw.len() {
            out.push(b);
            i += 1;
            continue;
        }
        let c = raw[i + 1];
        i += 2;
        match c {
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                let mut n = 1;
                while n < 3 && i < raw.len() && (b'0'..=b'7').contains(&raw[i]) {
                    v = v * 8 + u32::from(raw[i] - b'0');
                    i += 1;
                    n += 1;
                }
                out.push((v & 0xff) as u8);
            }
            b'x' if i < raw.len() && raw[i].is_ascii_hexdigit() => {
                let mut v = 0u32;
                let mut n = 0;
                while n < 2 && i < raw.len() && raw[i].is_ascii_hexdigit() {
                    v = v * 16 + (raw[i] as char).to_digit(16).unwrap_or(0);
                    i += 1;
                    n += 1;
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).map_err(|_| "invalid byte sequence for encoding \"UTF8\"".to_string())
}

fn parse_csv_record(
    buf: &[u8],
    f: &CopyFormat,
    at_end: bool,
    out: &mut Vec<Option<String>>,
) -> Parsed {
    let mut i = 0;
    let mut lines = 0;
    let mut field: Vec<u8> = Vec::new();
    let mut quoted = false;
    // An end-of-data marker is only recognised alone on a line.
    if buf.starts_with(b"\\.\n") || buf.starts_with(b"\\.\r\n") || (at_end && buf == b"\\.") {
        return Ok(Some((
            buf.iter()
                .position(|&b| b == b'\n')
                .map_or(buf.len(), |n| n + 1),
            1,
        )));
    }
    let push = |field: &mut Vec<u8>,
                quoted: bool,
                out: &mut Vec<Option<String>>|
     -> std::result::Result<(), String> {
        let s = String::from_utf8(std::mem::take(field))
            .map_err(|_| "invalid byte sequence for encoding \"UTF8\"".to_string())?;
        out.push(if !quoted && s == f.null {
            None
        } else {
            Some(s)
        });
        Ok(())
    };
    loop {
        if i >= buf.len() {
            if !at_end {
                return Ok(None);
            }
            if i == 0 {
                return Ok(Some((0, 0)));
            }
            push(&mut field, quoted, out)?;
            return Ok(Some((i, lines + 1)));
        }
        let b = buf[i];
        if b == f.quote && field.is_empty() && !quoted {
            // A quoted field: read to the closing quote.
            quoted = true;
            i += 1;
            loop {
                if i >= buf.len() {
                    return if at_end {
                        Err("unterminated CSV quoted field".into())
                    } else {
                        Ok(None)
                    };
                }
                let c = buf[i];
                if c == f.escape
                    && f.escape != f.quote
                    && buf
                        .get(i + 1)
                        .is_some_and(|&n| n == f.quote || n == f.escape)
                {
                    field.push(buf[i + 1]);
                    i += 2;
                } else if c == f.quote {
                    if f.escape == f.quote && buf.get(i + 1) == Some(&f.quote) {
                        field.push(f.quote);
                        i += 2;
                    } else if i + 1 >= buf.len() && !at_end {
                        return Ok(None);
                    } else {
                        i += 1;
                        break;
                    }
                } else {
                    if c == b'\n' {
                        lines += 1;
                    }
                    field.push(c);
                    i += 1;
                }
            }
            continue;
        }
        if b == f.delimiter {
            push(&mut field, quoted, out)?;
            quoted = false;
            i += 1;
        } else if b == b'\n' || b == b'\r' {
            push(&mut field, quoted, out)?;
            let mut used = i + 1;
            if b == b'\r' {
                match buf.get(i + 1) {
                    Some(b'\n') => used += 1,
                    None if !at_end => return Ok(None),
                    _ => {}
                }
            }
            return Ok(Some((used, lines + 1)));
        } else {
            field.push(b);
            i += 1;
        }
    }
}

/// Encode `batch` as COPY rows (one `Vec<u8>` per row, each ending in a newline).
pub fn encode_rows(batch: &RecordBatch, f: &CopyFormat) -> Result<Vec<Vec<u8>>> {
    let options = FormatOptions::default()
        .with_null("")
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f%:z"))
        .with_datetime_format(Some("%Y-%m-%d %H:%M:%S%.f"));
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(EngineError::from_arrow)?;
    let mut rows = Vec::with_capacity(batch.num_rows());
    let mut value = String::new();
    for r in 0..batch.num_rows() {
        let mut line = Vec::with_capacity(64);
        for (c, (col, fmt)) in batch.columns().iter().zip(&formatters).enumerate() {
            if c > 0 {
                line.push(f.delimiter);
            }
            if col.is_null(r) {
                line.extend_from_slice(f.null.as_bytes());
                continue;
            }
            value.clear();
            if let Some(b) = col.as_any().downcast_ref::<BooleanArray>() {
                value.push(if b.value(r) { 't' } else { 'f' });
            } else {
                use std::fmt::Write;
                write!(value, "{}", fmt.value(r))
                    .map_err(|e| EngineError::BadCopyData(e.to_string()))?;
            }
            if f.csv {
                write_csv_field(&mut line, &value, f);
            } else {
                write_text_field(&mut line, &value, f.delimiter);
            }
        }
        line.push(b'\n');
        rows.push(line);
    }
    Ok(rows)
}

fn write_text_field(out: &mut Vec<u8>, v: &str, delimiter: u8) {
    for &b in v.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            d if d == delimiter => out.extend_from_slice(&[b'\\', d]),
            other => out.push(other),
        }
    }
}

fn write_csv_field(out: &mut Vec<u8>, v: &str, f: &CopyFormat) {
    let needs_quotes = v.is_empty() && f.null.is_empty()
        || v == f.null
        || v.bytes()
            .any(|b| b == f.delimiter || b == f.quote || b == b'\n' || b == b'\r');
    if !needs_quotes {
        out.extend_from_slice(v.as_bytes());
        return;
    }
    out.push(f.quote);
    for &b in v.as_bytes() {
        if b == f.quote || b == f.escape {
            out.push(f.escape);
        }
        out.push(b);
    }
    out.push(f.quote);
}

/// Header line for `COPY ... TO STDOUT (FORMAT csv, HEADER)`.
pub fn header_row(schema: &SchemaRef, f: &CopyFormat) -> Vec<u8> {
    let mut line = Vec::new();
    for (i, field) in schema.fields().iter().enumerate() {
        if i > 0 {
            line.push(f.delimiter);
        }
        write_csv_field(&mut line, field.name(), f);
    }
    line.push(b'\n');
    line
}

impl EngineError {
    fn from_arrow(e: datafusion::arrow::error::ArrowError) -> Self {
        EngineError::DataFusion(e.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    fn csv() -> CopyFormat {
        let Ok(Some(super::super::sql::Command::Copy(c))) =
            super::super::sql::classify("COPY t FROM STDIN (FORMAT csv, HEADER)")
        else {
            panic!("copy")
        };
        c.format
    }

    #[test]
    fn text_format_with_escapes_nulls_and_chunk_boundaries() {
        let fmt = CopyFormat {
            ..CopyFormat {
                csv: false,
                binary: false,
                delimiter: b'\t',
                null: "\\N".into(),
                header: false,
                quote: b'"',
                escape: b'"',
            }
        };
        let mut c = CopyIn::new("t", schema(), &[], fmt).expect("new");
        c.feed(b"1\ta\\tb\n2\t\\N\n3\tsplit");
        c.feed(b" here\n\\.\nignored\tafter end\n");
        let b = c.finish().expect("ok");
        let names = b[0]
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("str");
        assert_eq!(b[0].num_rows(), 3);
        assert_eq!(names.value(0), "a\tb");
        assert!(names.is_null(1));
        assert_eq!(names.value(2), "split here");
    }

    #[test]
    fn csv_quotes_header_and_multiline_fields() {
        let mut c = CopyIn::new("t", schema(), &[], csv()).expect("new");
        c.feed(b"id,name\n1,\"x, \"\"y\"\"\"\n2,\"multi\nline\"\n3,\n4,\"\"\n");
        let b = c.finish().expect("ok");
        let names = b[0]
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("str");
        assert_eq!(names.value(0), "x, \"y\"");
        assert_eq!(names.value(1), "multi\nline");
        assert!(names.is_null(2), "unquoted empty is NULL in CSV");
        assert_eq!(names.value(3), "", "quoted empty is an empty string");
    }

    #[test]
    fn bad_value_names_its_line_and_column() {
        let mut c = CopyIn::new("t", schema(), &[], csv()).expect("new");
        c.feed(b"id,name\n1,a\n2,b\nnot-a-number,c\n");
        let err = c.finish().expect_err("must fail").to_string();
        assert!(
            err.contains("line 4") && err.contains("\"id\"") && err.contains("not-a-number"),
            "{err}"
        );
    }

    #[test]
    fn wrong_column_counts_are_rejected_with_the_line() {
        let mut c = CopyIn::new("t", schema(), &[], csv()).expect("new");
        c.feed(b"id,name\n1,a,extra\n");
        let err = c.finish().expect_err("extra").to_string();
        assert!(
            err.contains("extra data") && err.contains("line 2"),
            "{err}"
        );
        let mut c = CopyIn::new("t", schema(), &[], csv()).expect("new");
        c.feed(b"id,name\n1,a\n2\n");
        let err = c.finish().expect_err("missing").to_string();
        assert!(
            err.contains("missing data for column \"name\"") && err.contains("line 3"),
            "{err}"
        );
    }

    #[test]
    fn column_subset_fills_the_rest_with_nulls() {
        let mut c = CopyIn::new("t", schema(), &["name".into()], csv()).expect("new");
        c.feed(b"name\nonly\n");
        let b = c.finish().expect("ok");
        assert!(b[0].column(0).is_null(0));
        assert!(CopyIn::new("t", schema(), &["nope".into()], csv()).is_err());
    }

    #[test]
    fn encodes_text_and_csv_like_postgres() {
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(vec![Some(1), None])),
                Arc::new(StringArray::from(vec![Some("a\tb,\"c\""), Some("")])),
            ],
        )
        .expect("batch");
        let text = CopyFormat {
            csv: false,
            binary: false,
            delimiter: b'\t',
            null: "\\N".into(),
            header: false,
            quote: b'"',
            escape: b'"',
        };
        let rows = encode_rows(&batch, &text).expect("text");
        assert_eq!(rows[0], b"1\ta\\tb,\"c\"\n");
        assert_eq!(rows[1], b"\\N\t\n");
        let rows = encode_rows(&batch, &csv()).expect("csv");
        assert_eq!(rows[0], b"1,\"a\tb,\"\"c\"\"\"\n");
        assert_eq!(rows[1], b",\"\"\n");
    }
}
