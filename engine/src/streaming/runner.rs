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
//! epoch to the view atomically ([`super::operator_task`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::error::{DataFusionError, Result};
use futures::FutureExt;
use sluice_types::error::SluiceError;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::checkpoint::CheckpointStore;
use super::log::RegionLog;
use super::metrics::{OPERATORS_STOPPED, QueryMetrics, QueryState, lock, panic_message};
use super::operator_task::{CheckpointWaiter, CheckpointWaiters, Offsets, OperatorTask, Waiters};
use super::parallel::{Dispatcher, HeadStages};
use super::pipeline::Pipeline;
use super::region::{Downstream, LogWriter};
use super::signal::{
    CheckpointBarrier, Epoch, InputIndex, Message, Signal, Watermark, coalesce_changes,
};
use super::sink::EpochSink;
use super::source::StreamSource;

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
    /// Stops the query's tasks now (what dropping it does), leaving what
    /// it fed — a view's content — as it is: a query about to be replaced
    /// by one restored from its checkpoint must not run beside it.
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }

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
            backpressured: Duration::ZERO,
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
        let released_metrics = Arc::clone(&metrics);
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
                    if let Err(error) = &outcome {
                        fail_before_release(&released_metrics, error);
                    }
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
        Ok(Err(e)) => error_message(&e),
        Err(panic) => Some(panic_message(panic.as_ref())),
    }
}

/// What the status table shows of `e`; `None` for the error that only
/// follows another task's stop.
fn error_message(e: &DataFusionError) -> Option<String> {
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
fn fail_before_release(metrics: &Mutex<QueryMetrics>, error: &DataFusionError) {
    if let Some(message) = error_message(error) {
        fail(metrics, message);
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
                        if !self.paused
                            && let Err(error) = self.catch_up().await
                        {
                            // `done` drops on return, which ends the FLUSH.
                            fail_before_release(&self.metrics, &error);
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
