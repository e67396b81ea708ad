//! Flink's connector tables: `CREATE TABLE t (…) WITH ('connector' = …)`.
//!
//! ```sql
//! CREATE TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP,
//!                    WATERMARK FOR date_time AS date_time - INTERVAL '4' SECOND)
//! WITH ('connector' = 'nexmark', 'events_per_second' = '0', 'events' = '1000');
//! ```
//!
//! A table with a `connector` option is not stored: its rows come from
//! the connector. The statement is recognised by looking ahead at its
//! tokens (a `WITH (` list holding `'connector'` after the column list) and
//! parsed here; any other CREATE TABLE goes to DataFusion's parser.

use std::collections::BTreeMap;

use datafusion::error::Result;
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::ast::helpers::stmt_create_table::CreateTableBuilder;
use datafusion::sql::sqlparser::ast::{self, ObjectName};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::Token;
use sluice_types::error::{SluiceError, SqlState};

use crate::sql::options::{options_sql, with_options};
use crate::sql::watermark::{WatermarkSpec, take_from_create_table};

/// A `CREATE TABLE … WITH ('connector' = …)`.
#[derive(Debug, Clone)]
pub struct CreateSource {
    /// The table as DataFusion plans it: columns only (no WATERMARK, no
    /// options).
    pub table: Box<ast::CreateTable>,
    /// Its `WATERMARK FOR` clause.
    pub watermark: Option<WatermarkSpec>,
    /// The connector options, keys lower-cased (`connector` included).
    pub options: BTreeMap<String, String>,
    /// The statement as stored in the catalog (re-parses to the same).
    pub definition: String,
}

impl CreateSource {
    /// The table's name.
    pub fn name(&self) -> &ObjectName {
        &self.table.name
    }

    /// The `connector` option.
    pub fn connector(&self) -> &str {
        self.options.get("connector").map_or("", String::as_str)
    }
}

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.value.eq_ignore_ascii_case(word) && w.quote_style.is_none())
}

/// Whether the parser stands at a `CREATE TABLE` with a `connector`
/// option: found by looking past the column list without consuming.
pub fn at_create_source(parser: &DFParser<'_>) -> bool {
    let p = &parser.parser;
    let t = |n| p.peek_nth_token_ref(n).token.clone();
    if !(is_word(&t(0), "create") && is_word(&t(1), "table")) {
        return false;
    }
    // Past the name to the column list.
    let mut n = 2;
    while !matches!(t(n), Token::LParen | Token::EOF | Token::SemiColon) {
        n += 1;
    }
    if t(n) != Token::LParen {
        return false;
    }
    let mut depth = 0usize;
    loop {
        match t(n) {
            Token::LParen => depth += 1,
            Token::RParen => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            Token::EOF => return false,
            _ => {}
        }
        n += 1;
    }
    if !(is_word(&t(n + 1), "with") && t(n + 2) == Token::LParen) {
        return false;
    }
    let mut k = n + 3;
    loop {
        match t(k) {
            Token::RParen | Token::EOF | Token::SemiColon => return false,
            Token::SingleQuotedString(s) | Token::DoubleQuotedString(s)
                if s.eq_ignore_ascii_case("connector") =>
            {
                return true;
            }
            Token::Word(w) if w.value.eq_ignore_ascii_case("connector") => return true,
            _ => k += 1,
        }
    }
}

/// Parses the statement [`at_create_source`] found.
pub fn parse_create_source(parser: &mut DFParser<'_>) -> Result<CreateSource> {
    let p = &mut parser.parser;
    p.expect_keyword_is(Keyword::CREATE).map_err(sql_error)?;
    p.expect_keyword_is(Keyword::TABLE).map_err(sql_error)?;
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = p.parse_object_name(false).map_err(sql_error)?;
    let (columns, constraints) = p.parse_columns().map_err(sql_error)?;
    p.expect_keyword_is(Keyword::WITH).map_err(sql_error)?;
    let options = with_options(p, "table")?;
    let mut elements: Vec<String> = columns.iter().map(ToString::to_string).collect();
    elements.extend(constraints.iter().map(ToString::to_string));
    let if_not_exists_text = if if_not_exists { "IF NOT EXISTS " } else { "" };
    let definition = format!(
        "CREATE TABLE {if_not_exists_text}{name} ({}) WITH {}",
        elements.join(", "),
        options_sql(&options)
    );
    let mut table = CreateTableBuilder::new(name)
        .if_not_exists(if_not_exists)
        .columns(columns)
        .constraints(constraints)
        .build();
    let watermark = take_from_create_table(&mut table)?;
    if !table.constraints.is_empty() {
        return Err(SluiceError::new(
            SqlState::FEATURE_NOT_SUPPORTED,
            "a connector table takes no constraints (its rows come from the connector)",
        )
        .into());
    }
    Ok(CreateSource {
        table: Box::new(table),
        watermark,
        options,
        definition,
    })
}

fn sql_error(e: ParserError) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::SQL(Box::new(e), None)
}

#[cfg(test)]
mod tests {
    use datafusion::sql::parser::DFParserBuilder;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

    use super::*;

    fn at(sql: &str) -> bool {
        let dialect = PostgreSqlDialect {};
        let parser = DFParserBuilder::new(sql)
            .with_dialect(&dialect)
            .build()
            .unwrap();
        at_create_source(&parser)
    }

    #[test]
    fn only_connector_tables_are_taken() {
        assert!(at(
            "CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen')"
        ));
        assert!(at(
            "create table if not exists s.g (a int, b text) with (connector = 'nexmark')"
        ));
        assert!(!at("CREATE TABLE t (id BIGINT)"));
        assert!(!at("CREATE TABLE t (id BIGINT) WITH ('format' = 'x')"));
        assert!(!at("CREATE TABLE t AS SELECT 1"));
        assert!(!at("CREATE TABLE t (id BIGINT); SELECT 'connector'"));
    }

    #[test]
    fn the_definition_parses_to_the_same_statement() {
        let sql = "CREATE TABLE g (id BIGINT, ts TIMESTAMP, CONSTRAINT \"sluice_watermark\" \
                   CHECK (ts = (ts - INTERVAL '5' SECOND))) WITH ('connector' = 'datagen', \
                   'fields.id.kind' = 'it''s')";
        let dialect = PostgreSqlDialect {};
        let mut parser = DFParserBuilder::new(sql)
            .with_dialect(&dialect)
            .build()
            .unwrap();
        let parsed = parse_create_source(&mut parser).unwrap();
        assert_eq!(parsed.definition, sql);
        assert_eq!(parsed.connector(), "datagen");
        assert_eq!(parsed.watermark.unwrap().delay_nanos, 5_000_000_000);
        assert_eq!(parsed.table.columns.len(), 2);
    }
}
