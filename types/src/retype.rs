//! Keeping a Sluice type through expressions that pick one of their inputs:
//! `CASE … THEN v1 ELSE v2 END`, `COALESCE(v1, v2)`, `NULLIF`,
//! `GREATEST`/`LEAST`. DataFusion types their result by its Arrow storage
//! only, so a `VECTOR(3)` chosen by a `CASE` came out as a bare fixed-size
//! list (printed as an array, refused by the vector functions).
//!
//! When every value such an expression can return has the same Sluice
//! type, the analyzer wraps it in [`retype`]: an identity function whose
//! result field carries the type. It costs nothing at run time (the column
//! is passed through) and, being an ordinary function, keeps the type in
//! both the logical and the physical plan.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::DFSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::{Case, ScalarFunction};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};

use crate::extension::SluiceType;

/// Functions whose result is one of their arguments.
const CHOOSING_FUNCTIONS: &[&str] = &["coalesce", "nullif", "greatest", "least", "nvl", "ifnull"];

/// Whether `expr` picks one of its inputs as its value (and so may need
/// [`keep_type`]).
pub fn chooses_an_input(expr: &Expr) -> bool {
    match expr {
        Expr::Case(_) => true,
        Expr::ScalarFunction(f) => CHOOSING_FUNCTIONS.contains(&f.func.name()),
        _ => false,
    }
}

/// `expr` wrapped so its result has the Sluice type that all the values it
/// may return share; `None` when they do not share one, or the result
/// already has it.
pub fn keep_type(expr: &Expr, schema: &DFSchema) -> Result<Option<Expr>> {
    let values: Vec<&Expr> = match expr {
        Expr::Case(Case {
            when_then_expr,
            else_expr,
            ..
        }) => when_then_expr
            .iter()
            .map(|(_, then)| then.as_ref())
            .chain(else_expr.as_deref())
            .collect(),
        Expr::ScalarFunction(ScalarFunction { func, args })
            if CHOOSING_FUNCTIONS.contains(&func.name()) =>
        {
            // NULLIF(a, b) returns a or NULL.
            if func.name() == "nullif" {
                args.iter().take(1).collect()
            } else {
                args.iter().collect()
            }
        }
        _ => return Ok(None),
    };
    let mut shared: Option<SluiceType> = None;
    for value in values {
        if matches!(value, Expr::Literal(v, _) if v.is_null()) {
            continue;
        }
        let (_, field) = value.to_field(schema)?;
        match (SluiceType::of_field(&field), shared) {
            (None, _) => return Ok(None),
            (Some(ty), None) => shared = Some(ty),
            (Some(ty), Some(seen)) if ty == seen => {}
            (Some(_), Some(_)) => return Ok(None),
        }
    }
    let Some(ty) = shared else {
        return Ok(None);
    };
    let (_, result) = expr.to_field(schema)?;
    if SluiceType::of_field(&result) == Some(ty) {
        return Ok(None);
    }
    Ok(Some(retype(expr.clone(), ty)))
}

/// `expr` (whose storage is `ty`'s) with its field typed as `ty`.
pub fn retype(expr: Expr, ty: SluiceType) -> Expr {
    ScalarUDF::new_from_impl(Retype::new(ty)).call(vec![expr])
}

/// The identity function that types its result as one Sluice type.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Retype {
    ty: SluiceType,
    name: String,
    signature: Signature,
}

impl Retype {
    fn new(ty: SluiceType) -> Self {
        Self {
            ty,
            name: format!("as_{}", ty.sql_name()),
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Retype {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types
            .first()
            .cloned()
            .unwrap_or_else(|| self.ty.storage_type()))
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        // The argument's own storage (passed through as is), the type's
        // metadata.
        let Some(arg) = args.arg_fields.first() else {
            return Ok(Arc::new(self.ty.field(self.name(), true)));
        };
        Ok(Arc::new(
            Field::new(self.name(), arg.data_type().clone(), arg.is_nullable())
                .with_metadata(self.ty.metadata()),
        ))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        args.args
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Internal(format!("{} takes one argument", self.name)))
    }
}
