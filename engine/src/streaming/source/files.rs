//! `'connector' = 'filesystem'`: files arriving under a prefix of a local
//! folder or an `s3://` bucket, read as rows as they appear.
//!
//! ```sql
//! CREATE TABLE clicks (id BIGINT, page TEXT)
//! WITH ('connector' = 'filesystem', 'path' = 'file:///data/in/', 'format' = 'parquet' | 'csv' | 'json');
//! CREATE TABLE drops (ref OBJECT_REF)
//! WITH ('connector' = 'filesystem', 'path' = 's3://bucket/images/', 'format' = 'object_ref');
//! ```
//!
//! Every file under the prefix is read once, in name order, when it is
//! first listed (the prefix is listed every `poll_interval_ms`, default
//! 1000, and at `FLUSH`); `csv` takes `'csv.header' = 'true'`. With
//! `'format' = 'object_ref'` each new object is one row holding a
//! reference to it, so `read_image(ref)` and a model can follow in the same
//! continuous query. A file that does not parse stops the query, with the
//! file named in its status (`last_error`). A one-off SELECT reads the files
//! there are now. The set of files read is the source's position: a
//! checkpoint records it, and a restored query reads only the files it had
//! not read.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, TableType};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::physical_plan::ExecutionPlan;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use sluice_types::SluiceType;
use sluice_types::object_ref::{ObjectRef, object_ref_array};

use super::StreamSource;
use super::generator::{OptionBag, invalid_option};
use super::watermark::WatermarkTracker;
use crate::sql::watermark::WatermarkSpec;
use crate::streaming::signal::{Change, Watermark};

/// Files read per [`StreamSource::read`], so barriers pass between them.
const FILES_PER_READ: usize = 8;

/// How the files' bytes become rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileRows {
    /// Apache Parquet.
    Parquet,
    /// CSV, with or without a header line.
    Csv { header: bool },
    /// Newline-delimited JSON.
    Json,
    /// One `OBJECT_REF` row per file.
    ObjectRef,
}

/// Where the files are and how to read them.
#[derive(Debug, Clone)]
pub struct FileLocation {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// `file://` or `s3://bucket`: what an object's URI starts with.
    base: String,
    rows: FileRows,
    poll: Duration,
}

impl FileLocation {
    /// The location a table's options name; `open` turns a path into a
    /// store and prefix.
    pub fn parse(
        options: &mut OptionBag,
        schema: &SchemaRef,
        open: impl FnOnce(&str) -> Result<(Arc<dyn ObjectStore>, Path, String)>,
    ) -> Result<Self> {
        let path = options
            .take("path")
            .ok_or_else(|| invalid_option("a filesystem table needs 'path'"))?;
        let format = options
            .take("format")
            .ok_or_else(|| invalid_option("a filesystem table needs 'format'"))?;
        let rows = match format.to_ascii_lowercase().as_str() {
            "parquet" => FileRows::Parquet,
            "csv" => FileRows::Csv {
                header: options
                    .take("csv.header")
                    .is_some_and(|h| h.eq_ignore_ascii_case("true")),
            },
            "json" | "ndjson" => FileRows::Json,
            "object_ref" => {
                let single_ref = schema.fields().len() == 1
                    && SluiceType::of_field(schema.field(0)) == Some(SluiceType::ObjectRef);
                if !single_ref {
                    return Err(invalid_option(
                        "'format' = 'object_ref' makes one column: (ref OBJECT_REF)",
                    ));
                }
                FileRows::ObjectRef
            }
            other => {
                return Err(invalid_option(&format!(
                    "'format' must be 'parquet', 'csv', 'json' or 'object_ref', got '{other}'"
                )));
            }
        };
        let poll = Duration::from_millis(
            options
                .take_u64(&["poll_interval_ms"])?
                .unwrap_or(1000)
                .max(10),
        );
        let (store, prefix, base) = open(&path)?;
        Ok(Self {
            store,
            prefix,
            base,
            rows,
            poll,
        })
    }

    /// The objects under the prefix now, by name.
    async fn list(&self) -> Result<Vec<ObjectMeta>> {
        let mut objects: Vec<ObjectMeta> = self
            .store
            .list(Some(&self.prefix))
            .try_collect()
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        objects.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(objects)
    }

