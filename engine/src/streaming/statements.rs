//! Runs the continuous-query statements
//! ([`crate::sql::streaming_statement`]): creating, dropping, listing,
//! pausing and flushing materialized views, and the dependency checks
//! other DDL makes against them.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{DdlStatement, LogicalPlan, WriteOp};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::ast::ObjectName;
use sluice_types::error::{SluiceError, SqlState};

pub use super::config::{Origin, QueryConfig};
use super::create_sink::plan_sink;
use super::explain;
use super::location::open_location;
use super::metrics::QueryState;
use super::plan::PlannedQuery;
use super::plan::plan_continuous_query;
use super::registry::{ContinuousQuery, QueryKind, continuous_queries};
use super::resume;
use super::runner::RunningQuery;
use super::sink::EpochSink;
use super::source::datagen::DatagenGenerator;
use super::source::files::{FileLocation, FilesTable};
use super::source::generator::{
    GeneratorOptions, GeneratorTable, OptionBag, RowGenerator, invalid_option,
};
use super::source::nats::{NatsOptions, NatsTable};
use super::source::nexmark::NexmarkGenerator;
use super::subscribe::Subscription;
use super::supervisor;
use super::view::{MaterializedView, MaterializedViewTable};
use crate::context::{DEFAULT_CATALOG, table_store};
use crate::ddl::tables::durable_name;
use crate::ddl::tables::with_watermark;
use crate::planner;
use crate::sql::sink_statement::SinkInput;
use crate::sql::source_statement::CreateSource;
use crate::sql::streaming_statement::StreamingStatement;

