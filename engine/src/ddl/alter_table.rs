//! `ALTER TABLE … ADD COLUMN` on durable tables. DataFusion has no ALTER
//! TABLE; Sluice plans the new column as a one-column `CREATE TABLE` (so
//! every type and default the table DDL knows works here too) and rewrites
//! the table under the new schema in one commit.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{DdlStatement, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::{AlterTable, AlterTableOperation, ColumnDef};

use crate::sql::names::ident_name;
use crate::sql::statement::{SluiceStatement, parse_sql};
use crate::storage::DurableTable;

/// Runs `ALTER TABLE`; only `ADD [COLUMN] [IF NOT EXISTS]` is supported.
pub(crate) async fn execute(ctx: &SessionContext, alter: &AlterTable) -> Result<()> {
    let reference = object_name_to_table_reference(alter.name.clone(), true)?;
    let provider = match ctx.table_provider(reference.clone()).await {
        Ok(provider) => provider,
        Err(_) if alter.if_exists => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut current = provider;
    let mut changed = false;
    for operation in &alter.operations {
        let any: &dyn std::any::Any = current.as_ref();
        let Some(table) = any.downcast_ref::<DurableTable>() else {
            return Err(DataFusionError::NotImplemented(format!(
                "ALTER TABLE is supported on Sluice tables only, not on {reference}"
            )));
        };
        let AlterTableOperation::AddColumn {
            if_not_exists,
            column_def,
            column_position: None,
            ..
        } = operation
        else {
            return Err(DataFusionError::NotImplemented(format!(
                "ALTER TABLE {operation} is not supported yet (only ADD COLUMN)"
            )));
        };
        let name = ident_name(&column_def.name);
        if table.schema().field_with_name(&name).is_ok() {
            if *if_not_exists {
                continue;
            }
            return Err(DataFusionError::Plan(format!(
                "column \"{name}\" of relation \"{}\" already exists",
                reference.table()
            )));
        }
        let (field, default) = plan_column(ctx, column_def).await?;
        let state = ctx.state();
        let altered = table.with_added_column(&state, field, default).await?;
        current = Arc::new(altered);
        changed = true;
    }
    if changed {
        // Replace the catalog entry: later statements plan against the new
        // schema.
        ctx.deregister_table(reference.clone())?;
        ctx.register_table(reference, current)?;
    }
    Ok(())
}

/// The column's Arrow field and default, planned as `CREATE TABLE`'s would be.
async fn plan_column(
    ctx: &SessionContext,
    column: &ColumnDef,
) -> Result<(
    datafusion::arrow::datatypes::Field,
    Option<datafusion::logical_expr::Expr>,
)> {
    let sql = format!("CREATE TABLE sluice_added_column ({column})");
    let mut statements = parse_sql(&sql)?;
    let Some(SluiceStatement::DataFusion(statement)) = statements.pop() else {
        return Err(DataFusionError::Plan(format!(
            "cannot plan column {column}"
        )));
    };
    let plan = ctx.state().statement_to_plan(*statement).await?;
    let LogicalPlan::Ddl(DdlStatement::CreateMemoryTable(create)) = plan else {
        return Err(DataFusionError::Plan(format!(
            "cannot plan column {column}"
        )));
    };
    let schema = create.input.schema();
    let field = schema.field(0).as_ref().clone();
    let default = create
        .column_defaults
        .into_iter()
        .find(|(name, _)| name == field.name())
        .map(|(_, expr)| expr);
    Ok((field, default))
}
