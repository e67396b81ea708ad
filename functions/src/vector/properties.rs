//! `vector_dims(vector) → integer` and `vector_norm(vector) → double
//! precision` (Euclidean norm), as in pgvector.

use std::sync::Arc;

use datafusion::arrow::array::{Float64Builder, Int32Builder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use sluice_types::error::{SluiceError, SqlState};

use super::kernels;
use super::operand::{Operand, not_a_vector, to_operand, vector_dimension};

/// What a [`VectorProperty`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Property {
    /// The number of dimensions.
    Dims,
    /// The Euclidean norm.
    Norm,
}

/// `vector_dims` / `vector_norm`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VectorProperty {
    property: Property,
    signature: Signature,
}

impl VectorProperty {
    /// The function for `property`.
    pub fn new(property: Property) -> Self {
        Self {
            property,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for VectorProperty {
    fn name(&self) -> &str {
        match self.property {
            Property::Dims => "vector_dims",
            Property::Norm => "vector_norm",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [t] if vector_dimension(t).is_some() || t == &DataType::Null => Ok(arg_types.to_vec()),
            [t] => Err(not_a_vector(self.name(), t)),
            _ => Err(DataFusionError::from(SluiceError::new(
                SqlState::UNDEFINED_FUNCTION,
                format!("function {} takes one vector", self.name()),
            ))),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.property {
            Property::Dims => DataType::Int32,
            Property::Norm => DataType::Float64,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [arg] = <[ColumnarValue; 1]>::try_from(args.args)
            .map_err(|_| DataFusionError::Internal("one argument expected".into()))?;
        let Some(dim) = vector_dimension(&arg.data_type()) else {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from(
                self.return_type(&[])?,
            )?));
        };
        let operand = to_operand(arg, dim)?;
        let norm = |v: &[f32]| f64::from(kernels::dot(v, v)).sqrt();
        match (self.property, &operand) {
            (Property::Dims, Operand::Constant(v)) => Ok(ColumnarValue::Scalar(
                ScalarValue::Int32(v.as_ref().map(|_| dim)),
            )),
            (Property::Norm, Operand::Constant(v)) => Ok(ColumnarValue::Scalar(
                ScalarValue::Float64(v.as_deref().map(norm)),
            )),
            (Property::Dims, Operand::Column(_)) => {
                let mut out = Int32Builder::with_capacity(rows);
                for row in 0..rows {
                    out.append_option(operand.get(row).map(|_| dim));
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish())))
            }
            (Property::Norm, Operand::Column(_)) => {
                let mut out = Float64Builder::with_capacity(rows);
                for row in 0..rows {
                    out.append_option(operand.get(row).map(norm));
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish())))
            }
        }
    }
}
