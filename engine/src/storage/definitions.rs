//! Catalog entries that are definitions rather than data: views and
//! external tables. Each is kept as the SQL that created it and replayed,
//! in creation order, when the data directory is opened.

use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::error::Result;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::manifest::{delete_if_present, read_object, storage_error};

/// A stored definition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Definition {
    /// The object's name as written (`v`, `public.v`).
    pub name: String,
    /// The statement that created it.
    pub sql: String,
}

/// The definitions of one data directory.
#[derive(Debug)]
pub struct Definitions {
    dir: Path,
    /// Orders definitions by creation: file names start with it.
    next_sequence: AtomicU64,
}

impl Definitions {
    /// Definitions under `root/catalog/definitions`.
    pub fn new(root: &Path) -> Self {
        Self::in_folder(root, "definitions")
    }

    /// Definitions under `root/catalog/<folder>`: each kind of catalog object
    /// with its own namespace gets its own folder (models beside relations).
    pub fn in_folder(root: &Path, folder: &str) -> Self {
        Self {
            dir: root.clone().join("catalog").join(folder),
            next_sequence: AtomicU64::new(0),
        }
    }

    /// All stored definitions, oldest first.
    pub async fn load(&self, store: &dyn ObjectStore) -> Result<Vec<Definition>> {
        let mut paths: Vec<Path> = store
            .list(Some(&self.dir))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(storage_error)?;
        paths.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        if let Some(last) = paths.last().and_then(sequence_of) {
            self.next_sequence.store(last + 1, Ordering::SeqCst);
        }
        let mut definitions = Vec::with_capacity(paths.len());
        for path in paths {
            let bytes = read_object(store, &path).await?;
            match serde_json::from_slice(&bytes) {
                Ok(definition) => definitions.push(definition),
                Err(e) => log::warn!("skipping unreadable definition {path}: {e}"),
            }
        }
        Ok(definitions)
    }

    /// Stores the definition of `name`, replacing any earlier one.
    pub async fn save(&self, store: &dyn ObjectStore, definition: &Definition) -> Result<()> {
        self.remove(store, &definition.name).await?;
        let sequence = self.next_sequence.fetch_add(1, Ordering::SeqCst);
        let body = serde_json::to_vec(definition).map_err(|e| {
            datafusion::error::DataFusionError::Internal(format!(
                "cannot serialise definition: {e}"
            ))
        })?;
        let path = self.dir.clone().join(format!(
            "{sequence:020}-{}.json",
            file_stem(&definition.name)
        ));
        store
            .put(&path, PutPayload::from(body))
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    /// Forgets the definition of `name`, if there is one.
    pub async fn remove(&self, store: &dyn ObjectStore, name: &str) -> Result<()> {
        let suffix = format!("-{}.json", file_stem(name));
        let paths: Vec<Path> = store
            .list(Some(&self.dir))
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .map_err(storage_error)?;
        for path in paths.iter().filter(|p| p.as_ref().ends_with(&suffix)) {
            delete_if_present(store, path).await?;
        }
        Ok(())
    }
}

/// A file-name-safe form of an object name.
fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn sequence_of(path: &Path) -> Option<u64> {
    path.filename()?.split('-').next()?.parse().ok()
}
