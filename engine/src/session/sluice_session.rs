//! [`SluiceSession`]: one client's view of the engine.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use datafusion::arrow::array::{RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::execution::context::SessionState;
use datafusion::logical_expr::{DdlStatement, Deallocate, LogicalPlan, Statement, WriteOp};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::{DataFrame, SessionContext};
use futures::{StreamExt, stream};
use sluice_types::conversion::convert_parameter;
use sluice_types::error::{SluiceError, SqlState};

use crate::context::{dml_count, table_store};
use crate::copy_in::CopyIn;
use crate::ddl::models::ModelOutcome;
use crate::ddl::tables as durable_ddl;
use crate::pg::column_names::PostgresNames;
use crate::pg::settings::{SessionSettings, SessionSettingsHandle};
use crate::planner;
use crate::rewrite::async_calls;
use crate::roles::{Privilege, RoleCatalog, privileges};
use crate::session::output::{
    CommandComplete, CopyOutput, PreparedKind, PreparedStatement, QueryOutput, TransactionEffect,
    command_tag, plan_returns_rows, show_all_schema,
};
use crate::session::plan_cache::{self, PlanGenerations, PlanKey, StateSnapshot};
use crate::session::simple_queries::SimpleQueries;
use crate::sql::copy::{CopyFormat, CopyFormatKind};
use crate::sql::model_statement::ModelStatement;
use crate::sql::sink_statement::SinkInput;
use crate::sql::statement::{SessionCommand, SluiceStatement, parse_sql};
use crate::sql::streaming_statement::StreamingStatement;
use crate::storage::vector_index::VectorSearchSettings;
use crate::storage::{SessionTransaction, Transaction};
use crate::streaming::{self, Cursors, Origin, StreamingOutcome};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast;

/// One client's session: its own settings and prepared statements over the
/// engine's shared catalog. Create with [`crate::Sluice::session`].
pub struct SluiceSession {
    ctx: SessionContext,
    /// Shared with the session's `current_setting`.
    settings: Arc<Mutex<SessionSettings>>,
    /// Open `DECLARE … CURSOR FOR SUBSCRIBE` cursors; closed by CLOSE, at
    /// the end of the transaction, or with the session.
    cursors: Cursors,
    /// The statements prepared with SQL `PREPARE`, with the rows each
    /// returns: for `DEALLOCATE ALL` and for describing an `EXECUTE`
    /// (DataFusion keeps them but neither lists them nor lends them out).
    prepared_names: Mutex<Vec<(String, SchemaRef)>>,
    /// The open `BEGIN … COMMIT` transaction, if any.
    transaction: Mutex<Option<OpenTransaction>>,
    /// The user the session runs as (see [`Self::set_user`]); `None` for
    /// an embedded session, which may do everything.
    user: Mutex<Option<String>>,
    /// Moved on by every statement that may change how a query plans.
    generations: PlanGenerations,
    /// The DataFusion state queries plan and run with, copied once per
    /// plan generation instead of once per statement.
    state: StateSnapshot,
    /// Simple queries' statements by their text.
    simple_queries: SimpleQueries,
}

/// A session's open transaction.
struct OpenTransaction {
    transaction: Arc<Transaction>,
    /// A statement failed in it: COMMIT rolls it back (as in Postgres).
    failed: bool,
}

impl std::fmt::Debug for SluiceSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SluiceSession")
            .field("session_id", &self.ctx.session_id())
            .finish()
    }
}

impl SluiceSession {
    pub(crate) fn new(ctx: SessionContext) -> Self {
        let settings = Arc::new(Mutex::new(SessionSettings::new()));
        crate::pg::setting_functions::register_setting_functions(&ctx, Arc::clone(&settings));
        ctx.state_ref()
            .write()
            .config_mut()
            .set_extension(Arc::new(SessionSettingsHandle(Arc::clone(&settings))));
        let generations = PlanGenerations::of(&ctx);
        Self {
            ctx,
            settings,
            cursors: Cursors::default(),
            prepared_names: Mutex::new(Vec::new()),
            transaction: Mutex::new(None),
            user: Mutex::new(None),
            generations,
            state: StateSnapshot::default(),
            simple_queries: SimpleQueries::default(),
        }
    }

    /// The DataFusion context behind this session.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    fn settings(&self) -> MutexGuard<'_, SessionSettings> {
        // A poisoned lock only means another thread panicked mid-update of a
        // plain map; the map itself is still usable.
        self.settings.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Names the user this session runs as (what `current_user` and its
    /// synonyms return); the server calls it once the client has logged in.
    pub fn set_user(&self, user: &str) {
        crate::pg::session_user::register_session_user(&self.ctx, user);
        *self.user.lock().unwrap_or_else(|e| e.into_inner()) = Some(user.to_owned());
        self.generations.advance_session();
    }

    /// Refuses `privilege` unless the session's user holds it (the role
    /// catalog decides; an embedded session holds every privilege).
    fn require(&self, privilege: Privilege) -> Result<()> {
        let Some(user) = self.user.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return Ok(());
        };
        let holds = role_catalog(&self.ctx).is_none_or(|roles| roles.holds(&user, privilege));
        if holds {
            Ok(())
        } else {
            Err(privilege.denied(&user))
        }
    }

