//! `CREATE TABLE` and `DROP TABLE` on durable tables. DataFusion would make
//! an in-memory table; Sluice writes the table's first manifest (and any
//! `AS SELECT` rows) before acknowledging, and deletes its files on drop.
//! Every schema of the default catalog is durable: `CREATE SCHEMA` is
//! stored, and its tables live under `tables/<schema>/`.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, TableReference};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    CreateMemoryTable, DdlStatement, DropTable, EmptyRelation, LogicalPlan,
};
use datafusion::prelude::{DataFrame, SessionContext};
use sluice_types::error::{SluiceError, SqlState};

use crate::context::{DEFAULT_CATALOG, DEFAULT_SCHEMA};
use crate::sql::watermark::WatermarkSpec;
use crate::storage::{DurableTable, TableStore, UnreadableTable};

/// A durable table's place: its schema and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DurableName {
    pub schema: String,
    pub table: String,
}

impl DurableName {
    /// The key of a stored definition: the bare name in `public` (as data
    /// directories have always stored them), `schema.name` elsewhere.
    pub fn definition_key(&self) -> String {
        if self.schema == DEFAULT_SCHEMA {
            self.table.clone()
        } else {
            format!("{}.{}", self.schema, self.table)
        }
    }
}

/// Where `name` lives, when it is in the default catalog (the durable one);
/// `None` for tables elsewhere.
pub(crate) fn durable_name(ctx: &SessionContext, name: &TableReference) -> Option<DurableName> {
    let options = Arc::clone(ctx.state().config_options());
    let resolved = name.clone().resolve(
        &options.catalog.default_catalog,
        &options.catalog.default_schema,
    );
    (resolved.catalog.as_ref() == DEFAULT_CATALOG).then(|| DurableName {
        schema: resolved.schema.to_string(),
        table: resolved.table.to_string(),
    })
}

/// Runs `CREATE TABLE` durably. `Ok(false)` means the table is not in the
/// durable schema and DataFusion should create it.
pub(crate) async fn create_table(
    ctx: &SessionContext,
    store: &TableStore,
    cmd: &CreateMemoryTable,
) -> Result<bool> {
    let Some(name) = durable_name(ctx, &cmd.name) else {
        return Ok(false);
    };
    if cmd.temporary {
        return Err(DataFusionError::NotImplemented(
            "temporary tables are not supported".into(),
        ));
    }
    let exists = ctx.table_exist(cmd.name.clone())?;
    match (cmd.if_not_exists, cmd.or_replace, exists) {
        (true, true, _) => {
            return Err(DataFusionError::Plan(
                "'IF NOT EXISTS' cannot coexist with 'REPLACE'".into(),
            ));
        }
        (true, false, true) => return Ok(true),
        (false, false, true) => {
            return Err(DataFusionError::Execution(format!(
                "Table '{}' already exists",
                cmd.name
            )));
        }
        (false, true, true) => {
            drop_durable(ctx, store, &cmd.name, &name).await?;
        }
        (_, _, false) => {}
    }
    // Optimised once, by `collect` (optimising an optimised plan again
    // re-pushes filters already pushed into scans).
    let query = DataFrame::new(ctx.state(), cmd.input.as_ref().clone());
    let schema = Arc::clone(query.schema().inner());
    let rows = query.execute_stream().await?;
    let table = store
        .create(
            &name.schema,
            &name.table,
            schema,
            rows,
            cmd.constraints.clone(),
            cmd.column_defaults.iter().cloned().collect(),
        )
        .await?;
    ctx.register_table(cmd.name.clone(), Arc::new(table))?;
    Ok(true)
}

/// Deletes a durable table's files before DataFusion deregisters it.
pub(crate) async fn drop_table(
    ctx: &SessionContext,
    store: &TableStore,
    cmd: &DropTable,
) -> Result<()> {
    let Some(name) = durable_name(ctx, &cmd.name) else {
        return Ok(());
    };
    let Ok(provider) = ctx.table_provider(cmd.name.clone()).await else {
        return Ok(());
    };
    let provider: &dyn std::any::Any = provider.as_ref();
    if let Some(table) = provider.downcast_ref::<DurableTable>() {
        table.mark_dropped().await;
        store.drop_table(&name.schema, &name.table).await?;
    } else if provider.is::<UnreadableTable>() {
        store.drop_table(&name.schema, &name.table).await?;
    }
    Ok(())
}

async fn drop_durable(
    ctx: &SessionContext,
    store: &TableStore,
    reference: &TableReference,
    name: &DurableName,
) -> Result<()> {
    if let Ok(provider) = ctx.table_provider(reference.clone()).await {
        let provider: &dyn std::any::Any = provider.as_ref();
        if let Some(table) = provider.downcast_ref::<DurableTable>() {
            table.mark_dropped().await;
        }
    }
    store.drop_table(&name.schema, &name.table).await?;
    ctx.deregister_table(reference.clone())?;
    Ok(())
}

