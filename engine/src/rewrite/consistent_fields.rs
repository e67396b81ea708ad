//! Expressions whose physical field DataFusion 55 computes differently from
//! their logical one, rewritten into equivalents it plans consistently.
//!
//! DataFusion checks that a physical plan's schema matches the logical
//! plan's and fails with an internal error when it does not ("Schema field
//! unallowed change", "Physical input schema should be the same"). Two
//! expressions trip it (fuzzing, seeds 8 to 10):
//! - a scalar subquery: `ScalarSubqueryExpr` types its field by data type
//!   alone, so a subquery returning a `vector(3)` (Arrow `FixedSizeList`
//!   plus Sluice's extension metadata) lost the metadata, and
//!   `SELECT (SELECT sum(v) FROM t)` failed. It is cast to its own field,
//!   which DataFusion's cast carries through with the metadata; the cast
//!   changes no value.
//! - `x IS [NOT] UNKNOWN`: planned physically as `x IS NOT DISTINCT FROM
//!   NULL`, nullable where the logical field is not, so `SELECT DISTINCT x
//!   IS UNKNOWN …` failed. For a boolean `x` (type coercion has refused any
//!   other by the time optimizer rules run) it is `x IS [NOT] NULL`.
//!
//! [`ConsistentFields`] makes both rewrites in one pass over a node's
//! expressions, keeping the names the plan's schema shows.

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Expr, LogicalPlan, Subquery};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// The optimizer rule making the rewrites of the module documentation.
#[derive(Debug, Default)]
pub struct ConsistentFields;

impl OptimizerRule for ConsistentFields {
    fn name(&self) -> &str {
        "sluice_consistent_fields"
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
            Ok(expr
                .transform_down(consistent)?
                .update_data(|expr| name.restore(expr)))
        })
    }
}

/// One node of an expression, rewritten where DataFusion would plan it
/// inconsistently; a subquery already cast (the optimizer runs its rules
/// more than once) is left as it is.
fn consistent(node: Expr) -> Result<Transformed<Expr>> {
    Ok(match node {
        Expr::Cast(Cast { ref expr, .. }) if matches!(expr.as_ref(), Expr::ScalarSubquery(_)) => {
            Transformed::new(node, false, TreeNodeRecursion::Jump)
        }
        Expr::ScalarSubquery(ref subquery) => match typed_field(subquery) {
            Some(field) => {
                let cast = Expr::Cast(Cast::new_from_field(Box::new(node), field));
                Transformed::new(cast, true, TreeNodeRecursion::Jump)
            }
            None => Transformed::new(node, false, TreeNodeRecursion::Jump),
        },
        Expr::IsUnknown(operand) => Transformed::yes(Expr::IsNull(operand)),
        Expr::IsNotUnknown(operand) => Transformed::yes(Expr::IsNotNull(operand)),
        other => Transformed::no(other),
    })
}

/// The subquery's one column, when it carries metadata the physical plan
/// would drop.
fn typed_field(subquery: &Subquery) -> Option<datafusion::arrow::datatypes::FieldRef> {
    let fields = subquery.subquery.schema().fields();
    match fields.first() {
        Some(field) if fields.len() == 1 && !field.metadata().is_empty() => {
            Some(std::sync::Arc::clone(field))
        }
        _ => None,
    }
}
