//! `quote_literal(text) → text`: a value as a SQL string literal, quotes
//! doubled, and in Postgres' `E'…'` form with backslashes doubled when it
//! has any. asyncpg builds `COPY (query) TO STDOUT` with it when the query
//! has arguments (`copy_from_query(query, *args)`).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// `quote_literal(value)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct QuoteLiteralFunc {
    signature: Signature,
}

impl Default for QuoteLiteralFunc {
    fn default() -> Self {
        Self {
            signature: Signature::string(1, Volatility::Immutable),
        }
    }
}

/// `text` as Postgres' `quote_literal` writes it.
pub fn quote_literal(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 3);
    if text.contains('\\') {
        quoted.push('E');
    }
    quoted.push('\'');
    for c in text.chars() {
        if c == '\'' || c == '\\' {
            quoted.push(c);
        }
        quoted.push(c);
    }
    quoted.push('\'');
    quoted
}

impl ScalarUDFImpl for QuoteLiteralFunc {
    fn name(&self) -> &str {
        "quote_literal"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let text = datafusion::arrow::compute::cast(&arrays[0], &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let mut out = StringBuilder::with_capacity(text.len(), text.len() * 8);
        for i in 0..text.len() {
            if text.is_null(i) {
                out.append_null();
            } else {
                out.append_value(quote_literal(text.value(i)));
            }
        }
        let array: ArrayRef = Arc::new(out.finish());
        Ok(ColumnarValue::Array(array))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_as_postgres() {
        assert_eq!(quote_literal("abc"), "'abc'");
        assert_eq!(quote_literal("O'Reilly"), "'O''Reilly'");
        assert_eq!(quote_literal("a\\b"), "E'a\\\\b'");
        assert_eq!(quote_literal(""), "''");
    }
}