/// What a DDL statement does to the stored definitions (views, external
/// tables), worked out before DataFusion runs it.
pub(crate) enum DefinitionChange {
    /// Store this statement under this name.
    Save { name: String, sql: String },
    /// Forget the definition of this name.
    Remove { name: String },
    /// Remember the schema.
    SaveSchema { name: String },
    /// Forget the schema; with `cascade`, its tables and definitions too.
    RemoveSchema { name: String, cascade: bool },
}

/// The definition change `plan` makes, if it makes one.
pub(crate) fn definition_change(
    ctx: &SessionContext,
    plan: &LogicalPlan,
) -> Option<DefinitionChange> {
    let LogicalPlan::Ddl(ddl) = plan else {
        return None;
    };
    match ddl {
        DdlStatement::CreateView(view) if !view.temporary => Some(DefinitionChange::Save {
            name: durable_name(ctx, &view.name)?.definition_key(),
            sql: view.definition.clone()?,
        }),
        DdlStatement::CreateExternalTable(table) if !table.temporary => {
            Some(DefinitionChange::Save {
                name: durable_name(ctx, &table.name)?.definition_key(),
                sql: table.definition.clone()?,
            })
        }
        DdlStatement::DropView(view) => Some(DefinitionChange::Remove {
            name: durable_name(ctx, &view.name)?.definition_key(),
        }),
        DdlStatement::DropTable(table) => Some(DefinitionChange::Remove {
            name: durable_name(ctx, &table.name)?.definition_key(),
        }),
        DdlStatement::CreateCatalogSchema(schema) => Some(DefinitionChange::SaveSchema {
            name: default_catalog_schema(&schema.schema_name)?,
        }),
        DdlStatement::DropCatalogSchema(schema) => Some(DefinitionChange::RemoveSchema {
            name: default_catalog_schema(&schema.name.to_string())?,
            cascade: schema.cascade,
        }),
        _ => None,
    }
}

/// Records a definition change after its statement succeeded.
pub(crate) async fn apply_definition_change(
    store: &TableStore,
    change: DefinitionChange,
) -> Result<()> {
    match change {
        DefinitionChange::Save { name, sql } => store.save_definition(&name, &sql).await,
        DefinitionChange::Remove { name } => store.remove_definition(&name).await,
        DefinitionChange::SaveSchema { name } => store.save_schema(&name).await,
        DefinitionChange::RemoveSchema { name, cascade } => {
            if cascade {
                store.drop_schema_contents(&name).await?;
            }
            store.remove_schema(&name).await
        }
    }
}

/// The schema name of `CREATE SCHEMA [catalog.]name`, when the schema is in
/// the default catalog.
fn default_catalog_schema(name: &str) -> Option<String> {
    match name.split_once('.') {
        Some((catalog, schema)) => (catalog == DEFAULT_CATALOG).then(|| schema.to_owned()),
        None => Some(name.to_owned()),
    }
}

/// `plan` (a `CREATE TABLE` with a column list) with `watermark` in the new
/// table's schema metadata, where continuous queries reading the table find
/// it. The event-time column must be a timestamp.
pub(crate) fn with_watermark(plan: LogicalPlan, watermark: &WatermarkSpec) -> Result<LogicalPlan> {
    let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(mut cmd)) = plan else {
        return Err(DataFusionError::Plan(
            "WATERMARK belongs in CREATE TABLE".into(),
        ));
    };
    let LogicalPlan::EmptyRelation(relation) = cmd.input.as_ref() else {
        return Err(SluiceError::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            "WATERMARK needs a column list: CREATE TABLE … AS SELECT cannot declare one",
        )
        .into());
    };
    let field = relation
        .schema
        .field_with_unqualified_name(&watermark.column)?;
    if !matches!(field.data_type(), DataType::Timestamp(_, _)) {
        return Err(SluiceError::new(
            SqlState::DATATYPE_MISMATCH,
            format!(
                "WATERMARK FOR {}: the column is {}, an event-time column must be a TIMESTAMP",
                watermark.column,
                field.data_type()
            ),
        )
        .into());
    }
    let mut metadata = relation.schema.metadata().clone();
    watermark.add_to_metadata(&mut metadata);
    let fields = relation
        .schema
        .iter()
        .map(|(qualifier, field)| (qualifier.cloned(), Arc::clone(field)))
        .collect();
    let schema = DFSchema::new_with_metadata(fields, metadata)?;
    cmd.input = Arc::new(LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: relation.produce_one_row,
        schema: Arc::new(schema),
    }));
    Ok(LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(cmd)))
}
