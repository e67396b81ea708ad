//! Parsing Sluice's model statements, which DataFusion's grammar lacks:
//!
//! ```sql
//! CREATE [OR REPLACE] MODEL [IF NOT EXISTS] name
//!   [INPUT (col type, …)] [OUTPUT (col type, …)] [COMMENT '…']
//!   WITH ('provider' = 'onnx', 'path' = '…', …);
//! SHOW MODELS;
//! DESCRIBE MODEL name;
//! DROP MODEL [IF EXISTS] name;
//! ```
//!
//! The syntax is Flink's (FLIP-437), so Flink users feel at home.

use std::collections::BTreeMap;

use crate::sql::options::with_options;

use datafusion::error::{DataFusionError, Result};
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::ast::{ColumnDef, Ident};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::Token;

/// A model statement.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelStatement {
    /// `CREATE MODEL`.
    Create(CreateModel),
    /// `DROP MODEL`.
    Drop {
        /// Model name.
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `SHOW MODELS`.
    Show,
    /// `DESCRIBE MODEL`.
    Describe {
        /// Model name.
        name: String,
    },
}

/// A parsed `CREATE MODEL`.
#[derive(Debug, Clone, PartialEq)]
pub struct CreateModel {
    /// Model name (lower-cased unless quoted, as SQL identifiers are).
    pub name: String,
    /// `OR REPLACE`.
    pub or_replace: bool,
    /// `IF NOT EXISTS`.
    pub if_not_exists: bool,
    /// Declared INPUT columns.
    pub inputs: Vec<ColumnDef>,
    /// Declared OUTPUT columns.
    pub outputs: Vec<ColumnDef>,
    /// `COMMENT`.
    pub comment: Option<String>,
    /// `WITH` options, keys lower-cased.
    pub options: BTreeMap<String, String>,
}

impl CreateModel {
    /// The statement as stored in the catalog: plain `CREATE MODEL` (the
    /// `OR REPLACE`/`IF NOT EXISTS` decision has been taken).
    pub fn to_catalog_sql(&self) -> String {
        let mut sql = format!("CREATE MODEL {}", Ident::with_quote('"', &self.name));
        let columns = |cols: &[ColumnDef]| {
            cols.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if !self.inputs.is_empty() {
            sql.push_str(&format!(" INPUT ({})", columns(&self.inputs)));
        }
        if !self.outputs.is_empty() {
            sql.push_str(&format!(" OUTPUT ({})", columns(&self.outputs)));
        }
        if let Some(comment) = &self.comment {
            sql.push_str(&format!(" COMMENT {}", quote(comment)));
        }
        let options: Vec<String> = self
            .options
            .iter()
            .map(|(k, v)| format!("{} = {}", quote(k), quote(v)))
            .collect();
        sql.push_str(&format!(" WITH ({})", options.join(", ")));
        sql
    }
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.value.eq_ignore_ascii_case(word) && w.quote_style.is_none())
}

/// Whether the parser stands at a model statement.
pub fn at_model_statement(parser: &DFParser<'_>) -> bool {
    let p = &parser.parser;
    let t = |n| p.peek_nth_token_ref(n).token.clone();
    match &t(0) {
        first if is_word(first, "create") => {
            is_word(&t(1), "model")
                || (is_word(&t(1), "or") && is_word(&t(2), "replace") && is_word(&t(3), "model"))
        }
        first if is_word(first, "drop") => is_word(&t(1), "model"),
        first if is_word(first, "show") => is_word(&t(1), "models"),
        first if is_word(first, "describe") || is_word(first, "desc") => is_word(&t(1), "model"),
        _ => false,
    }
}

