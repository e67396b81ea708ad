//! Runs a continuous query: a source task, a dispatcher
//! ([`super::parallel`]: batching, stateless stages in parallel) and an
//! operator task joined by bounded channels (a slow operator or view slows
//! the source down, memory stays bounded), barriers on a timer, and
//! commands (flush, pause, resume) from sessions.
//!
//! The source task owns the query's sources (one, or a join's two) and the
//! epoch counter: it reads rows from whichever source has some, passes each
//! source's watermark on when it advances, and closes an epoch with a
//! barrier every `barrier_interval`, or at once for `FLUSH` after reading
//! everything committed so far. One task reading every source is what keeps
//! the barriers aligned across a join's inputs. The operator task hands
//! each change and signal to the [`Pipeline`] and applies each finished
//! epoch to the view atomically.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use datafusion::error::{DataFusionError, Result};
use futures::FutureExt;
use sluice_types::error::SluiceError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::checkpoint::{CheckpointContent, CheckpointStore};
use super::log::RegionLog;
use super::parallel::{Dispatcher, HeadStages, Staged};
use super::pipeline::Pipeline;
use super::region::{Downstream, LogWriter};
use super::signal::{
    Change, CheckpointBarrier, Epoch, InputIndex, Message, Signal, Watermark, coalesce_changes,
};
use super::sink::EpochSink;
use super::source::StreamSource;

/// The source task's error when the operator task is gone (not a cause).
pub(super) const OPERATORS_STOPPED: &str = "the query's operators stopped";

/// Messages in flight between the source and the operators.
const CHANNEL_CAPACITY: usize = 16;

/// Commands a session sends a running query.
enum Control {
    /// Read everything committed, close the epoch, answer once applied.
    Flush(oneshot::Sender<()>),
    /// Close the epoch with a checkpoint, answer once it is durable.
    Checkpoint(CheckpointWaiter),
    Pause,
    Resume,
}

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

/// How a query checkpoints: into which store, how often.
pub struct Checkpointing {
    /// The query's checkpoints, its generation claimed.
    pub store: CheckpointStore,
    /// `checkpoint_interval_ms` (`None`: only at `CHECKPOINT`).
    pub interval: Option<Duration>,
}

/// Where a started query begins.
pub struct StartPoint {
    /// The first epoch it closes (one past a restored checkpoint's, or
    /// past the region log's newest segment).
    pub first_epoch: Epoch,
    /// Its checkpoints, when every part of it can be checkpointed.
    pub checkpointing: Option<Checkpointing>,
    /// The log cutting it into regions, when it has one.
    pub region: Option<RegionStart>,
}

/// A query cut into two regions at a durable log.
pub struct RegionStart {
    /// The log between the upstream region (sources, model calls) and the
    /// downstream one (operators, sink).
    pub log: Arc<RegionLog>,
    /// The first log epoch the downstream region reads (one past its
    /// checkpoint's).
    pub downstream_next: Epoch,
}

