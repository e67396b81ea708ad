//! Postgres' binary COPY format (`PGCOPY`), read incrementally: the
//! signature, flags and header extension, then per row a field count and
//! each field as a length (-1 for NULL) and the bytes of the type's binary
//! form; a field count of -1 ends the data.
//!
//! Each value is decoded by the binary form of its column's type and
//! handed on as text, the same text columns the text and CSV readers make,
//! so the INSERT behind COPY applies one set of conversions and checks
//! whatever the format. No crate reads `PGCOPY` into Arrow (pgwire and
//! `postgres-types` decode single values for clients), hence this module.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::arrow::temporal_conversions::{date32_to_datetime, timestamp_us_to_datetime};
use datafusion::error::{DataFusionError, Result};
use sluice_types::SluiceType;
use sluice_types::error::{SluiceError, SqlState};

use super::format::{BATCH_BYTES, BATCH_ROWS, MAX_COPY_RECORD_BYTES, RowsReader};

/// `PGCOPY\n\377\r\n\0`.
const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
/// Days and microseconds from 1970-01-01 to Postgres' epoch, 2000-01-01.
const EPOCH_DAYS: i32 = 10_957;
const EPOCH_MICROS: i64 = 946_684_800_000_000;

/// How one column's binary values become text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoder {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Text,
    Bytes,
    Date,
    Timestamp { zoned: bool },
    Uuid,
    Vector,
}

impl Decoder {
    /// The decoder for `field`'s type, or why its type cannot be read.
    fn for_field(field: &Field) -> Result<Self> {
        if let Some(ty) = SluiceType::of_field(field) {
            return match ty {
                SluiceType::Uuid => Ok(Self::Uuid),
                SluiceType::Vector(_) => Ok(Self::Vector),
                SluiceType::Json => Ok(Self::Text),
                other => Err(unsupported(field, &format!("{other:?}"))),
            };
        }
        Ok(match field.data_type() {
            DataType::Boolean => Self::Bool,
            DataType::Int16 => Self::Int16,
            DataType::Int32 => Self::Int32,
            DataType::Int64 => Self::Int64,
            DataType::Float32 => Self::Float32,
            DataType::Float64 => Self::Float64,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => Self::Text,
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Self::Bytes,
            DataType::Date32 => Self::Date,
            DataType::Timestamp(TimeUnit::Microsecond | TimeUnit::Nanosecond, zone) => {
                Self::Timestamp {
                    zoned: zone.is_some(),
                }
            }
            other => return Err(unsupported(field, &other.to_string())),
        })
    }

