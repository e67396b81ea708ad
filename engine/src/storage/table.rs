//! Durable tables and the store that opens, creates and drops them.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::array::{Array, new_null_array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, FieldRef, Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Constraints, SchemaExt};
use datafusion::datasource::MemTable;
use datafusion::datasource::sink::{DataSink, DataSinkExec};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, SendableRecordBatchStream,
};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio::sync::Mutex;

use super::definitions::{Definition, Definitions};
use super::manifest::{self, DataFile, Manifest, storage_error};

/// Where every durable table lives: an object store and a root path in it.
#[derive(Debug, Clone)]
pub struct TableStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
    definitions: Arc<Definitions>,
    models: Arc<Definitions>,
    schemas: Arc<Definitions>,
}

impl TableStore {
    /// Tables under `root` of `store`.
    pub fn new(store: Arc<dyn ObjectStore>, root: Path) -> Self {
        let definitions = Arc::new(Definitions::new(&root));
        let models = Arc::new(Definitions::in_folder(&root, "models"));
        let schemas = Arc::new(Definitions::in_folder(&root, "schemas"));
        Self {
            store,
            root,
            definitions,
            models,
            schemas,
        }
    }

    /// The schemas created with `CREATE SCHEMA`, oldest first.
    pub async fn schema_names(&self) -> Result<Vec<String>> {
        Ok(self
            .schemas
            .load(self.store.as_ref())
            .await?
            .into_iter()
            .map(|d| d.name)
            .collect())
    }

    /// Remembers schema `name`.
    pub async fn save_schema(&self, name: &str) -> Result<()> {
        let definition = Definition {
            name: name.to_owned(),
            sql: format!("CREATE SCHEMA {name}"),
        };
        self.schemas.save(self.store.as_ref(), &definition).await
    }

    /// Forgets schema `name`.
    pub async fn remove_schema(&self, name: &str) -> Result<()> {
        self.schemas.remove(self.store.as_ref(), name).await
    }

    /// Deletes the tables and definitions of schema `name` (`DROP SCHEMA …
    /// CASCADE`).
    pub async fn drop_schema_contents(&self, name: &str) -> Result<()> {
        for table in self.table_names(name).await? {
            self.drop_table(name, &table).await?;
        }
        let prefix = format!("{name}.");
        for definition in self.definitions().await? {
            if definition.name.starts_with(&prefix) {
                self.remove_definition(&definition.name).await?;
            }
        }
        Ok(())
    }

    /// Schemas that hold table folders.
    async fn table_schemas(&self) -> Result<Vec<String>> {
        self.subfolders(&self.root.clone().join("tables")).await
    }

    async fn table_names(&self, schema: &str) -> Result<Vec<String>> {
        self.subfolders(&self.root.clone().join("tables").join(schema))
            .await
    }

    async fn subfolders(&self, dir: &Path) -> Result<Vec<String>> {
        let listing = self
            .store
            .list_with_delimiter(Some(dir))
            .await
            .map_err(storage_error)?;
        Ok(listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect())
    }

    /// The stored `CREATE MODEL` statements, oldest first.
    pub async fn model_definitions(&self) -> Result<Vec<Definition>> {
        self.models.load(self.store.as_ref()).await
    }

    /// Stores the statement that created model `name`.
    pub async fn save_model_definition(&self, name: &str, sql: &str) -> Result<()> {
        let definition = Definition {
            name: name.to_owned(),
            sql: sql.to_owned(),
        };
        self.models.save(self.store.as_ref(), &definition).await
    }

    /// Forgets model `name`.
    pub async fn remove_model_definition(&self, name: &str) -> Result<()> {
        self.models.remove(self.store.as_ref(), name).await
    }

