//! Tensor-shaped model inputs (image and other tensor models): rows that
//! are whole tensors, fed from `TENSOR` columns or from `IMAGE` columns
//! through the model's declared preprocessing.
//!
//! Every such argument is brought to one form before batching, the
//! variable-shape tensor storage (`Struct{data, shape}`): calls with fixed
//! and variable tensors, or images, merge into one model batch, and each
//! row keeps its shape until the batch is cut into the model's tensor,
//! where all rows must agree.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int32Array};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Float32Type};
use datafusion::error::{DataFusionError, Result};
use ort::value::DynValue;
use sluice_types::SluiceType;
use sluice_types::media::{encoded_bytes, image_ops};
use sluice_types::tensor::{
    TensorBuilder, TensorElement, TensorShape, dims_at, variable_array, variable_parts,
};

use super::spec::ImagePreprocessing;
use super::tensors::{TensorSpec, tensor_from_values};
use crate::media::arguments::media_error;

/// What kind of SQL value feeds a tensor input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorSource {
    /// `TENSOR(elem, [dims])`.
    Fixed(TensorShape),
    /// `TENSOR(elem)`: each row its own shape.
    Variable,
    /// `IMAGE`, decoded and resized by the model's preprocessing.
    Image,
}

impl TensorSource {
    /// The source a column of `field` is, if it can feed a tensor input.
    pub fn of_field(field: &Field) -> Option<Self> {
        match SluiceType::of_field(field)? {
            SluiceType::Tensor(_, Some(shape)) => Some(Self::Fixed(shape)),
            SluiceType::Tensor(_, None) => Some(Self::Variable),
            SluiceType::Image => Some(Self::Image),
            _ => None,
        }
    }
}

/// The per-row dimensions of a tensor input (`-1`: any size).
pub fn row_dims(spec: &TensorSpec) -> &[i64] {
    spec.shape.get(1..).unwrap_or(&[])
}

/// Checks at planning that `source` can feed the tensor input `spec`, as
/// far as types and fixed shapes tell.
pub fn check_source(
    model: &str,
    spec: &TensorSpec,
    source: TensorSource,
    image: &ImagePreprocessing,
) -> Result<()> {
    let dims = row_dims(spec);
    match source {
        TensorSource::Fixed(shape) => check_dims(model, spec, &shape.dims()),
        TensorSource::Variable => Ok(()),
        TensorSource::Image => {
            if spec.element_type()? != DataType::Float32 {
                return Err(DataFusionError::Plan(format!(
                    "model {model}: input '{}' holds {:?}; IMAGE arguments feed float32 inputs",
                    spec.name, spec.element
                )));
            }
            let [w, h] = image_size(model, spec, image)?;
            check_dims(model, spec, &[3, h as usize, w as usize]).map_err(|_| {
                DataFusionError::Plan(format!(
                    "model {model}: input '{}' has per-row shape {dims:?}; IMAGE arguments feed \
                     [3, height, width] inputs (channels first)",
                    spec.name
                ))
            })
        }
    }
}

/// The `[width, height]` images are resized to for `spec`: the model's own
/// fixed dimensions, else the model options `image_width`/`image_height`.
fn image_size(model: &str, spec: &TensorSpec, image: &ImagePreprocessing) -> Result<[u32; 2]> {
    let dims = row_dims(spec);
    let fixed = |i: usize| {
        dims.get(i)
            .filter(|&&d| d > 0)
            .and_then(|&d| u32::try_from(d).ok())
    };
    let width = image.width.or(fixed(2));
    let height = image.height.or(fixed(1));
    match (width, height) {
        (Some(w), Some(h)) => Ok([w, h]),
        _ => Err(DataFusionError::Plan(format!(
            "model {model}: input '{}' takes images of any size; say which with the model \
             options 'image_width' and 'image_height'",
            spec.name
        ))),
    }
}

fn check_dims(model: &str, spec: &TensorSpec, dims: &[usize]) -> Result<()> {
    let wanted = row_dims(spec);
    let fits = wanted.len() == dims.len()
        && wanted
            .iter()
            .zip(dims)
            .all(|(&w, &d)| w < 0 || w as usize == d);
    if fits {
        Ok(())
    } else {
        Err(DataFusionError::Execution(format!(
            "model {model}: input '{}' takes tensors of shape {}, got {dims:?}",
            spec.name,
            format_dims(wanted)
        )))
    }
}

