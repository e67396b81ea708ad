//! `array_agg` over an oid column is `oid[]`, as in Postgres.
//!
//! The catalog's oid columns (`pg_attribute.atttypid`, …) are `Int32`
//! tagged with `pg.oid_alias` metadata, which clients see as `oid` or
//! `regtype`. DataFusion's `array_agg` drops the tag, so `array_agg(atttypid)`
//! went out as `int4[]`. asyncpg decodes only `oid[]` and `text[]` arrays
//! without asking the server: for any other array it runs its type
//! introspection query, whose `array_agg(ia.atttypid)` column was itself
//! `int4[]`, so it introspected again, without end (a RecursionError on
//! every `int4[]`, `int8[]` or `float8[]` result).
//!
//! The wrapper here is DataFusion's own `array_agg` with one change: over a
//! tagged argument the list's element field keeps the tag, which the server
//! announces as `oid[]`; the values stay `Int32`, whose binary form is oid's.
//! The tag goes on the element, not on the column, because it is then part
//! of the column's data type, which survives what column metadata does not:
//! asyncpg's query wraps the `array_agg` in `CASE … ELSE NULL END`, whose
//! result DataFusion types from its branches but gives no metadata.
//!
//! The same query binds its type list as `$1::oid[]`, so the cast target
//! `oid[]` is planned here too ([`OidArrayTypePlanner`]): as a list of
//! tagged `Int32`, announced as `oid[]`, where the pg_catalog planner
//! gives a plain `int4[]` (for which asyncpg would introspect again).

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, ListArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::expr::{
    AggregateFunction, AggregateFunctionParams, WindowFunctionParams,
};
use datafusion::logical_expr::function::{
    AccumulatorArgs, AggregateFunctionSimplification, StateFieldsArgs,
};
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::logical_expr::udf_eq::UdfEq;
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, Expr, GroupsAccumulator,
    Operator, ReversedUDAF, SetMonotonicity, Signature, StatisticsArgs,
};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{ArrayElemTypeDef, DataType as SqlType, ObjectNamePart};
use datafusion_pg_catalog::pg_catalog::oid_field::{OID_ALIAS_KEY, kind};

/// True when `field` is a list of oids, to be announced as `oid[]`.
pub fn is_oid_array(field: &Field) -> bool {
    oid_element(field.data_type()).is_some()
}

/// The element field of a list of tagged oids.
fn oid_element(data_type: &DataType) -> Option<&FieldRef> {
    match data_type {
        DataType::List(item)
            if item.data_type() == &DataType::Int32
                && item.metadata().contains_key(OID_ALIAS_KEY) =>
        {
            Some(item)
        }
        _ => None,
    }
}

/// Replaces `array_agg` on `ctx` with the oid-keeping wrapper, and wraps
/// its type planner in [`OidArrayTypePlanner`].
pub(crate) fn install(ctx: &SessionContext) {
    let state = ctx.state_ref();
    let mut builder = SessionStateBuilder::new_from_existing(state.read().clone());
    let fallback = builder.type_planner().take();
    *state.write() = builder
        .with_type_planner(Arc::new(OidArrayTypePlanner { fallback }))
        .build();
    let Some(array_agg) = ctx
        .state_ref()
        .read()
        .aggregate_functions()
        .get("array_agg")
        .cloned()
    else {
        return;
    };
    ctx.register_udaf(AggregateUDF::new_from_impl(OidArrayAgg::new(Arc::clone(
        array_agg.inner(),
    ))));
}

/// Plans the SQL type `oid[]` as a list of tagged `Int32`; every other
/// name goes to the planner it wraps (a session has one type planner slot).
#[derive(Debug)]
struct OidArrayTypePlanner {
    fallback: Option<Arc<dyn TypePlanner>>,
}

impl TypePlanner for OidArrayTypePlanner {
    fn plan_type_field(&self, sql_type: &SqlType) -> Result<Option<FieldRef>> {
        if let SqlType::Array(
            ArrayElemTypeDef::SquareBracket(element, None)
            | ArrayElemTypeDef::AngleBracket(element),
        ) = sql_type
            && is_oid_name(element)
        {
            let element = Field::new_list_field(DataType::Int32, true).with_metadata(
                [(OID_ALIAS_KEY.to_owned(), kind::OID.to_owned())]
                    .into_iter()
                    .collect(),
            );
            return Ok(Some(Arc::new(Field::new(
                "",
                DataType::List(Arc::new(element)),
                true,
            ))));
        }
        match &self.fallback {
            Some(fallback) => fallback.plan_type_field(sql_type),
            None => Ok(None),
        }
    }
}

/// `oid` or `pg_catalog.oid`.
fn is_oid_name(sql_type: &SqlType) -> bool {
    let SqlType::Custom(name, modifiers) = sql_type else {
        return false;
    };
    let schema_ok = match name.0.as_slice() {
        [_] => true,
        [ObjectNamePart::Identifier(schema), _] => schema.value.eq_ignore_ascii_case("pg_catalog"),
        _ => false,
    };
    modifiers.is_empty()
        && schema_ok
        && matches!(name.0.last(), Some(ObjectNamePart::Identifier(id)) if id.value.eq_ignore_ascii_case(kind::OID))
}

/// DataFusion's `array_agg`, keeping an oid argument's tag on its result.
#[derive(Debug, PartialEq, Eq, Hash)]
struct OidArrayAgg {
    inner: UdfEq<Arc<dyn AggregateUDFImpl>>,
}

impl OidArrayAgg {
    fn new(inner: Arc<dyn AggregateUDFImpl>) -> Self {
        Self {
            inner: inner.into(),
        }
    }

    fn wrap(inner: Arc<dyn AggregateUDFImpl>) -> Arc<dyn AggregateUDFImpl> {
        Arc::new(Self::new(inner))
    }
}

