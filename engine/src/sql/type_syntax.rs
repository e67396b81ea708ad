//! Type spellings sqlparser cannot parse, rewritten to ones it can before
//! parsing:
//!
//! - `TENSOR(FLOAT, [3,224,224])` (FLIP-577's form): a custom type's
//!   modifiers may be words and numbers only, so the brackets are dropped,
//!   giving `TENSOR(FLOAT, 3,224,224)`, which the type planner reads.
//! - `'[1,2,3]'::vector` without a dimension (pgvector accepts it): the
//!   dimension is counted from the literal, `'[1,2,3]'::vector(3)`. Only a
//!   string literal gets one: a column's values may have any length, and a
//!   column's type must have a fixed one.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer, Word};

/// See the module documentation; text needing neither rewrite is returned
/// unchanged.
pub fn normalize_type_syntax(sql: &str) -> String {
    let lower = sql.to_ascii_lowercase();
    if !lower.contains("tensor") && !lower.contains("vector") && !lower.contains("embedding") {
        return sql.to_owned();
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return sql.to_owned();
    };
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut changed = false;
    // Parenthesis depth inside `TENSOR(` (0: not inside one).
    let mut tensor_depth = 0usize;
    let mut expecting_tensor_paren = false;
    for (i, token) in tokens.iter().enumerate() {
        let significant = !matches!(token, Token::Whitespace(_));
        if expecting_tensor_paren && significant {
            expecting_tensor_paren = false;
            if *token == Token::LParen {
                tensor_depth = 1;
                out.push(token.clone());
                continue;
            }
        }
        if tensor_depth > 0 {
            match token {
                Token::LParen => tensor_depth += 1,
                Token::RParen => tensor_depth -= 1,
                Token::LBracket | Token::RBracket if tensor_depth == 1 => {
                    changed = true;
                    continue;
                }
                _ => {}
            }
            out.push(token.clone());
            continue;
        }
        if let Token::Word(word) = token {
            if is_unquoted(word, "tensor") {
                expecting_tensor_paren = true;
            } else if (is_unquoted(word, "vector") || is_unquoted(word, "embedding"))
                && !next_significant_is(&tokens[i + 1..], &Token::LParen)
                && let Some(dim) = cast_literal_dimension(&out)
            {
                out.push(token.clone());
                out.push(Token::LParen);
                out.push(Token::Number(dim.to_string(), false));
                out.push(Token::RParen);
                changed = true;
                continue;
            }
        }
        out.push(token.clone());
    }
    if !changed {
        return sql.to_owned();
    }
    out.iter().map(ToString::to_string).collect()
}

fn is_unquoted(word: &Word, name: &str) -> bool {
    word.quote_style.is_none() && word.value.eq_ignore_ascii_case(name)
}

fn significant(tokens: &[Token]) -> impl DoubleEndedIterator<Item = &Token> {
    tokens.iter().filter(|t| !matches!(t, Token::Whitespace(_)))
}

fn next_significant_is(tokens: &[Token], wanted: &Token) -> bool {
    significant(tokens).next() == Some(wanted)
}

/// The element count of the vector literal being cast, when the tokens
/// just before the type name are `'[…]' ::` or `CAST ( '[…]' AS`.
fn cast_literal_dimension(before: &[Token]) -> Option<usize> {
    let mut previous = significant(before).rev();
    let literal = match (previous.next()?, previous.next()?) {
        (Token::DoubleColon, Token::SingleQuotedString(text)) => text,
        (Token::Word(w), Token::SingleQuotedString(text))
            if w.keyword == Keyword::AS && previous.next()? == &Token::LParen =>
        {
            text
        }
        _ => return None,
    };
    let inner = literal.trim().strip_prefix('[')?.strip_suffix(']')?;
    (!inner.trim().is_empty()).then(|| inner.split(',').count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_brackets_are_dropped() {
        assert_eq!(
            normalize_type_syntax("CREATE TABLE t (x TENSOR(FLOAT, [3, 224,224]))"),
            "CREATE TABLE t (x TENSOR(FLOAT, 3, 224,224))"
        );
        // Brackets elsewhere (array literals, subscripts) are kept.
        let sql = "SELECT ARRAY[1,2][1], '[[1]]'::tensor(float)";
        assert_eq!(normalize_type_syntax(sql), sql);
    }

    #[test]
    fn literal_vectors_get_their_dimension() {
        assert_eq!(
            normalize_type_syntax("SELECT '[1,2,3]'::vector, CAST('[0,0]' AS VECTOR)"),
            "SELECT '[1,2,3]'::vector(3), CAST('[0,0]' AS VECTOR(2))"
        );
        for unchanged in [
            "SELECT '[1,2]'::vector(2)",
            "SELECT c::vector FROM t",
            "CREATE TABLE t (v vector)",
            "SELECT 'vector'",
        ] {
            assert_eq!(normalize_type_syntax(unchanged), unchanged);
        }
    }
}
