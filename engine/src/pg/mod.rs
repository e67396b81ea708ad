//! What makes Sluice look like Postgres 15 to clients: the `pg_catalog`
//! emulation ([`catalog`], [`types_catalog`] for Sluice's types), session
//! settings ([`settings`]) and Postgres' result column names
//! ([`column_names`]) and the bounds and order of `$n` parameters
//! ([`parameters`]). Imports only [`crate::context`].

pub mod catalog;
pub mod column_names;
pub mod parameters;
pub mod settings;
pub mod types_catalog;
