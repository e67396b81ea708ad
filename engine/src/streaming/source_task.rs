//! The source task of a continuous query: it owns the query's sources
//! (one per pipeline input) and the epoch counter. It reads rows from
//! whichever source has some, passes each source's watermark on when it
//! advances, and closes an epoch with a barrier every `barrier_interval`,
//! or at once for `FLUSH` after reading everything committed so far. One
//! task reading every source is what keeps the barriers aligned across a
//! join's inputs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::error::{DataFusionError, Result};
use tokio::sync::{mpsc, oneshot};

use super::metrics::{OPERATORS_STOPPED, QueryMetrics, QueryState, fail_before_release, lock};
use super::operator_task::{CheckpointWaiter, CheckpointWaiters, Offsets, Waiters};
use super::parallel::{Dispatcher, HeadStages, Staged};
use super::signal::{
    CheckpointBarrier, Epoch, InputIndex, Message, Signal, Watermark, coalesce_changes,
};
use super::source::StreamSource;

/// Messages in flight between the source and the operators.
const CHANNEL_CAPACITY: usize = 16;

/// Commands a session sends a running query.
pub(super) enum Control {
    /// Read everything committed, close the epoch, answer once applied.
    Flush(oneshot::Sender<()>),
    /// Close the epoch with a checkpoint, answer once it is durable.
    Checkpoint(CheckpointWaiter),
    Pause,
    Resume,
}

/// What a query's source task shares with the rest of the query and
/// keeps across restarts of its upstream region: the sessions' commands,
/// the waiters for epochs, the counters, the offsets each barrier records.
#[derive(Clone)]
pub(super) struct SourceShared {
    /// Commands from sessions. Each source task holds the lock while it
    /// runs; a task that fails or is aborted lets go of it for the next.
    pub commands: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Control>>>,
    pub waiters: Waiters,
    pub metrics: Arc<Mutex<QueryMetrics>>,
    pub barrier_interval: Duration,
    /// Whether the query checkpoints.
    pub checkpointing: bool,
    pub checkpoint_interval: Option<Duration>,
    pub offsets: Offsets,
    pub checkpoint_waiters: CheckpointWaiters,
    /// Whether every barrier records the offsets (for the region log).
    pub offsets_every_barrier: bool,
}

impl SourceShared {
    /// The source task over `sources`, closing epochs from `epoch` on; its
    /// messages go through a dispatcher running `heads` (see
    /// [`Dispatcher::new`]), whose output arrives at the receiver returned.
    pub fn start(
        &self,
        sources: Vec<Box<dyn StreamSource>>,
        heads: Vec<Vec<HeadStages>>,
        epoch: Epoch,
    ) -> Result<(SourceTask, Dispatcher, mpsc::Receiver<Staged>)> {
        let (sender, received) = mpsc::channel(CHANNEL_CAPACITY);
        // Up to this many batches go through the head stages at once.
        let in_flight = heads.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let (staged, receiver) = mpsc::channel(in_flight);
        let dispatcher = Dispatcher::new(received, staged, heads)?;
        let paused = lock(&self.metrics).state == QueryState::Paused;
        let task = SourceTask {
            watermarks: vec![None; sources.len()],
            ended: vec![false; sources.len()],
            sources,
            sender,
            shared: self.clone(),
            epoch,
            paused,
            next_input: 0,
            last_checkpoint: Instant::now(),
        };
        Ok((task, dispatcher, receiver))
    }
}

/// Reads a query's sources and closes its epochs; see [`super::runner`].
pub(super) struct SourceTask {
    sources: Vec<Box<dyn StreamSource>>,
    sender: mpsc::Sender<Message>,
    shared: SourceShared,
    epoch: Epoch,
    /// Per source, the watermark last passed on.
    watermarks: Vec<Option<Watermark>>,
    paused: bool,
    /// Per source, whether it has ended.
    ended: Vec<bool>,
    last_checkpoint: Instant,
    /// The source waited on first next time, so that a source that always
    /// has rows cannot starve the other input of a join.
    next_input: InputIndex,
}

impl SourceTask {
    /// Runs until the query is dropped (or fails).
    pub async fn run(mut self) -> Result<()> {
        let commands = Arc::clone(&self.shared.commands);
        let mut commands = commands.lock().await;
        let mut timer = tokio::time::interval(self.shared.barrier_interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let reading = !self.paused && self.ended.iter().any(|ended| !ended);
            tokio::select! {
                biased;
                command = commands.recv() => match command {
                    Some(Control::Flush(done)) => {
                        if !self.paused
                            && let Err(error) = self.catch_up().await
                        {
                            // `done` drops on return, which ends the FLUSH.
                            fail_before_release(&self.shared.metrics, &error);
                            return Err(error);
                        }
                        self.barrier(Some(done)).await?;
                    }
                    Some(Control::Checkpoint(done)) => self.checkpoint_barrier(done).await?,
                    Some(Control::Pause) => self.paused = true,
                    Some(Control::Resume) => self.paused = false,
                    // The query was dropped.
                    None => return Ok(()),
                },
                _ = timer.tick(), if !self.ended.iter().all(|ended| *ended) => {
                    self.barrier(None).await?
                }
                (input, ready) = wait_any(&mut self.sources, &self.ended, self.next_input), if reading => {
                    self.next_input = (input + 1) % self.sources.len();
                    if ready? {
                        self.read_once(input).await?;
                    } else {
                        self.end(input).await?;
                    }
                }
            }
        }
    }

