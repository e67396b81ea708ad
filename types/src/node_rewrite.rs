//! The step Sluice's expression-rewriting analyzer rules share: rewrite one
//! plan node's expressions bottom up, keeping the names nodes above refer
//! to (INSERT's projection, `ORDER BY 1`), and skip nodes with nothing to
//! rewrite cheaply, since it runs for every node of every query.

use datafusion::common::DFSchema;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{Expr, LogicalPlan};

/// Rewrites each expression of `plan` with `rewrite` (given the node's
/// input schema), when `relevant` holds for any of them.
pub(crate) fn rewrite_node_expressions(
    plan: LogicalPlan,
    relevant: impl Fn(&Expr) -> bool,
    rewrite: impl Fn(Expr, &DFSchema) -> Result<Transformed<Expr>>,
) -> Result<Transformed<LogicalPlan>> {
    // Look without cloning: most nodes hold nothing to rewrite and skip
    // the schema merge.
    let mut found = false;
    plan.apply_expressions(|expr| {
        found = relevant(expr);
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    if !found {
        return Ok(Transformed::no(plan));
    }
    let schema = merge_schema(&plan.inputs());
    let names = NamePreserver::new(&plan);
    plan.map_expressions(|expr| {
        let saved = names.save(&expr);
        let rewritten = expr.transform_up(|e| rewrite(e, &schema))?;
        Ok(rewritten.update_data(|e| saved.restore(e)))
    })
}
