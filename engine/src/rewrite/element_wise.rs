//! `ARRAY(SELECT f(x) FROM unnest(a) x [WHERE p(x)])` as element-wise
//! array functions over `a`: `array_transform([array_filter(a, x -> p(x)),]
//! x -> f(x))`.
//!
//! Postgres' idiom for mapping an array (psql's `\d+` sends one over
//! `tc.reloptions`) is a subquery over `unnest` of a column of the outer
//! row. DataFusion cannot unnest an outer column in a subquery ("table
//! function 'unnest' not found"), but it evaluates lambdas row by row, so
//! the same mapping planned that way needs no subquery at all. An empty or
//! NULL array maps to an empty one, as Postgres' array constructor gives.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Ident, LambdaFunction, LambdaFunctionParameter,
    LambdaSyntax, ObjectNamePart, OneOrManyWithParens, Query, Select, TableAlias, TableFactor,
    visit_expressions_mut,
};

use super::subquery_values::call;

/// The element-wise form of `ARRAY(subquery)` for `element` selected by
/// `select` of `query`, when the subquery only maps (and filters) the
/// elements of one array; `None` otherwise.
pub(crate) fn array_of_unnest(query: &Query, select: &Select, element: &Expr) -> Option<Expr> {
    if query.order_by.is_some() || query.limit_clause.is_some() {
        return None;
    }
    let [from] = select.from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    let (array, alias) = unnested_array(&from.relation)?;
    let element_name = element_name(alias);
    let table_name = alias.map(|a| a.name.value.clone());
    let as_parameter = |expr: &Expr| {
        let mut expr = expr.clone();
        unqualify(&mut expr, table_name.as_deref(), &element_name.value);
        lambda(&element_name, expr)
    };
    let mut elements = array.clone();
    if let Some(predicate) = &select.selection {
        elements = call(
            "array_filter",
            vec![
                FunctionArgExpr::Expr(elements),
                FunctionArgExpr::Expr(as_parameter(predicate)),
            ],
            vec![],
        );
    }
    let mapped = call(
        "array_transform",
        vec![
            FunctionArgExpr::Expr(elements),
            FunctionArgExpr::Expr(as_parameter(element)),
        ],
        vec![],
    );
    Some(call(
        "coalesce",
        vec![
            FunctionArgExpr::Expr(mapped),
            FunctionArgExpr::Expr(call("make_array", vec![], vec![])),
        ],
        vec![],
    ))
}

/// The array of `unnest(array) [alias]` (also `pg_catalog.unnest`) with one
/// array, no ordinality, and its alias.
fn unnested_array(relation: &TableFactor) -> Option<(&Expr, Option<&TableAlias>)> {
    match relation {
        TableFactor::Table {
            name,
            alias,
            args: Some(args),
            with_ordinality: false,
            ..
        } => {
            let function = name.0.last().and_then(ObjectNamePart::as_ident)?;
            if !function.value.eq_ignore_ascii_case("unnest") {
                return None;
            }
            let [FunctionArg::Unnamed(FunctionArgExpr::Expr(array))] = args.args.as_slice() else {
                return None;
            };
            Some((array, alias.as_ref()))
        }
        TableFactor::UNNEST {
            alias,
            array_exprs,
            with_offset: false,
            with_ordinality: false,
            ..
        } => match array_exprs.as_slice() {
            [array] => Some((array, alias.as_ref())),
            _ => None,
        },
        _ => None,
    }
}

/// The name an element goes by in the subquery: the alias' column, the
/// alias itself, or `unnest`, as Postgres names the column.
fn element_name(alias: Option<&TableAlias>) -> Ident {
    match alias {
        Some(alias) => alias
            .columns
            .first()
            .map_or_else(|| alias.name.clone(), |column| column.name.clone()),
        None => Ident::new("unnest"),
    }
}

/// Replaces `table.element` in `expr` with the lambda's parameter.
fn unqualify(expr: &mut Expr, table: Option<&str>, element: &str) {
    let _ = visit_expressions_mut(expr, |e: &mut Expr| {
        if let Expr::CompoundIdentifier(parts) = e
            && let [qualifier, column] = parts.as_slice()
            && table.is_some_and(|t| qualifier.value == t)
            && column.value == element
        {
            *e = Expr::Identifier(column.clone());
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `parameter -> body`.
fn lambda(parameter: &Ident, body: Expr) -> Expr {
    Expr::Lambda(LambdaFunction {
        params: OneOrManyWithParens::One(LambdaFunctionParameter {
            name: parameter.clone(),
            data_type: None,
        }),
        body: Box::new(body),
        syntax: LambdaSyntax::Arrow,
    })
}

#[cfg(test)]
mod tests {
    fn rewritten(sql: &str) -> String {
        crate::rewrite::rewritten_by(sql, crate::rewrite::subquery_values::rewrite)
    }

    #[test]
    fn a_mapped_unnest_becomes_array_transform() {
        assert_eq!(
            rewritten(
                "SELECT array(SELECT 'toast.' || x FROM pg_catalog.unnest(tc.reloptions) x) FROM tc"
            ),
            "SELECT coalesce(array_transform(tc.reloptions, x -> 'toast.' || x), make_array()) \
             AS \"array(SELECT 'toast.' || x FROM pg_catalog.unnest(tc.reloptions) x)\" FROM tc"
        );
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT u.e * 2 FROM unnest(t.a) AS u(e) WHERE u.e > 1) AS d"),
            "SELECT coalesce(array_transform(array_filter(t.a, e -> e > 1), e -> e * 2), \
             make_array()) AS d"
        );
    }

    #[test]
    fn an_ordered_unnest_is_aggregated_instead() {
        assert_eq!(
            rewritten("SELECT ARRAY(SELECT x FROM unnest(t.a) x ORDER BY x) AS d"),
            "SELECT coalesce((SELECT array_agg(x ORDER BY x) FROM UNNEST(t.a) x), \
             make_array()) AS d"
        );
    }
}
