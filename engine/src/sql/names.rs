//! Identifiers as DataFusion resolves them, for the statement layer and the
//! rewrites that match names against a table's columns.

use datafusion::sql::planner::IdentNormalizer;
use datafusion::sql::sqlparser::ast::{self, ObjectName};

/// A column name as DataFusion resolves it: unquoted names fold to lower
/// case.
pub fn column_name(column: &ObjectName) -> Option<String> {
    Some(ident_name(column.0.last()?.as_ident()?))
}

/// An identifier as DataFusion resolves it (DataFusion's own normaliser).
pub fn ident_name(ident: &ast::Ident) -> String {
    IdentNormalizer::new(true).normalize(ident.clone())
}
