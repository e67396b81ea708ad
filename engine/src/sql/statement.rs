//! Sluice's statement layer: splits SQL text into statements, keeps the
//! session commands (`SET`, `SHOW`, `RESET`, transaction control) for the
//! session, and hands everything else to DataFusion's parser.
//!
//! Sluice-specific statements (`CREATE MODEL`, `CREATE MATERIALIZED VIEW`, …)
//! will be recognised here by peeking at the tokens before DataFusion's
//! parser sees them, so DataFusion's grammar stays untouched.

use datafusion::error::{DataFusionError, Result};
use datafusion::sql::parser::{DFParser, DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{self, Expr, ObjectName, Set, Value};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::pg::settings::canonical_name;
use crate::pg::{catalog, reg_casts, table_oids};
use crate::roles::RoleStatement;
use crate::sql::copy::{
    CopyFromStdin, CopyToStdout, at_copy_from, at_copy_to_stdout, parse_copy_from,
    parse_copy_to_stdout,
};
use crate::sql::model_statement::{ModelStatement, at_model_statement, parse_model_statement};
use crate::sql::role_statement::{
    alter_role, at_role_statement, create_role, object_name as role_object_name,
    parse_role_statement,
};
use crate::sql::source_statement::{CreateSource, at_create_source, parse_create_source};
use crate::sql::streaming_statement::{
    StreamingStatement, at_streaming_statement, parse_streaming_statement,
};
use crate::sql::watermark::{WatermarkSpec, take_from_create_table};

/// One parsed statement.
#[derive(Debug, Clone)]
pub enum SluiceStatement {
    /// A statement DataFusion plans and runs.
    DataFusion(Box<DFStatement>),
    /// A client's query of the Postgres catalog, in two readings: as
    /// written, planned when DataFusion can, else as the catalog library's
    /// compatibility parser rewrites it (which makes tools' queries plan,
    /// at a price: it turns every correlated subquery of a projection into
    /// NULL).
    CatalogQuery {
        /// The query as the client wrote it.
        as_written: Box<DFStatement>,
        /// The compatibility rewrite.
        compatible: Box<DFStatement>,
    },
    /// A session or transaction command the session handles itself.
    Session(SessionCommand),
    /// `CREATE MODEL`, `DROP MODEL`, `SHOW MODELS`, `DESCRIBE MODEL`.
    Model(ModelStatement),
    /// `COPY table FROM STDIN`: the client sends the rows next.
    CopyFrom(CopyFromStdin),
    /// `COPY {table | (query)} TO STDOUT`: the rows go to the client as COPY
    /// data.
    CopyTo(CopyToStdout),
    /// `ALTER TABLE`, which DataFusion does not plan.
    AlterTable(Box<ast::AlterTable>),
    /// `CREATE INDEX` / `DROP INDEX`: vector indexes on Sluice tables.
    Index(IndexStatement),
    /// Continuous queries: `CREATE MATERIALIZED VIEW`, `FLUSH`, …
    Streaming(StreamingStatement),
    /// `CREATE TABLE … WITH ('connector' = …)`: a generator or external
    /// source.
    CreateSource(Box<CreateSource>),
    /// `CREATE | ALTER | DROP ROLE`, `GRANT | REVOKE role`.
    Role(RoleStatement),
    /// `CREATE TABLE` with a `WATERMARK FOR` clause: planned by DataFusion,
    /// the watermark kept in the table's schema.
    CreateTableWithWatermark {
        /// The statement without its WATERMARK clause.
        statement: Box<DFStatement>,
        /// The clause.
        watermark: WatermarkSpec,
    },
}

/// `CREATE INDEX … USING hnsw` and `DROP INDEX`, as parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexStatement {
    /// `CREATE INDEX`.
    Create(Box<ast::CreateIndex>),
    /// `DROP INDEX [IF EXISTS] name, …`.
    Drop {
        /// The indexes.
        names: Vec<ObjectName>,
        /// `IF EXISTS`.
        if_exists: bool,
    },
}

