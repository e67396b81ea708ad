//! pgvector's operators, planned onto the vector functions: `a <-> b` is
//! `l2_distance(a, b)`, `a <=> b` is `cosine_distance(a, b)`, `a <#> b` is
//! `negative_inner_product(a, b)`, and `+`, `-`, `*` between vectors are
//! element-wise. DataFusion gives `<=>` MySQL's meaning (IS NOT DISTINCT
//! FROM), and the arithmetic operators their list meaning, unless a side is
//! a vector.

use std::sync::Arc;

use datafusion::common::DFSchema;
use datafusion::error::Result;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{Cast, Expr, ExprSchemable, ScalarUDF};
use datafusion::sql::sqlparser::ast::BinaryOperator;
use sluice_types::SluiceType;

use super::arithmetic::{ElementOp, VectorElementwise};
use super::distance::{Metric, VectorDistance};
use super::operand::vector_dimension;

/// Plans `<->`, `<=>` and `<#>` between vectors.
#[derive(Debug)]
pub struct VectorOperatorPlanner {
    l2: Arc<ScalarUDF>,
    cosine: Arc<ScalarUDF>,
    negative_inner_product: Arc<ScalarUDF>,
    add: Arc<ScalarUDF>,
    subtract: Arc<ScalarUDF>,
    multiply: Arc<ScalarUDF>,
}

impl Default for VectorOperatorPlanner {
    fn default() -> Self {
        let udf = |m| Arc::new(ScalarUDF::new_from_impl(VectorDistance::new(m)));
        let elementwise = |op| Arc::new(ScalarUDF::new_from_impl(VectorElementwise::new(op)));
        Self {
            l2: udf(Metric::L2),
            cosine: udf(Metric::Cosine),
            negative_inner_product: udf(Metric::NegativeInnerProduct),
            add: elementwise(ElementOp::Add),
            subtract: elementwise(ElementOp::Subtract),
            multiply: elementwise(ElementOp::Multiply),
        }
    }
}

impl ExprPlanner for VectorOperatorPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let vector_side = is_vector(&expr.left, schema) || is_vector(&expr.right, schema);
        let udf = match &expr.op {
            BinaryOperator::LtDashGt => &self.l2,
            BinaryOperator::Custom(op) if op == "<#>" => &self.negative_inner_product,
            BinaryOperator::Spaceship if vector_side => &self.cosine,
            BinaryOperator::Plus if vector_side => &self.add,
            BinaryOperator::Minus if vector_side => &self.subtract,
            BinaryOperator::Multiply if vector_side => &self.multiply,
            _ => return Ok(PlannerResult::Original(expr)),
        };
        let (left, right) = type_placeholders(expr.left, expr.right, schema);
        Ok(PlannerResult::Planned(udf.call(vec![left, right])))
    }
}

/// `v <-> $1`: the parameter is a vector of `v`'s dimension. DataFusion
/// infers parameter types from comparisons, not from function arguments, so
/// without this a driver would be told to send text and would send a binary
/// vector anyway.
fn type_placeholders(left: Expr, right: Expr, schema: &DFSchema) -> (Expr, Expr) {
    let dim_of = |e: &Expr| e.get_type(schema).ok().and_then(|t| vector_dimension(&t));
    let as_vector = |placeholder: Expr, dim: i32| {
        Expr::Cast(Cast::new_from_field(
            Box::new(placeholder),
            SluiceType::Vector(dim).field_ref(),
        ))
    };
    match (&left, &right) {
        (Expr::Placeholder(_), other) => match dim_of(other) {
            Some(dim) => (as_vector(left, dim), right),
            None => (left, right),
        },
        (other, Expr::Placeholder(_)) => match dim_of(other) {
            Some(dim) => (left, as_vector(right, dim)),
            None => (left, right),
        },
        _ => (left, right),
    }
}

fn is_vector(expr: &Expr, schema: &DFSchema) -> bool {
    expr.get_type(schema)
        .is_ok_and(|t| vector_dimension(&t).is_some())
}
