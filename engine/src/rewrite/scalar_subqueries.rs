//! Scalar subqueries that select a plain value, `(SELECT x FROM t WHERE
//! t.k = outer.k)`, as `scalar_subquery_value((SELECT array_agg(x) FROM t
//! WHERE t.k = outer.k))`.
//!
//! DataFusion plans a correlated scalar subquery only when it aggregates
//! ("Correlated scalar subquery must be aggregated to return at most one
//! row"); Postgres runs any that returns at most one row per outer row,
//! and client catalog queries are full of them (psql's `\dT`, DBeaver's
//! column defaults). Aggregating the rows into a list lets DataFusion
//! decorrelate the subquery into a join; `scalar_subquery_value` then
//! gives the value, NULL for no row, and Postgres' error (21000) where an
//! outer row meets more than one.
//!
//! Only subqueries with a WHERE clause (where a correlation lives) whose
//! one column aggregates nothing are rewritten; a subquery compared with
//! `ANY`/`ALL` is a set, not a value, and is left as written.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArgExpr, Ident, Query, SelectItem, VisitMut, VisitorMut, visit_expressions,
};
use sluice_functions::postgres::SCALAR_SUBQUERY_VALUE;

use super::subquery_values::{call, plain_select, select_query};

/// Rewrites the scalar subqueries of `statement`; `is_aggregate` tells
/// whether a function name is an aggregate or window function.
pub(crate) fn rewrite(statement: &mut DFStatement, is_aggregate: &dyn Fn(&str) -> bool) {
    if let Some(sql) = super::sql_statement(statement) {
        let _ = sql.visit(&mut ScalarSubqueries {
            is_aggregate,
            sets: Vec::new(),
        });
    }
}

struct ScalarSubqueries<'a> {
    is_aggregate: &'a dyn Fn(&str) -> bool,
    /// The subqueries under `ANY`/`ALL` being visited, by address: the
    /// visitor meets them again as expressions of their own.
    sets: Vec<*const Expr>,
}

impl VisitorMut for ScalarSubqueries<'_> {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } = expr {
            self.sets.push(&**right as *const Expr);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        if let Expr::AnyOp { right, .. } | Expr::AllOp { right, .. } = expr {
            let right = &**right as *const Expr;
            self.sets.retain(|set| *set != right);
            return ControlFlow::Continue(());
        }
        if self.sets.contains(&(expr as *const Expr)) {
            return ControlFlow::Continue(());
        }
        if let Expr::Subquery(query) = expr
            && let Some(aggregated) = self.aggregated(query)
        {
            *expr = call(
                SCALAR_SUBQUERY_VALUE,
                vec![FunctionArgExpr::Expr(Expr::Subquery(Box::new(aggregated)))],
                vec![],
            );
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        // DataFusion names every scalar subquery alike and wants a
        // projection's names unique: an item this rewrote keeps a name of
        // its own (clients see Postgres' names either way).
        if let datafusion::sql::sqlparser::ast::SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(expr) = item
                    && rewrote(expr)
                {
                    let name = Ident::with_quote('"', expr.to_string());
                    *item = SelectItem::ExprWithAlias {
                        expr: expr.clone(),
                        alias: name,
                    };
                }
            }
        }
        ControlFlow::Continue(())
    }
}

impl ScalarSubqueries<'_> {
    /// `query` selecting `array_agg` of its one column, when it is a plain
    /// query with a WHERE clause whose column aggregates nothing.
    fn aggregated(&self, query: &Query) -> Option<Query> {
        let select = plain_select(query)?;
        if query.order_by.is_some() || query.limit_clause.is_some() {
            return None;
        }
        if select.selection.is_none() || select.from.is_empty() {
            return None;
        }
        let [item] = select.projection.as_slice() else {
            return None;
        };
        let (SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. }) = item
        else {
            return None;
        };
        if self.aggregates(value) {
            return None;
        }
        let mut aggregating = select.clone();
        aggregating.projection = vec![SelectItem::UnnamedExpr(call(
            "array_agg",
            vec![FunctionArgExpr::Expr(value.clone())],
            vec![],
        ))];
        Some(select_query(aggregating))
    }

    /// Whether `expr` calls an aggregate or window function (outside
    /// subqueries of its own).
    fn aggregates(&self, expr: &Expr) -> bool {
        visit_expressions(expr, |e: &Expr| match e {
            Expr::Function(function)
                if function.over.is_some()
                    || function
                        .name
                        .0
                        .last()
                        .and_then(|part| part.as_ident())
                        .is_some_and(|name| (self.is_aggregate)(&name.value.to_lowercase())) =>
            {
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        })
        .is_break()
    }
}

/// Whether `expr` is a subquery this module rewrote.
fn rewrote(expr: &Expr) -> bool {
    matches!(expr, Expr::Function(f) if f.name.to_string() == SCALAR_SUBQUERY_VALUE)
}

#[cfg(test)]
mod tests {
    fn rewritten(sql: &str) -> String {
        crate::rewrite::rewritten_by(sql, |statement| {
            super::rewrite(statement, &|name| {
                matches!(name, "count" | "max" | "array_agg")
            })
        })
    }

    #[test]
    fn a_plain_correlated_subquery_aggregates_its_rows() {
        assert_eq!(
            rewritten("SELECT t.oid FROM t WHERE (SELECT c.kind = 'c' FROM c WHERE c.oid = t.rel)"),
            "SELECT t.oid FROM t WHERE scalar_subquery_value((SELECT array_agg(c.kind = 'c') \
             FROM c WHERE c.oid = t.rel))"
        );
        assert_eq!(
            rewritten("SELECT (SELECT u.name FROM u WHERE u.id = o.uid) FROM o"),
            "SELECT scalar_subquery_value((SELECT array_agg(u.name) FROM u WHERE u.id = o.uid)) \
             AS \"scalar_subquery_value((SELECT array_agg(u.name) FROM u WHERE u.id = o.uid))\" \
             FROM o"
        );
    }

    #[test]
    fn aggregates_sets_and_subqueries_without_where_stay_as_written() {
        for sql in [
            "SELECT (SELECT max(u.id) FROM u WHERE u.id = o.uid) FROM o",
            "SELECT (SELECT u.id FROM u) FROM o",
            "SELECT (SELECT u.id FROM u WHERE u.id = o.uid LIMIT 1) FROM o",
            "SELECT * FROM o WHERE o.uid = ANY(SELECT u.id FROM u WHERE u.ok)",
            "SELECT * FROM o WHERE o.uid IN (SELECT u.id FROM u WHERE u.ok)",
        ] {
            assert_eq!(rewritten(sql), sql);
        }
    }
}
