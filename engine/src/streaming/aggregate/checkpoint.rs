//! An aggregate's groups as a checkpoint keeps them: one row per group —
//! its key in Arrow's row format, its row count, window end, the values it
//! emitted last, and per aggregate either the accumulator's intermediate
//! state (one column per state value, as DataFusion merges partial
//! aggregates) or the multiset of argument rows it keeps.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Int64Array, RecordBatch,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::row::{OwnedRow, RowParser};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};

use super::operator::GroupState;
use super::state::{AggregateStrategy, SavedState};

/// Columns before the emitted values: key, rows, window end, emitted?
const FIXED_COLUMNS: usize = 4;

/// The groups as one batch, and per aggregate how many state columns it
/// has (0: a multiset column).
pub(super) struct SavedGroups {
    pub batch: Option<RecordBatch>,
    pub state_columns: Vec<usize>,
}

fn corrupt(what: &str) -> DataFusionError {
    DataFusionError::Execution(format!("corrupt aggregate checkpoint: {what}"))
}

/// Every group of `groups`; `output_types` are the aggregates' output
/// types (for the emitted values).
pub(super) fn save_groups(
    groups: &mut HashMap<OwnedRow, GroupState>,
    output_types: &[DataType],
) -> Result<SavedGroups> {
    if groups.is_empty() {
        return Ok(SavedGroups {
            batch: None,
            state_columns: Vec::new(),
        });
    }
    let aggregates = output_types.len();
    let mut keys = Vec::with_capacity(groups.len());
    let mut rows = Vec::with_capacity(groups.len());
    let mut window_ends = Vec::with_capacity(groups.len());
    let mut emitted = Vec::with_capacity(groups.len());
    let mut emitted_values: Vec<Vec<ScalarValue>> = vec![Vec::new(); aggregates];
    // Per aggregate: per state value, the groups' values; or the groups'
    // multiset bytes.
    let mut states: Vec<Vec<Vec<ScalarValue>>> = vec![Vec::new(); aggregates];
    let mut multisets: Vec<Vec<Vec<u8>>> = vec![Vec::new(); aggregates];
    for (key, group) in groups.iter_mut() {
        keys.push(key.row().data().to_vec());
        rows.push(group.rows);
        window_ends.push(group.window_end);
        emitted.push(group.emitted.is_some());
        for (i, data_type) in output_types.iter().enumerate() {
            emitted_values[i].push(match &group.emitted {
                Some(values) => values[i].clone(),
                None => ScalarValue::try_from(data_type)?,
            });
        }
        for (i, state) in group.aggregates.iter_mut().enumerate() {
            match state.save()? {
                SavedState::Accumulator(values) => {
                    if states[i].is_empty() {
                        states[i] = vec![Vec::new(); values.len()];
                    }
                    for (column, value) in states[i].iter_mut().zip(values) {
                        column.push(value);
                    }
                }
                SavedState::Values(bytes) => multisets[i].push(bytes),
            }
        }
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(BinaryArray::from_iter_values(keys)),
        Arc::new(Int64Array::from(rows)),
        Arc::new(Int64Array::from(window_ends)),
        Arc::new(BooleanArray::from(emitted)),
    ];
    for values in emitted_values {
        columns.push(ScalarValue::iter_to_array(values)?);
    }
    let mut state_columns = Vec::with_capacity(aggregates);
    for (state, multiset) in states.into_iter().zip(multisets) {
        if multiset.is_empty() {
            state_columns.push(state.len());
            for values in state {
                columns.push(ScalarValue::iter_to_array(values)?);
            }
        } else {
            state_columns.push(0);
            columns.push(Arc::new(BinaryArray::from_iter_values(multiset)));
        }
    }
    let schema = Schema::new(
        columns
            .iter()
            .enumerate()
            .map(|(i, column)| Field::new(format!("c{i}"), column.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    Ok(SavedGroups {
        batch: Some(RecordBatch::try_new(Arc::new(schema), columns)?),
        state_columns,
    })
}

/// The groups of a batch [`save_groups`] made, each built by `new_group`
/// (given its window end) and loaded with its saved state.
pub(super) fn load_groups(
    batch: &RecordBatch,
    keys: &RowParser,
    aggregates: usize,
    new_group: impl Fn(i64) -> Result<GroupState>,
    strategies: &[AggregateStrategy],
) -> Result<HashMap<OwnedRow, GroupState>> {
    let column = |i: usize| {
        batch
            .columns()
            .get(i)
            .ok_or_else(|| corrupt("too few columns"))
    };
    let key_column = column(0)?
        .as_any()
        .downcast_ref::<BinaryArray>()
        .ok_or_else(|| corrupt("keys"))?;
    let int = |i: usize| -> Result<&Int64Array> {
        column(i)?
            .as_any()
            .downcast_ref::<Int64Array>()
            .ok_or_else(|| corrupt("counts"))
    };
    let (rows, window_ends) = (int(1)?, int(2)?);
    let emitted = column(3)?
        .as_any()
        .downcast_ref::<BooleanArray>()
        .ok_or_else(|| corrupt("emitted"))?;
    let emitted_columns: Vec<&ArrayRef> = (0..aggregates)
        .map(|i| column(FIXED_COLUMNS + i))
        .collect::<Result<_>>()?;
    let mut groups = HashMap::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let mut group = new_group(window_ends.value(row))?;
        group.rows = rows.value(row);
        if emitted.value(row) {
            group.emitted = Some(
                emitted_columns
                    .iter()
                    .map(|column| ScalarValue::try_from_array(column, row))
                    .collect::<Result<_>>()?,
            );
        }
        let mut next = FIXED_COLUMNS + aggregates;
        for (state, strategy) in group.aggregates.iter_mut().zip(strategies) {
            match strategy {
                AggregateStrategy::Values(_) => {
                    let bytes = column(next)?
                        .as_any()
                        .downcast_ref::<BinaryArray>()
                        .ok_or_else(|| corrupt("multiset"))?;
                    state.load(strategy, &[], Some(bytes.value(row)))?;
                    next += 1;
                }
                AggregateStrategy::Accumulator => {
                    let count = state_width(state)?;
                    let slices: Vec<ArrayRef> = (next..next + count)
                        .map(|i| Ok(column(i)?.slice(row, 1)))
                        .collect::<Result<_>>()?;
                    state.load(strategy, &slices, None)?;
                    next += count;
                }
            }
        }
        groups.insert(keys.parse(key_column.value(row)).owned(), group);
    }
    Ok(groups)
}

/// How many state values a fresh accumulator has.
fn state_width(state: &mut super::state::AggregateState) -> Result<usize> {
    match state.save()? {
        SavedState::Accumulator(values) => Ok(values.len()),
        SavedState::Values(_) => Err(corrupt("state kinds")),
    }
}
