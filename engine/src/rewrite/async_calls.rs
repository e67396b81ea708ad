//! Asynchronous function calls (models: `EMBED`, `ML_PREDICT`; objects:
//! `object_ref`, `read_image`, …) where DataFusion cannot run them: it runs
//! async functions only at the top of a projection's expressions.
//!
//! - Calls whose arguments are all constants (`EMBED('minilm', 'query
//!   text')`, `read_image('s3://b/cat.jpg')`) run once, before the plan
//!   executes, and are replaced by their value, innermost first, so nested
//!   calls (`image_format(read_image(object_ref('…')))`), calls in
//!   `VALUES`, `UPDATE … SET` and `ORDER BY` all work. Vector search thus
//!   reads as users write it, `ORDER BY v <=> EMBED('minilm', 'query')
//!   LIMIT 10`, and computes the query vector once.
//! - Other calls in `ORDER BY` move into a projection below the sort, and
//!   (for continuous queries, [`project_aggregate_calls`]) calls in an
//!   aggregate's arguments into a projection below the aggregate.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::common::config::ConfigOptions;
use datafusion::common::metadata::FieldMetadata;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::logical_expr::async_udf::AsyncScalarUDF;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{
    Aggregate, ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDFImpl, SortExpr,
};
use datafusion::prelude::SessionContext;

/// The async function `expr` calls, with its arguments, when they are all
/// constants.
fn constant_call(expr: &Expr) -> Option<(&AsyncScalarUDF, Vec<Constant>)> {
    let Expr::ScalarFunction(ScalarFunction { func, args }) = expr else {
        return None;
    };
    let function = func.as_async()?;
    let values: Option<Vec<Constant>> = args
        .iter()
        .map(|a| match a {
            Expr::Literal(v, metadata) => Some((v.clone(), metadata.clone())),
            _ => None,
        })
        .collect();
    values.map(|v| (function, v))
}

/// A constant argument, with the field metadata that gives its Sluice type.
type Constant = (ScalarValue, Option<FieldMetadata>);

fn is_async_call(expr: &Expr) -> bool {
    matches!(expr, Expr::ScalarFunction(ScalarFunction { func, .. })
        if func.as_async().is_some())
}

/// Every column of `plan`'s output, as expressions: what a projection
/// added below a node passes through.
fn input_columns(plan: &LogicalPlan) -> Vec<Expr> {
    plan.schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect()
}

/// Replaces the calls of `expr` that `movable` picks by columns computed in
/// `projected` (the projection to put below), named `prefix` + position.
fn move_calls(
    expr: Expr,
    projected: &mut Vec<Expr>,
    prefix: &str,
    movable: impl Fn(&Expr) -> bool,
) -> Result<Expr> {
    expr.transform_up(|e| {
        if !movable(&e) {
            return Ok(Transformed::no(e));
        }
        let name = format!("{prefix}{}", projected.len());
        projected.push(e.alias(&name));
        Ok(Transformed::yes(datafusion::prelude::col(name)))
    })
    .map(|t| t.data)
}

