//! What planning and running a statement produce: [`PreparedStatement`] and
//! [`QueryOutput`].

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::error::Result;
use datafusion::logical_expr::{DdlStatement, LogicalPlan, Statement, WriteOp};
use datafusion::physical_plan::SendableRecordBatchStream;

use crate::copy_in::CopyIn;
use crate::pg::column_names::PostgresNames;
use crate::roles::RoleStatement;
use crate::session::plan_cache::{Generations, PlanCache, only_reads};
use crate::sql::copy::{CopyFormat, CopyFromStdin};
use crate::sql::model_statement::ModelStatement;
use crate::sql::source_statement::CreateSource;
use crate::sql::statement::{IndexStatement, SessionCommand};
use crate::sql::streaming_statement::StreamingStatement;

/// A statement that has been parsed and planned and can be executed, possibly
/// many times with different parameter values (the extended protocol's
/// Parse/Bind/Execute, SQL `PREPARE`/`EXECUTE`).
#[derive(Debug, Clone)]
pub struct PreparedStatement {
    pub(crate) kind: PreparedKind,
    /// The result columns' names as Postgres gives them, for queries.
    pub(crate) names: Option<PostgresNames>,
    /// For SQL `EXECUTE name`: the rows the prepared query returns (the
    /// plan itself says none), when the session knows the name.
    pub(crate) executed_rows: Option<SchemaRef>,
    /// The plan generations it was planned under.
    pub(crate) planned_at: Generations,
    /// Its physical plan from an earlier execution, shared by its clones.
    pub(crate) plans: Arc<PlanCache>,
    /// Whether it is a query that only reads: found once here, as every
    /// execution asks.
    pub(crate) reads_only: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum PreparedKind {
    /// Planned by DataFusion.
    Plan(Box<LogicalPlan>),
    /// Handled by the session itself.
    Session(SessionCommand),
    /// A model statement.
    Model(ModelStatement),
    /// `COPY … FROM STDIN`.
    CopyFrom(CopyFromStdin),
    /// `COPY … TO STDOUT`: the query's plan and how rows are written.
    CopyTo(Box<LogicalPlan>, CopyFormat),
    /// `ALTER TABLE`.
    AlterTable(Box<datafusion::sql::sqlparser::ast::AlterTable>),
    /// `CREATE INDEX` / `DROP INDEX`.
    Index(IndexStatement),
    /// A continuous-query statement.
    Streaming(StreamingStatement),
    /// A connector table.
    CreateSource(Box<CreateSource>),
    /// `FETCH` from a SUBSCRIBE cursor, with the cursor's row schema.
    Fetch(StreamingStatement, SchemaRef),
    /// A role statement.
    Role(RoleStatement),
}

impl PreparedStatement {
    /// A statement of `kind`, planned under plan generations `planned_at`.
    pub(crate) fn new(
        kind: PreparedKind,
        names: Option<PostgresNames>,
        planned_at: Generations,
    ) -> Self {
        let reads_only = matches!(
            &kind,
            PreparedKind::Plan(plan) if plan_returns_rows(plan) && only_reads(plan)
        );
        Self {
            kind,
            names,
            executed_rows: None,
            planned_at,
            plans: Arc::default(),
            reads_only,
        }
    }

    /// Whether running this may change how the session's other statements
    /// plan but no other session's: settings, transaction boundaries and
    /// writes (which reach other sessions through the commit clock).
    pub(crate) fn changes_only_its_session(&self) -> bool {
        match &self.kind {
            // Writes and session statements: what returns no rows but DDL.
            PreparedKind::Plan(plan) | PreparedKind::CopyTo(plan, _) => {
                !plan_returns_rows(plan) && !matches!(plan.as_ref(), LogicalPlan::Ddl(_))
            }
            PreparedKind::Session(_) | PreparedKind::CopyFrom(_) | PreparedKind::Fetch(..) => true,
            _ => false,
        }
    }

    /// Whether this is a query that only reads (see [`only_reads`]): its
    /// plans may be reused, and running it changes no other plan.
    pub(crate) fn only_reads(&self) -> bool {
        self.reads_only
    }

