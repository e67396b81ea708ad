//! Encodes record batches into Postgres DataRow messages, column by column:
//! Sluice's own types through `sluice_types::wire`, floats through
//! `sluice_types::float_text`, timestamps in text through
//! `sluice_types::timestamp_text` and arrays in text through
//! `sluice_types::array_text` (Postgres's text forms), everything else
//! through `arrow-pg`'s codecs.

use std::error::Error;
use std::sync::Arc;

use arrow_pg::encoder::{Encoder, encode_value};
use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Float32Type, Float64Type};
use pgwire::api::Type;
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::{IsNull, ToSql, to_sql_checked};
use sluice_types::{SluiceType, wire};

use sluice_types::array_text::ArrayText;
use sluice_types::float_text;
use sluice_types::interval_text::IntervalText;
use sluice_types::timestamp_text::TimestampText;

/// The DataRows of one batch, produced lazily.
pub fn encode_batch_rows(
    batch: RecordBatch,
    fields: Arc<Vec<FieldInfo>>,
) -> impl Iterator<Item = PgWireResult<DataRow>> {
    let codecs: Vec<Codec> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| Codec::of(f))
        .collect();
    let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
    let mut row = 0;
    std::iter::from_fn(move || {
        if row >= batch.num_rows() {
            return None;
        }
        let encoded = encode_row(&mut encoder, &batch, &fields, &codecs, row);
        row += 1;
        Some(encoded.map(|()| encoder.take_row()))
    })
}

/// How one column's values are encoded.
#[derive(Debug, Clone)]
enum Codec {
    Sluice(SluiceType),
    /// Floats and timestamps: Postgres' text form when sent as text.
    Float4,
    Float8,
    /// Fixed-width binary without a Sluice type: bytea (arrow-pg has no
    /// encoder for it).
    FixedBinary,
    /// Timestamps and times: Postgres' text form when sent as text.
    Timestamp(TimestampText),
    /// Intervals and durations: Postgres' text form when sent as text.
    Interval(IntervalText),
    /// Arrays: Postgres' text form when sent as text (arrow-pg writes
    /// their timestamps with six fraction digits).
    Array(ArrayText),
    ArrowPg,
}

impl Codec {
    fn of(field: &Field) -> Codec {
        if let Some(ty) = SluiceType::of_field(field) {
            return Codec::Sluice(ty);
        }
        match field.data_type() {
            DataType::Float32 => Codec::Float4,
            DataType::Float64 => Codec::Float8,
            DataType::FixedSizeBinary(_) => Codec::FixedBinary,
            data_type @ (DataType::Timestamp(..) | DataType::Time32(_) | DataType::Time64(_)) => {
                TimestampText::of(data_type).map_or(Codec::ArrowPg, Codec::Timestamp)
            }
            data_type @ (DataType::Interval(_) | DataType::Duration(_)) => {
                IntervalText::of(data_type).map_or(Codec::ArrowPg, Codec::Interval)
            }
            data_type @ (DataType::List(_) | DataType::LargeList(_)) => {
                ArrayText::of(data_type).map_or(Codec::ArrowPg, Codec::Array)
            }
            _ => Codec::ArrowPg,
        }
    }
}

