//! Image transforms and conversions to tensors: `image_resize`,
//! `image_crop`, `image_thumbnail` (images in, images out) and
//! `image_decode`, `image_to_tensor` (images in, tensors out).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, new_null_array};
use datafusion::arrow::datatypes::{DataType, FieldRef, Float32Type, UInt8Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};
use sluice_types::SluiceType;
use sluice_types::media::{encoded_bytes, image_array, image_ops};
use sluice_types::tensor::{TensorBuilder, TensorElement, TensorShape};

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
        let result = match self.operation {
            Operation::Resize => {
                let size = Sizes::read(name, &arrays, &["width", "height"])?;
                transform(images.as_ref(), |row, bytes| {
                    let Some([w, h]) = size.at::<2>(row)? else {
                        return Ok(None);
                    };
                    image_ops::resize(bytes, w, h)
                        .map(Some)
                        .map_err(media_error)
                })?
            }
            Operation::Crop => {
                let size = Sizes::read(name, &arrays, &["x", "y", "width", "height"])?;
                transform(images.as_ref(), |row, bytes| {
                    let Some([x, y, w, h]) = size.at::<4>(row)? else {
                        return Ok(None);
                    };
                    image_ops::crop(bytes, x, y, w, h)
                        .map(Some)
                        .map_err(media_error)
                })?
            }
            Operation::Thumbnail => {
                let size = Sizes::read(name, &arrays, &["max_side"])?;
                transform(images.as_ref(), |row, bytes| {
                    let Some([side]) = size.at::<1>(row)? else {
                        return Ok(None);
                    };
                    image_ops::thumbnail(bytes, side)
                        .map(Some)
                        .map_err(media_error)
                })?
            }
            Operation::Decode => {
                let mut tensors = TensorBuilder::<UInt8Type>::with_capacity(rows);
                for row in 0..rows {
                    if images.is_null(row) {
                        tensors.push_null();
                        continue;
                    }
                    let pixels = image_ops::decode_rgb(encoded_bytes(images.as_ref(), row)?)
                        .map_err(media_error)?;
                    let shape = [pixels.height, pixels.width, pixels.channels].map(|d| d as usize);
                    tensors.push(&shape, &pixels.data)?;
                }
                tensors.finish(TensorElement::UInt8, None)?
            }
            Operation::ToTensor => {
                let size = Sizes::read(name, &arrays, &["width", "height"])?;
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
                let mut tensors = TensorBuilder::<Float32Type>::with_capacity(rows);
                for row in 0..rows {
                    let arguments = match (images.is_null(row), mean[row], std[row]) {
                        (false, Some(mean), Some(std)) => {
                            size.at::<2>(row)?.map(|[w, h]| (w, h, mean, std))
                        }
                        _ => None,
                    };
                    let Some((w, h, mean, std)) = arguments else {
                        tensors.push_null();
                        continue;
                    };
                    let bytes = encoded_bytes(images.as_ref(), row)?;
                    let values =
                        image_ops::to_tensor(bytes, w, h, mean, std).map_err(media_error)?;
                    tensors.push(&[3, h as usize, w as usize], &values)?;
                }
                tensors.finish(TensorElement::Float32, fixed)?
            }
        };
        Ok(ColumnarValue::Array(result))
    }
}

/// The integer size arguments of a call (`arrays[1..]`, named for errors),
/// read once per batch and checked per row.
struct Sizes<'a> {
    function: &'a str,
    names: &'a [&'a str],
    columns: Vec<Vec<Option<i64>>>,
}

impl<'a> Sizes<'a> {
    fn read(function: &'a str, arrays: &[ArrayRef], names: &'a [&'a str]) -> Result<Self> {
        let columns = names
            .iter()
            .zip(&arrays[1..])
            .map(|(what, array)| integers(function, what, array.as_ref()))
            .collect::<Result<_>>()?;
        Ok(Self {
            function,
            names,
            columns,
        })
    }

    /// Row `row`'s sizes, `None` when one is NULL (the result is NULL).
    fn at<const N: usize>(&self, row: usize) -> Result<Option<[u32; N]>> {
        let Some(values) = self
            .columns
            .iter()
            .map(|column| column.get(row).copied().flatten())
            .collect::<Option<Vec<i64>>>()
        else {
            return Ok(None);
        };
        let mut sizes = [0u32; N];
        for ((slot, value), what) in sizes.iter_mut().zip(values).zip(self.names) {
            *slot = dimension(self.function, what, value)?;
        }
        Ok(Some(sizes))
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
