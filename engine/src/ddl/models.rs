//! Running model statements against the engine's model registry, and
//! keeping the model catalog durable: each `CREATE MODEL` is stored (as
//! SQL, under `catalog/models/`) before it is acknowledged and restored when
//! the data directory is opened.
//!
//! On the first start of a data directory the bundled embedding model
//! (`minilm`, all-MiniLM-L6-v2) is registered when `scripts/install-deps.sh`
//! has installed it, so `SELECT EMBED('minilm', 'hello')` works out of the
//! box; dropping it is remembered like any other catalog change.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::SessionContext;
use sluice_functions::model::describe::{describe, device_summary};
use sluice_functions::model::runtime::sluice_home;
use sluice_functions::model::{LoadedModel, ModelRegistry, ModelSpec};
use sluice_types::error::{SluiceError, SqlState};

use crate::context::model_registry;
use crate::sql::model_statement::{CreateModel, ModelStatement};
use crate::sql::statement::{SluiceStatement, parse_sql};
use crate::storage::TableStore;

/// Name of the bundled embedding model.
pub const DEFAULT_EMBEDDING_MODEL: &str = "minilm";
const DEFAULTS_MARKER: &str = "default-models-registered";

/// Schema of a model statement's result rows (empty for CREATE/DROP).
pub(crate) fn result_schema(statement: &ModelStatement) -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, false);
    match statement {
        ModelStatement::Show => Arc::new(Schema::new(vec![
            text("name"),
            text("task"),
            text("provider"),
            text("device"),
            text("path"),
        ])),
        ModelStatement::Describe { .. } => {
            Arc::new(Schema::new(vec![text("property"), text("value")]))
        }
        ModelStatement::Create(_) | ModelStatement::Drop { .. } => Arc::new(Schema::empty()),
    }
}

/// The outcome of a model statement.
pub(crate) enum ModelOutcome {
    /// A command tag.
    Done(&'static str),
    /// Rows (`SHOW MODELS`, `DESCRIBE MODEL`).
    Rows(RecordBatch),
}

/// Runs a model statement.
pub(crate) async fn execute(
    ctx: &SessionContext,
    statement: &ModelStatement,
) -> Result<ModelOutcome> {
    let registry = model_registry(ctx)?;
    let store = crate::context::table_store(ctx);
    match statement {
        ModelStatement::Create(create) => {
            if registry.contains(&create.name) {
                if create.if_not_exists {
                    return Ok(ModelOutcome::Done("CREATE MODEL"));
                }
                if !create.or_replace {
                    return Err(sluice_functions::model::registry::already_exists(
                        &create.name,
                    ));
                }
            }
            let spec = spec_of(ctx, create).await?;
            // Loading reads and optimises the model file: not on the async
            // runtime's threads.
            let model = tokio::task::spawn_blocking(move || LoadedModel::load(spec))
                .await
                .map_err(|e| DataFusionError::Execution(format!("model loading failed: {e}")))??;
            if let Some(store) = &store {
                store
                    .save_model_definition(&create.name, &create.to_catalog_sql())
                    .await?;
            }
            registry.insert(model, true)?;
            Ok(ModelOutcome::Done("CREATE MODEL"))
        }
        ModelStatement::Drop { name, if_exists } => {
            if !registry.contains(name) {
                if *if_exists {
                    return Ok(ModelOutcome::Done("DROP MODEL"));
                }
                return Err(SluiceError::new(
                    SqlState::UNDEFINED_OBJECT,
                    format!("model '{name}' does not exist"),
                )
                .into());
            }
            if let Some(store) = &store {
                store.remove_model_definition(name).await?;
            }
            registry.remove(name);
            Ok(ModelOutcome::Done("DROP MODEL"))
        }
        ModelStatement::Show => {
            let entries = registry.list();
            let column = |f: &dyn Fn(&sluice_functions::model::ModelEntry) -> String| {
                Arc::new(StringArray::from_iter_values(entries.iter().map(|e| f(e))))
                    as datafusion::arrow::array::ArrayRef
            };
            let batch = RecordBatch::try_new(
                result_schema(statement),
                vec![
                    column(&|e| e.spec.name.clone()),
                    column(&|e| e.spec.task.as_str().to_string()),
                    column(&|e| e.spec.provider.clone()),
                    column(&device_summary),
                    column(&|e| e.spec.path.display().to_string()),
                ],
            )?;
            Ok(ModelOutcome::Rows(batch))
        }
        ModelStatement::Describe { name } => {
            let model = registry.get(name)?;
            let rows = describe(&model);
            let batch = RecordBatch::try_new(
                result_schema(statement),
                vec![
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.0))),
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.1))),
                ],
            )?;
            Ok(ModelOutcome::Rows(batch))
        }
    }
}

