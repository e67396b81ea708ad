//! SQL type names → Sluice types, through DataFusion's type planner hook.

use std::sync::Arc;

use datafusion::arrow::datatypes::FieldRef;
use datafusion::error::Result;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::sql::sqlparser::ast;

use crate::extension::SluiceType;

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
        if let Some(ty) = sluice_type_of(sql_type) {
            return Ok(Some(ty.field_ref()));
        }
        match &self.fallback {
            Some(fallback) => fallback.plan_type_field(sql_type),
            None => Ok(None),
        }
    }
}

/// The Sluice type a SQL type name denotes, if any.
pub fn sluice_type_of(sql_type: &ast::DataType) -> Option<SluiceType> {
    match sql_type {
        ast::DataType::Uuid => Some(SluiceType::Uuid),
        // JSONB is stored as the text the user wrote, like JSON; Postgres
        // would normalise it (key order, whitespace).
        ast::DataType::JSON | ast::DataType::JSONB => Some(SluiceType::Json),
        _ => None,
    }
}
