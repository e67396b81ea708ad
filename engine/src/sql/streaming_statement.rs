//! Continuous-query statements, in RisingWave's and Materialize's forms:
//!
//! ```sql
//! CREATE MATERIALIZED VIEW [IF NOT EXISTS] v AS SELECT …;
//! DROP MATERIALIZED VIEW [IF EXISTS] v;
//! SHOW MATERIALIZED VIEWS;
//! ALTER MATERIALIZED VIEW v PAUSE | RESUME;
//! FLUSH;   -- returns once every view reflects every write committed before it
//! CHECKPOINT;   -- returns once every continuous query's checkpoint is durable
//! DECLARE c CURSOR FOR SUBSCRIBE v [WITH (snapshot = false)];
//! FETCH [n | ALL] [FROM] c [WITH (timeout = '1s')];
//! CLOSE c | ALL;
//! COPY (SUBSCRIBE v [WITH (snapshot = false)]) TO STDOUT;
//! ```
//!
//! sqlparser parses `CREATE MATERIALIZED VIEW` as an ordinary view with a
//! flag; Sluice takes the statement here instead, so DataFusion never plans
//! it as a (non-materialized) view.

use std::time::Duration;

use datafusion::error::{DataFusionError, Result};
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::ast::{ObjectName, Query};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use sluice_types::error::{SluiceError, SqlState};

use crate::sql::options::with_options;
use crate::sql::sink_statement::{CreateSink, parse_create_sink};
use datafusion::sql::sqlparser::tokenizer::Token;

