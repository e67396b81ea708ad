//! Continuous-query statements, in RisingWave's and Materialize's forms:
//!
//! ```sql
//! CREATE MATERIALIZED VIEW [IF NOT EXISTS] v AS SELECT …;
//! DROP MATERIALIZED VIEW [IF EXISTS] v;
//! SHOW MATERIALIZED VIEWS;
//! ALTER MATERIALIZED VIEW v PAUSE | RESUME;
//! FLUSH;   -- returns once every view reflects every write committed before it
//! ```
//!
//! sqlparser parses `CREATE MATERIALIZED VIEW` as an ordinary view with a
//! flag; Sluice takes the statement here instead, so DataFusion never plans
//! it as a (non-materialized) view.

use datafusion::error::{DataFusionError, Result};
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::ast::{ObjectName, Query};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::Token;

/// A continuous-query statement.
#[derive(Debug, Clone)]
pub enum StreamingStatement {
    /// `CREATE MATERIALIZED VIEW`.
    CreateMaterializedView {
        /// The view's name.
        name: ObjectName,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// The query it keeps up to date.
        query: Box<Query>,
    },
    /// `DROP MATERIALIZED VIEW`.
    DropMaterializedView {
        /// The view's name.
        name: ObjectName,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `SHOW MATERIALIZED VIEWS`.
    ShowMaterializedViews,
    /// `ALTER MATERIALIZED VIEW v PAUSE | RESUME`.
    AlterMaterializedView {
        /// The view's name.
        name: ObjectName,
        /// `true` to pause, `false` to resume.
        pause: bool,
    },
    /// `FLUSH`.
    Flush,
}

impl StreamingStatement {
    /// The statement as SQL text: what the catalog stores for a view.
    pub fn to_sql(&self) -> String {
        match self {
            StreamingStatement::CreateMaterializedView {
                name,
                if_not_exists,
                query,
            } => {
                let if_not_exists = if *if_not_exists { "IF NOT EXISTS " } else { "" };
                format!("CREATE MATERIALIZED VIEW {if_not_exists}{name} AS {query}")
            }
            StreamingStatement::DropMaterializedView { name, if_exists } => {
                let if_exists = if *if_exists { "IF EXISTS " } else { "" };
                format!("DROP MATERIALIZED VIEW {if_exists}{name}")
            }
            StreamingStatement::ShowMaterializedViews => "SHOW MATERIALIZED VIEWS".into(),
            StreamingStatement::AlterMaterializedView { name, pause } => {
                let action = if *pause { "PAUSE" } else { "RESUME" };
                format!("ALTER MATERIALIZED VIEW {name} {action}")
            }
            StreamingStatement::Flush => "FLUSH".into(),
        }
    }
}

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.value.eq_ignore_ascii_case(word) && w.quote_style.is_none())
}

/// Whether the parser stands at a continuous-query statement.
pub fn at_streaming_statement(parser: &DFParser<'_>) -> bool {
    let p = &parser.parser;
    let t = |n| p.peek_nth_token_ref(n).token.clone();
    let first = t(0);
    if is_word(&first, "flush") {
        return matches!(t(1), Token::EOF | Token::SemiColon);
    }
    let materialized = is_word(&t(1), "materialized");
    (is_word(&first, "create") || is_word(&first, "drop") || is_word(&first, "alter"))
        && materialized
        && is_word(&t(2), "view")
        || is_word(&first, "show") && materialized && is_word(&t(2), "views")
}

/// Parses the statement the parser stands at (see
/// [`at_streaming_statement`]).
pub fn parse_streaming_statement(parser: &mut DFParser<'_>) -> Result<StreamingStatement> {
    let p = &mut parser.parser;
    let first = p.next_token().token;
    if is_word(&first, "flush") {
        return Ok(StreamingStatement::Flush);
    }
    // MATERIALIZED VIEW(S)
    p.next_token();
    p.next_token();
    if is_word(&first, "show") {
        return Ok(StreamingStatement::ShowMaterializedViews);
    }
    if is_word(&first, "drop") {
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = p.parse_object_name(false).map_err(sql_error)?;
        return Ok(StreamingStatement::DropMaterializedView { name, if_exists });
    }
    if is_word(&first, "alter") {
        let name = p.parse_object_name(false).map_err(sql_error)?;
        let action = p.next_token().token;
        let pause = if is_word(&action, "pause") {
            true
        } else if is_word(&action, "resume") {
            false
        } else {
            return Err(sql_error(ParserError::ParserError(format!(
                "expected PAUSE or RESUME after ALTER MATERIALIZED VIEW {name}, found {action}"
            ))));
        };
        return Ok(StreamingStatement::AlterMaterializedView { name, pause });
    }
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = p.parse_object_name(false).map_err(sql_error)?;
    p.expect_keyword_is(Keyword::AS).map_err(sql_error)?;
    let query = p.parse_query().map_err(sql_error)?;
    Ok(StreamingStatement::CreateMaterializedView {
        name,
        if_not_exists,
        query,
    })
}

fn sql_error(e: ParserError) -> DataFusionError {
    DataFusionError::SQL(Box::new(e), None)
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

    use super::*;

    fn parse(sql: &str) -> StreamingStatement {
        let dialect = PostgreSqlDialect {};
        let mut parser = datafusion::sql::parser::DFParserBuilder::new(sql)
            .with_dialect(&dialect)
            .build()
            .unwrap();
        assert!(at_streaming_statement(&parser), "{sql}");
        parse_streaming_statement(&mut parser).unwrap()
    }

    #[test]
    fn statements_round_trip_through_their_text() {
        for sql in [
            "CREATE MATERIALIZED VIEW v AS SELECT a, count(*) FROM t GROUP BY a",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS s.v AS SELECT * FROM t WHERE a > 1",
            "DROP MATERIALIZED VIEW IF EXISTS v",
            "DROP MATERIALIZED VIEW v",
            "SHOW MATERIALIZED VIEWS",
            "ALTER MATERIALIZED VIEW v PAUSE",
            "ALTER MATERIALIZED VIEW v RESUME",
            "FLUSH",
        ] {
            assert_eq!(parse(sql).to_sql(), sql);
        }
    }

    #[test]
    fn other_statements_are_left_alone() {
        let dialect = PostgreSqlDialect {};
        for sql in [
            "CREATE VIEW v AS SELECT 1",
            "SELECT flush FROM t",
            "DROP VIEW v",
        ] {
            let parser = datafusion::sql::parser::DFParserBuilder::new(sql)
                .with_dialect(&dialect)
                .build()
                .unwrap();
            assert!(!at_streaming_statement(&parser), "{sql}");
        }
    }
}