fn format_dims(dims: &[i64]) -> String {
    let dims: Vec<String> = dims
        .iter()
        .map(|&d| if d < 0 { "?".into() } else { d.to_string() })
        .collect();
    format!("[{}]", dims.join(", "))
}

/// Brings an argument column to the variable-shape tensor form the runtime
/// batches (images are decoded, resized and normalised here, on the
/// caller's thread, so the model's worker only runs the model).
pub fn to_model_tensors(
    model: &str,
    spec: &TensorSpec,
    source: TensorSource,
    image: &ImagePreprocessing,
    column: &ArrayRef,
) -> Result<ArrayRef> {
    let elem = TensorElement::of_data_type(&spec.element_type()?).ok_or_else(|| {
        DataFusionError::Plan(format!(
            "model {model}: input '{}' has element type {:?}, which TENSOR cannot hold",
            spec.name, spec.element
        ))
    })?;
    match source {
        TensorSource::Variable => Ok(Arc::clone(column)),
        TensorSource::Fixed(shape) => {
            let list = column.as_fixed_size_list_opt().ok_or_else(|| {
                DataFusionError::Internal(format!("tensor stored as {}", column.data_type()))
            })?;
            let rows = list.len();
            let dims: Vec<i32> = shape
                .dims()
                .iter()
                .map(|&d| i32::try_from(d).unwrap_or(i32::MAX))
                .collect();
            let shape_values: Vec<i32> = (0..rows).flat_map(|_| dims.iter().copied()).collect();
            let element_type = list.value_type();
            let values = cast(list.values(), &element_type)?;
            variable_array(
                TensorElement::of_data_type(&element_type).unwrap_or(elem),
                values,
                OffsetBuffer::from_lengths(std::iter::repeat_n(shape.len(), rows)),
                Arc::new(Int32Array::from(shape_values)),
                OffsetBuffer::from_lengths(std::iter::repeat_n(dims.len(), rows)),
                list.nulls().cloned(),
            )
        }
        TensorSource::Image => {
            let [w, h] = image_size(model, spec, image)?;
            let mut tensors = TensorBuilder::<Float32Type>::with_capacity(column.len());
            for row in 0..column.len() {
                if column.is_null(row) {
                    tensors.push_null();
                    continue;
                }
                let bytes = encoded_bytes(column.as_ref(), row)?;
                let values = image_ops::to_tensor(bytes, w, h, image.mean, image.std)
                    .map_err(media_error)?;
                tensors.push(&[3, h as usize, w as usize], &values)?;
            }
            tensors.finish(TensorElement::Float32, None)
        }
    }
}

/// The model tensor of a batch of tensor rows (no NULLs: the runtime
/// keeps rows with a NULL input away from the model). All rows must have
/// one shape, which the input must accept.
pub fn batch_tensor(model: &str, spec: &TensorSpec, column: &ArrayRef) -> Result<DynValue> {
    let (data, shapes) = variable_parts(column.as_ref())?;
    let rows = column.len();
    let dims_of = |row: usize| dims_at(shapes, row);
    let first = if rows == 0 {
        row_dims(spec)
            .iter()
            .map(|&d| usize::try_from(d).unwrap_or(1))
            .collect()
    } else {
        dims_of(0)?
    };
    check_dims(model, spec, &first)?;
    for row in 1..rows {
        let dims = dims_of(row)?;
        if dims != first {
            return Err(DataFusionError::Execution(format!(
                "model {model}: the rows of one batch must have one shape, got {first:?} and \
                 {dims:?}; resize them first (image_to_tensor, tensor_reshape)"
            )));
        }
    }
    let offsets = data.value_offsets();
    let start = offsets.first().copied().unwrap_or(0) as usize;
    let end = offsets.last().copied().unwrap_or(0) as usize;
    let values = data.values().slice(start, end - start);
    let mut shape = vec![rows as i64];
    shape.extend(first.iter().map(|&d| d as i64));
    tensor_from_values(spec, &values, shape)
}
