//! Aggregate state as a checkpoint keeps it: one row per group, its own
//! columns first (its key in Arrow's row format, counts, window bounds…),
//! then per aggregate either the accumulator's intermediate state (one
//! column per state value, as DataFusion merges partial aggregates) or the
//! multiset of argument rows it keeps. The group operator
//! ([`super::operator`]) and the session operator ([`super::session`])
//! share the aggregate columns.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Int64Array, RecordBatch, new_null_array,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::row::RowParser;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};

use super::state::{AggregateState, AggregateStrategy, GroupState, Groups, SavedState};

/// Columns of a group before its emitted values: key, rows, window end,
/// emitted?
const GROUP_COLUMNS: usize = 4;

pub(super) fn corrupt(what: &str) -> DataFusionError {
    DataFusionError::Execution(format!("corrupt aggregate checkpoint: {what}"))
}

/// Builds the aggregate columns, one group at a time.
pub(super) struct StateColumns {
    /// Per aggregate: per state value, the groups' values.
    values: Vec<Vec<Vec<ScalarValue>>>,
    /// Per aggregate: the groups' multiset bytes.
    multisets: Vec<Vec<Vec<u8>>>,
}

impl StateColumns {
    /// For `aggregates` aggregates.
    pub fn new(aggregates: usize) -> Self {
        Self {
            values: vec![Vec::new(); aggregates],
            multisets: vec![Vec::new(); aggregates],
        }
    }

    /// Adds one group's states.
    pub fn push(&mut self, states: &mut [AggregateState]) -> Result<()> {
        for (i, state) in states.iter_mut().enumerate() {
            match state.save()? {
                SavedState::Accumulator(values) => {
                    if self.values[i].is_empty() {
                        self.values[i] = vec![Vec::new(); values.len()];
                    }
                    for (column, value) in self.values[i].iter_mut().zip(values) {
                        column.push(value);
                    }
                }
                SavedState::Values(bytes) => self.multisets[i].push(bytes),
            }
        }
        Ok(())
    }

    /// The columns, appended to `columns`.
    pub fn finish(self, columns: &mut Vec<ArrayRef>) -> Result<()> {
        for (values, multiset) in self.values.into_iter().zip(self.multisets) {
            if multiset.is_empty() {
                for column in values {
                    columns.push(ScalarValue::iter_to_array(column)?);
                }
            } else {
                columns.push(Arc::new(BinaryArray::from_iter_values(multiset)));
            }
        }
        Ok(())
    }
}