    /// The text of one value's bytes, or why they are not such a value.
    fn text(self, bytes: &[u8]) -> std::result::Result<String, String> {
        let fixed = |n: usize| -> std::result::Result<&[u8], String> {
            if bytes.len() == n {
                Ok(bytes)
            } else {
                Err(format!("expected {n} bytes, got {}", bytes.len()))
            }
        };
        let be4 = |b: &[u8]| [b[0], b[1], b[2], b[3]];
        let be8 = |b: &[u8]| [b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]];
        Ok(match self {
            Self::Bool => match fixed(1)?[0] {
                0 => "f".into(),
                _ => "t".into(),
            },
            Self::Int16 => {
                let b = fixed(2)?;
                i16::from_be_bytes([b[0], b[1]]).to_string()
            }
            Self::Int32 => i32::from_be_bytes(be4(fixed(4)?)).to_string(),
            Self::Int64 => i64::from_be_bytes(be8(fixed(8)?)).to_string(),
            Self::Float32 => float_text(f64::from(f32::from_be_bytes(be4(fixed(4)?)))),
            Self::Float64 => float_text(f64::from_be_bytes(be8(fixed(8)?))),
            Self::Text => std::str::from_utf8(bytes)
                .map_err(|_| "text that is not UTF-8".to_owned())?
                .to_owned(),
            Self::Bytes => {
                let mut text = String::with_capacity(2 + bytes.len() * 2);
                text.push_str("\\x");
                for b in bytes {
                    text.push_str(&format!("{b:02x}"));
                }
                text
            }
            Self::Date => {
                let days = i32::from_be_bytes(be4(fixed(4)?));
                days.checked_add(EPOCH_DAYS)
                    .and_then(date32_to_datetime)
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .ok_or_else(|| format!("date out of range: {days}"))?
            }
            Self::Timestamp { zoned } => {
                let micros = i64::from_be_bytes(be8(fixed(8)?));
                let at = micros
                    .checked_add(EPOCH_MICROS)
                    .and_then(timestamp_us_to_datetime)
                    .ok_or_else(|| format!("timestamp out of range: {micros}"))?;
                if zoned {
                    format!("{at}+00")
                } else {
                    at.to_string()
                }
            }
            Self::Uuid => {
                let b = fixed(16)?;
                let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                format!(
                    "{}-{}-{}-{}-{}",
                    &hex[0..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..32]
                )
            }
            // pgvector's form: dimensions (u16), unused (u16), then each
            // value as a float4.
            Self::Vector => {
                if bytes.len() < 4 {
                    return Err("a vector shorter than its header".into());
                }
                let dims = usize::from(u16::from_be_bytes([bytes[0], bytes[1]]));
                if bytes.len() != 4 + dims * 4 {
                    return Err(format!(
                        "a vector of {dims} dimensions in {} bytes",
                        bytes.len()
                    ));
                }
                let values: Vec<String> = bytes[4..]
                    .chunks_exact(4)
                    .map(|c| float_text(f64::from(f32::from_be_bytes(be4(c)))))
                    .collect();
                format!("[{}]", values.join(","))
            }
        })
    }
}

/// A float as Postgres' text input reads it back exactly.
fn float_text(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        value.to_string()
    }
}

fn unsupported(field: &Field, ty: &str) -> DataFusionError {
    SluiceError::new(
        SqlState::FEATURE_NOT_SUPPORTED,
        format!(
            "COPY FROM STDIN (FORMAT binary) cannot read column \"{}\" of type {ty} yet: use \
             FORMAT text or csv",
            field.name()
        ),
    )
    .into()
}

/// Parses binary COPY data pushed in arbitrary chunks into text columns.
#[derive(Debug)]
pub struct BinaryCopyReader {
    decoders: Vec<Decoder>,
    names: Vec<String>,
    /// Bytes not yet parsed (an incomplete header or row).
    pending: Vec<u8>,
    header_read: bool,
    ended: bool,
    builders: Vec<StringBuilder>,
    rows_in_builders: usize,
    bytes_in_builders: usize,
    batches: Vec<Vec<ArrayRef>>,
    rows: u64,
}

impl BinaryCopyReader {
    /// A reader of rows holding `fields`, in order.
    pub fn new(fields: &[Arc<Field>]) -> Result<Self> {
        Ok(Self {
            decoders: fields
                .iter()
                .map(|f| Decoder::for_field(f))
                .collect::<Result<_>>()?,
            names: fields.iter().map(|f| f.name().clone()).collect(),
            pending: Vec::new(),
            header_read: false,
            ended: false,
            builders: new_builders(fields.len()),
            rows_in_builders: 0,
            bytes_in_builders: 0,
            batches: Vec::new(),
            rows: 0,
        })
    }

    /// Parses what is complete in `pending`; returns how many bytes it
    /// used.
    fn parse(&mut self) -> Result<usize> {
        let data = std::mem::take(&mut self.pending);
        let mut at = 0;
        let outcome = (|| -> Result<()> {
            if !self.header_read {
                let Some(used) = header_length(&data)? else {
                    return Ok(());
                };
                at = used;
                self.header_read = true;
            }
            while !self.ended {
                match self.row(&data[at..])? {
                    Some(used) => at += used,
                    None => return Ok(()),
                }
            }
            Ok(())
        })();
        self.pending = data;
        outcome.map(|()| at)
    }

