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

use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_trait::async_trait;
use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::error::Result;
use tokio::sync::OnceCell;

use super::checkpoint::StateSnapshot;
use super::kept_epochs::KeptEpochs;
use super::signal::{Change, Epoch};
use super::sink::{EpochSink, SinkRows};
use super::source::nats::{NatsOptions, nats_error};

/// Publishes epochs to a NATS subject; see the module docs.
pub struct NatsSink {
    name: String,
    rows: SinkRows,
    options: NatsOptions,
    context: OnceCell<jetstream::Context>,
    /// The checkpointing instance's generation (0: no checkpoints).
    generation: AtomicU64,
    /// Epochs applied and not yet published.
    kept: KeptEpochs,
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
            kept: KeptEpochs::default(),
        }
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
        for (epoch, batch) in self.kept.due(through) {
            self.publish(generation, epoch, &batch).await?;
        }
        self.kept.forget_through(through);
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
            _ => self.kept.keep(epoch, batch),
        }
        Ok(rows)
    }

    fn checkpointable(&self) -> bool {
        true
    }

    fn snapshot(&self) -> Result<Option<StateSnapshot>> {
        Ok(Some(StateSnapshot {
            batches: self.kept.snapshot_batches(self.rows.schema())?,
            meta: serde_json::json!({ "generation": self.generation.load(Ordering::Relaxed) }),
        }))
    }

    async fn restore(&self, snapshot: StateSnapshot) -> Result<()> {
        // The checkpoint's kept epochs go out again under the ids they had:
        // JetStream drops those already published.
        let generation = snapshot.meta["generation"].as_u64().unwrap_or(0);
        for (epoch, rows) in KeptEpochs::from_snapshot(&snapshot, self.rows.schema())? {
            self.publish(generation, epoch, &rows).await?;
        }
        self.kept.clear();
        Ok(())
    }

    fn use_checkpoints(&self, generation: u64) {
        self.generation.store(generation, Ordering::Relaxed);
    }

    async fn checkpoint_committed(&self, epoch: Epoch) -> Result<()> {
        self.publish_kept(epoch).await
    }
}
