//! `to_regtype(text) → oid`: a type name to its OID, NULL when unknown.
//! Drivers resolve extension types by name with it (psycopg's
//! `TypeInfo.fetch`, which pgvector's `register_vector` uses).

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int32Builder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// Type names Sluice can produce, with their `pg_type` OIDs. A fixed table:
/// the set of types is fixed at build time, and a UDF cannot query
/// `pg_catalog.pg_type` while a query runs.
const TYPE_OIDS: &[(&str, i32)] = &[
    ("bool", 16),
    ("boolean", 16),
    ("bytea", 17),
    ("bit", 1560),
    ("int8", 20),
    ("bigint", 20),
    ("int2", 21),
    ("smallint", 21),
    ("int4", 23),
    ("integer", 23),
    ("int", 23),
    ("text", 25),
    ("oid", 26),
    ("json", 114),
    ("float4", 700),
    ("real", 700),
    ("float8", 701),
    ("double precision", 701),
    ("varchar", 1043),
    ("character varying", 1043),
    ("date", 1082),
    ("time", 1083),
    ("timestamp", 1114),
    ("timestamp without time zone", 1114),
    ("timestamptz", 1184),
    ("timestamp with time zone", 1184),
    ("interval", 1186),
    ("numeric", 1700),
    ("uuid", 2950),
    ("jsonb", 3802),
    ("vector", sluice_types::wire::VECTOR_OID as i32),
    ("_vector", sluice_types::wire::VECTOR_ARRAY_OID as i32),
];

/// `to_regtype(name)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToRegtypeFunc {
    signature: Signature,
}

impl Default for ToRegtypeFunc {
    fn default() -> Self {
        Self {
            signature: Signature::string(1, Volatility::Immutable),
        }
    }
}

/// The OID of a (possibly schema-qualified, possibly quoted) type name.
pub fn type_oid(name: &str) -> Option<i32> {
    let name = name.trim();
    let unqualified = name
        .strip_prefix("pg_catalog.")
        .or_else(|| name.strip_prefix("public."))
        .unwrap_or(name)
        .trim_matches('"')
        .to_ascii_lowercase();
    TYPE_OIDS
        .iter()
        .find(|(n, _)| *n == unqualified)
        .map(|(_, oid)| *oid)
}

impl ScalarUDFImpl for ToRegtypeFunc {
    fn name(&self) -> &str {
        "to_regtype"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [arg] = <[ColumnarValue; 1]>::try_from(args.args)
            .map_err(|_| DataFusionError::Plan("to_regtype takes one argument".into()))?;
        match arg {
            ColumnarValue::Scalar(scalar) => {
                let name = scalar.try_as_str().flatten();
                Ok(ColumnarValue::Scalar(ScalarValue::Int32(
                    name.and_then(type_oid),
                )))
            }
            ColumnarValue::Array(array) => {
                let strings = datafusion::arrow::compute::cast(&array, &DataType::Utf8)?;
                let strings = strings.as_string::<i32>();
                let mut out = Int32Builder::with_capacity(strings.len());
                for i in 0..strings.len() {
                    out.append_option(
                        (!strings.is_null(i))
                            .then(|| type_oid(strings.value(i)))
                            .flatten(),
                    );
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_like_postgres() {
        assert_eq!(type_oid("vector"), Some(16385));
        assert_eq!(type_oid("public.vector"), Some(16385));
        assert_eq!(type_oid("pg_catalog.INT4"), Some(23));
        assert_eq!(type_oid("no_such_type"), None);
    }
}
