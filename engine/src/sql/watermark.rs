//! Flink's event-time declaration in `CREATE TABLE`:
//!
//! ```sql
//! CREATE TABLE bids (auction BIGINT, price BIGINT, ts TIMESTAMP,
//!                    WATERMARK FOR ts AS ts - INTERVAL '5' SECOND);
//! ```
//!
//! sqlparser has no WATERMARK clause, so a pass over the *tokens* turns it
//! into a table constraint sqlparser does parse,
//! `CONSTRAINT "sluice_watermark" CHECK (ts = (ts - INTERVAL '5' SECOND))`,
//! and [`take_from_create_table`] takes that constraint back out of the
//! parsed statement as a [`WatermarkSpec`]. The table keeps the spec in its
//! schema's metadata, where continuous queries reading it find it.

use std::collections::HashMap;

use datafusion::arrow::compute::kernels::cast_utils::parse_interval_month_day_nano;
use datafusion::arrow::datatypes::Schema;
use datafusion::error::Result;
use datafusion::sql::sqlparser::ast::{self, BinaryOperator, Expr, TableConstraint};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use sluice_types::error::{SluiceError, SqlState};

/// The constraint name the token pass gives a WATERMARK clause.
const CONSTRAINT_NAME: &str = "sluice_watermark";
/// Schema metadata: the event-time column.
const COLUMN_KEY: &str = "sluice.watermark.column";
/// Schema metadata: the delay subtracted from the largest event time.
const DELAY_KEY: &str = "sluice.watermark.delay_ns";

/// A table's event-time column and how late its rows may arrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatermarkSpec {
    /// The event-time column.
    pub column: String,
    /// Nanoseconds subtracted from the largest event time seen.
    pub delay_nanos: i64,
}

impl WatermarkSpec {
    /// The spec a table's schema carries, if any.
    pub fn from_schema(schema: &Schema) -> Option<Self> {
        let metadata = schema.metadata();
        Some(Self {
            column: metadata.get(COLUMN_KEY)?.clone(),
            delay_nanos: metadata.get(DELAY_KEY)?.parse().ok()?,
        })
    }

    /// `metadata` with this spec added.
    pub fn add_to_metadata(&self, metadata: &mut HashMap<String, String>) {
        metadata.insert(COLUMN_KEY.into(), self.column.clone());
        metadata.insert(DELAY_KEY.into(), self.delay_nanos.to_string());
    }

    /// The spec of `WATERMARK FOR column AS expr`: `expr` is the column
    /// itself or the column minus an interval.
    fn from_clause(column: &str, expr: &Expr) -> Result<Self> {
        let names_column = |e: &Expr| matches!(e, Expr::Identifier(i) if i.value == column);
        let delay_nanos = match expr {
            Expr::Nested(inner) => return Self::from_clause(column, inner),
            e if names_column(e) => 0,
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Minus,
                right,
            } if names_column(left) => match right.as_ref() {
                Expr::Interval(interval) => interval_nanos(interval)?,
                _ => return Err(unsupported(column, expr)),
            },
            _ => return Err(unsupported(column, expr)),
        };
        if delay_nanos < 0 {
            return Err(SluiceError::new(
                SqlState::INVALID_PARAMETER_VALUE,
                format!("the watermark delay of {column} must not be negative"),
            )
            .into());
        }
        Ok(Self {
            column: column.to_owned(),
            delay_nanos,
        })
    }
}

fn unsupported(column: &str, expr: &Expr) -> datafusion::error::DataFusionError {
    SluiceError::new(
        SqlState::FEATURE_NOT_SUPPORTED,
        format!(
            "WATERMARK FOR {column} AS {expr}: a watermark is the column itself or the column \
             minus an interval (`{column} - INTERVAL '5' SECOND`)"
        ),
    )
    .into()
}

/// An interval literal's length in nanoseconds (months are refused: their
/// length varies).
pub fn interval_nanos(interval: &ast::Interval) -> Result<i64> {
    let value = match interval.value.as_ref() {
        Expr::Value(v) => match &v.value {
            ast::Value::SingleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        other => other.to_string(),
    };
    let text = match &interval.leading_field {
        Some(field) => format!("{value} {field}"),
        None => value,
    };
    interval_text_nanos(&text)
}

/// The length of an interval written as text (`'5 seconds'`, `'1 minute'`)
/// in nanoseconds; months are refused (their length varies).
pub fn interval_text_nanos(text: &str) -> Result<i64> {
    let invalid = || {
        SluiceError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("INTERVAL '{text}' is not a fixed length of time"),
        )
    };
    let parsed = parse_interval_month_day_nano(text).map_err(|_| invalid())?;
    if parsed.months != 0 {
        return Err(invalid().into());
    }
    (parsed.days as i64)
        .checked_mul(86_400_000_000_000)
        .and_then(|days| days.checked_add(parsed.nanoseconds))
        .ok_or_else(|| invalid().into())
}

