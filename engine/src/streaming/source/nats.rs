//! NATS JetStream as a source (`'connector' = 'nats'`): every message of a
//! stream's subject is one row, its payload a JSON object decoded into the
//! table's columns (arrow's JSON decoder).
//!
//! ```sql
//! CREATE TABLE orders (id BIGINT, body TEXT)
//! WITH ('connector' = 'nats', 'server' = 'nats://127.0.0.1:4222',
//!       'stream' = 'ORDERS', 'subject' = 'orders.>');
//! ```
//! A continuous query reads the stream through an ordered JetStream
//! consumer and checkpoints the stream sequence it has read up to: after a
//! restore it asks for the messages after it, so each message is read once
//! into the query's result. The stream is created (capturing `subject`) if
//! it does not exist. One-off queries over the table are refused: the
//! stream is unbounded.

use std::collections::VecDeque;
use std::sync::Arc;

use async_nats::jetstream;
use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::ReaderBuilder;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use futures::{FutureExt, StreamExt};
use sluice_types::error::{SluiceError, SqlState};

use super::StreamSource;
use super::generator::{OptionBag, invalid_option};
use super::watermark::WatermarkTracker;
use crate::sql::watermark::WatermarkSpec;
use crate::streaming::signal::{Change, Watermark};

/// Messages decoded into one batch at most.
const BATCH_MESSAGES: usize = 4096;

/// Where a NATS table's messages are.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// The server's URL (`nats://host:port`).
    pub server: String,
    /// The JetStream stream.
    pub stream: String,
    /// The subject (wildcards allowed) read or written.
    pub subject: String,
}

impl NatsOptions {
    /// Takes `server`, `stream` and `subject` (and `format`, which must be
    /// `json`) from `options`.
    pub fn parse(options: &mut OptionBag) -> Result<Self> {
        let mut required = |name: &str| {
            options
                .take(name)
                .ok_or_else(|| invalid_option(&format!("the 'nats' connector needs '{name}'")))
        };
        let parsed = Self {
            server: required("server")?,
            stream: required("stream")?,
            subject: required("subject")?,
        };
        match options.take("format") {
            None => {}
            Some(format) if format.eq_ignore_ascii_case("json") => {}
            Some(other) => {
                return Err(invalid_option(&format!(
                    "the 'nats' connector reads and writes 'json', not '{other}'"
                )));
            }
        }
        Ok(parsed)
    }

    /// Connects, and creates the stream capturing `subject` if missing.
    pub async fn connect(&self) -> Result<(jetstream::Context, jetstream::stream::Stream)> {
        let client = async_nats::connect(&self.server)
            .await
            .map_err(|e| nats_error(&format!("cannot connect to {}", self.server), e))?;
        let context = jetstream::new(client);
        let stream = context
            .get_or_create_stream(jetstream::stream::Config {
                name: self.stream.clone(),
                subjects: vec![self.subject.clone()],
                ..Default::default()
            })
            .await
            .map_err(|e| nats_error(&format!("stream {}", self.stream), e))?;
        Ok((context, stream))
    }
}

/// A NATS failure as an error naming what failed.
pub fn nats_error(what: &str, error: impl std::fmt::Display) -> DataFusionError {
    SluiceError::new(
        SqlState::EXTERNAL_ROUTINE_EXCEPTION,
        format!("NATS: {what}: {error}"),
    )
    .into()
}

/// A NATS stream as a table (read by continuous queries).
#[derive(Debug)]
pub struct NatsTable {
    options: NatsOptions,
    schema: SchemaRef,
}

impl NatsTable {
    /// The table of rows of `schema` in the messages `options` name.
    pub fn new(options: NatsOptions, schema: SchemaRef) -> Self {
        Self { options, schema }
    }
}

#[async_trait]
impl TableProvider for NatsTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(SluiceError::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            format!(
                "a NATS table (stream {}) is unbounded: read it with a continuous query \
                 (CREATE MATERIALIZED VIEW or CREATE SINK)",
                self.options.stream
            ),
        )
        .into())
    }
}

/// A NATS stream as a continuous query's source.
pub struct NatsSource {
    options: NatsOptions,
    schema: SchemaRef,
    /// The messages, once the consumer is created (at the first wait).
    messages: Option<Ordered>,
    /// Received, not yet read.
    received: VecDeque<jetstream::Message>,
    /// The stream sequence of the last message read (0: none).
    read_through: u64,
    watermark: Option<WatermarkTracker>,
}

