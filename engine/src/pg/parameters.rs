//! The `$n` parameters of a planned statement: which exist, in what order,
//! and of which types.
//!
//! A parameter number comes from the client's SQL text, so it is checked
//! against Postgres' limits before anything is sized by it: a Parse message
//! with `$100000000000` once made the server allocate a slot per number and
//! abort the whole process.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::datatypes::FieldRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::logical_expr::{Cast, Expr, LogicalPlan, TryCast};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{self, Value, ValueWithSpan, visit_expressions};
use sluice_types::error::{SluiceError, SqlState};

/// The most parameters one statement may have: the wire protocol counts
/// them in 16 bits (Bind, ParameterDescription), as Postgres does.
pub const MAX_PARAMETERS: usize = 65_535;

/// The numbers of the placeholders in `plan`, each checked: `$0`, a
/// number beyond [`MAX_PARAMETERS`] or a placeholder without a number is an
/// error with Postgres' SQLSTATE.
pub fn parameter_numbers(plan: &LogicalPlan) -> Result<Vec<usize>> {
    let mut numbers = Vec::new();
    let mut invalid = None;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::Placeholder(p) = e {
                    match parameter_number(&p.id) {
                        Ok(n) => numbers.push(n),
                        Err(e) => {
                            invalid = Some(e);
                            return Ok(TreeNodeRecursion::Stop);
                        }
                    }
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    if let Some(err) = invalid {
        return Err(err.into());
    }
    numbers.sort_unstable();
    numbers.dedup();
    Ok(numbers)
}

/// Checks the `$n` placeholders of a statement before it is planned, so
/// DataFusion's planner never sees one out of bounds (it reports `$0` with
/// a message of its own and no SQLSTATE).
pub fn check_statement(statement: &DFStatement) -> Result<()> {
    let DFStatement::Statement(statement) = statement else {
        return Ok(());
    };
    let outcome = visit_expressions(statement.as_ref(), |expr| match expr {
        ast::Expr::Value(ValueWithSpan {
            value: Value::Placeholder(id),
            ..
        }) => match parameter_number(id) {
            Ok(_) => ControlFlow::Continue(()),
            Err(e) => ControlFlow::Break(e),
        },
        _ => ControlFlow::Continue(()),
    });
    match outcome {
        ControlFlow::Break(err) => Err(err.into()),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Reads `$n`. Digits are parsed as text first, so a number too large for
/// any integer type is still reported, not wrapped.
fn parameter_number(id: &str) -> std::result::Result<usize, SluiceError> {
    let digits = id.strip_prefix('$').unwrap_or(id);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SluiceError::new(
            SqlState::UNDEFINED_PARAMETER,
            format!("there is no parameter {id}"),
        ));
    }
    let significant = digits.trim_start_matches('0');
    match significant.parse::<usize>() {
        _ if significant.is_empty() => Err(SluiceError::new(
            SqlState::UNDEFINED_PARAMETER,
            format!("there is no parameter {id}"),
        )),
        Ok(n) if n <= MAX_PARAMETERS => Ok(n),
        _ => Err(SluiceError::new(
            SqlState::PROGRAM_LIMIT_EXCEEDED,
            format!("too many parameters: {id} is beyond the limit of {MAX_PARAMETERS}"),
        )),
    }
}

/// The error for executing a statement that has placeholders without
/// values for them (the simple protocol has no way to send any).
pub fn missing_parameter(number: usize) -> SluiceError {
    SluiceError::new(
        SqlState::UNDEFINED_PARAMETER,
        format!("there is no parameter ${number}"),
    )
}

/// The parameters' fields in positional order, `None` where DataFusion
/// could not infer a type. Parameters a statement never mentions (e.g. `$2`
/// used but `$1` not) are reported as untyped.
pub fn ordered_parameter_fields(plan: &LogicalPlan) -> Result<Vec<Option<FieldRef>>> {
    // Checked first: the count below is the largest number.
    let numbers = parameter_numbers(plan)?;
    let mut fields = plan.get_parameter_fields()?;
    // `$1::BIGINT` tells Postgres the parameter's type; DataFusion leaves a
    // placeholder under a cast untyped, so read the cast's target type.
    for (id, cast_field) in placeholder_casts(plan)? {
        if let Some(slot @ None) = fields.get_mut(&id) {
            *slot = Some(cast_field);
        }
    }
    let count = numbers.last().copied().unwrap_or(0);
    let mut by_number: HashMap<usize, Option<FieldRef>> = fields
        .into_iter()
        .filter_map(|(id, field)| parameter_number(&id).ok().map(|n| (n, field)))
        .collect();
    Ok((1..=count)
        .map(|n| by_number.remove(&n).flatten())
        .collect())
}

/// Placeholders that appear directly under a cast, with the cast's type.
fn placeholder_casts(plan: &LogicalPlan) -> Result<Vec<(String, FieldRef)>> {
    let mut found = Vec::new();
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) = e
                    && let Expr::Placeholder(p) = expr.as_ref()
                {
                    found.push((p.id.clone(), Arc::clone(field)));
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_bounded_before_use() {
        assert_eq!(parameter_number("$1"), Ok(1));
        assert_eq!(parameter_number("$65535"), Ok(65_535));
        let code = |id: &str| parameter_number(id).map_err(|e| e.sqlstate);
        assert_eq!(code("$0"), Err(SqlState::UNDEFINED_PARAMETER));
        assert_eq!(code("$000"), Err(SqlState::UNDEFINED_PARAMETER));
        assert_eq!(code("$"), Err(SqlState::UNDEFINED_PARAMETER));
        assert_eq!(code("$x"), Err(SqlState::UNDEFINED_PARAMETER));
        assert_eq!(code("$65536"), Err(SqlState::PROGRAM_LIMIT_EXCEEDED));
        assert_eq!(code("$100000000000"), Err(SqlState::PROGRAM_LIMIT_EXCEEDED));
        assert_eq!(
            code("$99999999999999999999999999999"),
            Err(SqlState::PROGRAM_LIMIT_EXCEEDED)
        );
    }
}