/// What a continuous-query statement returns.
pub enum StreamingOutcome {
    /// Done; the command tag.
    Done(&'static str),
    /// Rows (`SHOW MATERIALIZED VIEWS`).
    Rows(RecordBatch),
}

/// Runs `statement` with the session's `config`.
pub async fn execute(
    ctx: &SessionContext,
    statement: &StreamingStatement,
    config: QueryConfig,
    origin: Origin,
) -> Result<StreamingOutcome> {
    // A restored query runs with the settings it was created with.
    let config = match (origin, created_name(statement)) {
        (Origin::Restore, Some(name)) => {
            let (_, key) = view_name(ctx, name)?;
            resume::saved_settings(ctx, &key).await?.unwrap_or(config)
        }
        _ => config,
    };
    match execute_once(ctx, statement, config, origin).await {
        // The checkpoint is gone now: the query starts over.
        Err(e) if origin.resumes() && resume::is_unusable_checkpoint(&e) => {
            log::warn!("{e}; starting over");
            execute_once(ctx, statement, config, origin).await
        }
        outcome => outcome,
    }
}

/// The name of the query `statement` creates, if it creates one.
fn created_name(statement: &StreamingStatement) -> Option<&ObjectName> {
    match statement {
        StreamingStatement::CreateMaterializedView { name, .. } => Some(name),
        StreamingStatement::CreateSink(create) => Some(&create.name),
        _ => None,
    }
}

/// Runs `statement` once (a whole-query restart runs it again with
/// [`Origin::Restore`]).
async fn execute_once(
    ctx: &SessionContext,
    statement: &StreamingStatement,
    config: QueryConfig,
    origin: Origin,
) -> Result<StreamingOutcome> {
    let queries = continuous_queries(ctx);
    match statement {
        StreamingStatement::CreateMaterializedView {
            name,
            if_not_exists,
            query,
        } => {
            let (reference, key) = view_name(ctx, name)?;
            if origin != Origin::Restart && ctx.table_exist(reference.clone())? {
                if *if_not_exists {
                    return Ok(StreamingOutcome::Done("CREATE MATERIALIZED VIEW"));
                }
                return Err(already_exists(name));
            }
            let planned = plan_continuous_query(ctx, query, config.parallelism).await?;
            let view = Arc::new(MaterializedView::try_new(
                Arc::clone(&planned.output_schema),
                planned.updating,
            )?);
            let registered = Arc::new(MaterializedViewTable::new(
                Arc::clone(&view),
                query.to_string(),
            ));
            let started = Started {
                key,
                statement: statement.clone(),
                kind: QueryKind::View,
                definition: statement.to_sql(),
                view: Some(view),
            };
            let sink: Arc<dyn EpochSink> = Arc::<MaterializedView>::clone(registered.view());
            start(ctx, planned, sink, started, config, origin).await?;
            if origin == Origin::Restart {
                // The instance it replaces leaves the catalog only now.
                ctx.deregister_table(reference.clone())?;
            }
            ctx.register_table(reference, registered)?;
            Ok(StreamingOutcome::Done("CREATE MATERIALIZED VIEW"))
        }
        StreamingStatement::CreateSink(create) => {
            let (_, key) = view_name(ctx, &create.name)?;
            if origin != Origin::Restart && queries.get(&key).is_some() {
                if create.if_not_exists {
                    return Ok(StreamingOutcome::Done("CREATE SINK"));
                }
                return Err(already_exists(&create.name));
            }
            let (planned, sink) = plan_sink(ctx, create, &key, config.parallelism).await?;
            let started = Started {
                key,
                statement: statement.clone(),
                kind: QueryKind::Sink,
                definition: statement.to_sql(),
                view: None,
            };
            start(ctx, planned, sink, started, config, origin).await?;
            Ok(StreamingOutcome::Done("CREATE SINK"))
        }
        StreamingStatement::DropMaterializedView { name, if_exists } => {
            drop_query(ctx, name, QueryKind::View, *if_exists).await?;
            Ok(StreamingOutcome::Done("DROP MATERIALIZED VIEW"))
        }
        StreamingStatement::DropSink { name, if_exists } => {
            drop_query(ctx, name, QueryKind::Sink, *if_exists).await?;
            Ok(StreamingOutcome::Done("DROP SINK"))
        }
        StreamingStatement::ShowMaterializedViews => show(ctx, QueryKind::View),
        StreamingStatement::ShowSinks => show(ctx, QueryKind::Sink),
        StreamingStatement::AlterMaterializedView { name, pause } => {
            find(ctx, name, QueryKind::View)?.running.set_paused(*pause);
            Ok(StreamingOutcome::Done("ALTER MATERIALIZED VIEW"))
        }
        StreamingStatement::AlterSink { name, pause } => {
            find(ctx, name, QueryKind::Sink)?.running.set_paused(*pause);
            Ok(StreamingOutcome::Done("ALTER SINK"))
        }
        StreamingStatement::Checkpoint => {
            for query in queries.in_creation_order() {
                query.running.checkpoint().await?;
            }
            Ok(StreamingOutcome::Done("CHECKPOINT"))
        }
        StreamingStatement::SetParallelism {
            name,
            sink,
            parallelism,
        } => {
            let kind = if *sink {
                QueryKind::Sink
            } else {
                QueryKind::View
            };
            let query = find(ctx, name, kind)?;
            rescale(ctx, query, *parallelism).await?;
            Ok(StreamingOutcome::Done(if *sink {
                "ALTER SINK"
            } else {
                "ALTER MATERIALIZED VIEW"
            }))
        }
        StreamingStatement::Explain(inner) => Ok(StreamingOutcome::Rows(
            explain::explain(ctx, inner, config).await?,
        )),
        StreamingStatement::Flush => {
            // In creation order: a query reading a view comes after it.
            for query in queries.in_creation_order() {
                query.running.flush().await;
                // An exactly-once sink delivers at checkpoints: FLUSH
                // delivers what it flushed.
                let metrics = query.running.metrics();
                if query.kind == QueryKind::Sink
                    && metrics.checkpointing
                    && metrics.state != QueryState::Failed
                {
                    query.running.checkpoint().await?;
                }
            }
            Ok(StreamingOutcome::Done("FLUSH"))
        }
        // Cursors belong to a session: `SluiceSession` runs these itself.
        StreamingStatement::DeclareSubscribe { .. }
        | StreamingStatement::Fetch { .. }
        | StreamingStatement::Close { .. }
        | StreamingStatement::CopySubscribe { .. } => Err(DataFusionError::Internal(
            "SUBSCRIBE statements are run by the session".into(),
        )),
    }
}

/// What a new continuous query is, besides its plan.
struct Started {
    key: String,
    statement: StreamingStatement,
    kind: QueryKind,
    definition: String,
    view: Option<Arc<MaterializedView>>,
}

/// Starts a planned query feeding `sink`, waits for its first epoch (the
/// rows its source held), records it and (for a client) stores it.
async fn start(
    ctx: &SessionContext,
    mut planned: PlannedQuery,
    sink: Arc<dyn EpochSink>,
    started: Started,
    config: QueryConfig,
    origin: Origin,
) -> Result<()> {
    let queries = continuous_queries(ctx);
    if origin == Origin::Client {
        resume::save_settings(ctx, &started.key, &config).await?;
    }
    let mut start_point =
        resume::start_point(ctx, &started.key, &mut planned, &sink, &config, origin).await?;
    if let Some(region) = &mut start_point.region {
        region.rebuild = defining_query(&started.statement).map(|query| {
            resume::upstream_rebuild(
                ctx,
                query.clone(),
                config.parallelism,
                Arc::clone(&region.log),
            )
        });
    }
    let checkpointed = start_point.checkpointing.is_some();
    let running = RunningQuery::start(
        planned.sources,
        planned.heads,
        planned.pipeline,
        sink,
        config.barrier_interval,
        start_point,
    )?;
    // Like RisingWave's backfill: the statement returns once the view (or
    // sink) has taken the rows its source held.
    running.flush().await;
    if let Some(error) = running.metrics().last_error {
        return Err(SluiceError::new(
            SqlState::EXTERNAL_ROUTINE_EXCEPTION,
            format!(
                "{} \"{}\" failed while reading its source: {error}",
                started.kind.name(),
                started.key
            ),
        )
        .into());
    }
    if origin == Origin::Client
        && let Some(store) = table_store(ctx)
    {
        store
            .save_definition(&started.key, &started.definition)
            .await?;
    }
    let key = started.key.clone();
    // A replacement keeps its place in the creation order (FLUSH order).
    let sequence = match queries.get(&key) {
        Some(replaced) if origin == Origin::Restart => replaced.sequence,
        _ => queries.next_sequence(),
    };
    queries.insert(ContinuousQuery {
        name: started.key,
        kind: started.kind,
        sequence,
        definition: started.definition,
        statement: started.statement.clone(),
        config,
        sources: planned
            .source_tables
            .iter()
            .map(|table| resolve(ctx, table))
            .collect(),
        append_only: planned.append_only,
        view: started.view,
        running,
    });
    if checkpointed {
        supervisor::watch(ctx.clone(), key, restart_of(ctx, started.statement, config));
    }
    Ok(())
}

/// Restarts `query` at `parallelism`: it stops reading, takes a checkpoint
/// (when it checkpoints), stops, and a replacement starts from that
/// checkpoint with the new setting, which it keeps across restarts. A
/// grouped aggregate's groups are split anew over its copies
/// ([`super::aggregate::keyed`]); joins and SESSION windows move over whole.
async fn rescale(
    ctx: &SessionContext,
    query: Arc<ContinuousQuery>,
    parallelism: usize,
) -> Result<()> {
    query.running.set_paused(true);
    query.running.checkpoint().await?;
    let config = QueryConfig {
        parallelism,
        ..query.config
    };
    resume::save_settings(ctx, &query.name, &config).await?;
    // The old instance stops (its content stays readable) before the new
    // one claims the checkpoints, and is replaced once that one caught up.
    query.running.stop();
    let statement = query.statement.clone();
    let outcome = restart_of(ctx, statement.clone(), config)().await;
    if outcome.is_err() {
        // Back to the settings it had, from the same checkpoint.
        resume::save_settings(ctx, &query.name, &query.config).await?;
        if let Err(e) = restart_of(ctx, statement, query.config)().await {
            log::warn!(
                "{} could not restart after a failed rescale: {e}",
                query.name
            );
        }
    }
    outcome
}

/// Runs `statement` again as a restore replacing the running instance: a
/// whole-query restart. (A plain
/// function, so that the future's `Send` is proven outside the recursion
/// through [`execute_once`].)
fn restart_of(
    ctx: &SessionContext,
    statement: StreamingStatement,
    config: QueryConfig,
) -> supervisor::Restart {
    let ctx = ctx.clone();
    Arc::new(move || {
        let (ctx, statement) = (ctx.clone(), statement.clone());
        Box::pin(async move {
            execute_once(&ctx, &statement, config, Origin::Restart)
                .await
                .map(|_| ())
        })
    })
}

/// The query a continuous query's creating statement runs (`None` for a
/// sink from a view).
fn defining_query(statement: &StreamingStatement) -> Option<&ast::Query> {
    match statement {
        StreamingStatement::CreateMaterializedView { query, .. } => Some(query),
        StreamingStatement::CreateSink(create) => match &create.input {
            SinkInput::Query(query) => Some(query),
            SinkInput::View(_) => None,
        },
        _ => None,
    }
}

fn already_exists(name: &ObjectName) -> DataFusionError {
    SluiceError::new(
        SqlState::DUPLICATE_TABLE,
        format!("relation \"{name}\" already exists"),
    )
    .into()
}

/// The query `name` of `kind`.
fn find(ctx: &SessionContext, name: &ObjectName, kind: QueryKind) -> Result<Arc<ContinuousQuery>> {
    let (_, key) = view_name(ctx, name)?;
    continuous_queries(ctx)
        .get(&key)
        .filter(|q| q.kind == kind)
        .ok_or_else(|| no_such(name, kind))
}

async fn drop_query(
    ctx: &SessionContext,
    name: &ObjectName,
    kind: QueryKind,
    if_exists: bool,
) -> Result<()> {
    let queries = continuous_queries(ctx);
    let (reference, key) = view_name(ctx, name)?;
    if queries.get(&key).is_none_or(|q| q.kind != kind) {
        if if_exists {
            return Ok(());
        }
        return Err(no_such(name, kind));
    }
    refuse_if_read(ctx, &reference, "materialized view")?;
    queries.remove(&key);
    if kind == QueryKind::View {
        ctx.deregister_table(reference)?;
    }
    if let Some(store) = table_store(ctx) {
        store.remove_definition(&key).await?;
    }
    resume::remove_checkpoints(ctx, &key).await?;
    queries.forget_restarts(&key);
    Ok(())
}

/// Refuses to drop `name` (a `what`) while continuous queries read it
/// (2BP01, naming them).
fn refuse_if_read(ctx: &SessionContext, name: &TableReference, what: &str) -> Result<()> {
    let readers: Vec<String> = continuous_queries(ctx)
        .readers_of(&resolve(ctx, name))
        .into_iter()
        .map(|q| format!("{} {}", q.kind.name(), q.name))
        .collect();
    if readers.is_empty() {
        return Ok(());
    }
    Err(SluiceError::new(
        SqlState::DEPENDENT_OBJECTS_STILL_EXIST,
        format!(
            "cannot drop {what} {name} because {} depends on it (drop that first)",
            readers.join(", ")
        ),
    )
    .into())
}

fn show(ctx: &SessionContext, kind: QueryKind) -> Result<StreamingOutcome> {
    let all: Vec<_> = continuous_queries(ctx)
        .all()
        .into_iter()
        .filter(|q| q.kind == kind)
        .collect();
    let schema = Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("definition", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from_iter_values(all.iter().map(|q| &q.name))),
            Arc::new(StringArray::from_iter_values(
                all.iter().map(|q| q.running.metrics().state.name()),
            )),
            Arc::new(StringArray::from_iter_values(
                all.iter().map(|q| &q.definition),
            )),
        ],
    )?;
    Ok(StreamingOutcome::Rows(batch))
}

