//! A table's committed state: its schema and the data files that hold it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::DFSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;
use datafusion::sql::unparser::expr_to_sql;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};
use sluice_types::error::{SluiceError, SqlState};

use super::commit::{self, CommitStep, Listed, PutOutcome};

/// One committed version of a table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Version number, starting at 1; each commit adds one.
    pub version: u64,
    /// The table's Arrow schema, field metadata (Sluice types) included.
    pub schema: Schema,
    /// Data files, relative to the table's directory.
    pub files: Vec<DataFile>,
    /// Column defaults as SQL expressions (`DEFAULT …`), by column name.
    #[serde(default)]
    pub column_defaults: Vec<(String, String)>,
    /// Unique to the commit that wrote this version: tells a writer its own
    /// commit from a rival's when an answer was lost (see
    /// [`super::commit`]). Empty in manifests written before it existed.
    #[serde(default)]
    pub commit_id: String,
    /// Per exactly-once writer (a checkpointed sink), the newest epoch its
    /// rows were committed in: recorded in the version that holds them, so
    /// a writer recovering from a crash can tell what it delivered.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub delivered: BTreeMap<String, u64>,
    /// The table's vector indexes, each with the graphs of its data files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vector_indexes: Vec<super::vector_index::VectorIndex>,
}

/// A Parquet file that belongs to a table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataFile {
    /// Path relative to the table directory.
    pub path: String,
    /// Rows in the file.
    pub rows: u64,
    /// Bytes in the file (0 in manifests written before sizes were kept).
    #[serde(default)]
    pub size: u64,
    /// For a file compaction wrote, the files written by INSERT/COPY whose
    /// rows it holds (its lineage, which lets a continuous query resume
    /// across a compaction, [`super::change_feed::resume_plan`]); empty
    /// when too many to list. `None` for a file a write made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_from: Option<Vec<String>>,
}

/// Files beyond which a compacted file's lineage is not kept (it would
/// weigh on every manifest); a query resuming across it starts over.
pub(super) const MAX_LINEAGE: usize = 1024;

impl DataFile {
    /// The files written by INSERT/COPY whose rows this file holds: itself
    /// for such a file; `None` when a compaction dropped the lineage.
    pub fn written_files(&self) -> Option<Vec<&str>> {
        match &self.merged_from {
            None => Some(vec![self.path.as_str()]),
            Some(from) if from.is_empty() => None,
            Some(from) => Some(from.iter().map(String::as_str).collect()),
        }
    }

    /// The lineage of a file compaction merges from `inputs`.
    pub fn lineage_of(inputs: &[DataFile]) -> Vec<String> {
        let mut lineage = Vec::new();
        for input in inputs {
            match input.written_files() {
                Some(files) => lineage.extend(files.into_iter().map(str::to_owned)),
                None => return Vec::new(),
            }
            if lineage.len() > MAX_LINEAGE {
                return Vec::new();
            }
        }
        lineage
    }
}

impl Manifest {
    /// The first version of a table.
    pub fn first(schema: Schema, files: Vec<DataFile>) -> Self {
        Self {
            version: 1,
            schema,
            files,
            column_defaults: Vec::new(),
            commit_id: new_commit_id(),
            delivered: BTreeMap::new(),
            vector_indexes: Vec::new(),
        }
    }

    /// The next version, to be changed and then committed: same content,
    /// version one higher, a commit id of its own.
    pub fn next(&self) -> Self {
        Self {
            version: self.version + 1,
            commit_id: new_commit_id(),
            ..self.clone()
        }
    }

    /// The schema as DataFusion shares it.
    pub fn schema_ref(&self) -> SchemaRef {
        Arc::new(self.schema.clone())
    }

    /// Records `defaults` as SQL.
    pub fn set_column_defaults(&mut self, defaults: &HashMap<String, Expr>) -> Result<()> {
        let mut stored = Vec::with_capacity(defaults.len());
        for (column, expr) in defaults {
            stored.push((column.clone(), expr_to_sql(expr)?.to_string()));
        }
        stored.sort();
        self.column_defaults = stored;
        Ok(())
    }

