//! The one place where engine errors become Postgres errors: each
//! [`DataFusionError`] maps to a SQLSTATE code clients can act on
//! (<https://www.postgresql.org/docs/15/errcodes-appendix.html>).
//!
//! Sluice's own errors carry their SQLSTATE from where they are raised
//! ([`SluiceError`]: parameters, models, objects, COPY data, commits), and
//! Arrow's and DataFusion's typed errors map by their type. What remains
//! matched by message: DataFusion's own `Plan` and `Execution` errors, which
//! carry only a message (unknown table, unknown function, …, as DataFusion
//! 55 words them). Everything unrecognised keeps its class rather than
//! collapsing to `XX000`.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use pgwire::error::{ErrorInfo, PgWireError};
use sluice_types::error::SluiceError;

/// SQLSTATE codes Sluice uses.
pub mod codes {
    pub const SYNTAX_ERROR: &str = "42601";
    pub const UNDEFINED_TABLE: &str = "42P01";
    pub const UNDEFINED_COLUMN: &str = "42703";
    pub const UNDEFINED_FUNCTION: &str = "42883";
    pub const UNDEFINED_OBJECT: &str = "42704";
    pub const INVALID_REGULAR_EXPRESSION: &str = "2201B";
    pub const UNDEFINED_SCHEMA: &str = "3F000";
    pub const DUPLICATE_TABLE: &str = "42P07";
    pub const DUPLICATE_SCHEMA: &str = "42P06";
    pub const DUPLICATE_COLUMN: &str = "42701";
    pub const AMBIGUOUS_COLUMN: &str = "42702";
    pub const DATATYPE_MISMATCH: &str = "42804";
    pub const GROUPING_ERROR: &str = "42803";
    pub const SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION: &str = "42000";
    pub const DIVISION_BY_ZERO: &str = "22012";
    pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
    pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
    pub const INVALID_PARAMETER_VALUE: &str = "22023";
    pub const DATA_EXCEPTION: &str = "22000";
    pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
    pub const CANTCHANGE_RUNTIME_PARAM: &str = "55P02";
    pub const IN_FAILED_SQL_TRANSACTION: &str = "25P02";
    pub const QUERY_CANCELED: &str = "57014";
    pub const OUT_OF_MEMORY: &str = "53200";
    pub const DISK_FULL: &str = "53100";
    pub const IO_ERROR: &str = "58030";
    pub const INTERNAL_ERROR: &str = "XX000";
    pub const PROTOCOL_VIOLATION: &str = "08P01";
    pub const DUPLICATE_OBJECT: &str = "42710";
    pub const UNDEFINED_FILE: &str = "58P01";
    pub const EXTERNAL_ROUTINE_EXCEPTION: &str = "38000";
    pub const BAD_COPY_FILE_FORMAT: &str = "22P04";
    pub const NOT_NULL_VIOLATION: &str = "23502";
    pub const CHARACTER_NOT_IN_REPERTOIRE: &str = "22021";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub const INVALID_BINARY_REPRESENTATION: &str = "22P03";
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: &str = "55000";
    pub const PROGRAM_LIMIT_EXCEEDED: &str = "54000";
    pub const CANNOT_COERCE: &str = "42846";
    pub const ARRAY_SUBSCRIPT_ERROR: &str = "2202E";
    pub const CARDINALITY_VIOLATION: &str = "21000";
}

/// Builds the client-facing error for an engine error.
pub fn error_info(err: &DataFusionError) -> ErrorInfo {
    ErrorInfo::new("ERROR".into(), sqlstate(err).into(), message(err))
}

/// The pgwire error for an engine error.
pub fn pg_error(err: DataFusionError) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(&err)))
}

/// An error with an explicit SQLSTATE, for failures found by the server.
pub fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message.into(),
    )))
}

