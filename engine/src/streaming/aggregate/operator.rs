//! [`AggregateOperator`]: `GROUP BY` in a continuous query, incrementally,
//! with DataFusion's own accumulators (the same `count`, `sum`, `avg`,
//! `min`, … as batch queries).
//!
//! Two ways to emit, chosen by the query's shape:
//! - **updating** (a plain `GROUP BY`): deleted input rows are retracted
//!   from each group's state (see [`super::state`] for how each aggregate
//!   takes a retraction).
//!   At each barrier every group the epoch touched emits a delete of the
//!   row it emitted before and an insert of its new row.
//! - **windowed** (`GROUP BY window_start, window_end, …` over `TUMBLE` or
//!   `HOP`): groups are append-only; a window's rows are emitted once, when
//!   the watermark passes its `window_end`, and its state is dropped. Rows
//!   arriving for a window already closed are late: dropped and counted.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Int64Array, RecordBatch, UInt32Array,
};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use sluice_types::error::{SluiceError, SqlState};

use super::checkpoint::{load_groups, save_groups};
use super::state::{AggregateState, AggregateStrategy, GroupState};
use crate::streaming::checkpoint::StateSnapshot;
use crate::streaming::operator::{OperatorMetrics, StreamOperator};
use crate::streaming::signal::{Change, ChangeOp, CheckpointBarrier, Watermark, event_time_nanos};

/// When an aggregate's groups emit.
#[derive(Debug, Clone, Copy)]
pub enum Emission {
    /// At every barrier, for the groups the epoch changed (with retraction).
    Updating,
    /// Once per window, when the watermark passes the window's end; the
    /// index is the group column holding `window_end`.
    OnWindowClose { window_end: usize },
}

/// A batch's rows by group.
struct Partitioned {
    /// The group-by columns evaluated over the batch.
    key_columns: Vec<ArrayRef>,
    /// Each group's key and row indices, in first-seen order.
    groups: Vec<(OwnedRow, Vec<u32>)>,
}

/// An incremental `GROUP BY`; see the module docs.
pub struct AggregateOperator {
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    strategies: Vec<AggregateStrategy>,
    emission: Emission,
    output_schema: SchemaRef,
    keys: RowConverter,
    groups: HashMap<OwnedRow, GroupState>,
    /// Groups changed in the current epoch (updating mode).
    dirty: HashSet<OwnedRow>,
    watermark: Option<Watermark>,
    late_rows: u64,
    /// With no GROUP BY, the key of the one group, which exists (and
    /// emits) even when empty, as `SELECT count(*) FROM t` returns 0 on an
    /// empty table.
    global: Option<OwnedRow>,
}

impl AggregateOperator {
    /// An aggregate of `aggregates` grouped by `group_exprs`, both over the
    /// input's columns, emitting rows of `output_schema` (group columns
    /// then aggregates, as DataFusion's `Aggregate` node).
    pub fn try_new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        group_types: Vec<DataType>,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        strategies: Vec<AggregateStrategy>,
        emission: Emission,
        output_schema: SchemaRef,
    ) -> Result<Self> {
        let keys = RowConverter::new(group_types.into_iter().map(SortField::new).collect())?;
        let global = if group_exprs.is_empty() {
            // Any row will do as the one key: a row of one constant.
            let constant: ArrayRef = Arc::new(BooleanArray::from(vec![true]));
            let converter = RowConverter::new(vec![SortField::new(DataType::Boolean)])?;
            Some(converter.convert_columns(&[constant])?.row(0).owned())
        } else {
            None
        };
        let mut operator = Self {
            group_exprs,
            aggregates,
            strategies,
            emission,
            output_schema,
            keys,
            groups: HashMap::new(),
            dirty: HashSet::new(),
            watermark: None,
            late_rows: 0,
            global,
        };
        if let Some(key) = operator.global.clone() {
            let state = operator.new_group(0)?;
            operator.groups.insert(key.clone(), state);
            operator.dirty.insert(key);
        }
        Ok(operator)
    }

    /// Whether the operator takes inserts only (windowed).
    pub fn is_append_only(&self) -> bool {
        matches!(self.emission, Emission::OnWindowClose { .. })
    }

    fn new_group(&self, window_end: i64) -> Result<GroupState> {
        let retracting = !self.is_append_only();
        let aggregates = self
            .aggregates
            .iter()
            .zip(&self.strategies)
            .map(|(aggregate, strategy)| strategy.new_state(aggregate, retracting))
            .collect::<Result<_>>()?;
        Ok(GroupState {
            aggregates,
            rows: 0,
            emitted: None,
            window_end,
        })
    }

    /// The rows of `batch` for each group, in first-seen order.
    fn partition(&self, batch: &RecordBatch) -> Result<Partitioned> {
        let key_columns = evaluate_columns(&self.group_exprs, batch)?;
        let mut order: Vec<(OwnedRow, Vec<u32>)> = Vec::new();
        let mut index: HashMap<OwnedRow, usize> = HashMap::new();
        if let Some(key) = self.global.clone() {
            order.push((key, (0..batch.num_rows() as u32).collect()));
            return Ok(Partitioned {
                key_columns,
                groups: order,
            });
        }
        let rows = self.keys.convert_columns(&key_columns)?;
        for (i, row) in rows.iter().enumerate() {
            let owned = row.owned();
            match index.get(&owned) {
                Some(&at) => order[at].1.push(i as u32),
                None => {
                    index.insert(owned.clone(), order.len());
                    order.push((owned, vec![i as u32]));
                }
            }
        }
        Ok(Partitioned {
            key_columns,
            groups: order,
        })
    }

    /// Builds output rows: one per (group key, aggregate values).
    fn output(&self, rows: Vec<(OwnedRow, Vec<ScalarValue>)>) -> Result<Option<RecordBatch>> {
        if rows.is_empty() {
            return Ok(None);
        }
        let group_columns: Vec<ArrayRef> = if self.global.is_some() {
            Vec::new()
        } else {
            self.keys
                .convert_rows(rows.iter().map(|(key, _)| key.row()))?
        };
        let values: Vec<&[ScalarValue]> = rows.iter().map(|(_, v)| v.as_slice()).collect();
        output_batch(&self.output_schema, group_columns, &values).map(Some)
    }

    /// Each row's window end in nanoseconds (windowed mode), converted
    /// once per batch.
    fn window_ends(&self, key_columns: &[ArrayRef]) -> Result<Option<Int64Array>> {
        let Emission::OnWindowClose { window_end } = self.emission else {
            return Ok(None);
        };
        let column = key_columns
            .get(window_end)
            .ok_or_else(|| DataFusionError::Internal("window_end is not a group column".into()))?;
        event_time_nanos(column).map(Some)
    }
}

