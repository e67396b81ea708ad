//! [`TableSource`]: a Sluice table as a stream — the rows it holds when the
//! query starts, then every committed INSERT/COPY (inserts) and
//! UPDATE/DELETE/TRUNCATE (deletes and inserts). Its position is the set
//! of files whose rows it has read, so a restored query reads only rows
//! written since its checkpoint.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};

use super::StreamSource;
use super::watermark::WatermarkTracker;
use crate::storage::{DeltaKind, TableSubscription};
use crate::streaming::signal::{Change, Watermark};

/// Files read per [`StreamSource::read`]: bounds what one read holds in
/// memory and lets barriers through between large backlogs.
const FILES_PER_READ: usize = 4;

/// A Sluice table read as a stream.
pub struct TableSource {
    subscription: TableSubscription,
    schema: SchemaRef,
    watermark: Option<WatermarkTracker>,
}

impl TableSource {
    /// Reads `subscription`, with a watermark when `watermark` is given.
    pub fn new(subscription: TableSubscription, watermark: Option<WatermarkTracker>) -> Self {
        let schema = Arc::clone(subscription.schema());
        Self {
            subscription,
            schema,
            watermark,
        }
    }
}

#[async_trait]
impl StreamSource for TableSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn wait(&mut self) -> Result<bool> {
        Ok(self.subscription.wait().await)
    }

    async fn read(&mut self) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        let mut files = 0;
        // A DELETE's or UPDATE's changed rows (already in memory) are read
        // to their end, so a barrier always finds the reader at a position
        // a checkpoint can record.
        while files < FILES_PER_READ || self.subscription.inside_row_change() {
            files += 1;
            let Some(delta) = self.subscription.next_delta().await? else {
                break;
            };
            for batch in delta.batches {
                let batch =
                    RecordBatch::try_new(Arc::clone(&self.schema), batch.columns().to_vec())?;
                if let Some(tracker) = &mut self.watermark {
                    tracker.observe(&batch)?;
                }
                changes.push(match delta.kind {
                    DeltaKind::Insert => Change::insert(batch),
                    DeltaKind::Delete => Change::delete(batch),
                });
            }
        }
        Ok(changes)
    }

    fn watermark(&self) -> Option<Watermark> {
        self.watermark.as_ref().and_then(WatermarkTracker::current)
    }

    fn lag(&self) -> u64 {
        self.subscription.versions_behind() as u64
    }

    /// The written files whose rows were read (see
    /// [`TableSubscription::position`]) and the newest event time seen.
    fn offset(&self) -> Option<serde_json::Value> {
        Some(match self.subscription.position() {
            Some(files) => serde_json::json!({
                "files": files,
                "max_event_time": self.watermark.as_ref().and_then(WatermarkTracker::max_event_time),
            }),
            // Recorded as unusable: a restore from it starts over.
            None => serde_json::Value::Null,
        })
    }

    fn restore(&mut self, offset: &serde_json::Value) -> Result<()> {
        let files: Vec<String> = offset["files"]
            .as_array()
            .ok_or_else(|| {
                DataFusionError::Execution(
                    "the checkpoint holds no position in the table (taken inside a change)".into(),
                )
            })?
            .iter()
            .filter_map(|file| file.as_str().map(str::to_owned))
            .collect();
        self.subscription.resume(&files)?;
        if let Some(tracker) = &mut self.watermark {
            tracker.set_max_event_time(offset["max_event_time"].as_i64());
        }
        Ok(())
    }
}
