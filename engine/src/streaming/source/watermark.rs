//! [`WatermarkTracker`]: a source's watermark from its event-time column,
//! as declared by `WATERMARK FOR ts AS ts - INTERVAL '5' SECOND`: the
//! largest event time seen, minus the declared delay.

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::max;
use datafusion::error::Result;

use crate::sql::watermark::WatermarkSpec;
use crate::streaming::signal::{Watermark, event_time_nanos};

/// Follows one source's event time.
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    column: usize,
    delay_nanos: i64,
    max_event_time: Option<i64>,
}

impl WatermarkTracker {
    /// A tracker of column `column` (its index in the source's rows).
    pub fn new(column: usize, spec: &WatermarkSpec) -> Self {
        Self {
            column,
            delay_nanos: spec.delay_nanos,
            max_event_time: None,
        }
    }

    /// Takes the event times of `batch` into account.
    pub fn observe(&mut self, batch: &RecordBatch) -> Result<()> {
        let nanos = event_time_nanos(batch.column(self.column))?;
        if let Some(batch_max) = max(&nanos) {
            self.max_event_time = Some(self.max_event_time.map_or(batch_max, |m| m.max(batch_max)));
        }
        Ok(())
    }

    /// The largest event time seen (what a checkpoint keeps).
    pub fn max_event_time(&self) -> Option<i64> {
        self.max_event_time
    }

    /// Resumes with `max_event_time` seen (from a checkpoint).
    pub fn set_max_event_time(&mut self, max_event_time: Option<i64>) {
        self.max_event_time = max_event_time;
    }

    /// The watermark: no row older than this is expected any more.
    pub fn current(&self) -> Option<Watermark> {
        self.max_event_time
            .map(|m| Watermark(m.saturating_sub(self.delay_nanos)))
    }
}
