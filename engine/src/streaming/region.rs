//! The two regions of a query whose head calls a model, and how each
//! recovers on its own.
//!
//! - [`LogWriter`] ends the upstream region: it takes the head stages'
//!   output (the model's results) epoch by epoch and appends each epoch to
//!   the [`RegionLog`] with the sources' offsets after it. It waits for the
//!   downstream region only when that falls more than
//!   [`super::log::MAX_LAG_EPOCHS`] behind (backpressure), never while it
//!   recovers within that bound.
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
use tokio::sync::mpsc;

use super::checkpoint::store::is_fenced;
use super::log::{LogSegment, RegionLog};
use super::metrics::{QueryMetrics, lock, panic_message};
use super::operator_task::{Offsets, OperatorTask};
use super::parallel::Staged;
use super::signal::{CheckpointBarrier, Epoch, Message, Signal};

/// Failures of one epoch in a row after which the region stops retrying.
const MAX_ATTEMPTS_PER_EPOCH: u32 = 3;

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