/// A continuous-query statement.
#[derive(Debug, Clone)]
pub enum StreamingStatement {
    /// `CREATE MATERIALIZED VIEW`.
    CreateMaterializedView {
        /// The view's name.
        name: ObjectName,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// The query it keeps up to date.
        query: Box<Query>,
    },
    /// `DROP MATERIALIZED VIEW`.
    DropMaterializedView {
        /// The view's name.
        name: ObjectName,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `SHOW MATERIALIZED VIEWS`.
    ShowMaterializedViews,
    /// `ALTER MATERIALIZED VIEW v PAUSE | RESUME`.
    AlterMaterializedView {
        /// The view's name.
        name: ObjectName,
        /// `true` to pause, `false` to resume.
        pause: bool,
    },
    /// `ALTER MATERIALIZED VIEW v SET (parallelism = n)` (or `ALTER SINK`):
    /// restarts the query from a checkpoint taken now, at parallelism `n`.
    SetParallelism {
        /// The view's or sink's name.
        name: ObjectName,
        /// Whether it names a sink.
        sink: bool,
        /// The new `streaming_parallelism` (0: one per core).
        parallelism: usize,
    },
    /// `EXPLAIN CREATE MATERIALIZED VIEW …` or `EXPLAIN CREATE SINK …`: the
    /// query's steps and regions, nothing created.
    Explain(Box<StreamingStatement>),
    /// `FLUSH`.
    Flush,
    /// `CHECKPOINT`: every continuous query takes a checkpoint now.
    Checkpoint,
    /// `DECLARE c CURSOR FOR SUBSCRIBE v`.
    DeclareSubscribe {
        /// The cursor's name.
        cursor: String,
        /// The view followed.
        view: ObjectName,
        /// Whether the view's content comes first (default true).
        snapshot: bool,
    },
    /// `FETCH [n | ALL] FROM c`.
    Fetch {
        /// The cursor's name.
        cursor: String,
        /// Rows wanted (`None`: ALL).
        count: Option<u64>,
        /// How long to wait for a first row (`None`: until one comes).
        timeout: Option<Duration>,
    },
    /// `CLOSE c` (`None`: `CLOSE ALL`).
    Close {
        /// The cursor's name.
        cursor: Option<String>,
    },
    /// `CREATE SINK`.
    CreateSink(Box<CreateSink>),
    /// `DROP SINK [IF EXISTS] s`.
    DropSink {
        /// The sink's name.
        name: ObjectName,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// `SHOW SINKS`.
    ShowSinks,
    /// `ALTER SINK s PAUSE | RESUME`.
    AlterSink {
        /// The sink's name.
        name: ObjectName,
        /// `true` to pause, `false` to resume.
        pause: bool,
    },
    /// `COPY (SUBSCRIBE v) TO STDOUT`.
    CopySubscribe {
        /// The view followed.
        view: ObjectName,
        /// Whether the view's content comes first (default true).
        snapshot: bool,
    },
}

impl StreamingStatement {
    /// The statement as SQL text: what the catalog stores for a view.
    pub fn to_sql(&self) -> String {
        match self {
            StreamingStatement::CreateMaterializedView {
                name,
                if_not_exists,
                query,
            } => {
                let if_not_exists = if *if_not_exists { "IF NOT EXISTS " } else { "" };
                format!("CREATE MATERIALIZED VIEW {if_not_exists}{name} AS {query}")
            }
            StreamingStatement::DropMaterializedView { name, if_exists } => {
                let if_exists = if *if_exists { "IF EXISTS " } else { "" };
                format!("DROP MATERIALIZED VIEW {if_exists}{name}")
            }
            StreamingStatement::ShowMaterializedViews => "SHOW MATERIALIZED VIEWS".into(),
            StreamingStatement::AlterMaterializedView { name, pause } => {
                let action = if *pause { "PAUSE" } else { "RESUME" };
                format!("ALTER MATERIALIZED VIEW {name} {action}")
            }
            StreamingStatement::SetParallelism {
                name,
                sink,
                parallelism,
            } => {
                let what = if *sink { "SINK" } else { "MATERIALIZED VIEW" };
                format!("ALTER {what} {name} SET (parallelism = {parallelism})")
            }
            StreamingStatement::Explain(inner) => format!("EXPLAIN {}", inner.to_sql()),
            StreamingStatement::Flush => "FLUSH".into(),
            StreamingStatement::Checkpoint => "CHECKPOINT".into(),
            StreamingStatement::DeclareSubscribe {
                cursor,
                view,
                snapshot,
            } => {
                format!("DECLARE {cursor} CURSOR FOR SUBSCRIBE {view} WITH (snapshot = {snapshot})")
            }
            StreamingStatement::Fetch {
                cursor,
                count,
                timeout,
            } => {
                let count = count.map_or("ALL".to_string(), |n| n.to_string());
                match timeout {
                    Some(t) => format!(
                        "FETCH {count} FROM {cursor} WITH (timeout = '{}ms')",
                        t.as_millis()
                    ),
                    None => format!("FETCH {count} FROM {cursor}"),
                }
            }
            StreamingStatement::Close { cursor } => {
                format!("CLOSE {}", cursor.as_deref().unwrap_or("ALL"))
            }
            StreamingStatement::CopySubscribe { view, snapshot } => {
                format!("COPY (SUBSCRIBE {view} WITH (snapshot = {snapshot})) TO STDOUT")
            }
            StreamingStatement::CreateSink(sink) => sink.to_sql(),
            StreamingStatement::DropSink { name, if_exists } => {
                let if_exists = if *if_exists { "IF EXISTS " } else { "" };
                format!("DROP SINK {if_exists}{name}")
            }
            StreamingStatement::ShowSinks => "SHOW SINKS".into(),
            StreamingStatement::AlterSink { name, pause } => {
                let action = if *pause { "PAUSE" } else { "RESUME" };
                format!("ALTER SINK {name} {action}")
            }
        }
    }
}

fn is_word(token: &Token, word: &str) -> bool {
    matches!(token, Token::Word(w) if w.value.eq_ignore_ascii_case(word) && w.quote_style.is_none())
}

/// Whether the parser stands at a continuous-query statement.
pub fn at_streaming_statement(parser: &DFParser<'_>) -> bool {
    let p = &parser.parser;
    let t = |n| p.peek_nth_token_ref(n).token.clone();
    let first = t(0);
    if is_word(&first, "flush") || is_word(&first, "checkpoint") {
        return matches!(t(1), Token::EOF | Token::SemiColon);
    }
    if is_word(&first, "explain") {
        return is_word(&t(1), "create")
            && (is_word(&t(2), "sink")
                || is_word(&t(2), "materialized") && is_word(&t(3), "view"));
    }
    if is_word(&first, "declare") {
        return is_word(&t(2), "cursor") && is_word(&t(3), "for") && is_word(&t(4), "subscribe");
    }
    if is_word(&first, "fetch") || is_word(&first, "close") {
        return true;
    }
    if is_word(&first, "copy") {
        return t(1) == Token::LParen && is_word(&t(2), "subscribe");
    }
    if (is_word(&first, "create") || is_word(&first, "drop") || is_word(&first, "alter"))
        && is_word(&t(1), "sink")
        || is_word(&first, "show") && is_word(&t(1), "sinks")
    {
        return true;
    }
    let materialized = is_word(&t(1), "materialized");
    (is_word(&first, "create") || is_word(&first, "drop") || is_word(&first, "alter"))
        && materialized
        && is_word(&t(2), "view")
        || is_word(&first, "show") && materialized && is_word(&t(2), "views")
}

/// Parses the statement the parser stands at (see
/// [`at_streaming_statement`]).
pub fn parse_streaming_statement(parser: &mut DFParser<'_>) -> Result<StreamingStatement> {
    if is_word(&parser.parser.peek_token_ref().token, "explain") {
        parser.parser.next_token();
        let inner = parse_streaming_statement(parser)?;
        return Ok(StreamingStatement::Explain(Box::new(inner)));
    }
    let p = &mut parser.parser;
    let first = p.next_token().token;
    if is_word(&first, "flush") {
        return Ok(StreamingStatement::Flush);
    }
    if is_word(&first, "checkpoint") {
        return Ok(StreamingStatement::Checkpoint);
    }
    if is_word(&first, "declare") {
        let cursor = identifier(p)?;
        p.next_token(); // CURSOR
        p.next_token(); // FOR
        p.next_token(); // SUBSCRIBE
        let _ = p.parse_keyword(Keyword::TO);
        let view = p.parse_object_name(false).map_err(sql_error)?;
        let snapshot = subscribe_options(p)?;
        return Ok(StreamingStatement::DeclareSubscribe {
            cursor,
            view,
            snapshot,
        });
    }
    if is_word(&first, "fetch") {
        return parse_fetch(p);
    }
    if is_word(&first, "close") {
        let cursor = if p.parse_keyword(Keyword::ALL) {
            None
        } else {
            Some(identifier(p)?)
        };
        return Ok(StreamingStatement::Close { cursor });
    }
    if is_word(&first, "copy") {
        p.expect_token(&Token::LParen).map_err(sql_error)?;
        p.next_token(); // SUBSCRIBE
        let _ = p.parse_keyword(Keyword::TO);
        let view = p.parse_object_name(false).map_err(sql_error)?;
        let snapshot = subscribe_options(p)?;
        p.expect_token(&Token::RParen).map_err(sql_error)?;
        p.expect_keyword_is(Keyword::TO).map_err(sql_error)?;
        let target = p.next_token().token;
        if !is_word(&target, "stdout") {
            return Err(sql_error(ParserError::ParserError(format!(
                "COPY (SUBSCRIBE …) writes TO STDOUT only, found {target}"
            ))));
        }
        return Ok(StreamingStatement::CopySubscribe { view, snapshot });
    }
    if is_word(&p.peek_token().token, "sink") || is_word(&p.peek_token().token, "sinks") {
        p.next_token();
        return parse_sink_statement(p, &first);
    }
    // MATERIALIZED VIEW(S)
    p.next_token();
    p.next_token();
    if is_word(&first, "show") {
        return Ok(StreamingStatement::ShowMaterializedViews);
    }
    if is_word(&first, "drop") {
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = p.parse_object_name(false).map_err(sql_error)?;
        return Ok(StreamingStatement::DropMaterializedView { name, if_exists });
    }
    if is_word(&first, "alter") {
        let name = p.parse_object_name(false).map_err(sql_error)?;
        if let Some(parallelism) = set_parallelism(p)? {
            return Ok(StreamingStatement::SetParallelism {
                name,
                sink: false,
                parallelism,
            });
        }
        let pause = pause_or_resume(p, "MATERIALIZED VIEW", &name)?;
        return Ok(StreamingStatement::AlterMaterializedView { name, pause });
    }
    let if_not_exists = p.parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
    let name = p.parse_object_name(false).map_err(sql_error)?;
    p.expect_keyword_is(Keyword::AS).map_err(sql_error)?;
    let query = p.parse_query().map_err(sql_error)?;
    Ok(StreamingStatement::CreateMaterializedView {
        name,
        if_not_exists,
        query,
    })
}

/// The statement after `CREATE|DROP|ALTER SINK` or `SHOW SINKS`.
fn parse_sink_statement(p: &mut Parser<'_>, first: &Token) -> Result<StreamingStatement> {
    if is_word(first, "show") {
        return Ok(StreamingStatement::ShowSinks);
    }
    if is_word(first, "create") {
        return Ok(StreamingStatement::CreateSink(Box::new(parse_create_sink(
            p,
        )?)));
    }
    if is_word(first, "drop") {
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let name = p.parse_object_name(false).map_err(sql_error)?;
        return Ok(StreamingStatement::DropSink { name, if_exists });
    }
    let name = p.parse_object_name(false).map_err(sql_error)?;
    if let Some(parallelism) = set_parallelism(p)? {
        return Ok(StreamingStatement::SetParallelism {
            name,
            sink: true,
            parallelism,
        });
    }
    let pause = pause_or_resume(p, "SINK", &name)?;
    Ok(StreamingStatement::AlterSink { name, pause })
}

/// `SET (parallelism = n)`, if that follows.
fn set_parallelism(p: &mut Parser<'_>) -> Result<Option<usize>> {
    if !p.parse_keyword(Keyword::SET) {
        return Ok(None);
    }
    let mut options = with_options(p, "ALTER … SET")?;
    let value = options.remove("parallelism");
    if let Some(other) = options.keys().next() {
        return Err(SluiceError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            format!("unknown option '{other}': ALTER … SET takes parallelism"),
        )
        .into());
    }
    match value.as_deref().map(|v| v.trim().parse::<usize>()) {
        Some(Ok(n)) if n <= 256 => Ok(Some(n)),
        _ => Err(SluiceError::new(
            SqlState::INVALID_PARAMETER_VALUE,
            "parallelism must be an integer from 0 (one per core) to 256",
        )
        .into()),
    }
}

/// `PAUSE` (true) or `RESUME` (false) after `ALTER <what> <name>`.
fn pause_or_resume(p: &mut Parser<'_>, what: &str, name: &ObjectName) -> Result<bool> {
    let action = p.next_token().token;
    if is_word(&action, "pause") {
        Ok(true)
    } else if is_word(&action, "resume") {
        Ok(false)
    } else {
        Err(sql_error(ParserError::ParserError(format!(
            "expected PAUSE or RESUME after ALTER {what} {name}, found {action}"
        ))))
    }
}

/// A cursor name: folded to lower case unless quoted, as Postgres does.
fn identifier(p: &mut Parser<'_>) -> Result<String> {
    let ident = p.parse_identifier().map_err(sql_error)?;
    Ok(match ident.quote_style {
        Some(_) => ident.value,
        None => ident.value.to_lowercase(),
    })
}

/// `[WITH (snapshot = true | false)]`.
fn subscribe_options(p: &mut Parser<'_>) -> Result<bool> {
    if !p.parse_keyword(Keyword::WITH) {
        return Ok(true);
    }
    let mut options = with_options(p, "SUBSCRIBE")?;
    let snapshot = match options.remove("snapshot") {
        None => true,
        Some(value) => boolean(&value).ok_or_else(|| {
            invalid(format!(
                "SUBSCRIBE option snapshot must be true or false, got '{value}'"
            ))
        })?,
    };
    match options.keys().next() {
        Some(unknown) => Err(invalid(format!("unknown SUBSCRIBE option '{unknown}'"))),
        None => Ok(snapshot),
    }
}

/// `FETCH [FORWARD] [n | ALL | NEXT] [FROM | IN] c [WITH (timeout = '…')]`.
fn parse_fetch(p: &mut Parser<'_>) -> Result<StreamingStatement> {
    let _ = p.parse_keyword(Keyword::FORWARD);
    let count = if p.parse_keyword(Keyword::ALL) {
        None
    } else if p.parse_keyword(Keyword::NEXT) {
        Some(1)
    } else if let Token::Number(n, _) = p.peek_token().token {
        p.next_token();
        Some(
            n.parse::<u64>()
                .map_err(|_| invalid(format!("FETCH count must be a whole number, got {n}")))?,
        )
    } else {
        Some(1)
    };
    let _ = p.parse_one_of_keywords(&[Keyword::FROM, Keyword::IN]);
    let cursor = identifier(p)?;
    let mut timeout = None;
    if p.parse_keyword(Keyword::WITH) {
        let mut options = with_options(p, "FETCH")?;
        if let Some(value) = options.remove("timeout") {
            timeout = Some(duration(&value).ok_or_else(|| {
                invalid(format!(
                    "FETCH timeout must be a duration such as '1s' or '500ms', got '{value}'"
                ))
            })?);
        }
        if let Some(unknown) = options.keys().next() {
            return Err(invalid(format!("unknown FETCH option '{unknown}'")));
        }
    }
    Ok(StreamingStatement::Fetch {
        cursor,
        count,
        timeout,
    })
}

fn boolean(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "on" | "1" | "yes" => Some(true),
        "false" | "off" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// `'1s'`, `'500ms'`, `'2 minutes'`, `'0'`: a duration.
fn duration(value: &str) -> Option<Duration> {
    let value = value.trim().to_ascii_lowercase();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" | "sec" | "second" | "seconds" => number,
        "ms" | "millisecond" | "milliseconds" => number / 1000.0,
        "min" | "minute" | "minutes" => number * 60.0,
        "h" | "hour" | "hours" => number * 3600.0,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

fn invalid(message: String) -> DataFusionError {
    SluiceError::new(SqlState::INVALID_PARAMETER_VALUE, message).into()
}

fn sql_error(e: ParserError) -> DataFusionError {
    DataFusionError::SQL(Box::new(e), None)
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;

    use super::*;

    fn parse(sql: &str) -> StreamingStatement {
        let dialect = PostgreSqlDialect {};
        let mut parser = datafusion::sql::parser::DFParserBuilder::new(sql)
            .with_dialect(&dialect)
            .build()
            .unwrap();
        assert!(at_streaming_statement(&parser), "{sql}");
        parse_streaming_statement(&mut parser).unwrap()
    }

    #[test]
    fn statements_round_trip_through_their_text() {
        for sql in [
            "CREATE MATERIALIZED VIEW v AS SELECT a, count(*) FROM t GROUP BY a",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS s.v AS SELECT * FROM t WHERE a > 1",
            "DROP MATERIALIZED VIEW IF EXISTS v",
            "DROP MATERIALIZED VIEW v",
            "SHOW MATERIALIZED VIEWS",
            "ALTER MATERIALIZED VIEW v PAUSE",
            "ALTER MATERIALIZED VIEW v RESUME",
            "FLUSH",
            "CHECKPOINT",
            "EXPLAIN CREATE MATERIALIZED VIEW v AS SELECT a, count(*) FROM t GROUP BY a",
            "ALTER MATERIALIZED VIEW v SET (parallelism = 3)",
            "ALTER SINK s SET (parallelism = 0)",
            "DECLARE c CURSOR FOR SUBSCRIBE v WITH (snapshot = false)",
            "FETCH 10 FROM c WITH (timeout = '1500ms')",
            "FETCH ALL FROM c",
            "CLOSE c",
            "CLOSE ALL",
            "COPY (SUBSCRIBE s.v WITH (snapshot = true)) TO STDOUT",
            "CREATE SINK s FROM v WITH ('connector' = 'filesystem', 'format' = 'json', 'path' = 'file:///tmp/x/')",
            "CREATE SINK IF NOT EXISTS s AS SELECT a FROM t WHERE a > 1 WITH ('connector' = 'table', 'table' = 'u')",
            "DROP SINK IF EXISTS s",
            "SHOW SINKS",
            "ALTER SINK s PAUSE",
        ] {
            assert_eq!(parse(sql).to_sql(), sql);
        }
    }

    #[test]
    fn fetch_and_subscribe_forms() {
        match parse("fetch c") {
            StreamingStatement::Fetch {
                cursor,
                count,
                timeout,
            } => {
                assert_eq!((cursor.as_str(), count, timeout), ("c", Some(1), None));
            }
            other => panic!("{other:?}"),
        }
        match parse("FETCH FORWARD ALL IN \"C\" WITH (timeout = '1s')") {
            StreamingStatement::Fetch {
                cursor,
                count,
                timeout,
            } => {
                assert_eq!(cursor, "C");
                assert_eq!(count, None);
                assert_eq!(timeout, Some(Duration::from_secs(1)));
            }
            other => panic!("{other:?}"),
        }
        match parse("DECLARE C CURSOR FOR SUBSCRIBE TO v") {
            StreamingStatement::DeclareSubscribe {
                cursor, snapshot, ..
            } => {
                assert_eq!((cursor.as_str(), snapshot), ("c", true));
            }
            other => panic!("{other:?}"),
        }
        let dialect = PostgreSqlDialect {};
        for bad in [
            "FETCH 1 FROM c WITH (timeout = 'soon')",
            "DECLARE c CURSOR FOR SUBSCRIBE v WITH (snapshot = maybe)",
            "DECLARE c CURSOR FOR SUBSCRIBE v WITH (progress = true)",
            "COPY (SUBSCRIBE v) TO '/tmp/x'",
        ] {
            let mut parser = datafusion::sql::parser::DFParserBuilder::new(bad)
                .with_dialect(&dialect)
                .build()
                .unwrap();
            assert!(parse_streaming_statement(&mut parser).is_err(), "{bad}");
        }
    }

    #[test]
    fn other_statements_are_left_alone() {
        let dialect = PostgreSqlDialect {};
        for sql in [
            "CREATE VIEW v AS SELECT 1",
            "SELECT flush FROM t",
            "DROP VIEW v",
        ] {
            let parser = datafusion::sql::parser::DFParserBuilder::new(sql)
                .with_dialect(&dialect)
                .build()
                .unwrap();
            assert!(!at_streaming_statement(&parser), "{sql}");
        }
    }
}
