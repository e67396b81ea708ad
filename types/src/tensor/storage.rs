//! How tensors are stored in Arrow: fixed-shape as Arrow's canonical
//! `arrow.fixed_shape_tensor`, variable-shape as `Struct{data, shape}`;
//! building storage from values and reading values back.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, FixedSizeListArray, Int32Array, ListArray, PrimitiveArray,
    StructArray,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{
    ArrowPrimitiveType, DataType, Field, Fields, Float16Type, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, UInt8Type,
};
use datafusion::error::{DataFusionError, Result};

use half::f16;

use super::{Elements, TensorElement, TensorShape, TensorValue, format_shape};

/// The storage of `TENSOR(elem, shape)`: Arrow's canonical fixed-shape
/// tensor requires a non-nullable item field.
pub fn fixed_storage(elem: TensorElement, shape: TensorShape) -> DataType {
    DataType::FixedSizeList(
        Arc::new(Field::new_list_field(elem.data_type(), false)),
        shape.len() as i32,
    )
}

/// The storage of `TENSOR(elem)` (variable shape).
pub fn variable_storage(elem: TensorElement) -> DataType {
    DataType::Struct(variable_fields(elem))
}

fn variable_fields(elem: TensorElement) -> Fields {
    Fields::from(vec![
        Field::new(
            "data",
            DataType::List(Arc::new(Field::new_list_field(elem.data_type(), false))),
            false,
        ),
        Field::new(
            "shape",
            DataType::List(Arc::new(Field::new_list_field(DataType::Int32, false))),
            false,
        ),
    ])
}

/// The canonical extension metadata (`{"shape":[…]}`) of a fixed shape.
/// Written by hand: arrow-rs serialises absent dimension names and
/// permutations as `null`, which the C++ implementation (pyarrow) rejects.
pub fn fixed_metadata(_elem: TensorElement, shape: TensorShape) -> Option<String> {
    Some(serde_json::json!({ "shape": shape.dims() }).to_string())
}

/// The shape a fixed-shape tensor field's metadata names (`{"shape":[…]}`;
/// dimension names and permutations, which Sluice never writes, are ignored).
pub fn shape_of_metadata(metadata: &str) -> Option<TensorShape> {
    let value: serde_json::Value = serde_json::from_str(metadata).ok()?;
    let dims: Vec<usize> = value
        .get("shape")?
        .as_array()?
        .iter()
        .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
        .collect::<Option<_>>()?;
    TensorShape::try_new(&dims).ok()
}

/// The element array of `elem` holding `elements` (already range-checked).
pub fn element_array(elem: TensorElement, elements: &Elements) -> ArrayRef {
    fn cast<T: ArrowPrimitiveType>(values: &[f64], convert: impl Fn(f64) -> T::Native) -> ArrayRef {
        Arc::new(PrimitiveArray::<T>::from_iter_values(
            values.iter().map(|v| convert(*v)),
        ))
    }
    match (elem, elements) {
        (_, Elements::Int(ints)) => Arc::new(PrimitiveArray::<Int64Type>::from_iter_values(
            ints.iter().copied(),
        )),
        (TensorElement::Float32, Elements::Float(v)) => cast::<Float32Type>(v, |x| x as f32),
        (TensorElement::Float16, Elements::Float(v)) => cast::<Float16Type>(v, f16::from_f64),
        (TensorElement::Float64, Elements::Float(v)) => cast::<Float64Type>(v, |x| x),
        (TensorElement::Int8, Elements::Float(v)) => cast::<Int8Type>(v, |x| x as i8),
        (TensorElement::UInt8, Elements::Float(v)) => cast::<UInt8Type>(v, |x| x as u8),
        (TensorElement::Int16, Elements::Float(v)) => cast::<Int16Type>(v, |x| x as i16),
        (TensorElement::Int32, Elements::Float(v)) => cast::<Int32Type>(v, |x| x as i32),
        (TensorElement::Int64, Elements::Float(v)) => cast::<Int64Type>(v, |x| x as i64),
    }
}

