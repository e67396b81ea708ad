//! Generator tables (`'connector' = 'datagen' | 'nexmark'`): rows computed
//! from their position, so the same position always yields the same row.
//! That makes a generator replayable from an offset (what a checkpoint
//! records), splittable across parallel readers, and comparable between a
//! continuous query and a batch query over the same events.
//!
//! A generator table is a [`GeneratorTable`] for one-off queries (bounded
//! by its event count or the query's LIMIT; an unbounded scan is refused)
//! and a [`GeneratorSource`] for continuous queries (paced at
//! `events_per_second`, 0 for as fast as possible).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::{PartitionStream, StreamingTableExec};
use futures::StreamExt;
use sluice_types::error::{SluiceError, SqlState};
use tokio::time::Instant;

use super::StreamSource;
use super::watermark::WatermarkTracker;
use crate::sql::watermark::WatermarkSpec;
use crate::streaming::signal::{Change, Watermark};

/// Rows per generated batch.
const BATCH_ROWS: usize = 4096;

/// Rows as a function of their position.
pub trait RowGenerator: Send + Sync + std::fmt::Debug {
    /// The rows' schema.
    fn schema(&self) -> SchemaRef;

    /// Rows `start .. start + rows`.
    fn rows(&self, start: u64, rows: usize) -> Result<RecordBatch>;
}

/// A generator table's options: the generator and its pace.
#[derive(Debug, Clone)]
pub struct GeneratorOptions {
    /// What produces the rows.
    pub generator: Arc<dyn RowGenerator>,
    /// Rows per second a continuous query reads (0: as fast as possible).
    pub events_per_second: u64,
    /// How many rows there are (`None`: unbounded).
    pub total: Option<u64>,
}

/// The options of a `WITH (…)` clause, by lower-cased name, each taken
/// once; what is left at the end is an unknown option.
#[derive(Debug, Default)]
pub struct OptionBag {
    options: BTreeMap<String, String>,
}

impl OptionBag {
    /// The options of a statement.
    pub fn new(options: impl IntoIterator<Item = (String, String)>) -> Self {
        Self {
            options: options
                .into_iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v))
                .collect(),
        }
    }

    /// Takes option `name`.
    pub fn take(&mut self, name: &str) -> Option<String> {
        self.options.remove(name)
    }

    /// Takes the first present of `names` (an option and its aliases).
    pub fn take_any(&mut self, names: &[&str]) -> Option<String> {
        names.iter().find_map(|name| self.take(name))
    }

    /// Takes an unsigned integer option.
    pub fn take_u64(&mut self, names: &[&str]) -> Result<Option<u64>> {
        match self.take_any(names) {
            None => Ok(None),
            Some(text) => text.trim().parse().map(Some).map_err(|_| {
                invalid_option(&format!(
                    "option '{}' must be a whole number, got '{text}'",
                    names[0]
                ))
            }),
        }
    }

    /// Fails naming the options no one took.
    pub fn finish(self, connector: &str) -> Result<()> {
        match self.options.keys().next() {
            None => Ok(()),
            Some(name) => Err(invalid_option(&format!(
                "unknown option '{name}' for connector '{connector}'"
            ))),
        }
    }
}

/// An error in a `WITH (…)` option.
pub fn invalid_option(message: &str) -> datafusion::error::DataFusionError {
    SluiceError::new(SqlState::INVALID_PARAMETER_VALUE, message).into()
}

impl GeneratorOptions {
    /// The pace and count options common to every generator
    /// (`events_per_second` or Flink's `rows-per-second`; `events`,
    /// `number-of-rows` or `total_events`).
    pub fn parse(generator: Arc<dyn RowGenerator>, options: &mut OptionBag) -> Result<Self> {
        let events_per_second = options
            .take_u64(&["events_per_second", "rows-per-second", "rows_per_second"])?
            .unwrap_or(0);
        let total = options.take_u64(&["events", "number-of-rows", "total_events"])?;
        Ok(Self {
            generator,
            events_per_second,
            total,
        })
    }
}

/// A generator as a table of one-off queries.
#[derive(Debug)]
pub struct GeneratorTable {
    name: String,
    options: GeneratorOptions,
    schema: SchemaRef,
}

impl GeneratorTable {
    /// The table `name` over `options`, with rows of `schema` (the
    /// generator's, plus the table's metadata such as its watermark).
    pub fn new(name: String, options: GeneratorOptions, schema: SchemaRef) -> Self {
        Self {
            name,
            options,
            schema,
        }
    }

    /// The generator's options.
    pub fn options(&self) -> &GeneratorOptions {
        &self.options
    }
}

