//! `pg_settings`: every setting Sluice has, with the querying session's
//! value, in Postgres 15's columns. psql's `\dconfig` lists the changed
//! ones (`source <> 'default'`, compared with `boot_val`), dashboards and
//! drivers read single values from it. The library's has one row
//! (`standard_conforming_strings`) and lacks `boot_val`.
//!
//! Values are as `SHOW` gives them (`5s` for a timeout), without a unit
//! column; no setting has a range or a list of allowed values here.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int32Array, ListArray, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::pg::settings::{SessionSettings, SessionSettingsHandle, SettingRow};

/// `pg_catalog.pg_settings`.
#[derive(Debug, Default)]
pub(crate) struct PgSettings;

impl PgSettings {
    fn rows(state: &dyn Session) -> Vec<SettingRow> {
        match state.config().get_extension::<SessionSettingsHandle>() {
            Some(handle) => handle
                .0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .catalog_rows(),
            // A context without a session (the engine's own): defaults.
            None => SessionSettings::new().catalog_rows(),
        }
    }
}

/// The type Postgres gives a setting, from its default value.
fn value_type(default: &str) -> &'static str {
    if matches!(default, "on" | "off") {
        "bool"
    } else if default.parse::<i64>().is_ok() {
        "integer"
    } else {
        "string"
    }
}

#[async_trait]
impl TableProvider for PgSettings {
    fn schema(&self) -> SchemaRef {
        let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
        Arc::new(Schema::new(vec![
            text("name", false),
            text("setting", false),
            text("unit", true),
            text("category", false),
            text("short_desc", false),
            text("extra_desc", true),
            text("context", false),
            text("vartype", false),
            text("source", false),
            text("min_val", true),
            text("max_val", true),
            Field::new(
                "enumvals",
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
                true,
            ),
            text("boot_val", true),
            text("reset_val", true),
            text("sourcefile", true),
            Field::new("sourceline", DataType::Int32, true),
            Field::new("pending_restart", DataType::Boolean, false),
        ]))
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rows = Self::rows(state);
        let text = |f: &dyn Fn(&SettingRow) -> Option<String>| -> ArrayRef {
            Arc::new(rows.iter().map(f).collect::<StringArray>())
        };
        let none = |_: &SettingRow| None::<String>;
        let columns: Vec<ArrayRef> = vec![
            text(&|r| Some(r.name.to_owned())),
            text(&|r| Some(r.value.clone())),
            text(&none),
            text(&|r| {
                Some(
                    match (r.sluices_own, r.read_only) {
                        (true, _) => "Sluice",
                        (false, true) => "Preset Options",
                        (false, false) => "Client Connection Defaults",
                    }
                    .to_owned(),
                )
            }),
            text(&|r| Some(r.description.to_owned())),
            text(&none),
            text(&|r| Some(if r.read_only { "internal" } else { "user" }.to_owned())),
            text(&|r| Some(value_type(r.default).to_owned())),
            text(&|r| {
                Some(
                    if r.set_in_session {
                        "session"
                    } else {
                        "default"
                    }
                    .to_owned(),
                )
            }),
            text(&none),
            text(&none),
            Arc::new(ListArray::new_null(
                Arc::new(Field::new_list_field(DataType::Utf8, true)),
                rows.len(),
            )),
            text(&|r| Some(r.default.to_owned())),
            text(&|r| Some(r.default.to_owned())),
            text(&none),
            Arc::new(Int32Array::new_null(rows.len())),
            Arc::new(BooleanArray::from(vec![false; rows.len()])),
        ];
        let batch = RecordBatch::try_new(self.schema(), columns)?;
        Ok(MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            self.schema(),
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::value_type;

    #[test]
    fn types_follow_the_defaults() {
        assert_eq!(value_type("on"), "bool");
        assert_eq!(value_type("63"), "integer");
        assert_eq!(value_type("ISO, MDY"), "string");
    }
}
