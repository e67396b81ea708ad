//! Tensor functions: `tensor_shape(t)` (an integer array),
//! `tensor_reshape(t, ARRAY[d1, …])` (a variable-shape tensor of the same
//! elements; one dimension may be -1 as in numpy) and `tensor_get(t, i1, i2, …)` (one element, indexes from 0 as in
//! numpy and ONNX). Casts from nested arrays are casts
//! (`ARRAY[[1,2],[3,4]]::TENSOR(FLOAT, [2,2])`, see `sluice_types`).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Builder, Int64Builder, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Int64Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use sluice_types::SluiceType;
use sluice_types::error::{SluiceError, SqlState};
use sluice_types::tensor::{
    TensorElement, TensorShape, TensorValue, elements_of, format_shape, tensor_array, tensor_at,
};

/// Which tensor function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Operation {
    Shape,
    Reshape,
    Get,
}

/// One tensor function.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TensorFunction {
    operation: Operation,
    signature: Signature,
}

fn tensor_type(function: &str, field: &Field) -> Result<(TensorElement, Option<TensorShape>)> {
    match SluiceType::of_field(field) {
        Some(SluiceType::Tensor(elem, shape)) => Ok((elem, shape)),
        // An untyped NULL: the result is NULL.
        None if field.data_type() == &DataType::Null => Ok((TensorElement::Float32, None)),
        found => Err(DataFusionError::from(SluiceError::new(
            SqlState::UNDEFINED_FUNCTION,
            format!(
                "function {function} takes a tensor, not {}",
                found.map_or_else(|| field.data_type().to_string(), |t| t.type_name())
            ),
        ))),
    }
}

impl ScalarUDFImpl for TensorFunction {
    fn name(&self) -> &str {
        match self.operation {
            Operation::Shape => "tensor_shape",
            Operation::Reshape => "tensor_reshape",
            Operation::Get => "tensor_get",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Err(DataFusionError::Internal(format!(
            "{} reports its type through return_field_from_args",
            self.name()
        )))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let name = self.name();
        let Some(source) = args.arg_fields.first() else {
            return Err(DataFusionError::from(SluiceError::new(
                SqlState::UNDEFINED_FUNCTION,
                format!("function {name} takes a tensor"),
            )));
        };
        let (elem, _) = tensor_type(name, source)?;
        let field = match self.operation {
            Operation::Shape => Field::new(
                name,
                DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true))),
                true,
            ),
            Operation::Reshape => {
                if args.arg_fields.len() != 2 {
                    return Err(DataFusionError::Plan(
                        "function tensor_reshape takes (tensor, ARRAY[d1, d2, …])".into(),
                    ));
                }
                // Always of variable shape: the shape argument becomes a
                // constant only after constant folding, and a result type
                // that changes between planning passes breaks the plan.
                // Cast the result for a fixed shape.
                SluiceType::Tensor(elem, None).field(name, true)
            }
            Operation::Get => {
                if args.arg_fields.len() < 2
                    || !args.arg_fields[1..]
                        .iter()
                        .all(|f| f.data_type().is_integer() || f.data_type() == &DataType::Null)
                {
                    return Err(DataFusionError::Plan(
                        "function tensor_get takes (tensor, i1, i2, …) with integer indexes".into(),
                    ));
                }
                let returns = if elem == TensorElement::Int64 {
                    DataType::Int64
                } else {
                    DataType::Float64
                };
                Field::new(name, returns, true)
            }
        };
        Ok(Arc::new(field))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let (elem, shape) = tensor_type(self.name(), &args.arg_fields[0])?;
        let arrays: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<_>>()?;
        let tensors = arrays[0].as_ref();
        if tensors.data_type() == &DataType::Null {
            return Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_null_array(args.return_field.data_type(), rows),
            ));
        }
        let result: ArrayRef = match self.operation {
            Operation::Shape => {
                let mut dims = Vec::new();
                let mut lengths = Vec::with_capacity(rows);
                for row in 0..rows {
                    if tensors.is_null(row) {
                        lengths.push(0);
                        continue;
                    }
                    let (shape, _) = tensor_at(tensors, shape, row)?;
                    lengths.push(shape.len());
                    for d in shape {
                        dims.push(i32::try_from(d).unwrap_or(i32::MAX));
                    }
                }
                Arc::new(ListArray::try_new(
                    Arc::new(Field::new_list_field(DataType::Int32, true)),
                    OffsetBuffer::from_lengths(lengths),
                    Arc::new(datafusion::arrow::array::Int32Array::from(dims)),
                    tensors.logical_nulls(),
                )?)
            }
            Operation::Reshape => {
                let shapes = arrays[1].as_ref();
                let mut out = Vec::with_capacity(rows);
                for row in 0..rows {
                    if tensors.is_null(row) || shapes.is_null(row) {
                        out.push(None);
                        continue;
                    }
                    let (_, elements) = tensor_at(tensors, shape, row)?;
                    let wanted = shape_at(shapes, row)?;
                    out.push(Some(TensorValue {
                        shape: resolve_shape(&wanted, elements.len())?,
                        elements: elements_of(elements.as_ref(), elem)?,
                    }));
                }
                tensor_array(elem, None, &out)?
            }
            Operation::Get => {
                let indexes: Vec<Vec<Option<i64>>> = arrays[1..]
                    .iter()
                    .map(|a| {
                        let ints = cast(a.as_ref(), &DataType::Int64)?;
                        Ok(ints.as_primitive::<Int64Type>().iter().collect())
                    })
                    .collect::<Result<_>>()?;
                let mut floats = Float64Builder::with_capacity(rows);
                let mut ints = Int64Builder::with_capacity(rows);
                for row in 0..rows {
                    let position: Option<Vec<i64>> = indexes.iter().map(|i| i[row]).collect();
                    let value = match (tensors.is_null(row), position) {
                        (false, Some(position)) => {
                            let (dims, elements) = tensor_at(tensors, shape, row)?;
                            let offset = flat_offset(&dims, &position)?;
                            Some(elements_of(&elements.slice(offset, 1), elem)?)
                        }
                        _ => None,
                    };
                    match value {
                        Some(sluice_types::tensor::Elements::Int(v)) => {
                            ints.append_option(v.first().copied())
                        }
                        Some(sluice_types::tensor::Elements::Float(v)) => {
                            floats.append_option(v.first().copied())
                        }
                        None => {
                            ints.append_null();
                            floats.append_null();
                        }
                    }
                }
                if elem == TensorElement::Int64 {
                    Arc::new(ints.finish())
                } else {
                    Arc::new(floats.finish())
                }
            }
        };
        Ok(ColumnarValue::Array(result))
    }
}

