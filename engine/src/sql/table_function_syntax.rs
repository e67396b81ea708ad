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

/// Table functions taking `TABLE t` as an argument, whose `TABLE` keyword
/// this pass drops: ML_PREDICT, Flink's window functions and VECTOR_SEARCH.
const TABLE_ARGUMENT_FUNCTIONS: [&str; 5] =
    [ML_PREDICT, "tumble", "hop", "session", "vector_search"];

/// Table functions Flink writes as `FROM TABLE(f(…))`, whose `TABLE(` … `)`
/// this pass drops.
const TABLE_WRAPPED_FUNCTIONS: [&str; 4] = ["tumble", "hop", "session", "vector_search"];

/// Rewrites `ML_PREDICT(TABLE t, MODEL m, …)` so it parses; any other text
/// is returned unchanged.
pub fn normalize_text(sql: &str) -> String {
    let lower = sql.to_ascii_lowercase();
    if !TABLE_ARGUMENT_FUNCTIONS
        .iter()
        .any(|name| lower.contains(name))
    {
        return sql.to_string();
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return sql.to_string();
    };
    let (tokens, unwrapped) = unwrap_table_calls(tokens);
    let (tokens, partitioned) = session_partition_by(tokens);
    let mut changed = unwrapped || partitioned;
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    // Depth of parentheses inside an ML_PREDICT call (0: not inside one).
    let mut depth = 0usize;
    // Brackets of `MAP[…]` currently open inside the call.
    let mut map_brackets = 0usize;
    let mut awaiting_call = false;
    // Only a changed statement is rendered from its tokens again; any
    // other text reaches the parser exactly as the client wrote it.
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
                && TABLE_ARGUMENT_FUNCTIONS
                    .iter()
                    .any(|name| w.value.eq_ignore_ascii_case(name))
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
                changed = true;
                map_brackets += 1;
                out.push(Token::LParen);
                continue;
            }
            Token::RBracket if map_brackets > 0 => {
                changed = true;
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
                changed = true;
                continue;
            }
            _ => {}
        }
        out.push(token);
    }
    if !changed {
        return sql.to_string();
    }
    out.iter().map(ToString::to_string).collect()
}

/// The function argument Flink's `SESSION(TABLE t PARTITION BY k, …)`
/// becomes: `SESSION(t, __sluice_partition_by(k), …)`.
pub const SESSION_PARTITION_BY: &str = "__sluice_partition_by";

/// Turns `SESSION(TABLE t PARTITION BY a, …)` and `… PARTITION BY (a, b),
/// …` into an argument of its own, `SESSION(t, __sluice_partition_by(a), …)`,
/// which parses as an ordinary call. Returns the tokens and whether any
/// changed.
fn session_partition_by(tokens: Vec<Token>) -> (Vec<Token>, bool) {
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i], Token::Whitespace(_)))
        .collect();
    let word = |at: usize, value: &str| {
        significant.get(at).is_some_and(|&i| {
            matches!(&tokens[i], Token::Word(w) if w.quote_style.is_none()
                && w.value.eq_ignore_ascii_case(value))
        })
    };
    let is = |at: usize, token: &Token| significant.get(at).is_some_and(|&i| tokens[i] == *token);
    let is_name = |at: usize| {
        significant
            .get(at)
            .is_some_and(|&i| matches!(tokens[i], Token::Word(_)))
    };
    // Tokens to put before (and after) a token, and tokens to drop.
    let mut before: Vec<Vec<Token>> = vec![Vec::new(); tokens.len()];
    let mut after: Vec<Vec<Token>> = vec![Vec::new(); tokens.len()];
    let mut dropped = vec![false; tokens.len()];
    let mut changed = false;
    for at in 0..significant.len() {
        if !(word(at, "session") && is(at + 1, &Token::LParen)) {
            continue;
        }
        // The table: `[TABLE] name[.name…]`.
        let mut next = at + 2;
        if word(next, "table") {
            next += 1;
        }
        if !is_name(next) {
            continue;
        }
        next += 1;
        while is(next, &Token::Period) && is_name(next + 1) {
            next += 2;
        }
        if !(word(next, "partition") && word(next + 1, "by")) {
            continue;
        }
        let partition = significant[next];
        dropped[partition] = true;
        dropped[significant[next + 1]] = true;
        before[partition] = vec![Token::Comma, Token::make_word(SESSION_PARTITION_BY, None)];
        next += 2;
        if !is(next, &Token::LParen) && is_name(next) {
            // One column, maybe qualified: wrap it in parentheses.
            before[significant[next]].push(Token::LParen);
            while is(next + 1, &Token::Period) && is_name(next + 2) {
                next += 2;
            }
            after[significant[next]].push(Token::RParen);
        }
        changed = true;
    }
    if !changed {
        return (tokens, false);
    }
    let mut out = Vec::with_capacity(tokens.len() + 4);
    for (i, token) in tokens.into_iter().enumerate() {
        out.append(&mut before[i]);
        if !dropped[i] {
            out.push(token);
        }
        out.append(&mut after[i]);
    }
    (out, true)
}

