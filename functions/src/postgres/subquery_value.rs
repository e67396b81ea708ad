//! `scalar_subquery_value(values) → element`: the value of a scalar
//! subquery from the list of its rows' values, which the planner's
//! rewrite of correlated scalar subqueries aggregates
//! (`(SELECT array_agg(x) FROM …)`): NULL for no row, the value of one,
//! and for more than one the error Postgres raises (SQLSTATE 21000).
//!
//! DataFusion plans a correlated scalar subquery only when it aggregates;
//! Postgres allows any that returns at most one row per outer row (psql's
//! `\dT` sends `(SELECT c.relkind = 'c' FROM pg_class c WHERE c.oid =
//! t.typrelid)`). Collecting the rows and checking their count where the
//! outer row uses them keeps Postgres' meaning: an inner group no outer row
//! reads may hold several rows without an error.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, new_null_array};
use datafusion::arrow::compute::kernels::take::take;
use datafusion::arrow::datatypes::{DataType, UInt32Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use sluice_types::error::{SluiceError, SqlState};

/// The function's name, which the planner's rewrite calls.
pub const SCALAR_SUBQUERY_VALUE: &str = "scalar_subquery_value";

/// `scalar_subquery_value(values)`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ScalarSubqueryValueFunc {
    signature: Signature,
}

impl Default for ScalarSubqueryValueFunc {
    fn default() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

/// The element type of a list type.
fn element_type(list: &DataType) -> Result<DataType> {
    match list {
        DataType::List(field) | DataType::LargeList(field) | DataType::FixedSizeList(field, _) => {
            Ok(field.data_type().clone())
        }
        DataType::Null => Ok(DataType::Null),
        other => Err(DataFusionError::Plan(format!(
            "{SCALAR_SUBQUERY_VALUE} takes a list, not {other}"
        ))),
    }
}

impl ScalarUDFImpl for ScalarSubqueryValueFunc {
    fn name(&self) -> &str {
        SCALAR_SUBQUERY_VALUE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        element_type(arg_types.first().unwrap_or(&DataType::Null))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let Some(values) = args.args.first() else {
            return Ok(ColumnarValue::Array(new_null_array(&DataType::Null, rows)));
        };
        let values = values.to_array(rows)?;
        let DataType::List(_) = values.data_type() else {
            let element = element_type(values.data_type())?;
            return Ok(ColumnarValue::Array(new_null_array(&element, rows)));
        };
        let lists = values.as_list::<i32>();
        // Row i takes its list's first element, or NULL (an index past the
        // flattened values) when the list is NULL or empty.
        let flattened = lists.values();
        let offsets = lists.value_offsets();
        let mut indices = Vec::with_capacity(rows);
        for i in 0..rows {
            let length = offsets[i + 1] - offsets[i];
            if lists.is_valid(i) && length > 1 {
                return Err(SluiceError::new(
                    SqlState::CARDINALITY_VIOLATION,
                    "more than one row returned by a subquery used as an expression",
                )
                .into());
            }
            indices.push((lists.is_valid(i) && length == 1).then_some(offsets[i] as u32));
        }
        let indices = datafusion::arrow::array::PrimitiveArray::<UInt32Type>::from(indices);
        let taken: ArrayRef = take(flattened.as_ref(), &indices, None)?;
        Ok(ColumnarValue::Array(taken))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int32Array, ListArray};
    use datafusion::arrow::datatypes::{Field, Int32Type};
    use datafusion::common::config::ConfigOptions;

    use super::*;

    fn value_of(lists: ListArray) -> Result<ArrayRef> {
        let rows = lists.len();
        let field = Arc::new(Field::new("v", lists.data_type().clone(), true));
        ScalarSubqueryValueFunc::default()
            .invoke_with_args(ScalarFunctionArgs {
                args: vec![ColumnarValue::Array(Arc::new(lists))],
                arg_fields: vec![field],
                number_rows: rows,
                return_field: Arc::new(Field::new("r", DataType::Int32, true)),
                config_options: Arc::new(ConfigOptions::default()),
            })?
            .to_array(rows)
    }

    #[test]
    fn one_row_is_its_value_and_none_is_null() {
        let lists = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(7)]),
            Some(vec![]),
            None,
            Some(vec![None]),
        ]);
        let out = value_of(lists).unwrap();
        let out = out.as_any().downcast_ref::<Int32Array>().unwrap();
        assert_eq!(out.iter().collect::<Vec<_>>(), [Some(7), None, None, None]);
    }

    #[test]
    fn more_than_one_row_is_a_cardinality_violation() {
        let lists =
            ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1), Some(2)])]);
        let error = value_of(lists).unwrap_err().to_string();
        assert!(error.contains("more than one row"), "{error}");
    }
}
