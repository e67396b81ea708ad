//! Columns of `CREATE TABLE … AS` and `CREATE VIEW … AS` named as Postgres
//! names them.
//!
//! A relation created from a query takes its columns' names from the query.
//! DataFusion would name `SELECT count(*), a + 1` `count(*)` and
//! `t.a + Int64(1)`; Postgres names them `count` and `?column?`, and refuses
//! a relation whose names repeat (`SELECT 1, 2` makes two `?column?`) with
//! 42701. Each unaliased item of the naming SELECT list gets Postgres' name
//! as its alias ([`crate::pg::column_names`]), so the plan, the stored
//! schema and what `\d` shows agree with Postgres.
//!
//! Materialized views keep DataFusion's names for now: a running view's
//! checkpoints are laid out by its schema, and renaming its columns would
//! need a migration of the views already created.

use std::collections::HashSet;

use datafusion::error::Result;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Expr, Ident, Query, SelectItem, Statement};
use sluice_types::error::{SluiceError, SqlState};

use crate::pg::column_names::{postgres_name, select_list_mut};

/// Aliases the unaliased SELECT items of a `CREATE TABLE … AS` or
/// `CREATE VIEW … AS` without a column list; fails with 42701 when two
/// columns would share a name.
pub(crate) fn rewrite(statement: &mut DFStatement) -> Result<()> {
    let DFStatement::Statement(statement) = statement else {
        return Ok(());
    };
    let query = match statement.as_mut() {
        Statement::CreateTable(create) if create.columns.is_empty() => create.query.as_deref_mut(),
        Statement::CreateView(view) if view.columns.is_empty() && !view.materialized => {
            Some(view.query.as_mut())
        }
        _ => None,
    };
    match query {
        Some(query) => name_columns(query),
        None => Ok(()),
    }
}

fn name_columns(query: &mut Query) -> Result<()> {
    let Some(items) = select_list_mut(query) else {
        return Ok(());
    };
    let mut names = HashSet::new();
    for item in items.iter_mut() {
        let name = match item {
            // DataFusion names a column as Postgres does: no alias needed.
            SelectItem::UnnamedExpr(expr)
                if matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) =>
            {
                postgres_name(expr)
            }
            SelectItem::UnnamedExpr(expr) => {
                let name = postgres_name(expr);
                *item = SelectItem::ExprWithAlias {
                    expr: expr.clone(),
                    alias: Ident::with_quote('"', name.clone()),
                };
                name
            }
            SelectItem::ExprWithAlias { alias, .. } if alias.quote_style.is_some() => {
                alias.value.clone()
            }
            SelectItem::ExprWithAlias { alias, .. } => alias.value.to_lowercase(),
            // A `*`'s columns are not known here; DataFusion refuses a
            // repeat among them with the same code.
            SelectItem::Wildcard(_)
            | SelectItem::QualifiedWildcard(..)
            | SelectItem::ExprWithAliases { .. } => continue,
        };
        if !names.insert(name.clone()) {
            return Err(SluiceError::new(
                SqlState::DUPLICATE_COLUMN,
                format!("column \"{name}\" specified more than once"),
            )
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn rewritten(sql: &str) -> Result<String> {
        let mut statement = DFParser::parse_sql(sql)?
            .pop_front()
            .ok_or_else(|| datafusion::error::DataFusionError::Plan("no statement".into()))?;
        rewrite(&mut statement)?;
        Ok(statement.to_string())
    }

    #[test]
    fn created_columns_take_postgres_names() -> Result<()> {
        assert_eq!(
            rewritten("CREATE TABLE t2 AS SELECT count(*), a + 1, b AS \"B\", x.c FROM t")?,
            "CREATE TABLE t2 AS SELECT count(*) AS \"count\", a + 1 AS \"?column?\", \
             b AS \"B\", x.c FROM t"
        );
        assert_eq!(
            rewritten("CREATE VIEW v AS SELECT a + 1 FROM t UNION SELECT b FROM u")?,
            "CREATE VIEW v AS SELECT a + 1 AS \"?column?\" FROM t UNION SELECT b FROM u"
        );
        for unchanged in [
            "CREATE VIEW v (x) AS SELECT a + 1 FROM t",
            "SELECT 1, 1",
            "CREATE TABLE t2 AS SELECT * FROM t",
        ] {
            assert_eq!(rewritten(unchanged)?, unchanged);
        }
        Ok(())
    }

    #[test]
    fn repeated_names_are_refused() {
        for sql in [
            "CREATE TABLE t2 AS SELECT 1, 2",
            "CREATE VIEW v AS SELECT a, t.a FROM t",
            "CREATE TABLE t2 AS SELECT a, b AS A FROM t",
        ] {
            let err = rewritten(sql).expect_err(sql);
            assert_eq!(
                SluiceError::find(&err).map(|e| e.sqlstate),
                Some(SqlState::DUPLICATE_COLUMN),
                "{sql}"
            );
        }
    }
}
