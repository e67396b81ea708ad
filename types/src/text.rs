//! Text input and output of Sluice types: what `'…'::uuid` parses and what
//! a client sees in text format. Errors follow Postgres's wording
//! (`invalid input syntax for type uuid: "…"`) and surface as SQLSTATE 22P02.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, FixedSizeBinaryBuilder, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};

use crate::extension::SluiceType;

/// Parses every string of `text` (any Arrow string type) as a value of `ty`,
/// returning the type's storage array. NULL stays NULL.
pub fn parse_array(ty: SluiceType, text: &dyn Array) -> Result<ArrayRef> {
    let strings = string_values(text)?;
    match ty {
        SluiceType::Uuid => {
            let mut out = FixedSizeBinaryBuilder::with_capacity(strings.len(), 16);
            for value in strings {
                match value {
                    Some(s) => out.append_value(parse_uuid(s)?)?,
                    None => out.append_null(),
                }
            }
            Ok(Arc::new(out.finish()))
        }
        SluiceType::Vector(dim) => crate::vector::parse_vectors(dim, &strings),
        SluiceType::Json => {
            let mut out = StringBuilder::with_capacity(strings.len(), 0);
            for value in strings {
                if let Some(s) = value {
                    validate_json(s)?;
                }
                out.append_option(value);
            }
            Ok(Arc::new(out.finish()))
        }
        SluiceType::Tensor(elem, shape) => {
            let values = strings
                .iter()
                .map(|s| s.map(|s| crate::tensor::parse_tensor(s, elem)).transpose())
                .collect::<Result<Vec<_>>>()?;
            crate::tensor::tensor_array(elem, shape, &values)
        }
        SluiceType::Image | SluiceType::Audio => {
            let bytes = strings
                .iter()
                .map(|s| s.map(crate::media::parse_bytea).transpose())
                .collect::<Result<Vec<_>>>()?;
            let values = bytes.iter().map(Option::as_deref);
            if ty == SluiceType::Image {
                crate::media::image_array(values)
            } else {
                crate::media::audio_array(values)
            }
        }
        SluiceType::ObjectRef => {
            let refs = strings
                .iter()
                .map(|s| s.map(crate::object_ref::parse_object_ref).transpose())
                .collect::<Result<Vec<_>>>()?;
            crate::object_ref::object_ref_array(&refs)
        }
    }
}

/// Renders every value of `values` (stored as `ty`) as text.
pub fn format_array(ty: SluiceType, values: &dyn Array) -> Result<ArrayRef> {
    let mut out = StringBuilder::with_capacity(values.len(), 0);
    let mut buf = String::new();
    for idx in 0..values.len() {
        if values.is_null(idx) {
            out.append_null();
        } else {
            buf.clear();
            format_value(ty, values, idx, &mut buf)?;
            out.append_value(&buf);
        }
    }
    Ok(Arc::new(out.finish()) as ArrayRef)
}

/// Appends the text form of the non-null value at `idx` to `out`.
pub fn format_value(
    ty: SluiceType,
    values: &dyn Array,
    idx: usize,
    out: &mut String,
) -> Result<()> {
    match ty {
        SluiceType::Uuid => {
            let bytes = values
                .as_fixed_size_binary_opt()
                .ok_or_else(|| storage_error(ty, values.data_type()))?
                .value(idx);
            let uuid = uuid::Uuid::from_slice(bytes).map_err(|e| {
                DataFusionError::Internal(format!("uuid value of {} bytes: {e}", bytes.len()))
            })?;
            out.push_str(
                uuid.hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer()),
            );
        }
        SluiceType::Json => out.push_str(
            string_value(values, idx).ok_or_else(|| storage_error(ty, values.data_type()))?,
        ),
        SluiceType::Vector(_) => {
            let list = values
                .as_fixed_size_list_opt()
                .ok_or_else(|| storage_error(ty, values.data_type()))?;
            crate::vector::format_vector(&crate::vector::elements(list, idx)?, out);
        }
        SluiceType::Tensor(_, shape) => {
            let (dims, elements) = crate::tensor::tensor_at(values, shape, idx)?;
            crate::tensor::format_tensor(&dims, elements.as_ref(), out)?;
        }
        SluiceType::Image | SluiceType::Audio => {
            crate::media::format_bytea(crate::media::encoded_bytes(values, idx)?, out)
        }
        SluiceType::ObjectRef => {
            if let Some(r) = crate::object_ref::object_ref_at(values, idx)? {
                crate::object_ref::format_object_ref(&r, out);
            }
        }
    }
    Ok(())
}

/// Parses one UUID the way Postgres accepts them: 32 hex digits, with or
/// without hyphens, optionally in braces or as a `urn:uuid:` URN.
pub fn parse_uuid(s: &str) -> Result<[u8; 16]> {
    uuid::Uuid::try_parse(s.trim())
        .map(|u| *u.as_bytes())
        .map_err(|_| SluiceType::Uuid.invalid_input(s))
}

/// Checks that `s` is one JSON value.
pub fn validate_json(s: &str) -> Result<()> {
    serde_json::from_str::<serde::de::IgnoredAny>(s)
        .map(|_| ())
        .map_err(|_| SluiceType::Json.invalid_input(s))
}

pub(crate) fn storage_error(ty: SluiceType, found: &DataType) -> DataFusionError {
    DataFusionError::Internal(format!("{ty} values stored as {found}"))
}

/// The strings of any Arrow string array, as one iterator type.
fn string_values(array: &dyn Array) -> Result<Vec<Option<&str>>> {
    Ok(match array.data_type() {
        DataType::Utf8 => array.as_string::<i32>().iter().collect(),
        DataType::LargeUtf8 => array.as_string::<i64>().iter().collect(),
        DataType::Utf8View => array.as_string_view().iter().collect(),
        DataType::Null => vec![None; array.len()],
        other => {
            return Err(DataFusionError::Plan(format!(
                "cannot read text from a value of type {other}"
            )));
        }
    })
}

fn string_value(array: &dyn Array, idx: usize) -> Option<&str> {
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().value(idx)),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().value(idx)),
        DataType::Utf8View => Some(array.as_string_view().value(idx)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    #[test]
    fn uuid_forms_postgres_accepts() {
        let canonical = parse_uuid("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11").unwrap();
        for form in [
            "A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
            "{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
            "a0eebc999c0b4ef8bb6d6bb9bd380a11",
            "urn:uuid:a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        ] {
            assert_eq!(parse_uuid(form).unwrap(), canonical, "{form}");
        }
        let err = parse_uuid("not-a-uuid").unwrap_err().to_string();
        assert!(err.contains("invalid input syntax for type uuid"), "{err}");
    }

    #[test]
    fn uuid_text_round_trip_and_nulls() {
        let text = StringArray::from(vec![Some("A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11"), None]);
        let stored = parse_array(SluiceType::Uuid, &text).unwrap();
        let back = format_array(SluiceType::Uuid, &stored).unwrap();
        let back = back.as_string::<i32>();
        assert_eq!(back.value(0), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        assert!(back.is_null(1));
    }

    #[test]
    fn json_is_validated() {
        let ok = StringArray::from(vec![r#"{"a": [1, 2]}"#, "3", "\"s\"", "null"]);
        assert!(parse_array(SluiceType::Json, &ok).is_ok());
        let bad = StringArray::from(vec!["{\"a\": "]);
        let err = parse_array(SluiceType::Json, &bad).unwrap_err().to_string();
        assert!(err.contains("invalid input syntax for type json"), "{err}");
    }
}
