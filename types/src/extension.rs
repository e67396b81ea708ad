//! The SQL types Sluice adds to DataFusion, each an Arrow storage type plus
//! field-level extension metadata (`ARROW:extension:name`), using Arrow's
//! canonical extension types where one exists.

use std::collections::HashMap;
use std::fmt;

use arrow_schema::extension::{EXTENSION_TYPE_METADATA_KEY, EXTENSION_TYPE_NAME_KEY};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;

use crate::tensor::{TensorElement, TensorShape};

/// A Sluice SQL type that plain Arrow cannot express by storage type alone.
///
/// Multimodal types (EMBEDDING, TENSOR, IMAGE, AUDIO, OBJECT_REF) join this
/// list; everything that must know about a type (SQL planning, casts, the
/// wire encoding) dispatches on it, so adding a type is adding a variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SluiceType {
    /// `UUID`: 16 bytes, Arrow's canonical `arrow.uuid`.
    Uuid,
    /// `JSON` / `JSONB`: UTF-8 text holding one valid JSON value, Arrow's
    /// canonical `arrow.json`.
    Json,
    /// `EMBEDDING(n)` / `VECTOR(n)`: `n` finite float32 values, stored as a
    /// `FixedSizeList<Float32>(n)` (no canonical Arrow type exists).
    Vector(i32),
    /// `TENSOR(elem, [d1,…])` (fixed shape: Arrow's canonical
    /// `arrow.fixed_shape_tensor`) or `TENSOR(elem)` (any shape), see
    /// [`crate::tensor`].
    Tensor(TensorElement, Option<TensorShape>),
    /// `IMAGE`: encoded bytes plus format, width and height.
    Image,
    /// `AUDIO`: encoded bytes plus format, sample rate, channels, duration.
    Audio,
    /// `OBJECT_REF`: a blob in object storage, by reference.
    ObjectRef,
}

/// The largest vector dimension accepted (pgvector's limit).
pub const MAX_VECTOR_DIMENSIONS: i32 = 16000;

impl SluiceType {
    /// Postgres' error for text that is not a value of this type
    /// (`invalid input syntax for type uuid: "x"`, SQLSTATE 22P02).
    pub fn invalid_input(&self, text: &str) -> DataFusionError {
        DataFusionError::ArrowError(
            Box::new(ArrowError::ParseError(format!(
                "invalid input syntax for type {self}: \"{text}\""
            ))),
            None,
        )
    }

    /// The Sluice types without parameters (parametric ones, such as
    /// `VECTOR(n)`, exist once per parameter value).
    pub const SIMPLE: [SluiceType; 5] = [
        SluiceType::Uuid,
        SluiceType::Json,
        SluiceType::Image,
        SluiceType::Audio,
        SluiceType::ObjectRef,
    ];

