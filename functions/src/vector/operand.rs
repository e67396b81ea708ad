//! Arguments of vector functions: a column of vectors, or one constant
//! vector for every row (the query vector of a search), read without
//! copying. Text arguments (`'[1,2,3]'`) are parsed as vectors of the other
//! argument's dimension, as pgvector reads an untyped literal.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, FixedSizeListArray};
use datafusion::arrow::datatypes::{DataType, Float32Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ColumnarValue;
use sluice_types::SluiceType;
use sluice_types::text::parse_array;

/// One argument, ready for the kernels.
pub enum Operand {
    /// One vector per row.
    Column(FixedSizeListArray),
    /// The same vector for every row; `None` is NULL.
    Constant(Option<Vec<f32>>),
}

impl Operand {
    /// The vector at `row`, or `None` for NULL.
    pub fn get(&self, row: usize) -> Option<&[f32]> {
        match self {
            Operand::Column(list) => {
                if list.is_null(row) {
                    return None;
                }
                let width = usize::try_from(list.value_length()).ok()?;
                let values = list.values().as_primitive::<Float32Type>().values();
                let start = (list.offset() + row) * width;
                values.get(start..start + width)
            }
            Operand::Constant(v) => v.as_deref(),
        }
    }
}

/// The dimension of a vector-typed argument, `None` for text or NULL.
pub fn vector_dimension(data_type: &DataType) -> Option<i32> {
    match data_type {
        DataType::FixedSizeList(item, dim) if item.data_type() == &DataType::Float32 => Some(*dim),
        _ => None,
    }
}

/// Whether an argument type is accepted where a vector is expected.
pub fn is_vector_like(data_type: &DataType) -> bool {
    vector_dimension(data_type).is_some()
        || matches!(
            data_type,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
        )
}

/// The type error for a non-vector argument.
pub fn not_a_vector(function: &str, data_type: &DataType) -> DataFusionError {
    DataFusionError::Plan(format!(
        "function {function} does not support type {data_type}; it takes vectors"
    ))
}

/// Reads an argument as vectors of dimension `dim`.
pub fn to_operand(value: ColumnarValue, dim: i32) -> Result<Operand> {
    let ty = SluiceType::Vector(dim);
    match value {
        ColumnarValue::Array(array) => {
            let array = if vector_dimension(array.data_type()).is_some() {
                array
            } else {
                parse_array(ty, array.as_ref())?
            };
            let list = array.as_fixed_size_list_opt().ok_or_else(|| {
                DataFusionError::Internal(format!("vector argument of type {}", array.data_type()))
            })?;
            Ok(Operand::Column(list.clone()))
        }
        ColumnarValue::Scalar(scalar) => {
            if scalar.is_null() {
                return Ok(Operand::Constant(None));
            }
            let array = match &scalar {
                ScalarValue::FixedSizeList(list) => Arc::clone(list) as _,
                other => parse_array(ty, other.to_array_of_size(1)?.as_ref())?,
            };
            let list = array.as_fixed_size_list_opt().ok_or_else(|| {
                DataFusionError::Internal(format!("vector argument of type {}", array.data_type()))
            })?;
            let column = Operand::Column(list.clone());
            Ok(Operand::Constant(column.get(0).map(<[f32]>::to_vec)))
        }
    }
}
