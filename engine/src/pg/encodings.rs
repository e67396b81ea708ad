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

use datafusion::arrow::array::{AsArray, Int32Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::types::{NativeType, logical_int64, logical_string};
use datafusion::error::Result;
use datafusion::logical_expr::{
    Coercion, ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignatureClass, Volatility,
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
    ctx.register_udf(ScalarUDF::new_from_impl(EncodingToName {
        signature: Signature::coercible(
            vec![Coercion::new_implicit(
                TypeSignatureClass::Native(logical_int64()),
                vec![TypeSignatureClass::Integer],
                NativeType::Int64,
            )],
            Volatility::Immutable,
        ),
    }));
    ctx.register_udf(ScalarUDF::new_from_impl(NameToEncoding {
        signature: Signature::coercible(
            vec![Coercion::new_exact(TypeSignatureClass::Native(
                logical_string(),
            ))],
            Volatility::Immutable,
        ),
    }));
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
#[derive(Debug, PartialEq, Eq, Hash)]
struct EncodingToName {
    signature: Signature,
}

impl ScalarUDFImpl for EncodingToName {
    fn name(&self) -> &str {
        "pg_encoding_to_char"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let Some(numbers) = args.args.first() else {
            return Ok(ColumnarValue::Array(Arc::new(StringArray::new_null(rows))));
        };
        let numbers = datafusion::arrow::compute::cast(&numbers.to_array(rows)?, &DataType::Int64)?;
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
        Ok(ColumnarValue::Array(Arc::new(names)))
    }
}

/// `pg_char_to_encoding(name)`: the number, or -1 for no encoding.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NameToEncoding {
    signature: Signature,
}

impl ScalarUDFImpl for NameToEncoding {
    fn name(&self) -> &str {
        "pg_char_to_encoding"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let Some(names) = args.args.first() else {
            return Ok(ColumnarValue::Array(Arc::new(Int32Array::new_null(rows))));
        };
        let names = datafusion::arrow::compute::cast(&names.to_array(rows)?, &DataType::Utf8)?;
        let numbers: Int32Array = names
            .as_string::<i32>()
            .iter()
            .map(|name| name.map(encoding_number))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(numbers)))
    }
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
