//! Limits on how deeply a statement nests, checked on its tokens before
//! anything parses or plans it. Parsing, planning and running a statement
//! recurse over its expression trees; a statement generated to be deep
//! enough (a chain of thousands of `+` or `AND`) overflows a thread's
//! stack and takes the whole server down, and a deeply nested `ARRAY[…]`
//! literal makes type coercion take exponential time. Postgres bounds both
//! (`max_stack_depth`, 6 array dimensions); so does Sluice, with its errors.
//! [`check_subquery_columns`] refuses, on the parsed statement, the one
//! shape DataFusion's planner panics on: a value subquery of zero columns.

use std::ops::ControlFlow;

use datafusion::error::Result;
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Expr, Query, SetExpr, visit_expressions};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use sluice_types::error::{SluiceError, SqlState};

/// Array dimensions, as in Postgres (`MAXDIM`).
pub const MAX_ARRAY_DIMENSIONS: usize = 6;

/// Binary operators in a row at one level of parentheses. Far above what
/// people and ORMs write (an `IN` list is one operator), far below what
/// the server's stacks can recurse through.
pub const MAX_CHAINED_OPERATORS: usize = 2000;

/// Refuses a scalar or `IN` subquery that selects no column (`x = (SELECT
/// FROM t)`), with Postgres' error; DataFusion's planner reads the
/// subquery's first column and panics. (`EXISTS (SELECT FROM t)` is fine.)
pub fn check_subquery_columns(statement: &DFStatement) -> Result<()> {
    let DFStatement::Statement(statement) = statement else {
        return Ok(());
    };
    let found = visit_expressions(statement.as_ref(), |expr| match expr {
        Expr::Subquery(query)
        | Expr::InSubquery {
            subquery: query, ..
        } if selects_no_column(query) => ControlFlow::Break(()),
        _ => ControlFlow::Continue(()),
    });
    if found.is_break() {
        return Err(SluiceError::new(
            SqlState::SYNTAX_ERROR,
            "subquery must return only one column",
        )
        .into());
    }
    Ok(())
}

fn selects_no_column(query: &Query) -> bool {
    matches!(query.body.as_ref(), SetExpr::Select(select) if select.projection.is_empty())
}

/// Refuses `sql` if it nests past the limits above.
pub fn check(sql: &str) -> Result<()> {
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        // The parser reports what is wrong with it.
        return Ok(());
    };
    // Per open parenthesis, the operators chained at its level so far.
    let mut chains: Vec<usize> = vec![0];
    let mut brackets = 0usize;
    for token in &tokens {
        match token {
            Token::LParen => chains.push(0),
            Token::RParen if chains.len() > 1 => {
                chains.pop();
            }
            Token::LBracket => {
                brackets += 1;
                if brackets > MAX_ARRAY_DIMENSIONS {
                    return Err(SluiceError::new(
                        SqlState::PROGRAM_LIMIT_EXCEEDED,
                        format!(
                            "number of array dimensions exceeds the maximum allowed \
                             ({MAX_ARRAY_DIMENSIONS})"
                        ),
                    )
                    .into());
                }
            }
            Token::RBracket => brackets = brackets.saturating_sub(1),
            Token::Comma | Token::SemiColon => {
                if let Some(chain) = chains.last_mut() {
                    *chain = 0;
                }
            }
            token if is_binary_operator(token) => {
                if let Some(chain) = chains.last_mut() {
                    *chain += 1;
                    if *chain > MAX_CHAINED_OPERATORS {
                        return Err(SluiceError::new(
                            SqlState::STATEMENT_TOO_COMPLEX,
                            format!(
                                "statement too complex: more than {MAX_CHAINED_OPERATORS} \
                                 operators in a row; split the expression (an IN list or \
                                 an array takes any number of values)"
                            ),
                        )
                        .into());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn is_binary_operator(token: &Token) -> bool {
    match token {
        Token::Plus
        | Token::Minus
        | Token::Mul
        | Token::Div
        | Token::Mod
        | Token::StringConcat
        | Token::Eq
        | Token::Neq
        | Token::Lt
        | Token::Gt
        | Token::LtEq
        | Token::GtEq
        | Token::Ampersand
        | Token::Pipe
        | Token::Caret => true,
        Token::Word(word) => {
            let keyword = word.value.to_ascii_uppercase();
            keyword == "AND" || keyword == "OR"
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(sql: &str) -> Option<String> {
        check(sql).err().map(|e| {
            let text = e.to_string();
            text.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
    }

    #[test]
    fn ordinary_statements_pass() {
        assert!(check("SELECT a + b * 2 FROM t WHERE x = 1 AND y < 2 OR z").is_ok());
        let many_rows: Vec<String> = (0..5000).map(|i| format!("({i}, -{i})")).collect();
        assert!(check(&format!("INSERT INTO t VALUES {}", many_rows.join(", "))).is_ok());
        assert!(check("SELECT ARRAY[ARRAY[1, 2], ARRAY[3, 4]], '[1,2,3]'::vector(3)").is_ok());
    }

    #[test]
    fn long_operator_chains_are_refused() {
        let chain = vec!["1"; MAX_CHAINED_OPERATORS + 2].join(" + ");
        assert!(check(&format!("SELECT {chain}")).is_err());
        let allowed = vec!["1"; MAX_CHAINED_OPERATORS].join(" + ");
        assert!(
            check(&format!("SELECT {allowed}")).is_ok(),
            "{:?}",
            code("x")
        );
        let conditions = vec!["id > 0"; MAX_CHAINED_OPERATORS].join(" AND ");
        assert!(check(&format!("SELECT 1 FROM t WHERE {conditions}")).is_err());
    }

    #[test]
    fn arrays_nest_six_deep_at_most() {
        let nested =
            |depth: usize| format!("SELECT {}1{}", "ARRAY[".repeat(depth), "]".repeat(depth));
        assert!(check(&nested(MAX_ARRAY_DIMENSIONS)).is_ok());
        assert!(check(&nested(MAX_ARRAY_DIMENSIONS + 1)).is_err());
    }
}