// Delegates everything but `return_field`, so that ordering, DISTINCT,
// FILTER and the reversed form behave as DataFusion's own.
#[warn(clippy::missing_trait_methods)]
impl AggregateUDFImpl for OidArrayAgg {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn schema_name(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner.schema_name(params)
    }

    fn human_display(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner.human_display(params)
    }

    fn window_function_schema_name(&self, params: &WindowFunctionParams) -> Result<String> {
        self.inner.window_function_schema_name(params)
    }

    fn display_name(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.inner.display_name(params)
    }

    fn window_function_display_name(&self, params: &WindowFunctionParams) -> Result<String> {
        self.inner.window_function_display_name(params)
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        let field = self.inner.return_field(arg_fields)?;
        let Some(kind) = arg_fields
            .first()
            .and_then(|arg| arg.metadata().get(OID_ALIAS_KEY))
        else {
            return Ok(field);
        };
        let DataType::List(item) = field.data_type() else {
            return Ok(field);
        };
        let mut metadata = item.metadata().clone();
        metadata.insert(OID_ALIAS_KEY.to_owned(), kind.clone());
        let item = Arc::new(item.as_ref().clone().with_metadata(metadata));
        Ok(Arc::new(
            field.as_ref().clone().with_data_type(DataType::List(item)),
        ))
    }

    fn is_nullable(&self) -> bool {
        self.inner.is_nullable()
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let element = oid_element(acc_args.return_field.data_type()).cloned();
        let inner = self.inner.accumulator(acc_args)?;
        Ok(match element {
            Some(element) => Box::new(OidListAccumulator { inner, element }),
            None => inner,
        })
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        self.inner.groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        let element = oid_element(args.return_field.data_type()).cloned();
        let inner = self.inner.create_groups_accumulator(args)?;
        Ok(match element {
            Some(element) => Box::new(OidListGroupsAccumulator { inner, element }),
            None => inner,
        })
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let element = oid_element(args.return_field.data_type()).cloned();
        let inner = self.inner.create_sliding_accumulator(args)?;
        Ok(match element {
            Some(element) => Box::new(OidListAccumulator { inner, element }),
            None => inner,
        })
    }

    fn with_beneficial_ordering(
        self: Arc<Self>,
        beneficial_ordering: bool,
    ) -> Result<Option<Arc<dyn AggregateUDFImpl>>> {
        Ok(Arc::clone(&self.inner)
            .with_beneficial_ordering(beneficial_ordering)?
            .map(Self::wrap))
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.inner.order_sensitivity()
    }

    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        self.inner.simplify()
    }

    fn simplify_expr_op_literal(
        &self,
        agg_function: &AggregateFunction,
        arg: &Expr,
        op: Operator,
        lit: &Expr,
        arg_is_left: bool,
    ) -> Result<Option<Expr>> {
        self.inner
            .simplify_expr_op_literal(agg_function, arg, op, lit, arg_is_left)
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        match self.inner.reverse_expr() {
            ReversedUDAF::Reversed(reversed) => ReversedUDAF::Reversed(Arc::new(
                AggregateUDF::new_from_shared_impl(Self::wrap(Arc::clone(reversed.inner()))),
            )),
            other => other,
        }
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn is_descending(&self) -> Option<bool> {
        self.inner.is_descending()
    }

    fn value_from_stats(&self, statistics_args: &StatisticsArgs) -> Option<ScalarValue> {
        self.inner.value_from_stats(statistics_args)
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        self.inner.default_value(data_type)
    }

    fn supports_null_handling_clause(&self) -> bool {
        self.inner.supports_null_handling_clause()
    }

    fn supports_within_group_clause(&self) -> bool {
        self.inner.supports_within_group_clause()
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        self.inner.set_monotonicity(data_type)
    }
}

/// `list` with `element` as its element field: the same buffers, the
/// data type `return_field` announced.
fn retyped(list: ListArray, element: &FieldRef) -> Result<ListArray> {
    let (_, offsets, values, nulls) = list.into_parts();
    Ok(ListArray::try_new(
        Arc::clone(element),
        offsets,
        values,
        nulls,
    )?)
}

/// An `array_agg` accumulator whose result lists carry the oid tag.
#[derive(Debug)]
struct OidListAccumulator {
    inner: Box<dyn Accumulator>,
    element: FieldRef,
}

impl Accumulator for OidListAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.update_batch(values)
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        match self.inner.evaluate()? {
            ScalarValue::List(list) => Ok(ScalarValue::List(Arc::new(retyped(
                Arc::unwrap_or_clone(list),
                &self.element,
            )?))),
            other => Ok(other),
        }
    }

    fn size(&self) -> usize {
        self.inner.size()
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        self.inner.state()
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.inner.merge_batch(states)
    }

    fn retract_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.inner.retract_batch(values)
    }

    fn supports_retract_batch(&self) -> bool {
        self.inner.supports_retract_batch()
    }
}

/// The grouped form of [`OidListAccumulator`].
struct OidListGroupsAccumulator {
    inner: Box<dyn GroupsAccumulator>,
    element: FieldRef,
}

impl GroupsAccumulator for OidListGroupsAccumulator {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.inner
            .update_batch(values, group_indices, opt_filter, total_num_groups)
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let array = self.inner.evaluate(emit_to)?;
        match array.as_list_opt::<i32>() {
            Some(list) => Ok(Arc::new(retyped(list.clone(), &self.element)?)),
            None => Ok(array),
        }
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        self.inner.state(emit_to)
    }

    fn merge_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.inner
            .merge_batch(values, group_indices, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        self.inner.convert_to_state(values, opt_filter)
    }

    fn size(&self) -> usize {
        self.inner.size()
    }
}
