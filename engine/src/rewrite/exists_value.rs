//! `EXISTS (…)` as a value: `SELECT CASE WHEN EXISTS (SELECT 1 FROM b
//! WHERE b.x = a.x) THEN …`. DataFusion decorrelates `EXISTS` where it
//! filters rows (a semi join) but cannot plan one that computes a value in
//! a SELECT list ("Physical plan does not support logical expression
//! Exists"). It does plan a scalar subquery that counts, correlated or not,
//! so a SELECT list's `EXISTS (SELECT … FROM t WHERE p)` becomes
//! `(SELECT count(*) > 0 FROM t WHERE p)`, which is never NULL either.
//! A subquery whose rows a count would not reflect one for one (GROUP BY,
//! HAVING, DISTINCT, a set operation, WITH, LIMIT other than a positive
//! constant) is left as written.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, GroupByExpr, Ident, LimitClause, ObjectName, ObjectNamePart, Query,
    SelectItem, SetExpr, UnaryOperator, Value, VisitMut, VisitorMut, visit_expressions_mut,
};

/// Rewrites every `EXISTS` computed in a SELECT list of `statement`.
pub(crate) fn rewrite(statement: &mut DFStatement) {
    if let Some(sql) = super::sql_statement(statement) {
        let _ = sql.visit(&mut ExistsInSelectLists);
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
    let SetExpr::Select(select) = subquery.body.as_ref() else {
        return None;
    };
    let plain_rows = matches!(&select.group_by, GroupByExpr::Expressions(keys, modifiers)
        if keys.is_empty() && modifiers.is_empty())
        && select.having.is_none()
        && select.distinct.is_none()
        && select.named_window.is_empty()
        && select.qualify.is_none()
        && subquery.with.is_none()
        && subquery.fetch.is_none()
        && limit_keeps_a_row(subquery.limit_clause.as_ref());
    if !plain_rows {
        return None;
    }
    let mut counted = select.as_ref().clone();
    counted.projection = vec![SelectItem::UnnamedExpr(count_is_positive())];
    Some(Query {
        with: None,
        body: Box::new(SetExpr::Select(Box::new(counted))),
        order_by: None,
        limit_clause: None,
        fetch: None,
        locks: vec![],
        for_clause: None,
        settings: None,
        format_clause: None,
        pipe_operators: vec![],
    })
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

/// `count(*) > 0`.
fn count_is_positive() -> Expr {
    let count = Expr::Function(Function {
        name: ObjectName(vec![ObjectNamePart::Identifier(Ident::new("count"))]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: vec![FunctionArg::Unnamed(FunctionArgExpr::Wildcard)],
            clauses: vec![],
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    });
    Expr::BinaryOp {
        left: Box::new(count),
        op: BinaryOperator::Gt,
        right: Box::new(Expr::value(Value::Number("0".into(), false))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParser;

    fn rewritten(sql: &str) -> String {
        let mut statements = DFParser::parse_sql(sql).unwrap();
        let mut statement = statements.pop_front().unwrap();
        rewrite(&mut statement);
        statement.to_string()
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
