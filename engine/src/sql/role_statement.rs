//! Role statements as Sluice runs them: `CREATE ROLE | USER`, `ALTER
//! ROLE`, `DROP ROLE | USER`, and `GRANT | REVOKE role TO | FROM role`.
//! sqlparser reads the role DDL in Postgres' form; `CREATE USER` and `DROP
//! USER` (which it reads in Snowflake's) and role grants (which it reads
//! as object privileges) are read here.

use datafusion::error::{DataFusionError, Result};
use datafusion::sql::parser::DFParser;
use datafusion::sql::sqlparser::ast::{self, Expr, ObjectName, Password, RoleOption, Value};
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::Token;
use sluice_types::error::{SluiceError, SqlState};

use crate::roles::{RoleOptions, RoleStatement};

/// Whether the parser is at a statement read here rather than by
/// sqlparser: `CREATE USER`, `DROP USER`, `GRANT`/`REVOKE` of a role.
pub fn at_role_statement(parser: &DFParser<'_>) -> bool {
    let word = |n: usize| match parser.parser.peek_nth_token(n).token {
        Token::Word(w) => Some(w),
        _ => None,
    };
    let (Some(first), Some(second)) = (word(0), word(1)) else {
        return false;
    };
    match first.keyword {
        Keyword::CREATE | Keyword::DROP => second.keyword == Keyword::USER,
        // A role grant names roles, then TO/FROM; an object privilege grant
        // has ON after its privileges.
        Keyword::GRANT | Keyword::REVOKE => {
            let mut n = 1;
            loop {
                match parser.parser.peek_nth_token(n).token {
                    Token::Word(w) if w.keyword == Keyword::ON => return false,
                    Token::Word(w) if w.keyword == Keyword::TO || w.keyword == Keyword::FROM => {
                        return n > 1;
                    }
                    Token::Word(_) | Token::Comma => n += 1,
                    _ => return false,
                }
            }
        }
        _ => false,
    }
}

/// Reads the statement [`at_role_statement`] found.
pub fn parse_role_statement(parser: &mut DFParser<'_>) -> Result<RoleStatement> {
    let p = &mut parser.parser;
    let first = p.next_token().token;
    let is =
        |token: &Token, keyword: Keyword| matches!(token, Token::Word(w) if w.keyword == keyword);
    if is(&first, Keyword::CREATE) {
        p.next_token(); // USER
        let create = p.parse_create_role().map_err(sql_error)?;
        let mut statement = create_role(create)?;
        if let RoleStatement::Create { options, .. } = &mut statement {
            // CREATE USER is CREATE ROLE … LOGIN.
            options.login.get_or_insert(true);
        }
        return Ok(statement);
    }
    if is(&first, Keyword::DROP) {
        p.next_token(); // USER
        let if_exists = p.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let names = p
            .parse_comma_separated(|p| p.parse_identifier())
            .map_err(sql_error)?;
        return Ok(RoleStatement::Drop {
            names: names.iter().map(identifier).collect(),
            if_exists,
        });
    }
    let revoke = is(&first, Keyword::REVOKE);
    let roles = p
        .parse_comma_separated(|p| p.parse_identifier())
        .map_err(sql_error)?;
    p.next_token(); // TO or FROM
    let members = p
        .parse_comma_separated(|p| p.parse_identifier())
        .map_err(sql_error)?;
    Ok(RoleStatement::Grant {
        roles: roles.iter().map(identifier).collect(),
        members: members.iter().map(identifier).collect(),
        revoke,
    })
}

/// `CREATE ROLE` as sqlparser read it.
pub fn create_role(create: ast::CreateRole) -> Result<RoleStatement> {
    let [name] = create.names.as_slice() else {
        return Err(unsupported("CREATE ROLE creates one role at a time"));
    };
    let name = object_name(name)?;
    let unsupported_option = [
        (create.inherit.is_some(), "INHERIT"),
        (create.bypassrls.is_some(), "BYPASSRLS"),
        (create.create_db.is_some(), "CREATEDB"),
        (create.create_role.is_some(), "CREATEROLE"),
        (create.replication.is_some(), "REPLICATION"),
        (create.connection_limit.is_some(), "CONNECTION LIMIT"),
        (create.valid_until.is_some(), "VALID UNTIL"),
        (
            !create.in_role.is_empty() || !create.in_group.is_empty(),
            "IN ROLE",
        ),
        (
            !create.role.is_empty() || !create.user.is_empty() || !create.admin.is_empty(),
            "ROLE/USER/ADMIN",
        ),
    ]
    .into_iter()
    .find_map(|(present, option)| present.then_some(option));
    if let Some(option) = unsupported_option {
        return Err(unsupported(&format!(
            "role option {option} is not supported (LOGIN, SUPERUSER and PASSWORD are; grant \
             privileges with GRANT pg_read_server_files | pg_write_server_files | \
             sluice_create_model TO role)"
        )));
    }
    Ok(RoleStatement::Create {
        name,
        if_not_exists: create.if_not_exists,
        options: RoleOptions {
            login: create.login,
            superuser: create.superuser,
            password: create.password.map(password).transpose()?,
        },
    })
}

/// `ALTER ROLE name [WITH] options` as sqlparser read it.
pub fn alter_role(name: &ast::Ident, operation: ast::AlterRoleOperation) -> Result<RoleStatement> {
    let ast::AlterRoleOperation::WithOptions { options } = operation else {
        return Err(unsupported(
            "ALTER ROLE changes LOGIN, SUPERUSER and PASSWORD only",
        ));
    };
    let mut changed = RoleOptions::default();
    for option in options {
        match option {
            RoleOption::Login(login) => changed.login = Some(login),
            RoleOption::SuperUser(superuser) => changed.superuser = Some(superuser),
            RoleOption::Password(secret) => changed.password = Some(password(secret)?),
            other => {
                return Err(unsupported(&format!(
                    "role option {other} is not supported (LOGIN, SUPERUSER and PASSWORD are)"
                )));
            }
        }
    }
    Ok(RoleStatement::Alter {
        name: identifier(name),
        options: changed,
    })
}

fn password(password: Password) -> Result<Option<String>> {
    match password {
        Password::NullPassword => Ok(None),
        Password::Password(Expr::Value(value)) => match value.value {
            Value::SingleQuotedString(text) | Value::EscapedStringLiteral(text) => {
                if text.is_empty() {
                    // Postgres: an empty password is no password.
                    Ok(None)
                } else {
                    Ok(Some(text))
                }
            }
            other => Err(unsupported(&format!(
                "PASSWORD takes a string literal, not {other}"
            ))),
        },
        Password::Password(other) => Err(unsupported(&format!(
            "PASSWORD takes a string literal, not {other}"
        ))),
    }
}

/// A role name as Postgres folds it.
pub fn identifier(ident: &ast::Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

/// A one-part role name.
pub fn object_name(name: &ObjectName) -> Result<String> {
    match name.0.as_slice() {
        [part] => part
            .as_ident()
            .map(identifier)
            .ok_or_else(|| unsupported(&format!("bad role name {name}"))),
        _ => Err(unsupported(&format!("bad role name {name}"))),
    }
}

fn unsupported(message: &str) -> DataFusionError {
    SluiceError::new(SqlState::FEATURE_NOT_SUPPORTED, message).into()
}

fn sql_error(e: datafusion::sql::sqlparser::parser::ParserError) -> DataFusionError {
    SluiceError::new(SqlState::SYNTAX_ERROR, e.to_string()).into()
}
