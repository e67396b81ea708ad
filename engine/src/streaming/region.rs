//! The two regions of a query whose head calls a model, and how each
//! recovers on its own.
//!
//! - [`LogWriter`] ends the upstream region: it takes the head stages'
//!   output (the model's results) epoch by epoch and appends each epoch to
//!   the [`RegionLog`] with the sources' offsets after it. It waits for the
//!   downstream region only when that falls more than
//!   [`super::log::MAX_LAG_EPOCHS`] behind (backpressure), never while it
//!   recovers within that bound.
//! - [`UpstreamRegion`] runs the sources, their head stages and the
//!   [`LogWriter`]. When one of them fails (an error, or a panic caught at
//!   its task's boundary), it stops the others, plans the sources and head
//!   stages again, resumes the sources from the offsets in the log's newest
//!   segment and goes on from the epoch after it: the downstream region
//!   keeps running and never notices. Rows read after that segment go
//!   through the model again (their outputs were never logged).
//! - [`Downstream`] runs the operators and the sink over the log's
//!   segments. When an epoch fails (an error, or a panic caught here at the
//!   region's boundary), it restores its operators and sink from its last
//!   checkpoint and replays the log from the epoch after it: the upstream
//!   region keeps running meanwhile and the model never sees a row twice.
//!   A region that fails again and again without progress (a deterministic
//!   error) fails the query.

use std::sync::{Arc, Mutex};

use datafusion::error::{DataFusionError, Result};
use futures::FutureExt;
use futures::future::BoxFuture;
use tokio::sync::mpsc;

use super::checkpoint::store::is_fenced;
use super::log::{LogSegment, RegionLog};
use super::metrics::{QueryMetrics, lock, panic_message};
use super::operator_task::{Offsets, OperatorTask};
use super::parallel::{HeadStages, Staged};
use super::signal::{CheckpointBarrier, Epoch, Message, Signal};
use super::source::StreamSource;
use super::source_task::SourceShared;

/// Failures of one epoch in a row after which the region stops retrying.
const MAX_ATTEMPTS_PER_EPOCH: u32 = 3;

/// Failures of the upstream region in a row, without a log segment
/// written in between, after which it stops retrying.
const MAX_UPSTREAM_ATTEMPTS: u32 = 3;

/// An upstream region's sources (resumed after the log's newest segment)
/// and head stages, planned again.
pub struct Upstream {
    /// One per pipeline input.
    pub sources: Vec<Box<dyn StreamSource>>,
    /// Per input, the copies of its head stages.
    pub heads: Vec<Vec<HeadStages>>,
}

/// Plans an upstream region again, for its restart on its own.
pub type RebuildUpstream = Arc<dyn Fn() -> BoxFuture<'static, Result<Upstream>> + Send + Sync>;

/// The upstream region; see the module docs.
pub struct UpstreamRegion {
    shared: SourceShared,
    log: Arc<RegionLog>,
    rebuild: Option<RebuildUpstream>,
}

impl UpstreamRegion {
    /// The region reading into `log`, restarted with `rebuild` (without
    /// it, its first failure is the query's).
    pub(super) fn new(
        shared: SourceShared,
        log: Arc<RegionLog>,
        rebuild: Option<RebuildUpstream>,
    ) -> Self {
        Self {
            shared,
            log,
            rebuild,
        }
    }

    /// Runs `sources` through `heads` into the log from `epoch` on, and
    /// again after each failure, until the query is dropped.
    pub async fn run(
        self,
        sources: Vec<Box<dyn StreamSource>>,
        heads: Vec<Vec<HeadStages>>,
        epoch: Epoch,
    ) -> Result<()> {
        let mut upstream = Upstream { sources, heads };
        let mut epoch = epoch;
        let mut attempts = 0;
        let mut newest_at_failure = None;
        loop {
            let error = match self.run_once(upstream, epoch).await? {
                Some(error) => error,
                None => return Ok(()),
            };
            let Some(rebuild) = &self.rebuild else {
                return Err(error);
            };
            if is_fenced(&error) {
                return Err(error);
            }
            let newest = self.log.newest();
            attempts = if newest == newest_at_failure && attempts > 0 {
                attempts + 1
            } else {
                1
            };
            newest_at_failure = newest;
            if attempts >= MAX_UPSTREAM_ATTEMPTS {
                return Err(DataFusionError::Execution(format!(
                    "the upstream region failed {attempts} times without progress: {error}"
                )));
            }
            log::warn!("the upstream region failed ({error}); restarting it on its own");
            // A CHECKPOINT waiting for an epoch the failed run never closed
            // gets an error (and may be run again) rather than a wait.
            self.shared
                .checkpoint_waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            lock(&self.shared.metrics).upstream_restarts += 1;
            upstream = rebuild().await?;
            if let Some(newest) = newest {
                epoch = newest.next();
            }
        }
    }