/// Session-level commands: settings and transaction control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionCommand {
    /// `SET name = value` / `SET name TO DEFAULT` (value `None`).
    Set { name: String, value: Option<String> },
    /// `RESET name` (`None`: `RESET ALL`).
    Reset { name: Option<String> },
    /// `SHOW name`.
    Show { name: String },
    /// `SHOW ALL`.
    ShowAll,
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT` / `END`.
    Commit,
    /// `ROLLBACK` / `ABORT`.
    Rollback,
    /// `SAVEPOINT name`.
    Savepoint { name: String },
    /// `RELEASE [SAVEPOINT] name`.
    ReleaseSavepoint { name: String },
    /// `ROLLBACK TO [SAVEPOINT] name`.
    RollbackToSavepoint { name: String },
    /// `DEALLOCATE ALL`: every statement prepared with SQL `PREPARE` in
    /// this session (psycopg sends it after DDL).
    DeallocateAll,
    /// Accepted for compatibility with no effect (e.g. `SET TRANSACTION
    /// ISOLATION LEVEL`, `DISCARD ALL`); answered with this tag.
    Ignored { tag: &'static str },
}

/// Parses SQL text into statements. Empty statements (`;;`) are skipped.
pub fn parse_sql(sql: &str) -> Result<Vec<SluiceStatement>> {
    crate::sql::complexity::check(sql)?;
    let as_written = parse_as_written(sql);
    let Some(compatible) = mentions_pg_catalog(sql)
        .then(|| parse_client_catalog_query(sql))
        .flatten()
    else {
        return as_written;
    };
    let as_written: Vec<Box<DFStatement>> = as_written
        .unwrap_or_default()
        .into_iter()
        .filter_map(|statement| match statement {
            SluiceStatement::DataFusion(statement) => Some(statement),
            _ => None,
        })
        .collect();
    // The compatible reading changes a query's meaning only where it drops
    // a projection's subquery; elsewhere it is the one tools were tested
    // with (its casts and operators plan where the text as written fails
    // only once it runs).
    if as_written.len() != compatible.len() || !as_written.iter().any(|s| projects_subquery(s)) {
        return Ok(compatible
            .into_iter()
            .map(|statement| SluiceStatement::DataFusion(Box::new(statement)))
            .collect());
    }
    Ok(as_written
        .into_iter()
        .zip(compatible)
        .map(|(as_written, compatible)| SluiceStatement::CatalogQuery {
            as_written,
            compatible: Box::new(compatible),
        })
        .collect())
}

/// Whether a SELECT list in `statement` has a subquery as an item (what
/// the compatibility rewrite replaces).
fn projects_subquery(statement: &DFStatement) -> bool {
    struct Finder;
    impl ast::Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, query: &ast::Query) -> std::ops::ControlFlow<()> {
            let ast::SetExpr::Select(select) = query.body.as_ref() else {
                return std::ops::ControlFlow::Continue(());
            };
            let subquery = select.projection.iter().any(|item| {
                matches!(
                    item,
                    ast::SelectItem::UnnamedExpr(Expr::Subquery(_))
                        | ast::SelectItem::ExprWithAlias {
                            expr: Expr::Subquery(_),
                            ..
                        }
                )
            });
            if subquery {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        }
    }
    let DFStatement::Statement(statement) = statement else {
        return false;
    };
    ast::Visit::visit(statement.as_ref(), &mut Finder).is_break()
}

/// Parses SQL text as written, with Sluice's statements and syntax.
fn parse_as_written(sql: &str) -> Result<Vec<SluiceStatement>> {
    let sql =
        crate::sql::type_syntax::normalize_type_syntax(&crate::sql::watermark::normalize_text(
            &crate::sql::table_function_syntax::normalize_text(sql),
        ));
    let dialect = PostgreSqlDialect {};
    let mut parser = DFParserBuilder::new(sql.as_str())
        .with_dialect(&dialect)
        .build()?;
    let mut statements = Vec::new();
    let mut expecting_delimiter = false;
    loop {
        while parser.parser.consume_token(&Token::SemiColon) {
            expecting_delimiter = false;
        }
        if parser.parser.peek_token().token == Token::EOF {
            break;
        }
        if expecting_delimiter {
            let found = parser.parser.peek_token();
            return Err(DataFusionError::SQL(
                Box::new(ast_error(format!(
                    "Expected: end of statement, found: {found}"
                ))),
                None,
            ));
        }
        statements.push(parse_one(&mut parser)?);
        expecting_delimiter = true;
    }
    Ok(statements)
}

