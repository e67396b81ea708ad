//! `COPY table [(columns)] FROM STDIN [WITH (…)]`: the bulk-load path of
//! psql's `\copy` and every driver's copy API.
//!
//! The statement layer recognises the statement (DataFusion's parser only
//! knows `COPY … TO`); executing it yields a [`CopyIn`] that the front end
//! feeds with the client's data. The rows are parsed as text ([`format`])
//! and streamed ([`stream`]) into one ordinary INSERT plan: the same type
//! conversions, defaults, validation and durable commit as
//! `INSERT … SELECT`, and all-or-nothing like Postgres' COPY (the commit
//! happens only when the data ends cleanly).

mod format;
mod stream;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::TableReference;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParser;
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, ObjectName,
    Statement,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;
use tokio::task::JoinHandle;

pub use format::{CopyFormat, CopyFormatKind, CopyReader};

use crate::output::dml_count;
use crate::text_insert::{insert_text_source, text_schema};
use crate::typed_values::ident_name;
use stream::{CopyMessage, CopySender, copy_source};

/// A parsed `COPY … FROM STDIN`.
#[derive(Debug, Clone)]
pub struct CopyFromStdin {
    /// The table written to.
    pub table: ObjectName,
    /// The columns the data holds, in order; empty means all of them.
    pub columns: Vec<Ident>,
    /// How the data is written.
    pub format: CopyFormat,
}

/// Whether the parser stands at `COPY <table> … FROM` (rather than
/// DataFusion's `COPY … TO`).
pub(crate) fn at_copy_from(parser: &DFParser<'_>) -> bool {
    let is_copy = matches!(
        parser.parser.peek_token().token,
        Token::Word(ref w) if w.keyword == Keyword::COPY
    );
    if !is_copy {
        return false;
    }
    let mut depth = 0usize;
    for n in 1.. {
        match parser.parser.peek_nth_token(n).token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w) if depth == 0 && w.keyword == Keyword::FROM => return true,
            Token::Word(w) if depth == 0 && w.keyword == Keyword::TO => return false,
            Token::SemiColon | Token::EOF => return false,
            _ => {}
        }
    }
    false
}

/// Parses `COPY <table> [(columns)] FROM STDIN [[WITH] (options) | legacy options]`.
pub(crate) fn parse_copy_from(parser: &mut DFParser<'_>) -> Result<CopyFromStdin> {
    parser.parser.expect_keyword(Keyword::COPY)?;
    let Statement::Copy {
        source,
        target,
        options,
        legacy_options,
        values,
        ..
    } = parser.parser.parse_copy()?
    else {
        return Err(DataFusionError::Internal(
            "COPY parsed as another statement".into(),
        ));
    };
    let CopySource::Table {
        table_name,
        columns,
    } = source
    else {
        return Err(DataFusionError::Plan(
            "COPY … FROM does not take a query".into(),
        ));
    };
    if !matches!(target, CopyTarget::Stdin) {
        return Err(DataFusionError::NotImplemented(
            "COPY FROM a server file or program is not supported: use COPY … FROM STDIN \
             (psql's \\copy) or CREATE EXTERNAL TABLE"
                .into(),
        ));
    }
    if !values.is_empty() {
        return Err(DataFusionError::NotImplemented(
            "COPY data inside the query text is not supported: send it through the COPY protocol"
                .into(),
        ));
    }
    Ok(CopyFromStdin {
        table: table_name,
        columns,
        format: copy_format(&options, &legacy_options)?,
    })
}

