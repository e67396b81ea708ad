//! What a running continuous query reports: its state and counters
//! ([`QueryMetrics`], shared by its tasks), and how a task's failure is
//! put into words.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use datafusion::error::{DataFusionError, Result};
use sluice_types::error::SluiceError;

/// The source task's error when the operator task is gone (not a cause).
pub(super) const OPERATORS_STOPPED: &str = "the query's operators stopped";

/// Where a query stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryState {
    /// Reading and applying.
    Running,
    /// `ALTER … PAUSE`d: its source is not read.
    Paused,
    /// Its source ended and everything was applied.
    Finished,
    /// An operator failed; `last_error` says why.
    Failed,
}

impl QueryState {
    /// The state's name in the status table.
    pub fn name(self) -> &'static str {
        match self {
            QueryState::Running => "running",
            QueryState::Paused => "paused",
            QueryState::Finished => "finished",
            QueryState::Failed => "failed",
        }
    }
}

/// A query's counters, as the status table shows them.
#[derive(Debug, Clone)]
pub struct QueryMetrics {
    /// Running, paused, finished or failed.
    pub state: QueryState,
    /// Rows read from the source.
    pub rows_in: u64,
    /// Row changes applied to the view.
    pub rows_out: u64,
    /// The last epoch applied.
    pub epoch: u64,
    /// The watermark that reached the view, in nanoseconds.
    pub watermark: Option<i64>,
    /// Rows dropped for arriving behind the watermark.
    pub late_rows: u64,
    /// Groups and windows held by operators.
    pub state_entries: u64,
    /// Source versions not yet read.
    pub lag: u64,
    /// Why the query failed.
    pub last_error: Option<String>,
    /// When the query started.
    pub started: Instant,
    /// The last checkpoint committed (`None`: none yet, or the query runs
    /// without checkpoints).
    pub checkpoint: Option<CheckpointMetrics>,
    /// Whether the query checkpoints at all.
    pub checkpointing: bool,
    /// 2 when a durable log after its model calls cuts it into two
    /// regions, else 1.
    pub regions: u64,
    /// Times the downstream region restarted from its checkpoint.
    pub region_restarts: u64,
    /// Time spent restoring the downstream region, all restarts together.
    pub recovery: Duration,
    /// The newest epoch in the region log.
    pub log_epoch: Option<u64>,
    /// Bytes the region log holds.
    pub log_bytes: u64,
    /// Time the upstream region waited for the downstream one to catch up.
    pub backpressured: Duration,
    /// Times the upstream region restarted on its own (the downstream one
    /// running on).
    pub upstream_restarts: u64,
}

/// The last committed checkpoint of a query, for the status table.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointMetrics {
    /// The epoch it was taken at.
    pub epoch: u64,
    /// Bytes of state written.
    pub bytes: u64,
    /// From the barrier reaching the operators to the commit.
    pub duration: Duration,
    /// When it committed.
    pub at: Instant,
}

/// The metrics, even after a task panicked holding them.
pub(super) fn lock(metrics: &Mutex<QueryMetrics>) -> MutexGuard<'_, QueryMetrics> {
    metrics.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a panic said, for the query's status.
pub(super) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match panic.downcast_ref::<String>() {
        Some(message) => format!("panic: {message}"),
        None => match panic.downcast_ref::<&str>() {
            Some(message) => format!("panic: {message}"),
            None => "panic".into(),
        },
    }
}

/// The error of a task that returned one or panicked.
pub(super) fn failure(outcome: std::thread::Result<Result<()>>) -> Option<String> {
    match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) => error_message(&e),
        Err(panic) => Some(panic_message(panic.as_ref())),
    }
}

/// What the status table shows of `e`; `None` for the error that only
/// follows another task's stop.
pub(super) fn error_message(e: &DataFusionError) -> Option<String> {
    if e.to_string().contains(OPERATORS_STOPPED) {
        return None;
    }
    Some(match SluiceError::find(e) {
        Some(error) => error.message.clone(),
        None => e.to_string(),
    })
}

/// Records `error` as the query's failure now, before what it releases
/// (a `FLUSH` waiting) lets the client go on: the next statement must see
/// the query failed.
pub(super) fn fail_before_release(metrics: &Mutex<QueryMetrics>, error: &DataFusionError) {
    if let Some(message) = error_message(error) {
        fail(metrics, message);
    }
}

/// Records `error` as the query's failure (the first one is kept).
pub(super) fn fail(metrics: &Mutex<QueryMetrics>, error: String) {
    log::warn!("continuous query failed: {error}");
    let mut metrics = lock(metrics);
    // The first failure is the cause; what fails after it follows from it.
    if metrics.state != QueryState::Failed {
        metrics.state = QueryState::Failed;
        metrics.last_error = Some(error);
    }
}