    /// One run of the region's tasks: returns the first failure among
    /// them (`None`: they stopped because the query is going away).
    async fn run_once(&self, upstream: Upstream, epoch: Epoch) -> Result<Option<DataFusionError>> {
        let (source_task, dispatcher, receiver) =
            self.shared.start(upstream.sources, upstream.heads, epoch)?;
        let writer = LogWriter::new(
            receiver,
            Arc::clone(&self.log),
            Arc::clone(&self.shared.offsets),
            Arc::clone(&self.shared.metrics),
        );
        // A set, not loose handles: when the query stops (its tasks are
        // aborted, and this future with them), dropping the set aborts
        // these three too. Loose, they ran on detached, and the writer
        // appended log segments beside the instance that replaced it (a
        // rescale failed with "log segment 19 was written by another
        // instance", and the ALTER waiting on it never returned).
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(caught(source_task.run()));
        tasks.spawn(caught(dispatcher.run()));
        tasks.spawn(caught(writer.run()));
        let finished = tasks.join_next().await;
        tasks.abort_all();
        // The others must be gone before a new run takes the commands.
        while tasks.join_next().await.is_some() {}
        Ok(match finished {
            None | Some(Ok(Ok(()))) => None,
            Some(Ok(Err(error))) => Some(error),
            Some(Err(join)) => Some(DataFusionError::Execution(join.to_string())),
        })
    }
}

/// `task`'s outcome, a panic turned into an error.
async fn caught(task: impl std::future::Future<Output = Result<()>>) -> Result<()> {
    match std::panic::AssertUnwindSafe(task).catch_unwind().await {
        Ok(outcome) => outcome,
        Err(panic) => Err(DataFusionError::Execution(panic_message(panic.as_ref()))),
    }
}

/// The end of the upstream region; see the module docs.
pub struct LogWriter {
    receiver: mpsc::Receiver<Staged>,
    log: Arc<RegionLog>,
    offsets: Offsets,
    metrics: Arc<Mutex<QueryMetrics>>,
    /// The current epoch's messages.
    messages: Vec<Message>,
}

impl LogWriter {
    /// Writes what `receiver` brings to `log`.
    pub(super) fn new(
        receiver: mpsc::Receiver<Staged>,
        log: Arc<RegionLog>,
        offsets: Offsets,
        metrics: Arc<Mutex<QueryMetrics>>,
    ) -> Self {
        Self {
            receiver,
            log,
            offsets,
            metrics,
            messages: Vec::new(),
        }
    }

    /// Runs until the source task stops.
    pub async fn run(mut self) -> Result<()> {
        while let Some(staged) = self.receiver.recv().await {
            for message in staged.resolve().await? {
                match message {
                    Message::Signal(_, Signal::Barrier(barrier)) => self.append(barrier).await?,
                    other => self.messages.push(other),
                }
            }
        }
        Ok(())
    }

    async fn append(&mut self, barrier: CheckpointBarrier) -> Result<()> {
        fail::fail_point!("region-log-append", |_| Err(crate::failpoints::injected(
            "region-log-append"
        )));
        let offsets = self
            .offsets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&barrier.epoch)
            .unwrap_or_default();
        // Backpressure: a downstream region far behind slows the sources.
        let waited = self.log.wait_for_room(barrier.epoch).await;
        let segment = LogSegment {
            epoch: barrier.epoch,
            checkpoint: barrier.checkpoint,
            offsets,
            messages: std::mem::take(&mut self.messages),
        };
        self.log.append(segment).await?;
        let mut metrics = lock(&self.metrics);
        metrics.log_epoch = Some(barrier.epoch.0);
        metrics.log_bytes = self.log.size();
        metrics.backpressured += waited;
        Ok(())
    }
}

