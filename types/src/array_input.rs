//! Postgres' array input (`array_in`): the elements of a one-dimensional
//! array's text form, `{1,2,NULL}`, `{"a b","say \"hi\""}`, `{}`, each as
//! the text its element type then parses.
//!
//! Arrow's cast of a string to a list makes a one-element list of the
//! whole string (`'{1,2}'::int[]` failed with "Cannot cast string '{1,2}'
//! to value of Int32 type"); the rule (Postgres' own, in `arrayfuncs.c`) is
//! small and no crate in the tree reads it, so it is written here.

use crate::error::{SluiceError, SqlState};

/// The elements of `text`, `None` for an unquoted `NULL`. Errors are
/// Postgres': `22P02` for a malformed literal, `0A000` for a nested one.
pub fn parse_array_text(text: &str) -> Result<Vec<Option<String>>, SluiceError> {
    let malformed = |detail: &str| {
        SluiceError::new(
            SqlState::INVALID_TEXT_REPRESENTATION,
            format!("malformed array literal: \"{text}\" ({detail})"),
        )
    };
    let mut chars = text.trim_start().chars().peekable();
    if chars.next() != Some('{') {
        return Err(malformed("array value must start with \"{\""));
    }
    let mut elements = Vec::new();
    skip_whitespace(&mut chars);
    if chars.peek() == Some(&'}') {
        chars.next();
    } else {
        loop {
            skip_whitespace(&mut chars);
            elements.push(match chars.peek() {
                Some('"') => {
                    chars.next();
                    Some(quoted(&mut chars).ok_or_else(|| malformed("unterminated quote"))?)
                }
                Some('{') => {
                    return Err(SluiceError::new(
                        SqlState::FEATURE_NOT_SUPPORTED,
                        format!("multidimensional arrays are not supported: \"{text}\""),
                    ));
                }
                _ => unquoted(&mut chars).ok_or_else(|| malformed("empty element"))?,
            });
            skip_whitespace(&mut chars);
            match chars.next() {
                Some(',') => continue,
                Some('}') => break,
                _ => return Err(malformed("expected \",\" or \"}\"")),
            }
        }
    }
    if chars.any(|c| !c.is_whitespace()) {
        return Err(malformed("junk after closing right brace"));
    }
    Ok(elements)
}

type Chars<'a> = std::iter::Peekable<std::str::Chars<'a>>;

fn skip_whitespace(chars: &mut Chars<'_>) {
    while chars.next_if(|c| c.is_whitespace()).is_some() {}
}

/// A quoted element after its opening quote; `None` if it never closes.
fn quoted(chars: &mut Chars<'_>) -> Option<String> {
    let mut element = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(element),
            '\\' => element.push(chars.next()?),
            c => element.push(c),
        }
    }
}

/// An unquoted element, up to the next `,` or `}`, trailing whitespace
/// trimmed (an escaped character is kept as written, also whitespace);
/// `Some(None)` for `NULL`, `None` if it is empty.
fn unquoted(chars: &mut Chars<'_>) -> Option<Option<String>> {
    let mut element = String::new();
    // Bytes of `element` that are escaped or precede an escape: trimming
    // stops there.
    let mut kept = 0;
    let mut escaped = false;
    while let Some(&c) = chars.peek() {
        if matches!(c, ',' | '}') {
            break;
        }
        chars.next();
        if c == '\\' {
            let next = chars.next()?;
            element.push(next);
            kept = element.len();
            escaped = true;
        } else {
            element.push(c);
        }
    }
    let trimmed_len = element.trim_end().len().max(kept);
    element.truncate(trimmed_len);
    if element.is_empty() {
        return None;
    }
    if !escaped && element.eq_ignore_ascii_case("NULL") {
        return Some(None);
    }
    Some(Some(element))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Vec<Option<String>> {
        parse_array_text(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn some(values: &[&str]) -> Vec<Option<String>> {
        values.iter().map(|v| Some((*v).to_owned())).collect()
    }

    #[test]
    fn reads_postgres_array_text() {
        assert_eq!(parsed("{1,2,3}"), some(&["1", "2", "3"]));
        assert_eq!(parsed("  { 1 , 2 }  "), some(&["1", "2"]));
        assert_eq!(parsed("{}"), Vec::<Option<String>>::new());
        assert_eq!(parsed("{ }"), Vec::<Option<String>>::new());
        assert_eq!(
            parsed("{NULL,null,\"NULL\"}"),
            vec![None, None, Some("NULL".to_owned())]
        );
        assert_eq!(
            parsed(r#"{"a b","say \"hi\"",c\,d,"",x\ }"#),
            some(&["a b", "say \"hi\"", "c,d", "", "x "])
        );
        assert_eq!(parsed("{hello world}"), some(&["hello world"]));
    }

    #[test]
    fn refuses_what_postgres_refuses() {
        let code = |text: &str| parse_array_text(text).map_err(|e| e.sqlstate);
        for text in ["1,2", "{1,2", "{1,,2}", "{1,2}x", "{\"a}", "{,}", ""] {
            assert_eq!(
                code(text),
                Err(SqlState::INVALID_TEXT_REPRESENTATION),
                "{text}"
            );
        }
        assert_eq!(code("{{1},{2}}"), Err(SqlState::FEATURE_NOT_SUPPORTED));
    }
}
