//! `'connector' = 'datagen'`: Flink's generator of columns, seeded.
//!
//! ```sql
//! CREATE TABLE g (id BIGINT, score DOUBLE, name TEXT, ts TIMESTAMP,
//!                 WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
//! WITH ('connector' = 'datagen', 'number-of-rows' = '1000', 'seed' = '7',
//!       'fields.id.kind' = 'sequence', 'fields.id.start' = '1',
//!       'fields.score.min' = '0', 'fields.score.max' = '100',
//!       'fields.name.length' = '8', 'fields.ts.step' = '1 second');
//! ```
//!
//! Per column (`fields.<column>.…`): integers are `random` between `min`
//! and `max` (default 0 and 1000) or a `sequence` from `start` (default 1);
//! floating-point numbers are random between `min` and `max` (default 0
//! and 1); booleans are random; text is `random` of `length` letters and
//! digits (default 10) or a `sequence` of numbers; timestamps are event
//! time, `start` (default 2026-01-01 00:00:00) plus the row's position
//! times `step` (default 1 second). Every value is a hash of the seed, the
//! column and the row's position: the same table gives the same rows.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::error::Result;

use super::generator::{OptionBag, RowGenerator, invalid_option};
use crate::sql::watermark::interval_text_nanos;

/// 2026-01-01 00:00:00 UTC, the default first event time.
const DEFAULT_START_NANOS: i64 = 1_767_225_600_000_000_000;

/// How one column's values are made.
#[derive(Debug, Clone)]
enum ColumnKind {
    IntegerSequence { start: i64 },
    IntegerRandom { min: i64, max: i64 },
    FloatRandom { min: f64, max: f64 },
    Boolean,
    TextRandom { length: usize },
    TextSequence { start: i64 },
    EventTime { start: i64, step: i64 },
}

/// The datagen generator of a table.
#[derive(Debug)]
pub struct DatagenGenerator {
    schema: SchemaRef,
    columns: Vec<ColumnKind>,
    seed: u64,
}