/// The downstream region; see the module docs.
pub struct Downstream {
    operators: OperatorTask,
    next: Epoch,
}

impl Downstream {
    /// Runs `operators` over the log from epoch `next` on.
    pub(super) fn new(operators: OperatorTask, next: Epoch) -> Self {
        Self { operators, next }
    }

    fn log(&self) -> Result<Arc<RegionLog>> {
        self.operators
            .log
            .clone()
            .ok_or_else(|| DataFusionError::Internal("a downstream region without a log".into()))
    }

    /// Runs until the query is dropped (after the end of data it still
    /// applies the epochs `FLUSH` and `CHECKPOINT` close).
    pub async fn run(mut self) -> Result<()> {
        let log = self.log()?;
        if let Some(applied) = self.next.0.checked_sub(1) {
            log.mark_applied(Epoch(applied));
        }
        let mut announced = log.watch();
        let mut attempts = 0;
        loop {
            while log.newest().is_none_or(|newest| newest < self.next) {
                if announced.changed().await.is_err() {
                    return Ok(());
                }
            }
            let outcome = std::panic::AssertUnwindSafe(self.apply(self.next))
                .catch_unwind()
                .await;
            let error = match outcome {
                Ok(Ok(())) => {
                    attempts = 0;
                    log.mark_applied(self.next);
                    self.next = self.next.next();
                    // A backlog of segments, all in memory, never makes
                    // this task wait: yield once per epoch, or the upstream
                    // region it just woke (queued behind it on this
                    // worker) would not run until the backlog is gone.
                    tokio::task::yield_now().await;
                    continue;
                }
                // A later instance has taken over: this one must stop.
                Ok(Err(e)) if is_fenced(&e) => return Err(e),
                Ok(Err(e)) => e.to_string(),
                Err(panic) => panic_message(panic.as_ref()),
            };
            attempts += 1;
            if attempts >= MAX_ATTEMPTS_PER_EPOCH {
                return Err(DataFusionError::Execution(format!(
                    "epoch {} failed {attempts} times: {error}",
                    self.next
                )));
            }
            log::warn!(
                "epoch {} of a downstream region failed ({error}); restoring its checkpoint",
                self.next
            );
            let began = std::time::Instant::now();
            self.next = self.restore().await?;
            let mut metrics = lock(&self.operators.metrics);
            metrics.region_restarts += 1;
            metrics.recovery += began.elapsed();
        }
    }

    /// Applies the log's epoch `epoch`.
    async fn apply(&mut self, epoch: Epoch) -> Result<()> {
        let segment = self.log()?.read(epoch).await?;
        for message in segment.messages.iter().cloned() {
            self.operators.handle(message).await?;
        }
        self.operators
            .finish_epoch(CheckpointBarrier {
                epoch,
                checkpoint: segment.checkpoint,
            })
            .await
    }

    /// Puts the operators and the sink back as the last checkpoint has
    /// them; returns the first log epoch to replay.
    async fn restore(&mut self) -> Result<Epoch> {
        // A checkpoint still being written truncates the log behind it:
        // let it land (or fail) before choosing the checkpoint to restore.
        if let Err(e) = self.operators.settle_checkpoint().await {
            log::warn!("the checkpoint being written failed: {e}");
        }
        let store = self.operators.store.clone().ok_or_else(|| {
            DataFusionError::Internal("a downstream region without checkpoints".into())
        })?;
        let manifest = store.latest().await?.ok_or_else(|| {
            DataFusionError::Execution("a downstream region has no checkpoint to restore".into())
        })?;
        let content = store.load(&manifest).await?;
        self.operators.pending.clear();
        // The end of data, if the failed epoch held it, comes again.
        self.operators.ended = false;
        let sink = Arc::clone(&self.operators.sink);
        self.operators
            .pipeline
            .restore_with_sink(sink.as_ref(), content.operators, content.sink)
            .await?;
        Ok(Epoch(manifest.consumed_log.unwrap_or(manifest.epoch) + 1))
    }
}
