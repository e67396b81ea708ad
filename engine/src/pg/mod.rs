//! What makes Sluice look like Postgres 15 to clients: the `pg_catalog`
//! emulation ([`catalog`]; [`types_catalog`] for Sluice's types,
//! [`relations_catalog`] for its indexes and materialized views,
//! [`stable_oids`] for OIDs that survive a restart; the catalog functions
//! psql's `\d` family calls: [`function_signatures`], [`descriptions`],
//! [`relation_sizes`], [`encodings`], [`catalog_functions`]; [`regclass`], [`regtype`]
//! and [`regproc`] for `'t'::regclass`, `'integer'::regtype` and
//! `'now'::regproc`, which [`reg_casts`] rewrites, and [`table_oids`] for
//! catalog tables' `tableoid`), session settings ([`settings`], shown in
//! `pg_settings` by [`settings_catalog`]), `oid[]` results
//! ([`oid_arrays`]), Postgres' result column names ([`column_names`]) and
//! the bounds and order of `$n` parameters ([`parameters`]). Imports only [`crate::context`]: what it must know of
//! storage and streaming comes through [`relations_catalog::RelationDetails`].

mod array_columns;
pub mod catalog;
mod catalog_functions;
mod catalog_rows;
mod catalog_schema;
pub mod column_names;
mod descriptions;
mod encodings;
mod function_signatures;
pub mod oid_arrays;
pub mod parameters;
pub mod reg_casts;
pub mod regclass;
pub mod regproc;
pub mod regtype;
mod relation_sizes;
pub mod relations_catalog;
mod roles_catalog;
pub mod session_user;
pub mod setting_functions;
pub mod settings;
mod settings_catalog;
mod stable_oids;
pub mod table_oids;
pub mod types_catalog;