    /// Reads one row (or the trailer) from the start of `data`; `None`
    /// when it is not complete yet.
    fn row(&mut self, data: &[u8]) -> Result<Option<usize>> {
        let Some(count) = data.get(..2) else {
            return Ok(None);
        };
        let count = i16::from_be_bytes([count[0], count[1]]);
        if count == -1 {
            self.ended = true;
            return Ok(Some(2));
        }
        if usize::try_from(count).ok() != Some(self.decoders.len()) {
            return Err(self.error(&format!(
                "row field count is {count}, expected {}",
                self.decoders.len()
            )));
        }
        // Find every field first: a row is taken whole or not at all.
        let mut fields = Vec::with_capacity(self.decoders.len());
        let mut at = 2;
        for _ in 0..self.decoders.len() {
            let Some(length) = data.get(at..at + 4) else {
                return Ok(None);
            };
            let length = i32::from_be_bytes([length[0], length[1], length[2], length[3]]);
            at += 4;
            if length < 0 {
                fields.push(None);
                continue;
            }
            let end = at + length as usize;
            if end > data.len() {
                return Ok(None);
            }
            fields.push(Some((at, end)));
            at = end;
        }
        for (column, field) in fields.into_iter().enumerate() {
            match field {
                None => self.builders[column].append_null(),
                Some((start, end)) => {
                    let text = self.decoders[column]
                        .text(&data[start..end])
                        .map_err(|why| self.value_error(column, &why))?;
                    self.bytes_in_builders += text.len();
                    self.builders[column].append_value(text);
                }
            }
        }
        self.rows += 1;
        self.rows_in_builders += 1;
        if self.rows_in_builders >= BATCH_ROWS || self.bytes_in_builders >= BATCH_BYTES {
            self.flush();
        }
        Ok(Some(at))
    }

    fn flush(&mut self) {
        if self.rows_in_builders == 0 {
            return;
        }
        let columns = std::mem::replace(&mut self.builders, new_builders(self.decoders.len()))
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
            format!("{message} (binary COPY row {})", self.rows + 1),
        )
        .into()
    }

    fn value_error(&self, column: usize, why: &str) -> DataFusionError {
        SluiceError::new(
            SqlState::INVALID_BINARY_REPRESENTATION,
            format!(
                "incorrect binary data format in column \"{}\": {why} (binary COPY row {})",
                self.names[column],
                self.rows + 1
            ),
        )
        .into()
    }
}

impl RowsReader for BinaryCopyReader {
    fn rows(&self) -> u64 {
        self.rows
    }

    fn push(&mut self, data: &[u8]) -> Result<()> {
        if self.ended {
            return Ok(());
        }
        self.pending.extend_from_slice(data);
        let used = self.parse()?;
        self.pending.drain(..used);
        if self.pending.len() > MAX_COPY_RECORD_BYTES {
            return Err(SluiceError::new(
                SqlState::PROGRAM_LIMIT_EXCEEDED,
                format!(
                    "a binary COPY row longer than {MAX_COPY_RECORD_BYTES} bytes (binary COPY \
                     row {})",
                    self.rows + 1
                ),
            )
            .into());
        }
        Ok(())
    }

    fn take_batches(&mut self) -> Vec<Vec<ArrayRef>> {
        std::mem::take(&mut self.batches)
    }

    fn finish(mut self: Box<Self>) -> Result<Vec<Vec<ArrayRef>>> {
        if !self.header_read {
            return Err(self.error("the data does not start with the PGCOPY signature"));
        }
        if !self.ended {
            return Err(self.error("the data ends without the binary COPY trailer"));
        }
        self.flush();
        Ok(std::mem::take(&mut self.batches))
    }
}