    fn uri(&self, meta: &ObjectMeta) -> String {
        // `file://` + `/` + `tmp/in/a.csv`, `s3://bucket` + `/` + `key`.
        format!("{}/{}", self.base, meta.location)
    }

    /// The rows of `objects`, in `schema`.
    async fn read(&self, objects: &[ObjectMeta], schema: &SchemaRef) -> Result<Vec<RecordBatch>> {
        if self.rows == FileRows::ObjectRef {
            let refs: Vec<Option<ObjectRef>> = objects
                .iter()
                .map(|meta| {
                    Some(ObjectRef {
                        uri: self.uri(meta),
                        size: i64::try_from(meta.size).ok(),
                        etag: meta.e_tag.clone(),
                        version: meta.version.clone(),
                        content_type: None,
                        last_modified: Some(meta.last_modified.timestamp_micros()),
                    })
                })
                .collect();
            if refs.is_empty() {
                return Ok(Vec::new());
            }
            return Ok(vec![RecordBatch::try_new(
                Arc::clone(schema),
                vec![object_ref_array(&refs)?],
            )?]);
        }
        let mut batches = Vec::new();
        for meta in objects {
            let failed = |e: &dyn std::fmt::Display| {
                DataFusionError::Execution(format!("cannot read {}: {e}", self.uri(meta)))
            };
            let bytes = self
                .store
                .get(&meta.location)
                .await
                .map_err(|e| failed(&e))?
                .bytes()
                .await
                .map_err(|e| failed(&e))?;
            let read: Vec<RecordBatch> = match self.rows {
                FileRows::Parquet => ParquetRecordBatchReaderBuilder::try_new(bytes)
                    .and_then(|b| b.build())
                    .map_err(|e| failed(&e))?
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| failed(&e))?,
                FileRows::Csv { header } => {
                    let file_schema = if header {
                        csv_schema(&bytes, schema).map_err(|e| failed(&e))?
                    } else {
                        Arc::clone(schema)
                    };
                    datafusion::arrow::csv::ReaderBuilder::new(file_schema)
                        .with_header(header)
                        .build(Cursor::new(bytes))
                        .map_err(|e| failed(&e))?
                        .collect::<std::result::Result<_, _>>()
                        .map_err(|e| failed(&e))?
                }
                FileRows::Json => datafusion::arrow::json::ReaderBuilder::new(Arc::clone(schema))
                    .build(Cursor::new(bytes))
                    .map_err(|e| failed(&e))?
                    .collect::<std::result::Result<_, _>>()
                    .map_err(|e| failed(&e))?,
                FileRows::ObjectRef => Vec::new(),
            };
            for batch in read {
                batches.push(conform(&batch, schema).map_err(|e| failed(&e))?);
            }
        }
        Ok(batches)
    }
}

/// The schema of a CSV file with a header: its own column names, each
/// typed as the table's column of that name (others as inferred), so the
/// file's columns are matched by name, in any order.
fn csv_schema(bytes: &[u8], table: &SchemaRef) -> Result<SchemaRef> {
    let (inferred, _) = datafusion::arrow::csv::reader::Format::default()
        .with_header(true)
        .infer_schema(Cursor::new(bytes), Some(100))?;
    let fields: Vec<_> = inferred
        .fields()
        .iter()
        .map(|field| match table.field_with_name(field.name()) {
            Ok(column) => Arc::new(column.as_ref().clone().with_nullable(true)),
            Err(_) => Arc::clone(field),
        })
        .collect();
    Ok(Arc::new(datafusion::arrow::datatypes::Schema::new(fields)))
}

/// `batch` in `schema`: columns by name (a Parquet file may hold more, in
/// another order), cast to the table's types.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let column = batch.column_by_name(field.name()).ok_or_else(|| {
                DataFusionError::Execution(format!("the file has no column {}", field.name()))
            })?;
            Ok(cast(column, field.data_type())?)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// A filesystem table for one-off queries: the files there are now.
#[derive(Debug)]
pub struct FilesTable {
    location: FileLocation,
    schema: SchemaRef,
}

impl FilesTable {
    /// The table of rows of `schema` at `location`.
    pub fn new(location: FileLocation, schema: SchemaRef) -> Self {
        Self { location, schema }
    }
}

