//! SQL type names → Sluice types, through DataFusion's type planner hook.

use std::sync::Arc;

use datafusion::arrow::datatypes::FieldRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::sql::sqlparser::ast;

use crate::extension::{MAX_VECTOR_DIMENSIONS, SluiceType};

/// Plans the SQL names of Sluice types (`UUID`, `JSON`, `JSONB`) into Arrow
/// fields carrying the type's extension metadata. Every other name goes to
/// the planner it wraps (a session has one type planner slot, and the
/// pg_catalog layer fills it with its own), then to DataFusion.
#[derive(Debug, Default)]
pub struct SluiceTypePlanner {
    fallback: Option<Arc<dyn TypePlanner>>,
}

impl SluiceTypePlanner {
    /// A planner that defers to `fallback` for names it does not own.
    pub fn wrapping(fallback: Option<Arc<dyn TypePlanner>>) -> Self {
        Self { fallback }
    }
}

impl TypePlanner for SluiceTypePlanner {
    fn plan_type_field(&self, sql_type: &ast::DataType) -> Result<Option<FieldRef>> {
        if let Some(ty) = sluice_type_of(sql_type)? {
            return Ok(Some(ty.field_ref()));
        }
        match &self.fallback {
            Some(fallback) => fallback.plan_type_field(sql_type),
            None => Ok(None),
        }
    }
}

/// The Sluice type a SQL type name denotes, if any.
pub fn sluice_type_of(sql_type: &ast::DataType) -> Result<Option<SluiceType>> {
    Ok(match sql_type {
        ast::DataType::Uuid => Some(SluiceType::Uuid),
        // JSONB is stored as the text the user wrote, like JSON; Postgres
        // would normalise it (key order, whitespace).
        ast::DataType::JSON | ast::DataType::JSONB => Some(SluiceType::Json),
        // `VECTOR(n)` (pgvector's name) and `EMBEDDING(n)` (FLIP-577's).
        ast::DataType::Custom(name, modifiers) if is_vector_name(name) => {
            let [dim] = modifiers.as_slice() else {
                return Err(DataFusionError::Plan(
                    "type vector needs its dimension, as in VECTOR(384)".into(),
                ));
            };
            let dim: i32 = dim.trim().parse().map_err(|_| bad_dimension_text(dim))?;
            if !(1..=MAX_VECTOR_DIMENSIONS).contains(&dim) {
                return Err(crate::vector::bad_dimension(dim));
            }
            Some(SluiceType::Vector(dim))
        }
        _ => None,
    })
}

fn is_vector_name(name: &ast::ObjectName) -> bool {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .is_some_and(|ident| {
            ident.value.eq_ignore_ascii_case("vector")
                || ident.value.eq_ignore_ascii_case("embedding")
        })
}

fn bad_dimension_text(dim: &str) -> DataFusionError {
    DataFusionError::Plan(format!("invalid vector dimension: {dim}"))
}
