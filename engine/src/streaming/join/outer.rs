//! The pieces of an incremental outer join (LEFT, RIGHT, FULL).
//!
//! An outer join is not linear the way an inner join is: a row that finds
//! its first match takes back the NULL-padded row it was emitted as, and
//! one that loses its last match emits it again. So a change is not joined
//! on its own; instead the rows of both inputs that share its keys (a *key
//! group*: rows with other keys can never meet these) are joined before
//! and after the change, and the difference is emitted. Equality keys
//! make the groups small; an outer join without them is refused at
//! planning.

use std::collections::HashMap;

use datafusion::arrow::array::{BooleanArray, RecordBatch};
use datafusion::arrow::compute::{filter_record_batch, interleave_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::hash_utils::RandomState;
use datafusion::error::Result;

use super::key_index::key_nulls;

/// The rows of `batch` with a NULL in one of its key columns at `keys`
/// (the key index leaves them out: they match nothing, yet an outer join
/// still emits them), if any.
pub fn null_keyed(batch: &RecordBatch, keys: &[usize]) -> Result<Option<RecordBatch>> {
    let Some(nulls) = key_nulls(batch, keys) else {
        return Ok(None);
    };
    if nulls.null_count() == 0 {
        return Ok(None);
    }
    let null_key: BooleanArray = nulls.iter().map(|valid| Some(!valid)).collect();
    Ok(Some(filter_record_batch(batch, &null_key)?))
}

/// A distinct row's count in the result after minus before, and where a
/// copy of it is: the side (0 before, 1 after), the batch, the row.
type NetCount = (i64, usize, usize, usize);

/// What changed between two results over the same rows: the rows of
/// `before` not in `after` (to delete) and those of `after` not in
/// `before` (to insert), as multisets: a row present twice before and once
/// after is deleted once.
pub fn difference(
    schema: &SchemaRef,
    before: &[RecordBatch],
    after: &[RecordBatch],
) -> Result<(Option<RecordBatch>, Option<RecordBatch>)> {
    let converter = RowConverter::new(
        schema
            .fields()
            .iter()
            .map(|field| SortField::new(field.data_type().clone()))
            .collect(),
    )?;
    // Per distinct row: after's count minus before's, and where a copy of
    // it is (which side, batch, row).
    let mut net: HashMap<Box<[u8]>, NetCount, RandomState> = HashMap::default();
    for (side, batches, step) in [(0, before, -1), (1, after, 1)] {
        for (at, batch) in batches.iter().enumerate() {
            let rows = converter.convert_columns(batch.columns())?;
            for (row, key) in rows.iter().enumerate() {
                match net.get_mut(key.as_ref()) {
                    Some(entry) => {
                        entry.0 += step;
                        // Keep a copy on the side the row will be taken from.
                        if (entry.0 > 0) == (side == 1) {
                            (entry.1, entry.2, entry.3) = (side, at, row);
                        }
                    }
                    None => {
                        net.insert(key.as_ref().into(), (step, side, at, row));
                    }
                }
            }
        }
    }
    let mut deleted = Vec::new();
    let mut inserted = Vec::new();
    for (count, side, at, row) in net.into_values() {
        let copies = count.unsigned_abs() as usize;
        match (count.signum(), side) {
            (-1, 0) => deleted.extend(std::iter::repeat_n((at, row), copies)),
            (1, 1) => inserted.extend(std::iter::repeat_n((at, row), copies)),
            _ => {}
        }
    }
    let gather = |batches: &[RecordBatch], positions: Vec<(usize, usize)>| -> Result<_> {
        if positions.is_empty() {
            return Ok(None);
        }
        let batches: Vec<&RecordBatch> = batches.iter().collect();
        Ok(Some(interleave_record_batch(&batches, &positions)?))
    };
    Ok((gather(before, deleted)?, gather(after, inserted)?))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("v", DataType::Utf8, true),
        ]))
    }

    fn batch(rows: &[(Option<i64>, Option<&str>)]) -> RecordBatch {
        RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn sorted(batch: Option<RecordBatch>) -> Vec<(Option<i64>, Option<String>)> {
        let Some(batch) = batch else {
            return Vec::new();
        };
        let keys = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        let values = batch
            .column(1)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let mut rows: Vec<_> = keys
            .iter()
            .zip(values.iter())
            .map(|(k, v)| (k, v.map(str::to_string)))
            .collect();
        rows.sort();
        rows
    }

    #[test]
    fn the_difference_counts_copies_and_ignores_what_stayed() {
        let before = [batch(&[
            (Some(1), None),
            (Some(2), Some("b")),
            (Some(2), Some("b")),
        ])];
        let after = [
            batch(&[(Some(2), Some("b"))]),
            batch(&[(Some(1), Some("a")), (Some(3), None)]),
        ];
        let (deleted, inserted) = difference(&schema(), &before, &after).unwrap();
        assert_eq!(
            sorted(deleted),
            vec![(Some(1), None), (Some(2), Some("b".into()))]
        );
        assert_eq!(
            sorted(inserted),
            vec![(Some(1), Some("a".into())), (Some(3), None)]
        );
    }

    #[test]
    fn rows_with_a_null_key_are_picked_out() {
        let rows = batch(&[(Some(1), None), (None, Some("x")), (Some(2), None)]);
        assert_eq!(
            sorted(null_keyed(&rows, &[0]).unwrap()),
            vec![(None, Some("x".into()))]
        );
        assert!(null_keyed(&rows, &[1]).unwrap().is_some());
        assert!(
            null_keyed(&batch(&[(Some(1), None)]), &[0])
                .unwrap()
                .is_none()
        );
    }
}