/// Refuses an isolation level Sluice does not give. Every transaction
/// reads one snapshot of all tables and fails its COMMIT with 40001 when
/// another writer committed a table it changed: snapshot isolation, which
/// is Postgres' REPEATABLE READ and forbids every anomaly READ COMMITTED
/// and READ UNCOMMITTED forbid, so those are accepted too (as Postgres
/// runs READ UNCOMMITTED as READ COMMITTED). SERIALIZABLE would also
/// forbid write skew, which snapshot isolation allows: refused.
fn check_transaction_modes(modes: &[ast::TransactionMode]) -> Result<()> {
    use ast::TransactionIsolationLevel as Level;
    for mode in modes {
        if let ast::TransactionMode::IsolationLevel(level) = mode
            && !matches!(
                level,
                Level::ReadCommitted | Level::ReadUncommitted | Level::RepeatableRead
            )
        {
            return Err(DataFusionError::NotImplemented(format!(
                "transaction isolation level {level} is not supported: Sluice runs transactions \
                 under snapshot isolation (REPEATABLE READ)"
            )));
        }
    }
    Ok(())
}

/// An identifier as Postgres names it: folded to lower case unless quoted.
fn identifier(ident: &ast::Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

fn ast_error(message: String) -> datafusion::sql::sqlparser::parser::ParserError {
    datafusion::sql::sqlparser::parser::ParserError::ParserError(message)
}

fn parse_one(parser: &mut DFParser<'_>) -> Result<SluiceStatement> {
    // DataFusion's own RESET only knows its config keys; Postgres' RESET
    // (and RESET ALL) belong to the session.
    if let Token::Word(w) = parser.parser.peek_token().token
        && w.keyword == Keyword::RESET
    {
        parser.parser.next_token();
        return parse_reset(parser);
    }
    if at_copy_from(parser) {
        return Ok(SluiceStatement::CopyFrom(parse_copy_from(parser)?));
    }
    if at_create_source(parser) {
        return Ok(SluiceStatement::CreateSource(Box::new(
            parse_create_source(parser)?,
        )));
    }
    if at_streaming_statement(parser) {
        return Ok(SluiceStatement::Streaming(parse_streaming_statement(
            parser,
        )?));
    }
    // After the streaming statements: `COPY (SUBSCRIBE v) TO STDOUT` is one.
    if at_copy_to_stdout(parser) {
        return Ok(SluiceStatement::CopyTo(parse_copy_to_stdout(parser)?));
    }
    if at_model_statement(parser) {
        return Ok(SluiceStatement::Model(parse_model_statement(parser)?));
    }
    if at_role_statement(parser) {
        return Ok(SluiceStatement::Role(parse_role_statement(parser)?));
    }
    let statement = parser.parse_statement()?;
    classify(statement)
}

fn parse_reset(parser: &mut DFParser<'_>) -> Result<SluiceStatement> {
    if parser.parser.parse_keyword(Keyword::ALL) {
        return Ok(SluiceStatement::Session(SessionCommand::Reset {
            name: None,
        }));
    }
    // Postgres' spelling for the setting, as in SET TIME ZONE.
    if parser
        .parser
        .parse_keywords(&[Keyword::TIME, Keyword::ZONE])
    {
        return Ok(SluiceStatement::Session(SessionCommand::Reset {
            name: Some("timezone".into()),
        }));
    }
    let name = parser.parser.parse_object_name(false)?;
    let name = object_name(&name);
    if is_datafusion_setting(&name) {
        return Ok(SluiceStatement::DataFusion(Box::new(DFStatement::Reset(
            datafusion::sql::parser::ResetStatement::Variable(ObjectName::from(
                name.split('.').map(ast::Ident::new).collect::<Vec<_>>(),
            )),
        ))));
    }
    Ok(SluiceStatement::Session(SessionCommand::Reset {
        name: Some(canonical_name(&name)),
    }))
}

/// psql and other clients send catalog queries that need Postgres-specific
/// rewrites (and a few whole-query substitutions) before DataFusion can plan
/// them; `datafusion-pg-catalog` knows those. Only used for queries that
/// read `pg_catalog`, so ordinary SQL is never rewritten behind the user's
/// back.
/// The catalog library's reading of a query batch, when every statement
/// in it is a query.
fn parse_client_catalog_query(sql: &str) -> Option<Vec<DFStatement>> {
    let compat = catalog::compat_parser();
    // Sluice reads `'t'::regclass`, `'integer'::regtype`, `'now'::regproc`
    // (see `reg_casts`) and catalog tables' `tableoid` (`table_oids`)
    // itself, before the library's rules see the statement. Its
    // whole-query substitutions, which only `parse` applies, hold neither.
    let lower = sql.to_ascii_lowercase();
    let mut own: Vec<ast::Statement> = match ["regclass", "regtype", "regproc", "tableoid"]
        .iter()
        .any(|marker| lower.contains(marker))
    {
        true => Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap_or_default(),
        false => Vec::new(),
    };
    // Every statement is rewritten: no short cut past the first with a cast.
    let cast = own
        .iter_mut()
        .map(|s| reg_casts::rewrite_casts(s) | table_oids::rewrite_table_oids(s))
        .filter(|found| *found)
        .count()
        > 0;
    let statements = if cast {
        own.into_iter().map(|s| compat.rewrite(s)).collect()
    } else {
        compat.parse(sql).ok()?
    };
    if !statements
        .iter()
        .all(|s| matches!(s, ast::Statement::Query(_)))
    {
        return None;
    }
    Some(
        statements
            .into_iter()
            .map(|s| DFStatement::Statement(Box::new(s)))
            .collect(),
    )
}

/// Whether `sql` may be a client's catalog query: it names the catalog,
/// `pg_class` or `pg_type`, or an OID alias type (`'t'::regclass`, which
/// only the compatibility reading resolves). Other catalog tables alone do
/// not count: that reading would take `pg_am` to be the catalog's even
/// where the user has a table of that name.
fn mentions_pg_catalog(sql: &str) -> bool {
    let lower = sql.to_ascii_lowercase();
    [
        "pg_catalog",
        "pg_class",
        "pg_type",
        "regclass",
        "regtype",
        "regproc",
        "regnamespace",
    ]
    .iter()
    .any(|marker| lower.contains(marker))
}

fn is_datafusion_setting(name: &str) -> bool {
    name.to_ascii_lowercase().starts_with("datafusion.")
}

fn object_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|part| match part.as_ident() {
            Some(ident) => ident.value.clone(),
            None => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Renders a `SET` value the way Postgres stores it: strings unquoted,
/// identifiers by name, lists joined with ", ".
fn setting_value(values: &[Expr]) -> Option<String> {
    let parts: Vec<String> = values
        .iter()
        .map(|e| match e {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s)
                | Value::DoubleQuotedString(s)
                | Value::EscapedStringLiteral(s) => s.clone(),
                Value::Number(n, _) => n.to_string(),
                Value::Boolean(b) => if *b { "on" } else { "off" }.to_string(),
                other => other.to_string(),
            },
            Expr::Identifier(ident) => ident.value.clone(),
            other => other.to_string(),
        })
        .collect();
    if parts.len() == 1 && parts[0].eq_ignore_ascii_case("default") {
        return None;
    }
    Some(parts.join(", "))
}

