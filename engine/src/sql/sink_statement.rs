//! `CREATE SINK`, in RisingWave's form with Flink's connector options:
//!
//! ```sql
//! CREATE SINK [IF NOT EXISTS] s FROM v WITH ('connector' = 'filesystem',
//!     'path' = 'file:///tmp/out/' | 's3://bucket/out/', 'format' = 'parquet' | 'json');
//! CREATE SINK [IF NOT EXISTS] s AS SELECT … WITH ('connector' = 'table', 'table' = 't');
//! ```

use std::collections::BTreeMap;

use datafusion::error::{DataFusionError, Result};
use datafusion::sql::sqlparser::ast::{ObjectName, Query};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::sql::options::{options_sql, with_options};

/// What a sink delivers.
#[derive(Debug, Clone)]
pub enum SinkInput {
    /// A materialized view's changes (`FROM v`).
    View(ObjectName),
    /// A query's output (`AS SELECT …`).
    Query(Box<Query>),
}

/// A `CREATE SINK` statement.
#[derive(Debug, Clone)]
pub struct CreateSink {
    /// The sink's name.
    pub name: ObjectName,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// What it delivers.
    pub input: SinkInput,
    /// Its connector options, keys lower-cased.
    pub options: BTreeMap<String, String>,
}

impl CreateSink {
    /// The statement as SQL (what the catalog stores).
    pub fn to_sql(&self) -> String {
        let if_not_exists = if self.if_not_exists {
            "IF NOT EXISTS "
        } else {
            ""
        };
        let input = match &self.input {
            SinkInput::View(view) => format!("FROM {view}"),
            SinkInput::Query(query) => format!("AS {query}"),
        };
        format!(
            "CREATE SINK {if_not_exists}{} {input} WITH {}",
            self.name,
            options_sql(&self.options)
        )
    }
}

/// Parses `CREATE SINK …` after its `CREATE SINK` keywords.
pub fn parse_create_sink(p: &mut Parser<'_>) -> Result<CreateSink> {
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = p.parse_object_name(false).map_err(sql_error)?;
    let input = if p.parse_keyword(Keyword::FROM) {
        SinkInput::View(p.parse_object_name(false).map_err(sql_error)?)
    } else {
        p.expect_keyword_is(Keyword::AS).map_err(sql_error)?;
        // The query ends at the statement's last top-level `WITH (`: left
        // to itself, sqlparser would read `FROM t WITH (…)` as table hints.
        let end = options_start(p).ok_or_else(|| {
            sql_error(ParserError::ParserError(
                "Expected: WITH ('connector' = …) after the sink's query".into(),
            ))
        })?;
        let tokens = (0..end).map(|_| p.next_token()).collect();
        let mut query = Parser::new(&PostgreSqlDialect {}).with_tokens_with_locations(tokens);
        let parsed = query.parse_query().map_err(sql_error)?;
        if query.peek_token().token != Token::EOF {
            return Err(sql_error(ParserError::ParserError(format!(
                "Expected: end of the sink's query, found: {}",
                query.peek_token().token
            ))));
        }
        SinkInput::Query(parsed)
    };
    p.expect_keyword_is(Keyword::WITH).map_err(sql_error)?;
    let options = with_options(p, "sink")?;
    Ok(CreateSink {
        name,
        if_not_exists,
        input,
        options,
    })
}

/// How many tokens ahead the statement's last top-level `WITH (` is.
fn options_start(p: &Parser<'_>) -> Option<usize> {
    let mut depth = 0usize;
    let mut last = None;
    let mut n = 0;
    loop {
        match &p.peek_nth_token_ref(n).token {
            Token::EOF | Token::SemiColon if depth == 0 => return last,
            Token::EOF => return None,
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w)
                if depth == 0
                    && w.keyword == Keyword::WITH
                    && p.peek_nth_token_ref(n + 1).token == Token::LParen =>
            {
                last = Some(n);
            }
            _ => {}
        }
        n += 1;
    }
}

fn sql_error(e: ParserError) -> DataFusionError {
    DataFusionError::SQL(Box::new(e), None)
}
