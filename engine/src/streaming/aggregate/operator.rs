//! [`AggregateOperator`]: a plain (updating) `GROUP BY` in a continuous
//! query, incrementally, with DataFusion's own accumulators (the same
//! `count`, `sum`, `avg`, `min`, … as batch queries).
//!
//! Deleted input rows are retracted from each group's state (see
//! [`super::state`] for how each aggregate takes a retraction); where the
//! input never deletes (it comes from a window, an interval join or a
//! generator) every aggregate keeps a plain accumulator instead. At each
//! barrier every group the epoch touched emits a delete of the row it
//! emitted before and an insert of its new row. Windowed `GROUP BY`s,
//! whose groups are append-only, run vectorised in [`super::window`].

use std::collections::{HashMap, HashSet};

use datafusion::common::hash_utils::RandomState;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{OwnedRow, Row, RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::checkpoint::{load_groups, save_groups};
use super::state::{AggregateState, AggregateStrategy, GroupState, Groups};
use crate::streaming::checkpoint::{DeltaCadence, StateSnapshot};
use crate::streaming::operator::{OperatorMetrics, StreamOperator};
use crate::streaming::signal::{Change, ChangeOp, CheckpointBarrier};

/// The row count that marks a group removed in an incremental checkpoint.
const GONE: i64 = i64::MIN;

/// What an aggregate's incremental checkpoints need to know.
#[derive(Default)]
struct Increments {
    /// Groups changed (or removed) since the last snapshot.
    unsaved: HashSet<OwnedRow, RandomState>,
    cadence: DeltaCadence,
}

/// A batch's rows by group.
struct Partitioned {
    /// Each group's key and row indices, in first-seen order.
    groups: Vec<(OwnedRow, Vec<u32>)>,
}

/// An incremental `GROUP BY`; see the module docs.
pub struct AggregateOperator {
    group_exprs: Vec<Arc<dyn PhysicalExpr>>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    strategies: Vec<AggregateStrategy>,
    /// Whether the input deletes rows (so accumulators must retract).
    retracting: bool,
    output_schema: SchemaRef,
    keys: RowConverter,
    groups: Groups,
    /// Groups changed in the current epoch (updating mode).
    dirty: HashSet<OwnedRow, RandomState>,
    /// Incremental checkpoints; see [`Increments`].
    increments: Increments,
    /// With no GROUP BY, the key of the one group, which exists (and
    /// emits) even when empty, as `SELECT count(*) FROM t` returns 0 on an
    /// empty table.
    global: Option<OwnedRow>,
}

impl AggregateOperator {
    /// An aggregate of `aggregates` grouped by `group_exprs`, both over the
    /// input's columns, emitting rows of `output_schema` (group columns
    /// then aggregates, as DataFusion's `Aggregate` node); `retracting`:
    /// its input deletes rows (`strategies` were chosen for that).
    pub fn try_new(
        group_exprs: Vec<Arc<dyn PhysicalExpr>>,
        group_types: Vec<DataType>,
        aggregates: Vec<Arc<AggregateFunctionExpr>>,
        strategies: Vec<AggregateStrategy>,
        retracting: bool,
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
            retracting,
            output_schema,
            keys,
            groups: Groups::default(),
            dirty: HashSet::default(),
            increments: Increments::default(),
            global,
        };
        if let Some(key) = operator.global.clone() {
            let state = operator.new_group()?;
            operator.groups.insert(key.clone(), state);
            operator.dirty.insert(key);
        }
        Ok(operator)
    }

    fn new_group(&self) -> Result<GroupState> {
        let aggregates = self
            .aggregates
            .iter()
            .zip(&self.strategies)
            .map(|(aggregate, strategy)| strategy.new_state(aggregate, self.retracting))
            .collect::<Result<_>>()?;
        Ok(GroupState {
            aggregates,
            rows: 0,
            emitted: None,
            window_end: 0,
        })
    }

    /// The rows of `batch` for each group, in first-seen order.
    fn partition(&self, batch: &RecordBatch) -> Result<Partitioned> {
        if let Some(key) = self.global.clone() {
            return Ok(Partitioned {
                groups: vec![(key, (0..batch.num_rows() as u32).collect())],
            });
        }
        let key_columns = evaluate_columns(&self.group_exprs, batch)?;
        let rows = self.keys.convert_columns(&key_columns)?;
        let mut order: Vec<(OwnedRow, Vec<u32>)> = Vec::new();
        // Keyed by the borrowed row: a key is copied once per group, not
        // once per input row.
        let mut index: HashMap<Row<'_>, usize, RandomState> = HashMap::default();
        for (i, row) in rows.iter().enumerate() {
            match index.get(&row) {
                Some(&at) => order[at].1.push(i as u32),
                None => {
                    index.insert(row, order.len());
                    order.push((row.owned(), vec![i as u32]));
                }
            }
        }
        Ok(Partitioned { groups: order })
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
    batch_of(schema, columns)
}

/// `columns` as a batch of `schema`, each cast to its field's type where it
/// differs (accumulators may return a wider type than the plan's).
pub(super) fn batch_of(schema: &SchemaRef, columns: Vec<ArrayRef>) -> Result<RecordBatch> {
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
        "aggregate"
    }

    fn describe(&self) -> String {
        let aggregates: Vec<&str> = self.aggregates.iter().map(|a| a.name()).collect();
        format!(
            "{}: {} grouped by {} columns; updates at each epoch",
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
        let Partitioned { groups } = self.partition(batch)?;
        // The argument columns reordered once so each group's rows are
        // contiguous: every group then reads a zero-copy slice instead of a
        // `take` of its own per aggregate.
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
        let mut offset = 0usize;
        for (key, rows) in groups {
            let start = offset;
            offset += rows.len();
            if !self.groups.contains_key(&key) {
                let state = self.new_group()?;
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
            if self.increments.cadence.is_active() {
                self.increments.unsaved.insert(key.clone());
            }
            self.dirty.insert(key);
        }
        Ok(())
    }

    async fn handle_checkpoint(
        &mut self,
        barrier: CheckpointBarrier,
        out: &mut Vec<Change>,
    ) -> Result<()> {
        if barrier.checkpoint {
            self.increments.cadence.barrier(barrier.epoch.0);
        }
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
            late_rows: 0,
            state_entries: self.groups.len() as u64,
        }
    }

    fn snapshot(&mut self) -> Result<Option<StateSnapshot>> {
        let group_count = self.group_exprs.len();
        let output_types: Vec<DataType> = self.output_schema.fields()[group_count..]
            .iter()
            .map(|field| field.data_type().clone())
            .collect();
        let unsaved = std::mem::take(&mut self.increments.unsaved);
        let since = self.increments.cadence.next_snapshot();
        let Some(since) = since else {
            let batch = save_groups(&mut self.groups, &output_types)?;
            return Ok(Some(StateSnapshot {
                batches: batch.into_iter().collect(),
                meta: serde_json::json!({}),
            }));
        };
        // Only the groups changed since the last checkpoint: their whole
        // state, or a mark that they are gone.
        let mut changed = Groups::default();
        for key in unsaved {
            let group = match self.groups.remove(&key) {
                Some(group) => group,
                None => {
                    let mut gone = self.new_group()?;
                    gone.rows = GONE;
                    gone
                }
            };
            changed.insert(key, group);
        }
        let batch = save_groups(&mut changed, &output_types);
        for (key, group) in changed {
            if group.rows != GONE {
                self.groups.insert(key, group);
            }
        }
        Ok(Some(StateSnapshot::delta(
            batch?.into_iter().collect(),
            serde_json::json!({}),
            since,
        )))
    }

    fn restore(&mut self, snapshot: StateSnapshot) -> Result<()> {
        let mut groups = Groups::default();
        for batch in &snapshot.batches {
            let rows = load_groups(
                batch,
                &self.keys.parser(),
                self.aggregates.len(),
                |_| self.new_group(),
                &self.strategies,
            )?;
            // Later batches (an incremental checkpoint's changes) replace
            // or remove the groups of earlier ones.
            for (key, group) in rows {
                if group.rows == GONE {
                    groups.remove(&key);
                } else {
                    groups.insert(key, group);
                }
            }
        }
        if let Some(global) = &self.global
            && !groups.contains_key(global)
        {
            groups.insert(global.clone(), self.new_group()?);
        }
        self.groups = groups;
        self.dirty.clear();
        // The next checkpoint is a whole one.
        self.increments = Increments::default();
        Ok(())
    }
}
