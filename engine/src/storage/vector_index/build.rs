//! Building the graphs of data files: reading a group of files' vectors,
//! building their HNSW graph on every core, and storing it beside the data.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float32Type, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::super::files::{read_rows, resolve};
use super::super::manifest::{self, DataFile, Manifest, delete_if_present, storage_error};
use super::MIN_INDEXED_ROWS;
use super::definition::VectorIndex;
use super::graph_map::{self, GraphMap, MAX_GRAPH_VECTOR_BYTES};
use super::hnsw::Builder;

/// Folder of a table's graphs, beside `data/`.
const INDEX_DIR: &str = "indexes";

/// Builds, for every index of `indexes`, graphs over the files of `files`
/// that should have one and have none — one graph per group of files up
/// to [`MAX_GRAPH_VECTOR_BYTES`] of vectors, so that one write's files are
/// walked as one graph — and records them in the index. Returns the
/// graphs written (relative paths), which the caller deletes if its commit
/// fails.
pub(in crate::storage) async fn build_missing(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    schema: &SchemaRef,
    indexes: &mut [VectorIndex],
    files: &[DataFile],
) -> Result<Vec<String>> {
    let mut written = Vec::new();
    for index in indexes.iter_mut() {
        let missing: Vec<&DataFile> = files
            .iter()
            .filter(|f| f.rows >= MIN_INDEXED_ROWS && index.graphs.part(&f.path).is_none())
            .collect();
        if missing.is_empty() {
            continue;
        }
        let (column, dimensions) = match vector_column(schema, index) {
            Ok(found) => found,
            Err(e) => {
                delete_graphs(store, dir, &written).await;
                return Err(e);
            }
        };
        let row_bytes = 4 * dimensions as u64;
        for group in groups(&missing, row_bytes) {
            match build_group_graph(store, dir, schema, index, column, dimensions, group).await {
                Ok(path) => {
                    index
                        .graphs
                        .insert_graph(&path, group.iter().map(|f| (f.path.as_str(), f.rows)));
                    written.push(path);
                }
                Err(e) => {
                    delete_graphs(store, dir, &written).await;
                    return Err(e);
                }
            }
        }
    }
    Ok(written)
}

/// `files` in runs of consecutive files whose vectors take at most
/// [`MAX_GRAPH_VECTOR_BYTES`] together (a file larger than that alone).
fn groups<'a, 'f>(files: &'a [&'f DataFile], row_bytes: u64) -> Vec<&'a [&'f DataFile]> {
    let mut groups = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (at, file) in files.iter().enumerate() {
        let file_bytes = file.rows.saturating_mul(row_bytes);
        if at > start && bytes.saturating_add(file_bytes) > MAX_GRAPH_VECTOR_BYTES {
            groups.push(&files[start..at]);
            (start, bytes) = (at, 0);
        }
        bytes = bytes.saturating_add(file_bytes);
    }
    if start < files.len() {
        groups.push(&files[start..]);
    }
    groups
}

/// The position and dimension of `index`'s column in `schema`.
fn vector_column(schema: &SchemaRef, index: &VectorIndex) -> Result<(usize, usize)> {
    let column = schema.index_of(&index.column)?;
    let DataType::FixedSizeList(_, dimensions) = schema.field(column).data_type() else {
        return Err(DataFusionError::Internal(format!(
            "indexed column {} is not a vector",
            index.column
        )));
    };
    let dimensions = usize::try_from(*dimensions)
        .map_err(|_| DataFusionError::Internal("negative vector dimension".into()))?;
    Ok((column, dimensions))
}

/// Brings the indexes of `next` (a version about to be committed) up to
/// its files: entries of files it no longer lists are dropped, missing
/// graphs are built (see [`build_missing`]).
pub(in crate::storage) async fn cover(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    next: &mut Manifest,
) -> Result<Vec<String>> {
    if next.vector_indexes.is_empty() {
        return Ok(Vec::new());
    }
    let listed: BTreeMap<&str, u64> = next
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.rows))
        .collect();
    for index in &mut next.vector_indexes {
        index.graphs.retain_files(&listed);
    }
    let schema = next.schema_ref();
    build_missing(store, dir, &schema, &mut next.vector_indexes, &next.files).await
}

/// Commits `next` as the table's next version ([`manifest::commit`])
/// with the graphs of its new files built first ([`cover`]); a failed
/// commit deletes them again. Every write that changes a table's files
/// commits through here, so its indexes always match its data.
pub(in crate::storage) async fn commit_with_graphs(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    next: &mut Manifest,
) -> Result<()> {
    let built = cover(store, dir, next).await?;
    if let Err(e) = manifest::commit(store.as_ref(), dir, next).await {
        delete_graphs(store, dir, &built).await;
        return Err(e);
    }
    Ok(())
}

