//! The streaming vocabulary, defined once: what travels between a
//! continuous query's operators.
//!
//! Data moves as [`Change`]s (a batch of rows inserted or deleted); the
//! [`Signal`]s travel in the same channels, in order with the data:
//! [`CheckpointBarrier`]s close an [`Epoch`] (every change before the
//! barrier belongs to it, and a view applies an epoch atomically), and
//! [`Watermark`]s promise that no row with an earlier event time follows.

use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch};
use datafusion::arrow::compute::cast;
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
