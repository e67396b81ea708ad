//! Adaptive batching: one worker thread per loaded model gathers the rows
//! that every query, partition and connection sends it into large batches,
//! runs the model off the async runtime's threads, and hands each caller its
//! slice of the result.
//!
//! Callers are held back (asynchronously) once `max_queued_rows` rows are
//! waiting, which bounds the memory spent on inputs. A failing batch that
//! merged several callers' rows is re-run per caller, so one query's bad
//! input never fails another's.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::concat;
use datafusion::error::{DataFusionError, Result};
use sluice_types::error::{SluiceError, SqlState};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::spec::BatchSettings;

/// Rows gathered into one call of the runner at most, whatever the model's
/// batch size: the runner cuts them into model-sized batches itself, and a
/// text model first sorts them by length so padding stays small.
const GATHER_ROWS: usize = 8192;

/// Runs a model on whole columns; implemented by each kind of model.
pub trait BatchRunner: Send + 'static {
    /// Output columns for `inputs` (all of the same length), row for row,
    /// running the model on at most `batch_size` rows at a time.
    fn run(
        &mut self,
        inputs: &[ArrayRef],
        batch_size: usize,
        metrics: &ModelMetrics,
    ) -> Result<Vec<ArrayRef>>;
}

/// Counters of one loaded model, shown by `DESCRIBE MODEL`.
#[derive(Debug, Default)]
pub struct ModelMetrics {
    /// Rows given to the model.
    pub rows: AtomicU64,
    /// Model runs (batches).
    pub batches: AtomicU64,
    /// Nanoseconds spent inside the model.
    pub model_nanos: AtomicU64,
    /// Calls that failed.
    pub failures: AtomicU64,
}

impl ModelMetrics {
    /// Records one model run of `rows` rows that took `elapsed`.
    pub fn record_batch(&self, rows: usize, elapsed: Duration) {
        self.rows.fetch_add(rows as u64, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.model_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
    }
}

/// What the model runs that served one call did: shared by every caller
/// whose rows were merged into the same runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunStats {
    /// Model runs (batches).
    pub batches: u64,
    /// Rows in those runs, all callers together.
    pub rows: u64,
    /// Time spent inside the model.
    pub model_time: Duration,
}

type Reply = Result<(Vec<ArrayRef>, RunStats)>;

struct Job {
    inputs: Vec<ArrayRef>,
    rows: usize,
    /// The caller's own rows-per-run limit (`ML_PREDICT(…, MAP[…])`).
    batch_size: Option<usize>,
    reply: oneshot::Sender<Reply>,
    /// Released when the job is done: the rows stop counting as queued.
    _permit: OwnedSemaphorePermit,
}

/// The queue in front of one model's worker thread.
pub struct ModelQueue {
    sender: Mutex<mpsc::Sender<Job>>,
    queued_rows: Arc<Semaphore>,
    max_queued_rows: usize,
    metrics: Arc<ModelMetrics>,
}

impl std::fmt::Debug for ModelQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelQueue").finish_non_exhaustive()
    }
}

impl ModelQueue {
    /// Starts the worker thread for `runner`.
    pub fn start(
        name: &str,
        runner: Box<dyn BatchRunner>,
        settings: &BatchSettings,
    ) -> Result<Self> {
        let (sender, receiver) = mpsc::channel();
        let metrics = Arc::new(ModelMetrics::default());
        let worker = Worker {
            receiver,
            runner,
            max_batch_size: settings.max_batch_size,
            max_wait: settings.max_wait,
            metrics: Arc::clone(&metrics),
            held: None,
        };
        std::thread::Builder::new()
            .name(format!("sluice-model-{name}"))
            .spawn(move || worker.serve())
            .map_err(|e| {
                DataFusionError::Execution(format!("cannot start the worker of model {name}: {e}"))
            })?;
        Ok(Self {
            sender: Mutex::new(sender),
            queued_rows: Arc::new(Semaphore::new(settings.max_queued_rows)),
            max_queued_rows: settings.max_queued_rows,
            metrics,
        })
    }

    /// The model's counters.
    pub fn metrics(&self) -> &ModelMetrics {
        &self.metrics
    }

