//! The SQL types Sluice adds to DataFusion, each an Arrow storage type plus
//! field-level extension metadata (`ARROW:extension:name`), using Arrow's
//! canonical extension types where one exists.

use std::collections::HashMap;
use std::fmt;

use arrow_schema::extension::{EXTENSION_TYPE_METADATA_KEY, EXTENSION_TYPE_NAME_KEY};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};

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
}

/// The largest vector dimension accepted (pgvector's limit).
pub const MAX_VECTOR_DIMENSIONS: i32 = 16000;

impl SluiceType {
    /// The Sluice types without parameters (parametric ones, such as
    /// `VECTOR(n)`, exist once per parameter value).
    pub const SIMPLE: [SluiceType; 2] = [SluiceType::Uuid, SluiceType::Json];

    /// The Arrow extension name stored in field metadata.
    pub fn extension_name(self) -> &'static str {
        match self {
            SluiceType::Uuid => "arrow.uuid",
            SluiceType::Json => "arrow.json",
            SluiceType::Vector(_) => "sluice.vector",
        }
    }

    /// The name SQL users write and see in errors.
    pub fn sql_name(self) -> &'static str {
        match self {
            SluiceType::Uuid => "uuid",
            SluiceType::Json => "json",
            SluiceType::Vector(_) => "vector",
        }
    }

    /// The SQL type a value is cast to, to become this type.
    pub fn sql_data_type(self) -> datafusion::sql::sqlparser::ast::DataType {
        use datafusion::sql::sqlparser::ast::DataType as Sql;
        match self {
            SluiceType::Uuid => Sql::Uuid,
            SluiceType::Json => Sql::JSON,
            SluiceType::Vector(dim) => Sql::Custom(
                datafusion::sql::sqlparser::ast::ObjectName::from(vec![
                    datafusion::sql::sqlparser::ast::Ident::new("vector"),
                ]),
                vec![dim.to_string()],
            ),
        }
    }

    /// The Arrow type values are stored as.
    pub fn storage_type(self) -> DataType {
        match self {
            SluiceType::Uuid => DataType::FixedSizeBinary(16),
            SluiceType::Json => DataType::Utf8,
            SluiceType::Vector(dim) => vector_storage(dim),
        }
    }

    /// The field metadata that marks a column as this type.
    pub fn metadata(self) -> HashMap<String, String> {
        let mut metadata = HashMap::new();
        metadata.insert(
            EXTENSION_TYPE_NAME_KEY.to_owned(),
            self.extension_name().to_owned(),
        );
        // The canonical JSON type's metadata is an (empty) JSON object.
        if self == SluiceType::Json {
            metadata.insert(EXTENSION_TYPE_METADATA_KEY.to_owned(), "{}".to_owned());
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
            _ => return None,
        };
        is_storage_of(ty, field.data_type()).then_some(ty)
    }
}

fn is_storage_of(ty: SluiceType, data_type: &DataType) -> bool {
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
    }
}

/// The Sluice type text must become when it is cast to a bare storage type
/// (DataFusion's planning sometimes drops field metadata, e.g. the casts of
/// INSERT and of bound parameters): Arrow cannot cast text to these storage
/// types at all, so the reading is unambiguous.
pub fn text_target_of_storage(data_type: &DataType) -> Option<SluiceType> {
    match data_type {
        DataType::FixedSizeBinary(16) => Some(SluiceType::Uuid),
        DataType::FixedSizeList(item, dim) if item.data_type() == &DataType::Float32 => {
            Some(SluiceType::Vector(*dim))
        }
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
        for ty in [SluiceType::Uuid, SluiceType::Json, SluiceType::Vector(3)] {
            assert_eq!(SluiceType::of_field(&ty.field("c", true)), Some(ty));
        }
        let plain = Field::new("c", DataType::Utf8, true);
        assert_eq!(SluiceType::of_field(&plain), None);
        let lying =
            Field::new("c", DataType::Int32, true).with_metadata(SluiceType::Uuid.metadata());
        assert_eq!(SluiceType::of_field(&lying), None);
    }
}
