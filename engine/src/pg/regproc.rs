//! Function names as OIDs, as Postgres' `regproc` input reads them:
//! `regprocin(text)`, what `'now'::regproc` becomes
//! ([`crate::pg::reg_casts`]), and `to_regproc(text)`.
//!
//! A name is `f` or `pg_catalog.f`, folded to lower case unless
//! double-quoted (every function `pg_proc` lists is `pg_catalog`'s). A
//! string of digits is an OID already. `regproc` names one function: a
//! name with several overloads (`abs`) is 42725, `more than one function
//! named "abs"`, and a missing one 42883; `to_regproc` answers NULL for
//! both, as in Postgres.
//!
//! The library's reading of `'abs'::regproc` is a subquery over
//! `pg_proc.proname` that fails with a planning error for a missing name
//! and with a cardinality error, not 42725, for an overloaded one.

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
use crate::pg::regclass::name_parts;

/// The function `'name'::regproc` is planned as.
pub const REGPROC_IN: &str = "regprocin";

/// Registers `regprocin` and `to_regproc` on `ctx`, over the functions of
/// `pg_proc`.
pub(crate) fn install(ctx: &SessionContext, pg_proc: &ArrowTable) {
    let mut by_name: HashMap<String, Vec<u32>> = HashMap::new();
    for batch in pg_proc.data() {
        for row in rows(batch, &["oid", "proname"]) {
            if let (Some(oid), Some(name)) = (row[0].as_oid(), row[1].as_text()) {
                by_name.entry(name).or_default().push(oid);
            }
        }
    }
    let functions = Arc::new(FunctionOids { by_name });
    for strict in [true, false] {
        ctx.register_udf(ScalarUDF::new_from_impl(RegprocIn {
            strict,
            functions: Shared(Arc::clone(&functions)),
            signature: Signature::string(1, Volatility::Stable),
        }));
    }
}

/// Function OIDs by name (several for an overloaded name).
#[derive(Debug)]
struct FunctionOids {
    by_name: HashMap<String, Vec<u32>>,
}

/// Why a name gives no OID.
#[derive(Debug, PartialEq, Eq)]
enum Unresolved {
    Missing,
    Ambiguous,
    Malformed,
}

impl FunctionOids {
    fn resolve(&self, text: &str) -> std::result::Result<u32, Unresolved> {
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text.parse().map_err(|_| Unresolved::Malformed);
        }
        let parts = name_parts(text).ok_or(Unresolved::Malformed)?;
        let name = match parts.as_slice() {
            [name] => name,
            [schema, name] if schema == "pg_catalog" => name,
            [_, _] => return Err(Unresolved::Missing),
            _ => return Err(Unresolved::Malformed),
        };
        match self.by_name.get(name).map(Vec::as_slice) {
            Some([oid]) => Ok(*oid),
            Some([_, _, ..]) => Err(Unresolved::Ambiguous),
            _ => Err(Unresolved::Missing),
        }
    }
}

/// `regprocin(name)` (strict: a missing or overloaded name is an error)
/// or `to_regproc(name)` (NULL for them).
#[derive(Debug, PartialEq, Eq, Hash)]
struct RegprocIn {
    strict: bool,
    functions: Shared<FunctionOids>,
    signature: Signature,
}

impl ScalarUDFImpl for RegprocIn {
    fn name(&self) -> &str {
        if self.strict {
            REGPROC_IN
        } else {
            "to_regproc"
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int32)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        oids_by_name(&args, |name| {
            match (self.functions.resolve(name), self.strict) {
                (Ok(oid), _) => Ok(Some(oid)),
                (Err(_), false) => Ok(None),
                (Err(why), true) => Err(refusal(name, why).into()),
            }
        })
    }
}

/// Postgres' error for a `regproc` input that names no single function.
fn refusal(name: &str, why: Unresolved) -> SluiceError {
    match why {
        Unresolved::Missing => SluiceError::new(
            SqlState::UNDEFINED_FUNCTION,
            format!("function \"{name}\" does not exist"),
        ),
        Unresolved::Ambiguous => SluiceError::new(
            SqlState::AMBIGUOUS_FUNCTION,
            format!("more than one function named \"{name}\""),
        ),
        Unresolved::Malformed => SluiceError::new(
            SqlState::INVALID_NAME,
            format!("invalid name syntax: \"{name}\""),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn functions() -> FunctionOids {
        FunctionOids {
            by_name: HashMap::from([
                ("now".to_owned(), vec![1299]),
                ("abs".to_owned(), vec![1394, 1395, 1396]),
            ]),
        }
    }

    #[test]
    fn one_function_per_name_or_a_reason() {
        let functions = functions();
        assert_eq!(functions.resolve("now"), Ok(1299));
        assert_eq!(functions.resolve("pg_catalog.NOW"), Ok(1299));
        assert_eq!(functions.resolve("\"now\""), Ok(1299));
        assert_eq!(functions.resolve("1234"), Ok(1234));
        assert_eq!(functions.resolve("abs"), Err(Unresolved::Ambiguous));
        assert_eq!(functions.resolve("\"NOW\""), Err(Unresolved::Missing));
        assert_eq!(functions.resolve("public.now"), Err(Unresolved::Missing));
        assert_eq!(functions.resolve("a.b.c"), Err(Unresolved::Malformed));
        assert_eq!(functions.resolve(""), Err(Unresolved::Malformed));
    }
}
