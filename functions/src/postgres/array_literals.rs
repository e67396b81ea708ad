//! A string literal compared with an array is read as that array type, as
//! Postgres reads an untyped literal by the other operand's type:
//! `pol.polroles <> '{0}'` (psql's `\dp`) compares with the array `{0}`.
//! DataFusion has no common type for a list and text and fails ("Cannot
//! infer common argument type"). An expression planner, which sees each
//! comparison as it is planned (a projection computes its schema right
//! then, before any analyzer rule could step in), casts the literal to the
//! list's type; Sluice's text casts then read Postgres' array text.
//!
//! Only plain arrays: a Sluice type stored as a list (a vector) reads its
//! own text in its own casts.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::error::Result;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{Cast, Expr, ExprSchemable};
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::BinaryOperator;
use sluice_types::SluiceType;

/// See the module documentation.
#[derive(Debug, Default)]
pub struct ArrayLiteralPlanner;

impl ExprPlanner for ArrayLiteralPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let compares = matches!(
            expr.op,
            BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq
        );
        if !compares {
            return Ok(PlannerResult::Original(expr));
        }
        let RawBinaryExpr { op, left, right } = expr;
        // The operands are typed; DataFusion plans the comparison itself.
        // Only a comparison with a text literal has its other side typed:
        // planning every comparison pays nothing more.
        let (left, right) = match (is_text_literal(&left), is_text_literal(&right)) {
            (false, true) => match array_type(&left, schema) {
                Some(array) => (left, cast(right, array)),
                None => (left, right),
            },
            (true, false) => match array_type(&right, schema) {
                Some(array) => (cast(left, array), right),
                None => (left, right),
            },
            _ => (left, right),
        };
        Ok(PlannerResult::Original(RawBinaryExpr { op, left, right }))
    }
}

/// The type of `expr` when it is a plain array (no Sluice type).
fn array_type(expr: &Expr, schema: &DFSchema) -> Option<DataType> {
    // A field that cannot be found (an outer reference's) is left alone.
    let (_, field) = expr.to_field(schema).ok()?;
    let is_array = matches!(
        field.data_type(),
        DataType::List(_) | DataType::LargeList(_)
    );
    (is_array && SluiceType::of_field(&field).is_none()).then(|| field.data_type().clone())
}

fn is_text_literal(expr: &Expr) -> bool {
    matches!(
        expr,
        Expr::Literal(
            ScalarValue::Utf8(Some(_))
                | ScalarValue::Utf8View(Some(_))
                | ScalarValue::LargeUtf8(Some(_)),
            _
        )
    )
}

fn cast(literal: Expr, array: DataType) -> Expr {
    Expr::Cast(Cast::new(Box::new(literal), array))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::logical_expr::{col, lit};

    use super::*;

    fn planned(left: Expr, right: Expr, schema: &DFSchema) -> (Expr, Expr) {
        let raw = RawBinaryExpr {
            op: BinaryOperator::NotEq,
            left,
            right,
        };
        match ArrayLiteralPlanner.plan_binary_op(raw, schema).unwrap() {
            PlannerResult::Original(raw) => (raw.left, raw.right),
            PlannerResult::Planned(_) => panic!("the comparison is DataFusion's to plan"),
        }
    }

    #[test]
    fn text_compared_with_an_array_is_cast_to_it() -> Result<()> {
        let list = DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true)));
        let schema = DFSchema::try_from(Schema::new(vec![
            Field::new("roles", list.clone(), true),
            Field::new("name", DataType::Utf8, true),
        ]))?;
        assert_eq!(
            planned(col("roles"), lit("{0}"), &schema),
            (col("roles"), cast(lit("{0}"), list.clone()))
        );
        assert_eq!(
            planned(lit("{0}"), col("roles"), &schema),
            (cast(lit("{0}"), list), col("roles"))
        );
        // Text with text, and an array with a non-literal, are left alone.
        assert_eq!(
            planned(col("name"), lit("{0}"), &schema),
            (col("name"), lit("{0}"))
        );
        assert_eq!(
            planned(col("roles"), col("name"), &schema),
            (col("roles"), col("name"))
        );
        Ok(())
    }
}
