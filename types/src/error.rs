//! [`SluiceError`]: an error that knows its SQLSTATE when it is raised.
//!
//! DataFusion's error variants say in which phase something failed, not what
//! a Postgres client should be told; mapping messages to codes afterwards is
//! guesswork. Sluice code that knows the right code raises a `SluiceError`,
//! boxed in [`DataFusionError::External`], and the wire edge reads the code
//! back with [`SluiceError::find`]. It lives in the lowest crate so every
//! crate above can raise one.

use std::fmt;

use datafusion::error::DataFusionError;

/// A SQLSTATE code (<https://www.postgresql.org/docs/15/errcodes-appendix.html>).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlState(pub &'static str);

impl SqlState {
    /// `08P01`: the client broke the wire protocol.
    pub const PROTOCOL_VIOLATION: SqlState = SqlState("08P01");
    /// `42P02`: a `$n` that names no parameter.
    pub const UNDEFINED_PARAMETER: SqlState = SqlState("42P02");
    /// `54000`: a statement beyond one of Sluice's limits.
    pub const PROGRAM_LIMIT_EXCEEDED: SqlState = SqlState("54000");
    /// `42501`: the server's configuration does not allow this.
    pub const INSUFFICIENT_PRIVILEGE: SqlState = SqlState("42501");
    /// `40001`: a concurrent write won; retrying may succeed.
    pub const SERIALIZATION_FAILURE: SqlState = SqlState("40001");
    /// `42704`: no model (or other object) of that name.
    pub const UNDEFINED_OBJECT: SqlState = SqlState("42704");
    /// `42701`: a relation would have two columns of one name.
    pub const DUPLICATE_COLUMN: SqlState = SqlState("42701");
    /// `42710`: a model (or other object) of that name exists.
    pub const DUPLICATE_OBJECT: SqlState = SqlState("42710");
    /// `58P01`: a file or object that is not there.
    pub const UNDEFINED_FILE: SqlState = SqlState("58P01");
    /// `38000`: a model failed while running.
    pub const EXTERNAL_ROUTINE_EXCEPTION: SqlState = SqlState("38000");
    /// `42804`: values of the wrong type for a model.
    pub const DATATYPE_MISMATCH: SqlState = SqlState("42804");
    /// `42883`: no function (model signature) takes these arguments.
    pub const UNDEFINED_FUNCTION: SqlState = SqlState("42883");
    /// `42725`: a function name that names several functions where one
    /// is needed (`'abs'::regproc`).
    pub const AMBIGUOUS_FUNCTION: SqlState = SqlState("42725");
    /// `22P04`: COPY data that does not parse.
    pub const BAD_COPY_FILE_FORMAT: SqlState = SqlState("22P04");
    /// `22021`: bytes that are not valid UTF-8.
    pub const CHARACTER_NOT_IN_REPERTOIRE: SqlState = SqlState("22021");
    /// `55000`: an object that changed since it was referenced.
    pub const OBJECT_NOT_IN_PREREQUISITE_STATE: SqlState = SqlState("55000");
    /// `22P03`: bytes that are not a valid value (an image, a clip).
    pub const INVALID_BINARY_REPRESENTATION: SqlState = SqlState("22P03");
    /// `0A000`: valid input Sluice does not handle.
    pub const FEATURE_NOT_SUPPORTED: SqlState = SqlState("0A000");
    /// `XX000`: a broken invariant.
    pub const INTERNAL_ERROR: SqlState = SqlState("XX000");
    /// `XX001`: stored data that cannot be read (a corrupt file).
    pub const DATA_CORRUPTED: SqlState = SqlState("XX001");
    /// `22P02`: text that is not a value of the type.
    pub const INVALID_TEXT_REPRESENTATION: SqlState = SqlState("22P02");
    /// `42846`: no conversion between the two types.
    pub const CANNOT_COERCE: SqlState = SqlState("42846");
    /// `2202E`: an index outside an array or tensor.
    pub const ARRAY_SUBSCRIPT_ERROR: SqlState = SqlState("2202E");
    /// `22023`: an option or argument with a value outside its domain.
    pub const INVALID_PARAMETER_VALUE: SqlState = SqlState("22023");
    /// `22004`: a NULL where a value is required (a window's time column).
    pub const NULL_VALUE_NOT_ALLOWED: SqlState = SqlState("22004");
    /// `2BP01`: an object others depend on (a table a continuous query reads).
    pub const DEPENDENT_OBJECTS_STILL_EXIST: SqlState = SqlState("2BP01");
    /// `34000`: no open cursor of that name.
    pub const INVALID_CURSOR_NAME: SqlState = SqlState("34000");
    /// `42P03`: a cursor of that name is open already.
    pub const DUPLICATE_CURSOR: SqlState = SqlState("42P03");
    /// `42601`: a statement that does not have the expected form.
    pub const SYNTAX_ERROR: SqlState = SqlState("42601");
    /// `42809`: an object of another kind than the statement expects.
    pub const WRONG_OBJECT_TYPE: SqlState = SqlState("42809");
    /// `42P01`: no relation of that name.
    pub const UNDEFINED_TABLE: SqlState = SqlState("42P01");
    /// `42602`: a name that does not parse as one (`'a..b'::regclass`).
    pub const INVALID_NAME: SqlState = SqlState("42602");
    /// `21000`: a subquery used as a value returned more than one row.
    pub const CARDINALITY_VIOLATION: SqlState = SqlState("21000");
    /// `42P07`: a relation of that name exists already.
    pub const DUPLICATE_TABLE: SqlState = SqlState("42P07");
    /// `3F000`: no schema of that name.
    pub const INVALID_SCHEMA_NAME: SqlState = SqlState("3F000");
    /// `54001`: a statement nested too deeply to plan safely.
    pub const STATEMENT_TOO_COMPLEX: SqlState = SqlState("54001");
    /// `42939`: a name reserved for the system (a predefined role).
    pub const RESERVED_NAME: SqlState = SqlState("42939");
    /// `25P01`: a transaction-only command outside a transaction.
    pub const NO_ACTIVE_SQL_TRANSACTION: SqlState = SqlState("25P01");
    /// `25001`: a statement that cannot run inside a transaction block.
    pub const ACTIVE_SQL_TRANSACTION: SqlState = SqlState("25001");
    /// `3B001`: no savepoint of that name.
    pub const INVALID_SAVEPOINT_SPECIFICATION: SqlState = SqlState("3B001");
    /// `42703`: no column of that name.
    pub const UNDEFINED_COLUMN: SqlState = SqlState("42703");

