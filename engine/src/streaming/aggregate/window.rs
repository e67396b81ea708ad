//! [`WindowAggregateOperator`]: a windowed `GROUP BY` (`GROUP BY
//! window_start, window_end, …` over TUMBLE or HOP) in a continuous query,
//! vectorised with DataFusion's own hash-aggregation parts: each open window
//! numbers its groups with a [`GroupValues`] and keeps every group's state
//! in one [`GroupsAccumulator`] per aggregate, so a batch costs one hash
//! probe per row and one `update_batch` per aggregate — not an accumulator
//! object per group and a call per group, which is what made windows the
//! slow path.
//!
//! Windows are append-only, which is what makes this fit: a window's groups
//! never retract and all leave together when the watermark passes the
//! window's end, so emitting *all* of a window's structures emits exactly
//! them. Rows arriving for a window already closed are late: dropped and
//! counted. (An updating `GROUP BY` must retract and re-emit single
//! groups, so it keeps per-group accumulators: [`super::operator`].)

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, BinaryArray, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::{concat_batches, take_arrays};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::hash_utils::RandomState;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::{GroupsAccumulatorAdapter, PhysicalExpr};
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use sluice_types::error::{SluiceError, SqlState};

use super::checkpoint::{SavedWindowGroups, read_window_groups, save_window_groups};
use super::operator::{argument_columns, batch_of, evaluate_columns};
use crate::streaming::checkpoint::StateSnapshot;
use crate::streaming::operator::{OperatorMetrics, StreamOperator};
use crate::streaming::signal::{Change, ChangeOp, Watermark, event_time_nanos};

/// One open window's groups: their keys, numbered, and every aggregate's
/// state for all of them.
struct WindowGroups {
    keys: Box<dyn GroupValues>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
}

impl WindowGroups {
    /// Adds rows (their group columns and each aggregate's arguments);
    /// `merge`: the arguments are saved states, not input rows.
    fn add(
        &mut self,
        key_columns: &[ArrayRef],
        arguments: &[Vec<ArrayRef>],
        merge: bool,
        indices: &mut Vec<usize>,
    ) -> Result<()> {
        indices.clear();
        self.keys.intern(key_columns, indices)?;
        let groups = self.keys.len();
        for (accumulator, columns) in self.accumulators.iter_mut().zip(arguments) {
            if merge {
                accumulator.merge_batch(columns, indices, groups)?;
            } else {
                accumulator.update_batch(columns, indices, None, groups)?;
            }
        }
        Ok(())
    }

    /// The group columns and each aggregate's final value, in group
    /// order; the window is left empty.
    fn finish(&mut self) -> Result<(Vec<ArrayRef>, Vec<ArrayRef>)> {
        let keys = self.keys.emit(EmitTo::All)?;
        let values = self
            .accumulators
            .iter_mut()
            .map(|accumulator| accumulator.evaluate(EmitTo::All))
            .collect::<Result<_>>()?;
        Ok((keys, values))
    }

    /// The group columns and each aggregate's intermediate state (what
    /// DataFusion merges across partitions), leaving the groups as they
    /// were: taking the state empties the structures, so it is merged back.
    fn state(&mut self, indices: &mut Vec<usize>) -> Result<(Vec<ArrayRef>, Vec<Vec<ArrayRef>>)> {
        let keys = self.keys.emit(EmitTo::All)?;
        // Emitting all leaves the key map behind in some implementations
        // (DataFusion emits all only at the end of its input): reset it
        // before the keys go back in.
        self.keys.clear_shrink(keys.first().map_or(0, |k| k.len()));
        let states = self
            .accumulators
            .iter_mut()
            .map(|accumulator| accumulator.state(EmitTo::All))
            .collect::<Result<Vec<_>>>()?;
        self.add(&keys, &states, true, indices)?;
        Ok((keys, states))
    }
}

/// A windowed `GROUP BY`; see the module docs.
pub struct WindowAggregateOperator {
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    /// The group columns' schema (what [`GroupValues`] is built for).
    group_schema: SchemaRef,
    /// The group column holding `window_end`.
    window_end: usize,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    output_schema: SchemaRef,
    /// Group keys in Arrow's row format, as checkpoints keep them (and the
    /// keyed exchange splits them).
    keys: RowConverter,
    /// Open windows by their end in nanoseconds.
    windows: BTreeMap<i64, WindowGroups>,
    watermark: Option<Watermark>,
    late_rows: u64,
    /// Scratch space for group indices, reused batch after batch.
    indices: Vec<usize>,
}

