//! Casts of timestamps, times, intervals and arrays to text written as
//! Postgres writes them: an analyzer rule, run after DataFusion's type
//! coercion (so the casts it adds, such as the one in `'at ' || ts`, are
//! seen too), that replaces each such cast by [`PgTextFunc`]. Arrow's cast
//! writes ISO 8601 (`2024-01-02T03:04:05`, and `1 days 2 hours` for an
//! interval) and `[b, a]` for an array, which no Postgres client expects
//! from `ts::text` or `arr::text`; the wire encoder already writes
//! Postgres' form for values sent as they are.
//!
//! The other way, a cast of text to an array (`'{1,2}'::int[]`) reads
//! Postgres' array text first ([`PgArrayInFunc`]: a list of texts, which
//! arrow's cast then turns into the elements' type), where arrow's cast
//! alone makes a one-element list of the whole string.
//!
//! Expressions keep their names (a projected `CAST(ts AS TEXT)` is still
//! named so), and the functions keep their argument's nullability, so no
//! schema above changes.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{Cast, Expr, ExprSchemable, LogicalPlan, ScalarUDF, TryCast};
use datafusion::optimizer::AnalyzerRule;
use sluice_functions::postgres::{PgArrayInFunc, PgTextFunc};

/// See the module documentation.
#[derive(Debug)]
pub struct PgTextCasts {
    function: Arc<ScalarUDF>,
    array_input: Arc<ScalarUDF>,
}

impl Default for PgTextCasts {
    fn default() -> Self {
        Self {
            function: Arc::new(ScalarUDF::new_from_impl(PgTextFunc::default())),
            array_input: Arc::new(ScalarUDF::new_from_impl(PgArrayInFunc::default())),
        }
    }
}

impl AnalyzerRule for PgTextCasts {
    fn name(&self) -> &str {
        "sluice_pg_text_casts"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| self.rewrite_node(node))
            .map(|t| t.data)
    }
}

impl PgTextCasts {
    fn rewrite_node(&self, node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
        if matches!(node, LogicalPlan::TableScan(_)) {
            return Ok(Transformed::no(node));
        }
        let schema = merge_schema(&node.inputs());
        let names = NamePreserver::new(&node);
        node.map_expressions(|expr| {
            let name = names.save(&expr);
            let rewritten = expr.transform_up(|e| self.rewrite_expr(e, &schema))?;
            Ok(rewritten.update_data(|e| name.restore(e)))
        })
    }

    fn rewrite_expr(&self, expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
        if let Some(rewritten) = self.array_from_text(&expr, schema) {
            return Ok(Transformed::yes(rewritten));
        }
        // Plain text only: a Sluice type stored as text (json) has its own
        // casts.
        let (inner, target) = match &expr {
            Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field })
                if is_text(field.data_type()) && field.metadata().is_empty() =>
            {
                (expr, field)
            }
            _ => return Ok(Transformed::no(expr)),
        };
        // A type that cannot be found (an outer reference's, say) keeps
        // arrow's cast.
        let Ok(source) = inner.get_type(schema) else {
            return Ok(Transformed::no(expr));
        };
        if !PgTextFunc::writes(&source) {
            return Ok(Transformed::no(expr));
        }
        let text = self.function.call(vec![inner.as_ref().clone()]);
        Ok(Transformed::yes(match target.data_type() {
            DataType::Utf8 => text,
            _ => Expr::Cast(Cast::new_from_field(Box::new(text), Arc::clone(target))),
        }))
    }
}

impl PgTextCasts {
    /// A cast of plain text to an array (a list that is no Sluice type:
    /// vectors and tensors read their own text), as the same cast of
    /// [`PgArrayInFunc`]'s list of texts.
    fn array_from_text(&self, expr: &Expr, schema: &DFSchema) -> Option<Expr> {
        let (inner, target, is_try) = match expr {
            Expr::Cast(Cast { expr, field }) => (expr, field, false),
            Expr::TryCast(TryCast { expr, field }) => (expr, field, true),
            _ => return None,
        };
        let is_array = matches!(
            target.data_type(),
            DataType::List(_) | DataType::LargeList(_)
        );
        if !is_array
            || sluice_types::SluiceType::of_field(target).is_some()
            || !is_text(&inner.get_type(schema).ok()?)
        {
            return None;
        }
        let texts = Box::new(self.array_input.call(vec![inner.as_ref().clone()]));
        let target = Arc::clone(target);
        Some(if is_try {
            Expr::TryCast(TryCast::new_from_field(texts, target))
        } else {
            Expr::Cast(Cast::new_from_field(texts, target))
        })
    }
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
    )
}
