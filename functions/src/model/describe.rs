//! What `SHOW MODELS` and `DESCRIBE MODEL` print about a model.

use datafusion::arrow::datatypes::{DataType, Field};
use sluice_types::SluiceType;

use super::registry::{LoadedModel, ModelEntry, ModelInterface};
use super::tensors::TensorSpec;

/// A column type as Postgres users write it.
pub fn sql_type_name(field: &Field) -> String {
    if let Some(SluiceType::Vector(n)) = SluiceType::of_field(field) {
        return format!("vector({n})");
    }
    if let Some(t) = SluiceType::of_field(field) {
        return t.sql_name().to_string();
    }
    data_type_name(field.data_type())
}

fn data_type_name(data_type: &DataType) -> String {
    match data_type {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 | DataType::UInt8 | DataType::Int16 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "integer".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => "numeric".into(),
        DataType::Float16 | DataType::Float32 => "real".into(),
        DataType::Float64 => "double precision".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "text".into(),
        DataType::FixedSizeList(child, k) => format!("{}[{k}]", data_type_name(child.data_type())),
        DataType::List(child) | DataType::LargeList(child) => {
            format!("{}[]", data_type_name(child.data_type()))
        }
        other => other.to_string(),
    }
}

fn tensor_description(t: &TensorSpec) -> String {
    let dims: Vec<String> = t
        .shape
        .iter()
        .map(|d| if *d < 0 { "?".into() } else { d.to_string() })
        .collect();
    format!("{} {:?}[{}]", t.name, t.element, dims.join(", "))
}

/// The device column of `SHOW MODELS`: where it runs once loaded, else
/// what was asked for.
pub fn device_summary(entry: &ModelEntry) -> String {
    match entry.if_loaded() {
        Some(model) => model.device.as_str().to_string(),
        None => format!("{} (not loaded yet)", entry.spec.device.as_str()),
    }
}

/// `(property, value)` rows of `DESCRIBE MODEL`.
pub fn describe(model: &LoadedModel) -> Vec<(String, String)> {
    let spec = &model.spec;
    let mut rows: Vec<(String, String)> = vec![
        ("name".into(), spec.name.clone()),
        ("provider".into(), spec.provider.clone()),
        ("task".into(), spec.task.as_str().into()),
        ("path".into(), spec.path.display().to_string()),
    ];
    if let Some(tokenizer) = &spec.tokenizer {
        rows.push(("tokenizer".into(), tokenizer.display().to_string()));
    }
    if let Some(comment) = &spec.comment {
        rows.push(("comment".into(), comment.clone()));
    }
    rows.push(("device_requested".into(), spec.device.as_str().into()));
    rows.push(("device".into(), model.device.as_str().into()));
    if let Some(reason) = &model.fallback_reason {
        rows.push(("device_fallback_reason".into(), reason.clone()));
    }
    match &model.interface {
        ModelInterface::Embedding { dim } => {
            rows.push(("input".into(), "text".into()));
            rows.push(("output".into(), format!("vector({dim})")));
            rows.push((
                "pooling".into(),
                format!("{:?}", spec.pooling).to_lowercase(),
            ));
            rows.push(("normalize".into(), spec.normalize.to_string()));
            rows.push(("max_tokens".into(), spec.max_tokens.to_string()));
        }
        ModelInterface::Chat { input, output } => {
            rows.push((
                "input".into(),
                format!("{} {}", input.name(), sql_type_name(input)),
            ));
            rows.push((
                "output".into(),
                format!("{} {}", output.name(), sql_type_name(output)),
            ));
            if let Some(system) = &spec.chat.system_prompt {
                rows.push(("system_prompt".into(), system.clone()));
            }
        }
        ModelInterface::Predict(layout) => {
            for field in &layout.input_fields {
                rows.push((
                    "input".into(),
                    format!("{} {}", field.name(), sql_type_name(field)),
                ));
            }
            for (_, field) in &layout.outputs {
                rows.push((
                    "output".into(),
                    format!("{} {}", field.name(), sql_type_name(field)),
                ));
            }
        }
    }
    for t in &model.tensor_inputs {
        rows.push(("model_input".into(), tensor_description(t)));
    }
    for t in &model.tensor_outputs {
        rows.push(("model_output".into(), tensor_description(t)));
    }
    rows.push((
        "max_batch_size".into(),
        spec.batch.max_batch_size.to_string(),
    ));
    rows.push((
        "max_batch_wait_ms".into(),
        spec.batch.max_wait.as_millis().to_string(),
    ));
    rows.push((
        "max_queued_rows".into(),
        spec.batch.max_queued_rows.to_string(),
    ));
    rows.push(("intra_threads".into(), spec.batch.intra_threads.to_string()));
    let (rows_done, batches, mean, millis) = model.usage();
    rows.push(("rows".into(), rows_done.to_string()));
    rows.push(("batches".into(), batches.to_string()));
    rows.push(("mean_batch_size".into(), format!("{mean:.1}")));
    rows.push(("model_time_ms".into(), format!("{millis:.1}")));
    rows
}
