//! [`SideRows`]: the rows one input of a join has produced and not
//! retracted, kept as Arrow batches so they can feed DataFusion's join.

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::compute::{concat_batches, filter_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::error::Result;
use std::collections::HashMap;

use crate::streaming::signal::event_time_nanos;

/// Batches kept before they are merged into one (fewer, larger batches
/// keep the per-change join cheap to set up).
const MERGE_AFTER_BATCHES: usize = 32;

/// One join input's current rows.
pub struct SideRows {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    rows: usize,
}

impl SideRows {
    /// No rows yet, of `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        Self {
            schema,
            batches: Vec::new(),
            rows: 0,
        }
    }

    /// The kept rows' schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// How many rows are kept.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The kept rows (shared, not copied).
    pub fn batches(&self) -> Vec<RecordBatch> {
        self.batches.clone()
    }

    /// Keeps `batch`'s rows.
    pub fn insert(&mut self, batch: RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows();
        self.batches.push(batch);
        if self.batches.len() > MERGE_AFTER_BATCHES {
            let merged = concat_batches(&self.schema, &self.batches)?;
            self.batches = vec![merged];
        }
        Ok(())
    }

    /// Removes one kept copy of each of `batch`'s rows (a retraction).
    pub fn delete(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 || self.rows == 0 {
            return Ok(());
        }
        let converter = RowConverter::new(
            self.schema
                .fields()
                .iter()
                .map(|f| SortField::new(f.data_type().clone()))
                .collect(),
        )?;
        let mut wanted: HashMap<Vec<u8>, usize> = HashMap::new();
        for row in converter.convert_columns(batch.columns())?.iter() {
            *wanted.entry(row.as_ref().to_vec()).or_default() += 1;
        }
        for kept in &mut self.batches {
            if wanted.is_empty() {
                break;
            }
            let rows = converter.convert_columns(kept.columns())?;
            let keep: BooleanArray = rows
                .iter()
                .map(|row| match wanted.get_mut(row.as_ref()) {
                    Some(count) => {
                        *count -= 1;
                        if *count == 0 {
                            wanted.remove(row.as_ref());
                        }
                        Some(false)
                    }
                    None => Some(true),
                })
                .collect();
            if keep.false_count() > 0 {
                *kept = filter_record_batch(kept, &keep)?;
            }
        }
        self.batches.retain(|b| b.num_rows() > 0);
        self.rows = self.batches.iter().map(RecordBatch::num_rows).sum();
        Ok(())
    }

    /// Drops the rows whose event time (column `column`) is below `bound`
    /// nanoseconds: they can match nothing that is still to come.
    pub fn retain_from(&mut self, column: usize, bound: i64) -> Result<()> {
        for kept in &mut self.batches {
            let times = event_time_nanos(kept.column(column))?;
            let keep: BooleanArray = times
                .iter()
                .map(|t| Some(t.is_some_and(|t| t >= bound)))
                .collect();
            if keep.false_count() > 0 {
                *kept = filter_record_batch(kept, &keep)?;
            }
        }
        self.batches.retain(|b| b.num_rows() > 0);
        self.rows = self.batches.iter().map(RecordBatch::num_rows).sum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use datafusion::arrow::array::{Int64Array, TimestampNanosecondArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};

    fn batch(ids: &[i64], times: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("ts", DataType::Timestamp(TimeUnit::Nanosecond, None), false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(TimestampNanosecondArray::from(times.to_vec())),
            ],
        )
        .unwrap()
    }

    fn ids(side: &SideRows) -> Vec<i64> {
        let mut ids: Vec<i64> = side
            .batches()
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn a_delete_removes_one_copy_of_each_row() {
        let mut side = SideRows::new(batch(&[], &[]).schema());
        side.insert(batch(&[1, 2, 2], &[10, 20, 20])).unwrap();
        side.insert(batch(&[3], &[30])).unwrap();
        side.delete(&batch(&[2, 3, 9], &[20, 30, 90])).unwrap();
        assert_eq!(ids(&side), vec![1, 2]);
        assert_eq!(side.rows(), 2);
    }

    #[test]
    fn rows_below_the_bound_are_dropped() {
        let mut side = SideRows::new(batch(&[], &[]).schema());
        for i in 0..40 {
            side.insert(batch(&[i], &[i * 10])).unwrap();
        }
        side.retain_from(1, 355).unwrap();
        assert_eq!(ids(&side), (36..40).collect::<Vec<_>>());
    }
}