/// Parses the model statement the parser stands at (see
/// [`at_model_statement`]).
pub fn parse_model_statement(parser: &mut DFParser<'_>) -> Result<ModelStatement> {
    let p = &mut parser.parser;
    let first = p.next_token().token;
    if is_word(&first, "show") {
        p.next_token();
        return Ok(ModelStatement::Show);
    }
    if is_word(&first, "describe") || is_word(&first, "desc") {
        p.next_token();
        return Ok(ModelStatement::Describe {
            name: model_name(p.parse_identifier().map_err(sql_error)?),
        });
    }
    if is_word(&first, "drop") {
        p.next_token();
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        return Ok(ModelStatement::Drop {
            name: model_name(p.parse_identifier().map_err(sql_error)?),
            if_exists,
        });
    }
    let or_replace = p.parse_keywords(&[Keyword::OR, Keyword::REPLACE]);
    p.next_token(); // MODEL
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = model_name(p.parse_identifier().map_err(sql_error)?);
    let mut create = CreateModel {
        name,
        or_replace,
        if_not_exists,
        inputs: vec![],
        outputs: vec![],
        comment: None,
        options: BTreeMap::new(),
    };
    loop {
        let next = p.peek_token().token;
        if is_word(&next, "input") {
            p.next_token();
            create.inputs = column_list(p)?;
        } else if is_word(&next, "output") {
            p.next_token();
            create.outputs = column_list(p)?;
        } else if is_word(&next, "comment") {
            p.next_token();
            create.comment = Some(p.parse_literal_string().map_err(sql_error)?);
        } else if is_word(&next, "with") {
            p.next_token();
            create.options = with_options(p, "model")?;
            break;
        } else {
            return Err(sql_error(ParserError::ParserError(format!(
                "Expected: INPUT, OUTPUT, COMMENT or WITH in CREATE MODEL, found: {next}"
            ))));
        }
    }
    Ok(ModelStatement::Create(create))
}

/// SQL identifiers fold to lower case unless quoted.
fn model_name(ident: Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value,
        None => ident.value.to_lowercase(),
    }
}

fn column_list(p: &mut datafusion::sql::sqlparser::parser::Parser<'_>) -> Result<Vec<ColumnDef>> {
    let (columns, constraints) = p.parse_columns().map_err(sql_error)?;
    if !constraints.is_empty() {
        return Err(DataFusionError::Plan(
            "model INPUT/OUTPUT columns take no constraints".into(),
        ));
    }
    if columns.is_empty() {
        return Err(DataFusionError::Plan(
            "model INPUT/OUTPUT needs at least one column".into(),
        ));
    }
    Ok(columns)
}

fn sql_error(e: ParserError) -> DataFusionError {
    DataFusionError::SQL(Box::new(e), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::statement::{SluiceStatement, parse_sql};

    fn model(sql: &str) -> ModelStatement {
        match parse_sql(sql).unwrap().remove(0) {
            SluiceStatement::Model(m) => m,
            other => panic!("expected a model statement, got {other:?}"),
        }
    }

    #[test]
    fn create_model_in_flink_syntax() {
        let ModelStatement::Create(c) = model(
            "CREATE OR REPLACE MODEL Churn INPUT (f1 REAL, f2 DOUBLE) OUTPUT (label BIGINT) \
             COMMENT 'it''s mine' WITH ('provider' = 'onnx', 'PATH' = '/m.onnx', 'max_batch_size' = 64)",
        ) else {
            panic!("not a create")
        };
        assert_eq!(c.name, "churn");
        assert!(c.or_replace && !c.if_not_exists);
        assert_eq!(c.inputs.len(), 2);
        assert_eq!(c.outputs.len(), 1);
        assert_eq!(c.comment.as_deref(), Some("it's mine"));
        assert_eq!(c.options["path"], "/m.onnx");
        assert_eq!(c.options["max_batch_size"], "64");
        // The stored form parses back to the same model.
        let ModelStatement::Create(again) = model(&c.to_catalog_sql()) else {
            panic!("not a create")
        };
        assert_eq!(again.inputs, c.inputs);
        assert_eq!(again.options, c.options);
        assert_eq!(again.comment, c.comment);
    }

    #[test]
    fn other_model_statements() {
        assert_eq!(model("SHOW MODELS"), ModelStatement::Show);
        assert_eq!(
            model("describe model \"MyModel\""),
            ModelStatement::Describe {
                name: "MyModel".into()
            }
        );
        assert_eq!(
            model("DROP MODEL IF EXISTS m"),
            ModelStatement::Drop {
                name: "m".into(),
                if_exists: true
            }
        );
        assert!(matches!(
            model("CREATE MODEL IF NOT EXISTS m WITH ('path'='x')"),
            ModelStatement::Create(CreateModel {
                if_not_exists: true,
                ..
            })
        ));
    }

    #[test]
    fn malformed_model_statements_are_syntax_errors() {
        for sql in [
            "CREATE MODEL m",
            "CREATE MODEL m WITH ('path')",
            "CREATE MODEL m INPUT WITH ('path'='x')",
            "CREATE MODEL m WITH ('path'='x', 'path'='y')",
        ] {
            assert!(parse_sql(sql).is_err(), "{sql} parsed");
        }
    }
}
