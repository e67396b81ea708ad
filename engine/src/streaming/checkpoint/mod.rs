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
//!
//! Large state is checkpointed incrementally: a part may hold only the
//! changes since the part of the previous committed checkpoint
//! ([`StateSnapshot::delta`]); the store then writes just those, and the
//! manifest references the earlier files it builds on, which garbage
//! collection keeps. A restore reads the base and its deltas in order.

pub mod cadence;
pub mod codec;
pub mod counted;
pub mod store;

use datafusion::arrow::array::RecordBatch;

pub use cadence::DeltaCadence;
pub use counted::{counted_changes, counted_schema};
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

/// The meta key of a snapshot holding only changes (see
/// [`StateSnapshot::delta`]).
const DELTA_SINCE: &str = "__sluice_delta_since";

impl StateSnapshot {
    /// A snapshot holding only the changes since the one the checkpoint of
    /// epoch `since` committed for the same part: its rows are applied on
    /// top of that one's when restoring (the owner decides how — a view
    /// adds row counts).
    pub fn delta(batches: Vec<RecordBatch>, mut meta: serde_json::Value, since: u64) -> Self {
        if !meta.is_object() {
            meta = serde_json::json!({});
        }
        meta[DELTA_SINCE] = serde_json::json!(since);
        Self { batches, meta }
    }

    /// The epoch of the checkpoint this snapshot's changes build on, when
    /// it holds changes only.
    pub fn delta_since(&self) -> Option<u64> {
        self.meta
            .get(DELTA_SINCE)
            .and_then(serde_json::Value::as_u64)
    }
}
