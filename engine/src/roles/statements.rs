//! The role statements (parsed by the SQL layer's `role_statement`) and how
//! they change the catalog.

use std::collections::BTreeSet;

use datafusion::error::Result;
use sluice_types::error::{SluiceError, SqlState};

use super::catalog::{PasswordSecret, Role, RoleCatalog};
use super::privileges::PREDEFINED_ROLES;

/// A role statement.
#[derive(Debug, Clone, PartialEq)]
pub enum RoleStatement {
    /// `CREATE ROLE` / `CREATE USER`.
    Create {
        name: String,
        if_not_exists: bool,
        options: RoleOptions,
    },
    /// `ALTER ROLE name [WITH] options`.
    Alter { name: String, options: RoleOptions },
    /// `DROP ROLE | USER [IF EXISTS] name, …`.
    Drop { names: Vec<String>, if_exists: bool },
    /// `GRANT role, … TO member, …` (`revoke`: `REVOKE … FROM …`).
    Grant {
        roles: Vec<String>,
        members: Vec<String>,
        revoke: bool,
    },
}

/// The attributes a role statement sets (`None`: left as they are, or the
/// default for a new role).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoleOptions {
    pub login: Option<bool>,
    pub superuser: Option<bool>,
    /// `Some(None)`: `PASSWORD NULL`.
    pub password: Option<Option<String>>,
}

/// Runs `statement` (the caller checked that its user may manage roles);
/// returns its command tag.
pub async fn execute(catalog: &RoleCatalog, statement: &RoleStatement) -> Result<&'static str> {
    match statement {
        RoleStatement::Create {
            name,
            if_not_exists,
            options,
        } => {
            if is_predefined(name) {
                return Err(reserved(name));
            }
            let created = catalog
                .update(|roles| {
                    if roles.contains_key(name) {
                        if *if_not_exists {
                            return Ok(false);
                        }
                        return Err(SluiceError::new(
                            SqlState::DUPLICATE_OBJECT,
                            format!("role \"{name}\" already exists"),
                        )
                        .into());
                    }
                    let mut role = Role {
                        login: false,
                        superuser: false,
                        password: None,
                        member_of: BTreeSet::new(),
                    };
                    apply(&mut role, options);
                    roles.insert(name.clone(), role);
                    Ok(true)
                })
                .await?;
            if !created {
                log::info!("role \"{name}\" already exists, skipping");
            }
            Ok("CREATE ROLE")
        }
        RoleStatement::Alter { name, options } => {
            catalog
                .update(|roles| {
                    let role = roles.get_mut(name).ok_or_else(|| missing(name))?;
                    apply(role, options);
                    Ok(())
                })
                .await?;
            Ok("ALTER ROLE")
        }
        RoleStatement::Drop { names, if_exists } => {
            catalog
                .update(|roles| {
                    for name in names {
                        if roles.remove(name).is_none() && !*if_exists {
                            return Err(missing(name));
                        }
                    }
                    // Nobody stays a member of a dropped role.
                    for role in roles.values_mut() {
                        role.member_of.retain(|granted| !names.contains(granted));
                    }
                    Ok(())
                })
                .await?;
            Ok("DROP ROLE")
        }
        RoleStatement::Grant {
            roles: granted,
            members,
            revoke,
        } => {
            for role in granted {
                if !catalog.exists(role) {
                    return Err(missing(role));
                }
            }
            catalog
                .update(|roles| {
                    for member in members {
                        let role = roles.get_mut(member).ok_or_else(|| missing(member))?;
                        for granted in granted {
                            if *revoke {
                                role.member_of.remove(granted);
                            } else {
                                role.member_of.insert(granted.clone());
                            }
                        }
                    }
                    Ok(())
                })
                .await?;
            Ok(if *revoke { "REVOKE ROLE" } else { "GRANT ROLE" })
        }
    }
}

fn apply(role: &mut Role, options: &RoleOptions) {
    if let Some(login) = options.login {
        role.login = login;
    }
    if let Some(superuser) = options.superuser {
        role.superuser = superuser;
    }
    if let Some(password) = &options.password {
        role.password = password.as_deref().map(PasswordSecret::new);
    }
}

fn is_predefined(name: &str) -> bool {
    PREDEFINED_ROLES.iter().any(|(role, _)| *role == name)
}

fn reserved(name: &str) -> datafusion::error::DataFusionError {
    SluiceError::new(
        SqlState::RESERVED_NAME,
        format!("role name \"{name}\" is reserved"),
    )
    .into()
}

fn missing(name: &str) -> datafusion::error::DataFusionError {
    SluiceError::new(
        SqlState::UNDEFINED_OBJECT,
        format!("role \"{name}\" does not exist"),
    )
    .into()
}
