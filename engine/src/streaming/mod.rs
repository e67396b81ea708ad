//! Continuous queries: materialized views kept up to date as their tables
//! change.
//!
//! A continuous query is planned by the one planning pipeline, then cut
//! into stages ([`plan`]): stateless stages run DataFusion sub-plans once
//! per batch (so every Sluice function, model calls included, is the same
//! implementation as in one-off queries), aggregate stages keep
//! DataFusion's accumulators per group. A [`runner`] drives the stages
//! with the rows of a [`source`] and the signals of [`signal`] (barriers
//! closing epochs, watermarks); each epoch is applied to the
//! [`view`] atomically.
//!
//! The vocabulary ([`signal`]) and the operator trait ([`operator`]) are
//! defined once. Some barriers also take a checkpoint ([`checkpoint`]):
//! operator state, the sink and the sources' offsets, so that a query
//! resumes where it was ([`resume`]). A query whose head calls a model is
//! cut into two regions at a durable [`log`] of the model's outputs; the
//! region after it recovers on its own ([`region`]), other failures restart
//! the whole query from its checkpoint ([`supervisor`]).

pub mod aggregate;
pub mod checkpoint;
pub mod config;
pub mod copies;
pub mod create_sink;
pub mod explain;
pub mod feed;
pub mod join;
pub mod kept_epochs;
pub mod location;
pub mod log;
pub mod metrics;
pub mod multiset;
pub mod nats_sink;
pub mod operator;
pub mod operator_task;
pub mod parallel;
pub mod pipeline;
pub mod plan;
pub mod region;
pub mod registry;
pub mod resume;
pub mod runner;
pub mod signal;
pub mod sink;
pub mod source;
pub mod source_task;
pub mod stateless;
pub mod statements;
pub mod status;
pub mod subscribe;
pub mod supervisor;
pub mod union;
pub mod view;
pub mod view_rows;

pub use registry::{ContinuousQueries, continuous_queries};
pub use statements::{
    Origin, QueryConfig, StreamingOutcome, check_statement, create_source, execute, subscribe,
};
pub use subscribe::{Cursors, Subscription};