/// The message without DataFusion's variant prefixes ("Error during
/// planning: "), which mean nothing to a SQL user.
fn message(err: &DataFusionError) -> String {
    if let Some(sluice) = SluiceError::find(err) {
        return sluice.message.clone();
    }
    let root = innermost(err);
    match root {
        DataFusionError::SQL(e, _) => e
            .to_string()
            .trim_start_matches("sql parser error: ")
            .to_string(),
        DataFusionError::Plan(m) => missing_relation_message(m).unwrap_or_else(|| m.clone()),
        // Postgres' words for a scalar subquery with several rows.
        DataFusionError::Execution(m) if m.starts_with(MANY_ROWS_IN_SCALAR_SUBQUERY) => {
            "more than one row returned by a subquery used as an expression".into()
        }
        DataFusionError::Execution(m)
        | DataFusionError::NotImplemented(m)
        | DataFusionError::Configuration(m) => m.clone(),
        DataFusionError::ArrowError(e, _) => arrow_message(e),
        DataFusionError::ObjectStore(e) => object_store_message(&e.to_string()),
        DataFusionError::SchemaError(e, _) => schema_message(e),
        other => other.to_string(),
    }
}

/// DataFusion's "table 'sluice.public.t' not found" in Postgres' words,
/// which clients and people search for: `relation "t" does not exist`
/// (schema-qualified when the table is outside `public`).
fn missing_relation_message(m: &str) -> Option<String> {
    let path = m.strip_prefix("table '")?.strip_suffix("' not found")?;
    let parts: Vec<&str> = path.split('.').collect();
    let shown = match parts.as_slice() {
        [.., "public", table] => (*table).to_string(),
        [.., schema, table] => format!("{schema}.{table}"),
        _ => path.to_string(),
    };
    Some(format!("relation \"{shown}\" does not exist"))
}

/// Column errors in Postgres' words: `column "b" does not exist`, `column
/// e.b does not exist`, `column reference "a" is ambiguous`.
fn schema_message(e: &SchemaError) -> String {
    match e {
        SchemaError::FieldNotFound { field, .. } => match &field.relation {
            Some(relation) => format!("column {}.{} does not exist", relation.table(), field.name),
            None => format!("column \"{}\" does not exist", field.name),
        },
        SchemaError::AmbiguousReference { field } => {
            format!("column reference \"{}\" is ambiguous", field.name)
        }
        other => other.to_string(),
    }
}

/// Object-store errors carry the store's whole response (S3's XML body)
/// and no summary; say what happened first, then where.
fn object_store_message(text: &str) -> String {
    let summary = if text.contains("NoSuchBucket") {
        "the bucket does not exist"
    } else if text.contains("AccessDenied") || text.contains("InvalidAccessKeyId") {
        "access denied by the object store"
    } else if text.contains("error sending request") || text.contains("Connection refused") {
        "cannot reach the object store"
    } else if text.contains("not found") || text.contains("NoSuchKey") {
        "object not found"
    } else {
        "object store error"
    };
    // Drop the response body: everything from the first XML tag on.
    let detail = text
        .split('<')
        .next()
        .unwrap_or(text)
        .trim_end_matches([' ', ':']);
    format!("{summary}: {detail}")
}

fn arrow_message(e: &ArrowError) -> String {
    match e {
        ArrowError::DivideByZero => "division by zero".into(),
        ArrowError::CastError(m)
        | ArrowError::ParseError(m)
        | ArrowError::ComputeError(m)
        | ArrowError::InvalidArgumentError(m)
        | ArrowError::ArithmeticOverflow(m) => m.clone(),
        other => other.to_string(),
    }
}

/// Strips wrappers that add context but not meaning.
fn innermost(err: &DataFusionError) -> &DataFusionError {
    match err {
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            innermost(inner)
        }
        DataFusionError::Shared(inner) => innermost(inner),
        DataFusionError::Collection(errs) => errs.first().map(innermost).unwrap_or(err),
        DataFusionError::External(inner) => match inner.downcast_ref::<DataFusionError>() {
            Some(df) => innermost(df),
            None => err,
        },
        _ => err,
    }
}