    /// The Arrow extension name stored in field metadata.
    pub fn extension_name(self) -> &'static str {
        match self {
            SluiceType::Uuid => "arrow.uuid",
            SluiceType::Json => "arrow.json",
            SluiceType::Vector(_) => "sluice.vector",
            SluiceType::Tensor(_, Some(_)) => "arrow.fixed_shape_tensor",
            SluiceType::Tensor(_, None) => "sluice.tensor",
            SluiceType::Image => "sluice.image",
            SluiceType::Audio => "sluice.audio",
            SluiceType::ObjectRef => "sluice.object_ref",
        }
    }

    /// The name SQL users write and see in errors.
    pub fn sql_name(self) -> &'static str {
        match self {
            SluiceType::Uuid => "uuid",
            SluiceType::Json => "json",
            SluiceType::Vector(_) => "vector",
            SluiceType::Tensor(..) => "tensor",
            SluiceType::Image => "image",
            SluiceType::Audio => "audio",
            SluiceType::ObjectRef => "object_ref",
        }
    }

    /// The SQL type a value is cast to, to become this type.
    pub fn sql_data_type(self) -> datafusion::sql::sqlparser::ast::DataType {
        use datafusion::sql::sqlparser::ast::{DataType as Sql, Ident, ObjectName};
        let custom = |modifiers: Vec<String>| {
            Sql::Custom(
                ObjectName::from(vec![Ident::new(self.sql_name())]),
                modifiers,
            )
        };
        match self {
            SluiceType::Uuid => Sql::Uuid,
            SluiceType::Json => Sql::JSON,
            SluiceType::Vector(dim) => custom(vec![dim.to_string()]),
            SluiceType::Tensor(elem, shape) => custom(
                std::iter::once(elem.sql_name().to_owned())
                    .chain(shape.iter().flat_map(|s| s.dims()).map(|d| d.to_string()))
                    .collect(),
            ),
            SluiceType::Image | SluiceType::Audio | SluiceType::ObjectRef => custom(vec![]),
        }
    }

    /// The full type name, as `format_type` and psql's `\d` show it:
    /// `vector(3)`, `tensor(float32,[3,224,224])`, `image`.
    pub fn type_name(self) -> String {
        match self {
            SluiceType::Vector(dim) => format!("vector({dim})"),
            SluiceType::Tensor(elem, Some(shape)) => {
                format!("tensor({},{shape})", elem.sql_name())
            }
            SluiceType::Tensor(elem, None) => format!("tensor({})", elem.sql_name()),
            other => other.sql_name().to_owned(),
        }
    }

    /// The Arrow type values are stored as.
    pub fn storage_type(self) -> DataType {
        match self {
            SluiceType::Uuid => DataType::FixedSizeBinary(16),
            SluiceType::Json => DataType::Utf8,
            SluiceType::Vector(dim) => vector_storage(dim),
            SluiceType::Tensor(elem, Some(shape)) => crate::tensor::fixed_storage(elem, shape),
            SluiceType::Tensor(elem, None) => crate::tensor::variable_storage(elem),
            SluiceType::Image => DataType::Struct(crate::media::image_fields()),
            SluiceType::Audio => DataType::Struct(crate::media::audio_fields()),
            SluiceType::ObjectRef => crate::object_ref::storage(),
        }
    }

    /// The field metadata that marks a column as this type.
    pub fn metadata(self) -> HashMap<String, String> {
        let mut metadata = HashMap::new();
        metadata.insert(
            EXTENSION_TYPE_NAME_KEY.to_owned(),
            self.extension_name().to_owned(),
        );
        let extension_metadata = match self {
            // The canonical JSON type's metadata is an (empty) JSON object.
            SluiceType::Json => Some("{}".to_owned()),
            SluiceType::Tensor(elem, Some(shape)) => crate::tensor::fixed_metadata(elem, shape),
            _ => None,
        };
        if let Some(value) = extension_metadata {
            metadata.insert(EXTENSION_TYPE_METADATA_KEY.to_owned(), value);
        }
        metadata
    }

    /// A field of this type.
    pub fn field(self, name: &str, nullable: bool) -> Field {
        Field::new(name, self.storage_type(), nullable).with_metadata(self.metadata())
    }

    /// A nullable, unnamed field of this type, as the type planner returns.
    pub fn field_ref(self) -> FieldRef {
        std::sync::Arc::new(self.field("", true))
    }

    /// The Sluice type a field carries, if any. A field whose storage type
    /// does not match its extension name is not trusted as that type.
    pub fn of_field(field: &Field) -> Option<SluiceType> {
        let name = field.metadata().get(EXTENSION_TYPE_NAME_KEY)?;
        let ty = match name.as_str() {
            "arrow.uuid" => SluiceType::Uuid,
            "arrow.json" => SluiceType::Json,
            "sluice.vector" => match field.data_type() {
                DataType::FixedSizeList(_, dim) => SluiceType::Vector(*dim),
                _ => return None,
            },
            "arrow.fixed_shape_tensor" => {
                let DataType::FixedSizeList(item, _) = field.data_type() else {
                    return None;
                };
                let shape = field
                    .metadata()
                    .get(EXTENSION_TYPE_METADATA_KEY)
                    .and_then(|m| crate::tensor::shape_of_metadata(m))?;
                SluiceType::Tensor(TensorElement::of_data_type(item.data_type())?, Some(shape))
            }
            "sluice.tensor" => {
                let DataType::Struct(fields) = field.data_type() else {
                    return None;
                };
                let DataType::List(item) = fields.find("data")?.1.data_type() else {
                    return None;
                };
                SluiceType::Tensor(TensorElement::of_data_type(item.data_type())?, None)
            }
            "sluice.image" => SluiceType::Image,
            "sluice.audio" => SluiceType::Audio,
            "sluice.object_ref" => SluiceType::ObjectRef,
            _ => return None,
        };
        is_storage_of(ty, field.data_type()).then_some(ty)
    }
}