    /// For `FLUSH`: reads everything the sources that catch up have, and
    /// ends the ones with nothing more ever.
    async fn catch_up(&mut self) -> Result<()> {
        for input in 0..self.sources.len() {
            if !self.ended[input] && self.sources[input].catches_up() {
                while self.read_once(input).await? > 0 {}
                if self.sources[input].exhausted() {
                    self.end(input).await?;
                }
            }
        }
        Ok(())
    }

    /// Reads and sends one portion of what source `input` has.
    async fn read_once(&mut self, input: InputIndex) -> Result<usize> {
        let source = &mut self.sources[input];
        // One read's changes (several commits of a table) go on as one
        // batch per kind; the dispatcher merges further what queues up
        // behind busy stages.
        let changes = coalesce_changes(source.read().await?)?;
        let watermark = source.watermark();
        let count = changes.len();
        let rows: usize = changes.iter().map(|c| c.batch.num_rows()).sum();
        for change in changes {
            self.send(Message::Data(input, change)).await?;
        }
        if let Some(watermark) = watermark
            && self.watermarks[input].is_none_or(|w| watermark > w)
        {
            self.watermarks[input] = Some(watermark);
            self.send(Message::Signal(input, Signal::Watermark(watermark)))
                .await?;
        }
        let mut metrics = lock(&self.shared.metrics);
        metrics.rows_in += rows as u64;
        metrics.lag = self.sources.iter().map(|s| s.lag()).sum();
        Ok(count)
    }

    /// Source `input` has ended; once every source has, so has the query.
    async fn end(&mut self, input: InputIndex) -> Result<()> {
        self.ended[input] = true;
        self.send(Message::Signal(input, Signal::Watermark(Watermark::END)))
            .await?;
        if self.ended.iter().all(|ended| *ended) {
            // The end travels in the last epoch, which is then closed (no
            // timer barriers follow: nothing more can arrive).
            self.send(Message::Signal(input, Signal::EndOfData)).await?;
            self.barrier(None).await?;
        }
        Ok(())
    }

    /// A barrier with a checkpoint, for `CHECKPOINT`.
    async fn checkpoint_barrier(&mut self, done: CheckpointWaiter) -> Result<()> {
        self.shared
            .checkpoint_waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((self.epoch, done));
        self.barrier_marked(None, true).await
    }

    async fn barrier(&mut self, waiter: Option<oneshot::Sender<()>>) -> Result<()> {
        let due = self
            .shared
            .checkpoint_interval
            .is_some_and(|interval| self.last_checkpoint.elapsed() >= interval);
        self.barrier_marked(waiter, due).await
    }

    async fn barrier_marked(
        &mut self,
        waiter: Option<oneshot::Sender<()>>,
        checkpoint: bool,
    ) -> Result<()> {
        let epoch = self.epoch;
        self.epoch = epoch.next();
        let checkpoint = checkpoint && self.shared.checkpointing;
        if checkpoint || self.shared.offsets_every_barrier {
            // Everything read so far was sent before this barrier: these
            // offsets are exactly where the epoch ends.
            let offsets = self
                .sources
                .iter()
                .map(|source| source.offset().unwrap_or(serde_json::Value::Null))
                .collect();
            self.shared
                .offsets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(epoch, offsets);
        }
        if checkpoint {
            self.last_checkpoint = Instant::now();
        }
        if let Some(waiter) = waiter {
            self.shared
                .waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((epoch, waiter));
        }
        let sent = self
            .send(Message::Signal(
                0,
                Signal::Barrier(CheckpointBarrier { epoch, checkpoint }),
            ))
            .await;
        if sent.is_err() {
            // No operator will apply this epoch: release its waiters.
            self.shared
                .waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
        }
        sent
    }

    async fn send(&mut self, message: Message) -> Result<()> {
        // The operator task only goes away by failing (it records why) or
        // with the query; either way the source stops quietly.
        self.sender
            .send(message)
            .await
            .map_err(|_| DataFusionError::Execution(OPERATORS_STOPPED.into()))
    }
}

/// Waits until one of the sources not `ended` is ready, trying them from
/// `first` on; returns its index and what its wait returned.
async fn wait_any(
    sources: &mut [Box<dyn StreamSource>],
    ended: &[bool],
    first: InputIndex,
) -> (InputIndex, Result<bool>) {
    let open: Vec<InputIndex> = (0..sources.len()).filter(|i| !ended[*i]).collect();
    let mut waits: Vec<_> = sources
        .iter_mut()
        .enumerate()
        .filter(|(input, _)| !ended[*input])
        .map(|(input, source)| Box::pin(async move { (input, source.wait().await) }))
        .collect();
    // select_all prefers the first ready future: rotate so that the source
    // preferred changes from one wait to the next.
    let shift = open.iter().position(|input| *input >= first).unwrap_or(0);
    waits.rotate_left(shift);
    futures::future::select_all(waits).await.0
}
