//! `INSERT … VALUES` into columns of Sluice types.
//!
//! DataFusion types the literals of `INSERT … VALUES` by the target table
//! while planning, and refuses any it cannot cast with Arrow's kernel: text
//! into a UUID column fails before any Sluice rule can run. Postgres reads
//! those literals as the column's type, so Sluice writes the cast into the
//! statement (`'…'` becomes `'…'::uuid`) before DataFusion plans it; the
//! cast is then planned by `sluice_types`.

use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::planner::{IdentNormalizer, object_name_to_table_reference};
use datafusion::sql::sqlparser::ast::{self, CastKind, Expr, ObjectName};
use sluice_types::SluiceType;

/// Casts every VALUES cell bound for a Sluice-typed column to that type.
/// Statements of any other shape, and tables that do not exist (DataFusion
/// reports those), are left alone.
pub(crate) async fn cast_values_to_column_types(
    statement: &mut DFStatement,
    ctx: &SessionContext,
) -> Result<()> {
    let DFStatement::Statement(statement) = statement else {
        return Ok(());
    };
    let ast::Statement::Insert(insert) = statement.as_mut() else {
        return Ok(());
    };
    let ast::TableObject::TableName(name) = &insert.table else {
        return Ok(());
    };
    let Some(ast::SetExpr::Values(values)) = insert.source.as_mut().map(|q| q.body.as_mut()) else {
        return Ok(());
    };
    let Ok(table) = object_name_to_table_reference(name.clone(), true) else {
        return Ok(());
    };
    let Ok(provider) = ctx.table_provider(table).await else {
        return Ok(());
    };
    let schema = provider.schema();
    let targets: Vec<Option<SluiceType>> = if insert.columns.is_empty() {
        schema
            .fields()
            .iter()
            .map(|f| SluiceType::of_field(f))
            .collect()
    } else {
        insert
            .columns
            .iter()
            .map(|column| {
                let name = column_name(column)?;
                schema
                    .field_with_name(&name)
                    .ok()
                    .and_then(SluiceType::of_field)
            })
            .collect()
    };
    if targets.iter().all(Option::is_none) {
        return Ok(());
    }
    for row in &mut values.rows {
        for (cell, target) in row.content.iter_mut().zip(&targets) {
            if let Some(ty) = target
                && !is_default(cell)
            {
                let value = std::mem::replace(cell, Expr::value(ast::Value::Null));
                *cell = Expr::Cast {
                    kind: CastKind::DoubleColon,
                    expr: Box::new(value),
                    data_type: ty.sql_data_type(),
                    array: false,
                    format: None,
                };
            }
        }
    }
    Ok(())
}

/// A column name as DataFusion resolves it: unquoted names fold to lower
/// case.
pub(crate) fn column_name(column: &ObjectName) -> Option<String> {
    Some(ident_name(column.0.last()?.as_ident()?))
}

/// An identifier as DataFusion resolves it (DataFusion's own normaliser).
pub(crate) fn ident_name(ident: &ast::Ident) -> String {
    IdentNormalizer::new(true).normalize(ident.clone())
}

fn is_default(expr: &Expr) -> bool {
    matches!(expr, Expr::Identifier(ident) if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default"))
}
