//! `pg_size_pretty(bigint) → text`: a byte count as Postgres writes it for
//! people (`10239 bytes`, `10 kB`, `1024 kB`, `20 MB`), which psql's `\dt+`
//! and `\l+` show. Units step by 1024 and a value stays in a unit until it
//! reaches 20 × 1024 of it, halves rounded away from zero, as in Postgres'
//! `dbsize.c`; nothing in arrow or DataFusion writes sizes this way.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::types::{NativeType, logical_int64};
use datafusion::error::Result;
use datafusion::logical_expr::{
    Coercion, ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignatureClass,
    Volatility,
};

/// `pg_size_pretty(bytes)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgSizePrettyFunc {
    signature: Signature,
}

impl Default for PgSizePrettyFunc {
    fn default() -> Self {
        Self {
            signature: Signature::coercible(
                vec![Coercion::new_implicit(
                    TypeSignatureClass::Native(logical_int64()),
                    vec![TypeSignatureClass::Integer, TypeSignatureClass::Numeric],
                    NativeType::Int64,
                )],
                Volatility::Immutable,
            ),
        }
    }
}

/// One unit of [`size_pretty`]: its name, the value (in this unit) from
/// which the next unit is used, whether values in it are half-rounded, and
/// its power of two.
struct Unit {
    name: &'static str,
    limit: i64,
    rounds: bool,
    bits: u32,
}

const UNITS: [Unit; 6] = [
    Unit {
        name: "bytes",
        limit: 10 * 1024,
        rounds: false,
        bits: 0,
    },
    Unit {
        name: "kB",
        limit: 20 * 1024 - 1,
        rounds: true,
        bits: 10,
    },
    Unit {
        name: "MB",
        limit: 20 * 1024 - 1,
        rounds: true,
        bits: 20,
    },
    Unit {
        name: "GB",
        limit: 20 * 1024 - 1,
        rounds: true,
        bits: 30,
    },
    Unit {
        name: "TB",
        limit: 20 * 1024 - 1,
        rounds: true,
        bits: 40,
    },
    Unit {
        name: "PB",
        limit: 20 * 1024 - 1,
        rounds: true,
        bits: 50,
    },
];

/// `bytes` as `pg_size_pretty` writes it.
pub fn size_pretty(bytes: i64) -> String {
    let mut size = bytes;
    let mut at = 0;
    loop {
        let unit = &UNITS[at];
        match UNITS.get(at + 1) {
            Some(next) if size.unsigned_abs() >= unit.limit.unsigned_abs() => {
                // One bit less into a unit that half-rounds, one more out
                // of one that did: the rounding then happens once, at the
                // end. Division, not a shift, rounds both signs alike.
                let bits = next.bits - unit.bits - u32::from(next.rounds) + u32::from(unit.rounds);
                size /= 1_i64 << bits;
                at += 1;
            }
            _ => {
                if unit.rounds {
                    size = (size + if size < 0 { -1 } else { 1 }) / 2;
                }
                return format!("{size} {}", unit.name);
            }
        }
    }
}

impl ScalarUDFImpl for PgSizePrettyFunc {
    fn name(&self) -> &str {
        "pg_size_pretty"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let bytes = datafusion::arrow::compute::cast(&arrays[0], &DataType::Int64)?;
        let text: StringArray = bytes
            .as_primitive::<Int64Type>()
            .iter()
            .map(|b| b.map(size_pretty))
            .collect();
        let array: ArrayRef = Arc::new(text);
        Ok(ColumnarValue::Array(array))
    }
}

#[cfg(test)]
mod tests {
    use super::size_pretty;

    #[test]
    fn sizes_read_as_postgres_writes_them() {
        for (bytes, text) in [
            (0, "0 bytes"),
            (10239, "10239 bytes"),
            (10240, "10 kB"),
            (10752, "11 kB"),
            (1_048_576, "1024 kB"),
            (10_485_247, "10239 kB"),
            (10_485_248, "10 MB"),
            (20_970_496, "20 MB"),
            (-10240, "-10 kB"),
            (i64::MAX, "8192 PB"),
        ] {
            assert_eq!(size_pretty(bytes), text, "{bytes}");
        }
    }
}
