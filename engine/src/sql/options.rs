//! `WITH ('key' = 'value', …)` option lists, as `CREATE MODEL` and
//! Flink-style `CREATE TABLE … WITH ('connector' = …)` write them.

use std::collections::BTreeMap;

use datafusion::error::{DataFusionError, Result};
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion::sql::sqlparser::tokenizer::Token;

/// Parses `('key' = 'value', …)` (the `WITH` already consumed); keys and
/// values may also be bare words or numbers. Keys are lower-cased; a key
/// given twice is an error naming `what` the options belong to.
pub fn with_options(p: &mut Parser<'_>, what: &str) -> Result<BTreeMap<String, String>> {
    p.expect_token(&Token::LParen).map_err(sql_error)?;
    let mut options = BTreeMap::new();
    if p.consume_token(&Token::RParen) {
        return Ok(options);
    }
    loop {
        let key = option_text(p)?.to_ascii_lowercase();
        p.expect_token(&Token::Eq).map_err(sql_error)?;
        let value = option_text(p)?;
        if options.insert(key.clone(), value).is_some() {
            return Err(DataFusionError::Plan(format!(
                "{what} option '{key}' is given twice"
            )));
        }
        if p.consume_token(&Token::RParen) {
            return Ok(options);
        }
        p.expect_token(&Token::Comma).map_err(sql_error)?;
    }
}

/// Options written back as SQL: `('key' = 'value', …)`.
pub fn options_sql(options: &BTreeMap<String, String>) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let items: Vec<String> = options
        .iter()
        .map(|(k, v)| format!("{} = {}", quote(k), quote(v)))
        .collect();
    format!("({})", items.join(", "))
}

fn option_text(p: &mut Parser<'_>) -> Result<String> {
    let token = p.next_token();
    match token.token {
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Ok(s),
        Token::Number(n, _) => Ok(n),
        Token::Word(w) => Ok(w.value),
        other => Err(sql_error(ParserError::ParserError(format!(
            "Expected: a quoted option key or value, found: {other}"
        )))),
    }
}

fn sql_error(e: ParserError) -> DataFusionError {
    DataFusionError::SQL(Box::new(e), None)
}
