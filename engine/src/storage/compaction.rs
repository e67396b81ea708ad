//! Compaction of a table's tail: the small files single-row writes leave
//! (one per autocommit INSERT, or per transaction) merged into one once
//! enough have piled up.

use datafusion::error::Result;

use super::change_feed::ChangeKind;
use super::files::{read_files, write_data_files};
use super::manifest::DataFile;
use super::table_state::{TableHandle, TableState};

/// Files below this many rows count as small.
const SMALL_FILE_ROWS: u64 = 64 * 1024;
/// Trailing small files merged into one when there are this many.
const SMALL_FILES_TO_MERGE: usize = 16;

/// Merges the trailing run of small files (one per small INSERT) into one
/// file once it is long enough: commit the merged file first, then
/// retire the files it replaces (a crash in between leaves unreferenced
/// files only, removed at the next open).
pub(super) async fn compact_tail(table: &TableHandle, state: &mut TableState) -> Result<()> {
    let files = &state.manifest.files;
    let tail = files
        .iter()
        .rev()
        .take_while(|f| f.rows < SMALL_FILE_ROWS)
        .count();
    if tail < SMALL_FILES_TO_MERGE {
        return Ok(());
    }
    let start = files.len() - tail;
    let batches = read_files(
        table.store.as_ref(),
        &table.dir,
        &files[start..],
        &table.schema,
    )
    .await?;
    // The writer gathers the small batches into full row groups itself.
    let lineage = DataFile::lineage_of(&files[start..]);
    let mut merged_files =
        write_data_files(table.store.as_ref(), &table.dir, &table.schema, &batches).await?;
    for merged in &mut merged_files {
        merged.merged_from = Some(lineage.clone());
    }
    let mut next = state.manifest.next();
    next.files.truncate(start);
    next.files.extend(merged_files);
    state.commit(&table.store, &table.dir, &mut next).await?;
    state
        .install(&table.store, &table.dir, next, ChangeKind::Compaction)
        .await;
    Ok(())
}