    /// Whether the marker object `name` exists under `catalog/`.
    pub async fn has_marker(&self, name: &str) -> Result<bool> {
        let path = self.root.clone().join("catalog").join(name);
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(storage_error(e)),
        }
    }

    /// Writes the marker object `name` under `catalog/` (a fact about the
    /// data directory, such as "the default models were registered once").
    pub async fn set_marker(&self, name: &str) -> Result<()> {
        let path = self.root.clone().join("catalog").join(name);
        self.store
            .put(&path, object_store::PutPayload::from_static(b"1"))
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    /// The stored view and external-table definitions, oldest first.
    pub async fn definitions(&self) -> Result<Vec<Definition>> {
        self.definitions.load(self.store.as_ref()).await
    }

    /// Stores the statement that defined `name` (a view or external table).
    pub async fn save_definition(&self, name: &str, sql: &str) -> Result<()> {
        let definition = Definition {
            name: name.to_owned(),
            sql: sql.to_owned(),
        };
        self.definitions
            .save(self.store.as_ref(), &definition)
            .await
    }

    /// Forgets the definition of `name`.
    pub async fn remove_definition(&self, name: &str) -> Result<()> {
        self.definitions.remove(self.store.as_ref(), name).await
    }

    fn table_dir(&self, schema: &str, table: &str) -> Path {
        self.root.clone().join("tables").join(schema).join(table)
    }

    /// Opens every table that has a committed manifest: (schema, table
    /// name, table).
    pub async fn open_all(&self) -> Result<Vec<(String, String, Arc<DurableTable>)>> {
        let mut tables = Vec::new();
        for schema in self.table_schemas().await? {
            for name in self.table_names(&schema).await? {
                if let Some(table) = self.open(&schema, &name).await? {
                    tables.push((schema.clone(), name, Arc::new(table)));
                }
            }
        }
        Ok(tables)
    }

    async fn open(&self, schema: &str, name: &str) -> Result<Option<DurableTable>> {
        let dir = self.table_dir(schema, name);
        let Some(manifest) = manifest::latest(self.store.as_ref(), &dir).await? else {
            return Ok(None);
        };
        let removed = manifest::collect_garbage(self.store.as_ref(), &dir, &manifest).await?;
        if removed > 0 {
            log::info!("removed {removed} unreferenced file(s) of {dir}");
        }
        let mut groups = Vec::with_capacity(manifest.files.len());
        for file in &manifest.files {
            let mut batches = Vec::new();
            for batch in read_parquet(self.store.as_ref(), &resolve(&dir, &file.path)).await? {
                batches.push(RecordBatch::try_new(
                    manifest.schema_ref(),
                    batch.columns().to_vec(),
                )?);
            }
            groups.push(batches);
        }
        let column_defaults = manifest.column_defaults();
        Ok(Some(DurableTable::new(
            self.clone(),
            dir,
            manifest,
            groups,
            Constraints::default(),
            column_defaults,
        )))
    }

    /// Creates a table holding `batches` and commits its first version.
    pub async fn create(
        &self,
        schema_name: &str,
        name: &str,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        constraints: Constraints,
        column_defaults: HashMap<String, Expr>,
    ) -> Result<DurableTable> {
        let dir = self.table_dir(schema_name, name);
        // A dropped table's leftovers must not leak into a new one.
        self.delete_dir(&dir).await?;
        let mut files = Vec::new();
        let mut groups = Vec::new();
        if batches.iter().any(|b| b.num_rows() > 0) {
            files.push(write_data_file(self.store.as_ref(), &dir, &schema, &batches).await?);
            groups.push(batches);
        }
        let mut manifest = Manifest {
            version: 1,
            schema: schema.as_ref().clone(),
            files,
            column_defaults: Vec::new(),
        };
        manifest.set_column_defaults(&column_defaults)?;
        manifest::commit(self.store.as_ref(), &dir, &manifest).await?;
        Ok(DurableTable::new(
            self.clone(),
            dir,
            manifest,
            groups,
            constraints,
            column_defaults,
        ))
    }

    /// Deletes a table's manifests and files.
    pub async fn drop_table(&self, schema: &str, name: &str) -> Result<()> {
        self.delete_dir(&self.table_dir(schema, name)).await
    }

    async fn delete_dir(&self, dir: &Path) -> Result<()> {
        // Manifests first: once they are gone the table no longer exists,
        // even if deleting its data files is interrupted.
        for sub in ["_manifest", "data"] {
            let paths: Vec<Path> = self
                .store
                .list(Some(&dir.clone().join(sub)))
                .map_ok(|meta| meta.location)
                .try_collect()
                .await
                .map_err(storage_error)?;
            for path in paths {
                match self.store.delete(&path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(storage_error(e)),
                }
            }
        }
        Ok(())
    }
}

/// Mutable state of a table: the committed manifest and its rows.
#[derive(Debug)]
struct TableState {
    manifest: Manifest,
    /// The rows of each data file, in manifest order.
    files: Vec<Vec<RecordBatch>>,
}

/// A table whose every acknowledged write is on durable storage.
pub struct DurableTable {
    store: TableStore,
    dir: Path,
    schema: SchemaRef,
    constraints: Constraints,
    column_defaults: HashMap<String, Expr>,
    /// One writer at a time per table (within this process); the manifest's
    /// create-if-absent commit rejects writers from elsewhere.
    state: Arc<Mutex<TableState>>,
}

