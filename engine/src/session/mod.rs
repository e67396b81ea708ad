//! A client's session and the one planning pipeline every entry point
//! uses: [`SluiceSession`] (settings, prepare, execute), what planning and
//! running produce ([`output`]) and the `$n` parameters ([`parameters`]).
//! The top of the engine but for the `sluice` module, which builds it.

pub mod output;
pub mod parameters;
mod sluice_session;

pub use sluice_session::SluiceSession;
