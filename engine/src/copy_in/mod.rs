//! `COPY table [(columns)] FROM STDIN [WITH (…)]`: the bulk-load path of
//! psql's `\copy` and every driver's copy API.
//!
//! The statement layer ([`crate::sql::copy`]) recognises the statement
//! (DataFusion's parser only knows `COPY … TO`); executing it yields a [`CopyIn`] that the front end
//! feeds with the client's data. The rows are parsed as text ([`format`])
//! and streamed ([`stream`]) into one ordinary INSERT plan: the same type
//! conversions, defaults, validation and durable commit as
//! `INSERT … SELECT`, and all-or-nothing like Postgres' COPY (the commit
//! happens only when the data ends cleanly).

mod binary;
mod format;
mod stream;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use datafusion::sql::planner::object_name_to_table_reference;
use tokio::task::JoinHandle;

pub use binary::BinaryCopyReader;
pub use format::{CopyReader, RowsReader};

use crate::sql::copy::{CopyFormatKind, CopyFromStdin};

use crate::context::dml_count;
use crate::rewrite::text_insert::{insert_text_source, text_schema};
use crate::sql::names::ident_name;
use stream::{CopyMessage, CopySender, copy_source};

/// A COPY in progress: the rows are parsed as the client sends them and
/// streamed into an INSERT running beside the connection, which commits
/// only when the data ends cleanly.
pub struct CopyIn {
    table: TableReference,
    /// The table's columns the data holds, in the data's order.
    columns: Vec<String>,
    text_schema: SchemaRef,
    /// `None` once finished.
    reader: Option<Box<dyn RowsReader>>,
    /// Whether the data is in the binary format.
    binary: bool,
    /// Gone once the INSERT stopped taking rows (it failed) or the data
    /// had an error.
    sender: Option<CopySender>,
    /// The INSERT: its row count, or why it failed.
    insert: JoinHandle<Result<u64>>,
    /// The first error in the data: later data is ignored and the COPY fails
    /// when the client ends it, as in Postgres.
    error: Option<DataFusionError>,
}

impl std::fmt::Debug for CopyIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyIn")
            .field("table", &self.table)
            .field("columns", &self.columns)
            .field("rows", &self.reader.as_ref().map(|r| r.rows()))
            .finish()
    }
}

impl CopyIn {
    /// Resolves the statement's table and columns and starts the INSERT;
    /// errors here come before the client is asked for data.
    pub(crate) async fn start(ctx: &SessionContext, statement: &CopyFromStdin) -> Result<Self> {
        let table = object_name_to_table_reference(statement.table.clone(), true)?;
        let provider = ctx.table_provider(table.clone()).await?;
        let schema = provider.schema();
        let columns = if statement.columns.is_empty() {
            schema.fields().iter().map(|f| f.name().clone()).collect()
        } else {
            let mut columns: Vec<String> = Vec::with_capacity(statement.columns.len());
            for ident in &statement.columns {
                let name = ident_name(ident);
                if schema.field_with_name(&name).is_err() {
                    return Err(DataFusionError::Plan(format!(
                        "column \"{name}\" of relation \"{}\" does not exist",
                        table.table()
                    )));
                }
                if columns.contains(&name) {
                    return Err(DataFusionError::Plan(format!(
                        "column \"{name}\" specified more than once"
                    )));
                }
                columns.push(name);
            }
            columns
        };
        let text_schema = text_schema(&columns);
        let (source, sender) = copy_source(Arc::clone(&text_schema))?;
        let plan = insert_text_source(table.clone(), provider, &columns, Arc::new(source))?;
        let plan = crate::planner::bind_and_fold(ctx, plan, None).await?;
        let ctx = ctx.clone();
        let insert = tokio::spawn(async move {
            let df = ctx.execute_logical_plan(plan).await?;
            dml_count(df.collect().await?)
        });
        let reader: Box<dyn RowsReader> = if statement.format.kind == CopyFormatKind::Binary {
            let fields: Vec<_> = columns
                .iter()
                .map(|name| schema.field_with_name(name).map(|f| Arc::new(f.clone())))
                .collect::<std::result::Result<_, _>>()?;
            Box::new(BinaryCopyReader::new(&fields)?)
        } else {
            Box::new(CopyReader::new(statement.format.clone(), columns.clone()))
        };
        Ok(Self {
            table,
            columns,
            text_schema,
            reader: Some(reader),
            binary: statement.format.kind == CopyFormatKind::Binary,
            sender: Some(sender),
            insert,
            error: None,
        })
    }

    /// Whether the client sends the binary format (the CopyInResponse says
    /// so, and drivers write accordingly).
    pub fn is_binary(&self) -> bool {
        self.binary
    }

    /// Columns in each row of the data.
    pub fn column_count(&self) -> usize {
        self.columns.len()
    }

    /// Reads the next chunk of data and hands the complete batches to the
    /// INSERT, waiting while it is behind.
    pub async fn push(&mut self, data: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let Some(reader) = self.reader.as_mut() else {
            return;
        };
        if let Err(e) = reader.push(data) {
            self.fail(e);
            return;
        }
        let batches = reader.take_batches();
        self.send(batches).await;
    }

    /// Ends the data: the last rows are written and the COPY commits.
    /// Returns how many rows it wrote.
    pub async fn finish(mut self) -> Result<u64> {
        if self.error.is_none()
            && let Some(reader) = self.reader.take()
        {
            match reader.finish() {
                Ok(batches) => {
                    self.send(batches).await;
                    if let Some(sender) = self.sender.take() {
                        // A send error means the INSERT failed: its own
                        // error is reported below.
                        let _ = sender.send(CopyMessage::End).await;
                    }
                }
                Err(e) => self.fail(e),
            }
        }
        // Without the end marker the INSERT fails and commits nothing.
        self.sender = None;
        let inserted = match (&mut self.insert).await {
            Ok(result) => result,
            Err(e) => Err(DataFusionError::External(Box::new(e))),
        };
        match self.error.take() {
            Some(error) => Err(error),
            None => inserted,
        }
    }

    fn fail(&mut self, error: DataFusionError) {
        self.error = Some(error);
        self.sender = None;
    }

    async fn send(&mut self, batches: Vec<Vec<ArrayRef>>) {
        for columns in batches {
            let Some(sender) = &self.sender else {
                return;
            };
            let message = match RecordBatch::try_new(Arc::clone(&self.text_schema), columns) {
                Ok(batch) => CopyMessage::Rows(batch),
                Err(e) => {
                    self.fail(e.into());
                    return;
                }
            };
            if sender.send(message).await.is_err() {
                // The INSERT stopped reading: it failed, and says why at
                // the end.
                self.sender = None;
                return;
            }
        }
    }
}