    /// Runs the model on `inputs` as part of whatever batch the worker
    /// gathers (with callers asking for the same `batch_size`: the
    /// model's own when `None`); waits (without blocking a thread) for
    /// room in the queue.
    pub async fn infer(&self, inputs: Vec<ArrayRef>, batch_size: Option<usize>) -> Reply {
        let rows = inputs.first().map_or(0, |c| c.len());
        let permits = rows.clamp(1, self.max_queued_rows) as u32;
        let permit = Arc::clone(&self.queued_rows)
            .acquire_many_owned(permits)
            .await
            .map_err(|_| stopped())?;
        let (reply, answer) = oneshot::channel();
        let job = Job {
            inputs,
            rows,
            batch_size,
            reply,
            _permit: permit,
        };
        self.sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

fn stopped() -> DataFusionError {
    DataFusionError::Execution("the model's worker has stopped".into())
}

struct Worker {
    receiver: mpsc::Receiver<Job>,
    runner: Box<dyn BatchRunner>,
    max_batch_size: usize,
    max_wait: Duration,
    metrics: Arc<ModelMetrics>,
    /// A job taken while gathering that asks for another batch size: it
    /// starts the next gathering.
    held: Option<Job>,
}

impl Worker {
    /// Serves jobs until every sender is gone (the model was dropped).
    fn serve(mut self) {
        loop {
            let first = match self.held.take() {
                Some(job) => job,
                None => match self.receiver.recv() {
                    Ok(job) => job,
                    Err(_) => return,
                },
            };
            let batch_size = first.batch_size.unwrap_or(self.max_batch_size);
            let jobs = self.gather(first, batch_size);
            self.run_jobs(jobs, batch_size);
        }
    }

    /// Takes every queued job (asking for the same batch size) up to
    /// [`GATHER_ROWS`] rows; while fewer than a model batch are at hand,
    /// waits up to `max_wait` for more.
    fn gather(&mut self, first: Job, batch_size: usize) -> Vec<Job> {
        let wanted = first.batch_size;
        let mut rows = first.rows;
        let mut jobs = vec![first];
        let deadline = Instant::now() + self.max_wait;
        while rows < GATHER_ROWS {
            let next = match self.receiver.try_recv() {
                Ok(job) => Some(job),
                Err(TryRecvError::Disconnected) => None,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if rows >= batch_size || now >= deadline {
                        None
                    } else {
                        // Timeout or disconnection both end the gathering.
                        self.receiver.recv_timeout(deadline - now).ok()
                    }
                }
            };
            let Some(job) = next else { break };
            if job.batch_size != wanted {
                self.held = Some(job);
                break;
            }
            rows += job.rows;
            jobs.push(job);
        }
        jobs
    }

    fn run_jobs(&mut self, jobs: Vec<Job>, batch_size: usize) {
        // A caller that gave up (cancelled query) needs no answer.
        let jobs: Vec<Job> = jobs.into_iter().filter(|j| !j.reply.is_closed()).collect();
        if jobs.len() == 1 {
            for job in jobs {
                let result = self.run(&job.inputs, batch_size);
                let _ = job.reply.send(result);
            }
            return;
        }
        if jobs.is_empty() {
            return;
        }
        match merge(&jobs).and_then(|inputs| self.run(&inputs, batch_size)) {
            Ok((outputs, stats)) => {
                let mut offset = 0;
                for job in jobs {
                    let slice = outputs.iter().map(|c| c.slice(offset, job.rows)).collect();
                    offset += job.rows;
                    let _ = job.reply.send(Ok((slice, stats)));
                }
            }
            Err(_) => {
                // Find the caller whose rows fail; the others still succeed.
                for job in jobs {
                    let result = self.run(&job.inputs, batch_size);
                    let _ = job.reply.send(result);
                }
            }
        }
    }

    fn run(&mut self, inputs: &[ArrayRef], batch_size: usize) -> Reply {
        // This thread alone runs the model, so the counters' growth over
        // the call is exactly this call's.
        let before = self.snapshot();
        let runner = &mut self.runner;
        let metrics = &self.metrics;
        // A panic inside the runtime must not take the worker (and with it
        // every later query on this model) down.
        let result =
            std::panic::catch_unwind(AssertUnwindSafe(|| runner.run(inputs, batch_size, metrics)))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    Err(SluiceError::new(
                        SqlState::EXTERNAL_ROUTINE_EXCEPTION,
                        format!("model failed: {what}"),
                    )
                    .into())
                });
        if result.is_err() {
            self.metrics.failures.fetch_add(1, Ordering::Relaxed);
        }
        let after = self.snapshot();
        let stats = RunStats {
            batches: after.batches - before.batches,
            rows: after.rows - before.rows,
            model_time: after.model_time.saturating_sub(before.model_time),
        };
        result.map(|outputs| (outputs, stats))
    }

    fn snapshot(&self) -> RunStats {
        RunStats {
            batches: self.metrics.batches.load(Ordering::Relaxed),
            rows: self.metrics.rows.load(Ordering::Relaxed),
            model_time: Duration::from_nanos(self.metrics.model_nanos.load(Ordering::Relaxed)),
        }
    }
}

