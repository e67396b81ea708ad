//! What a statement needs beyond reading and writing tables: the
//! privileges that matter for an AI engine, where a model file is code the
//! server loads and a file path reaches into the server's disk.
//!
//! As in Postgres, they are granted as memberships of predefined roles
//! (`GRANT pg_read_server_files TO alice`); superusers hold them all.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::logical_expr::{DdlStatement, Expr, LogicalPlan};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use sluice_types::error::{SluiceError, SqlState};

/// A privilege a statement may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privilege {
    /// Read files and objects the server can reach: `read_image`,
    /// `read_bytes`, `read_audio`, `object_ref`, external tables, the
    /// `filesystem` and `nats` connectors.
    ReadServerFiles,
    /// Write files on the server, or to a broker: `COPY … TO` a path,
    /// `filesystem` and `nats` sinks.
    WriteServerFiles,
    /// `CREATE MODEL` and `DROP MODEL`: a model is code the server runs,
    /// or an endpoint it calls with the server's credentials.
    CreateModel,
    /// `CREATE`, `ALTER` and `DROP ROLE`, `GRANT` and `REVOKE`: superusers
    /// only (no predefined role gives it).
    ManageRoles,
}

/// The predefined roles and the privilege membership of each gives.
pub const PREDEFINED_ROLES: [(&str, Privilege); 3] = [
    ("pg_read_server_files", Privilege::ReadServerFiles),
    ("pg_write_server_files", Privilege::WriteServerFiles),
    ("sluice_create_model", Privilege::CreateModel),
];

/// The functions that read what a path or URI names.
const READING_FUNCTIONS: [&str; 4] = ["read_bytes", "read_image", "read_audio", "object_ref"];

impl Privilege {
    /// What it lets a user do, for the error that refuses it.
    fn action(self) -> &'static str {
        match self {
            Privilege::ReadServerFiles => "read server files and objects",
            Privilege::WriteServerFiles => "write server files",
            Privilege::CreateModel => "create or drop models",
            Privilege::ManageRoles => "manage roles",
        }
    }

    /// The role that gives it, if one does.
    fn granted_by(self) -> Option<&'static str> {
        PREDEFINED_ROLES
            .iter()
            .find(|(_, privilege)| *privilege == self)
            .map(|(name, _)| *name)
    }

    /// The error for `user` lacking it (SQLSTATE 42501).
    pub fn denied(self, user: &str) -> datafusion::error::DataFusionError {
        let how = match self.granted_by() {
            Some(role) => format!("; a superuser can GRANT {role} TO {user}"),
            None => "; only superusers may".to_owned(),
        };
        SluiceError::new(
            SqlState::INSUFFICIENT_PRIVILEGE,
            format!(
                "permission denied: role \"{user}\" may not {}{how}",
                self.action()
            ),
        )
        .into()
    }
}

/// The privileges the query text `sql` needs, read from its tokens (for
/// continuous queries, which are planned by the streaming runtime): a call
/// of a reading function anywhere in it needs [`Privilege::ReadServerFiles`].
pub fn needed_by_sql(sql: &str) -> Vec<Privilege> {
    let dialect = PostgreSqlDialect {};
    let Ok(tokens) = Tokenizer::new(&dialect, sql).tokenize() else {
        // Unreadable text fails later with a syntax error; nothing runs.
        return Vec::new();
    };
    let calls_reader = tokens
        .iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect::<Vec<_>>()
        .windows(2)
        .any(|pair| {
            matches!(pair, [Token::Word(w), Token::LParen]
                if READING_FUNCTIONS.contains(&w.value.to_lowercase().as_str()))
        });
    if calls_reader {
        vec![Privilege::ReadServerFiles]
    } else {
        Vec::new()
    }
}

/// The privilege a connector table or sink needs to reach outside the
/// engine: files or a broker (`None` for the generators and tables).
pub fn needed_by_connector(connector: Option<&str>, writes: bool) -> Option<Privilege> {
    match connector?.to_ascii_lowercase().as_str() {
        "filesystem" | "nats" if writes => Some(Privilege::WriteServerFiles),
        "filesystem" | "nats" => Some(Privilege::ReadServerFiles),
        _ => None,
    }
}

/// The privileges running `plan` needs.
pub fn needed_by_plan(plan: &LogicalPlan) -> Result<Vec<Privilege>> {
    let mut needed = Vec::new();
    let mut add = |privilege: Privilege| {
        if !needed.contains(&privilege) {
            needed.push(privilege);
        }
    };
    plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::Copy(_) => add(Privilege::WriteServerFiles),
            LogicalPlan::Ddl(DdlStatement::CreateExternalTable(_)) => {
                add(Privilege::ReadServerFiles)
            }
            _ => {}
        }
        for expr in node.expressions() {
            expr.apply(|e| {
                if let Expr::ScalarFunction(call) = e
                    && READING_FUNCTIONS.contains(&call.name())
                {
                    add(Privilege::ReadServerFiles);
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(needed)
}