    /// Refuses `plan` unless the session's user holds what it needs. Only
    /// a restricted user's plans are walked: this runs for every query.
    fn require_for_plan(&self, plan: &LogicalPlan) -> Result<()> {
        let user = self.user.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let restricted = user.is_some_and(|user| {
            role_catalog(&self.ctx).is_some_and(|roles| roles.is_restricted(&user))
        });
        if restricted {
            for privilege in privileges::needed_by_plan(plan)? {
                self.require(privilege)?;
            }
        }
        Ok(())
    }

    /// The settings reported to clients at startup (`ParameterStatus`).
    pub fn reported_settings(&self) -> Vec<(String, String)> {
        self.settings().reported()
    }

    /// How long the session waits for its client's next message before
    /// closing (`idle_session_timeout`, or inside a transaction
    /// `idle_in_transaction_session_timeout`), if set.
    pub fn idle_timeout(&self, in_transaction: bool) -> Option<Duration> {
        self.settings().idle_timeout(in_transaction)
    }

    /// The session's `statement_timeout`, if one is set.
    pub fn statement_timeout(&self) -> Option<Duration> {
        self.settings().statement_timeout()
    }

    /// Parses SQL text into statements.
    pub fn parse(&self, sql: &str) -> Result<Vec<SluiceStatement>> {
        parse_sql(sql)
    }

    /// Plans one statement. Parameters (`$1`, …) stay as placeholders until
    /// [`Self::execute`] binds them.
    pub async fn prepare(&self, statement: &SluiceStatement) -> Result<PreparedStatement> {
        let prepared = self.prepare_statement(statement).await;
        if prepared.is_err() {
            // As in Postgres, a statement that fails to plan dooms the
            // transaction it is in.
            self.mark_transaction_failed();
        }
        prepared
    }

    async fn prepare_statement(&self, statement: &SluiceStatement) -> Result<PreparedStatement> {
        // Read before planning: a change made meanwhile makes this plan stale.
        let planned_at = self.generations.now();
        if let SluiceStatement::CatalogQuery {
            as_written,
            compatible,
        } = statement
        {
            // As written when DataFusion can plan it: the compatible reading
            // may have replaced parts of it with NULL.
            let (statement, plan) = match planner::plan_statement(&self.ctx, as_written).await {
                Ok(plan) => (as_written, plan),
                Err(_) => (
                    compatible,
                    planner::plan_statement(&self.ctx, compatible).await?,
                ),
            };
            return Ok(PreparedStatement::new(
                PreparedKind::Plan(Box::new(plan)),
                PostgresNames::of(statement),
                planned_at,
            ));
        }
        let names = match statement {
            SluiceStatement::DataFusion(stmt) => PostgresNames::of(stmt),
            _ => None,
        };
        let kind = match statement {
            SluiceStatement::CatalogQuery { .. } => {
                return Err(DataFusionError::Internal(
                    "catalog queries are planned above".into(),
                ));
            }
            SluiceStatement::DataFusion(stmt) => {
                let plan = planner::plan_statement(&self.ctx, stmt).await?;
                if let LogicalPlan::Statement(Statement::Execute(execute)) = &plan {
                    // Its rows are the prepared query's, which a client
                    // describing it before it runs must be told.
                    let schema = self
                        .prepared_names
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .find(|(name, _)| *name == execute.name)
                        .map(|(_, schema)| Arc::clone(schema));
                    return Ok(PreparedStatement {
                        executed_rows: schema,
                        ..PreparedStatement::new(
                            PreparedKind::Plan(Box::new(plan)),
                            None,
                            planned_at,
                        )
                    });
                }
                PreparedKind::Plan(Box::new(plan))
            }
            SluiceStatement::Session(cmd) => PreparedKind::Session(cmd.clone()),
            SluiceStatement::Model(statement) => PreparedKind::Model(statement.clone()),
            SluiceStatement::Role(statement) => PreparedKind::Role(statement.clone()),
            SluiceStatement::CopyFrom(statement) => PreparedKind::CopyFrom(statement.clone()),
            SluiceStatement::CopyTo(copy) => {
                let query =
                    DFStatement::Statement(Box::new(ast::Statement::Query(copy.query.clone())));
                let plan = planner::plan_statement(&self.ctx, &query).await?;
                PreparedKind::CopyTo(Box::new(plan), copy.format.clone())
            }
            SluiceStatement::AlterTable(alter) => PreparedKind::AlterTable(alter.clone()),
            SluiceStatement::Index(statement) => PreparedKind::Index(statement.clone()),
            SluiceStatement::Streaming(statement @ StreamingStatement::Fetch { cursor, .. }) => {
                // The rows' schema is the cursor's, known once it is open
                // (the extended protocol describes it before executing).
                let schema = self.cursors.get(cursor)?.lock().await.schema();
                PreparedKind::Fetch(statement.clone(), schema)
            }
            SluiceStatement::Streaming(statement) => PreparedKind::Streaming(statement.clone()),
            SluiceStatement::CreateSource(source) => PreparedKind::CreateSource(source.clone()),
            SluiceStatement::CreateTableWithWatermark {
                statement,
                watermark,
            } => {
                let plan = planner::plan_statement(&self.ctx, statement).await?;
                PreparedKind::Plan(Box::new(durable_ddl::with_watermark(plan, watermark)?))
            }
        };
        Ok(PreparedStatement::new(kind, names, planned_at))
    }