    /// Schema of the rows this statement returns; empty for statements that
    /// return only a command tag (DDL, DML, `SET`, …).
    pub fn result_schema(&self) -> SchemaRef {
        if let Some(rows) = &self.executed_rows {
            return Arc::clone(rows);
        }
        match &self.kind {
            PreparedKind::Plan(plan) if plan_returns_rows(plan) => {
                self.with_postgres_names(Arc::new(plan.schema().as_arrow().clone()))
            }
            PreparedKind::Session(SessionCommand::Show { name }) => {
                Arc::new(Schema::new(vec![Field::new(
                    name.clone(),
                    DataType::Utf8,
                    false,
                )]))
            }
            PreparedKind::Session(SessionCommand::ShowAll) => show_all_schema(),
            PreparedKind::Model(statement) => crate::ddl::models::result_schema(statement),
            PreparedKind::Fetch(_, schema) => Arc::clone(schema),
            PreparedKind::Streaming(
                StreamingStatement::ShowMaterializedViews | StreamingStatement::ShowSinks,
            ) => Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, false),
                Field::new("status", DataType::Utf8, false),
                Field::new("definition", DataType::Utf8, false),
            ])),
            PreparedKind::Streaming(StreamingStatement::Explain(_)) => {
                crate::streaming::explain::explain_schema()
            }
            _ => Arc::new(Schema::empty()),
        }
    }

    /// `schema` with the result columns named as Postgres names them
    /// (`?column?`, a function's name) where the query leaves them unnamed.
    pub(crate) fn with_postgres_names(&self, schema: SchemaRef) -> SchemaRef {
        self.names
            .as_ref()
            .and_then(|names| names.apply(&schema))
            .unwrap_or(schema)
    }

    /// Types of the `$1`, `$2`, … parameters in order; `None` where
    /// DataFusion could not infer a type from the context.
    pub fn parameter_types(&self) -> Result<Vec<Option<DataType>>> {
        Ok(self
            .parameter_fields()?
            .into_iter()
            .map(|f| f.map(|f| f.data_type().clone()))
            .collect())
    }

    /// Like [`Self::parameter_types`], with the field metadata that tells a
    /// Sluice type or a Postgres `oid` column from its storage type.
    pub fn parameter_fields(&self) -> Result<Vec<Option<FieldRef>>> {
        let PreparedKind::Plan(plan) = &self.kind else {
            return Ok(vec![]);
        };
        // SQL `PREPARE name AS …` binds its placeholders at `EXECUTE`, not
        // from the client's Bind message.
        if matches!(**plan, LogicalPlan::Statement(Statement::Prepare(_))) {
            return Ok(vec![]);
        }
        crate::pg::parameters::ordered_parameter_fields(plan)
    }

    /// Whether executing this statement yields rows (as opposed to a tag).
    pub fn returns_rows(&self) -> bool {
        match &self.kind {
            PreparedKind::Plan(plan) => plan_returns_rows(plan),
            PreparedKind::Session(cmd) => {
                matches!(cmd, SessionCommand::Show { .. } | SessionCommand::ShowAll)
            }
            PreparedKind::Model(statement) => matches!(
                statement,
                ModelStatement::Show | ModelStatement::Describe { .. }
            ),
            PreparedKind::Streaming(statement) => matches!(
                statement,
                StreamingStatement::ShowMaterializedViews
                    | StreamingStatement::ShowSinks
                    | StreamingStatement::Explain(_)
            ),
            PreparedKind::Fetch(..) => true,
            PreparedKind::CopyFrom(_)
            | PreparedKind::CopyTo(..)
            | PreparedKind::AlterTable(_)
            | PreparedKind::Index(_)
            | PreparedKind::Role(_)
            | PreparedKind::CreateSource(_) => false,
        }
    }

    /// The session command, for statements the session handles itself.
    pub fn session_command(&self) -> Option<&SessionCommand> {
        match &self.kind {
            PreparedKind::Session(cmd) => Some(cmd),
            PreparedKind::Plan(_)
            | PreparedKind::Model(_)
            | PreparedKind::CopyFrom(_)
            | PreparedKind::CopyTo(..)
            | PreparedKind::AlterTable(_)
            | PreparedKind::Index(_)
            | PreparedKind::Streaming(_)
            | PreparedKind::Fetch(..)
            | PreparedKind::Role(_)
            | PreparedKind::CreateSource(_) => None,
        }
    }

    /// The logical plan, for statements DataFusion planned.
    pub fn logical_plan(&self) -> Option<&LogicalPlan> {
        match &self.kind {
            PreparedKind::Plan(plan) => Some(plan),
            PreparedKind::Session(_)
            | PreparedKind::Model(_)
            | PreparedKind::CopyFrom(_)
            | PreparedKind::CopyTo(..)
            | PreparedKind::AlterTable(_)
            | PreparedKind::Index(_)
            | PreparedKind::Streaming(_)
            | PreparedKind::Fetch(..)
            | PreparedKind::Role(_)
            | PreparedKind::CreateSource(_) => None,
        }
    }
}

pub(crate) fn show_all_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("setting", DataType::Utf8, false),
        Field::new("description", DataType::Utf8, false),
    ]))
}