/// An aggregate's output rows: the group columns, then one column per
/// aggregate from each row's `values`, cast to `schema`'s types.
pub(super) fn output_batch(
    schema: &SchemaRef,
    mut columns: Vec<ArrayRef>,
    values: &[&[ScalarValue]],
) -> Result<RecordBatch> {
    let aggregates = values.first().map_or(0, |v| v.len());
    for i in 0..aggregates {
        columns.push(ScalarValue::iter_to_array(
            values.iter().map(|row| row[i].clone()),
        )?);
    }
    let columns = columns
        .into_iter()
        .zip(schema.fields())
        .map(|(column, field)| {
            if column.data_type() == field.data_type() {
                Ok(column)
            } else {
                Ok(cast(&column, field.data_type())?)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// Each aggregate's argument columns over `batch`.
pub(super) fn argument_columns(
    aggregates: &[Arc<AggregateFunctionExpr>],
    batch: &RecordBatch,
) -> Result<Vec<Vec<ArrayRef>>> {
    aggregates
        .iter()
        .map(|aggregate| evaluate_columns(&aggregate.expressions(), batch))
        .collect()
}

/// `exprs` evaluated over `batch`, one column each (group keys, aggregate
/// arguments).
pub(super) fn evaluate_columns(
    exprs: &[Arc<dyn PhysicalExpr>],
    batch: &RecordBatch,
) -> Result<Vec<ArrayRef>> {
    exprs
        .iter()
        .map(|expr| expr.evaluate(batch)?.into_array(batch.num_rows()))
        .collect()
}

/// Every aggregate's value for a group.
fn evaluate(
    state: &mut GroupState,
    strategies: &[AggregateStrategy],
    aggregates: &[Arc<AggregateFunctionExpr>],
) -> Result<Vec<ScalarValue>> {
    evaluate_states(&mut state.aggregates, strategies, aggregates)
}

/// Every aggregate's value from its state.
pub(super) fn evaluate_states(
    states: &mut [AggregateState],
    strategies: &[AggregateStrategy],
    aggregates: &[Arc<AggregateFunctionExpr>],
) -> Result<Vec<ScalarValue>> {
    states
        .iter_mut()
        .zip(strategies)
        .zip(aggregates)
        .map(|((state, strategy), aggregate)| state.evaluate(strategy, aggregate))
        .collect()
}

#[async_trait]
impl StreamOperator for AggregateOperator {
    fn name(&self) -> &str {
        match self.emission {
            Emission::Updating => "aggregate",
            Emission::OnWindowClose { .. } => "window aggregate",
        }
    }

    fn describe(&self) -> String {
        let aggregates: Vec<&str> = self.aggregates.iter().map(|a| a.name()).collect();
        let emits = match self.emission {
            Emission::Updating => "updates at each epoch",
            Emission::OnWindowClose { .. } => "emits each window once the watermark passes it",
        };
        format!(
            "{}: {} grouped by {} columns; {emits}",
            self.name(),
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
        let windowed = matches!(self.emission, Emission::OnWindowClose { .. });
        if windowed && change.op == ChangeOp::Delete {
            return Err(SluiceError::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                "a windowed aggregate is append-only: rows deleted or updated in its source \
                 cannot be retracted from windows already emitted",
            )
            .into());
        }
        let Partitioned {
            key_columns,
            groups,
        } = self.partition(batch)?;
        // The argument columns reordered once so each group's rows are
        // contiguous: every group then reads a zero-copy slice instead of a
        // `take` of its own per aggregate (the cost that dominated windows).
        let order =
            UInt32Array::from_iter_values(groups.iter().flat_map(|(_, rows)| rows.iter().copied()));
        let arguments = argument_columns(&self.aggregates, batch)?
            .into_iter()
            .map(|columns| {
                columns
                    .iter()
                    .map(|column| take(column.as_ref(), &order, None))
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let window_ends = self.window_ends(&key_columns)?;
        let mut offset = 0usize;
        for (key, rows) in groups {
            let start = offset;
            offset += rows.len();
            let window_end = match &window_ends {
                None => 0,
                Some(ends) if ends.is_null(rows[0] as usize) => {
                    return Err(SluiceError::new(
                        SqlState::NULL_VALUE_NOT_ALLOWED,
                        "a window's time column is NULL",
                    )
                    .into());
                }
                Some(ends) => ends.value(rows[0] as usize),
            };
            if windowed && self.watermark.is_some_and(|w| window_end <= w.0) {
                self.late_rows += rows.len() as u64;
                continue;
            }
            if !self.groups.contains_key(&key) {
                let state = self.new_group(window_end)?;
                self.groups.insert(key.clone(), state);
            }
            let Some(state) = self.groups.get_mut(&key) else {
                continue;
            };
            for ((aggregate, strategy), columns) in state
                .aggregates
                .iter_mut()
                .zip(&self.strategies)
                .zip(&arguments)
            {
                let slices: Vec<ArrayRef> = columns
                    .iter()
                    .map(|column| column.slice(start, rows.len()))
                    .collect();
                aggregate.apply(strategy, &slices, change.op)?;
            }
            let count = rows.len() as i64;
            state.rows += match change.op {
                ChangeOp::Insert => count,
                ChangeOp::Delete => -count,
            };
            if !windowed {
                self.dirty.insert(key);
            }
        }
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
        if !matches!(self.emission, Emission::OnWindowClose { .. }) {
            return Ok(watermark);
        }
        let closed: Vec<OwnedRow> = self
            .groups
            .iter()
            .filter(|(_, state)| state.window_end <= watermark.0)
            .map(|(key, _)| key.clone())
            .collect();
        let mut rows = Vec::with_capacity(closed.len());
        for key in closed {
            if let Some(mut state) = self.groups.remove(&key) {
                let values = evaluate(&mut state, &self.strategies, &self.aggregates)?;
                rows.push((key, values));
            }
        }
        if let Some(batch) = self.output(rows)? {
            out.push(Change::insert(batch));
        }
        Ok(watermark)
    }

    async fn handle_checkpoint(
        &mut self,
        _barrier: CheckpointBarrier,
        out: &mut Vec<Change>,
    ) -> Result<()> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let mut deleted = Vec::new();
        let mut inserted = Vec::new();
        for key in std::mem::take(&mut self.dirty) {
            let Some(state) = self.groups.get_mut(&key) else {
                continue;
            };
            let before = state.emitted.take();
            let alive = state.rows > 0 || self.global.is_some();
            let after = if alive {
                Some(evaluate(state, &self.strategies, &self.aggregates)?)
            } else {
                None
            };
            if before == after {
                state.emitted = before;
                continue;
            }
            if let Some(values) = before {
                deleted.push((key.clone(), values));
            }
            match after {
                Some(values) => {
                    state.emitted = Some(values.clone());
                    inserted.push((key, values));
                }
                None => {
                    self.groups.remove(&key);
                }
            }
        }
        if let Some(batch) = self.output(deleted)? {
            out.push(Change::delete(batch));
        }
        if let Some(batch) = self.output(inserted)? {
            out.push(Change::insert(batch));
        }
        Ok(())
    }

    fn metrics(&self) -> OperatorMetrics {
        OperatorMetrics {
            late_rows: self.late_rows,
            state_entries: self.groups.len() as u64,
        }
    }

    fn snapshot(&mut self) -> Result<Option<StateSnapshot>> {
        let group_count = self.group_exprs.len();
        let output_types: Vec<DataType> = self.output_schema.fields()[group_count..]
            .iter()
            .map(|field| field.data_type().clone())
            .collect();
        let batch = save_groups(&mut self.groups, &output_types)?;
        Ok(Some(StateSnapshot {
            batches: batch.into_iter().collect(),
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
        let mut groups = HashMap::new();
        for batch in &snapshot.batches {
            let rows = load_groups(
                batch,
                &self.keys.parser(),
                self.aggregates.len(),
                |window_end| self.new_group(window_end),
                &self.strategies,
            )?;
            groups.extend(rows);
        }
        if let Some(global) = &self.global
            && !groups.contains_key(global)
        {
            groups.insert(global.clone(), self.new_group(0)?);
        }
        self.groups = groups;
        self.dirty.clear();
        Ok(())
    }
}
