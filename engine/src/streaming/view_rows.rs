//! [`ViewRows`]: what a materialized view holds, in the cheapest form its
//! changes so far allow.
//!
//! While only inserts have arrived (every append-only query, and most
//! queries over tables nobody updates) the rows are the batches as they
//! came: nothing is hashed or copied, and a read hands them out. The first
//! delete turns them into a multiset of rows in Arrow's row format (a row
//! and how many times it is present), so an update arriving as a delete and
//! an insert lands on the right row whatever its columns' types.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::RowConverter;
use datafusion::error::{DataFusionError, Result};

use super::multiset::{RowCounts, add_rows};
use super::signal::ChangeOp;

/// Rows per batch handed out when a view is read.
pub const READ_BATCH_ROWS: usize = 8192;

/// A view's rows; see the module docs.
pub enum ViewRows {
    /// Inserted batches, in the view's schema (duplicates are separate rows).
    Appended {
        batches: Vec<RecordBatch>,
        rows: usize,
    },
    /// Each distinct row (in row format) and how many times it is present.
    Counted(RowCounts),
}

impl Default for ViewRows {
    fn default() -> Self {
        Self::Appended {
            batches: Vec::new(),
            rows: 0,
        }
    }
}

impl ViewRows {
    /// Applies one epoch's `changes` (batches in the view's schema): all
    /// or, on an error, nothing.
    pub fn apply(
        &mut self,
        converter: &RowConverter,
        changes: Vec<(ChangeOp, RecordBatch)>,
    ) -> Result<()> {
        let inserts_only = changes.iter().all(|(op, _)| *op == ChangeOp::Insert);
        if let (Self::Appended { batches, rows }, true) = (&mut *self, inserts_only) {
            for (_, batch) in changes {
                *rows += batch.num_rows();
                batches.push(batch);
            }
            return Ok(());
        }
        // Converted before anything is touched, so a failure leaves the
        // rows as the previous epoch left them.
        let converted = changes
            .iter()
            .map(|(op, batch)| Ok((*op, converter.convert_columns(batch.columns())?)))
            .collect::<Result<Vec<_>>>()?;
        if let Self::Appended { batches, .. } = self {
            let mut counts = RowCounts::default();
            for batch in batches.iter() {
                add_rows(&mut counts, &converter.convert_columns(batch.columns())?, 1);
            }
            *self = Self::Counted(counts);
        }
        if let Self::Counted(counts) = self {
            for (op, rows) in converted {
                let delta = match op {
                    ChangeOp::Insert => 1,
                    ChangeOp::Delete => -1,
                };
                add_rows(counts, &rows, delta);
            }
        }
        Ok(())
    }

    /// How many rows the view holds.
    pub fn row_count(&self) -> u64 {
        match self {
            Self::Appended { rows, .. } => *rows as u64,
            Self::Counted(counts) => counts.values().filter(|c| **c > 0).map(|c| *c as u64).sum(),
        }
    }

    /// The rows as batches of about [`READ_BATCH_ROWS`]. Appended batches
    /// are coalesced in place on the way (many small commits leave many
    /// small batches), so the next read finds them merged.
    pub fn batches(
        &mut self,
        schema: &SchemaRef,
        converter: &RowConverter,
    ) -> Result<Vec<RecordBatch>> {
        match self {
            Self::Appended { batches, .. } => {
                if batches.iter().any(|b| b.num_rows() < READ_BATCH_ROWS / 2) {
                    *batches = coalesce(schema, batches)?;
                }
                Ok(batches.clone())
            }
            Self::Counted(counts) => {
                let mut rows = Vec::with_capacity(counts.len());
                for (row, count) in counts.iter() {
                    for _ in 0..(*count).max(0) {
                        rows.push(row.row());
                    }
                }
                rows.chunks(READ_BATCH_ROWS)
                    .map(|chunk| {
                        let columns = converter.convert_rows(chunk.iter().copied())?;
                        Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
                    })
                    .collect()
            }
        }
    }

