//! Type names as OIDs, as Postgres' `regtype` input reads them:
//! `regtypein(text)`, what `'integer'::regtype` becomes
//! ([`crate::pg::reg_casts`]).
//!
//! A type is named as SQL writes it (`integer`, `double precision`,
//! `character varying(10)`, `timestamp with time zone`, `text[]`), by its
//! catalog name (`int4`, `_text`, `vector`), optionally qualified with
//! `pg_catalog.`; a modifier in parentheses is ignored, `[]` names the
//! array type. A string of digits is an OID already. A name that names no
//! type is 42704, `type "x" does not exist`.
//!
//! The library's reading of `'integer'::regtype` compares the string with
//! `pg_type.typname` only, so the SQL names failed, and a missing type
//! failed with a planning error.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::ArrowTable;
use sluice_types::error::{SluiceError, SqlState};

use crate::pg::catalog_rows::{Shared, oids_by_name, rows};

/// The function `'name'::regtype` is planned as.
pub const REGTYPE_IN: &str = "regtypein";

/// SQL's names for types whose catalog names differ, as Postgres' grammar
/// maps them.
const SQL_NAMES: [(&str, &str); 19] = [
    ("int", "int4"),
    ("integer", "int4"),
    ("smallint", "int2"),
    ("bigint", "int8"),
    ("real", "float4"),
    ("float", "float8"),
    ("double precision", "float8"),
    ("boolean", "bool"),
    ("decimal", "numeric"),
    ("dec", "numeric"),
    ("character varying", "varchar"),
    ("char varying", "varchar"),
    ("character", "bpchar"),
    ("char", "bpchar"),
    ("time without time zone", "time"),
    ("time with time zone", "timetz"),
    ("timestamp without time zone", "timestamp"),
    ("timestamp with time zone", "timestamptz"),
    ("bit varying", "varbit"),
];

/// Registers `regtypein` on `ctx`, over the types of `pg_type`.
pub(crate) fn install(ctx: &SessionContext, pg_type: &ArrowTable) {
    let mut types = TypeOids::default();
    for batch in pg_type.data() {
        for row in rows(batch, &["oid", "typname", "typarray"]) {
            let (Some(oid), Some(name)) = (row[0].as_oid(), row[1].as_text()) else {
                continue;
            };
            if let Some(array @ 1..) = row[2].as_oid() {
                types.arrays.insert(oid, array);
            }
            types.by_name.entry(name).or_insert(oid);
        }
    }
    ctx.register_udf(ScalarUDF::new_from_impl(RegtypeIn {
        types: Shared(Arc::new(types)),
        signature: Signature::string(1, Volatility::Stable),
    }));
}

/// Type OIDs by catalog name, and each type's array type.
#[derive(Debug, Default, PartialEq, Eq)]
struct TypeOids {
    by_name: HashMap<String, u32>,
    arrays: HashMap<u32, u32>,
}

impl TypeOids {
    /// The OID of the type `text` names.
    fn resolve(&self, text: &str) -> Option<u32> {
        let text = text.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text.parse().ok();
        }
        if let Some(element) = text.strip_suffix("[]") {
            return self.arrays.get(&self.resolve(element)?).copied();
        }
        // `"char"` (the one-byte type) is only ever written quoted.
        if let Some(quoted) = text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            return self.by_name.get(quoted).copied();
        }
        let lower = text.to_lowercase();
        let bare = lower.strip_prefix("pg_catalog.").unwrap_or(&lower);
        // A modifier (`varchar(10)`, `numeric(10, 2)`, `vector(3)`) names
        // the same type.
        let bare = match bare.find('(') {
            Some(open) => {
                let (head, tail) = bare.split_at(open);
                // `timestamp(3) with time zone`: the words after the
                // modifier still count.
                format!("{head} {}", &tail[tail.find(')')? + 1..])
            }
            None => bare.to_owned(),
        };
        let words = bare.split_whitespace().collect::<Vec<_>>().join(" ");
        let catalog_name = SQL_NAMES
            .iter()
            .find(|(sql, _)| *sql == words)
            .map_or(words.as_str(), |(_, name)| name);
        self.by_name.get(catalog_name).copied()
    }
}

/// `regtypein(name)`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RegtypeIn {
    types: Shared<TypeOids>,
    signature: Signature,
}

impl ScalarUDFImpl for RegtypeIn {
    fn name(&self) -> &str {
        REGTYPE_IN
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        oids_by_name(&args, |name| match self.types.resolve(name) {
            Some(oid) => Ok(Some(oid)),
            None => Err(SluiceError::new(
                SqlState::UNDEFINED_OBJECT,
                format!("type \"{name}\" does not exist"),
            )
            .into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types() -> TypeOids {
        let mut types = TypeOids::default();
        for (name, oid, array) in [
            ("int4", 23, 1007),
            ("varchar", 1043, 1015),
            ("timestamptz", 1184, 1185),
            ("char", 18, 1002),
            ("bpchar", 1042, 1014),
        ] {
            types.by_name.insert(name.into(), oid);
            types.arrays.insert(oid, array);
        }
        types
    }

    #[test]
    fn sql_and_catalog_names_resolve() {
        let types = types();
        for (name, oid) in [
            ("integer", 23),
            ("INT4", 23),
            ("pg_catalog.int4", 23),
            ("character  varying(10)", 1043),
            ("timestamp(3) with time zone", 1184),
            ("integer[]", 1007),
            ("\"char\"", 18),
            ("char", 1042),
            ("16385", 16385),
        ] {
            assert_eq!(types.resolve(name), Some(oid), "{name}");
        }
        assert_eq!(types.resolve("no_such_type"), None);
    }
}