    /// Re-runs a stored view or external-table definition while the data
    /// directory is opened: Sluice's parser and rewrites, but no recording
    /// (the definition is already stored).
    pub(crate) async fn restore_definition(&self, sql: &str) -> Result<()> {
        for statement in self.parse(sql)? {
            if let SluiceStatement::Streaming(statement) = &statement {
                self.execute_streaming(statement, Origin::Restore).await?;
                continue;
            }
            if let SluiceStatement::CreateSource(source) = &statement {
                streaming::create_source(&self.ctx, source, Origin::Restore).await?;
                continue;
            }
            if let SluiceStatement::DataFusion(stmt) = &statement {
                let plan = planner::plan_statement(&self.ctx, stmt).await?;
                let plan = planner::bind_and_fold(&self.ctx, plan, None).await?;
                self.ctx.execute_logical_plan(plan).await?;
            }
        }
        self.generations.advance_engine();
        Ok(())
    }

    /// Executes a prepared statement with the given parameter values.
    /// Rows are returned as a lazy stream; DDL, DML and session commands
    /// have taken effect when this returns.
    pub async fn execute(
        &self,
        prepared: &PreparedStatement,
        params: Option<ParamValues>,
    ) -> Result<QueryOutput> {
        let output = match prepared.session_command() {
            Some(command) if is_transaction_command(command) => {
                self.execute_transaction_command(command).await
            }
            _ => {
                self.check_allowed_in_transaction(prepared)?;
                self.execute_kind(prepared, params).await
            }
        };
        if output.is_err() {
            self.mark_transaction_failed();
        }
        if prepared.only_reads() {
            // Changes no plan.
        } else if prepared.changes_only_its_session() {
            self.generations.advance_session();
        } else {
            self.generations.advance_engine();
        }
        output
    }

    fn open_transaction(&self) -> MutexGuard<'_, Option<OpenTransaction>> {
        self.transaction.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a `BEGIN … COMMIT` transaction is open.
    pub fn in_transaction(&self) -> bool {
        self.open_transaction().is_some()
    }

    /// Marks the open transaction failed (a statement in it failed, here or
    /// while its rows were sent): its COMMIT rolls back.
    pub fn mark_transaction_failed(&self) {
        if let Some(open) = self.open_transaction().as_mut() {
            open.failed = true;
        }
    }

    /// Starting a continuous query is not part of a transaction (it runs
    /// on after it): refused inside one, as Postgres refuses statements
    /// that cannot be rolled back.
    fn check_allowed_in_transaction(&self, prepared: &PreparedStatement) -> Result<()> {
        let statement = match &prepared.kind {
            PreparedKind::Streaming(StreamingStatement::CreateMaterializedView { .. }) => {
                "CREATE MATERIALIZED VIEW"
            }
            PreparedKind::Streaming(StreamingStatement::CreateSink(_)) => "CREATE SINK",
            _ => return Ok(()),
        };
        if self.in_transaction() {
            return Err(SluiceError::new(
                SqlState::ACTIVE_SQL_TRANSACTION,
                format!("{statement} cannot run inside a transaction block"),
            )
            .into());
        }
        Ok(())
    }

    /// What starting a continuous query needs: its query's reading
    /// functions, and its sink's connector.
    fn require_for_streaming(&self, statement: &StreamingStatement) -> Result<()> {
        let (query, connector) = match statement {
            StreamingStatement::CreateMaterializedView { query, .. } => {
                (Some(query.to_string()), None)
            }
            StreamingStatement::CreateSink(sink) => (
                match &sink.input {
                    SinkInput::Query(query) => Some(query.to_string()),
                    SinkInput::View(_) => None,
                },
                sink.options.get("connector").map(String::as_str),
            ),
            _ => return Ok(()),
        };
        for privilege in query
            .as_deref()
            .map(privileges::needed_by_sql)
            .unwrap_or_default()
        {
            self.require(privilege)?;
        }
        if let Some(privilege) = privileges::needed_by_connector(connector, true) {
            self.require(privilege)?;
        }
        Ok(())
    }

    /// The open transaction; outside one, the error Postgres gives
    /// `command`.
    fn transaction_for(&self, command: &str) -> Result<Arc<Transaction>> {
        self.open_transaction()
            .as_ref()
            .map(|open| Arc::clone(&open.transaction))
            .ok_or_else(|| {
                SluiceError::new(
                    SqlState::NO_ACTIVE_SQL_TRANSACTION,
                    format!("{command} can only be used in transaction blocks"),
                )
                .into()
            })
    }

    /// Makes `transaction` the one the session's scans and writes use
    /// (`None`: none, each statement commits on its own).
    fn use_transaction(&self, transaction: Option<Arc<Transaction>>) {
        let state = self.ctx.state_ref();
        let mut state = state.write();
        state
            .config_mut()
            .set_extension(Arc::new(SessionTransaction(transaction)));
        self.generations.advance_session();
    }