/// A running continuous query's handle; dropping it stops the query.
pub struct RunningQuery {
    control: mpsc::UnboundedSender<Control>,
    metrics: Arc<Mutex<QueryMetrics>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for RunningQuery {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl RunningQuery {
    /// Starts `pipeline` over `sources` (one per pipeline input), handing
    /// each finished epoch to `sink` (a materialized view, a file or table
    /// sink). `heads[input]` holds copies of the stateless stages that run
    /// before that input's pipeline chain, in parallel ([`super::parallel`]);
    /// empty for none.
    pub fn start(
        sources: Vec<Box<dyn StreamSource>>,
        heads: Vec<Vec<HeadStages>>,
        pipeline: Pipeline,
        sink: Arc<dyn EpochSink>,
        barrier_interval: Duration,
        start: StartPoint,
    ) -> Result<Self> {
        let metrics = Arc::new(Mutex::new(QueryMetrics {
            state: QueryState::Running,
            rows_in: 0,
            rows_out: 0,
            epoch: 0,
            watermark: None,
            late_rows: 0,
            state_entries: 0,
            lag: 0,
            last_error: None,
            started: Instant::now(),
            checkpoint: None,
            checkpointing: start.checkpointing.is_some(),
            regions: if start.region.is_some() { 2 } else { 1 },
            region_restarts: 0,
            recovery: Duration::ZERO,
            log_epoch: None,
            log_bytes: 0,
        }));
        let (store, checkpoint_interval) = match start.checkpointing {
            Some(checkpointing) => (Some(checkpointing.store), checkpointing.interval),
            None => (None, None),
        };
        let offsets = Offsets::default();
        let checkpoint_waiters = CheckpointWaiters::default();
        let (control, commands) = mpsc::unbounded_channel();
        let (sender, received) = mpsc::channel(CHANNEL_CAPACITY);
        // Up to this many batches go through the head stages at once.
        let in_flight = heads.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let (staged, receiver) = mpsc::channel(in_flight);
        let dispatcher = Dispatcher::new(received, staged, heads)?;
        let waiters = Arc::new(Mutex::new(Vec::new()));
        let source_task = SourceTask {
            watermarks: vec![None; sources.len()],
            ended: vec![false; sources.len()],
            sources,
            sender,
            commands,
            waiters: Arc::clone(&waiters),
            metrics: Arc::clone(&metrics),
            barrier_interval,
            epoch: start.first_epoch,
            paused: false,
            next_input: 0,
            checkpointing: store.is_some(),
            checkpoint_interval,
            last_checkpoint: Instant::now(),
            offsets: Arc::clone(&offsets),
            checkpoint_waiters: Arc::clone(&checkpoint_waiters),
            offsets_every_barrier: start.region.is_some(),
        };
        let operator_task = OperatorTask {
            pipeline,
            sink,
            waiters: Arc::clone(&waiters),
            metrics: Arc::clone(&metrics),
            pending: Vec::new(),
            store,
            log: start.region.as_ref().map(|region| Arc::clone(&region.log)),
            ended: false,
            uploading: None,
            offsets: Arc::clone(&offsets),
            checkpoint_waiters,
        };
        let released = Arc::clone(&waiters);
        let operators: std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>> =
            match start.region {
                None => Box::pin(operator_task.run(receiver)),
                Some(region) => {
                    let writer = LogWriter::new(
                        receiver,
                        Arc::clone(&region.log),
                        offsets,
                        Arc::clone(&metrics),
                    );
                    let downstream = Downstream::new(operator_task, region.downstream_next);
                    Box::pin(async move {
                        // The regions run side by side: the downstream one
                        // restarting never stops the upstream one.
                        let upstream = tokio::spawn(writer.run());
                        let outcome = downstream.run().await;
                        upstream.abort();
                        outcome
                    })
                }
            };
        let tasks = vec![
            spawn_guarded(dispatcher.run(), Arc::clone(&metrics)),
            spawn_guarded(source_task.run(), Arc::clone(&metrics)),
            spawn_guarded(
                async move {
                    let outcome = operators.await;
                    // Nothing more will be applied: release every FLUSH waiting.
                    released.lock().unwrap_or_else(|e| e.into_inner()).clear();
                    outcome
                },
                Arc::clone(&metrics),
            ),
        ];
        Ok(Self {
            control,
            metrics,
            tasks,
        })
    }

    /// The query's counters now.
    pub fn metrics(&self) -> QueryMetrics {
        lock(&self.metrics).clone()
    }

    /// Waits until everything committed to the query's sources before this
    /// call is in its view. Returns at once for a query that has stopped.
    pub async fn flush(&self) {
        let (done, applied) = oneshot::channel();
        if self.control.send(Control::Flush(done)).is_ok() {
            // A query that fails meanwhile drops the sender: nothing more
            // will be applied, so there is nothing to wait for.
            let _ = applied.await;
        }
    }

    /// Closes the current epoch with a checkpoint and waits until it is
    /// durable; returns its epoch (`None` when the query runs without
    /// checkpoints).
    pub async fn checkpoint(&self) -> Result<Option<u64>> {
        if !lock(&self.metrics).checkpointing {
            return Ok(None);
        }
        let (done, committed) = oneshot::channel();
        let stopped =
            || DataFusionError::Execution("the query stopped before its checkpoint".into());
        self.control
            .send(Control::Checkpoint(done))
            .map_err(|_| stopped())?;
        match committed.await {
            Ok(Ok(epoch)) => Ok(Some(epoch)),
            Ok(Err(error)) => Err(DataFusionError::Execution(error)),
            Err(_) => Err(stopped()),
        }
    }

    /// Stops reading the source (`pause`) or starts again.
    pub fn set_paused(&self, pause: bool) {
        let _ = self.control.send(if pause {
            Control::Pause
        } else {
            Control::Resume
        });
        let mut metrics = lock(&self.metrics);
        if matches!(metrics.state, QueryState::Running | QueryState::Paused) {
            metrics.state = if pause {
                QueryState::Paused
            } else {
                QueryState::Running
            };
        }
    }
}

pub(super) fn lock(metrics: &Mutex<QueryMetrics>) -> MutexGuard<'_, QueryMetrics> {
    metrics.lock().unwrap_or_else(|e| e.into_inner())
}

/// Spawns one of a query's tasks; its error or panic fails the query.
fn spawn_guarded(
    task: impl std::future::Future<Output = Result<()>> + Send + 'static,
    metrics: Arc<Mutex<QueryMetrics>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let outcome = std::panic::AssertUnwindSafe(task).catch_unwind().await;
        if let Some(error) = failure(outcome) {
            fail(&metrics, error);
        }
    })
}

