//! Runs a continuous query: a source task ([`super::source_task`]), a
//! dispatcher ([`super::parallel`]: batching, stateless stages in parallel)
//! and an operator task joined by bounded channels (a slow operator or view
//! slows the source down, memory stays bounded), barriers on a timer, and
//! commands (flush, pause, resume) from sessions. The operator task hands
//! each change and signal to the [`Pipeline`] and applies each finished
//! epoch to the view atomically ([`super::operator_task`]). A query cut at
//! a region log runs its two regions side by side ([`super::region`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::error::{DataFusionError, Result};
use futures::FutureExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::checkpoint::CheckpointStore;
use super::log::RegionLog;
use super::metrics::{QueryMetrics, QueryState, fail, fail_before_release, failure, lock};
use super::operator_task::{CheckpointWaiters, Offsets, OperatorTask};
use super::parallel::HeadStages;
use super::pipeline::Pipeline;
use super::region::{Downstream, RebuildUpstream, UpstreamRegion};
use super::signal::Epoch;
use super::sink::EpochSink;
use super::source::StreamSource;
use super::source_task::{Control, SourceShared};

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
    /// How the upstream region restarts on its own after a failure
    /// (`None`: a failure there restarts the whole query).
    pub rebuild: Option<RebuildUpstream>,
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
            upstream_restarts: 0,
        }));
        let (store, checkpoint_interval) = match start.checkpointing {
            Some(checkpointing) => (Some(checkpointing.store), checkpointing.interval),
            None => (None, None),
        };
        let offsets = Offsets::default();
        let checkpoint_waiters = CheckpointWaiters::default();
        let (control, commands) = mpsc::unbounded_channel();
        let waiters = Arc::new(Mutex::new(Vec::new()));
        let shared = SourceShared {
            commands: Arc::new(tokio::sync::Mutex::new(commands)),
            waiters: Arc::clone(&waiters),
            metrics: Arc::clone(&metrics),
            barrier_interval,
            checkpointing: store.is_some(),
            checkpoint_interval,
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
            offsets,
            checkpoint_waiters,
        };
        let released = Arc::clone(&waiters);
        let released_metrics = Arc::clone(&metrics);
        let mut tasks = Vec::new();
        let operators: std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>> =
            match start.region {
                None => {
                    let (source_task, dispatcher, receiver) =
                        shared.start(sources, heads, start.first_epoch)?;
                    tasks.push(spawn_guarded(dispatcher.run(), Arc::clone(&metrics)));
                    tasks.push(spawn_guarded(source_task.run(), Arc::clone(&metrics)));
                    Box::pin(operator_task.run(receiver))
                }
                Some(region) => {
                    // The regions run side by side: either restarting
                    // never stops the other.
                    let upstream = UpstreamRegion::new(shared, region.log, region.rebuild);
                    let upstream = spawn_guarded(
                        upstream.run(sources, heads, start.first_epoch),
                        Arc::clone(&metrics),
                    );
                    let stop_upstream = upstream.abort_handle();
                    tasks.push(upstream);
                    let downstream = Downstream::new(operator_task, region.downstream_next);
                    Box::pin(async move {
                        let outcome = downstream.run().await;
                        stop_upstream.abort();
                        outcome
                    })
                }
            };
        tasks.push(spawn_guarded(
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
        ));
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
