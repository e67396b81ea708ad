//! Vector functions and operators over `VECTOR(n)` / `EMBEDDING(n)`
//! columns, pgvector-compatible in names and results: distances
//! (`l2_distance`, `cosine_distance`, `inner_product`,
//! `negative_inner_product`, `l1_distance`), `vector_dims`, `vector_norm`,
//! `l2_normalize`, `subvector`, element-wise `vector_add`/`vector_sub`/`vector_mul`,
//! the operators `<->`, `<=>`, `<#>`, `+`, `-`, `*`, and the aggregates
//! `sum(vector)` and `avg(vector)`. Every function works on whole
//! batches and reads a constant query vector once.

pub mod aggregate;
pub mod arithmetic;
pub mod distance;
pub mod join_key;
pub mod kernels;
mod operand;
pub mod operators;
pub mod properties;
pub mod subvector;

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{AggregateUDF, ScalarUDF};
use datafusion::prelude::SessionContext;

use arithmetic::{ElementOp, VectorElementwise};
use distance::{Metric, VectorDistance};
use properties::{Property, VectorProperty};

/// Registers the vector functions (replacing DataFusion's list-based
/// `cosine_distance` and `inner_product`) and the operator planner.
pub fn register(ctx: &SessionContext) -> Result<()> {
    for metric in Metric::ALL {
        crate::register_replacing(ctx, ScalarUDF::new_from_impl(VectorDistance::new(metric)));
    }
    crate::register_replacing(
        ctx,
        ScalarUDF::new_from_impl(VectorElementwise::new(ElementOp::Normalize)),
    );
    for op in [ElementOp::Add, ElementOp::Subtract, ElementOp::Multiply] {
        crate::register_replacing(ctx, ScalarUDF::new_from_impl(VectorElementwise::new(op)));
    }
    crate::register_replacing(
        ctx,
        ScalarUDF::new_from_impl(subvector::Subvector::default()),
    );
    ctx.register_udf(ScalarUDF::new_from_impl(join_key::VectorJoinKey::default()));
    for property in [Property::Dims, Property::Norm] {
        crate::register_replacing(ctx, ScalarUDF::new_from_impl(VectorProperty::new(property)));
    }
    for (kind, name) in [
        (aggregate::VectorAggregateKind::Sum, "sum"),
        (aggregate::VectorAggregateKind::Avg, "avg"),
    ] {
        let builtin = ctx.udaf(name)?;
        ctx.register_udaf(AggregateUDF::new_from_impl(
            aggregate::VectorAwareAggregate::new(kind, builtin),
        ));
    }
    ctx.state_ref()
        .write()
        .register_expr_planner(Arc::new(operators::VectorOperatorPlanner::default()))
}