    /// The rows as a checkpoint keeps them: the view's columns and a count
    /// column (`counted` is that schema); returns the batches and how many
    /// entries they hold.
    pub fn counted_batches(
        &self,
        counted: &SchemaRef,
        converter: &RowConverter,
    ) -> Result<(Vec<RecordBatch>, usize)> {
        match self {
            Self::Appended { batches, rows } => {
                let batches = batches
                    .iter()
                    .map(|batch| {
                        let mut columns = batch.columns().to_vec();
                        columns.push(Arc::new(Int64Array::from_value(1, batch.num_rows())));
                        Ok(RecordBatch::try_new(Arc::clone(counted), columns)?)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((batches, *rows))
            }
            Self::Counted(counts) => {
                let entries: Vec<_> = counts.iter().collect();
                let batches = entries
                    .chunks(READ_BATCH_ROWS)
                    .map(|chunk| {
                        let mut columns =
                            converter.convert_rows(chunk.iter().map(|(row, _)| row.row()))?;
                        columns.push(Arc::new(Int64Array::from_iter_values(
                            chunk.iter().map(|(_, count)| **count),
                        )));
                        Ok(RecordBatch::try_new(Arc::clone(counted), columns)?)
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((batches, entries.len()))
            }
        }
    }

    /// The rows a checkpoint's batches ([`Self::counted_batches`], then
    /// deltas of +1/-1) add up to; `schema` is the view's.
    pub fn restore(
        schema: &SchemaRef,
        converter: &RowConverter,
        saved: &[RecordBatch],
    ) -> Result<Self> {
        let width = schema.fields().len();
        let mut counted: Vec<(&Int64Array, Vec<ArrayRef>)> = Vec::with_capacity(saved.len());
        for batch in saved {
            let counts = batch
                .columns()
                .get(width)
                .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
                .ok_or_else(|| {
                    DataFusionError::Execution("corrupt view checkpoint: no counts".into())
                })?;
            counted.push((counts, batch.columns()[..width].to_vec()));
        }
        // Rows counted once each, and no retraction: the batches are the rows.
        if counted
            .iter()
            .all(|(counts, _)| counts.null_count() == 0 && counts.values().iter().all(|c| *c == 1))
        {
            let mut rows = Self::default();
            let batches = counted
                .into_iter()
                .map(|(_, columns)| {
                    Ok((
                        ChangeOp::Insert,
                        RecordBatch::try_new(Arc::clone(schema), columns)?,
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            rows.apply(converter, batches)?;
            return Ok(rows);
        }
        let mut counts = RowCounts::default();
        for (count_column, columns) in counted {
            let converted = converter.convert_columns(&columns)?;
            for (row, count) in converted.iter().zip(count_column.values()) {
                *counts.entry(row.owned()).or_default() += *count;
            }
        }
        counts.retain(|_, count| *count != 0);
        Ok(Self::Counted(counts))
    }
}

/// `batches` merged into batches of at least [`READ_BATCH_ROWS`] rows
/// (the last may be smaller), in order.
fn coalesce(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Vec<RecordBatch>> {
    let mut merged = Vec::new();
    let mut pending: Vec<&RecordBatch> = Vec::new();
    let mut pending_rows = 0;
    for batch in batches {
        pending.push(batch);
        pending_rows += batch.num_rows();
        if pending_rows >= READ_BATCH_ROWS {
            merged.push(concat_batches(schema, pending.drain(..))?);
            pending_rows = 0;
        }
    }
    if !pending.is_empty() {
        merged.push(concat_batches(schema, pending.drain(..))?);
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::row::SortField;

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)]))
    }

    fn batch(values: &[&str]) -> RecordBatch {
        RecordBatch::try_new(schema(), vec![Arc::new(StringArray::from(values.to_vec()))]).unwrap()
    }

    fn sorted(rows: &mut ViewRows, converter: &RowConverter) -> Vec<String> {
        let mut values: Vec<String> = rows
            .batches(&schema(), converter)
            .unwrap()
            .iter()
            .flat_map(|b| {
                let column = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
                column
                    .iter()
                    .map(|v| v.unwrap_or("NULL").to_string())
                    .collect::<Vec<_>>()
            })
            .collect();
        values.sort();
        values
    }

    #[test]
    fn inserts_stay_batches_until_a_delete_counts_them() {
        let converter = RowConverter::new(vec![SortField::new(DataType::Utf8)]).unwrap();
        let mut rows = ViewRows::default();
        rows.apply(&converter, vec![(ChangeOp::Insert, batch(&["a", "b"]))])
            .unwrap();
        rows.apply(&converter, vec![(ChangeOp::Insert, batch(&["a"]))])
            .unwrap();
        assert!(matches!(rows, ViewRows::Appended { .. }));
        assert_eq!(rows.row_count(), 3);
        assert_eq!(sorted(&mut rows, &converter), ["a", "a", "b"]);
        rows.apply(
            &converter,
            vec![
                (ChangeOp::Delete, batch(&["a"])),
                (ChangeOp::Insert, batch(&["c"])),
            ],
        )
        .unwrap();
        assert!(matches!(rows, ViewRows::Counted(_)));
        assert_eq!(sorted(&mut rows, &converter), ["a", "b", "c"]);
    }

    #[test]
    fn a_checkpoint_restores_either_form() {
        let converter = RowConverter::new(vec![SortField::new(DataType::Utf8)]).unwrap();
        let mut counted_fields: Vec<_> = schema().fields().iter().cloned().collect();
        counted_fields.push(Arc::new(Field::new("n", DataType::Int64, false)));
        let counted: SchemaRef = Arc::new(Schema::new(counted_fields));
        let mut rows = ViewRows::default();
        rows.apply(
            &converter,
            vec![(ChangeOp::Insert, batch(&["a", "a", "b"]))],
        )
        .unwrap();
        let (saved, entries) = rows.counted_batches(&counted, &converter).unwrap();
        assert_eq!(entries, 3);
        let mut back = ViewRows::restore(&schema(), &converter, &saved).unwrap();
        assert!(matches!(back, ViewRows::Appended { .. }));
        assert_eq!(sorted(&mut back, &converter), ["a", "a", "b"]);
        rows.apply(&converter, vec![(ChangeOp::Delete, batch(&["a"]))])
            .unwrap();
        let (saved, _) = rows.counted_batches(&counted, &converter).unwrap();
        let mut back = ViewRows::restore(&schema(), &converter, &saved).unwrap();
        assert_eq!(sorted(&mut back, &converter), ["a", "b"]);
    }
}
