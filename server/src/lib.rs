//! The Sluice server: serves a [`sluice_engine::Sluice`] engine over the
//! Postgres wire protocol, so psql and every Postgres driver can use it.
//!
//! The entry point is [`serve`]. The protocol itself (framing, startup,
//! Parse/Bind/Describe/Execute bookkeeping, portals) is pgwire's; this crate
//! supplies pgwire's handler traits: [`startup`] (session creation and the
//! parameters a Postgres 15 server reports), [`query`] (simple and extended
//! query protocol over a [`sluice_engine::SluiceSession`]), [`cancel`]
//! (CancelRequest and `statement_timeout`), `copy` (COPY FROM STDIN),
//! `copy_out` (COPY TO STDOUT, `COPY (SUBSCRIBE v) TO STDOUT`), [`encoding`] (Arrow ↔ Postgres
//! values, via `arrow-pg`) and [`sqlstate`] (the one place engine errors
//! become SQLSTATE codes).
//!
//! Depends on `sluice-engine`; nothing depends on this crate.

pub mod auth;
pub mod cancel;
mod connection_loop;
mod copy;
mod copy_out;
pub mod encoding;
mod handlers;
mod held_output;
pub mod memory_limit;
mod panic_guard;
pub mod query;
mod respond;
mod row_encoder;
mod server;
pub mod sqlstate;
pub mod startup;
pub mod tls;

pub use server::{DEFAULT_MAX_CONNECTIONS, ServerConfig, serve};
