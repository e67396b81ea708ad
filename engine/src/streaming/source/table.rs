//! [`TableSource`]: a Sluice table as a stream — the rows it holds when the
//! query starts, then every committed INSERT/COPY (inserts) and
//! UPDATE/DELETE/TRUNCATE (deletes and inserts).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::Result;

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
        for _ in 0..FILES_PER_READ {
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
}