/// A subscription to the materialized view `name`.
pub fn subscribe(ctx: &SessionContext, name: &ObjectName, snapshot: bool) -> Result<Subscription> {
    let query = find(ctx, name, QueryKind::View)?;
    let view = query
        .view
        .as_ref()
        .ok_or_else(|| no_such(name, QueryKind::View))?;
    Subscription::new(&query.name, view, snapshot)
}

fn no_such(name: &ObjectName, kind: QueryKind) -> DataFusionError {
    SluiceError::new(
        SqlState::UNDEFINED_TABLE,
        format!("{} \"{name}\" does not exist", kind.name()),
    )
    .into()
}

/// The view's table reference and its registry (and definition) key.
fn view_name(ctx: &SessionContext, name: &ObjectName) -> Result<(TableReference, String)> {
    let reference = datafusion::sql::planner::object_name_to_table_reference(name.clone(), false)?;
    let durable = durable_name(ctx, &reference).ok_or_else(|| {
        SluiceError::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            format!("materialized views live in the {DEFAULT_CATALOG} catalog: {name}"),
        )
    })?;
    Ok((reference, durable.definition_key()))
}

/// `table` with its catalog and schema filled in from the session's.
fn resolve(ctx: &SessionContext, table: &TableReference) -> TableReference {
    let options = Arc::clone(ctx.state().config_options());
    let resolved = table.clone().resolve(
        &options.catalog.default_catalog,
        &options.catalog.default_schema,
    );
    TableReference::full(resolved.catalog, resolved.schema, resolved.table)
}

