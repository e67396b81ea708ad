//! The parse half of `COPY table [(columns)] FROM STDIN [WITH (…)]` and
//! `COPY {table [(columns)] | (query)} TO STDOUT [WITH (…)]`: recognising
//! the statements (DataFusion's parser only knows `COPY … TO 'file'`) and
//! reading their options. Running them is the `copy_in` module's and the
//! wire front end's job.

use datafusion::error::{DataFusionError, Result};
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, ObjectName,
    Query, Statement,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;

/// `FORMAT text`, `csv` or `binary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormatKind {
    /// Postgres' default: delimiter-separated, backslash escapes, `\N` NULL.
    Text,
    /// RFC 4180-style CSV with Postgres' NULL rules.
    Csv,
    /// Postgres' binary COPY format (`PGCOPY`): each value as the binary
    /// protocol sends it.
    Binary,
}

/// The options of `COPY … FROM STDIN WITH (…)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyFormat {
    /// Text or CSV.
    pub kind: CopyFormatKind,
    /// Field separator (one byte).
    pub delimiter: u8,
    /// The string that stands for NULL.
    pub null: String,
    /// Whether the first line is a header to skip.
    pub header: bool,
    /// CSV quote character.
    pub quote: u8,
    /// CSV escape character (defaults to the quote).
    pub escape: u8,
}

impl CopyFormat {
    /// Postgres' defaults for `kind`.
    pub fn new(kind: CopyFormatKind) -> Self {
        match kind {
            CopyFormatKind::Text | CopyFormatKind::Binary => Self {
                kind,
                delimiter: b'\t',
                null: "\\N".into(),
                header: false,
                quote: b'"',
                escape: b'"',
            },
            CopyFormatKind::Csv => Self {
                kind,
                delimiter: b',',
                null: String::new(),
                header: false,
                quote: b'"',
                escape: b'"',
            },
        }
    }
}

/// A parsed `COPY … FROM STDIN`.
#[derive(Debug, Clone)]
pub struct CopyFromStdin {
    /// The table written to.
    pub table: ObjectName,
    /// The columns the data holds, in order; empty means all of them.
    pub columns: Vec<Ident>,
    /// How the data is written.
    pub format: CopyFormat,
}

/// A parsed `COPY … TO STDOUT`.
#[derive(Debug, Clone)]
pub struct CopyToStdout {
    /// The rows sent: the query, or `SELECT columns FROM table`.
    pub query: Box<Query>,
    /// How they are written.
    pub format: CopyFormat,
}

/// Whether the parser stands at `COPY … TO STDOUT` (rather than
/// DataFusion's `COPY … TO 'file'`).
pub(crate) fn at_copy_to_stdout(parser: &DFParser<'_>) -> bool {
    copy_direction(parser) == Some(Keyword::TO)
        && copy_tokens_after_direction(parser)
            .is_some_and(|t| matches!(t, Token::Word(w) if w.keyword == Keyword::STDOUT))
}

/// Whether the parser stands at `COPY <table> … FROM` (rather than
/// DataFusion's `COPY … TO`).
pub(crate) fn at_copy_from(parser: &DFParser<'_>) -> bool {
    copy_direction(parser) == Some(Keyword::FROM)
}

/// At `COPY`, its direction: `FROM` or `TO` (the first at parenthesis
/// depth 0).
fn copy_direction(parser: &DFParser<'_>) -> Option<Keyword> {
    direction_at(parser).map(|(keyword, _)| keyword)
}

/// The token after the direction keyword.
fn copy_tokens_after_direction(parser: &DFParser<'_>) -> Option<Token> {
    direction_at(parser).map(|(_, n)| parser.parser.peek_nth_token(n + 1).token)
}

fn direction_at(parser: &DFParser<'_>) -> Option<(Keyword, usize)> {
    let is_copy = matches!(
        parser.parser.peek_token().token,
        Token::Word(ref w) if w.keyword == Keyword::COPY
    );
    if !is_copy {
        return None;
    }
    let mut depth = 0usize;
    for n in 1.. {
        match parser.parser.peek_nth_token(n).token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w)
                if depth == 0 && (w.keyword == Keyword::FROM || w.keyword == Keyword::TO) =>
            {
                return Some((w.keyword, n));
            }
            Token::SemiColon | Token::EOF => return None,
            _ => {}
        }
    }
    None
}

/// Parses `COPY <table> [(columns)] FROM STDIN [[WITH] (options) | legacy options]`.
pub(crate) fn parse_copy_from(parser: &mut DFParser<'_>) -> Result<CopyFromStdin> {
    parser.parser.expect_keyword(Keyword::COPY)?;
    let Statement::Copy {
        source,
        target,
        options,
        legacy_options,
        values,
        ..
    } = parser.parser.parse_copy()?
    else {
        return Err(DataFusionError::Internal(
            "COPY parsed as another statement".into(),
        ));
    };
    let CopySource::Table {
        table_name,
        columns,
    } = source
    else {
        return Err(DataFusionError::Plan(
            "COPY … FROM does not take a query".into(),
        ));
    };
    if !matches!(target, CopyTarget::Stdin) {
        return Err(DataFusionError::NotImplemented(
            "COPY FROM a server file or program is not supported: use COPY … FROM STDIN \
             (psql's \\copy) or CREATE EXTERNAL TABLE"
                .into(),
        ));
    }
    if !values.is_empty() {
        return Err(DataFusionError::NotImplemented(
            "COPY data inside the query text is not supported: send it through the COPY protocol"
                .into(),
        ));
    }
    Ok(CopyFromStdin {
        table: table_name,
        columns,
        format: copy_format(&options, &legacy_options)?,
    })
}

