//! [`DurableTable`]: a table whose rows live in Parquet files listed by its
//! newest manifest. Scans read the files through DataFusion's Parquet
//! source (projection, row-group pruning, limits, bounded memory); writes
//! commit a new manifest version.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, RecordBatch, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::TableParquetOptions;
use datafusion::common::{Constraints, DFSchema, SchemaExt};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use object_store::ObjectStore;
use object_store::path::Path;
use tokio::sync::Mutex;

use super::change_feed::{ChangeKind, TableSubscription};
use super::files::{DATA_STORE_URL, DataFileWriter, Snapshot, read_files};
use super::manifest::Manifest;
use super::row_change::{RowChange, RowChangeExec};
use super::scan_statistics::snapshot_statistics;
use super::sink::DurableSink;
use super::table_files::TableFiles;
use super::table_state::TableHandle;
use super::table_state::{IndexCatalog, TableState, catalog_entries};
use super::transaction::SessionTransaction;
use super::vector_bytes::VectorBytesAdapterFactory;
use super::versions::{CommitClock, TableHistory};

/// A table whose every acknowledged write is on durable storage.
pub struct DurableTable {
    pub(super) store: Arc<dyn ObjectStore>,
    pub(super) dir: Path,
    pub(super) schema: SchemaRef,
    constraints: Constraints,
    column_defaults: HashMap<String, Expr>,
    /// One writer at a time per table (within this process); the manifest's
    /// create-if-absent commit rejects writers from elsewhere.
    pub(super) state: Arc<Mutex<TableState>>,
    /// The committed vector indexes, for the planner (see
    /// [`TableState::index_catalog`]).
    pub(super) index_catalog: IndexCatalog,
    /// The versions open transactions read (see [`TableHistory`]).
    history: Arc<TableHistory>,
}

impl fmt::Debug for DurableTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableTable")
            .field("dir", &self.dir)
            .finish()
    }
}

impl DurableTable {
    pub(super) fn new(
        store: Arc<dyn ObjectStore>,
        dir: Path,
        manifest: Manifest,
        constraints: Constraints,
        column_defaults: HashMap<String, Expr>,
        clock: Arc<CommitClock>,
    ) -> Self {
        let snapshot = Snapshot::new(&store, &dir, &manifest.files);
        let index_catalog = Arc::new(RwLock::new(catalog_entries(&manifest)));
        let history = TableHistory::new(manifest.version, Arc::clone(&snapshot));
        Self {
            store,
            dir,
            schema: manifest.schema_ref(),
            constraints,
            column_defaults,
            state: Arc::new(Mutex::new(TableState {
                manifest,
                snapshot,
                subscribers: Vec::new(),
                index_catalog: Arc::clone(&index_catalog),
                history: Arc::clone(&history),
                clock,
                dropped: false,
            })),
            index_catalog,
            history,
        }
    }

    /// The table's appender (what INSERT and COPY use), for writers that
    /// commit outside a plan: exactly-once sinks.
    pub fn appender(&self) -> DurableSink {
        DurableSink::new(self.handle())
    }

    /// Marks the table dropped, before DROP TABLE deletes its files: a
    /// writer or transaction that still holds it cannot commit to it.
    pub async fn mark_dropped(&self) {
        self.state.lock().await.dropped = true;
    }

    /// Bytes in the data files of the newest committed version (what
    /// `pg_table_size` reports).
    pub fn stored_bytes(&self) -> u64 {
        self.history.newest().map_or(0, |version| {
            version.snapshot.files.iter().map(|f| f.file.size).sum()
        })
    }

    /// The table as its writers and transactions share it.
    pub(super) fn handle(&self) -> TableHandle {
        TableHandle {
            store: Arc::clone(&self.store),
            dir: self.dir.clone(),
            schema: Arc::clone(&self.schema),
            state: Arc::clone(&self.state),
            history: Arc::clone(&self.history),
        }
    }

    /// Where reads outside DataFusion's scans (vector searches, key
    /// lookups) find the table's pieces.
    pub(super) fn table_files(&self, session: &dyn Session) -> TableFiles {
        TableFiles {
            store: Arc::clone(&self.store),
            dir: self.dir.clone(),
            schema: Arc::clone(&self.schema),
            metadata: session
                .runtime_env()
                .cache_manager
                .get_file_metadata_cache(),
        }
    }