/// Whether `data_type` is the storage of `ty`.
pub fn is_storage_of(ty: SluiceType, data_type: &DataType) -> bool {
    match ty {
        SluiceType::Uuid => data_type == &DataType::FixedSizeBinary(16),
        SluiceType::Json => matches!(
            data_type,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
        SluiceType::Vector(dim) => matches!(
            data_type,
            DataType::FixedSizeList(item, d) if *d == dim && item.data_type() == &DataType::Float32
        ),
        // Item nullability is not part of the type: DataFusion's list
        // kernels make items nullable.
        SluiceType::Tensor(elem, Some(shape)) => matches!(
            data_type,
            DataType::FixedSizeList(item, d)
                if usize::try_from(*d).ok() == Some(shape.len())
                    && item.data_type() == &elem.data_type()
        ),
        SluiceType::Tensor(_, None)
        | SluiceType::Image
        | SluiceType::Audio
        | SluiceType::ObjectRef => same_struct(data_type, &ty.storage_type()),
    }
}

/// Structs with the same field names and types (nullability aside).
fn same_struct(found: &DataType, expected: &DataType) -> bool {
    match (found, expected) {
        (DataType::Struct(found), DataType::Struct(expected)) => {
            found.len() == expected.len()
                && found.iter().zip(expected.iter()).all(|(f, e)| {
                    f.name() == e.name()
                        && (f.data_type() == e.data_type()
                            || same_list_item(f.data_type(), e.data_type()))
                })
        }
        _ => false,
    }
}

fn same_list_item(found: &DataType, expected: &DataType) -> bool {
    matches!((found, expected), (DataType::List(f), DataType::List(e)) if f.data_type() == e.data_type())
}

/// The Sluice type text must become when it is cast to a bare storage type
/// (DataFusion's planning sometimes drops field metadata, e.g. the casts of
/// INSERT and of bound parameters): Arrow cannot cast text to these storage
/// types at all, so the reading is unambiguous.
pub fn text_target_of_storage(data_type: &DataType) -> Option<SluiceType> {
    match data_type {
        DataType::FixedSizeBinary(16) => Some(SluiceType::Uuid),
        // A vector's items are nullable (as DataFusion's list kernels make
        // them); a fixed-shape tensor's are not, and its shape is unknown
        // here.
        DataType::FixedSizeList(item, dim)
            if item.data_type() == &DataType::Float32 && item.is_nullable() =>
        {
            Some(SluiceType::Vector(*dim))
        }
        // Each struct layout belongs to one Sluice type.
        DataType::Struct(_) => [SluiceType::Image, SluiceType::Audio, SluiceType::ObjectRef]
            .into_iter()
            .chain(TensorElement::ALL.map(|e| SluiceType::Tensor(e, None)))
            .find(|ty| is_storage_of(*ty, data_type)),
        _ => None,
    }
}

/// The storage of `VECTOR(dim)`. Elements are never NULL, but the item field
/// is nullable as DataFusion's list kernels produce.
pub fn vector_storage(dim: i32) -> DataType {
    DataType::FixedSizeList(
        std::sync::Arc::new(Field::new_list_field(DataType::Float32, true)),
        dim,
    )
}

impl fmt::Display for SluiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.sql_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip() {
        let shape = TensorShape::try_new(&[2, 3]).unwrap();
        for ty in [
            SluiceType::Uuid,
            SluiceType::Json,
            SluiceType::Vector(3),
            SluiceType::Tensor(TensorElement::UInt8, Some(shape)),
            SluiceType::Tensor(TensorElement::Float16, None),
            SluiceType::Image,
            SluiceType::Audio,
            SluiceType::ObjectRef,
        ] {
            assert_eq!(SluiceType::of_field(&ty.field("c", true)), Some(ty));
        }
        let plain = Field::new("c", DataType::Utf8, true);
        assert_eq!(SluiceType::of_field(&plain), None);
        let lying =
            Field::new("c", DataType::Int32, true).with_metadata(SluiceType::Uuid.metadata());
        assert_eq!(SluiceType::of_field(&lying), None);
    }
}