/// Whether a plan produces rows for the client rather than a command tag.
pub(crate) fn plan_returns_rows(plan: &LogicalPlan) -> bool {
    !matches!(
        plan,
        LogicalPlan::Ddl(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(
                Statement::SetVariable(_)
                    | Statement::ResetVariable(_)
                    | Statement::Prepare(_)
                    | Statement::Deallocate(_)
                    | Statement::TransactionStart(_)
                    | Statement::TransactionEnd(_)
            )
    )
}

/// The Postgres command tag for a plan that does not return rows.
pub(crate) fn command_tag(plan: &LogicalPlan) -> &'static str {
    match plan {
        LogicalPlan::Dml(dml) => match dml.op {
            WriteOp::Insert(_) => "INSERT",
            WriteOp::Delete => "DELETE",
            WriteOp::Update => "UPDATE",
            WriteOp::Ctas => "SELECT",
            WriteOp::Truncate => "TRUNCATE TABLE",
            WriteOp::MergeInto(_) => "MERGE",
            _ => "UPDATE",
        },
        LogicalPlan::Copy(_) => "COPY",
        LogicalPlan::Ddl(ddl) => match ddl {
            DdlStatement::CreateExternalTable(_) => "CREATE EXTERNAL TABLE",
            DdlStatement::CreateMemoryTable(_) => "CREATE TABLE",
            DdlStatement::CreateView(_) => "CREATE VIEW",
            DdlStatement::CreateCatalogSchema(_) => "CREATE SCHEMA",
            DdlStatement::CreateCatalog(_) => "CREATE DATABASE",
            DdlStatement::CreateIndex(_) => "CREATE INDEX",
            DdlStatement::DropTable(_) => "DROP TABLE",
            DdlStatement::DropView(_) => "DROP VIEW",
            DdlStatement::DropCatalogSchema(_) => "DROP SCHEMA",
            DdlStatement::CreateFunction(_) => "CREATE FUNCTION",
            DdlStatement::DropFunction(_) => "DROP FUNCTION",
        },
        LogicalPlan::Statement(stmt) => match stmt {
            Statement::SetVariable(_) => "SET",
            Statement::ResetVariable(_) => "RESET",
            Statement::Prepare(_) => "PREPARE",
            Statement::Deallocate(_) => "DEALLOCATE",
            Statement::TransactionStart(_) => "BEGIN",
            Statement::TransactionEnd(_) => "COMMIT",
            Statement::Execute(_) => "EXECUTE",
        },
        _ => "SELECT",
    }
}

/// How a statement changes the client's transaction state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionEffect {
    /// The statement leaves the transaction state alone.
    None,
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT` / `END`.
    Commit,
    /// `ROLLBACK` / `ABORT`.
    Rollback,
    /// `ROLLBACK TO SAVEPOINT`: the transaction goes on, out of a failed
    /// state if it was in one.
    RollbackToSavepoint,
}

/// Completion of a statement that returns a command tag rather than rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandComplete {
    /// The Postgres command tag, e.g. `INSERT`, `CREATE TABLE`.
    pub tag: &'static str,
    /// Rows affected, for tags that carry a count.
    pub rows: Option<u64>,
    /// Transaction state change caused by the statement.
    pub transaction: TransactionEffect,
    /// A reported setting (Postgres `ParameterStatus`) the statement changed.
    pub parameter_status: Option<(String, String)>,
    /// A warning for the client (a Postgres `NoticeResponse`), sent before
    /// the tag.
    pub warning: Option<String>,
}

impl CommandComplete {
    pub(crate) fn tag(tag: &'static str) -> Self {
        Self {
            tag,
            rows: None,
            transaction: TransactionEffect::None,
            warning: None,
            parameter_status: None,
        }
    }
}

/// The result of executing one statement.
pub enum QueryOutput {
    /// Rows, streamed batch by batch: nothing is materialised up front.
    Rows(SendableRecordBatchStream),
    /// A command tag.
    Command(CommandComplete),
    /// `COPY … FROM STDIN` started: the front end feeds the client's data to
    /// it ([`CopyIn::push`]), then ends it ([`CopyIn::finish`]).
    CopyIn(Box<CopyIn>),
    /// `COPY … TO STDOUT`: rows the front end sends as COPY data for as
    /// long as the stream lasts (for `COPY (SUBSCRIBE v)`, until the client
    /// goes).
    CopyOut(CopyOutput),
}

/// The rows of a `COPY … TO STDOUT` and their format.
pub struct CopyOutput {
    /// The rows, streamed.
    pub rows: SendableRecordBatchStream,
    /// Text, CSV or binary, with its options.
    pub format: CopyFormat,
}

impl std::fmt::Debug for QueryOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryOutput::Rows(stream) => f.debug_tuple("Rows").field(&stream.schema()).finish(),
            QueryOutput::Command(c) => f.debug_tuple("Command").field(c).finish(),
            QueryOutput::CopyOut(copy) => f
                .debug_tuple("CopyOut")
                .field(&copy.rows.schema())
                .field(&copy.format)
                .finish(),
            QueryOutput::CopyIn(c) => f.debug_tuple("CopyIn").field(c).finish(),
        }
    }
}
