//! `version()`.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

/// `version() → text`: the server version string, in the form Postgres
/// prints it, so drivers and ORMs that parse it (SQLAlchemy matches
/// `PostgreSQL (\d+)`) treat Sluice as Postgres 15.
///
/// ```sql
/// SELECT version();
/// -- PostgreSQL 15.0 (Sluice 0.1.0 on Apache DataFusion) on x86_64-linux, 64-bit
/// ```
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct VersionFunc {
    signature: Signature,
}

impl Default for VersionFunc {
    fn default() -> Self {
        Self::new()
    }
}

impl VersionFunc {
    /// Creates the function.
    pub fn new() -> Self {
        Self {
            signature: Signature::nullary(Volatility::Immutable),
        }
    }

    /// The string `version()` returns.
    pub fn version_string() -> String {
        format!(
            "PostgreSQL 15.0 (Sluice {} on Apache DataFusion) on {}-{}, 64-bit",
            env!("CARGO_PKG_VERSION"),
            std::env::consts::ARCH,
            std::env::consts::OS
        )
    }
}

impl ScalarUDFImpl for VersionFunc {
    fn name(&self) -> &str {
        "version"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some(
            Self::version_string(),
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_string_looks_like_postgres_15() {
        let v = VersionFunc::version_string();
        assert!(v.starts_with("PostgreSQL 15."), "{v}");
        assert!(v.contains("Sluice"), "{v}");
    }
}