/// `columns` as a batch (names do not matter, types and order do).
pub(super) fn state_batch(columns: Vec<ArrayRef>) -> Result<RecordBatch> {
    let schema = Schema::new(
        columns
            .iter()
            .enumerate()
            .map(|(i, column)| Field::new(format!("c{i}"), column.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// Column `i` of `batch`.
pub(super) fn column(batch: &RecordBatch, i: usize) -> Result<&ArrayRef> {
    batch
        .columns()
        .get(i)
        .ok_or_else(|| corrupt("too few columns"))
}

/// Column `i` of `batch` as `T`.
pub(super) fn typed<T: 'static>(batch: &RecordBatch, i: usize) -> Result<&T> {
    column(batch, i)?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| corrupt("column types"))
}

/// How many columns each aggregate's state takes in a checkpoint, read
/// from fresh `states` (once per batch, not per group).
pub(super) fn state_widths(states: &mut [AggregateState]) -> Result<Vec<usize>> {
    states
        .iter_mut()
        .map(|state| match state.save()? {
            SavedState::Accumulator(values) => Ok(values.len()),
            SavedState::Values(_) => Ok(1),
        })
        .collect()
}

/// Loads row `row`'s aggregate columns (from column `first` on, `widths`
/// from [`state_widths`]) into the fresh `states`.
pub(super) fn load_states(
    batch: &RecordBatch,
    first: usize,
    row: usize,
    widths: &[usize],
    states: &mut [AggregateState],
    strategies: &[AggregateStrategy],
) -> Result<()> {
    let mut next = first;
    for ((state, strategy), count) in states.iter_mut().zip(strategies).zip(widths) {
        let count = *count;
        match strategy {
            AggregateStrategy::Values(_) => {
                let bytes = typed::<BinaryArray>(batch, next)?;
                state.load(strategy, &[], Some(bytes.value(row)))?;
                next += 1;
            }
            AggregateStrategy::Accumulator => {
                let slices: Vec<ArrayRef> = (next..next + count)
                    .map(|i| Ok(column(batch, i)?.slice(row, 1)))
                    .collect::<Result<_>>()?;
                state.load(strategy, &slices, None)?;
                next += count;
            }
        }
    }
    Ok(())
}

/// Every group of `groups` as one batch (`None`: no groups);
/// `output_types` are the aggregates' output types (for the values each
/// group emitted last).
pub(super) fn save_groups(
    groups: &mut Groups,
    output_types: &[DataType],
) -> Result<Option<RecordBatch>> {
    if groups.is_empty() {
        return Ok(None);
    }
    let aggregates = output_types.len();
    let mut keys = Vec::with_capacity(groups.len());
    let mut rows = Vec::with_capacity(groups.len());
    let mut window_ends = Vec::with_capacity(groups.len());
    let mut emitted = Vec::with_capacity(groups.len());
    let mut emitted_values: Vec<Vec<ScalarValue>> = vec![Vec::new(); aggregates];
    let mut states = StateColumns::new(aggregates);
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
        states.push(&mut group.aggregates)?;
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
    states.finish(&mut columns)?;
    state_batch(columns).map(Some)
}

/// The groups of a batch [`save_groups`] made, each built by `new_group`
/// (given its window end) and loaded with its saved state.
pub(super) fn load_groups(
    batch: &RecordBatch,
    keys: &RowParser,
    aggregates: usize,
    new_group: impl Fn(i64) -> Result<GroupState>,
    strategies: &[AggregateStrategy],
) -> Result<Groups> {
    let key_column = typed::<BinaryArray>(batch, 0)?;
    let rows = typed::<Int64Array>(batch, 1)?;
    let window_ends = typed::<Int64Array>(batch, 2)?;
    let emitted = typed::<BooleanArray>(batch, 3)?;
    let emitted_columns: Vec<&ArrayRef> = (0..aggregates)
        .map(|i| column(batch, GROUP_COLUMNS + i))
        .collect::<Result<_>>()?;
    let mut groups = Groups::with_capacity_and_hasher(batch.num_rows(), Default::default());
    let mut widths = None;
    for row in 0..batch.num_rows() {
        let mut group = new_group(window_ends.value(row))?;
        if widths.is_none() {
            widths = Some(state_widths(&mut group.aggregates)?);
        }
        let widths = widths.as_deref().unwrap_or_default();
        group.rows = rows.value(row);
        if emitted.value(row) {
            group.emitted = Some(
                emitted_columns
                    .iter()
                    .map(|column| ScalarValue::try_from_array(column, row))
                    .collect::<Result<_>>()?,
            );
        }
        load_states(
            batch,
            GROUP_COLUMNS + aggregates,
            row,
            widths,
            &mut group.aggregates,
            strategies,
        )?;
        groups.insert(keys.parse(key_column.value(row)).owned(), group);
    }
    Ok(groups)
}

/// One window's groups (all ending at `window_end`) in the format of
/// [`save_groups`]: `keys` in row format, `states` per aggregate its
/// intermediate state columns. Windowed groups never emit before they
/// close and do not count their rows (nothing retracts them), so those
/// columns hold no values.
pub(super) fn save_window_groups(
    keys: BinaryArray,
    window_end: i64,
    output_types: &[DataType],
    states: Vec<Vec<ArrayRef>>,
) -> Result<RecordBatch> {
    let groups = keys.len();
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(keys),
        Arc::new(Int64Array::from(vec![0; groups])),
        Arc::new(Int64Array::from(vec![window_end; groups])),
        Arc::new(BooleanArray::from(vec![false; groups])),
    ];
    for data_type in output_types {
        columns.push(new_null_array(data_type, groups));
    }
    columns.extend(states.into_iter().flatten());
    state_batch(columns)
}

/// What [`read_window_groups`] finds in a saved batch.
pub(super) struct SavedWindowGroups {
    /// Each group's key in row format.
    pub keys: BinaryArray,
    /// Each group's window end in nanoseconds.
    pub window_ends: Int64Array,
    /// Per aggregate, its intermediate state columns.
    pub states: Vec<Vec<ArrayRef>>,
}

/// The groups of a batch in the format of [`save_groups`], for an
/// aggregate whose `aggregates` keep `widths` state columns each.
pub(super) fn read_window_groups(
    batch: &RecordBatch,
    aggregates: usize,
    widths: &[usize],
) -> Result<SavedWindowGroups> {
    let keys = typed::<BinaryArray>(batch, 0)?.clone();
    let window_ends = typed::<Int64Array>(batch, 2)?.clone();
    if window_ends.null_count() > 0 {
        return Err(corrupt("a group without a window end"));
    }
    let mut next = GROUP_COLUMNS + aggregates;
    let mut states = Vec::with_capacity(widths.len());
    for &width in widths {
        states.push(
            (next..next + width)
                .map(|i| column(batch, i).cloned())
                .collect::<Result<Vec<_>>>()?,
        );
        next += width;
    }
    Ok(SavedWindowGroups {
        keys,
        window_ends,
        states,
    })
}
