//! What one aggregate keeps for one group, and how it takes retractions.
//!
//! DataFusion's "sliding" accumulators retract in the order rows arrived
//! (they serve window frames): right for sums, counts and averages, whose
//! retraction is exact arithmetic, but wrong for `min`/`max` and the like
//! when any row may be deleted (a moving-max queue forgets values it will
//! never need in FIFO order). Those keep the multiset of their argument
//! values instead and aggregate it afresh when the group emits.

use std::collections::HashMap;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::ScalarValue;
use datafusion::common::hash_utils::RandomState;
use datafusion::error::Result;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use crate::streaming::multiset::{RowCounts, add_rows, decode_counts, encode_counts};
use crate::streaming::signal::ChangeOp;

/// Aggregates whose retraction is exact arithmetic.
const INVERTIBLE: [&str; 16] = [
    "count",
    "sum",
    "avg",
    "mean",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "var",
    "var_pop",
    "var_samp",
    "var_population",
    "var_sample",
    "covar",
    "covar_pop",
    "covar_samp",
    "corr",
];

/// How an aggregate keeps a group's state.
pub enum AggregateStrategy {
    /// One accumulator (retracting exactly, or never asked to retract).
    Accumulator,
    /// The multiset of argument rows, aggregated when the group emits.
    Values(RowConverter),
}

impl AggregateStrategy {
    /// The strategy for `aggregate` in an aggregate that retracts
    /// (`retracting`) or only appends (windows).
    pub fn choose(
        aggregate: &AggregateFunctionExpr,
        input: &[DataType],
        retracting: bool,
    ) -> Result<Self> {
        let name = aggregate.fun().name().to_ascii_lowercase();
        let exact = INVERTIBLE.contains(&name.as_str())
            && !aggregate.is_distinct()
            && aggregate
                .create_sliding_accumulator()
                .is_ok_and(|a| a.supports_retract_batch());
        if !retracting || exact {
            return Ok(Self::Accumulator);
        }
        Ok(Self::Values(RowConverter::new(
            input.iter().cloned().map(SortField::new).collect(),
        )?))
    }

    /// A group's empty state.
    pub fn new_state(
        &self,
        aggregate: &AggregateFunctionExpr,
        retracting: bool,
    ) -> Result<AggregateState> {
        Ok(match self {
            Self::Accumulator if retracting => {
                AggregateState::Accumulator(aggregate.create_sliding_accumulator()?)
            }
            Self::Accumulator => AggregateState::Accumulator(aggregate.create_accumulator()?),
            Self::Values(_) => AggregateState::Values(RowCounts::default()),
        })
    }
}

/// Groups by key, hashed with DataFusion's fast hasher (the keys are
/// rows the engine encodes itself; SipHash would only cost time).
pub type Groups = HashMap<OwnedRow, GroupState, RandomState>;

/// One group's state in an aggregate operator.
pub struct GroupState {
    /// Each aggregate's state.
    pub aggregates: Vec<AggregateState>,
    /// Input rows in the group (inserted minus deleted).
    pub rows: i64,
    /// The aggregate values emitted last (updating mode), to retract.
    pub emitted: Option<Vec<ScalarValue>>,
    /// The window's end in nanoseconds (windowed mode).
    pub window_end: i64,
}

/// One aggregate's state in one group as a checkpoint keeps it.
pub enum SavedState {
    /// The accumulator's intermediate state values.
    Accumulator(Vec<ScalarValue>),
    /// The multiset of argument rows, encoded.
    Values(Vec<u8>),
}

/// One aggregate's state in one group.
pub enum AggregateState {
    /// A live accumulator.
    Accumulator(Box<dyn Accumulator>),
    /// Argument rows and how many times each is present.
    Values(RowCounts),
}

