//! Sluice's statement layer over sqlparser: the statements DataFusion does
//! not know (`CREATE MODEL`, `COPY … FROM STDIN`, session commands) are
//! parsed here, everything else is handed to DataFusion's parser
//! ([`statement::parse_sql`]). Token-level passes make Sluice's syntax
//! parse: type names with brackets ([`type_syntax`]) and Flink's table
//! functions ([`table_function_syntax`]). Imports [`crate::pg`] (settings
//! names, the client catalog parser) and nothing above it.

pub mod calls;
pub mod complexity;
pub mod copy;
pub mod model_statement;
pub mod names;
pub mod options;
pub mod role_statement;
pub mod setting_bounds;
pub mod sink_statement;
pub mod source_statement;
pub mod statement;
pub mod streaming_statement;
pub mod table_function_syntax;
pub mod type_syntax;
pub mod watermark;