impl fmt::Debug for DurableTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableTable")
            .field("dir", &self.dir)
            .finish()
    }
}

impl DurableTable {
    fn new(
        store: TableStore,
        dir: Path,
        manifest: Manifest,
        files: Vec<Vec<RecordBatch>>,
        constraints: Constraints,
        column_defaults: HashMap<String, Expr>,
    ) -> Self {
        Self {
            store,
            dir,
            schema: manifest.schema_ref(),
            constraints,
            column_defaults,
            state: Arc::new(Mutex::new(TableState { manifest, files })),
        }
    }
}

impl DurableTable {
    /// The committed rows as a MemTable snapshot: scans read it, and DELETE
    /// and UPDATE apply their predicates to it.
    fn rows(&self, table: &TableState) -> Result<MemTable> {
        MemTable::try_new(Arc::clone(&self.schema), vec![table.files.concat()])
    }

    /// Replaces the table's contents with `rows`: one new data file and a
    /// manifest that lists only it, then the old files are deleted. DELETE
    /// and UPDATE rewrite the whole table this way (fine for the in-memory
    /// tables of today; file-level rewrites come with Parquet scans).
    async fn replace_all(
        &self,
        table: &mut TableState,
        state: &dyn Session,
        rows: &MemTable,
    ) -> Result<()> {
        let plan = rows.scan(state, None, &[], None).await?;
        let batches: Vec<RecordBatch> =
            datafusion::physical_plan::collect(plan, state.task_ctx()).await?;
        let store = self.store.store.as_ref();
        let mut next = table.manifest.clone();
        next.version += 1;
        let replaced = std::mem::take(&mut next.files);
        let mut files = Vec::new();
        if batches.iter().any(|b| b.num_rows() > 0) {
            next.files
                .push(write_data_file(store, &self.dir, &self.schema, &batches).await?);
            files.push(batches);
        }
        manifest::commit(store, &self.dir, &next).await?;
        table.manifest = next;
        table.files = files;
        for old in replaced {
            if let Err(e) = store.delete(&resolve(&self.dir, &old.path)).await {
                log::warn!("cannot delete replaced file {}: {e}", old.path);
            }
        }
        Ok(())
    }
}

impl DurableTable {
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
        let table = self.state.lock().await;
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
        let mut batches = Vec::new();
        for batch in table.files.iter().flatten() {
            let column = match &value {
                Some(value) => {
                    let evaluated = value.evaluate(batch)?.into_array(batch.num_rows())?;
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
            batches.push(RecordBatch::try_new(Arc::clone(&schema), columns)?);
        }
        let store = self.store.store.as_ref();
        let mut column_defaults = self.column_defaults.clone();
        if let Some(default) = default {
            column_defaults.insert(field.name().clone(), default);
        }
        let mut next = table.manifest.clone();
        next.version += 1;
        next.schema = schema.as_ref().clone();
        next.set_column_defaults(&column_defaults)?;
        let replaced = std::mem::take(&mut next.files);
        let mut groups = Vec::new();
        if batches.iter().any(|b| b.num_rows() > 0) {
            next.files
                .push(write_data_file(store, &self.dir, &schema, &batches).await?);
            groups.push(batches);
        }
        // A writer still holding this object (a plan prepared before the
        // ALTER) fails at its commit: the version it would take is this one.
        manifest::commit(store, &self.dir, &next).await?;
        drop(table);
        for old in replaced {
            if let Err(e) = store.delete(&resolve(&self.dir, &old.path)).await {
                log::warn!("cannot delete replaced file {}: {e}", old.path);
            }
        }
        Ok(DurableTable::new(
            self.store.clone(),
            self.dir.clone(),
            next,
            groups,
            self.constraints.clone(),
            column_defaults,
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
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // A snapshot of the committed rows: later writes do not change it.
        let rows = self.rows(&*self.state.lock().await)?;
        rows.scan(state, projection, filters, limit).await
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let mut table = self.state.lock().await;
        let rows = self.rows(&table)?;
        // MemTable applies the filters with SQL's three-valued logic and
        // reports the count; Sluice then makes the result durable.
        let result = rows.delete_from(state, filters).await?;
        self.replace_all(&mut table, state, &rows).await?;
        Ok(result)
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
        let mut table = self.state.lock().await;
        let rows = self.rows(&table)?;
        let result = rows.update(state, assignments, filters).await?;
        self.replace_all(&mut table, state, &rows).await?;
        Ok(result)
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
        let sink = DurableSink {
            store: self.store.clone(),
            dir: self.dir.clone(),
            schema: Arc::clone(&self.schema),
            state: Arc::clone(&self.state),
        };
        Ok(Arc::new(DataSinkExec::new(input, Arc::new(sink), None)))
    }
}

/// Appends an INSERT's rows: one Parquet file, then a manifest commit.
struct DurableSink {
    store: TableStore,
    dir: Path,
    schema: SchemaRef,
    state: Arc<Mutex<TableState>>,
}

impl fmt::Debug for DurableSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableSink")
            .field("dir", &self.dir)
            .finish()
    }
}

impl DisplayAs for DurableSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DurableSink: {}", self.dir)
    }
}