#[async_trait]
impl TableProvider for GeneratorTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rows = match (self.options.total, limit) {
            (Some(total), Some(limit)) => total.min(limit as u64),
            (Some(total), None) => total,
            (None, Some(limit)) => limit as u64,
            (None, None) => {
                return Err(SluiceError::new(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    format!(
                        "{} is an unbounded source: a one-off query over it needs a LIMIT (or \
                         the table an event count, 'events' = 'n'); a continuous query reads \
                         it as it grows (CREATE MATERIALIZED VIEW)",
                        self.name
                    ),
                )
                .into());
            }
        };
        // Rows are made as the query pulls them, so a huge event count
        // costs only what the query reads, and the scan stops (and yields to
        // statement_timeout) with the query instead of being generated whole
        // while planning.
        let partition = GeneratorPartition {
            generator: Arc::clone(&self.options.generator),
            schema: Arc::clone(&self.schema),
            rows,
        };
        Ok(Arc::new(StreamingTableExec::try_new(
            Arc::clone(&self.schema),
            vec![Arc::new(partition)],
            projection,
            [],
            false,
            limit,
        )?))
    }
}

/// The rows `0 .. rows` of a generator, made batch by batch as they are
/// read. One partition, so that a one-off query reads the events in their
/// order, as a continuous query does.
#[derive(Debug)]
struct GeneratorPartition {
    generator: Arc<dyn RowGenerator>,
    schema: SchemaRef,
    rows: u64,
}

impl PartitionStream for GeneratorPartition {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let generator = Arc::clone(&self.generator);
        let schema = Arc::clone(&self.schema);
        let rows = self.rows;
        let starts = (0..rows).step_by(BATCH_ROWS);
        let batches = futures::stream::iter(starts).map(move |start| {
            let count = (rows - start).min(BATCH_ROWS as u64) as usize;
            let batch = generator.rows(start, count)?;
            Ok(RecordBatch::try_new(
                Arc::clone(&schema),
                batch.columns().to_vec(),
            )?)
        });
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        ))
    }
}

/// A generator as a continuous query's source.
pub struct GeneratorSource {
    options: GeneratorOptions,
    schema: SchemaRef,
    position: u64,
    /// The position the pace counts from (a restored checkpoint's).
    paced_from: u64,
    started: Option<Instant>,
    watermark: Option<WatermarkTracker>,
}

impl GeneratorSource {
    /// Reads `table` from its first row.
    pub fn new(table: &GeneratorTable) -> Result<Self> {
        let schema = table.schema();
        let watermark = match WatermarkSpec::from_schema(&schema) {
            Some(spec) => Some(WatermarkTracker::new(schema.index_of(&spec.column)?, &spec)),
            None => None,
        };
        Ok(Self {
            options: table.options.clone(),
            schema,
            position: 0,
            paced_from: 0,
            started: None,
            watermark,
        })
    }

    fn remaining(&self) -> u64 {
        self.options
            .total
            .map_or(u64::MAX, |total| total.saturating_sub(self.position))
    }

    /// Rows the pace allows now.
    fn due(&self) -> u64 {
        let rate = self.options.events_per_second;
        if rate == 0 {
            return u64::MAX;
        }
        let elapsed = self.started.map_or(0.0, |s| s.elapsed().as_secs_f64());
        ((elapsed * rate as f64) as u64 + self.paced_from).saturating_sub(self.position)
    }
}

#[async_trait]
impl StreamSource for GeneratorSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn wait(&mut self) -> Result<bool> {
        if self.remaining() == 0 {
            return Ok(false);
        }
        let started = *self.started.get_or_insert_with(Instant::now);
        let rate = self.options.events_per_second;
        if rate > 0 && self.due() == 0 {
            // Until the next row is due (sleeping is cancel-safe).
            let next =
                Duration::from_secs_f64((self.position + 1 - self.paced_from) as f64 / rate as f64);
            tokio::time::sleep_until(started + next).await;
        } else {
            // Let timers and commands in between batches.
            tokio::task::yield_now().await;
        }
        Ok(true)
    }

    async fn read(&mut self) -> Result<Vec<Change>> {
        self.started.get_or_insert_with(Instant::now);
        let count = self.due().min(self.remaining()).min(BATCH_ROWS as u64) as usize;
        if count == 0 {
            return Ok(Vec::new());
        }
        let batch = self.options.generator.rows(self.position, count)?;
        let batch = RecordBatch::try_new(Arc::clone(&self.schema), batch.columns().to_vec())?;
        self.position += count as u64;
        if let Some(tracker) = &mut self.watermark {
            tracker.observe(&batch)?;
        }
        Ok(vec![Change::insert(batch)])
    }

    fn watermark(&self) -> Option<Watermark> {
        self.watermark.as_ref().and_then(WatermarkTracker::current)
    }

    fn catches_up(&self) -> bool {
        self.options.total.is_some() && self.options.events_per_second == 0
    }

    fn exhausted(&self) -> bool {
        self.remaining() == 0
    }

    fn offset(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "position": self.position,
            "max_event_time": self.watermark.as_ref().and_then(WatermarkTracker::max_event_time),
        }))
    }

    fn restore(&mut self, offset: &serde_json::Value) -> Result<()> {
        let position = offset["position"].as_u64().ok_or_else(|| {
            datafusion::error::DataFusionError::Execution(format!(
                "corrupt generator offset in a checkpoint: {offset}"
            ))
        })?;
        self.position = position;
        self.paced_from = position;
        self.started = None;
        if let Some(tracker) = &mut self.watermark {
            tracker.set_max_event_time(offset["max_event_time"].as_i64());
        }
        Ok(())
    }
}
