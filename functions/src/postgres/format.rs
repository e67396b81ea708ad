//! `format(formatstr text [, arg …]) → text`, Postgres' `sprintf`: `%s`
//! (the value as text, NULL as nothing), `%I` (an identifier, quoted when
//! it must be), `%L` (a literal, `NULL` unquoted), `%%`, an argument
//! position (`%2$s`), the `-` flag and a width (`%-10s`, `%*s`, `%*2$s`).
//! psql's `\dX` and `\dA` families send it, and SQL that builds SQL uses
//! it. DataFusion has no such function.
//!
//! Every argument but a boolean reaches the function as text: the
//! signature coerces it, so the casts are DataFusion's own, which Sluice
//! writes in Postgres' form (timestamps, intervals, arrays). Written by hand: the format language
//! is Postgres' own, no crate implements it.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use sluice_types::error::{SluiceError, SqlState};

use super::quote_literal::quote_literal;

/// `format(formatstr, …)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FormatFunc {
    signature: Signature,
}

impl Default for FormatFunc {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Stable),
        }
    }
}

impl ScalarUDFImpl for FormatFunc {
    fn name(&self) -> &str {
        "format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.is_empty() {
            return Err(SluiceError::new(
                SqlState::UNDEFINED_FUNCTION,
                "function format() does not exist",
            )
            .into());
        }
        // A boolean is written as its output function writes it (`t`),
        // not as its cast to text (`true`).
        Ok(arg_types
            .iter()
            .map(|t| match t {
                DataType::Boolean => DataType::Boolean,
                _ => DataType::Utf8,
            })
            .collect())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| as_text(a.to_array(rows)?))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let texts: Vec<_> = arrays.iter().map(|a| a.as_string::<i32>()).collect();
        let Some((pattern, values)) = texts.split_first() else {
            return Ok(ColumnarValue::Array(Arc::new(StringArray::new_null(rows))));
        };
        let mut out = StringBuilder::with_capacity(rows, rows * 16);
        let mut row_values = Vec::with_capacity(values.len());
        for row in 0..rows {
            if pattern.is_null(row) {
                out.append_null();
                continue;
            }
            row_values.clear();
            row_values.extend(
                values
                    .iter()
                    .map(|v| (!v.is_null(row)).then(|| v.value(row))),
            );
            out.append_value(format(pattern.value(row), &row_values)?);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// A boolean column as `t`/`f` texts; any other as `Utf8` (which the
/// signature has made it already).
fn as_text(array: ArrayRef) -> Result<ArrayRef> {
    Ok(match array.data_type() {
        DataType::Boolean => Arc::new(
            array
                .as_boolean()
                .iter()
                .map(|b| b.map(|b| if b { "t" } else { "f" }))
                .collect::<StringArray>(),
        ),
        DataType::Utf8 => array,
        _ => datafusion::arrow::compute::cast(&array, &DataType::Utf8)?,
    })
}

fn refusal(message: impl Into<String>) -> SluiceError {
    SluiceError::new(SqlState::INVALID_PARAMETER_VALUE, message)
}

/// `pattern` with its specifiers filled from `values`.
fn format(pattern: &str, values: &[Option<&str>]) -> Result<String, SluiceError> {
    let mut out = String::with_capacity(pattern.len());
    let mut chars = pattern.chars().peekable();
    // The argument the next specifier without a position takes.
    let mut next = 0usize;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        if chars.peek() == Some(&'%') {
            chars.next();
            out.push('%');
            continue;
        }
        // %[position$][flags][width]type; a number without `$` is the
        // width.
        let mut position = None;
        let mut left_aligned = false;
        let mut width = None;
        match read_number(&mut chars) {
            Some(n) if chars.next_if_eq(&'$').is_some() => position = Some(n),
            Some(n) => width = Some(n),
            None => {}
        }
        if width.is_none() {
            while chars.next_if_eq(&'-').is_some() {
                left_aligned = true;
            }
            if chars.next_if_eq(&'*').is_some() {
                let at = match read_number(&mut chars) {
                    Some(n) => {
                        if chars.next_if_eq(&'$').is_none() {
                            return Err(refusal("width argument position must be ended by \"$\""));
                        }
                        argument_index(n)?
                    }
                    None => {
                        next += 1;
                        next - 1
                    }
                };
                let text = values
                    .get(at)
                    .ok_or_else(|| refusal("too few arguments for format()"))?;
                let w: i64 = match text {
                    Some(t) => t.trim().parse().map_err(|_| {
                        refusal(format!("invalid input syntax for type integer: \"{t}\""))
                    })?,
                    None => 0,
                };
                if w < 0 {
                    left_aligned = true;
                }
                width = Some(usize::try_from(w.unsigned_abs()).unwrap_or(usize::MAX));
            } else {
                width = read_number(&mut chars);
            }
        }
        let kind = chars
            .next()
            .ok_or_else(|| refusal("unterminated format() type specifier"))?;
        if !matches!(kind, 's' | 'I' | 'L') {
            return Err(refusal(format!(
                "unrecognized format() type specifier \"{kind}\""
            )));
        }
        let at = match position.take() {
            Some(n) => argument_index(n)?,
            None => next,
        };
        next = at + 1;
        let value = *values
            .get(at)
            .ok_or_else(|| refusal("too few arguments for format()"))?;
        let text = match (kind, value) {
            ('s', Some(v)) => v.to_owned(),
            ('s', None) => String::new(),
            ('I', Some(v)) => quote_ident(v),
            ('I', None) => {
                return Err(SluiceError::new(
                    SqlState::NULL_VALUE_NOT_ALLOWED,
                    "null values cannot be formatted as an SQL identifier",
                ));
            }
            (_, Some(v)) => quote_literal(v),
            (_, None) => "NULL".to_owned(),
        };
        let padding = width.unwrap_or(0).saturating_sub(text.chars().count());
        if !left_aligned {
            out.extend(std::iter::repeat_n(' ', padding));
        }
        out.push_str(&text);
        if left_aligned {
            out.extend(std::iter::repeat_n(' ', padding));
        }
    }
    Ok(out)
}

