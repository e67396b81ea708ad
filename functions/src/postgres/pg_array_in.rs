//! The elements of an array's text form (`'{1,2,NULL}'`), as a list of
//! texts that a cast then turns into the array type wanted: the engine's
//! planner puts this function under a cast of text to an array
//! (`'{1,2}'::int[]`, `CAST(s AS TEXT[])`), where arrow's cast would make
//! a one-element list of the whole string. It is not meant to be called by
//! name.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::{DataFusionError, Result};
use datafusion::functions::utils::make_scalar_function;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use sluice_types::array_input::parse_array_text;

/// The function's name.
pub const PG_ARRAY_IN: &str = "__sluice_pg_array_in";

/// `__sluice_pg_array_in(text) → text[]`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct PgArrayInFunc {
    signature: Signature,
}

impl Default for PgArrayInFunc {
    fn default() -> Self {
        Self {
            signature: Signature::string(1, Volatility::Immutable),
        }
    }
}

impl PgArrayInFunc {
    /// The function's result type: a list of nullable texts.
    pub fn text_list() -> DataType {
        DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
    }
}

impl ScalarUDFImpl for PgArrayInFunc {
    fn name(&self) -> &str {
        PG_ARRAY_IN
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(Self::text_list())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        // As nullable as the cast it stands under, so no schema above changes.
        let nullable = args.arg_fields.first().is_none_or(|f| f.is_nullable());
        Ok(Arc::new(Field::new(
            self.name(),
            Self::text_list(),
            nullable,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        make_scalar_function(texts_to_lists, vec![])(&args.args)
    }
}

/// Each text's elements as one list (a NULL text as a NULL list).
fn texts_to_lists(args: &[ArrayRef]) -> Result<ArrayRef> {
    let [texts] = args else {
        return Err(DataFusionError::Plan(format!(
            "{PG_ARRAY_IN} takes one argument"
        )));
    };
    let texts = cast(texts, &DataType::Utf8)?;
    let mut lists = ListBuilder::new(StringBuilder::new());
    for text in texts.as_string::<i32>().iter() {
        match text {
            Some(text) => {
                for element in parse_array_text(text)? {
                    lists.values().append_option(element);
                }
                lists.append(true);
            }
            None => lists.append(false),
        }
    }
    Ok(Arc::new(lists.finish()))
}
