//! Image transforms and conversions to tensors: `image_resize`,
//! `image_crop`, `image_thumbnail` (images in, images out) and
//! `image_decode`, `image_to_tensor` (images in, tensors out).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Int32Array, UInt8Array, new_null_array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use sluice_types::SluiceType;
use sluice_types::media::{encoded_bytes, image_array, image_ops};
use sluice_types::tensor::{TensorElement, TensorShape, variable_array};

use super::arguments::{
    arrays, constant_dimension, dimension, expect_count, expect_type, integers, media_error,
    triples,
};

/// What an [`ImageFunction`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Operation {
    Resize,
    Crop,
    Thumbnail,
    Decode,
    ToTensor,
}

impl Operation {
    fn name(self) -> &'static str {
        match self {
            Operation::Resize => "image_resize",
            Operation::Crop => "image_crop",
            Operation::Thumbnail => "image_thumbnail",
            Operation::Decode => "image_decode",
            Operation::ToTensor => "image_to_tensor",
        }
    }

    fn arity(self) -> (&'static [usize], &'static str) {
        match self {
            Operation::Resize => (&[3], "(image, width, height)"),
            Operation::Crop => (&[5], "(image, x, y, width, height)"),
            Operation::Thumbnail => (&[2], "(image, max_side)"),
            Operation::Decode => (&[1], "(image)"),
            Operation::ToTensor => (
                &[3, 5],
                "(image, width, height[, mean, std]) with mean and std arrays of 3 numbers",
            ),
        }
    }
}

/// One image function.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ImageFunction {
    operation: Operation,
    signature: Signature,
}

