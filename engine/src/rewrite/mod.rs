//! Rewrites that run before or during planning, each on a tree (the
//! statement's AST or the logical plan), never on SQL text:
//! - [`ml_predict`]: Flink's `ML_PREDICT(TABLE t, MODEL m, …)` table form
//!   as a subquery over the scalar `ml_predict`;
//! - [`window_tvf`]: Flink's window table functions `TUMBLE`/`HOP` as
//!   subqueries adding `window_start`, `window_end`, `window_time`;
//! - [`vector_search`]: Flink's `VECTOR_SEARCH(TABLE t, DESCRIPTOR(v), q, k)`
//!   as a top-k subquery (pgvector's `ORDER BY distance LIMIT k`);
//! - [`pg_text_casts`]: an analyzer rule writing casts of timestamps,
//!   times, intervals and arrays to text in Postgres' form;
//! - [`vector_index_rule`]: an optimizer rule planning a top-k by distance
//!   over a durable table as Sluice's vector top-k (an index walk or an
//!   exact scan);
//! - [`vector_batch_rule`]: an optimizer rule planning a `LATERAL` batch of
//!   searches as one exact pass over the table's vectors;
//! - [`key_lookup_rule`]: an optimizer rule planning `WHERE key = value`
//!   over a durable table as a point lookup in memory;
//! - [`typed_values`]: text literals inserted into Sluice-typed columns;
//! - [`literal_insert`] / [`text_insert`]: `INSERT … VALUES` of literals
//!   through COPY's text path;
//! - [`operator_precedence`]: `AND`/`OR` after `IS DISTINCT FROM` bound
//!   as Postgres binds them (sqlparser takes them into its right operand);
//! - [`driver_typeinfo`]: asyncpg's type introspection table, whose
//!   correlated subqueries DataFusion cannot plan, written with joins;
//! - [`regtype_text`]: `x::regtype::text` as the type's name
//!   (`format_type`), not the OID's digits;
//! - [`function_columns`]: the column of `generate_series(…)` and
//!   `unnest(…)` in FROM named after the function or its alias, as
//!   Postgres names it;
//! - [`catalog_path`]: unqualified names of `pg_catalog` tables qualified,
//!   as Postgres' search path finds them;
//! - [`async_calls`]: model and object calls with constant arguments run
//!   once before execution, nested calls moved into projections;
//! - [`subquery_values`]: `EXISTS (…)` in a SELECT list and `ARRAY(subquery)`
//!   as scalar subqueries, which DataFusion plans;
//! - [`scalar_subqueries`]: `(SELECT x FROM t WHERE …)` as a value,
//!   correlated or not, through `array_agg` (DataFusion plans correlated
//!   scalar subqueries only when they aggregate);
//! - [`element_wise`]: `ARRAY(SELECT f(x) FROM unnest(a) x)` as
//!   `array_transform(a, x -> f(x))`, since DataFusion cannot unnest an
//!   outer column in a subquery;
//! - [`created_names`]: the columns of `CREATE TABLE … AS` and
//!   `CREATE VIEW … AS` named as Postgres names them;
//! - [`unique_names`]: SELECT lists that repeat a name (`SELECT a, a`),
//!   which Postgres answers and DataFusion refuses, aliased apart;
//! - [`broadcast_bound`]: a physical rule failing a projection that would
//!   repeat one huge value down a batch, before Arrow allocates it;
//! - [`consistent_fields`]: an optimizer rule rewriting expressions whose
//!   physical field DataFusion computes differently from the logical one
//!   (a scalar subquery's Sluice type, `IS UNKNOWN`'s nullability);
//! - [`join_yield`]: a physical rule making joins yield to the scheduler
//!   per output batch, so a multiplying join can be cancelled.
//!
//! Imports [`crate::sql`] and [`crate::context`].

pub mod async_calls;
pub mod broadcast_bound;
pub mod catalog_path;
pub mod consistent_fields;
pub mod created_names;
pub mod driver_typeinfo;
pub mod element_wise;
pub mod function_columns;
pub mod join_yield;
pub mod key_lookup_rule;
pub mod literal_insert;
pub mod ml_predict;
pub mod operator_precedence;
pub mod pg_text_casts;
pub mod regtype_text;
pub mod scalar_subqueries;
pub mod subquery_values;
pub mod text_insert;
pub mod typed_values;
pub mod unique_names;
pub mod vector_batch_rule;
pub mod vector_index_rule;
pub mod vector_search;
pub mod window_tvf;

/// The sqlparser statement an AST rewrite works on: the statement itself,
/// or the one an `EXPLAIN [ANALYZE]` explains; `None` for DataFusion's own
/// statements (CREATE EXTERNAL TABLE, COPY …).
pub(crate) fn sql_statement(
    statement: &mut datafusion::sql::parser::Statement,
) -> Option<&mut datafusion::sql::sqlparser::ast::Statement> {
    use datafusion::sql::parser::Statement as DFStatement;
    match statement {
        DFStatement::Statement(inner) => Some(inner),
        DFStatement::Explain(explain) => match explain.statement.as_mut() {
            DFStatement::Statement(inner) => Some(inner),
            _ => None,
        },
        _ => None,
    }
}

/// Whether `expr` needs more than the row it is evaluated on: the rules
/// that move a condition into their own operator evaluate it row by row.
pub(crate) fn needs_more_than_its_row(expr: &datafusion::logical_expr::Expr) -> bool {
    use datafusion::logical_expr::Expr;
    matches!(
        expr,
        Expr::Exists(_)
            | Expr::InSubquery(_)
            | Expr::ScalarSubquery(_)
            | Expr::SetComparison(_)
            | Expr::OuterReferenceColumn(..)
            | Expr::AggregateFunction(_)
            | Expr::WindowFunction(_)
    )
}

/// `expr` with its columns named by their table's own names (an operator
/// evaluates it on the table's rows, whatever alias the query used).
pub(crate) fn unqualified(
    expr: datafusion::logical_expr::Expr,
) -> datafusion::error::Result<datafusion::logical_expr::Expr> {
    use datafusion::common::Column;
    use datafusion::common::tree_node::{Transformed, TreeNode};
    use datafusion::logical_expr::Expr;
    expr.transform(|e| match e {
        Expr::Column(column) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
            column.name,
        )))),
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
}

/// `sql`'s first statement after `rewrite`, as text: what the AST
/// rewrites' unit tests compare.
#[cfg(test)]
pub(crate) fn rewritten_by(
    sql: &str,
    rewrite: fn(&mut datafusion::sql::parser::Statement),
) -> String {
    let mut statements =
        datafusion::sql::parser::DFParser::parse_sql(sql).expect("test SQL parses");
    let mut statement = statements.pop_front().expect("one statement");
    rewrite(&mut statement);
    statement.to_string()
}