impl NatsSource {
    /// Reads `table` from its stream's first message.
    pub fn new(table: &NatsTable) -> Result<Self> {
        let schema = table.schema();
        let watermark = match WatermarkSpec::from_schema(&schema) {
            Some(spec) => Some(WatermarkTracker::new(schema.index_of(&spec.column)?, &spec)),
            None => None,
        };
        Ok(Self {
            options: table.options.clone(),
            schema,
            messages: None,
            received: VecDeque::new(),
            read_through: 0,
            watermark,
        })
    }

    async fn messages(&mut self) -> Result<&mut Ordered> {
        if self.messages.is_none() {
            let (_, stream) = self.options.connect().await?;
            let consumer = stream
                .create_consumer(OrderedConfig {
                    filter_subject: self.options.subject.clone(),
                    deliver_policy: DeliverPolicy::ByStartSequence {
                        start_sequence: self.read_through + 1,
                    },
                    ..Default::default()
                })
                .await
                .map_err(|e| nats_error("cannot create a consumer", e))?;
            let messages = consumer
                .messages()
                .await
                .map_err(|e| nats_error("cannot read the stream", e))?;
            self.messages = Some(messages);
        }
        self.messages
            .as_mut()
            .ok_or_else(|| DataFusionError::Internal("no NATS consumer".into()))
    }

    fn decode(&self, messages: &[jetstream::Message]) -> Result<RecordBatch> {
        let mut decoder = ReaderBuilder::new(Arc::clone(&self.schema)).build_decoder()?;
        for message in messages {
            decoder.decode(&message.payload)?;
            decoder.decode(b"\n")?;
        }
        Ok(decoder
            .flush()?
            .unwrap_or_else(|| RecordBatch::new_empty(Arc::clone(&self.schema))))
    }
}

#[async_trait]
impl StreamSource for NatsSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn wait(&mut self) -> Result<bool> {
        if !self.received.is_empty() {
            return Ok(true);
        }
        // `next` on the consumer's stream is cancel-safe: a message not
        // yet taken stays in the stream.
        match self.messages().await?.next().await {
            Some(Ok(message)) => {
                self.received.push_back(message);
                Ok(true)
            }
            Some(Err(e)) => Err(nats_error("reading the stream", e)),
            None => Ok(false),
        }
    }

    async fn read(&mut self) -> Result<Vec<Change>> {
        // What has arrived already, without waiting for more.
        while self.received.len() < BATCH_MESSAGES {
            match self.messages().await?.next().now_or_never() {
                Some(Some(Ok(message))) => self.received.push_back(message),
                Some(Some(Err(e))) => return Err(nats_error("reading the stream", e)),
                Some(None) | None => break,
            }
        }
        if self.received.is_empty() {
            return Ok(Vec::new());
        }
        let messages: Vec<_> = self.received.drain(..).collect();
        let batch = self.decode(&messages)?;
        for message in &messages {
            let info = message
                .info()
                .map_err(|e| nats_error("a message without JetStream metadata", e))?;
            self.read_through = self.read_through.max(info.stream_sequence);
        }
        if let Some(tracker) = &mut self.watermark {
            tracker.observe(&batch)?;
        }
        Ok(vec![Change::insert(batch)])
    }

    fn watermark(&self) -> Option<Watermark> {
        self.watermark.as_ref().and_then(WatermarkTracker::current)
    }

    fn catches_up(&self) -> bool {
        false
    }

    fn offset(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "stream_sequence": self.read_through,
            "max_event_time": self.watermark.as_ref().and_then(WatermarkTracker::max_event_time),
        }))
    }

    fn restore(&mut self, offset: &serde_json::Value) -> Result<()> {
        self.read_through = offset["stream_sequence"].as_u64().ok_or_else(|| {
            DataFusionError::Execution(format!("corrupt NATS offset in a checkpoint: {offset}"))
        })?;
        // The consumer starts after the restored sequence.
        self.messages = None;
        self.received.clear();
        if let Some(tracker) = &mut self.watermark {
            tracker.set_max_event_time(offset["max_event_time"].as_i64());
        }
        Ok(())
    }
}
