//! `current_setting(name [, missing_ok])` and `set_config(name, value,
//! is_local)`: a session setting read as `SHOW name` gives it, and set as
//! `SET name = value` does. Drivers use these: asyncpg's type
//! introspection (any array or composite result) begins with
//! `SELECT current_setting('jit'), set_config('jit', 'off', false)` and goes
//! on only on a value or SQLSTATE 42704, so missing functions failed every
//! such query. Registered in each session's own context over that
//! session's settings.

use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use sluice_types::error::{SluiceError, SqlState};

use super::settings::SessionSettings;

/// Registers `current_setting` and `set_config` over `settings` in `ctx`.
pub fn register_setting_functions(ctx: &SessionContext, settings: Arc<Mutex<SessionSettings>>) {
    let settings = SettingsHandle(settings);
    ctx.register_udf(ScalarUDF::new_from_impl(SetConfig::new(settings.clone())));
    ctx.register_udf(ScalarUDF::new_from_impl(CurrentSetting::new(settings)));
}

/// A session's settings, equal to another handle only when it is the same
/// session's (a UDF must be comparable and hashable).
#[derive(Debug, Clone)]
struct SettingsHandle(Arc<Mutex<SessionSettings>>);

impl SettingsHandle {
    fn lock(&self) -> std::sync::MutexGuard<'_, SessionSettings> {
        // A poisoned lock only means another thread panicked mid-update of
        // a plain map; the map itself is still usable.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl PartialEq for SettingsHandle {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for SettingsHandle {}

impl std::hash::Hash for SettingsHandle {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0).hash(state);
    }
}

/// Settings whose change must also reach DataFusion's configuration,
/// which `SET` does between statements; a function running inside a query
/// cannot, so it refuses them rather than half-apply them.
const SET_ONLY: [&str; 2] = ["timezone", "vector.ef_search"];

#[derive(Debug, PartialEq, Eq, Hash)]
struct CurrentSetting {
    settings: SettingsHandle,
    signature: Signature,
}

impl CurrentSetting {
    fn new(settings: SettingsHandle) -> Self {
        Self {
            settings,
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                // `SET` changes the answer between executions of one plan.
                Volatility::Volatile,
            ),
        }
    }
}

impl ScalarUDFImpl for CurrentSetting {
    fn name(&self) -> &str {
        "current_setting"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let names = arrays[0].as_string::<i32>();
        let missing_ok: Option<&BooleanArray> = arrays.get(1).map(|a| a.as_boolean());
        let settings = self.settings.lock();
        let mut values = StringBuilder::with_capacity(rows, rows * 8);
        for row in 0..names.len() {
            if names.is_null(row) {
                values.append_null();
                continue;
            }
            let name = names.value(row);
            match settings.get(&super::settings::canonical_name(name)) {
                Ok(value) => values.append_value(value),
                Err(_) if missing_ok.is_some_and(|m| m.is_valid(row) && m.value(row)) => {
                    values.append_null()
                }
                Err(_) => {
                    return Err(SluiceError::new(
                        SqlState::UNDEFINED_OBJECT,
                        format!("unrecognized configuration parameter \"{name}\""),
                    )
                    .into());
                }
            }
        }
        let array: ArrayRef = Arc::new(values.finish());
        Ok(ColumnarValue::Array(array))
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct SetConfig {
    settings: SettingsHandle,
    signature: Signature,
}

impl SetConfig {
    fn new(settings: SettingsHandle) -> Self {
        Self {
            settings,
            signature: Signature::exact(
                vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
                Volatility::Volatile,
            ),
        }
    }
}

impl ScalarUDFImpl for SetConfig {
    fn name(&self) -> &str {
        "set_config"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let (names, values) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
        let local = arrays[2].as_boolean();
        let mut settings = self.settings.lock();
        let mut results = StringBuilder::with_capacity(rows, rows * 8);
        for row in 0..names.len() {
            if names.is_null(row) {
                return Err(SluiceError::new(
                    SqlState::NULL_VALUE_NOT_ALLOWED,
                    "SET requires parameter name",
                )
                .into());
            }
            let name = super::settings::canonical_name(names.value(row));
            if local.is_valid(row) && local.value(row) {
                // A transaction-local value would outlive the transaction.
                return Err(SluiceError::new(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    format!("set_config('{name}', …, true): transaction-local settings are not supported; use SET"),
                )
                .into());
            }
            if SET_ONLY.contains(&name.as_str()) {
                return Err(SluiceError::new(
                    SqlState::FEATURE_NOT_SUPPORTED,
                    format!("set_config cannot change \"{name}\"; use SET {name}"),
                )
                .into());
            }
            let value = (!values.is_null(row)).then(|| values.value(row));
            settings.set(&name, value)?;
            results.append_value(settings.get(&name)?);
        }
        let array: ArrayRef = Arc::new(results.finish());
        Ok(ColumnarValue::Array(array))
    }
}
