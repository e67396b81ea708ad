//! Where a continuous query's rows come from: [`StreamSource`] and its
//! implementations: Sluice tables, generators (`datagen`, `nexmark`),
//! files arriving under a prefix, NATS JetStream streams and materialized
//! views.

pub mod datagen;
pub mod files;
pub mod generator;
pub mod nats;
pub mod nexmark;
mod table;
mod view;
mod watermark;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::Result;

use super::signal::{Change, Watermark};

pub use generator::{GeneratorSource, GeneratorTable};
pub use table::TableSource;
pub use view::ViewSource;
pub use watermark::WatermarkTracker;

/// A source of changes. The runner waits on [`Self::wait`] alongside its
/// timers and commands, so that wait must be cancel-safe; the reading
/// itself ([`Self::read`]) is never interrupted.
#[async_trait]
pub trait StreamSource: Send {
    /// The schema of the rows it produces.
    fn schema(&self) -> SchemaRef;

    /// Waits until rows are ready. `Ok(false)` once the source has ended.
    async fn wait(&mut self) -> Result<bool>;

    /// Reads some of the rows ready now (empty when none are).
    async fn read(&mut self) -> Result<Vec<Change>>;

    /// The source's watermark after the rows read so far, if it has one.
    fn watermark(&self) -> Option<Watermark>;

    /// How far the source lags behind what is available (table versions).
    fn lag(&self) -> u64 {
        0
    }

    /// Whether `FLUSH` reads everything the source has before closing the
    /// epoch (a table: every committed write; a bounded generator without a
    /// pace: all its rows). An unbounded or paced generator never runs dry,
    /// so `FLUSH` only closes the epoch with what it has made.
    fn catches_up(&self) -> bool {
        true
    }

    /// Whether the source has nothing more, ever (a bounded generator at
    /// its end), so that `FLUSH` can close every window.
    fn exhausted(&self) -> bool {
        false
    }

    /// Where the source stands after the rows read so far, for a
    /// checkpoint; `None` for a source that cannot resume from a position
    /// (its query runs without checkpoints and starts over after a restart).
    fn offset(&self) -> Option<serde_json::Value> {
        None
    }

    /// Resumes after `offset` (what [`Self::offset`] returned).
    fn restore(&mut self, _offset: &serde_json::Value) -> Result<()> {
        Err(datafusion::error::DataFusionError::Internal(
            "this source cannot resume from a checkpoint".into(),
        ))
    }
}