/// Moves async calls out of `ORDER BY` into a projection below the sort
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
            .any(|s| s.expr.exists(|e| Ok(is_async_call(e))).unwrap_or(false));
        if !has_call {
            return Ok(Transformed::no(node));
        }
        let input = Arc::clone(&sort.input);
        let original = input_columns(&input);
        let mut projected = original.clone();
        let mut sort_exprs = Vec::with_capacity(sort.expr.len());
        for s in &sort.expr {
            sort_exprs.push(SortExpr {
                expr: move_calls(
                    s.expr.clone(),
                    &mut projected,
                    "__sluice_sort_key_",
                    is_async_call,
                )?,
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

/// Name prefix of the columns holding async calls moved out of aggregate
/// arguments.
const MOVED_AGGREGATE_ARGUMENT: &str = "__sluice_aggregate_argument_";

/// Moves async calls out of aggregate arguments into a projection below
/// the aggregate (`sum(vector_dims(EMBED('m', body)))` sums a computed
/// column): a continuous query's aggregate evaluates its arguments itself,
/// synchronously, while a projection below it runs async calls as every
/// projection does. Names are kept, so the plan above is unchanged.
pub fn project_aggregate_calls(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up(|node| {
        let LogicalPlan::Aggregate(aggregate) = &node else {
            return Ok(Transformed::no(node));
        };
        let movable = |e: &Expr| is_async_call(e) && !has_nested_call(e);
        let has_call = aggregate
            .aggr_expr
            .iter()
            .any(|e| e.exists(|e| Ok(movable(e))).unwrap_or(false));
        if !has_call {
            return Ok(Transformed::no(node));
        }
        let input = Arc::clone(&aggregate.input);
        let mut projected = input_columns(&input);
        let names = NamePreserver::new(&node);
        let mut aggr_expr = Vec::with_capacity(aggregate.aggr_expr.len());
        for expr in &aggregate.aggr_expr {
            let saved = names.save(expr);
            let moved = move_calls(
                expr.clone(),
                &mut projected,
                MOVED_AGGREGATE_ARGUMENT,
                movable,
            )?;
            aggr_expr.push(saved.restore(moved));
        }
        let below = LogicalPlanBuilder::from(input)
            .project(projected)?
            .build()?;
        let aggregate =
            Aggregate::try_new(Arc::new(below), aggregate.group_expr.clone(), aggr_expr)?;
        Ok(Transformed::yes(LogicalPlan::Aggregate(aggregate)))
    })
    .map(|t| t.data)
}

/// Replaces every constant async call in `plan` by its value, and moves
/// the others out of `ORDER BY`.
pub(crate) async fn fold(plan: LogicalPlan, ctx: &SessionContext) -> Result<LogicalPlan> {
    let mut plan = plan;
    // Each round folds the innermost calls, whose results may make the
    // calls around them constant; nesting is shallow in practice.
    for _ in 0..MAX_NESTING {
        let (folded, changed) = fold_constants(plan, ctx).await?;
        plan = folded;
        if !changed {
            break;
        }
    }
    let plan = project_sort_calls(plan)?;
    project_nested_calls(plan)
}

/// Name prefix of the columns holding calls moved below their caller.
const MOVED_CALL: &str = "__sluice_async_";

fn uses_moved_call(expr: &Expr) -> bool {
    expr.exists(|e| Ok(matches!(e, Expr::Column(c) if c.name.starts_with(MOVED_CALL))))
        .unwrap_or(false)
}

/// Whether `expr` is an async call with an async call among its arguments
/// (at any depth).
fn has_nested_call(expr: &Expr) -> bool {
    expr.exists(|e| {
        Ok(match e {
            Expr::ScalarFunction(ScalarFunction { func, args }) if func.as_async().is_some() => {
                args.iter()
                    .any(|a| a.exists(|inner| Ok(is_async_call(inner))).unwrap_or(false))
            }
            _ => false,
        })
    })
    .unwrap_or(false)
}

/// Runs async calls nested in another async call's arguments
/// (`read_image(object_ref(uri))` over a column) in a projection of their
/// own below: DataFusion's async operator evaluates an async call's
/// arguments synchronously. One level per round, innermost calls first.
fn project_nested_calls(plan: LogicalPlan) -> Result<LogicalPlan> {
    plan.transform_up_with_subqueries(|node| {
        let mut node = node;
        let mut changed = false;
        for _ in 0..MAX_NESTING {
            let LogicalPlan::Projection(projection) = &node else {
                break;
            };
            if !projection.expr.iter().any(has_nested_call) {
                break;
            }
            let input = Arc::clone(&projection.input);
            let mut below = input_columns(&input);
            let names = NamePreserver::new(&node);
            let mut above = Vec::with_capacity(projection.expr.len());
            for expr in &projection.expr {
                let saved = names.save(expr);
                // Innermost calls inside another call's arguments: async
                // calls whose own arguments hold none.
                let rewritten = expr.clone().transform_down(|e| {
                    let Expr::ScalarFunction(ScalarFunction { func, args }) = &e else {
                        return Ok(Transformed::no(e));
                    };
                    if func.as_async().is_none() {
                        return Ok(Transformed::no(e));
                    }
                    let args = args
                        .iter()
                        .cloned()
                        .map(|arg| {
                            arg.transform_up(|inner| {
                                // A call over a column just moved below
                                // waits for the next round.
                                if !is_async_call(&inner)
                                    || has_nested_call(&inner)
                                    || uses_moved_call(&inner)
                                {
                                    return Ok(Transformed::no(inner));
                                }
                                // The same call twice is run once.
                                let existing = below.iter().find_map(|e| match e {
                                    Expr::Alias(alias) if *alias.expr == inner => {
                                        Some(alias.name.clone())
                                    }
                                    _ => None,
                                });
                                let name = match existing {
                                    Some(name) => name,
                                    None => {
                                        let name = format!("{MOVED_CALL}{}", below.len());
                                        below.push(inner.alias(&name));
                                        name
                                    }
                                };
                                Ok(Transformed::yes(datafusion::prelude::col(name)))
                            })
                            .map(|t| t.data)
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Ok(Transformed::new(
                        Expr::ScalarFunction(ScalarFunction {
                            func: Arc::clone(func),
                            args,
                        }),
                        true,
                        TreeNodeRecursion::Jump,
                    ))
                })?;
                above.push(saved.restore(rewritten.data));
            }
            node = LogicalPlanBuilder::from(input)
                .project(below)?
                .project(above)?
                .build()?;
            changed = true;
        }
        Ok(if changed {
            Transformed::yes(node)
        } else {
            Transformed::no(node)
        })
    })
    .map(|t| t.data)
}

/// How many levels of nested constant async calls are folded.
const MAX_NESTING: usize = 8;

async fn fold_constants(plan: LogicalPlan, ctx: &SessionContext) -> Result<(LogicalPlan, bool)> {
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
        return Ok((plan, false));
    }
    let config = Arc::new(ctx.state().config_options().as_ref().clone());
    let mut values: Vec<(Expr, Expr)> = Vec::with_capacity(calls.len());
    for call in calls {
        let Some((function, args)) = constant_call(&call) else {
            continue;
        };
        let (value, field) = evaluate(function, args, &config).await?;
        let metadata = FieldMetadata::new_from_field(&field);
        let literal = Expr::Literal(value, (!metadata.is_empty()).then_some(metadata));
        values.push((call, literal));
    }
    let plan = plan
        .transform_up_with_subqueries(|node| {
            // Plans above refer to this node's columns by name: keep them.
            let names = NamePreserver::new(&node);
            node.map_expressions(|expr| {
                let saved = names.save(&expr);
                let folded =
                    expr.transform_up(|e| match values.iter().find(|(call, _)| *call == e) {
                        Some((_, literal)) => Ok(Transformed::yes(literal.clone())),
                        None => Ok(Transformed::no(e)),
                    })?;
                Ok(folded.update_data(|e| saved.restore(e)))
            })
        })?
        .data;
    // Folding changes expression types only where DataFusion's schema
    // already recorded them, but projections cache their schema.
    Ok((plan.recompute_schema()?, true))
}

/// Runs `function` once on constant `args`: its value and result field.
async fn evaluate(
    function: &AsyncScalarUDF,
    constants: Vec<Constant>,
    config: &Arc<ConfigOptions>,
) -> Result<(ScalarValue, FieldRef)> {
    let arg_fields: Vec<FieldRef> = constants
        .iter()
        .map(|(v, metadata)| {
            let field = Field::new("", v.data_type(), v.is_null());
            Arc::new(match metadata {
                Some(m) => m.add_to_field(field),
                None => field,
            })
        })
        .collect();
    let args: Vec<ScalarValue> = constants.into_iter().map(|(v, _)| v).collect();
    let scalar_arguments: Vec<Option<&ScalarValue>> = args.iter().map(Some).collect();
    let return_field = function.return_field_from_args(ReturnFieldArgs {
        arg_fields: &arg_fields,
        scalar_arguments: &scalar_arguments,
    })?;
    let result = function
        .invoke_async_with_args(ScalarFunctionArgs {
            args: args.into_iter().map(ColumnarValue::Scalar).collect(),
            arg_fields,
            number_rows: 1,
            return_field: Arc::clone(&return_field),
            config_options: Arc::clone(config),
        })
        .await?;
    let value = match result {
        ColumnarValue::Scalar(v) => v,
        ColumnarValue::Array(a) => ScalarValue::try_from_array(&a, 0)?,
    };
    Ok((value, return_field))
}