/// Builds tensor storage from per-row values (`None` = NULL). A fixed
/// `shape` requires every value to have exactly that shape.
pub fn tensor_array(
    elem: TensorElement,
    shape: Option<TensorShape>,
    rows: &[Option<TensorValue>],
) -> Result<ArrayRef> {
    let nulls = rows
        .iter()
        .any(Option::is_none)
        .then(|| NullBuffer::from_iter(rows.iter().map(Option::is_some)));
    let element_count = |v: &TensorValue| v.elements.len();
    match shape {
        Some(shape) => {
            let width = shape.len();
            let mut all = Vec::with_capacity(rows.len() * width);
            let mut ints = Vec::new();
            for row in rows {
                match row {
                    Some(value) => {
                        if value.shape != shape.dims() {
                            return Err(DataFusionError::Execution(format!(
                                "expected a tensor of shape {shape}, not {}",
                                format_shape(&value.shape)
                            )));
                        }
                        match &value.elements {
                            Elements::Float(v) => all.extend_from_slice(v),
                            Elements::Int(v) => ints.extend_from_slice(v),
                        }
                    }
                    None if elem == TensorElement::Int64 => {
                        ints.extend(std::iter::repeat_n(0, width))
                    }
                    None => all.extend(std::iter::repeat_n(0.0, width)),
                }
            }
            let values = if elem == TensorElement::Int64 {
                element_array(elem, &Elements::Int(ints))
            } else {
                element_array(elem, &Elements::Float(all))
            };
            Ok(Arc::new(FixedSizeListArray::try_new(
                Arc::new(Field::new_list_field(elem.data_type(), false)),
                width as i32,
                values,
                nulls,
            )?))
        }
        None => {
            let mut floats = Vec::new();
            let mut ints = Vec::new();
            let mut data_lengths = Vec::with_capacity(rows.len());
            let mut shape_values = Vec::new();
            let mut shape_lengths = Vec::with_capacity(rows.len());
            for row in rows {
                match row {
                    Some(value) => {
                        data_lengths.push(element_count(value));
                        shape_lengths.push(value.shape.len());
                        for d in &value.shape {
                            shape_values.push(i32::try_from(*d).map_err(|_| {
                                DataFusionError::Execution("tensor dimension too large".into())
                            })?);
                        }
                        match &value.elements {
                            Elements::Float(v) => floats.extend_from_slice(v),
                            Elements::Int(v) => ints.extend_from_slice(v),
                        }
                    }
                    None => {
                        data_lengths.push(0);
                        shape_lengths.push(0);
                    }
                }
            }
            let values = if elem == TensorElement::Int64 {
                element_array(elem, &Elements::Int(ints))
            } else {
                element_array(elem, &Elements::Float(floats))
            };
            variable_array(
                elem,
                values,
                OffsetBuffer::from_lengths(data_lengths),
                Arc::new(Int32Array::from(shape_values)),
                OffsetBuffer::from_lengths(shape_lengths),
                nulls,
            )
        }
    }
}

/// Variable-shape tensor storage from its parts.
pub fn variable_array(
    elem: TensorElement,
    values: ArrayRef,
    data_offsets: OffsetBuffer<i32>,
    shape_values: ArrayRef,
    shape_offsets: OffsetBuffer<i32>,
    nulls: Option<NullBuffer>,
) -> Result<ArrayRef> {
    let data = ListArray::try_new(
        Arc::new(Field::new_list_field(elem.data_type(), false)),
        data_offsets,
        values,
        None,
    )?;
    let shape = ListArray::try_new(
        Arc::new(Field::new_list_field(DataType::Int32, false)),
        shape_offsets,
        shape_values,
        None,
    )?;
    Ok(Arc::new(StructArray::try_new(
        variable_fields(elem),
        vec![Arc::new(data), Arc::new(shape)],
        nulls,
    )?))
}

/// The shape and element array of the non-null tensor at `idx` of
/// `values` (fixed or variable storage).
pub fn tensor_at(
    values: &dyn Array,
    shape: Option<TensorShape>,
    idx: usize,
) -> Result<(Vec<usize>, ArrayRef)> {
    match shape {
        Some(shape) => {
            let list = values.as_fixed_size_list_opt().ok_or_else(|| {
                DataFusionError::Internal(format!("tensor stored as {}", values.data_type()))
            })?;
            Ok((shape.dims(), list.value(idx)))
        }
        None => {
            let (data, shapes) = variable_parts(values)?;
            Ok((dims_at(shapes, idx)?, data.value(idx)))
        }
    }
}

/// The data and shape lists of variable-shape tensor storage.
pub fn variable_parts(values: &dyn Array) -> Result<(&ListArray, &ListArray)> {
    let parts = values.as_struct_opt().ok_or_else(|| {
        DataFusionError::Internal(format!("tensor stored as {}", values.data_type()))
    })?;
    match (
        parts
            .column_by_name("data")
            .and_then(|c| c.as_list_opt::<i32>()),
        parts
            .column_by_name("shape")
            .and_then(|c| c.as_list_opt::<i32>()),
    ) {
        (Some(data), Some(shapes)) => Ok((data, shapes)),
        _ => Err(DataFusionError::Internal(
            "variable tensor without data/shape lists".into(),
        )),
    }
}

/// The dimensions of the tensor at `idx` of a variable tensor's shape list.
pub fn dims_at(shapes: &ListArray, idx: usize) -> Result<Vec<usize>> {
    let dims = shapes.value(idx);
    Ok(dims
        .as_primitive_opt::<Int32Type>()
        .ok_or_else(|| DataFusionError::Internal("tensor shape not int32".into()))?
        .values()
        .iter()
        .map(|d| usize::try_from(*d).unwrap_or(0))
        .collect())
}
