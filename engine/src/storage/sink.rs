//! Appends to a durable table (INSERT, COPY): one Parquet file per write,
//! then a manifest commit; small files are merged as they pile up.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::datasource::sink::DataSink;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, SendableRecordBatchStream};

use super::change_feed::ChangeKind;
use super::compaction::compact_tail;
use super::files::{resolve, write_data_files, write_stream};
use super::manifest::{DataFile, delete_if_present};
use super::table_state::TableHandle;
use super::transaction::SessionTransaction;
use super::vector_index;

/// Appends an INSERT's rows: one Parquet file, then a manifest commit.
pub struct DurableSink {
    table: TableHandle,
}

impl DurableSink {
    /// The appender of `table`.
    pub(super) fn new(table: TableHandle) -> Self {
        Self { table }
    }
}

impl fmt::Debug for DurableSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableSink")
            .field("dir", &self.table.dir)
            .finish()
    }
}

impl DisplayAs for DurableSink {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DurableSink: {}", self.table.dir)
    }
}

#[async_trait]
impl DataSink for DurableSink {
    fn schema(&self) -> &SchemaRef {
        &self.table.schema
    }

    async fn write_all(
        &self,
        data: SendableRecordBatchStream,
        context: &Arc<TaskContext>,
    ) -> Result<u64> {
        // Rows go to files as they arrive (a COPY of any size holds one
        // file's worth in memory); nothing is visible until the commit.
        let table = &self.table;
        let (files, rows) =
            write_stream(table.store.as_ref(), &table.dir, &table.schema, data).await?;
        match SessionTransaction::of_task(context) {
            // Committed with the transaction.
            Some(transaction) => transaction.append(table, files).await?,
            None => {
                self.commit_append(files, None).await?;
            }
        }
        Ok(rows)
    }
}

impl DurableSink {
    /// Commits `files` (just written) as a new version. With `mark` =
    /// (writer, epoch) the version also records that the writer delivered
    /// that epoch, and nothing is committed (the files are deleted) when
    /// the table says it already did: an exactly-once sink recovering from
    /// a crash. Returns whether the files were committed.
    pub async fn commit_append(
        &self,
        files: Vec<DataFile>,
        mark: Option<(&str, u64)>,
    ) -> Result<bool> {
        if files.is_empty() && mark.is_none() {
            return Ok(false);
        }
        // Only the index definitions: an INSERT does not copy the manifest.
        let indexes = self
            .table
            .state
            .lock()
            .await
            .manifest
            .vector_indexes
            .clone();
        let prebuilt = vector_index::prebuild(
            &self.table.store,
            &self.table.dir,
            &self.table.schema,
            indexes,
            &files,
        )
        .await?;
        let table = self.table.clone();
        let mark = mark.map(|(writer, epoch)| (writer.to_owned(), epoch));
        // Once the commit starts it finishes and is installed, even when
        // the statement is cancelled (statement_timeout, a client's
        // cancel): dropped halfway, it could leave the store a version
        // ahead of what this server shows.
        tokio::spawn(commit_locked(table, files, prebuilt, mark))
            .await
            .map_err(|e| DataFusionError::Execution(format!("an append's commit failed: {e}")))?
    }

    /// Appends `batches` as epoch `epoch` of exactly-once writer `writer`,
    /// unless the table already holds that epoch of it (see
    /// [`Self::commit_append`]).
    pub async fn append_once(
        &self,
        batches: &[RecordBatch],
        writer: &str,
        epoch: u64,
    ) -> Result<bool> {
        if self.delivered(writer).await.is_some_and(|d| d >= epoch) {
            return Ok(false);
        }
        let batches = batches
            .iter()
            .map(|b| RecordBatch::try_new(Arc::clone(&self.table.schema), b.columns().to_vec()))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let files = write_data_files(
            self.table.store.as_ref(),
            &self.table.dir,
            &self.table.schema,
            &batches,
        )
        .await?;
        self.commit_append(files, Some((writer, epoch))).await
    }

    /// The newest epoch exactly-once writer `writer` committed.
    pub async fn delivered(&self, writer: &str) -> Option<u64> {
        self.table
            .state
            .lock()
            .await
            .manifest
            .delivered
            .get(writer)
            .copied()
    }
}

/// The locked part of [`DurableSink::commit_append`], run in a task of its
/// own so that a cancelled statement cannot interrupt it.
async fn commit_locked(
    table: TableHandle,
    files: Vec<DataFile>,
    prebuilt: Vec<vector_index::VectorIndex>,
    mark: Option<(String, u64)>,
) -> Result<bool> {
    let mut state = table.state.lock().await;
    state.check_not_dropped(&table.dir)?;
    if let Some((writer, epoch)) = &mark
        && state
            .manifest
            .delivered
            .get(writer)
            .is_some_and(|d| d >= epoch)
    {
        drop(state);
        let graphs: Vec<String> = prebuilt
            .into_iter()
            .flat_map(|index| index.graphs.graph_paths())
            .collect();
        vector_index::delete_graphs(&table.store, &table.dir, &graphs).await;
        for file in &files {
            delete_if_present(table.store.as_ref(), &resolve(&table.dir, &file.path)).await?;
        }
        return Ok(false);
    }
    let version = state.manifest.version;
    let appended = files.clone();
    let mut next = state.manifest.next();
    next.files.extend(files);
    if let Some((writer, epoch)) = &mark {
        next.delivered.insert(writer.clone(), *epoch);
    }
    let orphans = vector_index::adopt(&mut next, prebuilt);
    vector_index::delete_graphs(&table.store, &table.dir, &orphans).await;
    if let Err(error) = state.commit(&table.store, &table.dir, &mut next).await {
        // Caught up to a version this server had not installed: rows
        // appended commit on whatever version is current, so once more
        // on top of it (not an exactly-once epoch, whose mark must be
        // checked again, nor files with graphs built for the old one).
        let caught_up = state.manifest.version != version;
        if !caught_up || mark.is_some() || !next.vector_indexes.is_empty() {
            return Err(error);
        }
        next = state.manifest.next();
        next.files.extend(appended);
        state.commit(&table.store, &table.dir, &mut next).await?;
    }
    // Committed: only now do readers see the rows.
    state
        .install(&table.store, &table.dir, next, ChangeKind::Append)
        .await;
    if let Err(e) = compact_tail(&table, &mut state).await {
        // The write is committed either way; a later one retries.
        log::warn!("compaction of {} failed: {e}", table.dir);
    }
    Ok(true)
}