    /// Ends the open transaction, if any: the session's statements commit
    /// on their own again.
    fn end_transaction(&self) -> Option<OpenTransaction> {
        let open = self.open_transaction().take();
        if open.is_some() {
            self.use_transaction(None);
        }
        open
    }

    /// BEGIN, COMMIT, ROLLBACK and the savepoint commands.
    async fn execute_transaction_command(&self, command: &SessionCommand) -> Result<QueryOutput> {
        Ok(match command {
            SessionCommand::Begin => {
                let mut output = transaction("BEGIN", TransactionEffect::Begin);
                if self.in_transaction() {
                    if let QueryOutput::Command(done) = &mut output {
                        done.warning = Some("there is already a transaction in progress".into());
                    }
                    return Ok(output);
                }
                let transaction = match table_store(&self.ctx) {
                    Some(store) => store.begin_transaction(),
                    None => Transaction::without_tables(),
                };
                self.use_transaction(Some(Arc::clone(&transaction)));
                *self.open_transaction() = Some(OpenTransaction {
                    transaction,
                    failed: false,
                });
                output
            }
            // Cursors live until the end of their transaction, as in Postgres.
            SessionCommand::Commit => {
                self.cursors.close(None)?;
                match self.end_transaction() {
                    Some(open) if open.failed => {
                        open.transaction.rollback().await;
                        transaction("ROLLBACK", TransactionEffect::Commit)
                    }
                    Some(open) => {
                        open.transaction.commit().await?;
                        transaction("COMMIT", TransactionEffect::Commit)
                    }
                    None => no_transaction("COMMIT"),
                }
            }
            SessionCommand::Rollback => {
                self.cursors.close(None)?;
                match self.end_transaction() {
                    Some(open) => {
                        open.transaction.rollback().await;
                        transaction("ROLLBACK", TransactionEffect::Rollback)
                    }
                    None => no_transaction("ROLLBACK"),
                }
            }
            SessionCommand::Savepoint { name } => {
                self.transaction_for("SAVEPOINT")?.savepoint(name).await?;
                QueryOutput::Command(CommandComplete::tag("SAVEPOINT"))
            }
            SessionCommand::ReleaseSavepoint { name } => {
                self.transaction_for("RELEASE SAVEPOINT")?
                    .release(name)
                    .await?;
                QueryOutput::Command(CommandComplete::tag("RELEASE"))
            }
            SessionCommand::RollbackToSavepoint { name } => {
                self.transaction_for("ROLLBACK TO SAVEPOINT")?
                    .rollback_to(name)
                    .await?;
                // The transaction is usable again.
                if let Some(open) = self.open_transaction().as_mut() {
                    open.failed = false;
                }
                transaction("ROLLBACK", TransactionEffect::RollbackToSavepoint)
            }
            other => {
                return Err(DataFusionError::Internal(format!(
                    "{other:?} is not a transaction command"
                )));
            }
        })
    }