/// Creates a connector table (`CREATE TABLE … WITH ('connector' = …)`):
/// its columns planned as any table's, its rows from the connector.
pub async fn create_source(
    ctx: &SessionContext,
    source: &CreateSource,
    origin: Origin,
) -> Result<()> {
    let (reference, key) = view_name(ctx, source.name())?;
    if ctx.table_exist(reference.clone())? {
        if source.table.if_not_exists {
            return Ok(());
        }
        return Err(SluiceError::new(
            SqlState::DUPLICATE_TABLE,
            format!("relation \"{}\" already exists", source.name()),
        )
        .into());
    }
    let statement = DFStatement::Statement(Box::new(ast::Statement::CreateTable(
        (*source.table).clone(),
    )));
    let mut plan = planner::plan_statement(ctx, &statement).await?;
    if let Some(watermark) = &source.watermark {
        plan = with_watermark(plan, watermark)?;
    }
    let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) = &plan else {
        return Err(DataFusionError::Internal(
            "a connector table did not plan as CREATE TABLE".into(),
        ));
    };
    let schema = Arc::new(create.input.schema().as_arrow().clone());
    let mut options = OptionBag::new(source.options.clone());
    let connector = options.take("connector").unwrap_or_default();
    let provider: Arc<dyn TableProvider> = match connector.to_ascii_lowercase().as_str() {
        "filesystem" => {
            let location =
                FileLocation::parse(&mut options, &schema, |path| open_location(ctx, path))?;
            Arc::new(FilesTable::new(location, Arc::clone(&schema)))
        }
        "datagen" | "nexmark" => {
            let generator: Arc<dyn RowGenerator> = if connector.eq_ignore_ascii_case("datagen") {
                Arc::new(DatagenGenerator::try_new(
                    Arc::clone(&schema),
                    &mut options,
                )?)
            } else {
                Arc::new(NexmarkGenerator::try_new(
                    reference.table(),
                    Arc::clone(&schema),
                    &mut options,
                )?)
            };
            let generator_options = GeneratorOptions::parse(generator, &mut options)?;
            Arc::new(GeneratorTable::new(
                reference.to_string(),
                generator_options,
                Arc::clone(&schema),
            ))
        }
        "nats" => Arc::new(NatsTable::new(
            NatsOptions::parse(&mut options)?,
            Arc::clone(&schema),
        )),
        other => {
            return Err(invalid_option(&format!(
                "unknown connector '{other}': Sluice has 'datagen', 'nexmark', 'filesystem' and \
                 'nats'"
            )));
        }
    };
    options.finish(&connector)?;
    if origin == Origin::Client
        && let Some(store) = table_store(ctx)
    {
        store.save_definition(&key, &source.definition).await?;
    }
    ctx.register_table(reference, provider)?;
    Ok(())
}