/// The SQLSTATE for an engine error.
pub fn sqlstate(err: &DataFusionError) -> &'static str {
    use codes::*;
    // An error raised with its SQLSTATE keeps it.
    if let Some(sluice) = SluiceError::find(err) {
        return sluice.sqlstate.code();
    }
    match innermost(err) {
        DataFusionError::SQL(..) => SYNTAX_ERROR,
        DataFusionError::ArrowError(e, _) => arrow_sqlstate(e),
        DataFusionError::SchemaError(e, _) => match e.as_ref() {
            SchemaError::FieldNotFound { .. } => UNDEFINED_COLUMN,
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => DUPLICATE_COLUMN,
            SchemaError::AmbiguousReference { .. } => AMBIGUOUS_COLUMN,
        },
        DataFusionError::Plan(m) => plan_sqlstate(m),
        DataFusionError::Execution(m) => execution_sqlstate(m),
        DataFusionError::NotImplemented(_) => FEATURE_NOT_SUPPORTED,
        DataFusionError::Configuration(m) => {
            if m.contains("cannot be changed") {
                CANTCHANGE_RUNTIME_PARAM
            } else if m.starts_with("invalid value") {
                INVALID_PARAMETER_VALUE
            } else {
                UNDEFINED_OBJECT
            }
        }
        DataFusionError::ResourcesExhausted(_) => OUT_OF_MEMORY,
        DataFusionError::ObjectStore(e) => match e.as_ref() {
            object_store::Error::NotFound { .. } => UNDEFINED_FILE,
            other if other.to_string().contains("NoSuchBucket") => UNDEFINED_FILE,
            other if is_storage_full(other) => DISK_FULL,
            _ => IO_ERROR,
        },
        DataFusionError::IoError(e) if is_storage_full(e) => DISK_FULL,
        DataFusionError::IoError(_) => IO_ERROR,
        DataFusionError::ParquetError(e) if is_storage_full(e.as_ref()) => DISK_FULL,
        DataFusionError::ParquetError(_) => IO_ERROR,
        // DataFusion 55 raises BETWEEN over types it cannot compare as an
        // internal error; it is the user's type mismatch.
        DataFusionError::Internal(m) if m.contains("Failed to coerce types") => DATATYPE_MISMATCH,
        // So does a call whose arguments match none of a function's
        // signatures (`md5('a', 1)`): Postgres says no such function.
        DataFusionError::Internal(m) if m.contains("failed to match any signature") => {
            UNDEFINED_FUNCTION
        }
        // Comparisons DataFusion cannot make on a type, raised as internal
        // errors: a window's RANGE frame (rank()'s default) ordered by
        // bytea, and min/max of a row holding a list. Postgres runs the
        // first and refuses the second; Sluice does not support either.
        DataFusionError::Internal(m)
            if m.contains("Cannot run range queries on datatype")
                || m.contains("Uncomparable values") =>
        {
            FEATURE_NOT_SUPPORTED
        }
        // A pattern the regex crate cannot compile (`regexp_replace(x, '{}',
        // …)`), which DataFusion passes on as an external error.
        DataFusionError::External(e) if e.to_string().starts_with("regex parse error") => {
            INVALID_REGULAR_EXPRESSION
        }
        // A `SET datafusion.…` whose value does not parse.
        DataFusionError::External(e) if is_value_parse_error(e.as_ref()) => INVALID_PARAMETER_VALUE,
        DataFusionError::Internal(_)
        | DataFusionError::ExecutionJoin(_)
        | DataFusionError::Substrait(_)
        | DataFusionError::External(_)
        | DataFusionError::Ffi(_) => INTERNAL_ERROR,
        // Wrappers were removed by `innermost`; reaching one means an empty
        // collection, which carries no cause to report.
        DataFusionError::Context(..)
        | DataFusionError::Diagnostic(..)
        | DataFusionError::Shared(_)
        | DataFusionError::Collection(_) => INTERNAL_ERROR,
    }
}

/// Whether `e` (or an error it wraps) is a full disk: a local data
/// directory's write failing with ENOSPC, which object_store and Parquet
/// wrap in errors of their own.
fn is_storage_full(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::StorageFull
        {
            return true;
        }
        next = error.source();
    }
    false
}

/// Whether `e` is a number or boolean that did not parse.
fn is_value_parse_error(e: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    e.is::<std::num::ParseIntError>()
        || e.is::<std::num::ParseFloatError>()
        || e.is::<std::str::ParseBoolError>()
}

fn arrow_sqlstate(e: &ArrowError) -> &'static str {
    use codes::*;
    match e {
        ArrowError::DivideByZero => DIVISION_BY_ZERO,
        ArrowError::CastError(_) | ArrowError::ParseError(_) => INVALID_TEXT_REPRESENTATION,
        ArrowError::ArithmeticOverflow(_) => NUMERIC_VALUE_OUT_OF_RANGE,
        ArrowError::InvalidArgumentError(_) => INVALID_PARAMETER_VALUE,
        ArrowError::MemoryError(_) => OUT_OF_MEMORY,
        ArrowError::IoError(..) => IO_ERROR,
        _ => DATA_EXCEPTION,
    }
}

