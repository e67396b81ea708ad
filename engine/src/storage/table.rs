//! [`TableStore`]: the data directory's tables and catalog definitions,
//! and the store that opens, creates and drops them.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::Constraints;
use datafusion::error::Result;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::Expr;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use super::definitions::{Definition, Definitions};
use super::durable_table::DurableTable;
use super::files::{resolve, write_stream};
use super::manifest::{self, Manifest, storage_error};
use super::transaction::{self, Transaction};
use super::unreadable::UnreadableTable;
use super::versions::CommitClock;

/// Where every durable table lives: an object store and a root path in it.
#[derive(Debug, Clone)]
pub struct TableStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
    definitions: Arc<Definitions>,
    models: Arc<Definitions>,
    schemas: Arc<Definitions>,
    /// Orders the commits of every table here (see [`CommitClock`]).
    clock: Arc<CommitClock>,
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
            clock: CommitClock::new(),
        }
    }

    /// The object store the data directory lives in.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The commit clock's tick: it moves on with every commit of any table
    /// here (writes, compactions, transactions), so a plan made at one tick
    /// read the tables' versions of that tick.
    pub fn commit_tick(&self) -> u64 {
        self.clock.now()
    }

    /// Starts a `BEGIN … COMMIT` transaction over this directory's tables,
    /// reading them as of now.
    pub fn begin_transaction(&self) -> Arc<Transaction> {
        Transaction::begin(
            &self.clock,
            Some((
                Arc::clone(&self.store),
                self.folder(transaction::RECORDS_FOLDER),
            )),
        )
    }

    /// Where under `folder` of the data directory (checkpoints, logs)
    /// something other than tables keeps its objects.
    pub fn folder(&self, folder: &str) -> Path {
        self.root.clone().join(folder)
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
    /// name, table). A table that fails to open (a corrupt manifest) is
    /// an [`UnreadableTable`] naming why, so the others still serve.
    pub async fn open_all(&self) -> Result<Vec<(String, String, Arc<dyn TableProvider>)>> {
        // Commits of several tables a crash interrupted are finished first,
        // so that no table opens with half of one.
        transaction::recover(&self.store, &self.folder(transaction::RECORDS_FOLDER)).await?;
        let mut tables: Vec<(String, String, Arc<dyn TableProvider>)> = Vec::new();
        for schema in self.table_schemas().await? {
            for name in self.table_names(&schema).await? {
                match self.open(&schema, &name).await {
                    Ok(Some(table)) => tables.push((schema.clone(), name, Arc::new(table))),
                    Ok(None) => {}
                    Err(e) => {
                        let qualified = format!("{schema}.{name}");
                        log::error!(
                            "table {qualified} cannot be opened, it is left unreadable: {e}"
                        );
                        let unreadable = UnreadableTable::new(qualified, e.to_string());
                        tables.push((schema.clone(), name, Arc::new(unreadable)));
                    }
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
        let removed =
            removed + super::vector_index::sweep_unreferenced(&self.store, &dir, &manifest).await?;
        if removed > 0 {
            log::info!("removed {removed} unreferenced file(s) of {dir}");
        }
        let mut manifest = manifest;
        for file in &mut manifest.files {
            // Manifests written before sizes were recorded.
            if file.size == 0 {
                let meta = self
                    .store
                    .head(&resolve(&dir, &file.path))
                    .await
                    .map_err(storage_error)?;
                file.size = meta.size;
            }
        }
        let column_defaults = manifest.column_defaults();
        Ok(Some(DurableTable::new(
            Arc::clone(&self.store),
            dir,
            manifest,
            Constraints::default(),
            column_defaults,
            Arc::clone(&self.clock),
        )))
    }

    /// Creates a table holding the rows of `rows` (`CREATE TABLE AS`,
    /// written as they come: memory holds one file's worth) and commits its
    /// first version.
    pub async fn create(
        &self,
        schema_name: &str,
        name: &str,
        schema: SchemaRef,
        rows: SendableRecordBatchStream,
        constraints: Constraints,
        column_defaults: HashMap<String, Expr>,
    ) -> Result<DurableTable> {
        let dir = self.table_dir(schema_name, name);
        // A dropped table's leftovers must not leak into a new one.
        self.delete_dir(&dir).await?;
        let (files, _) = write_stream(self.store.as_ref(), &dir, &schema, rows).await?;
        let mut manifest = Manifest::first(schema.as_ref().clone(), files);
        manifest.set_column_defaults(&column_defaults)?;
        manifest::commit(self.store.as_ref(), &dir, &manifest).await?;
        Ok(DurableTable::new(
            Arc::clone(&self.store),
            dir,
            manifest,
            constraints,
            column_defaults,
            Arc::clone(&self.clock),
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