/// Parses `COPY {table [(columns)] | (query)} TO STDOUT [[WITH] (options)
/// | legacy options]`.
pub(crate) fn parse_copy_to_stdout(parser: &mut DFParser<'_>) -> Result<CopyToStdout> {
    parser.parser.expect_keyword(Keyword::COPY)?;
    let Statement::Copy {
        source,
        options,
        legacy_options,
        ..
    } = parser.parser.parse_copy()?
    else {
        return Err(DataFusionError::Internal(
            "COPY parsed as another statement".into(),
        ));
    };
    let query = match source {
        CopySource::Query(query) => query,
        CopySource::Table {
            table_name,
            columns,
        } => {
            let projection = if columns.is_empty() {
                "*".to_owned()
            } else {
                columns
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let sql = format!("SELECT {projection} FROM {table_name}");
            match DFParser::parse_sql(&sql)?.pop_front() {
                Some(datafusion::sql::parser::Statement::Statement(statement)) => {
                    match *statement {
                        Statement::Query(query) => query,
                        _ => return Err(DataFusionError::Internal(format!("{sql} is no query"))),
                    }
                }
                _ => return Err(DataFusionError::Internal(format!("{sql} is no query"))),
            }
        }
    };
    Ok(CopyToStdout {
        query,
        format: copy_format(&options, &legacy_options)?,
    })
}

fn copy_format(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<CopyFormat> {
    let mut kind = CopyFormatKind::Text;
    for option in options {
        if let CopyOption::Format(name) = option {
            kind = match name.value.to_ascii_lowercase().as_str() {
                "text" => CopyFormatKind::Text,
                "csv" => CopyFormatKind::Csv,
                "binary" => CopyFormatKind::Binary,
                other => {
                    return Err(DataFusionError::Plan(format!(
                        "COPY format \"{other}\" not recognized"
                    )));
                }
            };
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Csv(_) => kind = CopyFormatKind::Csv,
            CopyLegacyOption::Binary => kind = CopyFormatKind::Binary,
            _ => {}
        }
    }
    let mut format = CopyFormat::new(kind);
    let mut escape = None;
    for option in options {
        match option {
            CopyOption::Format(_) | CopyOption::Freeze(_) => {}
            CopyOption::Delimiter(c) => format.delimiter = single_byte("DELIMITER", *c)?,
            CopyOption::Null(s) => format.null = s.clone(),
            CopyOption::Header(h) => format.header = *h,
            CopyOption::Quote(c) => format.quote = single_byte("QUOTE", *c)?,
            CopyOption::Escape(c) => escape = Some(single_byte("ESCAPE", *c)?),
            CopyOption::Encoding(e) => check_encoding(e)?,
            other => {
                return Err(DataFusionError::NotImplemented(format!(
                    "COPY option {other} is not supported"
                )));
            }
        }
    }
    for option in legacy {
        match option {
            CopyLegacyOption::Csv(csv) => {
                for csv_option in csv {
                    match csv_option {
                        CopyLegacyCsvOption::Header => format.header = true,
                        CopyLegacyCsvOption::Quote(c) => format.quote = single_byte("QUOTE", *c)?,
                        CopyLegacyCsvOption::Escape(c) => escape = Some(single_byte("ESCAPE", *c)?),
                        other => {
                            return Err(DataFusionError::NotImplemented(format!(
                                "COPY option {other} is not supported"
                            )));
                        }
                    }
                }
            }
            CopyLegacyOption::Delimiter(c) => format.delimiter = single_byte("DELIMITER", *c)?,
            CopyLegacyOption::Null(s) => format.null = s.clone(),
            CopyLegacyOption::Header => format.header = true,
            other => {
                return Err(DataFusionError::NotImplemented(format!(
                    "COPY option {other} is not supported"
                )));
            }
        }
    }
    format.escape = escape.unwrap_or(format.quote);
    if format.kind == CopyFormatKind::Text && format.delimiter == b'\\' {
        return Err(DataFusionError::Plan(
            "COPY delimiter cannot be backslash".into(),
        ));
    }
    Ok(format)
}

fn single_byte(option: &str, c: char) -> Result<u8> {
    u8::try_from(c).ok().filter(u8::is_ascii).ok_or_else(|| {
        DataFusionError::Plan(format!("COPY {option} must be a single one-byte character"))
    })
}

fn check_encoding(encoding: &str) -> Result<()> {
    let normalized = encoding.to_ascii_lowercase().replace(['-', '_'], "");
    if normalized == "utf8" || normalized == "unicode" {
        Ok(())
    } else {
        Err(DataFusionError::NotImplemented(format!(
            "COPY ENCODING '{encoding}' is not supported: Sluice reads UTF8"
        )))
    }
}
