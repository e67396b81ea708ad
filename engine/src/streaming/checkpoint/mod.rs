//! Checkpoints of continuous queries: what a query's operators, sink and
//! sources hold at an epoch's barrier, written to the data directory's
//! object store so that the query resumes there after a crash instead of
//! from the start.
//!
//! - [`StateSnapshot`]: one operator's (or sink's) state as Arrow batches
//!   plus a little JSON; [`codec`] writes the batches as Arrow IPC files.
//! - [`store`]: the layout under `checkpoints/<query>/<region>/`, the commit
//!   protocol (immutable parts, a manifest created once per epoch through
//!   the table commit protocol's create-if-absent put) and the generation
//!   fence that keeps an earlier instance from committing.
//!
//! The runner takes a checkpoint at a barrier marked for one (every
//! `checkpoint_interval_ms`, or at once for `CHECKPOINT`): the source task
//! records its sources' offsets as it sends the barrier, the operator task
//! snapshots every operator and the sink once the epoch is applied.

pub mod codec;
pub mod store;

use datafusion::arrow::array::RecordBatch;

pub use store::{CheckpointContent, CheckpointManifest, CheckpointStore};

/// One operator's or sink's state at a barrier: its rows of state as Arrow
/// batches (group keys and accumulator states, a view's rows) and the few
/// scalars beside them (a watermark, counters) as JSON.
#[derive(Debug, Clone, Default)]
pub struct StateSnapshot {
    /// The state's rows; all batches share one schema.
    pub batches: Vec<RecordBatch>,
    /// Scalars of the state.
    pub meta: serde_json::Value,
}
