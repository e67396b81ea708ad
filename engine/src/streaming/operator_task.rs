//! [`OperatorTask`]: a query's operators and sink (its downstream region's
//! when it has two). It hands each change and signal to the [`Pipeline`],
//! applies each finished epoch to the sink atomically, and takes the
//! checkpoints its barriers ask for.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use datafusion::error::{DataFusionError, Result};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::checkpoint::{CheckpointContent, CheckpointStore};
use super::log::RegionLog;
use super::metrics::{CheckpointMetrics, QueryMetrics, QueryState, lock};
use super::parallel::Staged;
use super::pipeline::Pipeline;
use super::signal::{Change, CheckpointBarrier, Epoch, Message, Signal};
use super::sink::EpochSink;

/// Flushes waiting for an epoch to be applied.
pub(super) type Waiters = Arc<Mutex<Vec<(Epoch, oneshot::Sender<()>)>>>;

/// A `CHECKPOINT` waiting for its checkpoint: the epoch or why it failed.
pub(super) type CheckpointWaiter = oneshot::Sender<std::result::Result<u64, String>>;

/// `CHECKPOINT`s waiting, by the epoch of their checkpoint.
pub(super) type CheckpointWaiters = Arc<Mutex<Vec<(Epoch, CheckpointWaiter)>>>;

/// The sources' offsets recorded at each checkpoint barrier, until the
/// operators take the checkpoint.
pub(super) type Offsets = Arc<Mutex<std::collections::BTreeMap<Epoch, Vec<serde_json::Value>>>>;

/// The operators and the sink of a query (of its downstream region when
/// it has two): applies changes and finishes epochs.
pub(super) struct OperatorTask {
    pub(super) pipeline: Pipeline,
    pub(super) sink: Arc<dyn EpochSink>,
    pub(super) waiters: Waiters,
    pub(super) metrics: Arc<Mutex<QueryMetrics>>,
    /// The current epoch's output, handed to the sink at its barrier.
    pub(super) pending: Vec<Change>,
    /// Where checkpoints go (`None`: the query runs without).
    pub(super) store: Option<CheckpointStore>,
    /// Whether its input is a region log (its checkpoints record the
    /// epoch consumed, and the log is truncated behind them).
    pub(super) log: Option<Arc<RegionLog>>,
    /// Whether the sources' end has arrived.
    pub(super) ended: bool,
    /// The checkpoint being written.
    pub(super) uploading: Option<JoinHandle<Result<()>>>,
    pub(super) offsets: Offsets,
    pub(super) checkpoint_waiters: CheckpointWaiters,
}

impl Drop for OperatorTask {
    fn drop(&mut self) {
        // A dropped query writes no more checkpoints (DROP deletes them).
        if let Some(upload) = &self.uploading {
            upload.abort();
        }
    }
}

impl OperatorTask {
    /// Runs until `receiver` closes (a query of one region).
    pub(super) async fn run(mut self, mut receiver: mpsc::Receiver<Staged>) -> Result<()> {
        while let Some(staged) = receiver.recv().await {
            for message in staged.resolve().await? {
                self.handle(message).await?;
            }
        }
        Ok(())
    }

    /// Hands one change or signal to the pipeline (a barrier finishes the
    /// epoch).
    pub(super) async fn handle(&mut self, message: Message) -> Result<()> {
        match message {
            Message::Data(input, change) => {
                let out = self.pipeline.process_change(input, change).await?;
                self.pending.extend(out);
            }
            Message::Signal(input, Signal::Watermark(watermark)) => {
                let (out, passed) = self.pipeline.handle_watermark(input, watermark).await?;
                self.pending.extend(out);
                if let Some(watermark) = passed {
                    lock(&self.metrics).watermark = Some(watermark.0);
                }
            }
            Message::Signal(_, Signal::Barrier(barrier)) => self.finish_epoch(barrier).await?,
            // Finished once the epoch holding the end is applied.
            Message::Signal(_, Signal::EndOfData) => self.ended = true,
        }
        Ok(())
    }