/// Graphs for `files` (just written, not yet committed) under `indexes`
/// (the table's as of now), built before the writer takes the table's lock
/// so that readers and other writers do not wait for them; [`adopt`]
/// moves them into the version the writer then commits.
pub(in crate::storage) async fn prebuild(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    schema: &SchemaRef,
    mut indexes: Vec<VectorIndex>,
    files: &[DataFile],
) -> Result<Vec<VectorIndex>> {
    for index in &mut indexes {
        index.graphs = GraphMap::default();
    }
    if !indexes.is_empty() {
        build_missing(store, dir, schema, &mut indexes, files).await?;
    }
    Ok(indexes)
}

/// Moves graphs [`prebuild`] made into `next`; returns those whose index
/// `next` no longer has (dropped meanwhile), for the caller to delete.
pub(in crate::storage) fn adopt(next: &mut Manifest, prebuilt: Vec<VectorIndex>) -> Vec<String> {
    let mut orphans = Vec::new();
    for built in prebuilt {
        match next
            .vector_indexes
            .iter_mut()
            .find(|index| index.name == built.name && index.column == built.column)
        {
            Some(index) => index.graphs.extend(built.graphs),
            None => orphans.extend(built.graphs.graph_paths()),
        }
    }
    orphans
}

/// Deletes graphs no version uses: those a failed commit wrote, or those
/// a committed version dropped ([`dropped_graphs`]). Best effort: what is
/// left goes at the next open ([`sweep_unreferenced`]).
pub(in crate::storage) async fn delete_graphs(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    graphs: &[String],
) {
    for graph in graphs {
        let location = resolve(dir, graph);
        super::cache::forget(&location);
        if let Err(e) = delete_if_present(store.as_ref(), &location).await {
            log::warn!("cannot delete unused vector index {graph}: {e}");
        }
    }
}

/// The graphs `previous` lists and `next` does not (their files or their
/// index went): deleted once `next` is committed. A search still holding
/// the older snapshot finds its graph gone and scans that file exactly.
pub(in crate::storage) fn dropped_graphs(previous: &Manifest, next: &Manifest) -> Vec<String> {
    let kept: HashSet<&String> = next
        .vector_indexes
        .iter()
        .flat_map(|i| i.graphs.graphs())
        .collect();
    let dropped: BTreeSet<&String> = previous
        .vector_indexes
        .iter()
        .flat_map(|i| i.graphs.graphs())
        .filter(|graph| !kept.contains(graph))
        .collect();
    dropped.into_iter().cloned().collect()
}

/// Deletes graphs under `indexes/` that `manifest` does not list (left by
/// a crash between writing them and committing); returns how many.
pub(in crate::storage) async fn sweep_unreferenced(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    manifest: &Manifest,
) -> Result<usize> {
    let referenced: HashSet<&String> = manifest
        .vector_indexes
        .iter()
        .flat_map(|i| i.graphs.graphs())
        .collect();
    let prefix = format!("{dir}/");
    let listed: Vec<_> = store
        .list(Some(&dir.clone().join(INDEX_DIR)))
        .try_collect()
        .await
        .map_err(storage_error)?;
    let mut removed = 0;
    for meta in listed {
        let relative = meta
            .location
            .as_ref()
            .strip_prefix(&prefix)
            .unwrap_or(meta.location.as_ref())
            .to_owned();
        if !referenced.contains(&relative) {
            delete_if_present(store.as_ref(), &meta.location).await?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Reads the vectors of `files`, builds their graph (each file's rows
/// under its slot's keys, [`graph_map::key`]) and stores it; returns its
/// path relative to the table. The files are read and added one at a
/// time, so memory holds the graph and one file's vectors.
async fn build_group_graph(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    schema: &SchemaRef,
    index: &VectorIndex,
    column: usize,
    dimensions: usize,
    files: &[&DataFile],
) -> Result<String> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let capacity: u64 = files.iter().map(|f| f.rows).sum();
    let mut graph = Builder::new(dimensions, index.metric, index.m, index.ef_construction);
    graph.reserve(capacity as usize);
    for (slot, file) in (0u32..).zip(files) {
        let location = resolve(dir, &file.path);
        let batches = read_rows(store, &location, file.size, schema, &[column], None, None).await?;
        let mut keys = Vec::with_capacity(file.rows as usize);
        let mut vectors = Vec::with_capacity(file.rows as usize * dimensions);
        let mut position = 0u64;
        for batch in &batches {
            let list = batch.column(0).as_fixed_size_list();
            let values = list.values().as_primitive::<Float32Type>().values();
            for row in 0..list.len() {
                if list.is_valid(row) {
                    let start = list.value_offset(row) as usize;
                    keys.push(graph_map::key(slot, position));
                    vectors.extend_from_slice(&values[start..start + dimensions]);
                }
                position += 1;
            }
        }
        drop(batches);
        // A copy of the file's vectors: the linking is in `finish`.
        graph.add(&keys, &vectors)?;
    }
    let bytes = tokio::task::spawn_blocking(move || graph.finish(threads).to_bytes())
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let relative = format!("{INDEX_DIR}/{}.hnsw", uuid::Uuid::new_v4());
    store
        .put(&resolve(dir, &relative), PutPayload::from(bytes))
        .await
        .map_err(storage_error)?;
    Ok(relative)
}
