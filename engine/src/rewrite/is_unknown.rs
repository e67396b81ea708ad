//! `x IS [NOT] UNKNOWN` planned as `x IS [NOT] NULL`.
//!
//! For a boolean `x` the two are the same test. DataFusion 55 plans
//! `IS UNKNOWN` physically as `x IS NOT DISTINCT FROM NULL`, whose physical
//! field is nullable while the logical one is not, so an aggregate over it
//! (`SELECT DISTINCT x IS UNKNOWN …`) failed with DataFusion's internal
//! error "Physical input schema should be the same" (fuzzing, seed 10).
//! [`UnknownAsNull`] runs after type coercion, which has refused a
//! non-boolean `x` already.

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// The optimizer rule rewriting `IS [NOT] UNKNOWN` to `IS [NOT] NULL`.
#[derive(Debug, Default)]
pub struct UnknownAsNull;

impl OptimizerRule for UnknownAsNull {
    fn name(&self) -> &str {
        "sluice_unknown_as_null"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let names = NamePreserver::new(&plan);
        plan.map_expressions(|expr| {
            let name = names.save(&expr);
            let rewritten = expr.transform_up(|node| {
                Ok(match node {
                    Expr::IsUnknown(operand) => Transformed::yes(Expr::IsNull(operand)),
                    Expr::IsNotUnknown(operand) => Transformed::yes(Expr::IsNotNull(operand)),
                    other => Transformed::no(other),
                })
            })?;
            Ok(rewritten.update_data(|expr| name.restore(expr)))
        })
    }
}