    /// The column defaults, planned again from their SQL. Defaults are
    /// constant expressions (literals, `now()`, …), so a plain context
    /// plans them; one that no longer plans is dropped with a warning
    /// rather than making the table unreadable.
    pub fn column_defaults(&self) -> HashMap<String, Expr> {
        let ctx = SessionContext::new();
        let empty = DFSchema::empty();
        self.column_defaults
            .iter()
            .filter_map(|(column, sql)| match ctx.parse_sql_expr(sql, &empty) {
                Ok(expr) => Some((column.clone(), expr)),
                Err(e) => {
                    log::warn!("dropping default of column {column} ({sql}): {e}");
                    None
                }
            })
            .collect()
    }
}

fn manifest_dir(table_dir: &Path) -> Path {
    table_dir.clone().join("_manifest")
}

fn manifest_path(table_dir: &Path, version: u64) -> Path {
    // Zero-padded so listing order is version order.
    manifest_dir(table_dir).join(format!("{version:020}.json"))
}

/// Reads the newest committed manifest of a table, if it has one.
pub async fn latest(store: &dyn ObjectStore, table_dir: &Path) -> Result<Option<Manifest>> {
    let dir = manifest_dir(table_dir);
    let entries: Vec<_> = store
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(storage_error)?;
    let newest = entries
        .iter()
        .filter(|meta| meta.location.extension() == Some("json"))
        .max_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
    let Some(newest) = newest else {
        return Ok(None);
    };
    let bytes = store
        .get(&newest.location)
        .await
        .map_err(storage_error)?
        .bytes()
        .await
        .map_err(storage_error)?;
    let manifest = serde_json::from_slice(&bytes).map_err(|e| {
        DataFusionError::Execution(format!("corrupt manifest {}: {e}", newest.location))
    })?;
    Ok(Some(manifest))
}

/// Commits `manifest` as the table's next version, following the commit
/// protocol ([`super::commit`]): fails, writing nothing, if another writer
/// committed that version first (SQLSTATE 40001); retries a put whose
/// answer was lost, and recognises its own commit when it did land. The
/// version that falls out of the kept history is deleted afterwards (best
/// effort: a leftover is removed when the table is next opened).
pub async fn commit(store: &dyn ObjectStore, table_dir: &Path, manifest: &Manifest) -> Result<()> {
    let path = manifest_path(table_dir, manifest.version);
    let body = bytes::Bytes::from(
        serde_json::to_vec(manifest)
            .map_err(|e| DataFusionError::Internal(format!("cannot serialise manifest: {e}")))?,
    );
    if create_once(store, &path, body, &manifest.commit_id).await? == Created::ByRival {
        return Err(SluiceError::new(
            SqlState::SERIALIZATION_FAILURE,
            "concurrent write to the same table; retry the statement",
        )
        .into());
    }
    if let Some(expired) = commit::expired_by(manifest.version) {
        match store.delete(&manifest_path(table_dir, expired)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => log::warn!("cannot delete expired manifest {expired} of {table_dir}: {e}"),
        }
    }
    Ok(())
}

/// Who created the object a [`create_once`] aimed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// This writer: its commit happened (once, even if an answer was lost).
    ByUs,
    /// Another writer, first: nothing of this attempt is visible.
    ByRival,
}

