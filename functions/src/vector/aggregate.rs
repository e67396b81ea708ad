//! `sum(vector)` and `avg(vector)`, element-wise as in pgvector, under the
//! names users write.
//!
//! DataFusion's `sum` and `avg` reject lists while the SQL is planned (before
//! any analyzer rule could redirect the call), so [`VectorAwareAggregate`]
//! takes their place: vector arguments get a vector accumulator, every other
//! argument goes to DataFusion's own function through every method of the
//! trait (types, accumulators, grouped accumulators, statistics), so numeric
//! `sum`/`avg` behave and perform exactly as before.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, Float64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float32Type, Float64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::{
    AggregateFunction, AggregateFunctionParams, WindowFunctionParams,
};
use datafusion::logical_expr::function::{
    AccumulatorArgs, AggregateFunctionSimplification, StateFieldsArgs,
};
use datafusion::logical_expr::type_coercion::functions::fields_with_udf;
use datafusion::logical_expr::utils::AggregateOrderSensitivity;
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, Expr, GroupsAccumulator, Operator,
    ReversedUDAF, SetMonotonicity, Signature, StatisticsArgs, Volatility,
};
use sluice_types::SluiceType;

/// Which aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VectorAggregateKind {
    /// Element-wise sum.
    Sum,
    /// Element-wise mean.
    Avg,
}

/// DataFusion's `sum`/`avg`, extended to vectors. See the module docs.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorAwareAggregate {
    kind: VectorAggregateKind,
    builtin: Arc<AggregateUDF>,
    signature: Signature,
}