    /// The files a scan in `session` reads: the transaction's view of the
    /// table inside one, else the committed version as of now.
    pub(super) async fn snapshot_for(&self, session: &dyn Session) -> Result<Arc<Snapshot>> {
        match SessionTransaction::of(session.config()) {
            Some(transaction) => transaction.snapshot(&self.handle()).await,
            None => Ok(Arc::clone(&self.state.lock().await.snapshot)),
        }
    }

    /// Starts reading this table as a stream: its rows as of now, then every
    /// change committed after (see [`TableSubscription`]).
    pub async fn subscribe(&self) -> TableSubscription {
        let mut state = self.state.lock().await;
        let (subscription, sender) = TableSubscription::new(
            Arc::clone(&self.store),
            self.dir.clone(),
            Arc::clone(&self.schema),
            state.manifest.version,
            Arc::clone(&state.snapshot),
        );
        state.subscribers.push(sender);
        subscription
    }

    /// Plans a DELETE or UPDATE: the predicate and new values become
    /// physical expressions now; the table changes only when the plan runs
    /// ([`RowChangeExec`]).
    fn plan_row_change(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let df_schema = DFSchema::try_from(Arc::clone(&self.schema))?;
        let predicate = conjunction(filters)
            .map(|predicate| state.create_physical_expr(predicate, &df_schema))
            .transpose()?;
        let change = if assignments.is_empty() {
            RowChange::Delete
        } else {
            RowChange::Update(
                assignments
                    .into_iter()
                    .map(|(name, value)| {
                        let index = self.schema.index_of(&name).map_err(|_| {
                            DataFusionError::Plan(format!(
                                "column \"{name}\" of relation does not exist"
                            ))
                        })?;
                        Ok((index, state.create_physical_expr(value, &df_schema)?))
                    })
                    .collect::<Result<_>>()?,
            )
        };
        Ok(Arc::new(RowChangeExec::new(
            self.handle(),
            change,
            predicate,
        )))
    }

    /// `ALTER TABLE … ADD COLUMN`: the table with `field` appended, existing
    /// rows given `default` (evaluated per row, as Postgres does) or NULL.
    /// The rows are rewritten under the new schema and committed as the
    /// next version; the returned table replaces this one in the catalog.
    pub async fn with_added_column(
        &self,
        state: &dyn Session,
        field: Field,
        default: Option<Expr>,
    ) -> Result<DurableTable> {
        let mut table = self.state.lock().await;
        let mut fields: Vec<FieldRef> = self.schema.fields().iter().cloned().collect();
        fields.push(Arc::new(field.clone()));
        let schema = Arc::new(Schema::new_with_metadata(
            fields,
            self.schema.metadata().clone(),
        ));
        let value = default
            .as_ref()
            .map(|expr| state.create_physical_expr(expr.clone(), &DFSchema::empty()))
            .transpose()?;
        // File by file, so memory holds one file's rows whatever the table's
        // size.
        let mut writer = DataFileWriter::new(self.store.as_ref(), &self.dir, &schema);
        let widen = async |writer: &mut DataFileWriter<'_>| -> Result<()> {
            for file in &table.manifest.files {
                let existing = read_files(
                    self.store.as_ref(),
                    &self.dir,
                    std::slice::from_ref(file),
                    &self.schema,
                )
                .await?;
                for batch in existing {
                    let column = match &value {
                        Some(value) => {
                            let evaluated = value.evaluate(&batch)?.into_array(batch.num_rows())?;
                            cast(&evaluated, field.data_type())?
                        }
                        None => new_null_array(field.data_type(), batch.num_rows()),
                    };
                    if !field.is_nullable() && column.null_count() > 0 {
                        return Err(DataFusionError::Execution(format!(
                            "column \"{}\" of relation contains null values",
                            field.name()
                        )));
                    }
                    let mut columns = batch.columns().to_vec();
                    columns.push(column);
                    writer
                        .write(&RecordBatch::try_new(Arc::clone(&schema), columns)?)
                        .await?;
                }
            }
            Ok(())
        };
        if let Err(e) = widen(&mut writer).await {
            writer.abandon().await;
            return Err(e);
        }
        let files = writer.finish().await?;
        let mut column_defaults = self.column_defaults.clone();
        if let Some(default) = default {
            column_defaults.insert(field.name().clone(), default);
        }
        let mut next = table.manifest.next();
        next.schema = schema.as_ref().clone();
        next.set_column_defaults(&column_defaults)?;
        next.files = files;
        // A writer still holding this object (a plan prepared before the
        // ALTER) fails at its commit: the version it would take is this one.
        table.commit(&self.store, &self.dir, &mut next).await?;
        // Scans through this object read the new files too (Parquet reads
        // project the old columns out of them), so the old files can go.
        table
            .install(&self.store, &self.dir, next.clone(), ChangeKind::Schema)
            .await;
        Ok(DurableTable::new(
            Arc::clone(&self.store),
            self.dir.clone(),
            next,
            self.constraints.clone(),
            column_defaults,
            Arc::clone(&table.clock),
        ))
    }
}

