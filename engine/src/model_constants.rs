//! Model calls whose arguments are all constants (`EMBED('minilm', 'query
//! text')`) are run once, before the plan executes, and replaced by their
//! value. Vector search then reads as users write it,
//! `ORDER BY v <=> EMBED('minilm', 'query') LIMIT 10`: DataFusion runs
//! async functions only in projections, so without this the call in ORDER
//! BY could not run at all, and the query vector is computed once instead
//! of once per batch.

use datafusion::common::ScalarValue;
use datafusion::common::metadata::FieldMetadata;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, SortExpr};
use datafusion::prelude::SessionContext;
use sluice_functions::model::calls::{CallKind, ModelCall};

use crate::models;

/// The kind of model call `expr` is, when all its arguments are constants.
fn constant_call(expr: &Expr) -> Option<(CallKind, Vec<ScalarValue>)> {
    let Expr::ScalarFunction(ScalarFunction { func, args }) = expr else {
        return None;
    };
    let kind = CallKind::of_function(func.name())?;
    let values: Option<Vec<ScalarValue>> = args
        .iter()
        .map(|a| match a {
            Expr::Literal(v, _) => Some(v.clone()),
            _ => None,
        })
        .collect();
    values.map(|v| (kind, v))
}

fn is_model_call(expr: &Expr) -> bool {
    matches!(expr, Expr::ScalarFunction(ScalarFunction { func, .. })
        if CallKind::of_function(func.name()).is_some())
}

/// Moves model calls out of `ORDER BY` into a projection below the sort
/// (DataFusion runs async functions only in projections):
/// `ORDER BY EMBED('m', body) <=> q` sorts on a computed column instead.
fn project_sort_calls(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        let LogicalPlan::Sort(sort) = &node else {
            return Ok(Transformed::no(node));
        };
        let has_call = sort
            .expr
            .iter()
            .any(|s| s.expr.exists(|e| Ok(is_model_call(e))).unwrap_or(false));
        if !has_call {
            return Ok(Transformed::no(node));
        }
        let input = std::sync::Arc::clone(&sort.input);
        let original: Vec<Expr> = input
            .schema()
            .columns()
            .into_iter()
            .map(Expr::Column)
            .collect();
        let mut projected = original.clone();
        let mut sort_exprs = Vec::with_capacity(sort.expr.len());
        for s in &sort.expr {
            let rewritten = s.expr.clone().transform_up(|e| {
                if !is_model_call(&e) {
                    return Ok(Transformed::no(e));
                }
                let name = format!("__sluice_sort_key_{}", projected.len());
                projected.push(e.alias(&name));
                Ok(Transformed::yes(datafusion::prelude::col(name)))
            })?;
            sort_exprs.push(SortExpr {
                expr: rewritten.data,
                ..s.clone()
            });
        }
        let plan = LogicalPlanBuilder::from(input)
            .project(projected)?
            .sort_with_limit(sort_exprs, sort.fetch)?
            .project(original)?
            .build()?;
        Ok(Transformed::yes(plan))
    })
    .map(|t| t.data)
}

/// Replaces every constant model call in `plan` by its value, and moves
/// the others out of `ORDER BY`.
pub(crate) async fn fold(plan: LogicalPlan, ctx: &SessionContext) -> Result<LogicalPlan> {
    let plan = fold_constants(plan, ctx).await?;
    project_sort_calls(plan)
}

async fn fold_constants(plan: LogicalPlan, ctx: &SessionContext) -> Result<LogicalPlan> {
    let mut calls: Vec<Expr> = Vec::new();
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if constant_call(e).is_some() && !calls.contains(e) {
                    calls.push(e.clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    if calls.is_empty() {
        return Ok(plan);
    }
    let registry = models::registry(ctx)?;
    let mut values: Vec<(Expr, Expr)> = Vec::with_capacity(calls.len());
    for call in calls {
        let Some((kind, args)) = constant_call(&call) else {
            continue;
        };
        let function = ModelCall::new(kind, std::sync::Arc::clone(&registry));
        let (value, field) = function.evaluate_constant(&args).await?;
        let metadata = FieldMetadata::new_from_field(&field);
        let literal = Expr::Literal(value, (!metadata.is_empty()).then_some(metadata));
        values.push((call, literal));
    }
    plan.transform_up_with_subqueries(|node| {
        node.map_expressions(|expr| {
            expr.transform_up(|e| match values.iter().find(|(call, _)| *call == e) {
                Some((_, literal)) => Ok(Transformed::yes(literal.clone())),
                None => Ok(Transformed::no(e)),
            })
        })
    })
    .map(|t| t.data)
}