fn classify(statement: DFStatement) -> Result<SluiceStatement> {
    let DFStatement::Statement(mut inner) = statement else {
        return Ok(SluiceStatement::DataFusion(Box::new(statement)));
    };
    if let ast::Statement::CreateTable(create) = inner.as_mut()
        && let Some(watermark) = take_from_create_table(create)?
    {
        return Ok(SluiceStatement::CreateTableWithWatermark {
            statement: Box::new(DFStatement::Statement(inner)),
            watermark,
        });
    }
    let session = |cmd| SluiceStatement::Session(cmd);
    Ok(match *inner {
        ast::Statement::Set(Set::SingleAssignment {
            ref variable,
            ref values,
            ..
        }) if !is_datafusion_setting(&object_name(variable)) => session(SessionCommand::Set {
            name: canonical_name(&object_name(variable)),
            value: setting_value(values),
        }),
        ast::Statement::Set(Set::SingleAssignment {
            ref variable,
            ref values,
            ..
        }) => {
            let value = setting_value(values);
            crate::sql::setting_bounds::check(&object_name(variable), value.as_deref())?;
            SluiceStatement::DataFusion(Box::new(DFStatement::Statement(inner)))
        }
        ast::Statement::Set(Set::SetTimeZone { ref value, .. }) => session(SessionCommand::Set {
            name: "timezone".into(),
            value: setting_value(std::slice::from_ref(value)),
        }),
        ast::Statement::Set(Set::SetNames {
            ref charset_name, ..
        }) => session(SessionCommand::Set {
            name: "client_encoding".into(),
            value: Some(charset_name.value.clone()),
        }),
        ast::Statement::Set(Set::SetTransaction { ref modes, .. }) => {
            check_transaction_modes(modes)?;
            session(SessionCommand::Ignored { tag: "SET" })
        }
        ast::Statement::Set(
            Set::SetSessionAuthorization(_) | Set::SetRole { .. } | Set::SetNamesDefault {},
        ) => session(SessionCommand::Ignored { tag: "SET" }),
        ast::Statement::ShowVariable { ref variable } => {
            let name = variable
                .iter()
                .map(|i| i.value.clone())
                .collect::<Vec<_>>()
                .join(" ");
            if name.eq_ignore_ascii_case("all") {
                session(SessionCommand::ShowAll)
            } else if is_datafusion_setting(&name) {
                SluiceStatement::DataFusion(Box::new(DFStatement::Statement(inner)))
            } else {
                session(SessionCommand::Show {
                    name: canonical_name(&name),
                })
            }
        }
        ast::Statement::StartTransaction { ref modes, .. } => {
            check_transaction_modes(modes)?;
            session(SessionCommand::Begin)
        }
        ast::Statement::Commit { .. } => session(SessionCommand::Commit),
        ast::Statement::Rollback {
            savepoint: None, ..
        } => session(SessionCommand::Rollback),
        ast::Statement::Rollback {
            savepoint: Some(ref name),
            ..
        } => session(SessionCommand::RollbackToSavepoint {
            name: identifier(name),
        }),
        ast::Statement::Savepoint { ref name } => session(SessionCommand::Savepoint {
            name: identifier(name),
        }),
        ast::Statement::ReleaseSavepoint { ref name } => {
            session(SessionCommand::ReleaseSavepoint {
                name: identifier(name),
            })
        }
        ast::Statement::Discard { .. } => session(SessionCommand::Ignored { tag: "DISCARD ALL" }),
        ast::Statement::Deallocate { ref name, .. }
            if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") =>
        {
            session(SessionCommand::DeallocateAll)
        }
        ast::Statement::AlterTable(alter) => SluiceStatement::AlterTable(Box::new(alter)),
        ast::Statement::CreateRole(create) => SluiceStatement::Role(create_role(create)?),
        ast::Statement::AlterRole {
            ref name,
            operation,
        } => SluiceStatement::Role(alter_role(name, operation)?),
        ast::Statement::Drop {
            object_type: ast::ObjectType::Role,
            ref names,
            if_exists,
            ..
        } => SluiceStatement::Role(RoleStatement::Drop {
            names: names.iter().map(role_object_name).collect::<Result<_>>()?,
            if_exists,
        }),
        ast::Statement::CreateIndex(create) => {
            SluiceStatement::Index(IndexStatement::Create(Box::new(create)))
        }
        ast::Statement::Drop {
            object_type: ast::ObjectType::Index,
            names,
            if_exists,
            ..
        } => SluiceStatement::Index(IndexStatement::Drop { names, if_exists }),
        _ => SluiceStatement::DataFusion(Box::new(DFStatement::Statement(inner))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session_cmd(sql: &str) -> SessionCommand {
        match parse_sql(sql).unwrap().remove(0) {
            SluiceStatement::Session(cmd) => cmd,
            other => panic!("expected a session command for {sql}, got {other:?}"),
        }
    }

    #[test]
    fn set_forms() {
        assert_eq!(
            session_cmd("SET extra_float_digits = 3"),
            SessionCommand::Set {
                name: "extra_float_digits".into(),
                value: Some("3".into())
            }
        );
        assert_eq!(
            session_cmd("SET application_name TO 'my app'"),
            SessionCommand::Set {
                name: "application_name".into(),
                value: Some("my app".into())
            }
        );
        assert_eq!(
            session_cmd("RESET TIME ZONE"),
            SessionCommand::Reset {
                name: Some("timezone".into())
            }
        );
        assert_eq!(
            session_cmd("SET TIME ZONE 'Europe/Paris'"),
            SessionCommand::Set {
                name: "timezone".into(),
                value: Some("Europe/Paris".into())
            }
        );
        assert_eq!(
            session_cmd("SET search_path TO DEFAULT"),
            SessionCommand::Set {
                name: "search_path".into(),
                value: None
            }
        );
    }

    #[test]
    fn show_reset_and_transactions() {
        assert_eq!(
            session_cmd("SHOW TRANSACTION ISOLATION LEVEL"),
            SessionCommand::Show {
                name: "transaction_isolation".into()
            }
        );
        assert_eq!(session_cmd("SHOW ALL"), SessionCommand::ShowAll);
        assert_eq!(
            session_cmd("RESET ALL"),
            SessionCommand::Reset { name: None }
        );
        assert_eq!(
            session_cmd("RESET DateStyle"),
            SessionCommand::Reset {
                name: Some("datestyle".into())
            }
        );
        assert_eq!(session_cmd("BEGIN"), SessionCommand::Begin);
        assert_eq!(session_cmd("START TRANSACTION"), SessionCommand::Begin);
        assert_eq!(session_cmd("COMMIT"), SessionCommand::Commit);
        assert_eq!(session_cmd("ROLLBACK"), SessionCommand::Rollback);
        assert_eq!(
            session_cmd("SAVEPOINT Sp1"),
            SessionCommand::Savepoint { name: "sp1".into() }
        );
        assert_eq!(
            session_cmd("ROLLBACK TO SAVEPOINT \"Sp1\""),
            SessionCommand::RollbackToSavepoint { name: "Sp1".into() }
        );
        assert_eq!(
            session_cmd("RELEASE sp1"),
            SessionCommand::ReleaseSavepoint { name: "sp1".into() }
        );
    }

    #[test]
    fn datafusion_settings_go_to_datafusion() {
        let parsed = parse_sql("SET datafusion.execution.batch_size = 1024").unwrap();
        assert!(matches!(parsed[0], SluiceStatement::DataFusion(_)));
    }

    #[test]
    fn multiple_statements_and_empty_ones() {
        let parsed = parse_sql("SELECT 1;; SELECT 2;").unwrap();
        assert_eq!(parsed.len(), 2);
        assert!(parse_sql("  ;  ").unwrap().is_empty());
    }

    #[test]
    fn syntax_errors_are_sql_errors() {
        let err = parse_sql("SELEC 1").unwrap_err();
        assert!(matches!(err, DataFusionError::SQL(..)), "{err:?}");
        let err = parse_sql("SELECT 1 SELECT 2").unwrap_err();
        assert!(matches!(err, DataFusionError::SQL(..)), "{err:?}");
    }
}
