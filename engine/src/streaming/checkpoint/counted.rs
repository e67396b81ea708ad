//! Rows with a count: how checkpoints hold a multiset (a view's content)
//! and the changes a delta checkpoint carries (+1 inserted, -1 deleted).

use std::sync::Arc;

use datafusion::arrow::array::{Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::Result;

use crate::streaming::signal::{Change, ChangeOp};

/// The count column's name.
const COUNT_COLUMN: &str = "__sluice_count";

/// `schema` with the count column after its columns.
pub fn counted_schema(schema: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<_> = schema.fields().iter().cloned().collect();
    fields.push(Arc::new(Field::new(COUNT_COLUMN, DataType::Int64, false)));
    Arc::new(Schema::new(fields))
}

/// `changes` as rows of `counted` (from [`counted_schema`]): each row with
/// +1 if inserted, -1 if deleted.
pub fn counted_changes(counted: &SchemaRef, changes: &[Change]) -> Result<Vec<RecordBatch>> {
    changes
        .iter()
        .map(|change| {
            let sign = match change.op {
                ChangeOp::Insert => 1,
                ChangeOp::Delete => -1,
            };
            let mut columns = change.batch.columns().to_vec();
            columns.push(Arc::new(Int64Array::from_value(
                sign,
                change.batch.num_rows(),
            )));
            Ok(RecordBatch::try_new(Arc::clone(counted), columns)?)
        })
        .collect()
}
