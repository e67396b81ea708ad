//! Sluice's SQL and wire-protocol tests, in one test binary (each binary
//! links all of DataFusion, so we keep one).

#[path = "sql/durability.rs"]
mod durability;
#[path = "sql/models.rs"]
mod models;
#[path = "sql/slt.rs"]
mod slt;
#[path = "sql/streaming.rs"]
mod streaming;
#[path = "sql/vector_index.rs"]
mod vector_index;
#[path = "sql/wire_protocol.rs"]
mod wire_protocol;
