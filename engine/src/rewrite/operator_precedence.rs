//! Repairs what sqlparser 0.62 gets wrong about `IS [NOT] DISTINCT FROM`:
//! it parses the right side as a whole expression, so
//! `a IS NOT DISTINCT FROM b AND c` became `a IS NOT DISTINCT FROM (b AND
//! c)`: a type error at best, a silently different answer when the
//! operands are booleans. In Postgres `IS` binds tighter than `NOT`, `AND`
//! and `OR`, so the `AND`/`OR` belongs above it.
//!
//! A correct parse never puts an unparenthesized `AND`/`OR` under an
//! operator that binds tighter (parentheses stay in the tree as
//! `Expr::Nested`), so every such shape comes from this flaw and is
//! rotated back, bottom up: the right operand of `IS DISTINCT FROM`, then
//! whatever `AND` or `NOT` that repair left holding an `OR` or `AND`.
//! Done on the AST because the parser's hook for it (a `Dialect`'s
//! `parse_infix`) would mean re-implementing Postgres' dialect.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, UnaryOperator, Value, visit_expressions_mut,
};

/// Rebinds the operands of `IS [NOT] DISTINCT FROM` as Postgres does,
/// everywhere in `statement`.
pub(crate) fn repair(statement: &mut DFStatement) {
    let Some(sql) = super::sql_statement(statement) else {
        return;
    };
    let _ = visit_expressions_mut(sql, |expr: &mut Expr| {
        let taken = std::mem::replace(expr, Expr::value(Value::Null));
        *expr = rebind(taken);
        ControlFlow::<()>::Continue(())
    });
}

/// How tightly an unparenthesized `AND`/`OR` binds; `None` for others.
fn logical_rank(expr: &Expr) -> Option<u8> {
    match expr {
        Expr::BinaryOp {
            op: BinaryOperator::Or,
            ..
        } => Some(1),
        Expr::BinaryOp {
            op: BinaryOperator::And,
            ..
        } => Some(2),
        _ => None,
    }
}

/// `expr` with an `AND`/`OR` that sits below a tighter operator lifted
/// above it; its children are already repaired.
fn rebind(expr: Expr) -> Expr {
    match expr {
        Expr::IsDistinctFrom(left, right) if logical_rank(&right).is_some() => {
            lift(*right, |operand| {
                rebind(Expr::IsDistinctFrom(left, Box::new(operand)))
            })
        }
        Expr::IsNotDistinctFrom(left, right) if logical_rank(&right).is_some() => {
            lift(*right, |operand| {
                rebind(Expr::IsNotDistinctFrom(left, Box::new(operand)))
            })
        }
        // `NOT` binds tighter than AND and OR.
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr: operand,
        } if logical_rank(&operand).is_some() => lift(*operand, |inner| {
            rebind(Expr::UnaryOp {
                op: UnaryOperator::Not,
                expr: Box::new(inner),
            })
        }),
        // `AND` binds tighter than OR.
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } if logical_rank(&right) == Some(1) => lift(*right, |operand| {
            rebind(Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right: Box::new(operand),
            })
        }),
        other => other,
    }
}

/// Applies `bind` to the leftmost operand of the AND/OR `logical` and
/// keeps the operator above the result.
fn lift(logical: Expr, bind: impl FnOnce(Expr) -> Expr) -> Expr {
    match logical {
        Expr::BinaryOp { left, op, right } => Expr::BinaryOp {
            left: Box::new(bind(*left)),
            op,
            right,
        },
        other => bind(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::parser::DFParserBuilder;
    use datafusion::sql::sqlparser::ast::visit_expressions;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

    #[test]
    fn and_or_and_not_bind_looser_than_is_distinct_from() {
        let cases = [
            (
                "SELECT a IS NOT DISTINCT FROM b AND c IS DISTINCT FROM d",
                "(a IS NOT DISTINCT FROM b) AND (c IS DISTINCT FROM d)",
            ),
            (
                "SELECT a IS DISTINCT FROM b OR c AND d",
                "(a IS DISTINCT FROM b) OR (c AND d)",
            ),
            (
                "SELECT x AND a IS DISTINCT FROM b OR c",
                "(x AND (a IS DISTINCT FROM b)) OR c",
            ),
            (
                "SELECT NOT a IS DISTINCT FROM b AND c",
                "(NOT (a IS DISTINCT FROM b)) AND c",
            ),
            (
                "SELECT a IS DISTINCT FROM (b AND c)",
                "a IS DISTINCT FROM (b AND c)",
            ),
            ("SELECT NOT (a AND b) OR c", "(NOT (a AND b)) OR c"),
        ];
        for (sql, shape) in cases {
            assert_eq!(shape_of(sql), shape, "{sql}");
        }
    }

    /// The repaired projection with every operator's operands in
    /// parentheses, so the binding shows.
    fn shape_of(sql: &str) -> String {
        let dialect = PostgreSqlDialect {};
        let mut parser = DFParserBuilder::new(sql)
            .with_dialect(&dialect)
            .build()
            .unwrap();
        let mut statement = parser.parse_statement().unwrap();
        repair(&mut statement);
        // Pre-order: the first expression is the whole projection.
        let mut top = None;
        let _ = visit_expressions(
            super::super::sql_statement(&mut statement).unwrap(),
            |expr: &Expr| {
                top.get_or_insert_with(|| expr.clone());
                ControlFlow::<()>::Continue(())
            },
        );
        parenthesized(&top.unwrap())
    }

    fn parenthesized(expr: &Expr) -> String {
        let wrap = |e: &Expr| match e {
            Expr::BinaryOp { .. }
            | Expr::UnaryOp { .. }
            | Expr::IsDistinctFrom(..)
            | Expr::IsNotDistinctFrom(..) => format!("({})", parenthesized(e)),
            other => other.to_string(),
        };
        match expr {
            Expr::BinaryOp { left, op, right } => format!("{} {op} {}", wrap(left), wrap(right)),
            Expr::UnaryOp { op, expr } => format!("{op} {}", wrap(expr)),
            Expr::IsDistinctFrom(a, b) => format!("{} IS DISTINCT FROM {}", wrap(a), wrap(b)),
            Expr::IsNotDistinctFrom(a, b) => {
                format!("{} IS NOT DISTINCT FROM {}", wrap(a), wrap(b))
            }
            other => other.to_string(),
        }
    }
}