/// Refuses statements a continuous query cannot follow: DDL that would
/// pull a table from under it or drop a materialized view as if it were a
/// table or plain view, and deletes or updates of rows an append-only
/// (windowed) query has already counted.
pub fn check_statement(ctx: &SessionContext, plan: &LogicalPlan) -> Result<()> {
    if let LogicalPlan::Dml(dml) = plan
        && matches!(
            dml.op,
            WriteOp::Delete | WriteOp::Update | WriteOp::Truncate
        )
    {
        let append_only: Vec<String> = continuous_queries(ctx)
            .readers_of(&resolve(ctx, &dml.table_name))
            .into_iter()
            .filter(|q| q.append_only)
            .map(|q| q.name.clone())
            .collect();
        if !append_only.is_empty() {
            return Err(SluiceError::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!(
                    "cannot {} rows of {}: materialized view {} reads it append-only (a                      windowed aggregate cannot retract windows it has emitted); drop the view                      first",
                    dml.op.name().to_ascii_uppercase(),
                    dml.table_name,
                    append_only.join(", ")
                ),
            )
            .into());
        }
    }
    let LogicalPlan::Ddl(ddl) = plan else {
        return Ok(());
    };
    let (name, what) = match ddl {
        DdlStatement::DropTable(drop) => (&drop.name, "table"),
        DdlStatement::DropView(drop) => (&drop.name, "view"),
        DdlStatement::CreateMemoryTable(create) if create.or_replace => (&create.name, "table"),
        _ => return Ok(()),
    };
    let queries = continuous_queries(ctx);
    if let Some(key) = durable_name(ctx, name).map(|n| n.definition_key())
        && queries.get(&key).is_some()
    {
        return Err(SluiceError::new(
            SqlState::WRONG_OBJECT_TYPE,
            format!("\"{name}\" is a materialized view: use DROP MATERIALIZED VIEW {name}"),
        )
        .into());
    }
    refuse_if_read(ctx, name, what)?;
    Ok(())
}
