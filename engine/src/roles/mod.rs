//! Roles and the privileges that matter for an AI engine: who may log in
//! (with what password), who may create models, and who may read or write
//! the server's files. Roles live in the data directory's catalog
//! ([`RoleCatalog`]); the server reads it to authenticate, sessions to
//! check what a statement needs ([`privileges`]).

mod catalog;
pub mod privileges;
mod statements;

pub use catalog::{PasswordSecret, Role, RoleCatalog};
pub use privileges::Privilege;
pub(crate) use statements::execute;
pub use statements::{RoleOptions, RoleStatement};
