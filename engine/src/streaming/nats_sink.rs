//! [`NatsSink`]: a continuous query's rows published to a NATS JetStream
//! subject, one JSON object per message (`'connector' = 'nats'`).
//!
//! ```sql
//! CREATE SINK scored AS SELECT id, ML_PREDICT('m', body) AS p FROM orders
//! WITH ('connector' = 'nats', 'server' = 'nats://127.0.0.1:4222',
//!       'stream' = 'SCORED', 'subject' = 'scored');
//! ```
//! Exactly once when the query checkpoints: an epoch's rows are kept with
//! the checkpoint (its pre-commit) and published once the checkpoint is
//! durable, each with a `Nats-Msg-Id` made of the sink, the checkpointing
//! instance's generation, the epoch and the row's place in it. A restore
//! publishes its checkpoint's kept rows again under the same ids, which
//! JetStream's duplicate window (2 minutes by default) drops if they were
//! published before the crash. Without checkpoints rows are published at
//! once, at least once.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::array::{Array, RecordBatch, UInt64Array};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::error::{DataFusionError, Result};
use tokio::sync::OnceCell;

use super::checkpoint::StateSnapshot;
use super::signal::{Change, Epoch};
use super::sink::{EpochSink, SinkRows};
use super::source::nats::{NatsOptions, nats_error};

/// The epoch column of kept rows in a checkpoint.
const EPOCH_COLUMN: &str = "__sluice_epoch";

/// Publishes epochs to a NATS subject; see the module docs.
pub struct NatsSink {
    name: String,
    rows: SinkRows,
    options: NatsOptions,
    context: OnceCell<jetstream::Context>,
    /// The checkpointing instance's generation (0: no checkpoints).
    generation: AtomicU64,
    /// Epochs applied and not yet published, oldest first.
    kept: Mutex<Vec<(Epoch, RecordBatch)>>,
}

impl NatsSink {
    /// A sink `name` publishing `rows` where `options` say.
    pub fn new(name: &str, rows: SinkRows, options: NatsOptions) -> Self {
        Self {
            name: name.to_owned(),
            rows,
            options,
            context: OnceCell::new(),
            generation: AtomicU64::new(0),
            kept: Mutex::new(Vec::new()),
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Vec<(Epoch, RecordBatch)>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn context(&self) -> Result<&jetstream::Context> {
        self.context
            .get_or_try_init(|| async { Ok(self.options.connect().await?.0) })
            .await
    }

    /// Publishes `batch` (epoch `epoch` of generation `generation`), one
    /// message per row, and waits for JetStream's acknowledgements.
    async fn publish(&self, generation: u64, epoch: Epoch, batch: &RecordBatch) -> Result<()> {
        let context = self.context().await?;
        let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(Vec::new());
        writer.write(batch)?;
        writer.finish()?;
        let lines = writer.into_inner();
        let mut acks = Vec::with_capacity(batch.num_rows());
        for (row, line) in lines
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            let mut headers = HeaderMap::new();
            let id = format!("{}-g{generation}-e{}-r{row}", self.name, epoch.0);
            headers.insert("Nats-Msg-Id", id.as_str());
            let ack = context
                .publish_with_headers(
                    self.options.subject.clone(),
                    headers,
                    Bytes::copy_from_slice(line),
                )
                .await
                .map_err(|e| nats_error("publish", e))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .map_err(|e| nats_error("publish acknowledgement", e))?;
        }
        Ok(())
    }

    /// Publishes the kept epochs up to `through` and forgets them.
    async fn publish_kept(&self, through: Epoch) -> Result<()> {
        let generation = self.generation.load(Ordering::Relaxed);
        let due: Vec<(Epoch, RecordBatch)> = self
            .kept()
            .iter()
            .filter(|(epoch, _)| *epoch <= through)
            .cloned()
            .collect();
        for (epoch, batch) in &due {
            self.publish(generation, *epoch, batch).await?;
        }
        self.kept().retain(|(epoch, _)| *epoch > through);
        Ok(())
    }
}

#[async_trait]
impl EpochSink for NatsSink {
    async fn apply_epoch(&self, epoch: Epoch, changes: &[Change]) -> Result<u64> {
        let Some(batch) = self.rows.batch(changes)? else {
            return Ok(0);
        };
        let rows = batch.num_rows() as u64;
        match self.generation.load(Ordering::Relaxed) {
            0 => self.publish(0, epoch, &batch).await?,
            _ => self.kept().push((epoch, batch)),
        }
        Ok(rows)
    }

    fn checkpointable(&self) -> bool {
        true
    }

    fn snapshot(&self) -> Result<Option<StateSnapshot>> {
        let mut fields = vec![Arc::new(Field::new(EPOCH_COLUMN, DataType::UInt64, false))];
        fields.extend(self.rows.schema().fields().iter().cloned());
        let schema = Arc::new(Schema::new(fields));
        let batches = self
            .kept()
            .iter()
            .map(|(epoch, batch)| {
                let mut columns =
                    vec![Arc::new(UInt64Array::from(vec![epoch.0; batch.num_rows()]))
                        as Arc<dyn Array>];
                columns.extend(batch.columns().iter().cloned());
                RecordBatch::try_new(Arc::clone(&schema), columns)
            })
            .collect::<std::result::Result<_, _>>()?;
        Ok(Some(StateSnapshot {
            batches,
            meta: serde_json::json!({ "generation": self.generation.load(Ordering::Relaxed) }),
        }))
    }

    async fn restore(&self, snapshot: StateSnapshot) -> Result<()> {
        // The checkpoint's kept epochs go out again under the ids they had:
        // JetStream drops those already published.
        let generation = snapshot.meta["generation"].as_u64().unwrap_or(0);
        let mut epochs: Vec<u64> = Vec::new();
        for batch in &snapshot.batches {
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .ok_or_else(|| DataFusionError::Execution("corrupt NATS sink checkpoint".into()))?;
            epochs.extend(column.values().iter().copied());
        }
        epochs.sort_unstable();
        epochs.dedup();
        for epoch in epochs {
            for batch in &snapshot.batches {
                let mask = eq(batch.column(0), &UInt64Array::new_scalar(epoch))?;
                let rows = filter_record_batch(batch, &mask)?;
                if rows.num_rows() == 0 {
                    continue;
                }
                let rows = RecordBatch::try_new(
                    Arc::clone(self.rows.schema()),
                    rows.columns()[1..].to_vec(),
                )?;
                self.publish(generation, Epoch(epoch), &rows).await?;
            }
        }
        self.kept().clear();
        Ok(())
    }

    fn use_checkpoints(&self, generation: u64) {
        self.generation.store(generation, Ordering::Relaxed);
    }

    async fn checkpoint_committed(&self, epoch: Epoch) -> Result<()> {
        self.publish_kept(epoch).await
    }
}
