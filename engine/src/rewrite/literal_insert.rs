//! A fast path for `INSERT … VALUES` whose cells are all literals, the
//! shape bulk loaders and ORMs send (1,000-row statements and more).
//!
//! DataFusion plans each cell as its own expression and runs every
//! optimizer pass over all of them: a 1,000-row, 5-column INSERT spends
//! most of its time simplifying 5,000 literals one by one. Literals are
//! text to Postgres until a column's type applies, so Sluice collects them
//! into text columns and converts each column with one cast, through the
//! same plan as COPY ([`crate::text_insert`]). Anything else (expressions,
//! parameters, `DEFAULT`, casts, nested types) takes DataFusion's path.

use datafusion::arrow::array::{ArrayRef, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::error::Result;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast::{self, Expr, SetExpr, UnaryOperator, Value};
use sluice_types::SluiceType;
use std::sync::Arc;

use crate::rewrite::text_insert::insert_text_rows;
use crate::sql::names::column_name;

/// The INSERT plan for `statement` when it is a literal `INSERT … VALUES`
/// this path can take; `None` sends it down DataFusion's path (which also
/// reports every error the fast path does not know how to word).
pub(crate) async fn plan(
    statement: &DFStatement,
    ctx: &SessionContext,
) -> Result<Option<LogicalPlan>> {
    let DFStatement::Statement(statement) = statement else {
        return Ok(None);
    };
    let ast::Statement::Insert(insert) = statement.as_ref() else {
        return Ok(None);
    };
    if insert.returning.is_some()
        || insert.on.is_some()
        || insert.or.is_some()
        || insert.overwrite
        || insert.partitioned.is_some()
        || insert.table_alias.is_some()
        || !insert.assignments.is_empty()
    {
        return Ok(None);
    }
    let ast::TableObject::TableName(name) = &insert.table else {
        return Ok(None);
    };
    let Some(query) = &insert.source else {
        return Ok(None);
    };
    if query.with.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
    {
        return Ok(None);
    }
    let SetExpr::Values(values) = query.body.as_ref() else {
        return Ok(None);
    };
    let Ok(table) = object_name_to_table_reference(name.clone(), true) else {
        return Ok(None);
    };
    let Ok(provider) = ctx.table_provider(table.clone()).await else {
        return Ok(None);
    };
    let schema = provider.schema();
    let mut columns: Vec<String> = Vec::new();
    if insert.columns.is_empty() {
        columns.extend(schema.fields().iter().map(|f| f.name().clone()));
    } else {
        for column in &insert.columns {
            let Some(name) = column_name(column) else {
                return Ok(None);
            };
            if columns.contains(&name) {
                return Ok(None);
            }
            columns.push(name);
        }
    }
    let mut fields: Vec<&Field> = Vec::with_capacity(columns.len());
    for name in &columns {
        match schema.field_with_name(name) {
            Ok(field) if takes_text(field) => fields.push(field),
            _ => return Ok(None),
        }
    }
    let mut builders: Vec<StringBuilder> = fields.iter().map(|_| StringBuilder::new()).collect();
    for row in &values.rows {
        if row.content.len() != fields.len() {
            return Ok(None);
        }
        for ((cell, field), builder) in row.content.iter().zip(&fields).zip(&mut builders) {
            match literal_text(cell, field.data_type()) {
                Some(Some(text)) => builder.append_value(text),
                Some(None) => builder.append_null(),
                None => return Ok(None),
            }
        }
    }
    let arrays: Vec<ArrayRef> = builders
        .into_iter()
        .map(|mut b| Arc::new(b.finish()) as ArrayRef)
        .collect();
    insert_text_rows(table, provider, &columns, vec![arrays]).map(Some)
}

/// Column types whose text form Arrow's cast reads the way Postgres reads
/// a literal (and Sluice types, which have their own input functions).
fn takes_text(field: &Field) -> bool {
    SluiceType::of_field(field).is_some()
        || matches!(
            field.data_type(),
            DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Boolean
                | DataType::Int8
                | DataType::Int16
                | DataType::Int32
                | DataType::Int64
                | DataType::UInt8
                | DataType::UInt16
                | DataType::UInt32
                | DataType::UInt64
                | DataType::Float32
                | DataType::Float64
                | DataType::Decimal128(..)
                | DataType::Date32
                | DataType::Timestamp(..)
        )
}

/// A literal cell as text (`Some(None)` for NULL); `None` when the cell is
/// not a literal this path reads exactly as DataFusion's would.
fn literal_text<'a>(
    cell: &'a Expr,
    target: &DataType,
) -> Option<Option<std::borrow::Cow<'a, str>>> {
    use std::borrow::Cow;
    match cell {
        Expr::Value(value) => match &value.value {
            Value::Null => Some(None),
            Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => {
                Some(Some(Cow::Borrowed(s.as_str())))
            }
            Value::Number(n, _) if number_fits(n, target) => Some(Some(Cow::Borrowed(n.as_str()))),
            Value::Boolean(b) if matches!(target, DataType::Boolean) => {
                Some(Some(Cow::Borrowed(if *b { "true" } else { "false" })))
            }
            _ => None,
        },
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(value) => match &value.value {
                Value::Number(n, _) if number_fits(n, target) => {
                    Some(Some(Cow::Owned(format!("-{n}"))))
                }
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// Numbers go into numeric columns only; into integer columns only when
/// written as integers (Postgres rounds `1.5` into an integer column, a
/// text cast would refuse it).
fn number_fits(number: &str, target: &DataType) -> bool {
    if target.is_integer() {
        number.bytes().all(|b| b.is_ascii_digit())
    } else {
        target.is_floating() || matches!(target, DataType::Decimal128(..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::Schema;
    use datafusion::datasource::MemTable;

    async fn context() -> SessionContext {
        let ctx = SessionContext::new();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("score", DataType::Float64, true),
            Field::new("ok", DataType::Boolean, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("tags", DataType::new_list(DataType::Utf8, true), true),
        ]));
        let table = MemTable::try_new(schema, vec![vec![]]).expect("table");
        ctx.register_table("t", Arc::new(table)).expect("register");
        ctx
    }

    async fn takes_fast_path(ctx: &SessionContext, sql: &str) -> bool {
        let statement = crate::sql::statement::parse_sql(sql)
            .expect("parse")
            .remove(0);
        let crate::sql::statement::SluiceStatement::DataFusion(statement) = statement else {
            panic!("not a DataFusion statement");
        };
        plan(&statement, ctx).await.expect("plan").is_some()
    }

    #[tokio::test]
    async fn literal_rows_take_the_fast_path_and_the_rest_does_not() {
        let ctx = context().await;
        for sql in [
            "INSERT INTO t (id, score, ok, name) VALUES (1, -2.5, true, 'a'), (NULL, 3, false, NULL)",
            "INSERT INTO t (name, id) VALUES ('x', -7)",
            "INSERT INTO t (ok) VALUES ('t')",
        ] {
            assert!(takes_fast_path(&ctx, sql).await, "{sql}");
        }
        for sql in [
            "INSERT INTO t (id) VALUES (1.5)",
            "INSERT INTO t (id) VALUES (1 + 1)",
            "INSERT INTO t (id) VALUES ($1)",
            "INSERT INTO t (id) VALUES (DEFAULT)",
            "INSERT INTO t (tags) VALUES ('{a}')",
            "INSERT INTO t (ok) VALUES (1)",
            "INSERT INTO t (nope) VALUES (1)",
            "INSERT INTO t (id, id) VALUES (1, 2)",
            "INSERT INTO t (id) SELECT 1",
            "INSERT INTO nope VALUES (1)",
        ] {
            assert!(!takes_fast_path(&ctx, sql).await, "{sql}");
        }
    }
}
