//! Durable DDL: tables and schemas ([`tables`]), `ALTER TABLE`
//! ([`alter_table`]), vector indexes ([`indexes`]) and the model catalog ([`models`]). Each change is
//! written to the data directory before it is acknowledged. Imports
//! [`crate::rewrite`], [`crate::sql`], [`crate::storage`] and
//! [`crate::context`].

pub mod alter_table;
pub mod indexes;
pub mod models;
pub mod tables;