#[async_trait]
impl TableProvider for FilesTable {
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
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let objects = self.location.list().await?;
        let batches = self.location.read(&objects, &self.schema).await?;
        Ok(MemorySourceConfig::try_new_exec(
            &[batches],
            Arc::clone(&self.schema),
            projection.cloned(),
        )?)
    }
}

/// A filesystem table as a continuous query's source.
pub struct FileSource {
    location: FileLocation,
    schema: SchemaRef,
    /// Files read (the source's position).
    seen: HashSet<Path>,
    pending: VecDeque<ObjectMeta>,
    watermark: Option<WatermarkTracker>,
}

impl FileSource {
    /// Reads `table`'s files from the first.
    pub fn new(table: &FilesTable) -> Result<Self> {
        let schema = Arc::clone(&table.schema);
        let watermark = match WatermarkSpec::from_schema(&schema) {
            Some(spec) => Some(WatermarkTracker::new(schema.index_of(&spec.column)?, &spec)),
            None => None,
        };
        Ok(Self {
            location: table.location.clone(),
            schema,
            seen: HashSet::new(),
            pending: VecDeque::new(),
            watermark,
        })
    }

    /// Lists the prefix and queues the files not seen yet.
    async fn discover(&mut self) -> Result<()> {
        let queued: BTreeSet<Path> = self.pending.iter().map(|m| m.location.clone()).collect();
        for meta in self.location.list().await? {
            if !self.seen.contains(&meta.location) && !queued.contains(&meta.location) {
                self.pending.push_back(meta);
            }
        }
        Ok(())
    }
}

#[async_trait]
impl StreamSource for FileSource {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    async fn wait(&mut self) -> Result<bool> {
        while self.pending.is_empty() {
            // Listing is cancel-safe: files are marked seen only when read.
            self.discover().await?;
            if self.pending.is_empty() {
                tokio::time::sleep(self.location.poll).await;
            }
        }
        Ok(true)
    }

    async fn read(&mut self) -> Result<Vec<Change>> {
        if self.pending.is_empty() {
            self.discover().await?;
        }
        // Empty files yield nothing: go on until rows or no files are left,
        // so an empty result means "nothing more now" (what FLUSH reads to).
        while !self.pending.is_empty() {
            let count = self.pending.len().min(FILES_PER_READ);
            let objects: Vec<ObjectMeta> = self.pending.drain(..count).collect();
            let batches = self.location.read(&objects, &self.schema).await?;
            self.seen.extend(objects.into_iter().map(|m| m.location));
            let mut changes = Vec::with_capacity(batches.len());
            for batch in batches.into_iter().filter(|b| b.num_rows() > 0) {
                if let Some(tracker) = &mut self.watermark {
                    tracker.observe(&batch)?;
                }
                changes.push(Change::insert(batch));
            }
            if !changes.is_empty() {
                return Ok(changes);
            }
        }
        Ok(Vec::new())
    }

    fn watermark(&self) -> Option<Watermark> {
        self.watermark.as_ref().and_then(WatermarkTracker::current)
    }

    /// The files read so far (sorted, so equal positions encode equally)
    /// and the newest event time seen, for the watermark.
    fn offset(&self) -> Option<serde_json::Value> {
        let mut read: Vec<&str> = self.seen.iter().map(Path::as_ref).collect();
        read.sort_unstable();
        Some(serde_json::json!({
            "read": read,
            "max_event_time": self.watermark.as_ref().and_then(WatermarkTracker::max_event_time),
        }))
    }

    fn restore(&mut self, offset: &serde_json::Value) -> Result<()> {
        let read = offset["read"].as_array().ok_or_else(|| {
            DataFusionError::Execution(format!(
                "corrupt file-source offset in a checkpoint: {offset}"
            ))
        })?;
        // `parse`, not `from`: the names are stored encoded already.
        self.seen = read
            .iter()
            .filter_map(serde_json::Value::as_str)
            .map(|name| {
                Path::parse(name).map_err(|e| {
                    DataFusionError::Execution(format!("corrupt file name in a checkpoint: {e}"))
                })
            })
            .collect::<Result<_>>()?;
        // Files listed before the restore are listed again, minus those read.
        self.pending.clear();
        if let Some(tracker) = &mut self.watermark {
            tracker.set_max_event_time(offset["max_event_time"].as_i64());
        }
        Ok(())
    }
}