impl ScalarUDFImpl for ImageFunction {
    fn name(&self) -> &str {
        self.operation.name()
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
        let (allowed, usage) = self.operation.arity();
        expect_count(self.name(), args.arg_fields.len(), allowed, usage)?;
        let source = &args.arg_fields[0];
        expect_type(self.name(), source, SluiceType::Image)?;
        let ty = match self.operation {
            Operation::Resize | Operation::Crop | Operation::Thumbnail => SluiceType::Image,
            Operation::Decode => SluiceType::Tensor(TensorElement::UInt8, None),
            Operation::ToTensor => {
                let width = constant_dimension(args.scalar_arguments.get(1).copied().flatten());
                let height = constant_dimension(args.scalar_arguments.get(2).copied().flatten());
                let shape = match (width, height) {
                    (Some(w), Some(h)) => Some(TensorShape::try_new(&[3, h, w])?),
                    _ => None,
                };
                SluiceType::Tensor(TensorElement::Float32, shape)
            }
        };
        Ok(Arc::new(ty.field(self.name(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let output = Arc::clone(&args.return_field);
        let arrays = arrays(&args.args, rows)?;
        let images = &arrays[0];
        if images.data_type() == &DataType::Null {
            return Ok(ColumnarValue::Array(new_null_array(
                output.data_type(),
                rows,
            )));
        }
        let name = self.name();
        let ints = |i: usize, what: &str| integers(name, what, arrays[i].as_ref());
        let result = match self.operation {
            Operation::Resize => {
                let (w, h) = (ints(1, "width")?, ints(2, "height")?);
                transform(images.as_ref(), |row, bytes| {
                    let (Some(w), Some(h)) = (w[row], h[row]) else {
                        return Ok(None);
                    };
                    image_ops::resize(
                        bytes,
                        dimension(name, "width", w)?,
                        dimension(name, "height", h)?,
                    )
                    .map(Some)
                    .map_err(media_error)
                })?
            }
            Operation::Crop => {
                let (x, y) = (ints(1, "x")?, ints(2, "y")?);
                let (w, h) = (ints(3, "width")?, ints(4, "height")?);
                transform(images.as_ref(), |row, bytes| {
                    let (Some(x), Some(y), Some(w), Some(h)) = (x[row], y[row], w[row], h[row])
                    else {
                        return Ok(None);
                    };
                    image_ops::crop(
                        bytes,
                        dimension(name, "x", x)?,
                        dimension(name, "y", y)?,
                        dimension(name, "width", w)?,
                        dimension(name, "height", h)?,
                    )
                    .map(Some)
                    .map_err(media_error)
                })?
            }
            Operation::Thumbnail => {
                let side = ints(1, "max_side")?;
                transform(images.as_ref(), |row, bytes| {
                    let Some(side) = side[row] else {
                        return Ok(None);
                    };
                    image_ops::thumbnail(bytes, dimension(name, "max_side", side)?)
                        .map(Some)
                        .map_err(media_error)
                })?
            }
            Operation::Decode => decode(images.as_ref())?,
            Operation::ToTensor => {
                let (w, h) = (ints(1, "width")?, ints(2, "height")?);
                let (mean, std) = match arrays.get(3..5) {
                    Some([mean, std]) => (
                        triples(name, "mean", mean.as_ref())?,
                        triples(name, "std", std.as_ref())?,
                    ),
                    _ => (vec![Some([0.0; 3]); rows], vec![Some([1.0; 3]); rows]),
                };
                let fixed = match SluiceType::of_field(&output) {
                    Some(SluiceType::Tensor(_, shape)) => shape,
                    _ => None,
                };
                to_tensors(images.as_ref(), fixed, |row, bytes| {
                    let (Some(w), Some(h), Some(mean), Some(std)) =
                        (w[row], h[row], mean[row], std[row])
                    else {
                        return Ok(None);
                    };
                    let (w, h) = (dimension(name, "width", w)?, dimension(name, "height", h)?);
                    let values =
                        image_ops::to_tensor(bytes, w, h, mean, std).map_err(media_error)?;
                    Ok(Some((vec![3, h as usize, w as usize], values)))
                })?
            }
        };
        Ok(ColumnarValue::Array(result))
    }
}

/// Applies `f` to every non-null image's bytes, making images of the
/// results (`None`: NULL).
fn transform(
    images: &dyn Array,
    f: impl Fn(usize, &[u8]) -> Result<Option<Vec<u8>>>,
) -> Result<ArrayRef> {
    let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(images.len());
    for row in 0..images.len() {
        out.push(if images.is_null(row) {
            None
        } else {
            f(row, encoded_bytes(images, row)?)?
        });
    }
    image_array(out.iter().map(Option::as_deref))
}

/// `image_decode`: HWC uint8 tensors of every image.
fn decode(images: &dyn Array) -> Result<ArrayRef> {
    let mut values = Vec::new();
    let mut lengths = Vec::with_capacity(images.len());
    let mut shapes = Vec::new();
    let mut ranks = Vec::with_capacity(images.len());
    let mut valid = Vec::with_capacity(images.len());
    for row in 0..images.len() {
        if images.is_null(row) {
            lengths.push(0);
            ranks.push(0);
            valid.push(false);
            continue;
        }
        let pixels = image_ops::decode_rgb(encoded_bytes(images, row)?).map_err(media_error)?;
        lengths.push(pixels.data.len());
        values.extend_from_slice(&pixels.data);
        for d in [pixels.height, pixels.width, pixels.channels] {
            shapes.push(i32::try_from(d).map_err(|_| too_large())?);
        }
        ranks.push(3);
        valid.push(true);
    }
    variable_array(
        TensorElement::UInt8,
        Arc::new(UInt8Array::from(values)),
        OffsetBuffer::from_lengths(lengths),
        Arc::new(Int32Array::from(shapes)),
        OffsetBuffer::from_lengths(ranks),
        nulls(valid),
    )
}

/// Float32 tensors from `f`'s (shape, values) per row, in the fixed shape
/// the planner chose when there is one.
fn to_tensors(
    images: &dyn Array,
    fixed: Option<TensorShape>,
    f: impl Fn(usize, &[u8]) -> Result<Option<(Vec<usize>, Vec<f32>)>>,
) -> Result<ArrayRef> {
    let mut values = Vec::new();
    let mut lengths = Vec::with_capacity(images.len());
    let mut shapes = Vec::new();
    let mut ranks = Vec::with_capacity(images.len());
    let mut valid = Vec::with_capacity(images.len());
    for row in 0..images.len() {
        let tensor = if images.is_null(row) {
            None
        } else {
            f(row, encoded_bytes(images, row)?)?
        };
        match tensor {
            Some((shape, data)) => {
                lengths.push(data.len());
                values.extend_from_slice(&data);
                for d in &shape {
                    shapes.push(i32::try_from(*d).map_err(|_| too_large())?);
                }
                ranks.push(shape.len());
                valid.push(true);
            }
            None => {
                if let Some(fixed) = fixed {
                    values.extend(std::iter::repeat_n(0.0, fixed.len()));
                }
                lengths.push(0);
                ranks.push(0);
                valid.push(false);
            }
        }
    }
    match fixed {
        Some(shape) => Ok(Arc::new(FixedSizeListArray::try_new(
            Arc::new(Field::new_list_field(DataType::Float32, false)),
            shape.len() as i32,
            Arc::new(Float32Array::from(values)),
            nulls(valid),
        )?)),
        None => variable_array(
            TensorElement::Float32,
            Arc::new(Float32Array::from(values)),
            OffsetBuffer::from_lengths(lengths),
            Arc::new(Int32Array::from(shapes)),
            OffsetBuffer::from_lengths(ranks),
            nulls(valid),
        ),
    }
}

fn nulls(valid: Vec<bool>) -> Option<NullBuffer> {
    valid.iter().any(|v| !v).then(|| NullBuffer::from(valid))
}

fn too_large() -> DataFusionError {
    DataFusionError::Execution("image too large for a tensor".into())
}

/// Every image function.
pub fn all() -> Vec<ScalarUDF> {
    [
        Operation::Resize,
        Operation::Crop,
        Operation::Thumbnail,
        Operation::Decode,
        Operation::ToTensor,
    ]
    .into_iter()
    .map(|operation| {
        ScalarUDF::new_from_impl(ImageFunction {
            operation,
            signature: Signature::variadic_any(Volatility::Immutable),
        })
    })
    .collect()
}
