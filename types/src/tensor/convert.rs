//! Conversions into tensors from nested lists and numeric arrays.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, new_null_array};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::error::{DataFusionError, Result};

use super::{
    Elements, MAX_TENSOR_RANK, TensorElement, TensorShape, TensorValue, check_fits, tensor_array,
    tensor_at,
};

/// Converts `array` into `TENSOR(elem[, shape])` storage. `source_shape`
/// is `Some` when `array` already holds tensors (of that fixed shape, or
/// variable); otherwise `array` holds nested arrays (or vectors) whose
/// nesting gives the shape.
pub fn convert_to_tensor(
    array: &dyn Array,
    source_shape: Option<Option<TensorShape>>,
    elem: TensorElement,
    shape: Option<TensorShape>,
) -> Result<ArrayRef> {
    let mut rows = Vec::with_capacity(array.len());
    for idx in 0..array.len() {
        if array.is_null(idx) {
            rows.push(None);
            continue;
        }
        let (dims, leaves) = match source_shape {
            Some(source_shape) => tensor_at(array, source_shape, idx)?,
            None => nested_at(array, idx)?,
        };
        rows.push(Some(TensorValue {
            shape: dims,
            elements: elements_of(leaves.as_ref(), elem)?,
        }));
    }
    tensor_array(elem, shape, &rows)
}

/// The shape and leaf values of the nested array at `idx`.
fn nested_at(array: &dyn Array, idx: usize) -> Result<(Vec<usize>, ArrayRef)> {
    let mut shape = Vec::new();
    let mut leaves = Vec::new();
    collect_nested(list_item(array, idx)?.as_ref(), 0, &mut shape, &mut leaves)?;
    if shape.contains(&0) {
        return Err(DataFusionError::Execution(
            "a tensor dimension is empty".into(),
        ));
    }
    let leaves: Vec<&dyn Array> = leaves.iter().map(|a| a.as_ref()).collect();
    let flat = if leaves.is_empty() {
        new_null_array(&DataType::Float64, 0)
    } else {
        datafusion::arrow::compute::concat(&leaves)?
    };
    Ok((shape, flat))
}

fn list_item(array: &dyn Array, idx: usize) -> Result<ArrayRef> {
    Ok(match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().value(idx),
        DataType::LargeList(_) => array.as_list::<i64>().value(idx),
        DataType::FixedSizeList(..) => array.as_fixed_size_list().value(idx),
        other => {
            return Err(DataFusionError::Plan(format!(
                "cannot make a tensor from {other}: expected nested arrays"
            )));
        }
    })
}

fn collect_nested(
    level: &dyn Array,
    depth: usize,
    shape: &mut Vec<usize>,
    leaves: &mut Vec<ArrayRef>,
) -> Result<()> {
    if depth >= MAX_TENSOR_RANK {
        return Err(DataFusionError::Execution(format!(
            "a tensor has at most {MAX_TENSOR_RANK} dimensions"
        )));
    }
    match shape.get(depth) {
        Some(&len) if len != level.len() => {
            return Err(DataFusionError::Execution(
                "cannot make a tensor from arrays that are not rectangular".into(),
            ));
        }
        Some(_) => {}
        None => shape.push(level.len()),
    }
    if level.null_count() > 0 {
        return Err(DataFusionError::Execution(
            "tensor elements cannot be NULL".into(),
        ));
    }
    if level.data_type().is_nested() {
        for i in 0..level.len() {
            collect_nested(list_item(level, i)?.as_ref(), depth + 1, shape, leaves)?;
        }
    } else {
        if shape.len() != depth + 1 {
            return Err(DataFusionError::Execution(
                "cannot make a tensor from arrays that are not rectangular".into(),
            ));
        }
        leaves.push(datafusion::arrow::array::make_array(level.to_data()));
    }
    Ok(())
}

/// The elements of `values` (any numeric array) for a tensor of `elem`,
/// each checked to fit.
pub fn elements_of(values: &dyn Array, elem: TensorElement) -> Result<Elements> {
    use datafusion::arrow::compute::cast;
    if elem == TensorElement::Int64 {
        let ints = cast(values, &DataType::Int64)?;
        if ints.null_count() > values.null_count() {
            return Err(DataFusionError::Execution(
                "a tensor element does not fit int64".into(),
            ));
        }
        return Ok(Elements::Int(
            ints.as_primitive::<Int64Type>().values().to_vec(),
        ));
    }
    if !values.data_type().is_numeric() {
        return Err(DataFusionError::Execution(format!(
            "cannot make a tensor of {} elements",
            values.data_type()
        )));
    }
    let floats = cast(values, &DataType::Float64)?;
    let floats = floats.as_primitive::<Float64Type>().values().to_vec();
    for v in &floats {
        check_fits(*v, elem).map_err(DataFusionError::Execution)?;
    }
    Ok(Elements::Float(floats))
}