/// The shape array at `row` (an integer array).
fn shape_at(array: &dyn Array, row: usize) -> Result<Vec<i64>> {
    let values = match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().value(row),
        DataType::LargeList(_) => array.as_list::<i64>().value(row),
        DataType::FixedSizeList(..) => array.as_fixed_size_list().value(row),
        other => {
            return Err(DataFusionError::Plan(format!(
                "tensor_reshape takes its shape as an integer array, not {other}"
            )));
        }
    };
    if !values.data_type().is_integer() || values.null_count() > 0 {
        return Err(DataFusionError::Plan(
            "tensor_reshape takes its shape as an array of integers".into(),
        ));
    }
    let ints = cast(values.as_ref(), &DataType::Int64)?;
    Ok(ints.as_primitive::<Int64Type>().values().to_vec())
}

/// The shape `wanted` gives `len` elements, with one -1 inferred.
fn resolve_shape(wanted: &[i64], len: usize) -> Result<Vec<usize>> {
    let shown = format!("{wanted:?}");
    let mismatch = || {
        DataFusionError::from(SluiceError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("cannot reshape a tensor of {len} elements to {shown}"),
        ))
    };
    let inferred = wanted.iter().filter(|d| **d == -1).count();
    if inferred > 1 || wanted.iter().any(|d| *d == 0 || *d < -1) || wanted.is_empty() {
        return Err(DataFusionError::from(SluiceError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("invalid tensor shape {shown}: dimensions are positive, with at most one -1"),
        )));
    }
    let known: usize = wanted
        .iter()
        .filter(|d| **d > 0)
        .try_fold(1usize, |acc, d| acc.checked_mul(*d as usize))
        .ok_or_else(mismatch)?;
    let dims: Vec<usize> = wanted
        .iter()
        .map(|d| {
            if *d == -1 {
                if known == 0 || !len.is_multiple_of(known) {
                    Err(mismatch())
                } else {
                    Ok(len / known)
                }
            } else {
                Ok(*d as usize)
            }
        })
        .collect::<Result<_>>()?;
    if dims.iter().product::<usize>() != len {
        return Err(mismatch());
    }
    TensorShape::try_new(&dims)?;
    Ok(dims)
}

/// The row-major offset of `position` in a tensor of `dims`.
fn flat_offset(dims: &[usize], position: &[i64]) -> Result<usize> {
    if dims.len() != position.len() {
        return Err(DataFusionError::Execution(format!(
            "tensor_get: a tensor of shape {} takes {} indexes, not {}",
            format_shape(dims),
            dims.len(),
            position.len()
        )));
    }
    let mut offset = 0usize;
    for (d, i) in dims.iter().zip(position) {
        let i = usize::try_from(*i).ok().filter(|i| i < d).ok_or_else(|| {
            DataFusionError::from(SluiceError::new(
                SqlState::ARRAY_SUBSCRIPT_ERROR,
                format!(
                    "tensor_get: index {position:?} is out of bounds for shape {}",
                    format_shape(dims)
                ),
            ))
        })?;
        offset = offset * d + i;
    }
    Ok(offset)
}

/// Registers the tensor functions.
pub fn register(ctx: &SessionContext) {
    for operation in [Operation::Shape, Operation::Reshape, Operation::Get] {
        crate::register_replacing(
            ctx,
            ScalarUDF::new_from_impl(TensorFunction {
                operation,
                signature: Signature::variadic_any(Volatility::Immutable),
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_resolve_like_numpy() {
        assert_eq!(resolve_shape(&[2, -1], 6).unwrap(), vec![2, 3]);
        assert_eq!(resolve_shape(&[6], 6).unwrap(), vec![6]);
        assert!(resolve_shape(&[4, -1], 6).is_err());
        assert!(resolve_shape(&[-1, -1], 6).is_err());
        assert!(resolve_shape(&[2, 2], 6).is_err());
        assert!(resolve_shape(&[0, 6], 6).is_err());
    }

    #[test]
    fn offsets_are_row_major_and_bounded() {
        assert_eq!(flat_offset(&[2, 3], &[1, 2]).unwrap(), 5);
        assert!(flat_offset(&[2, 3], &[2, 0]).is_err());
        assert!(flat_offset(&[2, 3], &[-1, 0]).is_err());
        assert!(flat_offset(&[2, 3], &[1]).is_err());
    }
}
