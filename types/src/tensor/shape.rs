//! [`TensorShape`]: a fixed shape of at most [`MAX_TENSOR_RANK`] dimensions.

use std::fmt;

use datafusion::error::{DataFusionError, Result};

use super::{MAX_TENSOR_ELEMENTS, MAX_TENSOR_RANK};
use crate::error::{SluiceError, SqlState};

/// A fixed tensor shape of at most [`MAX_TENSOR_RANK`] dimensions, each ≥ 1.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TensorShape {
    rank: u8,
    dims: [u32; MAX_TENSOR_RANK],
}

impl TensorShape {
    /// A shape from its dimensions, checking rank, sizes and element count.
    pub fn try_new(dims: &[usize]) -> Result<Self> {
        if dims.is_empty() || dims.len() > MAX_TENSOR_RANK {
            return Err(DataFusionError::Plan(format!(
                "a tensor shape has 1 to {MAX_TENSOR_RANK} dimensions, not {}",
                dims.len()
            )));
        }
        let mut stored = [0u32; MAX_TENSOR_RANK];
        for (slot, &d) in stored.iter_mut().zip(dims) {
            *slot = u32::try_from(d)
                .ok()
                .filter(|d| *d >= 1)
                .ok_or_else(|| bad_shape(dims))?;
        }
        let shape = Self {
            rank: dims.len() as u8,
            dims: stored,
        };
        if shape.checked_len().is_none() {
            return Err(bad_shape(dims));
        }
        Ok(shape)
    }

    /// The dimensions.
    pub fn dims(&self) -> Vec<usize> {
        self.dims[..usize::from(self.rank)]
            .iter()
            .map(|d| *d as usize)
            .collect()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.checked_len().unwrap_or(0)
    }

    /// Never true: every dimension is at least 1.
    pub fn is_empty(&self) -> bool {
        false
    }

    fn checked_len(&self) -> Option<usize> {
        self.dims()
            .into_iter()
            .try_fold(1usize, |acc, d| acc.checked_mul(d))
            .filter(|n| *n <= MAX_TENSOR_ELEMENTS)
    }
}

impl fmt::Debug for TensorShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for TensorShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.dims().iter().map(usize::to_string).collect();
        write!(f, "[{}]", dims.join(","))
    }
}

fn bad_shape(dims: &[usize]) -> DataFusionError {
    DataFusionError::from(SluiceError::new(
        SqlState::INVALID_PARAMETER_VALUE,
        format!(
            "invalid tensor shape {dims:?}: every dimension must be at least 1 and the tensor hold \
         at most {MAX_TENSOR_ELEMENTS} elements"
        ),
    ))
}