/// Flink writes window functions as `FROM TABLE(TUMBLE(…))` (and
/// `LATERAL TABLE(VECTOR_SEARCH(…))`): drops the `TABLE(` … `)` around
/// such a call, so both forms read the same.
/// Returns the tokens and whether any were dropped.
fn unwrap_table_calls(tokens: Vec<Token>) -> (Vec<Token>, bool) {
    let significant: Vec<usize> = (0..tokens.len())
        .filter(|&i| !matches!(tokens[i], Token::Whitespace(_)))
        .collect();
    let mut dropped = vec![false; tokens.len()];
    for (at, &i) in significant.iter().enumerate() {
        let is_table = matches!(&tokens[i], Token::Word(w) if w.value.eq_ignore_ascii_case("table") && w.quote_style.is_none());
        let (Some(&open), Some(&name)) = (significant.get(at + 1), significant.get(at + 2)) else {
            continue;
        };
        let wraps_window = is_table
            && tokens[open] == Token::LParen
            && matches!(&tokens[name], Token::Word(w) if w.quote_style.is_none()
                && TABLE_WRAPPED_FUNCTIONS.iter().any(|n| w.value.eq_ignore_ascii_case(n)));
        if !wraps_window {
            continue;
        }
        let mut depth = 0usize;
        for &j in &significant[at + 1..] {
            match tokens[j] {
                Token::LParen => depth += 1,
                Token::RParen => {
                    depth -= 1;
                    if depth == 0 {
                        dropped[i] = true;
                        dropped[open] = true;
                        dropped[j] = true;
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    let changed = dropped.iter().any(|d| *d);
    let kept = tokens
        .into_iter()
        .zip(dropped)
        .filter_map(|(token, dropped)| (!dropped).then_some(token))
        .collect();
    (kept, changed)
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
        assert_eq!(
            normalize_text("SELECT * FROM TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE)"),
            "SELECT * FROM TUMBLE( bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE)"
        );
        assert_eq!(
            normalize_text(
                "SELECT * FROM TABLE(HOP(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '2' SECOND)) AS w"
            ),
            "SELECT * FROM HOP( bids, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '2' SECOND) AS w"
        );
        assert_eq!(
            normalize_text(
                "SELECT * FROM SESSION(TABLE bids PARTITION BY item, DESCRIPTOR(ts), INTERVAL '5' MINUTE)"
            ),
            "SELECT * FROM SESSION( bids ,__sluice_partition_by  (item), DESCRIPTOR(ts), INTERVAL '5' MINUTE)"
        );
        assert_eq!(
            normalize_text(
                "SELECT * FROM TABLE(SESSION(TABLE b PARTITION BY (x, y), DESCRIPTOR(ts), INTERVAL '5' MINUTE))"
            ),
            "SELECT * FROM SESSION( b ,__sluice_partition_by  (x, y), DESCRIPTOR(ts), INTERVAL '5' MINUTE)"
        );
        // Elsewhere TABLE and MODEL keep their meaning; other text is untouched.
        let other = "SELECT ml_predict('m', x) FROM model_table";
        assert_eq!(normalize_text(other), other);
    }
}