/// The error of a task that returned one or panicked.
fn failure(outcome: std::thread::Result<Result<()>>) -> Option<String> {
    match outcome {
        Ok(Ok(())) => None,
        Ok(Err(e)) if e.to_string().contains(OPERATORS_STOPPED) => None,
        Ok(Err(e)) => Some(match SluiceError::find(&e) {
            Some(error) => error.message.clone(),
            None => e.to_string(),
        }),
        Err(panic) => Some(panic_message(panic.as_ref())),
    }
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

fn fail(metrics: &Mutex<QueryMetrics>, error: String) {
    log::warn!("continuous query failed: {error}");
    let mut metrics = lock(metrics);
    // The first failure is the cause; what fails after it follows from it.
    if metrics.state != QueryState::Failed {
        metrics.state = QueryState::Failed;
        metrics.last_error = Some(error);
    }
}

/// Flushes waiting for an epoch to be applied.
type Waiters = Arc<Mutex<Vec<(Epoch, oneshot::Sender<()>)>>>;

/// A `CHECKPOINT` waiting for its checkpoint: the epoch or why it failed.
type CheckpointWaiter = oneshot::Sender<std::result::Result<u64, String>>;

/// `CHECKPOINT`s waiting, by the epoch of their checkpoint.
type CheckpointWaiters = Arc<Mutex<Vec<(Epoch, CheckpointWaiter)>>>;

/// The sources' offsets recorded at each checkpoint barrier, until the
/// operators take the checkpoint.
pub(super) type Offsets = Arc<Mutex<std::collections::BTreeMap<Epoch, Vec<serde_json::Value>>>>;

struct SourceTask {
    sources: Vec<Box<dyn StreamSource>>,
    sender: mpsc::Sender<Message>,
    commands: mpsc::UnboundedReceiver<Control>,
    waiters: Waiters,
    metrics: Arc<Mutex<QueryMetrics>>,
    barrier_interval: Duration,
    epoch: Epoch,
    /// Per source, the watermark last passed on.
    watermarks: Vec<Option<Watermark>>,
    paused: bool,
    /// Per source, whether it has ended.
    ended: Vec<bool>,
    /// Whether the query checkpoints.
    checkpointing: bool,
    checkpoint_interval: Option<Duration>,
    last_checkpoint: Instant,
    offsets: Offsets,
    checkpoint_waiters: CheckpointWaiters,
    /// Whether every barrier records the offsets (for the region log).
    offsets_every_barrier: bool,
    /// The source waited on first next time, so that a source that always
    /// has rows cannot starve the other input of a join.
    next_input: InputIndex,
}

impl SourceTask {
    async fn run(mut self) -> Result<()> {
        let mut timer = tokio::time::interval(self.barrier_interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let reading = !self.paused && self.ended.iter().any(|ended| !ended);
            tokio::select! {
                biased;
                command = self.commands.recv() => match command {
                    Some(Control::Flush(done)) => {
                        if !self.paused {
                            self.catch_up().await?;
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
        let mut metrics = lock(&self.metrics);
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
        self.checkpoint_waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((self.epoch, done));
        self.barrier_marked(None, true).await
    }

    async fn barrier(&mut self, waiter: Option<oneshot::Sender<()>>) -> Result<()> {
        let due = self
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
        let checkpoint = checkpoint && self.checkpointing;
        if checkpoint || self.offsets_every_barrier {
            // Everything read so far was sent before this barrier: these
            // offsets are exactly where the epoch ends.
            let offsets = self
                .sources
                .iter()
                .map(|source| source.offset().unwrap_or(serde_json::Value::Null))
                .collect();
            self.offsets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(epoch, offsets);
        }
        if checkpoint {
            self.last_checkpoint = Instant::now();
        }
        if let Some(waiter) = waiter {
            self.waiters
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
            self.waiters
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

/// The operators and the sink of a query (of its downstream region when
/// it has two): applies changes and finishes epochs.
pub(super) struct OperatorTask {
    pub(super) pipeline: Pipeline,
    pub(super) sink: Arc<dyn EpochSink>,
    waiters: Waiters,
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
    uploading: Option<JoinHandle<Result<()>>>,
    pub(super) offsets: Offsets,
    checkpoint_waiters: CheckpointWaiters,
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
    async fn run(mut self, mut receiver: mpsc::Receiver<Staged>) -> Result<()> {
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
