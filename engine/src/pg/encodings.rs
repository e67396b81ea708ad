//! Character set encodings by Postgres' names and numbers:
//! `pg_encoding_to_char(int)` (psql's `\l` shows the database's),
//! `pg_char_to_encoding(name)` (`\dO` filters collations by it),
//! `getdatabaseencoding()` and `pg_client_encoding()`.
//!
//! Sluice stores and sends UTF-8 only; the other encodings are named so a
//! client's catalog query reads the numbers Postgres' catalogs hold
//! (`pg_collation.collencoding`). The library's `pg_encoding_to_char`
//! answered `UTF-8` for 6, where Postgres says `UTF8`, and NULL for the
//! rest.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Int32Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::types::{NativeType, logical_int64, logical_string};
use datafusion::error::{DataFusionError, Result};
use datafusion::functions::utils::make_scalar_function;
use datafusion::logical_expr::{
    Coercion, ScalarUDF, Signature, SimpleScalarUDF, TypeSignatureClass, Volatility,
};
use datafusion::prelude::SessionContext;

use crate::pg::catalog_functions::ConstantText;

/// Postgres' server and client encodings, by number (`pg_enc` in its
/// `pg_wchar.h`, 15).
const ENCODINGS: [&str; 42] = [
    "SQL_ASCII",
    "EUC_JP",
    "EUC_CN",
    "EUC_KR",
    "EUC_TW",
    "EUC_JIS_2004",
    "UTF8",
    "MULE_INTERNAL",
    "LATIN1",
    "LATIN2",
    "LATIN3",
    "LATIN4",
    "LATIN5",
    "LATIN6",
    "LATIN7",
    "LATIN8",
    "LATIN9",
    "LATIN10",
    "WIN1256",
    "WIN1258",
    "WIN866",
    "WIN874",
    "KOI8R",
    "WIN1251",
    "WIN1252",
    "ISO_8859_5",
    "ISO_8859_6",
    "ISO_8859_7",
    "ISO_8859_8",
    "WIN1250",
    "WIN1253",
    "WIN1254",
    "WIN1255",
    "WIN1257",
    "KOI8U",
    "SJIS",
    "BIG5",
    "GBK",
    "UHC",
    "GB18030",
    "JOHAB",
    "SHIFT_JIS_2004",
];

/// Postgres' other names for some encodings (`pg_encname_tbl`), already
/// cleaned as [`cleaned`] cleans a name.
const ALIASES: [(&str, usize); 8] = [
    ("unicode", 6),
    ("koi8", 22),
    ("win", 23),
    ("alt", 20),
    ("shiftjis", 35),
    ("mskanji", 35),
    ("tcvn", 19),
    ("vscii", 19),
];

/// The encoding Sluice stores and sends.
const UTF8: usize = 6;

/// Registers the four functions on `ctx`, over the library's
/// `pg_encoding_to_char`.
pub(crate) fn install(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "pg_encoding_to_char",
        Signature::coercible(
            vec![Coercion::new_implicit(
                TypeSignatureClass::Native(logical_int64()),
                vec![TypeSignatureClass::Integer],
                NativeType::Int64,
            )],
            Volatility::Immutable,
        ),
        DataType::Utf8,
        Arc::new(make_scalar_function(encoding_names, vec![])),
    )));
    ctx.register_udf(ScalarUDF::from(SimpleScalarUDF::new_with_signature(
        "pg_char_to_encoding",
        Signature::coercible(
            vec![Coercion::new_exact(TypeSignatureClass::Native(
                logical_string(),
            ))],
            Volatility::Immutable,
        ),
        DataType::Int32,
        Arc::new(make_scalar_function(encoding_numbers, vec![])),
    )));
    for name in ["getdatabaseencoding", "pg_client_encoding"] {
        ctx.register_udf(ConstantText::udf(
            name,
            Some(ENCODINGS[UTF8]),
            Signature::nullary(Volatility::Stable),
        ));
    }
}

/// A name lower-cased with everything but letters and digits dropped, as
/// Postgres compares encoding names (`UTF-8` is `utf8`).
fn cleaned(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The number of the encoding `name` names, or -1.
fn encoding_number(name: &str) -> i32 {
    let name = cleaned(name);
    ENCODINGS
        .iter()
        .position(|known| cleaned(known) == name)
        .or_else(|| {
            ALIASES
                .iter()
                .find(|(alias, _)| *alias == name)
                .map(|(_, n)| *n)
        })
        .and_then(|n| i32::try_from(n).ok())
        .unwrap_or(-1)
}

/// `pg_encoding_to_char(n)`: the name, or `''` for no encoding.
fn encoding_names(args: &[ArrayRef]) -> Result<ArrayRef> {
    let [numbers] = args else {
        return Err(one_argument("pg_encoding_to_char"));
    };
    let numbers = datafusion::arrow::compute::cast(numbers, &DataType::Int64)?;
    let names: StringArray = numbers
        .as_primitive::<Int64Type>()
        .iter()
        .map(|n| {
            n.map(|n| {
                usize::try_from(n)
                    .ok()
                    .and_then(|n| ENCODINGS.get(n))
                    .copied()
                    .unwrap_or("")
            })
        })
        .collect();
    Ok(Arc::new(names))
}

/// `pg_char_to_encoding(name)`: the number, or -1 for no encoding.
fn encoding_numbers(args: &[ArrayRef]) -> Result<ArrayRef> {
    let [names] = args else {
        return Err(one_argument("pg_char_to_encoding"));
    };
    let names = datafusion::arrow::compute::cast(names, &DataType::Utf8)?;
    let numbers: Int32Array = names
        .as_string::<i32>()
        .iter()
        .map(|name| name.map(encoding_number))
        .collect();
    Ok(Arc::new(numbers))
}

/// The signature admits one argument; anything else is a planner bug.
fn one_argument(function: &str) -> DataFusionError {
    DataFusionError::Internal(format!("{function} takes one argument"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_agree_with_postgres() {
        assert_eq!(encoding_number("UTF8"), 6);
        assert_eq!(encoding_number("utf-8"), 6);
        assert_eq!(encoding_number("Unicode"), 6);
        assert_eq!(encoding_number("LATIN1"), 8);
        assert_eq!(encoding_number("ISO_8859_5"), 25);
        assert_eq!(encoding_number("SHIFT_JIS_2004"), 41);
        assert_eq!(encoding_number("no such"), -1);
        assert_eq!(ENCODINGS[UTF8], "UTF8");
    }
}
