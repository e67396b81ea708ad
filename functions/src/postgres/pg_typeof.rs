//! `pg_typeof(any) → text`: the Postgres name of a value's type, as
//! `format_type` spells it (`integer`, `double precision`, `vector`, …).
//! People and tools use it to see how an expression was typed; DataFusion
//! has only `arrow_typeof`, in Arrow's names.

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use sluice_types::extension::SluiceType;

/// `pg_typeof(value)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgTypeofFunc {
    signature: Signature,
}

impl Default for PgTypeofFunc {
    fn default() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

/// The Postgres name of a column's type: a Sluice type by its catalog
/// name, any other by the Postgres type its Arrow type is sent as.
pub fn postgres_type_name(field: &Field) -> String {
    match SluiceType::of_field(field) {
        Some(ty) => sluice_types::wire::catalog_type(ty).name.to_owned(),
        None => arrow_type_name(field.data_type()),
    }
}

fn arrow_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Null => "unknown".into(),
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => "bigint".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Decimal32(..)
        | DataType::Decimal64(..)
        | DataType::Decimal128(..)
        | DataType::Decimal256(..) => "numeric".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "bytea".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Time32(_) | DataType::Time64(_) => "time without time zone".into(),
        DataType::Timestamp(_, None) => "timestamp without time zone".into(),
        DataType::Timestamp(_, Some(_)) => "timestamp with time zone".into(),
        DataType::Interval(_) | DataType::Duration(_) => "interval".into(),
        DataType::List(item)
        | DataType::LargeList(item)
        | DataType::ListView(item)
        | DataType::LargeListView(item)
        | DataType::FixedSizeList(item, _) => format!("{}[]", postgres_type_name(item)),
        DataType::Struct(_) => "record".into(),
        DataType::Dictionary(_, value) => arrow_type_name(value),
        other => other.to_string(),
    }
}

impl ScalarUDFImpl for PgTypeofFunc {
    fn name(&self) -> &str {
        "pg_typeof"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let field = args
            .arg_fields
            .first()
            .ok_or_else(|| DataFusionError::Plan("pg_typeof takes one argument".into()))?;
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
            postgres_type_name(field),
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::TimeUnit;

    #[test]
    fn names_as_postgres_formats_them() {
        let name = |t: DataType| postgres_type_name(&Field::new("x", t, true));
        assert_eq!(name(DataType::Int32), "integer");
        assert_eq!(name(DataType::Float64), "double precision");
        assert_eq!(
            name(DataType::Timestamp(
                TimeUnit::Nanosecond,
                Some("UTC".into())
            )),
            "timestamp with time zone"
        );
        assert_eq!(name(DataType::new_list(DataType::Utf8, true)), "text[]");
    }
}