/// Creates `path` with `body` (a JSON object with a `commit_id` field equal
/// to `commit_id`) unless it exists, following the commit protocol
/// ([`super::commit`]): a put whose answer was lost is retried and
/// recognised by its commit id when it did land. Table manifests and
/// checkpoint manifests both commit through it.
pub async fn create_once(
    store: &dyn ObjectStore,
    path: &Path,
    body: bytes::Bytes,
    commit_id: &str,
) -> Result<Created> {
    let mut attempt = 1;
    loop {
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let mut failure = None;
        let outcome = match store
            .put_opts(path, PutPayload::from(body.clone()), options)
            .await
        {
            Ok(_) => PutOutcome::Created,
            Err(object_store::Error::AlreadyExists { .. }) => PutOutcome::AlreadyExists,
            Err(e) => {
                failure = Some(e);
                PutOutcome::Unknown
            }
        };
        let mut step = commit::after_put(&outcome, attempt);
        if step == CommitStep::ReadBack {
            let existing = commit_id_at(store, path).await?;
            step = commit::after_read_back(existing.as_deref(), commit_id);
        }
        match step {
            CommitStep::Committed => return Ok(Created::ByUs),
            CommitStep::Conflict => return Ok(Created::ByRival),
            CommitStep::Retry => {
                tokio::time::sleep(std::time::Duration::from_millis(50 << attempt.min(4))).await;
                attempt += 1;
            }
            CommitStep::GiveUp | CommitStep::ReadBack => {
                return Err(match failure {
                    Some(e) => storage_error(e),
                    None => {
                        DataFusionError::Internal(format!("{path} neither committed nor refused"))
                    }
                });
            }
        }
    }
}

/// The commit id of the object at `path`; `None` when there is none (or
/// it has no commit id: written before they existed, so a rival's).
async fn commit_id_at(store: &dyn ObjectStore, path: &Path) -> Result<Option<String>> {
    let bytes = match store.get(path).await {
        Ok(found) => found.bytes().await.map_err(storage_error)?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(storage_error(e)),
    };
    #[derive(Deserialize)]
    struct CommitId {
        #[serde(default)]
        commit_id: String,
    }
    let found: CommitId = serde_json::from_slice(&bytes)
        .map_err(|e| DataFusionError::Execution(format!("corrupt manifest {path}: {e}")))?;
    Ok(Some(found.commit_id))
}

fn new_commit_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Deletes what a table's newest manifest does not need: manifests older
/// than the kept history and data files it does not list (left by a
/// crash between writing a file and committing it, or between a commit
/// and deleting the files it replaced). Only safe while nothing writes to
/// the table: Sluice runs it when the data directory is opened.
pub async fn collect_garbage(
    store: &dyn ObjectStore,
    table_dir: &Path,
    manifest: &Manifest,
) -> Result<usize> {
    let prefix = format!("{table_dir}/");
    let mut garbage = Vec::new();
    for sub in ["_manifest", "data"] {
        let entries: Vec<_> = store
            .list(Some(&table_dir.clone().join(sub)))
            .try_collect()
            .await
            .map_err(storage_error)?;
        for meta in entries {
            let path = meta.location;
            let relative = path.as_ref().strip_prefix(&prefix).unwrap_or(path.as_ref());
            let listed = match sub {
                "_manifest" => path
                    .filename()
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(|n| n.parse::<u64>().ok())
                    .map_or(Listed::Other, Listed::Manifest),
                _ => Listed::DataFile(relative),
            };
            let referenced = manifest.files.iter().map(|f| f.path.as_str());
            if commit::is_garbage(listed, manifest.version, referenced) {
                garbage.push(path.clone());
            }
        }
    }
    for path in &garbage {
        delete_if_present(store, path).await?;
    }
    Ok(garbage.len())
}

/// Deletes `path`; one already gone is fine (garbage collection and drops
/// may meet a half-finished earlier attempt).
pub async fn delete_if_present(store: &dyn ObjectStore, path: &Path) -> Result<()> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(storage_error(e)),
    }
}

/// The whole object at `path`.
pub async fn read_object(store: &dyn ObjectStore, path: &Path) -> Result<bytes::Bytes> {
    store
        .get(path)
        .await
        .map_err(storage_error)?
        .bytes()
        .await
        .map_err(storage_error)
}

/// Object-store failures as DataFusion errors.
pub fn storage_error(e: object_store::Error) -> DataFusionError {
    DataFusionError::ObjectStore(Box::new(e))
}
