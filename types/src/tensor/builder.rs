//! [`TensorBuilder`]: tensors of one element type built row by row.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, FixedSizeListArray, Int32Array, PrimitiveArray};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::datatypes::{ArrowPrimitiveType, Field};
use datafusion::error::{DataFusionError, Result};

use super::{TensorElement, TensorShape, variable_array};

/// Builds tensors of one element type row by row, each with its own
/// shape: the functions that make tensors (`image_decode`,
/// `image_to_tensor`, `audio_to_tensor`) share it.
#[derive(Debug)]
pub struct TensorBuilder<T: ArrowPrimitiveType> {
    values: Vec<T::Native>,
    lengths: Vec<usize>,
    dims: Vec<i32>,
    ranks: Vec<usize>,
    valid: Vec<bool>,
}

impl<T: ArrowPrimitiveType> TensorBuilder<T> {
    /// An empty builder for about `rows` rows.
    pub fn with_capacity(rows: usize) -> Self {
        Self {
            values: Vec::new(),
            lengths: Vec::with_capacity(rows),
            dims: Vec::new(),
            ranks: Vec::with_capacity(rows),
            valid: Vec::with_capacity(rows),
        }
    }

    /// Appends a tensor of `shape` holding `data` (row-major).
    pub fn push(&mut self, shape: &[usize], data: &[T::Native]) -> Result<()> {
        for d in shape {
            self.dims.push(i32::try_from(*d).map_err(|_| {
                DataFusionError::Execution(format!("tensor dimension {d} is too large"))
            })?);
        }
        self.ranks.push(shape.len());
        self.lengths.push(data.len());
        self.values.extend_from_slice(data);
        self.valid.push(true);
        Ok(())
    }

    /// Appends a NULL.
    pub fn push_null(&mut self) {
        self.ranks.push(0);
        self.lengths.push(0);
        self.valid.push(false);
    }

    /// The tensors of `elem` (the element type `T` stands for): fixed-shape
    /// storage when `fixed` is given (every row must hold `fixed`'s element
    /// count), variable-shape storage otherwise.
    pub fn finish(self, elem: TensorElement, fixed: Option<TensorShape>) -> Result<ArrayRef>
    where
        PrimitiveArray<T>: From<Vec<T::Native>>,
    {
        let nulls = self
            .valid
            .iter()
            .any(|v| !v)
            .then(|| NullBuffer::from(self.valid.clone()));
        let Some(shape) = fixed else {
            return variable_array(
                elem,
                Arc::new(PrimitiveArray::<T>::from(self.values)),
                OffsetBuffer::from_lengths(self.lengths),
                Arc::new(Int32Array::from(self.dims)),
                OffsetBuffer::from_lengths(self.ranks),
                nulls,
            );
        };
        // Fixed-size storage holds placeholder elements for NULL rows.
        let width = shape.len();
        let mut values = Vec::with_capacity(self.valid.len() * width);
        let mut start = 0;
        for (valid, length) in self.valid.iter().zip(&self.lengths) {
            if *valid {
                if *length != width {
                    return Err(DataFusionError::Execution(format!(
                        "expected a tensor of shape {shape}, not one of {length} elements"
                    )));
                }
                values.extend_from_slice(&self.values[start..start + length]);
            } else {
                values.extend(std::iter::repeat_n(T::Native::default(), width));
            }
            start += length;
        }
        Ok(Arc::new(FixedSizeListArray::try_new(
            Arc::new(Field::new_list_field(elem.data_type(), false)),
            width as i32,
            Arc::new(PrimitiveArray::<T>::from(values)),
            nulls,
        )?))
    }
}