impl WindowAggregateOperator {
    /// An aggregate of `aggregates` grouped by `group_exprs` (of
    /// `group_types`; the one at `window_end` is the window's end), both
    /// over the input's columns, emitting rows of `output_schema` (group
    /// columns then aggregates, as DataFusion's `Aggregate` node).
    pub fn try_new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        group_types: Vec<DataType>,
        window_end: usize,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        output_schema: SchemaRef,
    ) -> Result<Self> {
        if window_end >= group_types.len() {
            return Err(DataFusionError::Internal(
                "window_end is not a group column".into(),
            ));
        }
        let group_schema = Arc::new(Schema::new(
            group_types
                .iter()
                .enumerate()
                .map(|(i, data_type)| Field::new(format!("g{i}"), data_type.clone(), true))
                .collect::<Vec<_>>(),
        ));
        let keys = RowConverter::new(group_types.into_iter().map(SortField::new).collect())?;
        Ok(Self {
            group_exprs,
            group_schema,
            window_end,
            aggregates,
            output_schema,
            keys,
            windows: BTreeMap::new(),
            watermark: None,
            late_rows: 0,
            indices: Vec::new(),
        })
    }

    fn new_window(&self) -> Result<WindowGroups> {
        let keys = new_group_values(Arc::clone(&self.group_schema), &GroupOrdering::None)?;
        let accumulators = self
            .aggregates
            .iter()
            .map(groups_accumulator)
            .collect::<Result<_>>()?;
        Ok(WindowGroups { keys, accumulators })
    }

    /// The open window ending at `end`, created if new.
    fn window(&mut self, end: i64) -> Result<&mut WindowGroups> {
        if !self.windows.contains_key(&end) {
            let window = self.new_window()?;
            self.windows.insert(end, window);
        }
        self.windows
            .get_mut(&end)
            .ok_or_else(|| DataFusionError::Internal("a window vanished".into()))
    }

    /// A closed window's output rows, cast to the output schema's types.
    fn output(&self, keys: Vec<ArrayRef>, values: Vec<ArrayRef>) -> Result<RecordBatch> {
        batch_of(
            &self.output_schema,
            keys.into_iter().chain(values).collect(),
        )
    }

    /// The aggregates' output types (the checkpoint format keeps a column of
    /// each, for the updating operator's last emitted values).
    fn output_types(&self) -> Vec<DataType> {
        self.output_schema.fields()[self.group_exprs.len()..]
            .iter()
            .map(|field| field.data_type().clone())
            .collect()
    }
}

/// `aggregate`'s vectorised accumulator, or DataFusion's adapter over its
/// per-group one where it has none (as DataFusion's hash aggregate does).
fn groups_accumulator(
    aggregate: &Arc<AggregateFunctionExpr>,
) -> Result<Box<dyn GroupsAccumulator>> {
    if aggregate.groups_accumulator_supported() {
        return aggregate.create_groups_accumulator();
    }
    let aggregate = Arc::clone(aggregate);
    Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
        aggregate.create_accumulator()
    })))
}

/// Rows per window end, in first-seen order; `None` rows: all of them (a
/// batch usually falls in one window).
fn rows_by_window(ends: &Int64Array) -> Vec<(i64, Option<UInt32Array>)> {
    let values = ends.values();
    let Some(&first) = values.first() else {
        return Vec::new();
    };
    if values.iter().all(|&end| end == first) {
        return vec![(first, None)];
    }
    let mut at: HashMap<i64, usize, RandomState> = HashMap::default();
    let mut parts: Vec<(i64, Vec<u32>)> = Vec::new();
    // Rows arrive roughly in time order: most repeat the previous row's end.
    let mut last: Option<(i64, usize)> = None;
    for (row, &end) in values.iter().enumerate() {
        let part = match last {
            Some((previous, part)) if previous == end => part,
            _ => *at.entry(end).or_insert_with(|| {
                parts.push((end, Vec::new()));
                parts.len() - 1
            }),
        };
        last = Some((end, part));
        parts[part].1.push(row as u32);
    }
    parts
        .into_iter()
        .map(|(end, rows)| (end, Some(UInt32Array::from(rows))))
        .collect()
}

#[async_trait]
impl StreamOperator for WindowAggregateOperator {
    fn name(&self) -> &str {
        "window aggregate"
    }

    fn describe(&self) -> String {
        let aggregates: Vec<&str> = self.aggregates.iter().map(|a| a.name()).collect();
        format!(
            "window aggregate: {} grouped by {} columns; emits each window once the watermark \
             passes it",
            aggregates.join(", "),
            self.group_exprs.len()
        )
    }

    fn output_schema(&self) -> SchemaRef {
        Arc::clone(&self.output_schema)
    }

