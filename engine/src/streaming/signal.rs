//! The streaming vocabulary, defined once: what travels between a
//! continuous query's operators.
//!
//! Data moves as [`Change`]s (a batch of rows inserted or deleted); the
//! [`Signal`]s travel in the same channels, in order with the data:
//! [`CheckpointBarrier`]s close an [`Epoch`] (every change before the
//! barrier belongs to it, and a view applies an epoch atomically), and
//! [`Watermark`]s promise that no row with an earlier event time follows.

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::compute::{cast, concat_batches};
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::error::{DataFusionError, Result};

/// A numbered span of a continuous query's changes, closed by a barrier.
/// Epochs are what a view applies atomically, what SUBSCRIBE reports and
/// what a checkpoint is taken at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Epoch(pub u64);

impl Epoch {
    /// The epoch after this one.
    pub fn next(self) -> Epoch {
        Epoch(self.0 + 1)
    }
}

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Event time below which no more rows will come, in nanoseconds since the
/// Unix epoch (every timestamp unit is converted to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Watermark(pub i64);

impl Watermark {
    /// The watermark of a source that has ended: every window may close.
    pub const END: Watermark = Watermark(i64::MAX);
}

/// A timestamp column (any unit) as event time in nanoseconds, the unit
/// of [`Watermark`]; one cast per batch.
pub fn event_time_nanos(column: &ArrayRef) -> Result<Int64Array> {
    let nanos = cast(column, &DataType::Timestamp(TimeUnit::Nanosecond, None))
        .and_then(|c| cast(&c, &DataType::Int64))?;
    nanos
        .as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .ok_or_else(|| DataFusionError::Internal("event time did not cast to Int64".into()))
}

/// Closes an epoch. Aligned: an operator handles it once every change of
/// the epoch has passed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointBarrier {
    /// The epoch this barrier closes.
    pub epoch: Epoch,
    /// Whether a checkpoint is taken at it (every barrier closes an epoch;
    /// only some, every `checkpoint_interval_ms`, are checkpointed).
    pub checkpoint: bool,
}

/// Whether a change inserts or deletes its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOp {
    /// The rows are added.
    Insert,
    /// The rows are retracted (an update is a delete and an insert).
    Delete,
}

impl ChangeOp {
    /// The name SUBSCRIBE and updating sinks report (`op` column).
    pub fn name(self) -> &'static str {
        match self {
            ChangeOp::Insert => "insert",
            ChangeOp::Delete => "delete",
        }
    }
}

/// Rows inserted or deleted, all of one kind.
#[derive(Debug, Clone)]
pub struct Change {
    /// Insert or delete.
    pub op: ChangeOp,
    /// The rows.
    pub batch: RecordBatch,
}

impl Change {
    /// Inserted rows.
    pub fn insert(batch: RecordBatch) -> Self {
        Self {
            op: ChangeOp::Insert,
            batch,
        }
    }

    /// Deleted rows.
    pub fn delete(batch: RecordBatch) -> Self {
        Self {
            op: ChangeOp::Delete,
            batch,
        }
    }
}

/// Rows a coalesced change holds at most: large enough for a model's
/// batches, small enough to keep a barrier close behind.
pub const COALESCE_ROWS: usize = 8192;

/// Merges runs of consecutive changes of the same kind into one batch each
/// (up to [`COALESCE_ROWS`] rows): many small commits read together reach
/// the operators, and the models in them, as one batch.
pub fn coalesce_changes(changes: Vec<Change>) -> Result<Vec<Change>> {
    let mut out: Vec<Change> = Vec::with_capacity(changes.len());
    let mut run: Vec<RecordBatch> = Vec::new();
    let mut run_op = ChangeOp::Insert;
    let mut run_rows = 0usize;
    let finish = |run: &mut Vec<RecordBatch>, op: ChangeOp, out: &mut Vec<Change>| -> Result<()> {
        match run.len() {
            0 => {}
            1 => out.extend(run.pop().map(|batch| Change { op, batch })),
            _ => {
                let batch = concat_batches(&run[0].schema(), run.iter())?;
                run.clear();
                out.push(Change { op, batch });
            }
        }
        Ok(())
    };
    for change in changes {
        let rows = change.batch.num_rows();
        let fits = run_rows + rows <= COALESCE_ROWS
            && run
                .first()
                .is_none_or(|first| first.schema() == change.batch.schema());
        if run.is_empty() || change.op != run_op || !fits {
            finish(&mut run, run_op, &mut out)?;
            run_op = change.op;
            run_rows = 0;
        }
        run_rows += rows;
        run.push(change.batch);
    }
    finish(&mut run, run_op, &mut out)?;
    Ok(out)
}

/// A control message travelling with the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// Closes an epoch.
    Barrier(CheckpointBarrier),
    /// Event time has advanced.
    Watermark(Watermark),
    /// The source has no more data (a bounded generator, a dropped table).
    EndOfData,
}

/// Which of a query's sources a message comes from: 0 for a query over one
/// table, 0 (left) or 1 (right) for a join's inputs.
pub type InputIndex = usize;

/// What flows through a continuous query's channels.
#[derive(Debug, Clone)]
pub enum Message {
    /// Rows from one input.
    Data(InputIndex, Change),
    /// A signal, in order with the rows. A watermark is its input's own;
    /// barriers and the end of data concern every input.
    Signal(InputIndex, Signal),
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;

    use super::*;

    fn rows(values: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter([("v", Arc::new(Int64Array::from(values.to_vec())) as ArrayRef)])
            .unwrap()
    }

    #[test]
    fn consecutive_changes_of_a_kind_merge_in_order() {
        let changes = vec![
            Change::insert(rows(&[1])),
            Change::insert(rows(&[2, 3])),
            Change::delete(rows(&[1])),
            Change::insert(rows(&[4])),
            Change::insert(rows(&[5])),
        ];
        let merged = coalesce_changes(changes).unwrap();
        let shape: Vec<(ChangeOp, usize)> =
            merged.iter().map(|c| (c.op, c.batch.num_rows())).collect();
        assert_eq!(
            shape,
            vec![
                (ChangeOp::Insert, 3),
                (ChangeOp::Delete, 1),
                (ChangeOp::Insert, 2)
            ]
        );
        assert_eq!(
            merged[0].batch.column(0).as_ref(),
            rows(&[1, 2, 3]).column(0).as_ref()
        );
    }

    #[test]
    fn a_merged_change_stays_within_its_bound() {
        let big = rows(&vec![0; COALESCE_ROWS - 1]);
        let merged =
            coalesce_changes(vec![Change::insert(big), Change::insert(rows(&[1, 2]))]).unwrap();
        assert_eq!(merged.len(), 2);
    }
}
