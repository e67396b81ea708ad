//! `GROUP BY` in continuous queries: the updating operator ([`operator`]),
//! the vectorised windowed one ([`window`]), the session-window form
//! ([`session`]), the state one aggregate keeps per
//! group ([`state`]) and the keyed split of a grouped aggregate over
//! several tasks ([`keyed`]).

mod checkpoint;
pub mod keyed;
pub mod operator;
pub mod planning;
pub mod session;
pub mod state;
pub mod window;

pub use operator::AggregateOperator;
pub use planning::{PlannedAggregate, plan_aggregate};
pub use session::{GroupRole, SessionOperator};
pub use state::AggregateStrategy;
pub use window::WindowAggregateOperator;
