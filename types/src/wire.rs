//! How Sluice types look on the Postgres wire: the type each is announced
//! as, and its text and binary encodings. Kept free of any wire-protocol
//! crate so the engine can render values exactly as a client sees them.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::error::{DataFusionError, Result};

use crate::extension::SluiceType;
use crate::text::format_value;

/// A Postgres type as RowDescription announces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgType {
    /// The type's OID in `pg_type`.
    pub oid: u32,
    /// The type's name in `pg_type`.
    pub name: &'static str,
}

/// The Postgres type a Sluice type is announced as.
pub fn pg_type(ty: SluiceType) -> PgType {
    match ty {
        SluiceType::Uuid => PgType {
            oid: 2950,
            name: "uuid",
        },
        SluiceType::Json => PgType {
            oid: 114,
            name: "json",
        },
        // pgvector's type is created by its extension, so its OID differs per
        // database; clients look it up by name in pg_type, where Sluice's
        // catalog lists it with this OID.
        SluiceType::Vector(_) => PgType {
            oid: VECTOR_OID,
            name: "vector",
        },
        // Postgres announces a domain column as its base type, and these are
        // listed in pg_type as domains: images and audio reach drivers as
        // bytes, tensors and object references as JSON they decode.
        SluiceType::Image | SluiceType::Audio => PgType {
            oid: 17,
            name: "bytea",
        },
        SluiceType::Tensor(..) | SluiceType::ObjectRef => PgType {
            oid: 114,
            name: "json",
        },
    }
}

/// The OID `pg_type` lists for `vector`.
pub const VECTOR_OID: u32 = 16385;

/// The OID `pg_type` lists for `_vector`, the array type pgvector's
/// `vector` has (drivers' adapters look both up).
pub const VECTOR_ARRAY_OID: u32 = 16394;

/// The OIDs `pg_type` lists for Sluice's domains (after pgvector's 16385).
pub const TENSOR_OID: u32 = 16390;
/// See [`TENSOR_OID`].
pub const IMAGE_OID: u32 = 16391;
/// See [`TENSOR_OID`].
pub const AUDIO_OID: u32 = 16392;
/// See [`TENSOR_OID`].
pub const OBJECT_REF_OID: u32 = 16393;

/// How a column of a Sluice type appears in `pg_attribute` and `pg_type`:
/// its type's OID and name, and the type modifier `format_type` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogType {
    /// OID in `pg_type`.
    pub oid: u32,
    /// Name in `pg_type`.
    pub name: &'static str,
    /// `atttypmod`: a vector's dimension; for tensors, a number standing
    /// for the element type and shape (see [`catalog_type_name`]); else -1.
    pub typmod: i32,
}

/// The catalog entry of a column of type `ty`.
pub fn catalog_type(ty: SluiceType) -> CatalogType {
    let (oid, name, typmod) = match ty {
        SluiceType::Uuid => (2950, "uuid", -1),
        SluiceType::Json => (114, "json", -1),
        SluiceType::Vector(dim) => (VECTOR_OID, "vector", dim),
        SluiceType::Tensor(..) => (TENSOR_OID, "tensor", tensor_typmod(ty)),
        SluiceType::Image => (IMAGE_OID, "image", -1),
        SluiceType::Audio => (AUDIO_OID, "audio", -1),
        SluiceType::ObjectRef => (OBJECT_REF_OID, "object_ref", -1),
    };
    CatalogType { oid, name, typmod }
}

/// Tensor types seen in catalogs, numbered: a shape does not fit in a
/// 32-bit type modifier, so the modifier is the type's number here. The
/// list only grows, by one entry per distinct tensor type a catalog query
/// has shown.
static TENSOR_TYPES: std::sync::Mutex<Vec<SluiceType>> = std::sync::Mutex::new(Vec::new());

fn tensor_typmod(ty: SluiceType) -> i32 {
    let Ok(mut known) = TENSOR_TYPES.lock() else {
        return -1;
    };
    let index = match known.iter().position(|t| *t == ty) {
        Some(i) => i,
        None => {
            known.push(ty);
            known.len() - 1
        }
    };
    i32::try_from(index).unwrap_or(-1)
}