fn copy_format(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<CopyFormat> {
    let mut kind = CopyFormatKind::Text;
    for option in options {
        if let CopyOption::Format(name) = option {
            kind = match name.value.to_ascii_lowercase().as_str() {
                "text" => CopyFormatKind::Text,
                "csv" => CopyFormatKind::Csv,
                "binary" => return Err(binary_unsupported()),
                other => {
                    return Err(DataFusionError::Plan(format!(
                        "COPY format \"{other}\" not recognized"
                    )));
                }
            };
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Csv(_) => kind = CopyFormatKind::Csv,
            CopyLegacyOption::Binary => return Err(binary_unsupported()),
            _ => {}
        }
    }
    let mut format = CopyFormat::new(kind);
    let mut escape = None;
    for option in options {
        match option {
            CopyOption::Format(_) | CopyOption::Freeze(_) => {}
            CopyOption::Delimiter(c) => format.delimiter = single_byte("DELIMITER", *c)?,
            CopyOption::Null(s) => format.null = s.clone(),
            CopyOption::Header(h) => format.header = *h,
            CopyOption::Quote(c) => format.quote = single_byte("QUOTE", *c)?,
            CopyOption::Escape(c) => escape = Some(single_byte("ESCAPE", *c)?),
            CopyOption::Encoding(e) => check_encoding(e)?,
            other => {
                return Err(DataFusionError::NotImplemented(format!(
                    "COPY option {other} is not supported"
                )));
            }
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Csv(csv) => {
                for csv_option in csv {
                    match csv_option {
                        CopyLegacyCsvOption::Header => format.header = true,
                        CopyLegacyCsvOption::Quote(c) => format.quote = single_byte("QUOTE", *c)?,
                        CopyLegacyCsvOption::Escape(c) => escape = Some(single_byte("ESCAPE", *c)?),
                        other => {
                            return Err(DataFusionError::NotImplemented(format!(
                                "COPY option {other} is not supported"
                            )));
                        }
                    }
                }
            }
            CopyLegacyOption::Delimiter(c) => format.delimiter = single_byte("DELIMITER", *c)?,
            CopyLegacyOption::Null(s) => format.null = s.clone(),
            CopyLegacyOption::Header => format.header = true,
            other => {
                return Err(DataFusionError::NotImplemented(format!(
                    "COPY option {other} is not supported"
                )));
            }
        }
    }
    format.escape = escape.unwrap_or(format.quote);
    if format.kind == CopyFormatKind::Text && format.delimiter == b'\\' {
        return Err(DataFusionError::Plan(
            "COPY delimiter cannot be backslash".into(),
        ));
    }
    Ok(format)
}

fn binary_unsupported() -> DataFusionError {
    DataFusionError::NotImplemented(
        "COPY FORMAT binary is not supported yet: use text or csv".into(),
    )
}

fn single_byte(option: &str, c: char) -> Result<u8> {
    u8::try_from(c).ok().filter(u8::is_ascii).ok_or_else(|| {
        DataFusionError::Plan(format!("COPY {option} must be a single one-byte character"))
    })
}

fn check_encoding(encoding: &str) -> Result<()> {
    let normalized = encoding.to_ascii_lowercase().replace(['-', '_'], "");
    if normalized == "utf8" || normalized == "unicode" {
        Ok(())
    } else {
        Err(DataFusionError::NotImplemented(format!(
            "COPY ENCODING '{encoding}' is not supported: Sluice reads UTF8"
        )))
    }
}

/// A COPY in progress: the rows are parsed as the client sends them and
/// streamed into an INSERT running beside the connection, which commits
/// only when the data ends cleanly.
pub struct CopyIn {
    table: TableReference,
    /// The table's columns the data holds, in the data's order.
    columns: Vec<String>,
    text_schema: SchemaRef,
    reader: CopyReader,
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
            .field("rows", &self.reader.rows())
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
        let plan = crate::async_calls::fold(plan, ctx).await?;
        let ctx = ctx.clone();
        let insert = tokio::spawn(async move {
            let df = ctx.execute_logical_plan(plan).await?;
            dml_count(df.collect().await?)
        });
        let reader = CopyReader::new(statement.format.clone(), columns.clone());
        Ok(Self {
            table,
            columns,
            text_schema,
            reader,
            sender: Some(sender),
            insert,
            error: None,
        })
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
        if let Err(e) = self.reader.push(data) {
            self.fail(e);
            return;
        }
        let batches = self.reader.take_batches();
        self.send(batches).await;
    }

    /// Ends the data: the last rows are written and the COPY commits.
    /// Returns how many rows it wrote.
    pub async fn finish(mut self) -> Result<u64> {
        if self.error.is_none() {
            let reader = std::mem::replace(
                &mut self.reader,
                CopyReader::new(CopyFormat::new(CopyFormatKind::Text), Vec::new()),
            );
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
