//! [`StreamOperator`]: the one trait every step of a continuous query
//! implements. Only [`StreamOperator::process_change`] is required; the
//! signals have defaults that suit stateless operators (pass the watermark
//! on, nothing to do at a barrier).

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::Result;

use super::checkpoint::StateSnapshot;
use super::signal::{Change, CheckpointBarrier, Watermark};

/// Counters an operator reports to the query's status.
#[derive(Debug, Default, Clone, Copy)]
pub struct OperatorMetrics {
    /// Rows dropped because they arrived behind the watermark.
    pub late_rows: u64,
    /// Groups or windows held in state.
    pub state_entries: u64,
}

impl OperatorMetrics {
    /// Both operators' counters added up.
    pub fn plus(self, other: OperatorMetrics) -> OperatorMetrics {
        OperatorMetrics {
            late_rows: self.late_rows + other.late_rows,
            state_entries: self.state_entries + other.state_entries,
        }
    }
}

/// One step of a continuous query: rows in, rows out, signals handled in
/// order with them.
#[async_trait]
pub trait StreamOperator: Send {
    /// A short name for status and errors (`aggregate`, `window`, …).
    fn name(&self) -> &str;

    /// What it does, for `EXPLAIN` (its name unless it says more).
    fn describe(&self) -> String {
        self.name().to_owned()
    }

    /// The schema of the rows this operator emits.
    fn output_schema(&self) -> SchemaRef;

    /// Handles one change; what it emits is appended to `out`.
    async fn process_change(&mut self, change: Change, out: &mut Vec<Change>) -> Result<()>;

    /// Event time has reached `watermark`: emit what it completes. Returns
    /// the watermark to pass downstream.
    async fn handle_watermark(
        &mut self,
        watermark: Watermark,
        _out: &mut Vec<Change>,
    ) -> Result<Watermark> {
        Ok(watermark)
    }

    /// Every change of `barrier`'s epoch has been handled: emit what the
    /// epoch changed (an updating aggregate emits its new rows here).
    async fn handle_checkpoint(
        &mut self,
        _barrier: CheckpointBarrier,
        _out: &mut Vec<Change>,
    ) -> Result<()> {
        Ok(())
    }

    /// Counters for the query's status.
    fn metrics(&self) -> OperatorMetrics {
        OperatorMetrics::default()
    }

    /// Whether [`Self::snapshot`] captures all the operator keeps; a query
    /// with an operator that cannot runs without checkpoints (and starts
    /// over after a restart).
    fn checkpointable(&self) -> bool {
        true
    }

    /// Whether it keeps no state at all (projections, filters, function
    /// calls): where such a stage runs at the head of an input moves with
    /// the parallelism, so checkpoints leave it out.
    fn is_stateless(&self) -> bool {
        false
    }

    /// The operator's state after a barrier was handled, for a checkpoint;
    /// `None` for an operator that keeps none.
    fn snapshot(&mut self) -> Result<Option<StateSnapshot>> {
        Ok(None)
    }

    /// Replaces the operator's state with one [`Self::snapshot`] took (of
    /// the same operator of the same plan).
    fn restore(&mut self, _snapshot: StateSnapshot) -> Result<()> {
        Err(datafusion::error::DataFusionError::Internal(format!(
            "operator {} keeps no state to restore",
            self.name()
        )))
    }
}
