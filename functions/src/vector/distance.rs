//! Distance functions between vectors: `l2_distance`, `cosine_distance`,
//! `inner_product`, `negative_inner_product` (what `<#>` returns, so smaller
//! is closer as with the other operators) and `l1_distance`. All return
//! `double precision`, NULL when either side is NULL.

use std::sync::Arc;

use datafusion::arrow::array::Float64Builder;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use sluice_types::error::{SluiceError, SqlState};

use super::kernels;
use super::operand::{Operand, is_vector_like, not_a_vector, to_operand, vector_dimension};

/// Which distance a [`VectorDistance`] computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Euclidean distance (`<->`).
    L2,
    /// 1 − cosine similarity (`<=>`).
    Cosine,
    /// Σ aᵢbᵢ.
    InnerProduct,
    /// −Σ aᵢbᵢ (`<#>`).
    NegativeInnerProduct,
    /// Manhattan distance.
    L1,
}

impl Metric {
    /// Every metric.
    pub const ALL: [Metric; 5] = [
        Metric::L2,
        Metric::Cosine,
        Metric::InnerProduct,
        Metric::NegativeInnerProduct,
        Metric::L1,
    ];

    /// The SQL function name.
    pub fn function_name(self) -> &'static str {
        match self {
            Metric::L2 => "l2_distance",
            Metric::Cosine => "cosine_distance",
            Metric::InnerProduct => "inner_product",
            Metric::NegativeInnerProduct => "negative_inner_product",
            Metric::L1 => "l1_distance",
        }
    }

    /// The distance between `a` and `b` (of equal length), as the SQL
    /// function returns it.
    pub fn distance(self, a: &[f32], b: &[f32]) -> f64 {
        match self {
            Metric::L2 => f64::from(kernels::squared_l2(a, b)).sqrt(),
            Metric::Cosine => kernels::cosine_distance(a, b),
            Metric::InnerProduct => f64::from(kernels::dot(a, b)),
            Metric::NegativeInnerProduct => -f64::from(kernels::dot(a, b)),
            Metric::L1 => f64::from(kernels::l1(a, b)),
        }
    }
}

/// `<metric>(vector, vector) → double precision`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorDistance {
    metric: Metric,
    signature: Signature,
}

impl VectorDistance {
    /// The function for `metric`.
    pub fn new(metric: Metric) -> Self {
        Self {
            metric,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

/// The common dimension of two vector arguments (text takes the other's).
pub(super) fn common_dimension(function: &str, types: &[DataType]) -> Result<i32> {
    let [a, b] = types else {
        return Err(DataFusionError::from(SluiceError::new(
            SqlState::UNDEFINED_FUNCTION,
            format!(
                "function {function} takes two vectors, got {} arguments",
                types.len()
            ),
        )));
    };
    for t in [a, b] {
        if !is_vector_like(t) {
            return Err(not_a_vector(function, t));
        }
    }
    match (vector_dimension(a), vector_dimension(b)) {
        (Some(x), Some(y)) if x != y => Err(DataFusionError::Plan(format!(
            "different vector dimensions {x} and {y}"
        ))),
        (Some(x), _) | (_, Some(x)) => Ok(x),
        (None, None) => Err(DataFusionError::Plan(format!(
            "function {function} needs at least one argument of type vector; cast text with ::vector(n)"
        ))),
    }
}

impl ScalarUDFImpl for VectorDistance {
    fn name(&self) -> &str {
        self.metric.function_name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        common_dimension(self.name(), arg_types)?;
        // No casts: text is parsed by the function itself (Arrow cannot cast
        // text to a vector).
        Ok(arg_types.to_vec())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let types: Vec<DataType> = args.args.iter().map(ColumnarValue::data_type).collect();
        let dim = common_dimension(self.name(), &types)?;
        let rows = args.number_rows;
        let [a, b] = <[ColumnarValue; 2]>::try_from(args.args)
            .map_err(|_| DataFusionError::Internal("distance takes two arguments".into()))?;
        let (a, b) = (to_operand(a, dim)?, to_operand(b, dim)?);
        if let (Operand::Constant(x), Operand::Constant(y)) = (&a, &b) {
            let value = match (x, y) {
                (Some(x), Some(y)) => Some(self.metric.distance(x, y)),
                _ => None,
            };
            return Ok(ColumnarValue::Scalar(ScalarValue::Float64(value)));
        }
        let mut out = Float64Builder::with_capacity(rows);
        for row in 0..rows {
            match (a.get(row), b.get(row)) {
                (Some(x), Some(y)) => out.append_value(self.metric.distance(x, y)),
                _ => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
