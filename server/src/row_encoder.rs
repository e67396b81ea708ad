//! Encodes record batches into Postgres DataRow messages, column by column:
//! Sluice's own types through `sluice_types::wire`, everything else through
//! `arrow-pg`'s codecs.

use std::error::Error;
use std::sync::Arc;

use arrow_pg::encoder::{Encoder, encode_value};
use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{Array, RecordBatch};
use pgwire::api::Type;
use pgwire::api::results::{DataRowEncoder, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use postgres_types::{IsNull, ToSql, to_sql_checked};
use sluice_types::{SluiceType, wire};

/// The DataRows of one batch, produced lazily.
pub fn encode_batch_rows(
    batch: RecordBatch,
    fields: Arc<Vec<FieldInfo>>,
) -> impl Iterator<Item = PgWireResult<DataRow>> {
    let types: Vec<Option<SluiceType>> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| SluiceType::of_field(f))
        .collect();
    let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
    let mut row = 0;
    std::iter::from_fn(move || {
        if row >= batch.num_rows() {
            return None;
        }
        let encoded = encode_row(&mut encoder, &batch, &fields, &types, row);
        row += 1;
        Some(encoded.map(|()| encoder.take_row()))
    })
}

fn encode_row(
    encoder: &mut DataRowEncoder,
    batch: &RecordBatch,
    fields: &[FieldInfo],
    types: &[Option<SluiceType>],
    row: usize,
) -> PgWireResult<()> {
    let schema = batch.schema();
    for (col, array) in batch.columns().iter().enumerate() {
        let pg_field = &fields[col];
        match types[col] {
            Some(ty) => {
                let value = SluiceValue {
                    ty,
                    array: array.as_ref(),
                    row,
                };
                Encoder::encode_field(encoder, &value, pg_field)?;
            }
            None => encode_value(encoder, array, row, schema.field(col), pg_field)?,
        }
    }
    Ok(())
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
    Type::from_oid(pg.oid).unwrap_or(Type::TEXT)
}