#[async_trait]
impl DataSink for DurableSink {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    async fn write_all(
        &self,
        mut data: SendableRecordBatchStream,
        _context: &Arc<TaskContext>,
    ) -> Result<u64> {
        let mut batches = Vec::new();
        while let Some(batch) = data.next().await {
            let batch = batch?;
            if batch.num_rows() > 0 {
                // Rows are stored under the table's schema (field metadata
                // included), whatever the input's field names and metadata.
                batches.push(RecordBatch::try_new(
                    Arc::clone(&self.schema),
                    batch.columns().to_vec(),
                )?);
            }
        }
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        if rows == 0 {
            return Ok(0);
        }
        let mut state = self.state.lock().await;
        let file =
            write_data_file(self.store.store.as_ref(), &self.dir, &self.schema, &batches).await?;
        let mut next = state.manifest.clone();
        next.version += 1;
        next.files.push(file);
        manifest::commit(self.store.store.as_ref(), &self.dir, &next).await?;
        // Committed: only now do readers see the rows.
        state.manifest = next;
        state.files.push(batches);
        if let Err(e) = self.compact_tail(&mut state).await {
            // The INSERT is committed either way; a later one retries.
            log::warn!("compaction of {} failed: {e}", self.dir);
        }
        Ok(rows)
    }
}

/// Files below this many rows count as small.
const SMALL_FILE_ROWS: u64 = 64 * 1024;
/// Trailing small files merged into one when there are this many.
const SMALL_FILES_TO_MERGE: usize = 16;

impl DurableSink {
    /// Merges the trailing run of small files (one per small INSERT) into one
    /// file once it is long enough: commit the merged file first, then
    /// delete the files it replaces (a crash in between leaves unreferenced
    /// files only).
    async fn compact_tail(&self, state: &mut TableState) -> Result<()> {
        let tail = state
            .manifest
            .files
            .iter()
            .rev()
            .take_while(|f| f.rows < SMALL_FILE_ROWS)
            .count();
        if tail < SMALL_FILES_TO_MERGE {
            return Ok(());
        }
        let start = state.manifest.files.len() - tail;
        let merged = concat_batches(&self.schema, state.files[start..].iter().flatten())?;
        let store = self.store.store.as_ref();
        let file = write_data_file(
            store,
            &self.dir,
            &self.schema,
            std::slice::from_ref(&merged),
        )
        .await?;
        let mut next = state.manifest.clone();
        next.version += 1;
        let replaced = next.files.split_off(start);
        next.files.push(file);
        manifest::commit(store, &self.dir, &next).await?;
        state.manifest = next;
        state.files.truncate(start);
        state.files.push(vec![merged]);
        for old in replaced {
            if let Err(e) = store.delete(&resolve(&self.dir, &old.path)).await {
                log::warn!("cannot delete compacted file {}: {e}", old.path);
            }
        }
        Ok(())
    }
}

async fn write_data_file(
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
    store
        .put(&resolve(dir, &relative), PutPayload::from(buffer))
        .await
        .map_err(storage_error)?;
    Ok(DataFile {
        path: relative,
        rows,
    })
}

/// A path relative to a table's directory (`data/….parquet`).
fn resolve(dir: &Path, relative: &str) -> Path {
    Path::from(format!("{dir}/{relative}"))
}

async fn read_parquet(store: &dyn ObjectStore, path: &Path) -> Result<Vec<RecordBatch>> {
    let bytes = store
        .get(path)
        .await
        .map_err(storage_error)?
        .bytes()
        .await
        .map_err(storage_error)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(DataFusionError::from)
}