fn read_number(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<usize> {
    let mut number: Option<usize> = None;
    while let Some(digit) = chars.peek().and_then(|c| c.to_digit(10)) {
        chars.next();
        number = Some(
            number
                .unwrap_or(0)
                .saturating_mul(10)
                .saturating_add(digit as usize),
        );
    }
    number
}

/// The index into the values of a 1-based argument position.
fn argument_index(position: usize) -> Result<usize, SluiceError> {
    position
        .checked_sub(1)
        .ok_or_else(|| refusal("format specifies argument 0, but arguments are numbered from 1"))
}

/// Keywords Postgres' `quote_ident` quotes: every keyword that is not
/// unreserved (reserved, type/function name and column name keywords of
/// Postgres 15's `kwlist.h`).
const QUOTED_KEYWORDS: &[&str] = &[
    "all",
    "analyse",
    "analyze",
    "and",
    "any",
    "array",
    "as",
    "asc",
    "asymmetric",
    "authorization",
    "between",
    "bigint",
    "binary",
    "bit",
    "boolean",
    "both",
    "case",
    "cast",
    "char",
    "character",
    "check",
    "coalesce",
    "collate",
    "collation",
    "column",
    "concurrently",
    "constraint",
    "create",
    "cross",
    "current_catalog",
    "current_date",
    "current_role",
    "current_schema",
    "current_time",
    "current_timestamp",
    "current_user",
    "dec",
    "decimal",
    "default",
    "deferrable",
    "desc",
    "distinct",
    "do",
    "else",
    "end",
    "except",
    "exists",
    "extract",
    "false",
    "fetch",
    "float",
    "for",
    "foreign",
    "freeze",
    "from",
    "full",
    "grant",
    "greatest",
    "group",
    "grouping",
    "having",
    "ilike",
    "in",
    "initially",
    "inner",
    "inout",
    "int",
    "integer",
    "intersect",
    "interval",
    "into",
    "is",
    "isnull",
    "join",
    "lateral",
    "leading",
    "least",
    "left",
    "like",
    "limit",
    "localtime",
    "localtimestamp",
    "national",
    "natural",
    "nchar",
    "none",
    "normalize",
    "not",
    "notnull",
    "null",
    "nullif",
    "numeric",
    "offset",
    "on",
    "only",
    "or",
    "order",
    "out",
    "outer",
    "overlaps",
    "overlay",
    "placing",
    "position",
    "precision",
    "primary",
    "real",
    "references",
    "returning",
    "right",
    "row",
    "select",
    "session_user",
    "setof",
    "similar",
    "smallint",
    "some",
    "substring",
    "symmetric",
    "table",
    "tablesample",
    "then",
    "time",
    "timestamp",
    "to",
    "trailing",
    "treat",
    "trim",
    "true",
    "union",
    "unique",
    "user",
    "using",
    "values",
    "varchar",
    "variadic",
    "verbose",
    "when",
    "where",
    "window",
    "with",
    "xmlattributes",
    "xmlconcat",
    "xmlelement",
    "xmlexists",
    "xmlforest",
    "xmlnamespaces",
    "xmlparse",
    "xmlpi",
    "xmlroot",
    "xmlserialize",
    "xmltable",
];

/// `ident` as Postgres' `quote_ident` writes it: as it is when it is a
/// lower-case name that no keyword takes, else double-quoted.
fn quote_ident(ident: &str) -> String {
    let plain = ident
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && ident
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$')
        && !QUOTED_KEYWORDS.contains(&ident);
    if plain {
        ident.to_owned()
    } else {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn formatted(pattern: &str, values: &[Option<&str>]) -> String {
        format(pattern, values).unwrap()
    }

    #[test]
    fn specifiers_fill_as_postgres_fills_them() {
        assert_eq!(
            formatted(
                "Hello %s, %I and %L",
                &[Some("World"), Some("My Table"), Some("O'Reilly")]
            ),
            "Hello World, \"My Table\" and 'O''Reilly'"
        );
        assert_eq!(formatted("%s|%L|%%", &[None, None]), "|NULL|%");
        assert_eq!(formatted("%2$s %1$s %s", &[Some("a"), Some("b")]), "b a b");
        assert_eq!(
            formatted("[%5s][%-5s]", &[Some("ab"), Some("cd")]),
            "[   ab][cd   ]"
        );
        assert_eq!(
            formatted("[%*s][%-*s]", &[Some("4"), Some("x"), Some("3"), Some("y")]),
            "[   x][y  ]"
        );
        assert_eq!(
            formatted("%I.%I", &[Some("public"), Some("select")]),
            "public.\"select\""
        );
    }

    #[test]
    fn bad_formats_are_errors() {
        assert!(format("%s %s", &[Some("a")]).is_err());
        assert!(format("%x", &[Some("a")]).is_err());
        assert!(format("%0$s", &[Some("a")]).is_err());
        assert!(format("%", &[]).is_err());
        assert!(format("%I", &[None]).is_err());
    }
}
