//! SQL type names → Sluice types, through DataFusion's type planner hook.

use std::sync::Arc;

use datafusion::arrow::datatypes::FieldRef;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::sql::sqlparser::ast;

use crate::extension::{MAX_VECTOR_DIMENSIONS, SluiceType};
use crate::tensor::{TensorElement, TensorShape};

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
        ast::DataType::Custom(name, modifiers) if is_name(name, "tensor") => {
            Some(tensor_type(modifiers)?)
        }
        ast::DataType::Custom(name, modifiers) if modifiers.is_empty() => {
            [SluiceType::Image, SluiceType::Audio, SluiceType::ObjectRef]
                .into_iter()
                .find(|ty| is_name(name, ty.sql_name()))
        }
        _ => None,
    })
}

/// `TENSOR(elem)` or `TENSOR(elem, d1, d2, …)` (the bracket form
/// `TENSOR(elem, [d1, …])` arrives here without its brackets).
fn tensor_type(modifiers: &[String]) -> Result<SluiceType> {
    let Some((elem, dims)) = modifiers.split_first() else {
        return Err(DataFusionError::Plan(
            "type tensor needs its element type, as in TENSOR(FLOAT, [3,224,224]) or TENSOR(UINT8)"
                .into(),
        ));
    };
    let elem = TensorElement::from_sql_name(elem.trim()).ok_or_else(|| {
        DataFusionError::Plan(format!(
            "unknown tensor element type {elem}: use one of float32, float16, float64, int8, \
             uint8, int16, int32, int64"
        ))
    })?;
    if dims.is_empty() {
        return Ok(SluiceType::Tensor(elem, None));
    }
    let dims = dims
        .iter()
        .map(|d| {
            d.trim()
                .parse::<usize>()
                .map_err(|_| DataFusionError::Plan(format!("invalid tensor dimension: {d}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(SluiceType::Tensor(elem, Some(TensorShape::try_new(&dims)?)))
}

fn is_name(name: &ast::ObjectName, wanted: &str) -> bool {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .is_some_and(|ident| ident.value.eq_ignore_ascii_case(wanted))
}

fn is_vector_name(name: &ast::ObjectName) -> bool {
    is_name(name, "vector") || is_name(name, "embedding")
}

fn bad_dimension_text(dim: &str) -> DataFusionError {
    DataFusionError::Plan(format!("invalid vector dimension: {dim}"))
}
