//! Subqueries that compute a value where DataFusion cannot plan one,
//! rewritten on the AST into scalar subqueries, which it plans (correlated
//! ones too, on equalities):
//! - `EXISTS (…)` in a SELECT list (`CASE WHEN EXISTS (SELECT 1 FROM b
//!   WHERE b.x = a.x) THEN …`): DataFusion plans EXISTS only where it
//!   filters rows (a semi join) and fails on it elsewhere ("Physical plan
//!   does not support logical expression Exists"). It becomes `(SELECT
//!   count(*) > 0 FROM b WHERE …)`, which is never NULL either. A subquery
//!   whose row count does not say whether it has rows one for one (GROUP
//!   BY, HAVING, DISTINCT, a set operation, WITH, LIMIT other than a
//!   positive constant) is left as written.
//! - Postgres' array constructor `ARRAY(SELECT x FROM t [ORDER BY …])`
//!   anywhere (psql's `\du` sends one), which DataFusion does not know:
//!   `coalesce((SELECT array_agg(x [ORDER BY …]) FROM t), make_array())`,
//!   empty rather than NULL when there are no rows, as in Postgres. One
//!   column, no GROUP BY, HAVING, DISTINCT, LIMIT or set operation; others
//!   are left as written. One that maps the elements of an array
//!   (`unnest`) is planned element-wise instead ([`super::element_wise`]).

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentClause,
    FunctionArgumentList, FunctionArguments, GroupByExpr, Ident, LimitClause, ObjectName,
    ObjectNamePart, OrderByKind, Query, Select, SelectItem, SetExpr, UnaryOperator, Value,
    VisitMut, VisitorMut, visit_expressions_mut,
};

/// Rewrites every `EXISTS` computed in a SELECT list of `statement` and
/// every `ARRAY(subquery)`.
pub(crate) fn rewrite(statement: &mut DFStatement) {
    if let Some(sql) = super::sql_statement(statement) {
        let _ = sql.visit(&mut ExistsInSelectLists);
        let _ = visit_expressions_mut(sql, |expr: &mut Expr| {
            if let Some(array) = array_constructor(expr) {
                *expr = array;
            }
            ControlFlow::<()>::Continue(())
        });
    }
}

struct ExistsInSelectLists;

impl VisitorMut for ExistsInSelectLists {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                let as_written = item.clone();
                let _ = visit_expressions_mut(item, |expr: &mut Expr| {
                    if let Some(array) = array_constructor(expr) {
                        *expr = array;
                    }
                    if let Expr::Exists { subquery, negated } = expr
                        && let Some(count) = counting(subquery)
                    {
                        let value = Expr::Subquery(Box::new(count));
                        *expr = if *negated {
                            Expr::UnaryOp {
                                op: UnaryOperator::Not,
                                expr: Box::new(value),
                            }
                        } else {
                            value
                        };
                    }
                    ControlFlow::<()>::Continue(())
                });
                // DataFusion names every scalar subquery alike and wants a
                // projection's names unique; the item keeps the name it had
                // as written (clients see Postgres' names either way).
                if let (SelectItem::UnnamedExpr(rewritten), SelectItem::UnnamedExpr(original)) =
                    (&*item, &as_written)
                    && rewritten != original
                {
                    *item = SelectItem::ExprWithAlias {
                        expr: rewritten.clone(),
                        alias: Ident::with_quote('"', original.to_string()),
                    };
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// `subquery` selecting `count(*) > 0` instead of its columns, when its
/// row count says whether it has rows.
fn counting(subquery: &Query) -> Option<Query> {
    let select = plain_select(subquery)?;
    if !limit_keeps_a_row(subquery.limit_clause.as_ref()) {
        return None;
    }
    let mut counted = select.clone();
    counted.projection = vec![SelectItem::UnnamedExpr(count_is_positive())];
    Some(select_query(counted))
}

/// `ARRAY(SELECT x FROM … [ORDER BY …])` as an aggregating subquery, empty
/// when there are no rows; `None` for any other expression.
fn array_constructor(expr: &Expr) -> Option<Expr> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let FunctionArguments::Subquery(subquery) = &function.args else {
        return None;
    };
    if !function.name.to_string().eq_ignore_ascii_case("array") {
        return None;
    }
    let select = plain_select(subquery)?;
    let [item] = select.projection.as_slice() else {
        return None;
    };
    let (SelectItem::UnnamedExpr(element) | SelectItem::ExprWithAlias { expr: element, .. }) = item
    else {
        return None;
    };
    if let Some(mapped) = super::element_wise::array_of_unnest(subquery, select, element) {
        return Some(mapped);
    }
    if subquery.limit_clause.is_some() {
        return None;
    }
    let clauses = match subquery.order_by.as_ref().map(|o| &o.kind) {
        None => vec![],
        Some(OrderByKind::Expressions(keys)) => vec![FunctionArgumentClause::OrderBy(keys.clone())],
        Some(OrderByKind::All(_)) => return None,
    };
    let mut aggregated = select.clone();
    aggregated.projection = vec![SelectItem::UnnamedExpr(call(
        "array_agg",
        vec![FunctionArgExpr::Expr(element.clone())],
        clauses,
    ))];
    let values = Expr::Subquery(Box::new(select_query(aggregated)));
    Some(call(
        "coalesce",
        vec![
            FunctionArgExpr::Expr(values),
            FunctionArgExpr::Expr(call("make_array", vec![], vec![])),
        ],
        vec![],
    ))
}

/// The SELECT of `query` when its rows are plain: no GROUP BY, HAVING,
/// DISTINCT, window, WITH or FETCH, and not a set operation.
pub(super) fn plain_select(query: &Query) -> Option<&Select> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let plain = matches!(&select.group_by, GroupByExpr::Expressions(keys, modifiers)
        if keys.is_empty() && modifiers.is_empty())
        && select.having.is_none()
        && select.distinct.is_none()
        && select.named_window.is_empty()
        && select.qualify.is_none()
        && query.with.is_none()
        && query.fetch.is_none();
    plain.then_some(select.as_ref())
}

