//! Flink's table-function syntax, `ML_PREDICT(TABLE t, MODEL m,
//! DESCRIPTOR(c), MAP['k', 'v'])`, which sqlparser cannot parse: a pass over
//! the *tokens* (never the text) drops the `TABLE`/`MODEL` keywords of the
//! call and turns Flink's `MAP[…]` into `MAP(…)`, so the call parses as an
//! ordinary table function. The `rewrite` layer's `ml_predict` then rewrites
//! that function on the AST.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// The table function whose arguments this pass rewrites.
pub const ML_PREDICT: &str = "ml_predict";

/// Rewrites `ML_PREDICT(TABLE t, MODEL m, …)` so it parses; any other text
/// is returned unchanged.
pub fn normalize_text(sql: &str) -> String {
    if !sql.to_ascii_lowercase().contains(ML_PREDICT) {
        return sql.to_string();
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return sql.to_string();
    };
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    // Depth of parentheses inside an ML_PREDICT call (0: not inside one).
    let mut depth = 0usize;
    // Brackets of `MAP[…]` currently open inside the call.
    let mut map_brackets = 0usize;
    let mut awaiting_call = false;
    for token in tokens {
        let significant = !matches!(token, Token::Whitespace(_));
        if depth == 0 {
            if awaiting_call && significant {
                awaiting_call = false;
                if token == Token::LParen {
                    depth = 1;
                    out.push(token);
                    continue;
                }
            }
            if let Token::Word(w) = &token
                && w.value.eq_ignore_ascii_case(ML_PREDICT)
                && w.quote_style.is_none()
            {
                awaiting_call = true;
            }
            out.push(token);
            continue;
        }
        match &token {
            Token::LParen => depth += 1,
            Token::RParen => depth -= 1,
            Token::LBracket if map_brackets > 0 || previous_word_is(&out, "map") => {
                map_brackets += 1;
                out.push(Token::LParen);
                continue;
            }
            Token::RBracket if map_brackets > 0 => {
                map_brackets -= 1;
                out.push(Token::RParen);
                continue;
            }
            Token::Word(w)
                if depth == 1
                    && w.quote_style.is_none()
                    && (w.value.eq_ignore_ascii_case("table")
                        || w.value.eq_ignore_ascii_case("model"))
                    && matches!(last_significant(&out), Some(Token::LParen | Token::Comma)) =>
            {
                continue;
            }
            _ => {}
        }
        out.push(token);
    }
    out.iter().map(ToString::to_string).collect()
}

fn last_significant(tokens: &[Token]) -> Option<&Token> {
    tokens
        .iter()
        .rev()
        .find(|t| !matches!(t, Token::Whitespace(_)))
}

fn previous_word_is(tokens: &[Token], word: &str) -> bool {
    matches!(last_significant(tokens), Some(Token::Word(w)) if w.value.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flink_syntax_becomes_a_table_function() {
        assert_eq!(
            normalize_text("SELECT * FROM ML_PREDICT(TABLE t, MODEL m, DESCRIPTOR(a, b)) AS p"),
            "SELECT * FROM ML_PREDICT( t,  m, DESCRIPTOR(a, b)) AS p"
        );
        assert_eq!(
            normalize_text(
                "select * from ml_predict(table t, model m, descriptor(a), map['k', '1'])"
            ),
            "select * from ml_predict( t,  m, descriptor(a), map('k', '1'))"
        );
        // Elsewhere TABLE and MODEL keep their meaning; other text is untouched.
        let other = "SELECT ml_predict('m', x) FROM model_table";
        assert_eq!(normalize_text(other), other);
    }
}
