//! Where a searched table's pieces are: its store, directory and schema,
//! and the runtime's Parquet metadata cache its reads share.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use object_store::ObjectStore;
use object_store::path::Path;

/// See the module documentation.
#[derive(Debug, Clone)]
pub(in crate::storage) struct TableFiles {
    pub store: Arc<dyn ObjectStore>,
    pub dir: Path,
    pub schema: SchemaRef,
    /// The runtime's Parquet metadata cache.
    pub metadata: Arc<FileMetadataCache>,
}
