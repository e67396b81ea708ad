//! A table's committed state: its schema and the data files that hold it.

use std::collections::HashMap;
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
}

impl Manifest {
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

/// Manifest versions kept behind the newest. Only the newest is ever read
/// (each commit is atomic, so it is never half-written); a few older ones
/// stay for inspecting a table's recent history.
const KEEP_VERSIONS: u64 = 4;

/// Commits `manifest` as the table's next version. Fails, writing nothing,
/// if another writer committed that version first. The version that falls
/// out of the kept history is deleted afterwards (best effort: a leftover
/// is removed when the table is next opened).
pub async fn commit(store: &dyn ObjectStore, table_dir: &Path, manifest: &Manifest) -> Result<()> {
    put_version(store, table_dir, manifest).await?;
    if let Some(expired) = manifest.version.checked_sub(KEEP_VERSIONS)
        && expired > 0
    {
        match store.delete(&manifest_path(table_dir, expired)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => log::warn!("cannot delete expired manifest {expired} of {table_dir}: {e}"),
        }
    }
    Ok(())
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
    let live: std::collections::HashSet<String> = manifest
        .files
        .iter()
        .map(|f| format!("{table_dir}/{}", f.path))
        .collect();
    let oldest_kept = manifest.version.saturating_sub(KEEP_VERSIONS - 1);
    let mut garbage = Vec::new();
    for sub in ["_manifest", "data"] {
        let entries: Vec<_> = store
            .list(Some(&table_dir.clone().join(sub)))
            .try_collect()
            .await
            .map_err(storage_error)?;
        for meta in entries {
            let path = meta.location;
            let expired = match sub {
                "_manifest" => path
                    .filename()
                    .and_then(|n| n.strip_suffix(".json"))
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|v| v < oldest_kept),
                _ => !live.contains(path.as_ref()),
            };
            if expired {
                garbage.push(path);
            }
        }
    }
    for path in &garbage {
        match store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(storage_error(e)),
        }
    }
    Ok(garbage.len())
}

async fn put_version(store: &dyn ObjectStore, table_dir: &Path, manifest: &Manifest) -> Result<()> {
    let body = serde_json::to_vec(manifest)
        .map_err(|e| DataFusionError::Internal(format!("cannot serialise manifest: {e}")))?;
    let options = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    match store
        .put_opts(
            &manifest_path(table_dir, manifest.version),
            PutPayload::from(body),
            options,
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => Err(DataFusionError::Execution(
            "concurrent write to the same table; retry the statement".into(),
        )),
        Err(e) => Err(storage_error(e)),
    }
}

/// Object-store failures as DataFusion errors.
pub fn storage_error(e: object_store::Error) -> DataFusionError {
    DataFusionError::ObjectStore(Box::new(e))
}
