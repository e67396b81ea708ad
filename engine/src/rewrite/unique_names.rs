//! SELECT lists that repeat a column name: Postgres answers `SELECT 1, 1`,
//! `SELECT a, a FROM t` and `SELECT a::text, a FROM t` with two columns of
//! the same name; DataFusion needs the names of one projection unique and
//! refuses them ("Projections require unique expression names"). Clients
//! are sent Postgres' names, read from the statement as written
//! ([`crate::pg::column_names`]), so the plan may name the columns as it
//! likes: a later item that DataFusion could name like an earlier one gets
//! an alias of its own here (a repeated alias, a new one).
//!
//! DataFusion names an item by its expression, a cast by what it casts and
//! a column by its qualified name, so two items collide when they are the
//! same once casts are peeled and column names reduced to their last part
//! (which may alias an item that would not have collided: harmless, it only
//! renames a column of the plan).
//!
//! A cast also collides with the column it casts when ORDER BY needs that
//! column: DataFusion adds it to the projection under the cast's name
//! (`SELECT a::text FROM t ORDER BY a` failed, in DataFusion 55 too). Such a
//! cast gets an alias of its own, and an ORDER BY item naming it bare
//! becomes its position: Postgres sorts by the output column of that name
//! (`'10'` before `'9'`), while DataFusion would take the input column.

use std::collections::HashSet;
use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, Ident, OrderByKind, Query, SelectItem, SetExpr, Value, VisitMut, VisitorMut,
};

use crate::pg::column_names::postgres_name;

/// Aliases every SELECT item of `statement` that could repeat the name of
/// an earlier item of its list.
pub(crate) fn rewrite(statement: &mut DFStatement) {
    if let Some(sql) = super::sql_statement(statement) {
        let _ = sql.visit(&mut UniqueNames);
    }
}

struct UniqueNames;

impl VisitorMut for UniqueNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        let Query { body, order_by, .. } = query;
        let SetExpr::Select(select) = body.as_mut() else {
            return ControlFlow::Continue(());
        };
        if let Some(OrderByKind::Expressions(sorts)) = order_by.as_mut().map(|o| &mut o.kind) {
            for (position, item) in select.projection.iter_mut().enumerate() {
                if let SelectItem::UnnamedExpr(expr @ Expr::Cast { .. }) = item {
                    let name = postgres_name(expr);
                    for sort in sorts.iter_mut() {
                        if matches!(&sort.expr, Expr::Identifier(_))
                            && postgres_name(&sort.expr) == name
                        {
                            sort.expr =
                                Expr::value(Value::Number((position + 1).to_string(), false));
                        }
                    }
                    alias_apart(item, position);
                }
            }
        }
        let mut seen = HashSet::new();
        let has_wildcard = select.projection.iter().any(|item| {
            matches!(
                item,
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
            )
        });
        for (position, item) in select.projection.iter_mut().enumerate() {
            let name = match item {
                // The columns a `*` stands for are not known here; a column
                // named beside it may be one of them (`SELECT *, a`).
                SelectItem::UnnamedExpr(expr) if has_wildcard && names_a_column(expr) => {
                    alias_apart(item, position);
                    continue;
                }
                SelectItem::UnnamedExpr(expr) => naming_key(expr),
                SelectItem::ExprWithAlias { alias, .. } => alias.value.to_ascii_lowercase(),
                SelectItem::Wildcard(_)
                | SelectItem::QualifiedWildcard(..)
                | SelectItem::ExprWithAliases { .. } => continue,
            };
            if !seen.insert(name) {
                alias_apart(item, position);
            }
        }
        ControlFlow::Continue(())
    }
}

/// Gives `item`, at `position` of its list, an alias no other item has.
fn alias_apart(item: &mut SelectItem, position: usize) {
    match item {
        SelectItem::UnnamedExpr(expr) => {
            let alias = Ident::with_quote('"', format!("{expr} ({})", position + 1));
            *item = SelectItem::ExprWithAlias {
                expr: expr.clone(),
                alias,
            };
        }
        SelectItem::ExprWithAlias { alias, .. } => {
            *alias = Ident::with_quote('"', format!("{} ({})", alias.value, position + 1));
        }
        SelectItem::Wildcard(_)
        | SelectItem::QualifiedWildcard(..)
        | SelectItem::ExprWithAliases { .. } => {}
    }
}

/// Whether DataFusion names `expr` after a column (a column, or a cast of
/// one).
fn names_a_column(expr: &Expr) -> bool {
    match expr {
        Expr::Cast { expr, .. } | Expr::Nested(expr) => names_a_column(expr),
        Expr::CompoundIdentifier(_) | Expr::Identifier(_) => true,
        _ => false,
    }
}

/// What DataFusion would name `expr` after, roughly: casts peeled, a
/// column by its last name part, lower-cased.
fn naming_key(expr: &Expr) -> String {
    match expr {
        Expr::Cast { expr, .. } | Expr::Nested(expr) => naming_key(expr),
        Expr::CompoundIdentifier(parts) => parts
            .last()
            .map(|part| part.value.to_ascii_lowercase())
            .unwrap_or_default(),
        Expr::Identifier(ident) => ident.value.to_ascii_lowercase(),
        other => other.to_string().to_ascii_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        crate::rewrite::rewritten_by(sql, rewrite)
    }

    #[test]
    fn columns_beside_a_wildcard_get_aliases() {
        assert_eq!(
            rewritten("SELECT *, a, t.b::TEXT FROM t"),
            "SELECT *, a AS \"a (2)\", t.b::TEXT AS \"t.b::TEXT (3)\" FROM t"
        );
    }

    #[test]
    fn repeated_names_get_aliases_and_others_stay() {
        assert_eq!(rewritten("SELECT 1, 1"), "SELECT 1, 1 AS \"1 (2)\"");
        assert_eq!(
            rewritten("SELECT t.a::TEXT, a, b FROM t"),
            "SELECT t.a::TEXT, a AS \"a (2)\", b FROM t"
        );
        assert_eq!(
            rewritten("SELECT a AS x, b AS x FROM t"),
            "SELECT a AS x, b AS \"x (2)\" FROM t"
        );
        for sql in [
            "SELECT a::TEXT FROM t",
            "SELECT a, b, a + 1 FROM t",
            "SELECT a, a AS b FROM t",
            "SELECT *, a + 1, 1 AS a FROM t",
        ] {
            assert_eq!(rewritten(sql), sql);
        }
    }

    #[test]
    fn casts_under_order_by_get_aliases_and_sorts_by_their_name_positions() {
        assert_eq!(
            rewritten("SELECT b, a::TEXT FROM t ORDER BY a, b"),
            "SELECT b, a::TEXT AS \"a::TEXT (2)\" FROM t ORDER BY 2, b"
        );
        assert_eq!(
            rewritten("SELECT t.a::TEXT FROM t GROUP BY a HAVING a > 1 ORDER BY t.a"),
            "SELECT t.a::TEXT AS \"t.a::TEXT (1)\" FROM t GROUP BY a HAVING a > 1 ORDER BY t.a"
        );
    }
}
