//! `GROUP BY` in continuous queries: the operator ([`operator`]) and the
//! state one aggregate keeps per group ([`state`]).

pub mod operator;
pub mod state;

pub use operator::{AggregateOperator, Emission};
pub use state::AggregateStrategy;