/// Removes the WATERMARK constraint the token pass made from `statement`
/// and returns its spec.
pub fn take_from_create_table(statement: &mut ast::CreateTable) -> Result<Option<WatermarkSpec>> {
    let mut spec = None;
    let mut error = None;
    statement.constraints.retain(|constraint| {
        let TableConstraint::Check(check) = constraint else {
            return true;
        };
        if check.name.as_ref().map(|n| n.value.as_str()) != Some(CONSTRAINT_NAME) {
            return true;
        }
        match check.expr.as_ref() {
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => match left.as_ref() {
                Expr::Identifier(column) => {
                    match WatermarkSpec::from_clause(&column.value, right) {
                        Ok(parsed) => spec = Some(parsed),
                        Err(e) => error = Some(e),
                    }
                }
                _ => return true,
            },
            _ => return true,
        }
        false
    });
    if let Some(e) = error {
        return Err(e);
    }
    if let Some(spec) = &spec
        && !statement
            .columns
            .iter()
            .any(|c| c.name.value == spec.column)
    {
        return Err(SluiceError::new(
            SqlState::UNDEFINED_OBJECT,
            format!("WATERMARK FOR {}: no such column", spec.column),
        )
        .into());
    }
    Ok(spec)
}

/// The token pass: `WATERMARK FOR c AS expr` → `CONSTRAINT
/// "sluice_watermark" CHECK (c = (expr))`. Other text is returned as is.
pub fn normalize_text(sql: &str) -> String {
    if !sql.to_ascii_lowercase().contains("watermark") {
        return sql.to_string();
    }
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize() else {
        return sql.to_string();
    };
    let is_word = |t: &Token, word: &str| matches!(t, Token::Word(w) if w.value.eq_ignore_ascii_case(word) && w.quote_style.is_none());
    let mut out: Vec<Token> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        let significant: Vec<usize> = (i + 1..tokens.len())
            .filter(|&j| !matches!(tokens[j], Token::Whitespace(_)))
            .take(3)
            .collect();
        let clause = is_word(&tokens[i], "watermark")
            && significant.len() == 3
            && is_word(&tokens[significant[0]], "for")
            && is_word(&tokens[significant[2]], "as");
        if !clause {
            out.push(tokens[i].clone());
            i += 1;
            continue;
        }
        let column = tokens[significant[1]].clone();
        // The expression runs to the comma or parenthesis that ends the
        // clause at its own depth.
        let mut depth = 0usize;
        let mut end = significant[2] + 1;
        while end < tokens.len() {
            match tokens[end] {
                Token::LParen => depth += 1,
                Token::RParen if depth == 0 => break,
                Token::RParen => depth -= 1,
                Token::Comma if depth == 0 => break,
                _ => {}
            }
            end += 1;
        }
        let constraint = format!(
            "CONSTRAINT \"{CONSTRAINT_NAME}\" CHECK ({column} = ({}))",
            tokens[significant[2] + 1..end]
                .iter()
                .map(ToString::to_string)
                .collect::<String>()
                .trim()
        );
        out.push(Token::make_word(&constraint, None));
        i = end;
    }
    out.iter().map(ToString::to_string).collect()
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn spec_of(sql: &str) -> Result<Option<WatermarkSpec>> {
        let text = normalize_text(sql);
        let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, &text).unwrap();
        let ast::Statement::CreateTable(create) = &mut statements[0] else {
            panic!("not a CREATE TABLE: {text}");
        };
        let spec = take_from_create_table(create)?;
        assert!(create.constraints.is_empty(), "{create}");
        Ok(spec)
    }

    #[test]
    fn watermark_clauses_become_specs() {
        let spec = spec_of(
            "CREATE TABLE b (a BIGINT, ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '5' SECOND)",
        )
        .unwrap();
        assert_eq!(
            spec,
            Some(WatermarkSpec {
                column: "ts".into(),
                delay_nanos: 5_000_000_000
            })
        );
        let spec = spec_of("create table b (ts timestamp, watermark for ts as ts, a int)").unwrap();
        assert_eq!(spec.map(|s| s.delay_nanos), Some(0));
        let spec = spec_of(
            "CREATE TABLE b (ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1 minute 30 seconds')",
        )
        .unwrap();
        assert_eq!(spec.map(|s| s.delay_nanos), Some(90_000_000_000));
        assert_eq!(spec_of("CREATE TABLE b (watermark INT)").unwrap(), None);
    }

    #[test]
    fn unsupported_watermarks_are_refused() {
        let err = spec_of("CREATE TABLE b (ts TIMESTAMP, WATERMARK FOR ts AS now())").unwrap_err();
        assert!(err.to_string().contains("column itself"), "{err}");
        let err = spec_of("CREATE TABLE b (ts TIMESTAMP, WATERMARK FOR nope AS nope)").unwrap_err();
        assert!(err.to_string().contains("no such column"), "{err}");
        let err =
            spec_of("CREATE TABLE b (ts TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' MONTH)")
                .unwrap_err();
        assert!(err.to_string().contains("fixed length"), "{err}");
    }
}