/// Validates a `CREATE MODEL` into a [`ModelSpec`]; column types are
/// resolved by planning them as a table's columns, so every type Sluice
/// knows (VECTOR(n), …) works in INPUT and OUTPUT.
async fn spec_of(ctx: &SessionContext, create: &CreateModel) -> Result<ModelSpec> {
    let inputs = column_fields(ctx, &create.inputs).await?;
    let outputs = column_fields(ctx, &create.outputs).await?;
    let mut spec = ModelSpec::new(&create.name, inputs, outputs, create.options.clone())?;
    spec.comment = create.comment.clone();
    model_registry(ctx)?.check(&spec)?;
    Ok(spec)
}

async fn column_fields(
    ctx: &SessionContext,
    columns: &[datafusion::sql::sqlparser::ast::ColumnDef],
) -> Result<Vec<FieldRef>> {
    if columns.is_empty() {
        return Ok(vec![]);
    }
    let list: Vec<String> = columns.iter().map(ToString::to_string).collect();
    let sql = format!("CREATE TABLE sluice_model_columns ({})", list.join(", "));
    let statement = datafusion::sql::parser::DFParser::parse_sql_with_dialect(
        &sql,
        &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
    )?
    .pop_front()
    .ok_or_else(|| DataFusionError::Internal("column list vanished".into()))?;
    match ctx.state().statement_to_plan(statement).await? {
        LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(cmd)) => {
            Ok(cmd.input.schema().fields().iter().cloned().collect())
        }
        _ => Err(DataFusionError::Internal(
            "column list did not plan as a table".into(),
        )),
    }
}

/// Restores the stored models (loaded at first use) and, on a data
/// directory's first start, registers the bundled embedding model.
pub(crate) async fn restore(ctx: &SessionContext, store: &TableStore) -> Result<()> {
    let registry = model_registry(ctx)?;
    for definition in store.model_definitions().await? {
        let restored = async {
            for statement in parse_sql(&definition.sql)? {
                if let SluiceStatement::Model(ModelStatement::Create(create)) = statement {
                    registry.insert_unloaded(spec_of(ctx, &create).await?);
                }
            }
            Ok::<_, DataFusionError>(())
        };
        if let Err(e) = restored.await {
            log::warn!("could not restore model {}: {e}", definition.name);
        }
    }
    if !store.has_marker(DEFAULTS_MARKER).await? {
        register_default_model(ctx, store, &registry).await?;
    }
    Ok(())
}

async fn register_default_model(
    ctx: &SessionContext,
    store: &TableStore,
    registry: &ModelRegistry,
) -> Result<()> {
    let dir = sluice_home().join("models").join(DEFAULT_EMBEDDING_MODEL);
    let (model, tokenizer) = (dir.join("model.onnx"), dir.join("tokenizer.json"));
    if !model.is_file() || !tokenizer.is_file() {
        log::warn!(
            "default embedding model not installed at {} (run scripts/install-deps.sh); \
             EMBED('{DEFAULT_EMBEDDING_MODEL}', …) is unavailable",
            dir.display()
        );
        return Ok(());
    }
    if !registry.contains(DEFAULT_EMBEDDING_MODEL) {
        let create = CreateModel {
            name: DEFAULT_EMBEDDING_MODEL.into(),
            or_replace: false,
            if_not_exists: false,
            inputs: vec![],
            outputs: vec![],
            comment: Some("all-MiniLM-L6-v2 (int8), bundled with Sluice".into()),
            options: BTreeMap::from([
                ("provider".to_string(), "onnx".to_string()),
                ("task".to_string(), "embedding".to_string()),
                ("path".to_string(), model.display().to_string()),
                ("tokenizer".to_string(), tokenizer.display().to_string()),
            ]),
        };
        store
            .save_model_definition(&create.name, &create.to_catalog_sql())
            .await?;
        registry.insert_unloaded(spec_of(ctx, &create).await?);
    }
    store.set_marker(DEFAULTS_MARKER).await
}