impl AggregateState {
    /// Adds or retracts the argument columns `arguments` (the group's rows).
    pub fn apply(
        &mut self,
        strategy: &AggregateStrategy,
        arguments: &[ArrayRef],
        op: ChangeOp,
    ) -> Result<()> {
        match (self, strategy) {
            (AggregateState::Accumulator(accumulator), _) => match op {
                ChangeOp::Insert => accumulator.update_batch(arguments),
                ChangeOp::Delete => accumulator.retract_batch(arguments),
            },
            (AggregateState::Values(values), AggregateStrategy::Values(converter)) => {
                let delta = match op {
                    ChangeOp::Insert => 1,
                    ChangeOp::Delete => -1,
                };
                add_rows(values, &converter.convert_columns(arguments)?, delta);
                Ok(())
            }
            (AggregateState::Values(_), AggregateStrategy::Accumulator) => {
                Err(datafusion::error::DataFusionError::Internal(
                    "an aggregate's state and strategy disagree".into(),
                ))
            }
        }
    }

    /// The state as a checkpoint keeps it: the accumulator's intermediate
    /// state (what DataFusion merges across partitions), or the multiset's
    /// bytes.
    pub fn save(&mut self) -> Result<SavedState> {
        Ok(match self {
            AggregateState::Accumulator(accumulator) => {
                SavedState::Accumulator(accumulator.state()?)
            }
            AggregateState::Values(values) => SavedState::Values(encode_counts(values)),
        })
    }

    /// Takes back a saved state into this fresh state: `columns` hold the
    /// accumulator's state values (one row), `values` the multiset's bytes.
    pub fn load(
        &mut self,
        strategy: &AggregateStrategy,
        columns: &[ArrayRef],
        values: Option<&[u8]>,
    ) -> Result<()> {
        match (self, strategy, values) {
            (AggregateState::Accumulator(accumulator), _, None) => accumulator.merge_batch(columns),
            (AggregateState::Values(into), AggregateStrategy::Values(converter), Some(bytes)) => {
                *into = decode_counts(bytes, &converter.parser())?;
                Ok(())
            }
            _ => Err(datafusion::error::DataFusionError::Execution(
                "a checkpointed aggregate state does not match the plan".into(),
            )),
        }
    }

    /// Folds `other` (the same aggregate over other rows) into this state:
    /// session windows that come to touch become one.
    pub fn merge(&mut self, other: AggregateState) -> Result<()> {
        match (self, other) {
            (AggregateState::Accumulator(into), AggregateState::Accumulator(mut from)) => {
                let state = from
                    .state()?
                    .iter()
                    .map(ScalarValue::to_array)
                    .collect::<Result<Vec<_>>>()?;
                into.merge_batch(&state)
            }
            (AggregateState::Values(into), AggregateState::Values(from)) => {
                for (row, count) in from {
                    *into.entry(row).or_default() += count;
                }
                Ok(())
            }
            _ => Err(datafusion::error::DataFusionError::Internal(
                "merging states of different aggregates".into(),
            )),
        }
    }

    /// The aggregate's current value.
    pub fn evaluate(
        &mut self,
        strategy: &AggregateStrategy,
        aggregate: &AggregateFunctionExpr,
    ) -> Result<ScalarValue> {
        match (self, strategy) {
            (AggregateState::Accumulator(accumulator), _) => accumulator.evaluate(),
            (AggregateState::Values(values), AggregateStrategy::Values(converter)) => {
                let mut fresh = aggregate.create_accumulator()?;
                let rows: Vec<_> = values
                    .iter()
                    .flat_map(|(row, count)| {
                        std::iter::repeat_n(row.row(), (*count).max(0) as usize)
                    })
                    .collect();
                if !rows.is_empty() {
                    let columns = converter.convert_rows(rows)?;
                    fresh.update_batch(&columns)?;
                }
                fresh.evaluate()
            }
            (AggregateState::Values(_), AggregateStrategy::Accumulator) => {
                Err(datafusion::error::DataFusionError::Internal(
                    "an aggregate's state and strategy disagree".into(),
                ))
            }
        }
    }
}