    /// The five-character code.
    pub fn code(self) -> &'static str {
        self.0
    }
}

/// An error with its SQLSTATE and the message a client sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SluiceError {
    /// What a client should branch on.
    pub sqlstate: SqlState,
    /// What a person reads.
    pub message: String,
}

impl SluiceError {
    /// An error with `sqlstate` and `message`.
    pub fn new(sqlstate: SqlState, message: impl Into<String>) -> Self {
        Self {
            sqlstate,
            message: message.into(),
        }
    }

    /// This error as a [`DataFusionError`], so it travels through
    /// DataFusion's `Result`s unchanged.
    pub fn into_datafusion(self) -> DataFusionError {
        DataFusionError::External(Box::new(self))
    }

    /// The `SluiceError` inside `err`, looking through DataFusion's
    /// wrappers (context, shared and collected errors).
    pub fn find(err: &DataFusionError) -> Option<&SluiceError> {
        match err {
            DataFusionError::External(inner) => inner
                .downcast_ref::<SluiceError>()
                .or_else(|| inner.downcast_ref::<DataFusionError>().and_then(Self::find)),
            DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
                Self::find(inner)
            }
            DataFusionError::Shared(inner) => Self::find(inner),
            DataFusionError::Collection(errs) => errs.first().and_then(Self::find),
            _ => None,
        }
    }
}

impl fmt::Display for SluiceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SluiceError {}

impl From<SluiceError> for DataFusionError {
    fn from(err: SluiceError) -> Self {
        err.into_datafusion()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_through_wrappers() {
        let err = SluiceError::new(SqlState::UNDEFINED_PARAMETER, "there is no parameter $0");
        let wrapped = DataFusionError::Context(
            "planning".into(),
            Box::new(DataFusionError::Shared(std::sync::Arc::new(
                err.clone().into_datafusion(),
            ))),
        );
        assert_eq!(SluiceError::find(&wrapped), Some(&err));
        assert_eq!(SluiceError::find(&DataFusionError::Plan("x".into())), None);
    }
}