/// DataFusion raises most planning failures as `Plan` errors whose only
/// structure is the message; these are the ones it emits for the cases
/// clients branch on.
fn plan_sqlstate(m: &str) -> &'static str {
    use codes::*;
    let lower = m.to_ascii_lowercase();
    if lower.starts_with("column \"") && lower.contains("does not exist") {
        UNDEFINED_COLUMN
    } else if lower.starts_with("column \"") && lower.contains("already exists") {
        DUPLICATE_COLUMN
    } else if lower.starts_with("no files found at") {
        UNDEFINED_FILE
    } else if lower.starts_with("table '") && lower.contains("not found")
        || lower.starts_with("table ") && lower.contains("doesn't exist")
        || lower.contains("no table named")
    {
        UNDEFINED_TABLE
    } else if lower.contains("invalid function")
        || lower.contains("function") && lower.contains("not found")
    {
        UNDEFINED_FUNCTION
    } else if lower.contains("schema")
        && (lower.contains("not found") || lower.contains("doesn't exist"))
    {
        UNDEFINED_SCHEMA
    } else if lower.contains("schema") && lower.contains("already exists") {
        DUPLICATE_SCHEMA
    } else if lower.contains("already exists") {
        DUPLICATE_TABLE
    } else if lower.contains("divide by zero") || lower.contains("division by zero") {
        DIVISION_BY_ZERO
    } else if lower.contains("group by") || lower.contains("must appear in the group") {
        GROUPING_ERROR
    } else if lower.contains("cannot infer common")
        || lower.contains("cannot coerce")
        || lower.contains("does not support")
        || lower.contains("type mismatch")
        || lower.contains("no function matches")
    {
        DATATYPE_MISMATCH
    } else {
        SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION
    }
}

/// How DataFusion reports an uncorrelated scalar subquery that returned
/// several rows (correlated ones are checked by `scalar_subquery_value`).
const MANY_ROWS_IN_SCALAR_SUBQUERY: &str = "Scalar subquery returned more than one row";