    pub(super) async fn finish_epoch(&mut self, barrier: CheckpointBarrier) -> Result<()> {
        let out = self.pipeline.handle_checkpoint(barrier).await?;
        self.pending.extend(out);
        let changes = std::mem::take(&mut self.pending);
        fail::fail_point!("sink-apply", |_| Err(crate::failpoints::injected(
            "sink-apply"
        )));
        let applied = self.sink.apply_epoch(barrier.epoch, &changes).await?;
        {
            let mut metrics = lock(&self.metrics);
            metrics.rows_out += applied;
            metrics.epoch = barrier.epoch.0;
            let operators = self.pipeline.metrics();
            metrics.late_rows = operators.late_rows;
            metrics.state_entries = operators.state_entries;
        }
        if barrier.checkpoint {
            self.take_checkpoint(barrier.epoch).await?;
        }
        if self.ended {
            lock(&self.metrics).state = QueryState::Finished;
        }
        let mut waiters = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut *waiters)
            .into_iter()
            .partition(|(epoch, _)| *epoch <= barrier.epoch);
        *waiters = waiting;
        for (_, waiter) in done {
            let _ = waiter.send(());
        }
        Ok(())
    }

    /// Snapshots the operators, the sink and the sources' offsets at
    /// `epoch` and commits them; answers the `CHECKPOINT`s waiting for it.
    /// A failed checkpoint fails the query: a fenced instance must stop, and
    /// one that cannot write its checkpoints should say so, not run on.
    async fn take_checkpoint(&mut self, epoch: Epoch) -> Result<()> {
        let Some(store) = self.store.clone() else {
            return Ok(());
        };
        // One checkpoint is written at a time; a failed one fails the
        // query here.
        self.settle_checkpoint().await?;
        let began = Instant::now();
        let sources = self
            .offsets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&epoch)
            .unwrap_or_default();
        // The state is captured now, at the barrier; encoding and writing
        // it happen while the next epochs run.
        let content = CheckpointContent {
            operators: self.pipeline.snapshot()?,
            sink: self.sink.snapshot()?,
            sources,
            consumed_log: self.log.as_ref().map(|_| epoch.0),
        };
        let log = self.log.clone();
        let sink = Arc::clone(&self.sink);
        let metrics = Arc::clone(&self.metrics);
        let waiters = Arc::clone(&self.checkpoint_waiters);
        self.uploading = Some(tokio::spawn(async move {
            let outcome = async {
                let manifest = store.commit(epoch, &content).await?;
                sink.checkpoint_committed(epoch).await?;
                if let Some(log) = &log {
                    log.truncate_through(epoch).await?;
                }
                Ok::<_, DataFusionError>(manifest)
            }
            .await;
            let answer = match &outcome {
                Ok(manifest) => {
                    lock(&metrics).checkpoint = Some(CheckpointMetrics {
                        epoch: epoch.0,
                        bytes: manifest.bytes,
                        duration: began.elapsed(),
                        at: Instant::now(),
                    });
                    Ok(epoch.0)
                }
                Err(e) => Err(e.to_string()),
            };
            let mut waiters = waiters.lock().unwrap_or_else(|e| e.into_inner());
            let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut *waiters)
                .into_iter()
                .partition(|(waited, _)| *waited <= epoch);
            *waiters = waiting;
            for (_, waiter) in done {
                let _ = waiter.send(answer.clone());
            }
            outcome.map(|_| ())
        }));
        Ok(())
    }

    /// Waits for the checkpoint being written, if any; its error.
    pub(super) async fn settle_checkpoint(&mut self) -> Result<()> {
        match self.uploading.take() {
            Some(upload) => upload.await.map_err(|e| {
                DataFusionError::Execution(format!("writing a checkpoint stopped: {e}"))
            })?,
            None => Ok(()),
        }
    }
}