#[async_trait]
impl TableProvider for DurableTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn constraints(&self) -> Option<&Constraints> {
        Some(&self.constraints)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.column_defaults.get(column)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Later writes do not change what this scan reads, and its files
        // outlive compaction until it ends.
        let snapshot = self.snapshot_for(state).await?;
        if snapshot.files.is_empty() {
            let projected = match projection {
                Some(indices) => Arc::new(self.schema.project(indices)?),
                None => Arc::clone(&self.schema),
            };
            return Ok(Arc::new(EmptyExec::new(projected)));
        }
        let options = TableParquetOptions {
            global: state.config_options().execution.parquet.clone(),
            ..TableParquetOptions::default()
        };
        // Filters are not taken at the logical level (the default
        // `Unsupported`): DataFusion's physical optimizer pushes the
        // FilterExec above this scan into the Parquet source itself, for
        // row-group and page pruning. (Logical `Inexact` pushdown breaks
        // plans optimised twice, as `PREPARE` plans are.)
        // Data files never change once written, so their footers and page
        // indexes are read once and kept in the runtime's metadata cache
        // (as DataFusion's listing tables do): a point lookup otherwise
        // spent most of its time re-reading them.
        let url = ObjectStoreUrl::parse(DATA_STORE_URL)?;
        let runtime = state.runtime_env();
        let readers = CachedParquetFileReaderFactory::new(
            runtime.object_store(&url)?,
            runtime.cache_manager.get_file_metadata_cache(),
        );
        let source = ParquetSource::new(Arc::clone(&self.schema))
            .with_table_parquet_options(options)
            .with_parquet_file_reader_factory(Arc::new(readers));
        let files: Vec<PartitionedFile> = snapshot
            .files
            .iter()
            .map(|live| {
                let mut partitioned = PartitionedFile::new(String::new(), live.file.size);
                partitioned.object_meta.location = live.location.clone();
                partitioned.with_extension(Arc::clone(&snapshot))
            })
            .collect();
        // One group in manifest order; DataFusion splits large scans into
        // byte ranges across partitions on its own.
        let config = FileScanConfigBuilder::new(url, Arc::new(source))
            .with_file_group(FileGroup::new(files))
            .with_statistics(snapshot_statistics(&self.table_files(state), &snapshot).await?)
            .with_expr_adapter(Some(Arc::new(VectorBytesAdapterFactory)))
            .with_limit(limit)
            .with_projection_indices(projection.cloned())?
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.plan_row_change(state, Vec::new(), filters)
    }

    async fn truncate(&self, state: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        // A DELETE without a predicate.
        self.delete_from(state, Vec::new()).await
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if assignments.is_empty() {
            return Err(DataFusionError::Plan("UPDATE sets no column".into()));
        }
        self.plan_row_change(state, assignments, filters)
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.schema
            .logically_equivalent_names_and_types(&input.schema())?;
        if insert_op != InsertOp::Append {
            return Err(DataFusionError::NotImplemented(format!(
                "{insert_op} is not supported on Sluice tables yet"
            )));
        }
        Ok(Arc::new(DataSinkExec::new(
            input,
            Arc::new(self.appender()),
            None,
        )))
    }
}
