//! Postgres reads text as `bytea` by bytea's input syntax: `'\x00ff'::bytea`
//! is two bytes. Arrow's Utf8→Binary cast keeps the characters instead
//! (`\x00ff`, six bytes), a silently different answer wherever text becomes
//! bytea: casts, INSERT values, COPY rows, comparisons with a bytea column.
//! This analyzer rule runs after DataFusion's type coercion (so it also
//! sees the casts coercion adds) and turns every cast of text to a binary
//! type into the input function: `\x` and hex digits are decoded, other
//! text is taken as its bytes (Postgres' older backslash-octal escape form
//! is not read).

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::Result;
use datafusion::functions::expr_fn::{arrow_cast, decode, starts_with, substr};
use datafusion::logical_expr::{Cast, Expr, ExprSchemable, LogicalPlan, lit, when};
use datafusion::optimizer::AnalyzerRule;

use crate::node_rewrite::rewrite_node_expressions;

/// See the module documentation. Register it after `type_coercion`.
#[derive(Debug, Default)]
pub struct ByteaInput;

impl AnalyzerRule for ByteaInput {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(rewrite_plan).data()
    }

    fn name(&self) -> &str {
        "sluice_bytea_input"
    }
}

fn rewrite_plan(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    rewrite_node_expressions(plan, has_binary_cast, rewrite_expr)
}

fn has_binary_cast(expr: &Expr) -> bool {
    expr.exists(|e| Ok(matches!(e, Expr::Cast(Cast { field, .. }) if is_binary(field.data_type()))))
        .unwrap_or(true)
}

fn rewrite_expr(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::Cast(Cast { expr: inner, field }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let data_type = field.data_type();
    let from_text = matches!(
        inner.get_type(schema),
        Ok(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
    );
    if !is_binary(data_type) || !from_text {
        return Ok(Transformed::no(expr));
    }
    // Built after type coercion, so every argument has its final type;
    // `arrow_cast` (a function call, not a cast) is left alone should this
    // rule see the plan again.
    let text = Expr::Cast(Cast::new(inner.clone(), DataType::Utf8));
    let bytes = |e: Expr| arrow_cast(e, lit("Binary"));
    let input = when(
        starts_with(text.clone(), lit("\\x")),
        decode(bytes(substr(text.clone(), lit(3i64))), lit("hex")),
    )
    .otherwise(bytes(text))?;
    Ok(Transformed::yes(Expr::Cast(Cast::new_from_field(
        Box::new(input),
        std::sync::Arc::clone(field),
    ))))
}

fn is_binary(data_type: &DataType) -> bool {
    matches!(data_type, DataType::Binary | DataType::LargeBinary)
}