/// A query of `select` alone.
pub(super) fn select_query(select: Select) -> Query {
    Query {
        with: None,
        body: Box::new(SetExpr::Select(Box::new(select))),
        order_by: None,
        limit_clause: None,
        fetch: None,
        locks: vec![],
        for_clause: None,
        settings: None,
        format_clause: None,
        pipe_operators: vec![],
    }
}

/// Whether a LIMIT leaves a non-empty subquery non-empty: none, or a
/// positive constant without OFFSET.
fn limit_keeps_a_row(limit: Option<&LimitClause>) -> bool {
    match limit {
        None => true,
        Some(LimitClause::LimitOffset {
            limit: Some(Expr::Value(value)),
            offset: None,
            limit_by,
        }) if limit_by.is_empty() => {
            matches!(&value.value, Value::Number(n, _) if n.parse::<u64>().is_ok_and(|n| n > 0))
        }
        Some(_) => false,
    }
}

/// A call of the function `name`.
pub(super) fn call(
    name: &str,
    args: Vec<FunctionArgExpr>,
    clauses: Vec<FunctionArgumentClause>,
) -> Expr {
    Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new(name))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args.into_iter().map(FunctionArg::Unnamed).collect(),
            clauses,
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// `count(*) > 0`.
fn count_is_positive() -> Expr {
    let count = call("count", vec![FunctionArgExpr::Wildcard], vec![]);
    Expr::BinaryOp {
        left: Box::new(count),
        op: BinaryOperator::Gt,
        right: Box::new(Expr::value(Value::Number("0".into(), false))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewritten(sql: &str) -> String {
        crate::rewrite::rewritten_by(sql, rewrite)
    }

    #[test]
    fn exists_in_a_select_list_counts() {
        assert_eq!(
            rewritten("SELECT a.id, EXISTS (SELECT 1 FROM b WHERE b.x = a.x LIMIT 1) AS e FROM a"),
            "SELECT a.id, (SELECT count(*) > 0 FROM b WHERE b.x = a.x) AS e FROM a"
        );
        assert_eq!(
            rewritten("SELECT CASE WHEN NOT EXISTS (SELECT FROM b) THEN 1 END"),
            "SELECT CASE WHEN NOT (SELECT count(*) > 0 FROM b) THEN 1 END \
             AS \"CASE WHEN NOT EXISTS (SELECT FROM b) THEN 1 END\""
        );
    }

    #[test]
    fn array_constructors_aggregate() {
        assert_eq!(
            rewritten(
                "SELECT r.name FROM r WHERE 'x' = ANY(ARRAY(SELECT b.name FROM b WHERE b.r = r.id ORDER BY b.name DESC))"
            ),
            "SELECT r.name FROM r WHERE 'x' = ANY(coalesce((SELECT array_agg(b.name ORDER BY b.name DESC) FROM b WHERE b.r = r.id), make_array()))"
        );
        for sql in [
            "SELECT ARRAY(SELECT x FROM b LIMIT 2)",
            "SELECT ARRAY(SELECT x, y FROM b)",
            "SELECT ARRAY(SELECT x FROM b GROUP BY x)",
        ] {
            assert_eq!(rewritten(sql), sql);
        }
    }

    #[test]
    fn exists_that_filters_or_does_not_count_rows_is_left_alone() {
        for sql in [
            "SELECT a.id FROM a WHERE EXISTS (SELECT 1 FROM b WHERE b.x = a.x)",
            "SELECT EXISTS (SELECT x FROM b GROUP BY x)",
            "SELECT EXISTS (SELECT x FROM b LIMIT 0)",
            "SELECT EXISTS (SELECT x FROM b UNION SELECT y FROM c)",
        ] {
            assert_eq!(rewritten(sql), sql);
        }
    }
}