fn merge(jobs: &[Job]) -> Result<Vec<ArrayRef>> {
    let columns = jobs.first().map_or(0, |j| j.inputs.len());
    (0..columns)
        .map(|c| {
            let parts: Vec<&dyn datafusion::arrow::array::Array> =
                jobs.iter().map(|j| j.inputs[c].as_ref()).collect();
            Ok(concat(&parts)?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, Int64Array};
    use std::sync::atomic::AtomicUsize;

    /// The input values and batch size of each run.
    type Runs = Arc<Mutex<Vec<(Vec<i64>, usize)>>>;

    /// Doubles its input; fails on a negative value; counts its calls and
    /// remembers each run.
    struct Doubler {
        calls: Arc<AtomicUsize>,
        seen: Runs,
    }

    impl Doubler {
        fn new(calls: &Arc<AtomicUsize>) -> Self {
            Self {
                calls: Arc::clone(calls),
                seen: Arc::default(),
            }
        }
    }

    impl BatchRunner for Doubler {
        fn run(
            &mut self,
            inputs: &[ArrayRef],
            batch_size: usize,
            metrics: &ModelMetrics,
        ) -> Result<Vec<ArrayRef>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let values = inputs[0]
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| DataFusionError::Internal("int64 expected".into()))?;
            self.seen
                .lock()
                .unwrap()
                .push((values.values().to_vec(), batch_size));
            if values.iter().flatten().any(|v| v < 0) {
                return Err(DataFusionError::Execution("negative".into()));
            }
            metrics.record_batch(values.len(), Duration::ZERO);
            let doubled: Int64Array = values.iter().map(|v| v.map(|v| v * 2)).collect();
            Ok(vec![Arc::new(doubled)])
        }
    }

    fn settings(wait_ms: u64) -> BatchSettings {
        BatchSettings {
            max_batch_size: 1000,
            max_wait: Duration::from_millis(wait_ms),
            max_queued_rows: 100,
            intra_threads: 1,
        }
    }

    fn column(values: &[i64]) -> Vec<ArrayRef> {
        vec![Arc::new(Int64Array::from(values.to_vec()))]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_callers_share_batches_and_get_their_own_rows() {
        let calls = Arc::new(AtomicUsize::new(0));
        let runner = Doubler::new(&calls);
        // A long wait makes the worker gather all 20 callers into few runs.
        let queue = Arc::new(ModelQueue::start("t", Box::new(runner), &settings(200)).unwrap());
        let tasks: Vec<_> = (0..20i64)
            .map(|i| {
                let queue = Arc::clone(&queue);
                tokio::spawn(async move { (i, queue.infer(column(&[i, i + 100]), None).await) })
            })
            .collect();
        for task in tasks {
            let (i, result) = task.await.unwrap();
            let (out, _) = result.unwrap();
            let out = out[0].as_any().downcast_ref::<Int64Array>().unwrap();
            assert_eq!(out.values(), &[2 * i, 2 * (i + 100)]);
        }
        assert!(
            calls.load(Ordering::SeqCst) < 20,
            "callers were not batched"
        );
        assert_eq!(queue.metrics().rows.load(Ordering::SeqCst), 40);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn one_callers_failure_does_not_fail_the_others() {
        let runner = Doubler::new(&Arc::new(AtomicUsize::new(0)));
        let queue = Arc::new(ModelQueue::start("t", Box::new(runner), &settings(200)).unwrap());
        let good = {
            let queue = Arc::clone(&queue);
            tokio::spawn(async move { queue.infer(column(&[1, 2]), None).await })
        };
        let bad = {
            let queue = Arc::clone(&queue);
            tokio::spawn(async move { queue.infer(column(&[-1]), None).await })
        };
        let (good, stats) = good.await.unwrap().unwrap();
        assert_eq!(good[0].len(), 2);
        assert!(stats.batches >= 1);
        let bad = bad.await.unwrap().unwrap_err();
        assert!(bad.to_string().contains("negative"));
    }

    #[tokio::test]
    async fn more_rows_than_the_queue_holds_still_run() {
        let runner = Doubler::new(&Arc::new(AtomicUsize::new(0)));
        let queue = ModelQueue::start("t", Box::new(runner), &settings(0)).unwrap();
        let values: Vec<i64> = (0..1000).collect();
        let (out, stats) = queue.infer(column(&values), None).await.unwrap();
        assert_eq!(out[0].len(), 1000);
        assert_eq!(stats.rows, 1000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn callers_asking_for_their_own_batch_size_get_it() {
        let calls = Arc::new(AtomicUsize::new(0));
        let runner = Doubler::new(&calls);
        let seen = Arc::clone(&runner.seen);
        let queue = Arc::new(ModelQueue::start("t", Box::new(runner), &settings(100)).unwrap());
        let tasks: Vec<_> = (0..12i64)
            .map(|i| {
                let queue = Arc::clone(&queue);
                let batch_size = (i % 2 == 0).then_some(7);
                tokio::spawn(async move { queue.infer(column(&[i]), batch_size).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let seen = seen.lock().unwrap().clone();
        // Rows of callers asking for 7 (even values) ran only with 7, the
        // others only with the model's 1000: never merged across.
        for (values, size) in &seen {
            let expected = if values[0] % 2 == 0 { 7 } else { 1000 };
            assert_eq!(*size, expected, "{seen:?}");
            assert!(values.iter().all(|v| v % 2 == values[0] % 2), "{seen:?}");
        }
        let rows: usize = seen.iter().map(|(values, _)| values.len()).sum();
        assert_eq!(rows, 12);
    }
}