impl VectorAwareAggregate {
    /// Wraps DataFusion's function `builtin` (its `sum` or `avg`).
    pub fn new(kind: VectorAggregateKind, builtin: Arc<AggregateUDF>) -> Self {
        Self {
            kind,
            builtin,
            // Coercion is the built-in's, except for vectors (coerce_types).
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The dimension of a vector argument.
fn vector_dimension(data_type: &DataType) -> Option<i32> {
    match data_type {
        DataType::FixedSizeList(item, dim) if item.data_type() == &DataType::Float32 => Some(*dim),
        _ => None,
    }
}

fn first_vector(fields: &[FieldRef]) -> Option<i32> {
    fields.first().and_then(|f| vector_dimension(f.data_type()))
}

impl AggregateUDFImpl for VectorAwareAggregate {
    fn name(&self) -> &str {
        self.builtin.name()
    }

    fn aliases(&self) -> &[String] {
        self.builtin.aliases()
    }

    fn schema_name(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.builtin.inner().schema_name(params)
    }

    fn human_display(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.builtin.inner().human_display(params)
    }

    fn window_function_schema_name(&self, params: &WindowFunctionParams) -> Result<String> {
        self.builtin.inner().window_function_schema_name(params)
    }

    fn display_name(&self, params: &AggregateFunctionParams) -> Result<String> {
        self.builtin.inner().display_name(params)
    }

    fn window_function_display_name(&self, params: &WindowFunctionParams) -> Result<String> {
        self.builtin.inner().window_function_display_name(params)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [t] if vector_dimension(t).is_some() => Ok(arg_types.to_vec()),
            // The built-in's own coercion, from its signature.
            _ => {
                let fields: Vec<FieldRef> = arg_types
                    .iter()
                    .map(|t| Arc::new(Field::new("", t.clone(), true)))
                    .collect();
                Ok(fields_with_udf(&fields, self.builtin.as_ref())?
                    .iter()
                    .map(|f| f.data_type().clone())
                    .collect())
            }
        }
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first().and_then(vector_dimension) {
            Some(dim) => Ok(SluiceType::Vector(dim).storage_type()),
            None => self.builtin.return_type(arg_types),
        }
    }

    fn return_field(&self, arg_fields: &[FieldRef]) -> Result<FieldRef> {
        match first_vector(arg_fields) {
            Some(dim) => Ok(Arc::new(SluiceType::Vector(dim).field(self.name(), true))),
            None => self.builtin.inner().return_field(arg_fields),
        }
    }

    fn is_nullable(&self) -> bool {
        self.builtin.inner().is_nullable()
    }

    fn accumulator(&self, acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match first_vector(acc_args.expr_fields) {
            Some(dim) => {
                if acc_args.is_distinct {
                    return Err(DataFusionError::NotImplemented(format!(
                        "{}(DISTINCT vector) is not supported",
                        self.name()
                    )));
                }
                Ok(Box::new(VectorAccumulator::new(self.kind, dim)?))
            }
            None => self.builtin.inner().accumulator(acc_args),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        match first_vector(args.input_fields) {
            Some(dim) => Ok(vec![
                Arc::new(Field::new(
                    format!("{}[sum]", args.name),
                    DataType::FixedSizeList(
                        Arc::new(Field::new_list_field(DataType::Float64, true)),
                        dim,
                    ),
                    true,
                )),
                Arc::new(Field::new(
                    format!("{}[count]", args.name),
                    DataType::Int64,
                    true,
                )),
            ]),
            None => self.builtin.inner().state_fields(args),
        }
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        first_vector(args.expr_fields).is_none()
            && self.builtin.inner().groups_accumulator_supported(args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        self.builtin.inner().create_groups_accumulator(args)
    }

    fn create_sliding_accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        match first_vector(args.expr_fields) {
            Some(_) => Err(DataFusionError::NotImplemented(format!(
                "{}(vector) as a sliding window function is not supported",
                self.name()
            ))),
            None => self.builtin.inner().create_sliding_accumulator(args),
        }
    }

    fn with_beneficial_ordering(
        self: Arc<Self>,
        beneficial_ordering: bool,
    ) -> Result<Option<Arc<dyn AggregateUDFImpl>>> {
        // Neither sum nor avg depends on order.
        let _ = beneficial_ordering;
        Ok(Some(self))
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        self.builtin.inner().order_sensitivity()
    }

    fn simplify(&self) -> Option<AggregateFunctionSimplification> {
        self.builtin.inner().simplify()
    }

    fn simplify_expr_op_literal(
        &self,
        agg_function: &AggregateFunction,
        arg: &Expr,
        op: Operator,
        lit: &Expr,
        arg_is_left: bool,
    ) -> Result<Option<Expr>> {
        self.builtin
            .inner()
            .simplify_expr_op_literal(agg_function, arg, op, lit, arg_is_left)
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        ReversedUDAF::Identical
    }

    fn is_descending(&self) -> Option<bool> {
        self.builtin.inner().is_descending()
    }

    fn value_from_stats(&self, statistics_args: &StatisticsArgs) -> Option<ScalarValue> {
        self.builtin.inner().value_from_stats(statistics_args)
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        match vector_dimension(data_type) {
            Some(_) => ScalarValue::try_from(data_type),
            None => self.builtin.inner().default_value(data_type),
        }
    }

    fn supports_null_handling_clause(&self) -> bool {
        self.builtin.inner().supports_null_handling_clause()
    }

    fn supports_within_group_clause(&self) -> bool {
        self.builtin.inner().supports_within_group_clause()
    }

    fn set_monotonicity(&self, data_type: &DataType) -> SetMonotonicity {
        match vector_dimension(data_type) {
            Some(_) => SetMonotonicity::NotMonotonic,
            None => self.builtin.inner().set_monotonicity(data_type),
        }
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.builtin.inner().documentation()
    }
}

/// Sums vectors element-wise in f64 (so a long sum of float32 vectors does
/// not drift) and counts them; NULL vectors are skipped, as NULLs are by
/// every SQL aggregate.
#[derive(Debug)]
struct VectorAccumulator {
    kind: VectorAggregateKind,
    dim: usize,
    sum: Vec<f64>,
    count: i64,
}

impl VectorAccumulator {
    fn new(kind: VectorAggregateKind, dim: i32) -> Result<Self> {
        let dim = usize::try_from(dim)
            .map_err(|_| DataFusionError::Internal(format!("vector dimension {dim}")))?;
        Ok(Self {
            kind,
            dim,
            sum: vec![0.0; dim],
            count: 0,
        })
    }

    fn add_row(&mut self, values: &[f64], weight: i64) {
        for (total, v) in self.sum.iter_mut().zip(values) {
            *total += v;
        }
        self.count += weight;
    }
}

fn fixed_list<'a>(array: &'a ArrayRef, what: &str) -> Result<&'a FixedSizeListArray> {
    array
        .as_fixed_size_list_opt()
        .ok_or_else(|| DataFusionError::Internal(format!("{what} is not a vector")))
}

impl Accumulator for VectorAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(vectors) = values.first() else {
            return Ok(());
        };
        let list = fixed_list(vectors, "sum/avg input")?;
        let items = list
            .values()
            .as_primitive_opt::<Float32Type>()
            .ok_or_else(|| DataFusionError::Internal("vector items are not float32".into()))?
            .values();
        let mut row = vec![0.0; self.dim];
        for i in 0..list.len() {
            if list.is_null(i) {
                continue;
            }
            let start = i * self.dim;
            for (slot, v) in row.iter_mut().zip(&items[start..start + self.dim]) {
                *slot = f64::from(*v);
            }
            self.add_row(&row, 1);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let (Some(sums), Some(counts)) = (states.first(), states.get(1)) else {
            return Err(DataFusionError::Internal("vector aggregate state".into()));
        };
        let sums = fixed_list(sums, "sum state")?;
        let items = sums
            .values()
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(|| DataFusionError::Internal("vector sum state not float64".into()))?
            .values()
            .to_vec();
        let counts = counts
            .as_primitive_opt::<datafusion::arrow::datatypes::Int64Type>()
            .ok_or_else(|| DataFusionError::Internal("vector count state not int64".into()))?;
        for i in 0..sums.len() {
            if sums.is_null(i) || counts.is_null(i) {
                continue;
            }
            let start = i * self.dim;
            self.add_row(&items[start..start + self.dim], counts.value(i));
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let sums = FixedSizeListArray::try_new(
            Arc::new(Field::new_list_field(DataType::Float64, true)),
            self.dim as i32,
            Arc::new(Float64Array::from(self.sum.clone())),
            None,
        )?;
        Ok(vec![
            ScalarValue::FixedSizeList(Arc::new(sums)),
            ScalarValue::Int64(Some(self.count)),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.count == 0 {
            return ScalarValue::try_from(&SluiceType::Vector(self.dim as i32).storage_type());
        }
        let divisor = match self.kind {
            VectorAggregateKind::Sum => 1.0,
            VectorAggregateKind::Avg => self.count as f64,
        };
        let values: Vec<f32> = self.sum.iter().map(|s| (s / divisor) as f32).collect();
        // pgvector refuses a sum that overflows float4.
        sluice_types::vector::check_finite(&values)?;
        let array = sluice_types::vector::vector_array(self.dim as i32, values, vec![true])?;
        ScalarValue::try_from_array(&array, 0)
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.sum.capacity() * std::mem::size_of::<f64>()
    }
}
