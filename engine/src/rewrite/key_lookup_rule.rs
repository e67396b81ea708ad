//! The planner's choice of a point lookup: an optimizer rule that plans
//! `WHERE key = value [AND …]` over a durable table — `value` a constant
//! or a prepared statement's parameter — as Sluice's key lookup (see
//! [`crate::storage::key_lookup`]) instead of a filtered Parquet scan.
//!
//! It fires on a filter, directly over the table's scan (or an alias of
//! it), with a conjunct comparing a column of an orderable scalar type
//! (integers, text, dates, timestamps, decimals) to a constant. The filter
//! and scan become a scan of [`KeyLookup`], which applies the rest of the
//! condition itself. `DELETE` and `UPDATE` keep their plans: their tables
//! take the condition from the filter.
//!
//! A parameter (`id = $1`) is taken only by [`lookups_by_parameter`], run
//! on a prepared statement's optimized plan when its physical plan is to
//! be kept with the parameter unbound: anywhere else the plan would hide
//! the parameter from the binding of its value (SQL `PREPARE` optimizes
//! the plan before `EXECUTE` binds it).

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::{provider_as_source, source_as_provider};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{
    BinaryExpr, Expr, Filter, LogicalPlan, Operator, SubqueryAlias, TableScanBuilder, TableType,
    WriteOp,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;

use super::{needs_more_than_its_row, unqualified};
use crate::storage::DurableTable;
use crate::storage::key_lookup::{LookupKey, LookupRequest};

/// See the module documentation.
#[derive(Debug, Default)]
pub struct KeyLookupRule;

impl OptimizerRule for KeyLookupRule {
    fn name(&self) -> &str {
        "sluice_key_lookup"
    }

    // No apply order: the rule walks the plan itself, to leave the filters
    // of DELETE and UPDATE alone wherever they are.
    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        with_lookups(plan, Keys::Constants)
    }
}

/// Which values a lookup may look for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    Constants,
    ConstantsAndParameters,
}

/// `plan`, optimized with its parameters unbound, with its lookups by
/// constant or parameter planned as lookups (see the module documentation).
pub(crate) fn lookups_by_parameter(plan: LogicalPlan) -> Result<LogicalPlan> {
    Ok(with_lookups(plan, Keys::ConstantsAndParameters)?.data)
}

fn with_lookups(plan: LogicalPlan, keys: Keys) -> Result<Transformed<LogicalPlan>> {
    plan.transform_down_with_subqueries(|node| match &node {
        LogicalPlan::Filter(filter) => match lookup(filter, keys)? {
            Some(rewritten) => Ok(Transformed::yes(rewritten)),
            None => Ok(Transformed::no(node)),
        },
        // Below EXPLAIN ANALYZE too: DELETE and UPDATE take their rows'
        // condition from the filter over their table's scan.
        LogicalPlan::Dml(dml) if !matches!(dml.op, WriteOp::Insert(_) | WriteOp::Ctas) => {
            Ok(Transformed::new(node, false, TreeNodeRecursion::Jump))
        }
        _ => Ok(Transformed::no(node)),
    })
}

/// `filter` and the scan below it as a lookup, when they qualify.
fn lookup(filter: &Filter, keys: Keys) -> Result<Option<LogicalPlan>> {
    let (alias, scan) = match filter.input.as_ref() {
        LogicalPlan::SubqueryAlias(alias) => match alias.input.as_ref() {
            LogicalPlan::TableScan(scan) => (Some(alias), scan),
            _ => return Ok(None),
        },
        LogicalPlan::TableScan(scan) => (None, scan),
        _ => return Ok(None),
    };
    if !scan.filters.is_empty() || scan.fetch.is_some() {
        return Ok(None);
    }
    let provider = source_as_provider(&scan.source)?;
    let any: &dyn Any = provider.as_ref();
    let Some(table) = any.downcast_ref::<DurableTable>() else {
        return Ok(None);
    };
    if filter
        .predicate
        .exists(|e| Ok(needs_more_than_its_row(e)))?
    {
        return Ok(None);
    }
    let predicate = unqualified(filter.predicate.clone())?;
    let conjuncts = split_conjunction(&predicate);
    let schema = table.schema();
    let Some((at, column, key)) = conjuncts
        .iter()
        .enumerate()
        .find_map(|(at, conjunct)| key_equality(conjunct, &schema, keys).map(|(c, k)| (at, c, k)))
    else {
        return Ok(None);
    };
    let residual = conjunction(
        conjuncts
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != at)
            .map(|(_, c)| (*c).clone()),
    );
    let request = LookupRequest {
        column,
        key,
        residual,
    };
    let looked_up = TableScanBuilder::new(
        scan.table_name.clone(),
        provider_as_source(Arc::new(KeyLookup {
            table: Arc::clone(&provider),
            request,
        })),
    )
    .with_projection(scan.projection.clone())
    .build()?;
    let mut plan = LogicalPlan::TableScan(looked_up);
    if let Some(alias) = alias {
        plan = LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(
            Arc::new(plan),
            alias.alias.clone(),
        )?);
    }
    Ok(Some(plan))
}

/// `(column, key)` of `column = value` (either order) where the column
/// has a type lookups compare and `value` is a non-NULL constant (or a
/// parameter, where `keys` allows).
fn key_equality(conjunct: &Expr, schema: &SchemaRef, keys: Keys) -> Option<(String, LookupKey)> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = conjunct
    else {
        return None;
    };
    let (column, value) = match (left.as_ref(), right.as_ref()) {
        (Expr::Column(column), value) | (value, Expr::Column(column)) => (column, value),
        _ => return None,
    };
    let key = match value {
        Expr::Literal(value, _) if !value.is_null() => LookupKey::Value(value.clone()),
        Expr::Placeholder(placeholder) if keys == Keys::ConstantsAndParameters => {
            LookupKey::Parameter(placeholder.id.clone())
        }
        _ => return None,
    };
    let field = schema.field_with_name(&column.name).ok()?;
    lookup_type(field.data_type()).then(|| (column.name.clone(), key))
}

/// Types whose equality is their sort order's: a sorted file is searched
/// by binary search. (Floats are left out: `-0 = 0` and NaN.)
fn lookup_type(data_type: &DataType) -> bool {
    data_type.is_integer()
        || matches!(
            data_type,
            DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(..)
                | DataType::Decimal128(..)
        )
}

/// A durable table seen through one point lookup: its scan is the lookup.
#[derive(Debug)]
pub struct KeyLookup {
    table: Arc<dyn TableProvider>,
    request: LookupRequest,
}

#[async_trait]
impl TableProvider for KeyLookup {
    fn schema(&self) -> SchemaRef {
        self.table.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let any: &dyn Any = self.table.as_ref();
        let table = any.downcast_ref::<DurableTable>().ok_or_else(|| {
            DataFusionError::Internal("a key lookup over a non-durable table".into())
        })?;
        table
            .plan_key_lookup(state, &self.request, projection)
            .await
    }
}
