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
}

impl SluiceType {
    /// Every Sluice type.
    pub const ALL: [SluiceType; 2] = [SluiceType::Uuid, SluiceType::Json];

    /// The Arrow extension name stored in field metadata.
    pub fn extension_name(self) -> &'static str {
        match self {
            SluiceType::Uuid => "arrow.uuid",
            SluiceType::Json => "arrow.json",
        }
    }

    /// The name SQL users write and see in errors.
    pub fn sql_name(self) -> &'static str {
        match self {
            SluiceType::Uuid => "uuid",
            SluiceType::Json => "json",
        }
    }

    /// The SQL type a value is cast to, to become this type.
    pub fn sql_data_type(self) -> datafusion::sql::sqlparser::ast::DataType {
        use datafusion::sql::sqlparser::ast::DataType as Sql;
        match self {
            SluiceType::Uuid => Sql::Uuid,
            SluiceType::Json => Sql::JSON,
        }
    }

    /// The Arrow type values are stored as.
    pub fn storage_type(self) -> DataType {
        match self {
            SluiceType::Uuid => DataType::FixedSizeBinary(16),
            SluiceType::Json => DataType::Utf8,
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
        SluiceType::ALL
            .into_iter()
            .find(|t| t.extension_name() == name && is_storage_of(*t, field.data_type()))
    }
}

fn is_storage_of(ty: SluiceType, data_type: &DataType) -> bool {
    match ty {
        SluiceType::Uuid => data_type == &DataType::FixedSizeBinary(16),
        SluiceType::Json => matches!(
            data_type,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ),
    }
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
        for ty in SluiceType::ALL {
            assert_eq!(SluiceType::of_field(&ty.field("c", true)), Some(ty));
        }
        let plain = Field::new("c", DataType::Utf8, true);
        assert_eq!(SluiceType::of_field(&plain), None);
        let lying =
            Field::new("c", DataType::Int32, true).with_metadata(SluiceType::Uuid.metadata());
        assert_eq!(SluiceType::of_field(&lying), None);
    }
}
