//! A client's session: [`SluiceSession`] (settings, prepare, execute) over
//! the one planning pipeline ([`crate::planner`]), and what planning and
//! running produce ([`output`]).
//! The top of the engine but for the `sluice` module, which builds it.

pub mod output;
mod plan_cache;
mod simple_queries;
mod sluice_session;

pub(crate) use plan_cache::PlanGeneration;
pub use sluice_session::SluiceSession;
