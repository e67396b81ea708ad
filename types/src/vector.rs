//! `VECTOR(n)` values: pgvector's text form (`[1,2.5,3]`) and binary form
//! (int16 dimension, int16 unused, then big-endian float4s), and the checks
//! pgvector makes: every element finite, the dimension the column declares.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, FixedSizeListArray, Float32Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::datatypes::{DataType, Field, Float32Type};
use datafusion::error::{DataFusionError, Result};

use crate::error::{SluiceError, SqlState};
use crate::extension::{MAX_VECTOR_DIMENSIONS, SluiceType};
use crate::float_text::format_f32;

/// Parses text vectors into `FixedSizeList<Float32>(dim)` storage.
pub fn parse_vectors(dim: i32, strings: &[Option<&str>]) -> Result<ArrayRef> {
    let width = usize::try_from(dim).map_err(|_| bad_dimension(dim))?;
    let mut values = Vec::with_capacity(strings.len() * width);
    let mut valid = Vec::with_capacity(strings.len());
    for value in strings {
        match value {
            Some(text) => {
                let parsed = parse_vector(text)?;
                check_dimension(dim, parsed.len())?;
                values.extend_from_slice(&parsed);
                valid.push(true);
            }
            None => {
                values.extend(std::iter::repeat_n(0.0, width));
                valid.push(false);
            }
        }
    }
    vector_array(dim, values, valid)
}

/// `VECTOR(dim)` storage from row-major elements (`dim` per row; rows that
/// are NULL hold placeholder elements) and per-row validity.
pub fn vector_array(dim: i32, values: Vec<f32>, valid: Vec<bool>) -> Result<ArrayRef> {
    let nulls = valid.iter().any(|v| !v).then(|| NullBuffer::from(valid));
    let list = FixedSizeListArray::try_new(
        Arc::new(Field::new_list_field(DataType::Float32, true)),
        dim,
        Arc::new(Float32Array::from(values)),
        nulls,
    )?;
    Ok(Arc::new(list))
}

/// Parses one vector in pgvector's text form.
pub fn parse_vector(text: &str) -> Result<Vec<f32>> {
    let ty = SluiceType::Vector(0);
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .ok_or_else(|| ty.invalid_input(text))?;
    if inner.trim().is_empty() {
        return Err(DataFusionError::Execution(
            "vector must have at least 1 dimension".into(),
        ));
    }
    let values = inner
        .split(',')
        .map(|part| {
            part.trim()
                .parse::<f32>()
                .map_err(|_| ty.invalid_input(text))
        })
        .collect::<Result<Vec<f32>>>()?;
    check_finite(&values)?;
    Ok(values)
}

/// pgvector's errors for NaN and infinite elements.
pub fn check_finite(values: &[f32]) -> Result<()> {
    for v in values {
        if v.is_nan() {
            return Err(DataFusionError::Execution(
                "NaN not allowed in vector".into(),
            ));
        }
        if v.is_infinite() {
            return Err(DataFusionError::Execution(
                "infinite value not allowed in vector".into(),
            ));
        }
    }
    Ok(())
}

/// pgvector's error for a vector of the wrong length.
pub fn check_dimension(expected: i32, found: usize) -> Result<()> {
    if usize::try_from(expected).ok() != Some(found) {
        return Err(DataFusionError::Execution(format!(
            "expected {expected} dimensions, not {found}"
        )));
    }
    Ok(())
}

/// The error for a dimension outside 1..=16000.
pub fn bad_dimension(dim: i32) -> DataFusionError {
    DataFusionError::from(SluiceError::new(
        SqlState::INVALID_PARAMETER_VALUE,
        format!(
            "dimensions for type vector must be between 1 and {MAX_VECTOR_DIMENSIONS}, not {dim}"
        ),
    ))
}

/// The elements of the vector at `idx`.
pub fn elements(list: &FixedSizeListArray, idx: usize) -> Result<Vec<f32>> {
    let value = list.value(idx);
    let floats = value.as_primitive_opt::<Float32Type>().ok_or_else(|| {
        DataFusionError::Internal(format!("vector elements stored as {}", value.data_type()))
    })?;
    Ok(floats.values().to_vec())
}

/// Appends pgvector's text form: `[1,2.5,3]`.
pub fn format_vector(values: &[f32], out: &mut String) {
    out.push('[');
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format_f32(*v));
    }
    out.push(']');
}

/// Appends pgvector's binary form.
pub fn encode_binary(values: &[f32], out: &mut Vec<u8>) -> Result<()> {
    let dim = u16::try_from(values.len())
        .map_err(|_| DataFusionError::Internal("vector too long for the wire".into()))?;
    out.extend_from_slice(&dim.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    for v in values {
        out.extend_from_slice(&v.to_be_bytes());
    }
    Ok(())
}

/// Reads pgvector's binary form.
pub fn decode_binary(bytes: &[u8]) -> Result<Vec<f32>> {
    let malformed = || DataFusionError::Execution("malformed binary vector".into());
    let (header, body) = bytes.split_at_checked(4).ok_or_else(malformed)?;
    let dim = usize::from(u16::from_be_bytes([header[0], header[1]]));
    if body.len() != dim * 4 {
        return Err(malformed());
    }
    let values: Vec<f32> = body
        .chunks_exact(4)
        .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    check_finite(&values)?;
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form_round_trips() {
        let v = parse_vector(" [1, 2.5 ,-3e-7] ").unwrap();
        assert_eq!(v, vec![1.0, 2.5, -3e-7]);
        let mut s = String::new();
        format_vector(&v, &mut s);
        assert_eq!(s, "[1,2.5,-3e-07]");
    }

    #[test]
    fn pgvector_errors() {
        for (text, message) in [
            ("[1,NaN]", "NaN not allowed in vector"),
            ("[1,inf]", "infinite value not allowed in vector"),
            ("[]", "at least 1 dimension"),
            ("1,2", "invalid input syntax for type vector"),
            ("[1,x]", "invalid input syntax for type vector"),
        ] {
            let err = parse_vector(text).unwrap_err().to_string();
            assert!(err.contains(message), "{text}: {err}");
        }
        let err = parse_vectors(3, &[Some("[1,2]")]).unwrap_err().to_string();
        assert!(err.contains("expected 3 dimensions, not 2"), "{err}");
    }

    #[test]
    fn binary_form_round_trips() {
        let mut bytes = Vec::new();
        encode_binary(&[1.0, -2.0], &mut bytes).unwrap();
        assert_eq!(&bytes[..4], &[0, 2, 0, 0]);
        assert_eq!(decode_binary(&bytes).unwrap(), vec![1.0, -2.0]);
        assert!(decode_binary(&bytes[..5]).is_err());
    }

    #[test]
    fn nulls_survive_parsing() {
        let parsed = parse_vectors(2, &[Some("[1,2]"), None]).unwrap();
        assert!(parsed.is_null(1));
        assert_eq!(parsed.len(), 2);
    }
}