impl DatagenGenerator {
    /// A generator of `schema`'s columns, configured by `options` (the
    /// options it uses are taken out of the bag).
    pub fn try_new(schema: SchemaRef, options: &mut OptionBag) -> Result<Self> {
        let seed = options.take_u64(&["seed"])?.unwrap_or(0);
        let mut columns = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let name = field.name().to_ascii_lowercase();
            let option = |suffix: &str| format!("fields.{name}.{suffix}");
            let kind = options.take(&option("kind"));
            let integer = |options: &mut OptionBag, key: &str, default: i64| -> Result<i64> {
                match options.take(&option(key)) {
                    None => Ok(default),
                    Some(text) => text.trim().parse().map_err(|_| {
                        invalid_option(&format!(
                            "'{}' must be an integer, got '{text}'",
                            option(key)
                        ))
                    }),
                }
            };
            let float = |options: &mut OptionBag, key: &str, default: f64| -> Result<f64> {
                match options.take(&option(key)) {
                    None => Ok(default),
                    Some(text) => text.trim().parse().map_err(|_| {
                        invalid_option(&format!("'{}' must be a number, got '{text}'", option(key)))
                    }),
                }
            };
            let sequence = match kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
                None | Some("random") => false,
                Some("sequence") => true,
                Some(other) => {
                    return Err(invalid_option(&format!(
                        "'{}' must be 'random' or 'sequence', got '{other}'",
                        option("kind")
                    )));
                }
            };
            let column = match field.data_type() {
                t if t.is_integer() => {
                    if sequence {
                        ColumnKind::IntegerSequence {
                            start: integer(options, "start", 1)?,
                        }
                    } else {
                        let min = integer(options, "min", 0)?;
                        let max = integer(options, "max", 1000)?;
                        if min > max {
                            return Err(invalid_option(&format!(
                                "{}: min {min} is above max {max}",
                                field.name()
                            )));
                        }
                        ColumnKind::IntegerRandom { min, max }
                    }
                }
                t if t.is_floating() || matches!(t, DataType::Decimal128(_, _)) => {
                    let min = float(options, "min", 0.0)?;
                    let max = float(options, "max", 1.0)?;
                    if min > max || !min.is_finite() || !max.is_finite() {
                        return Err(invalid_option(&format!(
                            "{}: min {min} and max {max} must be finite, min first",
                            field.name()
                        )));
                    }
                    ColumnKind::FloatRandom { min, max }
                }
                DataType::Boolean => ColumnKind::Boolean,
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => {
                    if sequence {
                        ColumnKind::TextSequence {
                            start: integer(options, "start", 1)?,
                        }
                    } else {
                        let length = integer(options, "length", 10)?;
                        if !(0..=1_000_000).contains(&length) {
                            return Err(invalid_option(&format!(
                                "{}: length must be from 0 to 1000000",
                                field.name()
                            )));
                        }
                        ColumnKind::TextRandom {
                            length: length as usize,
                        }
                    }
                }
                DataType::Timestamp(_, _) => {
                    let start = match options.take(&option("start")) {
                        None => DEFAULT_START_NANOS,
                        Some(text) => timestamp_nanos(&text).ok_or_else(|| {
                            invalid_option(&format!(
                                "'{}' must be a timestamp such as '2026-01-01 00:00:00', got \
                                 '{text}'",
                                option("start")
                            ))
                        })?,
                    };
                    let step = match options.take(&option("step")) {
                        None => 1_000_000_000,
                        Some(text) => interval_text_nanos(&text)?,
                    };
                    ColumnKind::EventTime { start, step }
                }
                other => {
                    return Err(invalid_option(&format!(
                        "datagen cannot generate column {} of type {other}",
                        field.name()
                    )));
                }
            };
            columns.push(column);
        }
        Ok(Self {
            schema,
            columns,
            seed,
        })
    }

    /// A well-mixed 64-bit value for (column, row): SplitMix64's finaliser.
    fn hash(&self, column: usize, row: u64, salt: u64) -> u64 {
        let mut z = self
            .seed
            .wrapping_add((column as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .wrapping_add(row.wrapping_mul(0xD1B5_4A32_D192_ED03))
            .wrapping_add(salt.wrapping_mul(0x94D0_49BB_1331_11EB));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn column(&self, index: usize, kind: &ColumnKind, start: u64, rows: usize) -> ArrayRef {
        let positions = start..start + rows as u64;
        match kind {
            ColumnKind::IntegerSequence { start } => Arc::new(Int64Array::from_iter_values(
                positions.map(|p| start.wrapping_add(p as i64)),
            )),
            ColumnKind::IntegerRandom { min, max } => {
                let span = (*max as i128 - *min as i128 + 1) as u128;
                Arc::new(Int64Array::from_iter_values(positions.map(|p| {
                    let offset = (self.hash(index, p, 0) as u128 % span) as i128;
                    (*min as i128 + offset) as i64
                })))
            }
            ColumnKind::FloatRandom { min, max } => {
                Arc::new(Float64Array::from_iter_values(positions.map(|p| {
                    let unit = (self.hash(index, p, 0) >> 11) as f64 / (1u64 << 53) as f64;
                    min + unit * (max - min)
                })))
            }
            ColumnKind::Boolean => Arc::new(BooleanArray::from_iter(
                positions.map(|p| Some(self.hash(index, p, 0) & 1 == 1)),
            )),
            ColumnKind::TextRandom { length } => {
                const ALPHABET: &[u8] =
                    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
                Arc::new(StringArray::from_iter_values(positions.map(|p| {
                    (0..*length)
                        .map(|i| {
                            let h = self.hash(index, p, i as u64 + 1);
                            ALPHABET[(h % ALPHABET.len() as u64) as usize] as char
                        })
                        .collect::<String>()
                })))
            }
            ColumnKind::TextSequence { start } => Arc::new(StringArray::from_iter_values(
                positions.map(|p| start.wrapping_add(p as i64).to_string()),
            )),
            ColumnKind::EventTime { start, step } => {
                Arc::new(TimestampNanosecondArray::from_iter_values(
                    positions.map(|p| start.saturating_add(step.saturating_mul(p as i64))),
                ))
            }
        }
    }
}

impl RowGenerator for DatagenGenerator {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn rows(&self, start: u64, rows: usize) -> Result<RecordBatch> {
        let columns = self
            .columns
            .iter()
            .enumerate()
            .zip(self.schema.fields())
            .map(|((index, kind), field)| {
                let column = self.column(index, kind, start, rows);
                Ok(cast(&column, field.data_type())?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// `'2026-01-01 00:00:00'` as nanoseconds since the Unix epoch (UTC).
fn timestamp_nanos(text: &str) -> Option<i64> {
    let parsed = cast(
        &(Arc::new(StringArray::from(vec![text])) as ArrayRef),
        &DataType::Timestamp(TimeUnit::Nanosecond, None),
    )
    .ok()?;
    let values = parsed.as_any().downcast_ref::<TimestampNanosecondArray>()?;
    (values.null_count() == 0).then(|| values.value(0))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn generator(options: &[(&str, &str)]) -> Result<DatagenGenerator> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("score", DataType::Float64, false),
            Field::new("name", DataType::Utf8, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
        ]));
        let mut bag = OptionBag::new(options.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let generator = DatagenGenerator::try_new(schema, &mut bag)?;
        bag.finish("datagen")?;
        Ok(generator)
    }

    #[test]
    fn rows_depend_on_their_position_only() {
        let g = generator(&[("fields.id.kind", "sequence"), ("seed", "7")]).unwrap();
        let whole = g.rows(0, 100).unwrap();
        let tail = g.rows(40, 60).unwrap();
        assert_eq!(whole.slice(40, 60), tail);
        let ids = whole
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(ids.value(0), 1);
        assert_eq!(ids.value(99), 100);
        let other_seed = generator(&[("seed", "8")]).unwrap().rows(0, 100).unwrap();
        assert_ne!(whole.column(1), other_seed.column(1));
    }

    #[test]
    fn unknown_and_invalid_options_are_refused() {
        let err = generator(&[("fields.nope.kind", "random")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("unknown option 'fields.nope.kind'"),
            "{err}"
        );
        let err = generator(&[("fields.id.kind", "zigzag")]).unwrap_err();
        assert!(err.to_string().contains("'random' or 'sequence'"), "{err}");
        let err = generator(&[("fields.ts.start", "yesterday")]).unwrap_err();
        assert!(err.to_string().contains("must be a timestamp"), "{err}");
    }
}
