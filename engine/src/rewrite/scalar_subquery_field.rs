//! Scalar subqueries that keep their Sluice type through physical planning.
//!
//! DataFusion 55's `ScalarSubqueryExpr` answers its field from the data type
//! alone, so a subquery returning a `vector(3)` (Arrow `FixedSizeList` plus
//! Sluice's extension metadata) loses the metadata between the logical and
//! the physical plan, and `SELECT (SELECT sum(v) FROM t)` failed with
//! DataFusion's internal error "Schema field unallowed change" (fuzzing,
//! seeds 8 and 9). [`TypedScalarSubqueries`] casts such a subquery to its own
//! field, which DataFusion's cast carries through to the physical plan with
//! the metadata; the cast changes no value.

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::logical_expr::expr::Cast;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Expr, LogicalPlan, Subquery};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

/// The optimizer rule casting each scalar subquery whose column carries
/// field metadata to that column's own field.
#[derive(Debug, Default)]
pub struct TypedScalarSubqueries;

impl OptimizerRule for TypedScalarSubqueries {
    fn name(&self) -> &str {
        "sluice_typed_scalar_subqueries"
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
            Ok(cast_typed_subqueries(expr)?.update_data(|expr| name.restore(expr)))
        })
    }
}

/// `expr` with each metadata-carrying scalar subquery cast to its field;
/// one already cast (the optimizer runs its rules more than once) is left
/// as it is.
fn cast_typed_subqueries(expr: Expr) -> Result<Transformed<Expr>> {
    expr.transform_down(|node| match node {
        Expr::Cast(Cast { ref expr, .. }) if matches!(expr.as_ref(), Expr::ScalarSubquery(_)) => {
            Ok(Transformed::new(node, false, TreeNodeRecursion::Jump))
        }
        Expr::ScalarSubquery(ref subquery) => match typed_field(subquery) {
            Some(field) => {
                let cast = Expr::Cast(Cast::new_from_field(Box::new(node), field));
                Ok(Transformed::new(cast, true, TreeNodeRecursion::Jump))
            }
            None => Ok(Transformed::new(node, false, TreeNodeRecursion::Jump)),
        },
        _ => Ok(Transformed::no(node)),
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
