//! `subvector(vector, start, count) → vector(count)`: `count` elements from
//! the 1-based position `start`, as in pgvector. The result's dimension is
//! part of its type, so `count` must be a constant; `start` may vary by row.
//! A range outside the vector is an error, not a shorter vector.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use sluice_types::SluiceType;
use sluice_types::vector::vector_array;

use super::operand::{not_a_vector, to_operand, vector_dimension};

/// `subvector`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Subvector {
    signature: Signature,
}

impl Default for Subvector {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

fn count_of(value: Option<&ScalarValue>) -> Result<i32> {
    let count = value
        .and_then(|v| v.cast_to(&DataType::Int64).ok())
        .and_then(|v| match v {
            ScalarValue::Int64(Some(n)) => Some(n),
            _ => None,
        })
        .ok_or_else(|| {
            DataFusionError::Plan("subvector's count must be a constant integer".into())
        })?;
    i32::try_from(count)
        .ok()
        .filter(|c| (1..=16000).contains(c))
        .ok_or_else(|| {
            DataFusionError::Execution(format!(
                "subvector count {count} is out of range: a vector has 1 to 16000 dimensions"
            ))
        })
}

impl ScalarUDFImpl for Subvector {
    fn name(&self) -> &str {
        "subvector"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        match arg_types {
            [v, start, count] if vector_dimension(v).is_some() => {
                for t in [start, count] {
                    if !t.is_integer() && t != &DataType::Null {
                        return Err(DataFusionError::Plan(format!(
                            "subvector takes integer start and count, got {t}"
                        )));
                    }
                }
                Ok(vec![v.clone(), DataType::Int64, DataType::Int64])
            }
            [v, _, _] => Err(not_a_vector(self.name(), v)),
            _ => Err(DataFusionError::Plan(
                "subvector takes (vector, start, count)".into(),
            )),
        }
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Err(DataFusionError::Internal(
            "subvector reports its type through return_field_from_args".into(),
        ))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let count = count_of(args.scalar_arguments.get(2).copied().flatten())?;
        Ok(Arc::new(SluiceType::Vector(count).field(self.name(), true)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [vector, start, count] = <[ColumnarValue; 3]>::try_from(args.args)
            .map_err(|_| DataFusionError::Internal("three arguments expected".into()))?;
        let count = match &count {
            ColumnarValue::Scalar(v) => count_of(Some(v))?,
            ColumnarValue::Array(_) => count_of(None)?,
        } as usize;
        let dim = vector_dimension(&vector.data_type())
            .ok_or_else(|| not_a_vector("subvector", &vector.data_type()))?;
        let vectors = to_operand(vector, dim)?;
        let starts = cast(&start.to_array(rows)?, &DataType::Int64)?;
        let starts = starts.as_primitive::<Int64Type>();
        let mut values = Vec::with_capacity(rows * count);
        let mut valid = Vec::with_capacity(rows);
        for row in 0..rows {
            let (Some(v), true) = (vectors.get(row), starts.is_valid(row)) else {
                values.extend(std::iter::repeat_n(0.0, count));
                valid.push(false);
                continue;
            };
            let first = starts.value(row);
            let last = first.saturating_add(count as i64 - 1);
            if first < 1 || last > i64::from(dim) {
                return Err(DataFusionError::Execution(format!(
                    "subvector range {first}..{last} is outside a vector of {dim} dimensions"
                )));
            }
            let from = (first - 1) as usize;
            values.extend_from_slice(&v[from..from + count]);
            valid.push(true);
        }
        Ok(ColumnarValue::Array(vector_array(
            count as i32,
            values,
            valid,
        )?))
    }
}