/// The length of a complete header at the start of `data`; `None` when it
/// is not all there yet.
fn header_length(data: &[u8]) -> Result<Option<usize>> {
    let checked = data.len().min(SIGNATURE.len());
    if data[..checked] != SIGNATURE[..checked] {
        return Err(SluiceError::new(
            SqlState::BAD_COPY_FILE_FORMAT,
            "COPY file signature not recognized",
        )
        .into());
    }
    let Some(extension) = data.get(15..19) else {
        return Ok(None);
    };
    let extension = u32::from_be_bytes([extension[0], extension[1], extension[2], extension[3]]);
    let end = 19 + extension as usize;
    Ok((data.len() >= end).then_some(end))
}

fn new_builders(columns: usize) -> Vec<StringBuilder> {
    (0..columns).map(|_| StringBuilder::new()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str, ty: DataType) -> Arc<Field> {
        Arc::new(Field::new(name, ty, true))
    }

    fn data(rows: &[Vec<Option<Vec<u8>>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&[0; 8]);
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for value in row {
                match value {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(bytes) => {
                        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                        out.extend_from_slice(bytes);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn texts(batches: &[Vec<ArrayRef>]) -> Vec<Vec<Option<String>>> {
        use datafusion::arrow::array::{Array, AsArray};
        let mut rows = Vec::new();
        for batch in batches {
            for i in 0..batch[0].len() {
                rows.push(
                    batch
                        .iter()
                        .map(|c| {
                            let c = c.as_string::<i32>();
                            (!c.is_null(i)).then(|| c.value(i).to_owned())
                        })
                        .collect(),
                );
            }
        }
        rows
    }

    #[test]
    fn rows_cut_anywhere_read_the_same() {
        let fields = [
            field("id", DataType::Int64),
            field("name", DataType::Utf8),
            field("day", DataType::Date32),
            field("score", DataType::Float64),
        ];
        let bytes = data(&[
            vec![
                Some(7i64.to_be_bytes().to_vec()),
                Some(b"tab\there".to_vec()),
                Some(8_800i32.to_be_bytes().to_vec()),
                Some((-2.5f64).to_be_bytes().to_vec()),
            ],
            vec![Some(8i64.to_be_bytes().to_vec()), None, None, None],
        ]);
        for cut in [1, 3, 7, 20, 33, bytes.len()] {
            let mut reader = Box::new(BinaryCopyReader::new(&fields).unwrap());
            let mut batches = Vec::new();
            for chunk in bytes.chunks(cut) {
                reader.push(chunk).unwrap();
                batches.extend(reader.take_batches());
            }
            batches.extend(reader.finish().unwrap());
            assert_eq!(
                texts(&batches),
                vec![
                    vec![
                        Some("7".into()),
                        Some("tab\there".into()),
                        Some("2024-02-04".into()),
                        Some("-2.5".into())
                    ],
                    vec![Some("8".into()), None, None, None],
                ],
                "chunks of {cut}"
            );
        }
    }

    #[test]
    fn bad_data_is_a_clear_error() {
        let fields = [field("id", DataType::Int64)];
        let mut reader = Box::new(BinaryCopyReader::new(&fields).unwrap());
        assert!(reader.push(b"NOTCOPY").is_err());
        let mut reader = Box::new(BinaryCopyReader::new(&fields).unwrap());
        let bytes = data(&[vec![Some(7i32.to_be_bytes().to_vec())]]);
        let error = reader.push(&bytes).unwrap_err().to_string();
        assert!(error.contains("expected 8 bytes, got 4"), "{error}");
        let mut reader = Box::new(BinaryCopyReader::new(&fields).unwrap());
        let bytes = data(&[vec![Some(7i64.to_be_bytes().to_vec())]]);
        reader.push(&bytes[..bytes.len() - 2]).unwrap();
        assert!(reader.finish().is_err(), "no trailer");
        assert!(BinaryCopyReader::new(&[field("d", DataType::Decimal128(10, 2))]).is_err());
    }
}