    async fn execute_kind(
        &self,
        prepared: &PreparedStatement,
        params: Option<ParamValues>,
    ) -> Result<QueryOutput> {
        match &prepared.kind {
            PreparedKind::Plan(plan) => {
                let params = params
                    .map(|params| conform_params(params, &prepared.parameter_types()?))
                    .transpose()?;
                // Before folding, which evaluates constant calls (a
                // `read_bytes('…')` would be read, and gone from the plan).
                self.require_for_plan(plan)?;
                if prepared.only_reads() {
                    return self.run_query(prepared, plan, params).await;
                }
                let plan = planner::bind_and_fold(&self.ctx, (**plan).clone(), params).await?;
                match self.execute_plan(plan).await? {
                    QueryOutput::Rows(stream) => {
                        let schema = prepared.with_postgres_names(stream.schema());
                        Ok(QueryOutput::Rows(renamed(stream, schema)))
                    }
                    other => Ok(other),
                }
            }
            PreparedKind::Session(SessionCommand::DeallocateAll) => {
                let names = std::mem::take(
                    &mut *self
                        .prepared_names
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()),
                );
                for (name, _) in names {
                    let plan = LogicalPlan::Statement(Statement::Deallocate(Deallocate { name }));
                    self.ctx.execute_logical_plan(plan).await?;
                }
                Ok(QueryOutput::Command(CommandComplete::tag("DEALLOCATE ALL")))
            }
            PreparedKind::Session(cmd) => self.execute_session_command(cmd),
            PreparedKind::Role(statement) => {
                self.require(Privilege::ManageRoles)?;
                let roles = role_catalog(&self.ctx).ok_or_else(|| {
                    DataFusionError::Plan("this engine has no role catalog".into())
                })?;
                let tag = crate::roles::execute(&roles, statement).await?;
                Ok(QueryOutput::Command(CommandComplete::tag(tag)))
            }
            PreparedKind::Model(statement) => {
                if matches!(
                    statement,
                    ModelStatement::Create(_) | ModelStatement::Drop { .. }
                ) {
                    self.require(Privilege::CreateModel)?;
                }
                match crate::ddl::models::execute(&self.ctx, statement).await? {
                    ModelOutcome::Done(tag) => Ok(QueryOutput::Command(CommandComplete::tag(tag))),
                    ModelOutcome::Rows(batch) => Ok(rows_output(batch)),
                }
            }
            PreparedKind::Index(statement) => {
                let tag = crate::ddl::indexes::execute(&self.ctx, statement).await?;
                Ok(QueryOutput::Command(CommandComplete::tag(tag)))
            }
            PreparedKind::AlterTable(alter) => {
                crate::ddl::alter_table::execute(&self.ctx, alter).await?;
                Ok(QueryOutput::Command(CommandComplete::tag("ALTER TABLE")))
            }
            PreparedKind::Streaming(statement) | PreparedKind::Fetch(statement, _) => {
                self.require_for_streaming(statement)?;
                self.execute_streaming(statement, Origin::Client).await
            }
            PreparedKind::CreateSource(source) => {
                let connector = source.options.get("connector").map(String::as_str);
                if let Some(privilege) = privileges::needed_by_connector(connector, false) {
                    self.require(privilege)?;
                }
                streaming::create_source(&self.ctx, source, Origin::Client).await?;
                Ok(QueryOutput::Command(CommandComplete::tag("CREATE TABLE")))
            }
            PreparedKind::CopyFrom(statement) => Ok(QueryOutput::CopyIn(Box::new(
                CopyIn::start(&self.ctx, statement).await?,
            ))),
            PreparedKind::CopyTo(plan, format) => {
                self.require_for_plan(plan)?;
                let plan = planner::bind_and_fold(&self.ctx, (**plan).clone(), None).await?;
                match self.execute_plan(plan).await? {
                    QueryOutput::Rows(rows) => Ok(QueryOutput::CopyOut(CopyOutput {
                        rows,
                        format: format.clone(),
                    })),
                    _ => Err(DataFusionError::Plan(
                        "COPY … TO STDOUT needs a query that returns rows".into(),
                    )),
                }
            }
        }
    }

    async fn execute_streaming(
        &self,
        statement: &StreamingStatement,
        origin: Origin,
    ) -> Result<QueryOutput> {
        match statement {
            StreamingStatement::DeclareSubscribe {
                cursor,
                view,
                snapshot,
            } => {
                let subscription = streaming::subscribe(&self.ctx, view, *snapshot)?;
                self.cursors.declare(cursor, subscription)?;
                return Ok(QueryOutput::Command(CommandComplete::tag("DECLARE CURSOR")));
            }
            StreamingStatement::Fetch {
                cursor,
                count,
                timeout,
            } => {
                let subscription = self.cursors.get(cursor)?;
                let batch = subscription.lock().await.fetch(*count, *timeout).await?;
                return Ok(rows_output(batch));
            }
            StreamingStatement::Close { cursor } => {
                self.cursors.close(cursor.as_deref())?;
                return Ok(QueryOutput::Command(CommandComplete::tag("CLOSE CURSOR")));
            }
            StreamingStatement::CopySubscribe { view, snapshot } => {
                let subscription = streaming::subscribe(&self.ctx, view, *snapshot)?;
                return Ok(QueryOutput::CopyOut(CopyOutput {
                    rows: subscription.into_stream(),
                    format: CopyFormat::new(CopyFormatKind::Text),
                }));
            }
            _ => {}
        }
        // One lock of the settings for both values.
        let config = {
            let settings = self.settings();
            streaming::QueryConfig {
                barrier_interval: settings.barrier_interval(),
                parallelism: settings.streaming_parallelism(),
                checkpoint_interval: settings.checkpoint_interval(),
                region_logs: settings.region_logs(),
            }
        };
        match streaming::execute(&self.ctx, statement, config, origin).await? {
            StreamingOutcome::Done(tag) => Ok(QueryOutput::Command(CommandComplete::tag(tag))),
            StreamingOutcome::Rows(batch) => Ok(rows_output(batch)),
        }
    }

    /// Runs a query that only reads, with the physical plan of its last
    /// execution where that still holds (see [`plan_cache`]).
    async fn run_query(
        &self,
        prepared: &PreparedStatement,
        plan: &LogicalPlan,
        params: Option<ParamValues>,
    ) -> Result<QueryOutput> {
        let key = PlanKey::now(&self.generations, &self.ctx);
        let (state, task) = self.state.get(&self.ctx, key);
        let physical = match (prepared.plans.get(key)?, params) {
            (Some(physical), None) => physical,
            (Some(physical), Some(params)) => plan_cache::bind_parameters(physical, &params)?,
            (None, params) => {
                if let Some(params) = &params
                    && plan_cache::parameters_only_compared_to_columns(plan)
                    && prepared.plans.may_plan_unbound(key)
                {
                    match self.plan_unbound(&state, plan).await {
                        Some(physical) => {
                            prepared.plans.put(key, Some(&physical));
                            let bound = plan_cache::bind_parameters(physical, params)?;
                            return self.stream_rows(prepared, bound, task);
                        }
                        None => prepared.plans.refuse_unbound(key),
                    }
                }
                let without_parameters = params.is_none();
                let bound = planner::bind_and_fold(&self.ctx, plan.clone(), params).await?;
                streaming::check_statement(&self.ctx, &bound)?;
                let (bound, physical) = plan_in_own_task(Arc::clone(&state), bound).await?;
                if without_parameters {
                    let reusable = plan_cache::reusable(&bound, &physical);
                    prepared.plans.put(key, reusable.then_some(&physical));
                }
                physical
            }
        };
        self.stream_rows(prepared, physical, task)
    }

    /// `plan`, with its parameters unbound, planned physically where that
    /// plan may serve every later execution (see [`plan_cache`]); `None`
    /// otherwise, whatever the reason: planning it with its values then
    /// reports any error.
    async fn plan_unbound(
        &self,
        state: &SessionState,
        plan: &LogicalPlan,
    ) -> Option<Arc<dyn ExecutionPlan>> {
        let folded = async_calls::fold(plan.clone(), &self.ctx).await.ok()?;
        streaming::check_statement(&self.ctx, &folded).ok()?;
        let physical = match plan_cache::physical_plan_unbound(state, &folded).await {
            Ok(physical) => physical,
            Err(e) => {
                log::debug!("planned with its values each time: {e}");
                return None;
            }
        };
        let reusable = plan_cache::reusable(&folded, &physical);
        if !reusable {
            log::debug!("planned with its values each time: its plan holds state");
        }
        reusable.then_some(physical)
    }

    fn stream_rows(
        &self,
        prepared: &PreparedStatement,
        physical: Arc<dyn ExecutionPlan>,
        task: Arc<TaskContext>,
    ) -> Result<QueryOutput> {
        let stream = datafusion::physical_plan::execute_stream(physical, task)?;
        let schema = prepared.with_postgres_names(stream.schema());
        Ok(QueryOutput::Rows(renamed(stream, schema)))
    }

    /// The statement of a simple query this session ran before with the
    /// same text, while its plans still hold: repeating a query skips its
    /// parsing and planning.
    pub fn cached_simple_query(&self, sql: &str) -> Option<PreparedStatement> {
        self.simple_queries.get(sql, self.generations.now())
    }

    /// Keeps `prepared`, planned from the whole text `sql` of a simple
    /// query, for [`Self::cached_simple_query`] (queries only).
    pub fn remember_simple_query(&self, sql: &str, prepared: &PreparedStatement) {
        self.simple_queries.put(sql, prepared);
    }

    /// Runs a plan that is ready to execute (bound and folded).
    async fn execute_plan(&self, plan: LogicalPlan) -> Result<QueryOutput> {
        streaming::check_statement(&self.ctx, &plan)?;
        let prepared_name = match &plan {
            LogicalPlan::Statement(Statement::Prepare(prepare)) => Some((
                prepare.name.clone(),
                Arc::new(prepare.input.schema().as_arrow().clone()),
            )),
            _ => None,
        };
        let deallocated = match &plan {
            LogicalPlan::Statement(Statement::Deallocate(deallocate)) => {
                Some(deallocate.name.clone())
            }
            _ => None,
        };
        let output = self.execute_plan_inner(plan).await?;
        let mut names = self
            .prepared_names
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((name, schema)) = prepared_name {
            names.retain(|(n, _)| *n != name);
            names.push((name, schema));
        }
        if let Some(name) = deallocated {
            names.retain(|(n, _)| *n != name);
        }
        Ok(output)
    }

    async fn execute_plan_inner(&self, plan: LogicalPlan) -> Result<QueryOutput> {
        if plan_returns_rows(&plan) {
            let df = self.ctx.execute_logical_plan(plan).await?;
            return Ok(QueryOutput::Rows(df.execute_stream().await?));
        }
        let tag = command_tag(&plan);
        let store = table_store(&self.ctx);
        let definition_change = store
            .as_ref()
            .and_then(|_| durable_ddl::definition_change(&self.ctx, &plan));
        if let Some(store) = &store {
            match &plan {
                LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(cmd))
                    if durable_ddl::create_table(&self.ctx, store, cmd).await? =>
                {
                    return Ok(QueryOutput::Command(CommandComplete::tag(tag)));
                }
                LogicalPlan::Ddl(DdlStatement::DropTable(cmd)) => {
                    durable_ddl::drop_table(&self.ctx, store, cmd).await?;
                }
                _ => {}
            }
        }
        // DataFusion runs DML and COPY only when collected.
        let runs_on_collect = matches!(plan, LogicalPlan::Dml(_) | LogicalPlan::Copy(_));
        // Postgres reports no row count for TRUNCATE.
        let reports_rows = runs_on_collect
            && !matches!(&plan, LogicalPlan::Dml(dml) if dml.op == WriteOp::Truncate);
        let df = self.ctx.execute_logical_plan(plan).await?;
        let rows = if runs_on_collect {
            let rows = dml_count(df.collect().await?)?;
            reports_rows.then_some(rows)
        } else {
            None
        };
        if let (Some(store), Some(change)) = (&store, definition_change) {
            durable_ddl::apply_definition_change(store, change).await?;
        }
        Ok(QueryOutput::Command(CommandComplete {
            rows,
            ..CommandComplete::tag(tag)
        }))
    }

    fn execute_session_command(&self, cmd: &SessionCommand) -> Result<QueryOutput> {
        let mut settings = self.settings();
        let output = match cmd {
            SessionCommand::Set { name, value } => {
                let reported = settings.set(name, value.as_deref())?;
                self.sync_engine_setting(name, &settings)?;
                QueryOutput::Command(CommandComplete {
                    parameter_status: reported,
                    ..CommandComplete::tag("SET")
                })
            }
            SessionCommand::Reset { name: Some(name) } => {
                let reported = settings.set(name, None)?;
                self.sync_engine_setting(name, &settings)?;
                QueryOutput::Command(CommandComplete {
                    parameter_status: reported,
                    ..CommandComplete::tag("RESET")
                })
            }
            SessionCommand::Reset { name: None } => {
                let changed = settings.reset_all();
                self.sync_time_zone(&settings)?;
                self.sync_vector_search(&settings);
                // Only one ParameterStatus rides on the tag; the time zone is
                // the one that changes how later results look.
                let reported = changed.into_iter().find(|(n, _)| n == "TimeZone");
                QueryOutput::Command(CommandComplete {
                    parameter_status: reported,
                    ..CommandComplete::tag("RESET")
                })
            }
            SessionCommand::Show { name } => {
                let value = settings.get(name)?;
                let schema = Arc::new(Schema::new(vec![Field::new(
                    name.clone(),
                    DataType::Utf8,
                    false,
                )]));
                let batch = RecordBatch::try_new(
                    Arc::clone(&schema),
                    vec![Arc::new(StringArray::from(vec![value]))],
                )?;
                rows_output(batch)
            }
            SessionCommand::ShowAll => {
                let all = settings.all();
                let column = |f: fn(&(String, String, String)) -> &String| {
                    Arc::new(StringArray::from_iter_values(all.iter().map(f)))
                        as datafusion::arrow::array::ArrayRef
                };
                let batch = RecordBatch::try_new(
                    show_all_schema(),
                    vec![column(|r| &r.0), column(|r| &r.1), column(|r| &r.2)],
                )?;
                rows_output(batch)
            }
            SessionCommand::Begin
            | SessionCommand::Commit
            | SessionCommand::Rollback
            | SessionCommand::Savepoint { .. }
            | SessionCommand::ReleaseSavepoint { .. }
            | SessionCommand::RollbackToSavepoint { .. } => {
                return Err(DataFusionError::Internal(
                    "transaction commands are run by execute".into(),
                ));
            }
            SessionCommand::Ignored { tag } => QueryOutput::Command(CommandComplete::tag(tag)),
            // Runs plans, so `execute` handles it before coming here.
            SessionCommand::DeallocateAll => {
                return Err(DataFusionError::Internal(
                    "DEALLOCATE ALL is run by execute".into(),
                ));
            }
        };
        Ok(output)
    }

    /// Mirrors the Postgres `TimeZone` setting into DataFusion's, which
    /// governs `now()` and timestamp-with-time-zone arithmetic.
    /// Hands a setting the engine reads during planning (rather than the
    /// session) to DataFusion's session state.
    fn sync_engine_setting(&self, name: &str, settings: &SessionSettings) -> Result<()> {
        match name {
            "timezone" => self.sync_time_zone(settings),
            "vector.ef_search" => {
                self.sync_vector_search(settings);
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn sync_vector_search(&self, settings: &SessionSettings) {
        let state = self.ctx.state_ref();
        let mut state = state.write();
        state
            .config_mut()
            .set_extension(Arc::new(VectorSearchSettings {
                ef_search: settings.vector_ef_search(),
            }));
    }

    fn sync_time_zone(&self, settings: &SessionSettings) -> Result<()> {
        let tz = settings.get("timezone")?;
        let state = self.ctx.state_ref();
        let mut state = state.write();
        state
            .config_mut()
            .options_mut()
            .set("datafusion.execution.time_zone", &tz)
    }

    /// Runs a single SQL statement and returns its result as a DataFrame.
    /// Statements without rows have taken effect when this returns; DML
    /// returns one row with the affected `count`.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        let result = self.run_sql(sql).await;
        if result.is_err() {
            self.mark_transaction_failed();
        }
        result
    }

    async fn run_sql(&self, sql: &str) -> Result<DataFrame> {
        let mut statements = self.parse(sql)?;
        if statements.len() != 1 {
            return Err(DataFusionError::Plan(format!(
                "expected exactly one statement, found {}",
                statements.len()
            )));
        }
        let statement = statements.remove(0);
        if let SluiceStatement::DataFusion(stmt) = &statement {
            let plan = planner::plan_statement(&self.ctx, stmt).await?;
            let plan = planner::bind_and_fold(&self.ctx, plan, None).await?;
            if plan_returns_rows(&plan) {
                // Queries stay lazy: the caller streams or collects them.
                return self.ctx.execute_logical_plan(plan).await;
            }
            // Everything else runs now, through the same path as the wire
            // (durable DDL included); DML reports its `count` as DataFusion's
            // DataFrames do.
            let output = self.execute_plan(plan).await;
            self.generations.advance_engine();
            return match output? {
                QueryOutput::Command(CommandComplete {
                    rows: Some(rows), ..
                }) => {
                    let schema = Arc::new(Schema::new(vec![Field::new(
                        "count",
                        DataType::UInt64,
                        false,
                    )]));
                    let batch = RecordBatch::try_new(
                        schema,
                        vec![Arc::new(UInt64Array::from(vec![rows]))],
                    )?;
                    self.ctx.read_batch(batch)
                }
                _ => self.ctx.read_empty(),
            };
        }
        let prepared = self.prepare(&statement).await?;
        match self.execute(&prepared, None).await? {
            QueryOutput::Rows(stream) => {
                let schema = stream.schema();
                let batches = datafusion::physical_plan::common::collect(stream).await?;
                self.ctx.read_batches(if batches.is_empty() {
                    vec![RecordBatch::new_empty(schema)]
                } else {
                    batches
                })
            }
            QueryOutput::Command(_) => self.ctx.read_empty(),
            QueryOutput::CopyOut(_) => Err(DataFusionError::NotImplemented(
                "COPY … TO STDOUT streams to a wire client: run the query itself here (for \
                 SUBSCRIBE, DECLARE … CURSOR FOR SUBSCRIBE and FETCH)"
                    .into(),
            )),
            QueryOutput::CopyIn(_) => Err(DataFusionError::NotImplemented(
                "COPY FROM STDIN needs a client that sends the data (the Postgres COPY protocol)"
                    .into(),
            )),
        }
    }
}

/// Casts bound values to the types the plan inferred for their
/// placeholders. Drivers send e.g. text as `Utf8` where the column is
/// `Utf8View`; left alone, the mismatched arrays reach operators that trust
/// the plan's schema (an INSERT would store them as they came).
fn conform_params(params: ParamValues, types: &[Option<DataType>]) -> Result<ParamValues> {
    let ParamValues::List(values) = params else {
        return Ok(params);
    };
    let values = values
        .into_iter()
        .enumerate()
        .map(|(i, mut v)| {
            if let Some(Some(target)) = types.get(i)
                && v.value.data_type() != *target
            {
                v.value = if v.value.is_null() {
                    ScalarValue::try_from(target).unwrap_or(v.value)
                } else if let Some(converted) = convert_parameter(&v.value, target)? {
                    converted
                } else {
                    v.value.cast_to(target)?
                };
            }
            Ok(v)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ParamValues::List(values))
}

/// The engine's role catalog, if it has one.
fn role_catalog(ctx: &SessionContext) -> Option<Arc<RoleCatalog>> {
    ctx.state_ref()
        .read()
        .config()
        .get_extension::<RoleCatalog>()
}

/// Whether `command` starts, ends or marks a place in a transaction.
fn is_transaction_command(command: &SessionCommand) -> bool {
    matches!(
        command,
        SessionCommand::Begin
            | SessionCommand::Commit
            | SessionCommand::Rollback
            | SessionCommand::Savepoint { .. }
            | SessionCommand::ReleaseSavepoint { .. }
            | SessionCommand::RollbackToSavepoint { .. }
    )
}

/// COMMIT or ROLLBACK outside a transaction: done, with Postgres' warning.
fn no_transaction(tag: &'static str) -> QueryOutput {
    let effect = if tag == "COMMIT" {
        TransactionEffect::Commit
    } else {
        TransactionEffect::Rollback
    };
    let mut output = transaction(tag, effect);
    if let QueryOutput::Command(done) = &mut output {
        done.warning = Some("there is no transaction in progress".into());
    }
    output
}

fn transaction(tag: &'static str, effect: TransactionEffect) -> QueryOutput {
    QueryOutput::Command(CommandComplete {
        transaction: effect,
        ..CommandComplete::tag(tag)
    })
}

/// `stream` with its batches under `schema`: the same columns, other names.
fn renamed(stream: SendableRecordBatchStream, schema: SchemaRef) -> SendableRecordBatchStream {
    if schema == stream.schema() {
        return stream;
    }
    let batches_schema = Arc::clone(&schema);
    Box::pin(RecordBatchStreamAdapter::new(
        schema,
        stream.map(move |batch| {
            let batch = batch?;
            Ok(RecordBatch::try_new(
                Arc::clone(&batches_schema),
                batch.columns().to_vec(),
            )?)
        }),
    ))
}

fn rows_output(batch: RecordBatch) -> QueryOutput {
    let schema = batch.schema();
    QueryOutput::Rows(Box::pin(RecordBatchStreamAdapter::new(
        schema,
        stream::iter(vec![Ok(batch)]),
    )))
}

/// Plans `bound` physically on a task of its own, so that a cancel request
/// or the statement's timeout is answered while a pathological plan is
/// still being worked on (a constant folded to hundreds of megabytes,
/// which every optimizer pass hashes, took 17 s to plan in a debug build):
/// the caller stops waiting, and the planning ends on its own. A plan
/// cached or planned with unbound parameters takes none of this hop.
async fn plan_in_own_task(
    state: Arc<SessionState>,
    bound: LogicalPlan,
) -> Result<(LogicalPlan, Arc<dyn ExecutionPlan>)> {
    tokio::spawn(async move {
        let physical = plan_cache::physical_plan(&state, &bound).await?;
        Ok((bound, physical))
    })
    .await
    .map_err(|e| DataFusionError::Internal(format!("planning stopped: {e}")))?
}
