//! A bound on one value repeated down a batch.
//!
//! A projection or a sort whose expression evaluates to a single value (a
//! scalar subquery's `array_agg`, a folded `repeat('x', 10000000)`) makes
//! an array of that value once per row of the batch. Arrow allocates that
//! array outside DataFusion's memory pool, and Rust aborts the process when
//! an allocation fails: `SELECT (SELECT array_agg(f) FROM t) FROM t` over a
//! 750,000-row table asked for 24.6 GB in one batch and killed the server.
//! [`BoundBroadcasts`] wraps such expressions (projected values and sort
//! keys) so that a value too large to repeat fails its statement with 53200
//! (out of memory) before the array is made.

use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_expr::projection::ProjectionExpr;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;

/// The most bytes one value may take once repeated down a batch. Postgres
/// bounds one value to 1 GB; a batch of one value is bounded the same.
pub const MAX_BROADCAST_BYTES: usize = 1 << 30;

/// Literals smaller than this cannot reach the bound in any batch Sluice
/// makes, so they are left unwrapped.
const SMALL_LITERAL_BYTES: usize = 64 << 10;

/// The physical optimizer rule that wraps a projection's single-value
/// expressions of variable-width types in a [`BoundedBroadcast`].
#[derive(Debug, Default)]
pub struct BoundBroadcasts;

impl PhysicalOptimizerRule for BoundBroadcasts {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if let Some(sort) = node.downcast_ref::<SortExec>() {
                return Ok(match bound_sort_keys(sort)? {
                    Some(bounded) => Transformed::yes(bounded),
                    None => Transformed::no(node),
                });
            }
            let Some(projection) = node.downcast_ref::<ProjectionExec>() else {
                return Ok(Transformed::no(node));
            };
            let input_schema = projection.input().schema();
            let mut wrapped = false;
            let mut exprs = Vec::with_capacity(projection.expr().len());
            for projected in projection.expr() {
                exprs.push(match bounded(&projected.expr, &input_schema)? {
                    Some(expr) => {
                        wrapped = true;
                        ProjectionExpr::new(expr, projected.alias.clone())
                    }
                    None => projected.clone(),
                });
            }
            if !wrapped {
                return Ok(Transformed::no(node));
            }
            let bounded = ProjectionExec::try_new(exprs, Arc::clone(projection.input()))?;
            Ok(Transformed::yes(Arc::new(bounded) as Arc<dyn ExecutionPlan>))
        })
        .data()
    }

    fn name(&self) -> &str {
        "bound_broadcasts"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `sort` with its single-value keys wrapped (`None`: it has none): a sort
/// evaluates its keys into arrays as a projection does, and `ORDER BY
/// (SELECT array_agg(t) FROM t)` asked for 6.5 GB in one batch (fuzzing,
/// seed 11).
fn bound_sort_keys(sort: &SortExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let input_schema = sort.input().schema();
    let mut wrapped = false;
    let mut keys = Vec::with_capacity(sort.expr().len());
    for key in sort.expr().iter() {
        keys.push(match bounded(&key.expr, &input_schema)? {
            Some(expr) => {
                wrapped = true;
                PhysicalSortExpr::new(expr, key.options)
            }
            None => key.clone(),
        });
    }
    let Some(ordering) = LexOrdering::new(keys).filter(|_| wrapped) else {
        return Ok(None);
    };
    let bounded = SortExec::new(ordering, Arc::clone(sort.input()))
        .with_preserve_partitioning(sort.preserve_partitioning())
        .with_fetch(sort.fetch());
    Ok(Some(Arc::new(bounded)))
}

/// `expr` wrapped in a [`BoundedBroadcast`] when it may repeat a large
/// value; `None` when it needs no bound.
fn bounded(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Result<Option<Arc<dyn PhysicalExpr>>> {
    Ok(may_repeat_a_large_value(expr, schema)?
        .then(|| Arc::new(BoundedBroadcast(Arc::clone(expr))) as Arc<dyn PhysicalExpr>))
}

/// Whether `expr` may evaluate to one value that is large once repeated:
/// not a column (columns are arrays already), not a small literal, not
/// already wrapped, and of a type whose values have no fixed width.
fn may_repeat_a_large_value(expr: &Arc<dyn PhysicalExpr>, schema: &Schema) -> Result<bool> {
    if expr.downcast_ref::<Column>().is_some() || expr.downcast_ref::<BoundedBroadcast>().is_some()
    {
        return Ok(false);
    }
    if let Some(literal) = expr.downcast_ref::<Literal>()
        && literal.value().size() < SMALL_LITERAL_BYTES
    {
        return Ok(false);
    }
    Ok(is_variable_width(&expr.data_type(schema)?))
}

fn is_variable_width(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::FixedSizeList(_, _)
            | DataType::FixedSizeBinary(_)
            | DataType::Struct(_)
            | DataType::Map(_, _)
            | DataType::Union(_, _)
    )
}

/// An expression that fails, instead of letting the projection repeat it,
/// when its single value times the batch's rows is over
/// [`MAX_BROADCAST_BYTES`]. Shown in EXPLAIN as the expression it wraps.
#[derive(Debug, Eq)]
pub struct BoundedBroadcast(Arc<dyn PhysicalExpr>);

impl PartialEq for BoundedBroadcast {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq(&other.0)
    }
}

impl Hash for BoundedBroadcast {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl fmt::Display for BoundedBroadcast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl PhysicalExpr for BoundedBroadcast {
    fn data_type(&self, input_schema: &Schema) -> Result<DataType> {
        self.0.data_type(input_schema)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.0.nullable(input_schema)
    }

    fn return_field(
        &self,
        input_schema: &Schema,
    ) -> Result<datafusion::arrow::datatypes::FieldRef> {
        self.0.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let value = self.0.evaluate(batch)?;
        if let ColumnarValue::Scalar(scalar) = &value {
            let bytes = scalar.size().saturating_mul(batch.num_rows());
            if bytes > MAX_BROADCAST_BYTES {
                return Err(DataFusionError::ResourcesExhausted(format!(
                    "a value of {} bytes repeated over {} rows would take {bytes} bytes, \
                         more than the {MAX_BROADCAST_BYTES} one batch may hold; lower \
                         datafusion.execution.batch_size or compute the value once",
                    scalar.size(),
                    batch.num_rows()
                )));
            }
        }
        Ok(value)
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.0]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        match children.pop() {
            Some(child) if children.is_empty() => Ok(Arc::new(Self(child))),
            _ => Err(DataFusionError::Internal(
                "BoundedBroadcast takes one child".into(),
            )),
        }
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_sql(f)
    }
}