fn execution_sqlstate(m: &str) -> &'static str {
    use codes::*;
    let lower = m.to_ascii_lowercase();
    if m.starts_with(MANY_ROWS_IN_SCALAR_SUBQUERY) {
        CARDINALITY_VIOLATION
    } else if lower.contains("divide by zero") || lower.contains("division by zero") {
        DIVISION_BY_ZERO
    } else if lower.contains("has null but schema specifies non-nullable") {
        NOT_NULL_VIOLATION
    } else if lower.contains("cast") || lower.contains("parse") {
        INVALID_TEXT_REPRESENTATION
    } else if lower.contains("overflow") {
        NUMERIC_VALUE_OUT_OF_RANGE
    } else if lower.contains("not found") && lower.contains("table") {
        UNDEFINED_TABLE
    } else if lower.contains("schema") && lower.contains("already exists") {
        DUPLICATE_SCHEMA
    } else if lower.contains("already exists") {
        DUPLICATE_TABLE
    } else if lower.contains("prepared statement") && lower.contains("does not exist")
        || lower.contains("no prepared statement")
    {
        codes::UNDEFINED_OBJECT
    } else {
        DATA_EXCEPTION
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::parser::ParserError;

    #[test]
    fn maps_common_errors() {
        let syntax = DataFusionError::SQL(Box::new(ParserError::ParserError("x".into())), None);
        assert_eq!(sqlstate(&syntax), codes::SYNTAX_ERROR);
        let table = DataFusionError::Plan("table 'sluice.public.nope' not found".into());
        assert_eq!(sqlstate(&table), codes::UNDEFINED_TABLE);
        assert_eq!(message(&table), "relation \"nope\" does not exist");
        let elsewhere = DataFusionError::Plan("table 'sluice.s.nope' not found".into());
        assert_eq!(message(&elsewhere), "relation \"s.nope\" does not exist");
        let div = DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None);
        assert_eq!(sqlstate(&div), codes::DIVISION_BY_ZERO);
        let wrapped = DataFusionError::Context("while running".into(), Box::new(div));
        assert_eq!(sqlstate(&wrapped), codes::DIVISION_BY_ZERO);
        assert_eq!(message(&wrapped), "division by zero");
        let unknown_setting =
            DataFusionError::Configuration("unrecognized configuration parameter \"x\"".into());
        assert_eq!(sqlstate(&unknown_setting), codes::UNDEFINED_OBJECT);
        let many_rows =
            DataFusionError::Execution("Scalar subquery returned more than one row".into());
        assert_eq!(sqlstate(&many_rows), codes::CARDINALITY_VIOLATION);
        assert_eq!(
            message(&many_rows),
            "more than one row returned by a subquery used as an expression"
        );
    }

    #[test]
    fn column_errors_read_as_postgres_words_them() {
        use datafusion::common::Column;
        let missing = |column: Column| {
            let error = SchemaError::FieldNotFound {
                field: Box::new(column),
                valid_fields: vec![],
            };
            DataFusionError::SchemaError(Box::new(error), Box::new(None))
        };
        let bare = missing(Column::new_unqualified("b"));
        assert_eq!(sqlstate(&bare), codes::UNDEFINED_COLUMN);
        assert_eq!(message(&bare), "column \"b\" does not exist");
        let qualified = missing(Column::new(Some("e"), "b"));
        assert_eq!(message(&qualified), "column e.b does not exist");
    }

    #[test]
    fn internal_errors_that_are_the_users_keep_their_sqlstate() {
        let between = DataFusionError::Internal(
            "Failed to coerce types Float64 and Boolean in BETWEEN expression".into(),
        );
        assert_eq!(sqlstate(&between), codes::DATATYPE_MISMATCH);
        let signature = DataFusionError::Internal(
            "Function 'md5' failed to match any signature, errors: Error during planning: \
             Function 'md5' expects 1 arguments but received 2"
                .into(),
        );
        assert_eq!(sqlstate(&signature), codes::UNDEFINED_FUNCTION);
        let range =
            DataFusionError::Internal("Cannot run range queries on datatype: Binary".into());
        assert_eq!(sqlstate(&range), codes::FEATURE_NOT_SUPPORTED);
        let rows = DataFusionError::Internal(
            "Uncomparable values: Struct({c0:[5.0]}), Struct({c0:[5.0]})".into(),
        );
        assert_eq!(sqlstate(&rows), codes::FEATURE_NOT_SUPPORTED);
        let pattern = DataFusionError::External(
            "regex parse error:\n    {}\n    ^\nerror: repetition operator missing expression"
                .into(),
        );
        assert_eq!(sqlstate(&pattern), codes::INVALID_REGULAR_EXPRESSION);
        let full_disk =
            DataFusionError::IoError(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert_eq!(sqlstate(&full_disk), codes::DISK_FULL);
        let bad_value = "x".parse::<usize>().unwrap_err();
        let setting = DataFusionError::External(Box::new(bad_value));
        assert_eq!(sqlstate(&setting), codes::INVALID_PARAMETER_VALUE);
        let other = DataFusionError::Internal("something broke".into());
        assert_eq!(sqlstate(&other), codes::INTERNAL_ERROR);
    }

    #[test]
    fn object_store_errors_say_what_happened() {
        let missing = DataFusionError::ObjectStore(Box::new(object_store::Error::Generic {
            store: "S3",
            source: "Error performing GET http://s3/no-such-bucket in 4ms: <?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code></Error>".into(),
        }));
        assert_eq!(sqlstate(&missing), codes::UNDEFINED_FILE);
        let text = message(&missing);
        assert!(text.starts_with("the bucket does not exist: "), "{text}");
        assert!(!text.contains("<Code>"), "{text}");
    }

    #[test]
    fn typed_errors_keep_their_sqlstate_and_message() {
        use sluice_types::error::SqlState;
        let err: DataFusionError =
            SluiceError::new(SqlState::UNDEFINED_OBJECT, "model 'nope' does not exist").into();
        let wrapped = DataFusionError::Context("planning".into(), Box::new(err));
        assert_eq!(sqlstate(&wrapped), "42704");
        assert_eq!(message(&wrapped), "model 'nope' does not exist");
    }
}