/// The name `format_type(oid, typmod)` shows for a Sluice type's OID, or
/// `None` for other OIDs.
pub fn catalog_type_name(oid: u32, typmod: i32) -> Option<String> {
    Some(match oid {
        VECTOR_OID if typmod > 0 => format!("vector({typmod})"),
        VECTOR_OID => "vector".to_owned(),
        TENSOR_OID => usize::try_from(typmod)
            .ok()
            .and_then(|i| TENSOR_TYPES.lock().ok()?.get(i).copied())
            .map_or_else(|| "tensor".to_owned(), SluiceType::type_name),
        IMAGE_OID => "image".to_owned(),
        AUDIO_OID => "audio".to_owned(),
        OBJECT_REF_OID => "object_ref".to_owned(),
        _ => return None,
    })
}

/// Appends the text encoding of the non-null value at `idx`.
pub fn encode_text(
    ty: SluiceType,
    values: &dyn Array,
    idx: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    let mut text = String::new();
    format_value(ty, values, idx, &mut text)?;
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

/// Appends the binary encoding of the non-null value at `idx`: a UUID's 16
/// bytes; JSON's text (Postgres's binary `json` is its text).
pub fn encode_binary(
    ty: SluiceType,
    values: &dyn Array,
    idx: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    match ty {
        SluiceType::Uuid => {
            let bytes = values
                .as_fixed_size_binary_opt()
                .ok_or_else(|| {
                    DataFusionError::Internal("uuid values not in 16-byte storage".into())
                })?
                .value(idx);
            out.extend_from_slice(bytes);
            Ok(())
        }
        SluiceType::Json | SluiceType::Tensor(..) | SluiceType::ObjectRef => {
            encode_text(ty, values, idx, out)
        }
        SluiceType::Image | SluiceType::Audio => {
            out.extend_from_slice(crate::media::encoded_bytes(values, idx)?);
            Ok(())
        }
        SluiceType::Vector(_) => {
            let list = values.as_fixed_size_list_opt().ok_or_else(|| {
                DataFusionError::Internal("vector values not in list storage".into())
            })?;
            crate::vector::encode_binary(&crate::vector::elements(list, idx)?, out)
        }
    }
}

/// The text form of a parameter a client sent in binary, for types whose
/// binary form the wire layer cannot decode itself.
pub fn binary_parameter_to_text(ty: SluiceType, bytes: &[u8]) -> Result<String> {
    match ty {
        SluiceType::Uuid => uuid::Uuid::from_slice(bytes)
            .map(|u| u.hyphenated().to_string())
            .map_err(|_| {
                DataFusionError::Execution(format!(
                    "invalid binary uuid parameter of {} bytes",
                    bytes.len()
                ))
            }),
        SluiceType::Json | SluiceType::Tensor(..) | SluiceType::ObjectRef => {
            String::from_utf8(bytes.to_vec()).map_err(|_| {
                DataFusionError::Execution(format!("{ty} parameter is not valid UTF-8"))
            })
        }
        SluiceType::Image | SluiceType::Audio => {
            let mut text = String::new();
            crate::media::format_bytea(bytes, &mut text);
            Ok(text)
        }
        SluiceType::Vector(_) => {
            let mut text = String::new();
            crate::vector::format_vector(&crate::vector::decode_binary(bytes)?, &mut text);
            Ok(text)
        }
    }
}

/// The Sluice type whose announced Postgres type has this OID.
/// (Vectors come back as `Vector(0)`: the OID carries no dimension.)
pub fn sluice_type_for_oid(oid: u32) -> Option<SluiceType> {
    [SluiceType::Uuid, SluiceType::Json, SluiceType::Vector(0)]
        .into_iter()
        .find(|t| pg_type(*t).oid == oid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::FixedSizeBinaryArray;

    #[test]
    fn uuid_encodings() {
        let bytes = [
            0xa0u8, 0xee, 0xbc, 0x99, 0x9c, 0x0b, 0x4e, 0xf8, 0xbb, 0x6d, 0x6b, 0xb9, 0xbd, 0x38,
            0x0a, 0x11,
        ];
        let array = FixedSizeBinaryArray::try_from_iter([bytes].into_iter()).unwrap();
        let mut text = Vec::new();
        encode_text(SluiceType::Uuid, &array, 0, &mut text).unwrap();
        assert_eq!(text, b"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        let mut binary = Vec::new();
        encode_binary(SluiceType::Uuid, &array, 0, &mut binary).unwrap();
        assert_eq!(binary, bytes);
        assert_eq!(
            binary_parameter_to_text(SluiceType::Uuid, &bytes).unwrap(),
            "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        );
        assert!(binary_parameter_to_text(SluiceType::Uuid, &bytes[..3]).is_err());
    }
}