fn encode_row(
    encoder: &mut DataRowEncoder,
    batch: &RecordBatch,
    fields: &[FieldInfo],
    codecs: &[Codec],
    row: usize,
) -> PgWireResult<()> {
    let schema = batch.schema();
    for (col, array) in batch.columns().iter().enumerate() {
        let pg_field = &fields[col];
        let text = pg_field.format() == FieldFormat::Text;
        match &codecs[col] {
            Codec::Sluice(ty) => {
                let value = SluiceValue {
                    ty: *ty,
                    array: array.as_ref(),
                    row,
                };
                Encoder::encode_field(encoder, &value, pg_field)?;
            }
            // Postgres' text forms; binary is arrow-pg's.
            Codec::Float4 if text => {
                let value = array
                    .as_primitive_opt::<Float32Type>()
                    .filter(|a| a.is_valid(row))
                    .map(|a| TextOnly(float_text::format_f32(a.value(row))));
                Encoder::encode_field(encoder, &value, pg_field)?;
            }
            Codec::Float8 if text => {
                let value = array
                    .as_primitive_opt::<Float64Type>()
                    .filter(|a| a.is_valid(row))
                    .map(|a| TextOnly(float_text::format_f64(a.value(row))));
                Encoder::encode_field(encoder, &value, pg_field)?;
            }
            Codec::Timestamp(timestamp) if text => {
                let value = timestamp.format(array.as_ref(), row).map(TextOnly);
                Encoder::encode_field(encoder, &value, pg_field)?;
            }
            Codec::Interval(interval) if text => {
                let value = interval.format(array.as_ref(), row).map(TextOnly);
                Encoder::encode_field(encoder, &value, pg_field)?;
            }
            Codec::Array(elements) if text => {
                let value = elements.format(array.as_ref(), row).map(TextOnly);
                Encoder::encode_field(encoder, &value, pg_field)?;
            }
            Codec::FixedBinary => {
                let value = array
                    .as_fixed_size_binary_opt()
                    .filter(|a| a.is_valid(row))
                    .map(|a| a.value(row));
                Encoder::encode_field(encoder, &value, pg_field)?;
            }
            Codec::Float4
            | Codec::Float8
            | Codec::Timestamp(_)
            | Codec::Interval(_)
            | Codec::Array(_)
            | Codec::ArrowPg => encode_value(encoder, array, row, schema.field(col), pg_field)?,
        }
    }
    Ok(())
}

/// A value in Postgres' text form, for a column sent as text (in binary,
/// arrow-pg's encoding is Postgres').
#[derive(Debug)]
struct TextOnly(String);

impl ToSql for TextOnly {
    fn to_sql(&self, ty: &Type, _out: &mut BytesMut) -> Result<IsNull, BoxError> {
        Err(format!("{ty} in binary form is written by arrow-pg").into())
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl ToSqlText for TextOnly {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _format_options: &FormatOptions,
    ) -> Result<IsNull, BoxError> {
        out.put_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }
}

/// One value of a Sluice-typed column, encodable in either format.
#[derive(Debug)]
struct SluiceValue<'a> {
    ty: SluiceType,
    array: &'a dyn Array,
    row: usize,
}

type BoxError = Box<dyn Error + Sync + Send>;

impl SluiceValue<'_> {
    fn write(
        &self,
        out: &mut BytesMut,
        encode: fn(SluiceType, &dyn Array, usize, &mut Vec<u8>) -> datafusion::error::Result<()>,
    ) -> Result<IsNull, BoxError> {
        if self.array.is_null(self.row) {
            return Ok(IsNull::Yes);
        }
        let mut buf = Vec::new();
        encode(self.ty, self.array, self.row, &mut buf)?;
        out.put_slice(&buf);
        Ok(IsNull::No)
    }
}

impl ToSql for SluiceValue<'_> {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        self.write(out, wire::encode_binary)
    }

    fn accepts(_ty: &Type) -> bool {
        // The announced type was chosen from this value's own Sluice type.
        true
    }

    to_sql_checked!();
}

impl ToSqlText for SluiceValue<'_> {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
        _format_options: &FormatOptions,
    ) -> Result<IsNull, BoxError> {
        self.write(out, wire::encode_text)
    }
}

/// The Postgres type announced for a Sluice type.
pub fn announced_type(ty: SluiceType) -> Type {
    let pg = wire::pg_type(ty);
    // Built-in types are known to postgres-types; extension types (vector)
    // are announced by the OID Sluice's pg_type lists for them.
    Type::from_oid(pg.oid).unwrap_or_else(|| {
        Type::new(
            pg.name.to_owned(),
            pg.oid,
            postgres_types::Kind::Simple,
            "public".to_owned(),
        )
    })
}