    async fn process_change(&mut self, change: Change, _out: &mut Vec<Change>) -> Result<()> {
        fail::fail_point!("aggregate-change", |_| Err(crate::failpoints::injected(
            "aggregate-change"
        )));
        let batch = &change.batch;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        if change.op == ChangeOp::Delete {
            return Err(SluiceError::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                "a windowed aggregate is append-only: rows deleted or updated in its source \
                 cannot be retracted from windows already emitted",
            )
            .into());
        }
        let key_columns = evaluate_columns(&self.group_exprs, batch)?;
        let arguments = argument_columns(&self.aggregates, batch)?;
        let ends = event_time_nanos(&key_columns[self.window_end])?;
        if ends.null_count() > 0 {
            return Err(SluiceError::new(
                SqlState::NULL_VALUE_NOT_ALLOWED,
                "a window's time column is NULL",
            )
            .into());
        }
        let mut indices = std::mem::take(&mut self.indices);
        for (end, rows) in rows_by_window(&ends) {
            let count = rows.as_ref().map_or(batch.num_rows(), |r| r.len());
            if self.watermark.is_some_and(|w| end <= w.0) {
                self.late_rows += count as u64;
                continue;
            }
            let (keys, arguments) = match rows {
                None => (key_columns.clone(), arguments.clone()),
                Some(rows) => (
                    take_arrays(&key_columns, &rows, None)?,
                    arguments
                        .iter()
                        .map(|columns| Ok(take_arrays(columns, &rows, None)?))
                        .collect::<Result<_>>()?,
                ),
            };
            self.window(end)?
                .add(&keys, &arguments, false, &mut indices)?;
        }
        self.indices = indices;
        Ok(())
    }

    async fn handle_watermark(
        &mut self,
        watermark: Watermark,
        out: &mut Vec<Change>,
    ) -> Result<Watermark> {
        if self.watermark.is_some_and(|w| w >= watermark) {
            return Ok(watermark);
        }
        self.watermark = Some(watermark);
        // Windows ending at or before the watermark close.
        let open = match watermark.0.checked_add(1) {
            Some(after) => self.windows.split_off(&after),
            None => BTreeMap::new(),
        };
        let closed = std::mem::replace(&mut self.windows, open);
        let mut batches = Vec::with_capacity(closed.len());
        for (_, mut window) in closed {
            let (keys, values) = window.finish()?;
            batches.push(self.output(keys, values)?);
        }
        if !batches.is_empty() {
            out.push(Change::insert(concat_batches(
                &self.output_schema,
                &batches,
            )?));
        }
        Ok(watermark)
    }

    fn metrics(&self) -> OperatorMetrics {
        OperatorMetrics {
            late_rows: self.late_rows,
            state_entries: self.windows.values().map(|w| w.keys.len() as u64).sum(),
        }
    }

    fn snapshot(&mut self) -> Result<Option<StateSnapshot>> {
        let output_types = self.output_types();
        let mut indices = std::mem::take(&mut self.indices);
        let mut batches = Vec::with_capacity(self.windows.len());
        for (&end, window) in &mut self.windows {
            let (keys, states) = window.state(&mut indices)?;
            let keys = self.keys.convert_columns(&keys)?;
            let keys = BinaryArray::from_iter_values(keys.iter().map(|row| row.data().to_vec()));
            batches.push(save_window_groups(keys, end, &output_types, states)?);
        }
        self.indices = indices;
        Ok(Some(StateSnapshot {
            batches,
            meta: serde_json::json!({
                "watermark": self.watermark.map(|w| w.0),
                "late_rows": self.late_rows,
            }),
        }))
    }

    fn restore(&mut self, snapshot: StateSnapshot) -> Result<()> {
        let meta = &snapshot.meta;
        self.watermark = meta["watermark"].as_i64().map(Watermark);
        self.late_rows = meta["late_rows"].as_u64().unwrap_or(0);
        self.windows.clear();
        let widths = self
            .aggregates
            .iter()
            .map(|aggregate| Ok(aggregate.state_fields()?.len()))
            .collect::<Result<Vec<_>>>()?;
        let parser = self.keys.parser();
        let mut indices = std::mem::take(&mut self.indices);
        for batch in &snapshot.batches {
            let SavedWindowGroups {
                keys,
                window_ends,
                states,
            } = read_window_groups(batch, self.aggregates.len(), &widths)?;
            let rows = keys.iter().map(|key| parser.parse(key.unwrap_or_default()));
            let key_columns = self.keys.convert_rows(rows)?;
            for (end, rows) in rows_by_window(&window_ends) {
                let (keys, states) = match rows {
                    None => (key_columns.clone(), states.clone()),
                    Some(rows) => (
                        take_arrays(&key_columns, &rows, None)?,
                        states
                            .iter()
                            .map(|columns| Ok(take_arrays(columns, &rows, None)?))
                            .collect::<Result<_>>()?,
                    ),
                };
                self.window(end)?.add(&keys, &states, true, &mut indices)?;
            }
        }
        self.indices = indices;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_split_by_window_in_first_seen_order() {
        let one = rows_by_window(&Int64Array::from(vec![5, 5, 5]));
        assert_eq!(one.len(), 1);
        assert!(one[0].1.is_none());
        let split = rows_by_window(&Int64Array::from(vec![7, 5, 7, 9]));
        let parts: Vec<(i64, Vec<u32>)> = split
            .into_iter()
            .map(|(end, rows)| (end, rows.map(|r| r.values().to_vec()).unwrap_or_default()))
            .collect();
        assert_eq!(parts, vec![(7, vec![0, 2]), (5, vec![1]), (9, vec![3])]);
    }
}
