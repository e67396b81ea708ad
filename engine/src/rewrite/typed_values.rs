//! Text written into columns of Sluice types (`INSERT … VALUES`,
//! `INSERT … SELECT '…'`, `UPDATE … SET c = '…'`).
//!
//! DataFusion types these values by the target table while planning, and
//! refuses any it cannot cast with Arrow's kernel: text into a UUID or
//! VECTOR column fails before any Sluice rule can run. Postgres reads
//! those literals as the column's type, so Sluice writes the cast into the
//! statement (`'…'` becomes `'…'::uuid`) before DataFusion plans it; the
//! cast is then planned by `sluice_types`.

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::{self, CastKind, Expr, ObjectName};
use sluice_types::SluiceType;

use crate::sql::names::column_name;

/// Casts the untyped text bound for Sluice-typed columns to their types:
/// every `INSERT … VALUES` cell, the string literals an `INSERT … SELECT`
/// selects, and the string literals of `UPDATE … SET`. Statements of any
/// other shape, and tables that do not exist (DataFusion reports those),
/// are left alone.
pub(crate) async fn cast_values_to_column_types(
    statement: &mut DFStatement,
    ctx: &SessionContext,
) -> Result<()> {
    let DFStatement::Statement(statement) = statement else {
        return Ok(());
    };
    match statement.as_mut() {
        ast::Statement::Insert(insert) => {
            let ast::TableObject::TableName(name) = &insert.table else {
                return Ok(());
            };
            let Some(schema) = table_schema(name, ctx).await else {
                return Ok(());
            };
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
                    .map(|column| column_type(&schema, column))
                    .collect()
            };
            if targets.iter().all(Option::is_none) {
                return Ok(());
            }
            match insert.source.as_mut().map(|q| q.body.as_mut()) {
                Some(ast::SetExpr::Values(values)) => {
                    for row in &mut values.rows {
                        for (cell, target) in row.content.iter_mut().zip(&targets) {
                            if let Some(ty) = target
                                && !is_default(cell)
                            {
                                cast_in_place(cell, *ty);
                            }
                        }
                    }
                }
                Some(ast::SetExpr::Select(select)) => {
                    for (item, target) in select.projection.iter_mut().zip(&targets) {
                        let expr = match item {
                            ast::SelectItem::UnnamedExpr(expr)
                            | ast::SelectItem::ExprWithAlias { expr, .. } => expr,
                            _ => continue,
                        };
                        if let Some(ty) = target
                            && is_text_literal(expr)
                        {
                            cast_in_place(expr, *ty);
                        }
                    }
                }
                _ => {}
            }
        }
        ast::Statement::Update(update) => {
            let ast::TableFactor::Table { name, .. } = &update.table.relation else {
                return Ok(());
            };
            let Some(schema) = table_schema(name, ctx).await else {
                return Ok(());
            };
            for assignment in &mut update.assignments {
                let ast::AssignmentTarget::ColumnName(column) = &assignment.target else {
                    continue;
                };
                if let Some(ty) = column_type(&schema, column)
                    && is_text_literal(&assignment.value)
                {
                    cast_in_place(&mut assignment.value, ty);
                }
            }
        }
        _ => {}
    }
    Ok(())
}

async fn table_schema(name: &ObjectName, ctx: &SessionContext) -> Option<SchemaRef> {
    let table = object_name_to_table_reference(name.clone(), true).ok()?;
    let provider = ctx.table_provider(table).await.ok()?;
    Some(provider.schema())
}

fn column_type(schema: &SchemaRef, column: &ObjectName) -> Option<SluiceType> {
    let name = column_name(column)?;
    schema
        .field_with_name(&name)
        .ok()
        .and_then(SluiceType::of_field)
}

/// Untyped text, as Postgres reads it: a string literal.
fn is_text_literal(expr: &Expr) -> bool {
    matches!(
        expr,
        Expr::Value(v) if matches!(
            v.value,
            ast::Value::SingleQuotedString(_)
                | ast::Value::EscapedStringLiteral(_)
                | ast::Value::DollarQuotedString(_)
        )
    )
}

/// `expr` becomes `expr::<ty>`.
fn cast_in_place(expr: &mut Expr, ty: SluiceType) {
    let value = std::mem::replace(expr, Expr::value(ast::Value::Null));
    *expr = Expr::Cast {
        kind: CastKind::DoubleColon,
        expr: Box::new(value),
        data_type: ty.sql_data_type(),
        array: false,
        format: None,
    };
}

fn is_default(expr: &Expr) -> bool {
    matches!(expr, Expr::Identifier(ident) if ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default"))
}
