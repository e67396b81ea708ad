//! The parse half of `COPY table [(columns)] FROM STDIN [WITH (…)]`:
//! recognising the statement (DataFusion's parser only knows `COPY … TO`)
//! and reading its options. Running it is the `copy_in` module's job.

use datafusion::error::{DataFusionError, Result};
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Ident, ObjectName,
    Statement,
};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;

/// `FORMAT text` or `FORMAT csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormatKind {
    /// Postgres' default: delimiter-separated, backslash escapes, `\N` NULL.
    Text,
    /// RFC 4180-style CSV with Postgres' NULL rules.
    Csv,
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
            CopyFormatKind::Text => Self {
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

/// Whether the parser stands at `COPY <table> … FROM` (rather than
/// DataFusion's `COPY … TO`).
pub(crate) fn at_copy_from(parser: &DFParser<'_>) -> bool {
    let is_copy = matches!(
        parser.parser.peek_token().token,
        Token::Word(ref w) if w.keyword == Keyword::COPY
    );
    if !is_copy {
        return false;
    }
    let mut depth = 0usize;
    for n in 1.. {
        match parser.parser.peek_nth_token(n).token {
            Token::LParen => depth += 1,
            Token::RParen => depth = depth.saturating_sub(1),
            Token::Word(w) if depth == 0 && w.keyword == Keyword::FROM => return true,
            Token::Word(w) if depth == 0 && w.keyword == Keyword::TO => return false,
            Token::SemiColon | Token::EOF => return false,
            _ => {}
        }
    }
    false
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

fn copy_format(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<CopyFormat> {
    let mut kind = CopyFormatKind::Text;
    for option in options {
        if let CopyOption::Format(name) = option {
            kind = match name.value.to_ascii_lowercase().as_str() {
                "text" => CopyFormatKind::Text,
                "csv" => CopyFormatKind::Csv,
                "binary" => return Err(binary_unsupported()),
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
            CopyLegacyOption::Binary => return Err(binary_unsupported()),
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

fn binary_unsupported() -> DataFusionError {
    DataFusionError::NotImplemented(
        "COPY FORMAT binary is not supported yet: use text or csv".into(),
    )
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
