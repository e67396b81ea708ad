//! Sluice's SQL types beyond DataFusion's own.
//!
//! Each type is an Arrow storage type plus field-level extension metadata
//! (`ARROW:extension:name`), using Arrow's canonical extension types where
//! one exists ([`SluiceType`]). This crate owns everything a type needs to
//! behave like a SQL type:
//! - SQL type names → fields ([`planner::SluiceTypePlanner`], DataFusion's
//!   type planner hook),
//! - text input/output and casts ([`text`], [`conversion`], and the analyzer
//!   rule [`resolve::ResolveSluiceTypes`] that plans casts, comparisons with
//!   text and INSERTs into them),
//! - the Postgres wire form ([`wire`]).
//!
//! [`register`] installs all of it on a DataFusion session; the engine calls
//! it once, so every front end sees the same types.

pub mod array_input;
pub mod array_text;
pub mod bytea;
pub mod conversion;
pub mod error;
pub mod extension;
pub mod float_text;
pub mod interval_text;
pub mod media;
mod node_rewrite;
pub mod object_ref;
pub mod planner;
pub mod resolve;
pub mod retype;
pub mod tensor;
pub mod text;
pub mod timestamp_text;
pub mod vector;
pub mod wire;

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::optimizer::AnalyzerRule;
use datafusion::optimizer::analyzer::Analyzer;
use datafusion::prelude::SessionContext;

pub use extension::SluiceType;

/// Metadata key naming a field's extension type.
pub const EXTENSION_NAME_KEY: &str = arrow_schema::extension::EXTENSION_TYPE_NAME_KEY;

/// Installs Sluice's types on a session: the type planner (wrapping any
/// planner already installed) and the analyzer rules (type resolution
/// before DataFusion's type coercion, bytea input after it). The conversion functions are registered with
/// the other functions ([`conversion::all_functions`]).
pub fn install(ctx: &SessionContext) {
    let state = ctx.state_ref();
    let mut builder = SessionStateBuilder::new_from_existing(state.read().clone());
    let existing_planner = builder.type_planner().take();
    let analyzer = builder.analyzer().get_or_insert_with(Analyzer::new);
    if !analyzer
        .rules
        .iter()
        .any(|rule| rule.name() == resolve::ResolveSluiceTypes.name())
    {
        // Before TypeCoercion, which rejects casts Arrow cannot perform.
        let position = analyzer
            .rules
            .iter()
            .position(|rule| rule.name() == "type_coercion")
            .unwrap_or(0);
        analyzer
            .rules
            .insert(position, Arc::new(resolve::ResolveSluiceTypes));
    }
    if !analyzer
        .rules
        .iter()
        .any(|rule| rule.name() == bytea::ByteaInput.name())
    {
        // After TypeCoercion, whose casts of text to bytea it must see.
        let position = analyzer
            .rules
            .iter()
            .position(|rule| rule.name() == "type_coercion")
            .map_or(analyzer.rules.len(), |at| at + 1);
        analyzer.rules.insert(position, Arc::new(bytea::ByteaInput));
    }
    let new_state = builder
        .with_type_planner(Arc::new(planner::SluiceTypePlanner::wrapping(
            existing_planner,
        )))
        .build();
    *state.write() = new_state;
}
