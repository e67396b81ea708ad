//! A table's data files: writing and reading Parquet, and the snapshots
//! that keep files alive while scans read them.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::manifest::{DataFile, storage_error};

/// The URL under which the data directory's store is registered with
/// DataFusion, so table scans read through the same `object_store`.
pub const DATA_STORE_URL: &str = "sluice://data";

/// Writes `batches` as one new Parquet file in the table's `data/` folder.
/// The Arrow schema (Sluice types' metadata included) is kept in the file.
pub async fn write_data_file(
    store: &dyn ObjectStore,
    dir: &Path,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<DataFile> {
    let mut buffer = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buffer, Arc::clone(schema), None)?;
    let mut rows = 0u64;
    for batch in batches {
        writer.write(batch)?;
        rows += batch.num_rows() as u64;
    }
    writer.close()?;
    let relative = format!("data/{}.parquet", uuid::Uuid::new_v4());
    let size = buffer.len() as u64;
    store
        .put(&resolve(dir, &relative), PutPayload::from(buffer))
        .await
        .map_err(storage_error)?;
    Ok(DataFile {
        path: relative,
        rows,
        size,
    })
}

/// A path relative to a table's directory (`data/….parquet`).
pub fn resolve(dir: &Path, relative: &str) -> Path {
    // `dir` is already encoded; `parse` keeps it so (`from` would encode a
    // `%` in a table name a second time).
    Path::parse(format!("{dir}/{relative}")).unwrap_or_else(|_| dir.clone().join(relative))
}

/// Reads whole data files into memory, stamped with the table's schema (for
/// rewrites: DELETE, UPDATE, compaction, ADD COLUMN).
pub async fn read_files(
    store: &dyn ObjectStore,
    dir: &Path,
    files: &[DataFile],
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let mut batches = Vec::new();
    for file in files {
        let bytes = store
            .get(&resolve(dir, &file.path))
            .await
            .map_err(storage_error)?
            .bytes()
            .await
            .map_err(storage_error)?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
        for batch in reader {
            let batch = batch.map_err(DataFusionError::from)?;
            batches.push(RecordBatch::try_new(
                Arc::clone(schema),
                batch.columns().to_vec(),
            )?);
        }
    }
    Ok(batches)
}

/// A data file of the table, shared by every snapshot that lists it. Once
/// the table drops it (compaction, DELETE) it is retired, and deleted when
/// the last snapshot listing it (the last scan reading it) lets go.
#[derive(Debug)]
pub struct LiveFile {
    store: Arc<dyn ObjectStore>,
    /// Where the file is, in the store.
    pub location: Path,
    /// Its manifest entry.
    pub file: DataFile,
    retired: AtomicBool,
}

impl LiveFile {
    fn new(store: &Arc<dyn ObjectStore>, dir: &Path, file: DataFile) -> Arc<Self> {
        Arc::new(Self {
            store: Arc::clone(store),
            location: resolve(dir, &file.path),
            file,
            retired: AtomicBool::new(false),
        })
    }

    /// Marks `file` dropped from the table: deleted now if nothing else
    /// holds it, else when its last holder does. A crash before that leaves
    /// it to the garbage collection at the next open.
    async fn retire(file: Arc<Self>) {
        match Arc::try_unwrap(file) {
            Ok(unused) => {
                delete(unused.store.as_ref(), &unused.location).await;
                // Deleted: its Drop has nothing left to do.
            }
            Err(shared) => shared.retired.store(true, Ordering::SeqCst),
        }
    }
}

impl Drop for LiveFile {
    fn drop(&mut self) {
        if !self.retired.load(Ordering::SeqCst) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let store = Arc::clone(&self.store);
                let location = self.location.clone();
                runtime.spawn(async move { delete(store.as_ref(), &location).await });
            }
            Err(_) => log::info!("replaced file {} left for the next open", self.location),
        }
    }
}

/// The data files of one committed version, in manifest order. Scans hold
/// the snapshot they read (in their file list), which keeps its files.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Files of this version.
    pub files: Vec<Arc<LiveFile>>,
}

impl Snapshot {
    /// The first snapshot of a table opened or created with `files`.
    pub fn new(store: &Arc<dyn ObjectStore>, dir: &Path, files: &[DataFile]) -> Arc<Self> {
        Arc::new(Self {
            files: files
                .iter()
                .map(|f| LiveFile::new(store, dir, f.clone()))
                .collect(),
        })
    }

    /// The snapshot of `files` following `self`: files both list are shared,
    /// new ones are added.
    pub fn next(&self, store: &Arc<dyn ObjectStore>, dir: &Path, files: &[DataFile]) -> Arc<Self> {
        let next = files
            .iter()
            .map(|file| {
                self.files
                    .iter()
                    .find(|live| live.file.path == file.path)
                    .cloned()
                    .unwrap_or_else(|| LiveFile::new(store, dir, file.clone()))
            })
            .collect();
        Arc::new(Self { files: next })
    }

    /// Replaces `previous` (which the table no longer uses) by `next`:
    /// files `next` does not list are retired.
    pub async fn succeed(previous: Arc<Self>, next: &Snapshot) {
        let dropped: Vec<Arc<LiveFile>> = previous
            .files
            .iter()
            .filter(|old| !next.files.iter().any(|f| Arc::ptr_eq(f, old)))
            .cloned()
            .collect();
        // Release the table's hold first, so files no scan reads go now.
        drop(previous);
        for file in dropped {
            LiveFile::retire(file).await;
        }
    }
}

async fn delete(store: &dyn ObjectStore, path: &Path) {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => log::warn!("cannot delete replaced file {path}: {e}"),
    }
}
