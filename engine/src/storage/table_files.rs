//! Where a table's pieces are for reads outside DataFusion's scans (vector
//! searches, key lookups): its store, directory and schema,
//! and the runtime's Parquet metadata cache its reads share.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, ParquetFileReaderFactory,
};
use datafusion::error::Result;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use object_store::ObjectStore;
use object_store::path::Path;

use super::files::LiveFile;

/// See the module documentation.
#[derive(Debug, Clone)]
pub(in crate::storage) struct TableFiles {
    pub store: Arc<dyn ObjectStore>,
    pub dir: Path,
    pub schema: SchemaRef,
    /// The runtime's Parquet metadata cache.
    pub metadata: Arc<FileMetadataCache>,
}

impl TableFiles {
    /// The Parquet metadata (footer) of `live`, parsed once and kept in the
    /// runtime's metadata cache.
    pub async fn parquet_metadata(&self, live: &LiveFile) -> Result<Arc<ParquetMetaData>> {
        let mut partitioned = PartitionedFile::new(String::new(), live.file.size);
        partitioned.object_meta.location = live.location.clone();
        let mut reader = CachedParquetFileReaderFactory::new(
            Arc::clone(&self.store),
            Arc::clone(&self.metadata),
        )
        .create_reader(0, partitioned, None, &ExecutionPlanMetricsSet::new())?;
        Ok(reader.get_metadata(None).await?)
    }
}
