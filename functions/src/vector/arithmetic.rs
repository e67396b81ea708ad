//! Element-wise `+`, `-` and `*` between vectors of one dimension
//! (pgvector's operators), and `l2_normalize(vector)`. Results are vectors
//! of the same dimension; an overflow to ±Inf is an error, as in pgvector.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use sluice_types::SluiceType;
use sluice_types::error::{SluiceError, SqlState};
use sluice_types::vector::{check_finite, vector_array};

use super::distance::common_dimension;
use super::kernels;
use super::operand::{Operand, not_a_vector, to_operand, vector_dimension};

/// An element-wise operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ElementOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Subtract,
    /// `a * b` (element-wise, not a dot product).
    Multiply,
    /// `l2_normalize(a)`: `a / ‖a‖` (a zero vector stays zero).
    Normalize,
}

impl ElementOp {
    fn name(self) -> &'static str {
        match self {
            ElementOp::Add => "vector_add",
            ElementOp::Subtract => "vector_sub",
            ElementOp::Multiply => "vector_mul",
            ElementOp::Normalize => "l2_normalize",
        }
    }

    fn arity(self) -> usize {
        if self == ElementOp::Normalize { 1 } else { 2 }
    }
}

/// A vector-valued element-wise function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorElementwise {
    op: ElementOp,
    signature: Signature,
}

impl VectorElementwise {
    /// The function for `op`.
    pub fn new(op: ElementOp) -> Self {
        Self {
            op,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }

    fn dimension(&self, types: &[DataType]) -> Result<i32> {
        if self.op.arity() == 2 {
            return common_dimension(self.name(), types);
        }
        match types {
            [t] => vector_dimension(t).ok_or_else(|| not_a_vector(self.name(), t)),
            _ => Err(DataFusionError::from(SluiceError::new(
                SqlState::UNDEFINED_FUNCTION,
                format!("function {} takes one vector", self.name()),
            ))),
        }
    }
}

impl ScalarUDFImpl for VectorElementwise {
    fn name(&self) -> &str {
        self.op.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.dimension(arg_types)?;
        Ok(arg_types.to_vec())
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(SluiceType::Vector(self.dimension(arg_types)?).storage_type())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let types: Vec<DataType> = args
            .arg_fields
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let dim = self.dimension(&types)?;
        Ok(Arc::new(SluiceType::Vector(dim).field(self.name(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let types: Vec<DataType> = args.args.iter().map(ColumnarValue::data_type).collect();
        let dim = self.dimension(&types)?;
        let width =
            usize::try_from(dim).map_err(|_| DataFusionError::Internal("dimension".into()))?;
        let rows = args.number_rows;
        let operands = args
            .args
            .into_iter()
            .map(|a| to_operand(a, dim))
            .collect::<Result<Vec<Operand>>>()?;
        let mut values = Vec::with_capacity(rows * width);
        let mut valid = Vec::with_capacity(rows);
        for row in 0..rows {
            let inputs: Option<Vec<&[f32]>> = operands.iter().map(|o| o.get(row)).collect();
            match inputs {
                Some(inputs) => {
                    let start = values.len();
                    self.apply(&inputs, &mut values);
                    check_finite(&values[start..])?;
                    valid.push(true);
                }
                None => {
                    values.extend(std::iter::repeat_n(0.0, width));
                    valid.push(false);
                }
            }
        }
        Ok(ColumnarValue::Array(vector_array(dim, values, valid)?))
    }
}

impl VectorElementwise {
    fn apply(&self, inputs: &[&[f32]], out: &mut Vec<f32>) {
        match (self.op, inputs) {
            (ElementOp::Add, [a, b]) => out.extend(a.iter().zip(*b).map(|(x, y)| x + y)),
            (ElementOp::Subtract, [a, b]) => out.extend(a.iter().zip(*b).map(|(x, y)| x - y)),
            (ElementOp::Multiply, [a, b]) => out.extend(a.iter().zip(*b).map(|(x, y)| x * y)),
            (ElementOp::Normalize, [a]) => {
                let norm = kernels::dot(a, a).sqrt();
                if norm > 0.0 {
                    out.extend(a.iter().map(|x| x / norm));
                } else {
                    out.extend_from_slice(a);
                }
            }
            // Arity is checked by `dimension` before any row is computed.
            _ => {}
        }
    }
}
