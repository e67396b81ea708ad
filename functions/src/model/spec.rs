//! A model's definition as written in `CREATE MODEL`: provider, files,
//! device, batching and the declared INPUT/OUTPUT columns, validated before
//! anything is loaded.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::error::{DataFusionError, Result};
use sluice_types::error::{SluiceError, SqlState};

use super::runtime::DeviceChoice;

/// What a model computes from SQL values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Text → `EMBEDDING(n)` through a tokenizer and pooling (`EMBED`).
    Embedding,
    /// Columns → output columns (`ML_PREDICT`).
    Predict,
    /// A prompt → the answer's text (`ML_PREDICT` on a remote chat model).
    Chat,
}

impl Task {
    /// Name as written in the `'task'` option.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embedding => "embedding",
            Self::Predict => "predict",
            Self::Chat => "chat",
        }
    }
}

/// How token vectors become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// Mean of the token vectors under the attention mask (sentence-transformers).
    Mean,
    /// The first token's vector (`[CLS]`).
    Cls,
}

/// Batching and threading settings of one model.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchSettings {
    /// Rows per model run. 1 disables batching.
    pub max_batch_size: usize,
    /// How long the runtime waits for more rows when fewer than
    /// `max_batch_size` are queued.
    pub max_wait: Duration,
    /// Rows that may wait for the model before callers are held back.
    pub max_queued_rows: usize,
    /// ONNX Runtime intra-op threads.
    pub intra_threads: usize,
}

/// How IMAGE arguments become a model's input tensor (`image_*` options):
/// decoded, resized to `width` × `height`, scaled to 0..1 and normalised
/// per channel as `(x - mean) / std`, channels first.
#[derive(Debug, Clone, PartialEq)]
pub struct ImagePreprocessing {
    /// Target width; `None`: the model's own fixed width.
    pub width: Option<u32>,
    /// Target height; `None`: the model's own fixed height.
    pub height: Option<u32>,
    /// Per-channel mean (RGB), default 0.
    pub mean: [f32; 3],
    /// Per-channel standard deviation (RGB), default 1.
    pub std: [f32; 3],
}

/// How a remote (`'provider' = 'openai'`) model is reached.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSettings {
    /// Base URL of the OpenAI-compatible API (`…/v1`).
    pub endpoint: String,
    /// The model name the endpoint knows.
    pub model: String,
    /// Environment variable holding the API key.
    pub api_key_env: String,
    /// Requests in flight at most.
    pub max_concurrency: usize,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries after a transport error, 429 or 5xx.
    pub max_retries: u32,
}

/// How a chat model is asked (`'system_prompt'`, `'temperature'`,
/// `'max_tokens'`); unset settings are left to the endpoint.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ChatSettings {
    /// A system message sent before every prompt.
    pub system_prompt: Option<String>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Longest answer, in tokens.
    pub max_tokens: Option<usize>,
}

/// A validated `CREATE MODEL`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// The model's name (lower case unless quoted).
    pub name: String,
    /// `'onnx'`.
    pub provider: String,
    /// What the model computes.
    pub task: Task,
    /// The ONNX file (for a remote model, its endpoint).
    pub path: PathBuf,
    /// How a remote model is reached; `None` for local ONNX models.
    pub remote: Option<RemoteSettings>,
    /// `tokenizer.json`, for text models.
    pub tokenizer: Option<PathBuf>,
    /// Requested device.
    pub device: DeviceChoice,
    /// Batching settings.
    pub batch: BatchSettings,
    /// Longest token sequence fed to a text model; longer text is truncated.
    pub max_tokens: usize,
    /// Pooling of a text model's token vectors.
    pub pooling: Pooling,
    /// Whether embeddings are L2-normalised.
    pub normalize: bool,
    /// How IMAGE arguments are prepared for the model.
    pub image: ImagePreprocessing,
    /// How a chat model is asked.
    pub chat: ChatSettings,
    /// Declared INPUT columns (empty: read from the model).
    pub inputs: Vec<FieldRef>,
    /// Declared OUTPUT columns (empty: read from the model).
    pub outputs: Vec<FieldRef>,
    /// The options as written, for `DESCRIBE MODEL`.
    pub options: BTreeMap<String, String>,
    /// `COMMENT '…'`.
    pub comment: Option<String>,
}

const KNOWN_OPTIONS: &[&str] = &[
    "provider",
    "task",
    "path",
    "tokenizer",
    "device",
    "max_batch_size",
    "max_batch_wait_ms",
    "max_queued_rows",
    "intra_threads",
    "max_tokens",
    "pooling",
    "normalize",
    "endpoint",
    "model",
    "api_key_env",
    "max_concurrency",
    "timeout_ms",
    "max_retries",
    "image_width",
    "image_height",
    "image_mean",
    "image_std",
    "system_prompt",
    "temperature",
];

impl ModelSpec {
    /// Validates the parts of a `CREATE MODEL` statement.
    pub fn new(
        name: &str,
        inputs: Vec<FieldRef>,
        outputs: Vec<FieldRef>,
        options: BTreeMap<String, String>,
    ) -> Result<Self> {
        let options: BTreeMap<String, String> = options
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        if let Some(unknown) = options
            .keys()
            .find(|k| !KNOWN_OPTIONS.contains(&k.as_str()))
        {
            return Err(plan_error(format!(
                "unknown model option '{unknown}' (known: {})",
                KNOWN_OPTIONS.join(", ")
            )));
        }
        let provider = options
            .get("provider")
            .map(|p| p.to_ascii_lowercase())
            .unwrap_or_else(|| "onnx".to_string());
        let remote = match provider.as_str() {
            "onnx" => None,
            "openai" => Some(remote_settings(name, &options)?),
            _ => {
                return Err(DataFusionError::NotImplemented(format!(
                    "model provider '{provider}' is not supported; available: 'onnx', 'openai'"
                )));
            }
        };
        let path = match &remote {
            Some(remote) => PathBuf::from(&remote.endpoint),
            None => options.get("path").map(PathBuf::from).ok_or_else(|| {
                plan_error("model option 'path' (the ONNX file) is required".into())
            })?,
        };
        let tokenizer = options.get("tokenizer").map(PathBuf::from);
        let task = match options
            .get("task")
            .map(|t| t.to_ascii_lowercase())
            .as_deref()
        {
            Some("embedding" | "embed" | "text_embedding") => Task::Embedding,
            Some("predict" | "classification" | "regression") => Task::Predict,
            Some("chat" | "completion" | "text_generation") => Task::Chat,
            Some(other) => {
                return Err(plan_error(format!(
                    "unknown model task '{other}': expected 'embedding', 'predict' or 'chat'"
                )));
            }
            None if tokenizer.is_some() || remote.is_some() => Task::Embedding,
            None => Task::Predict,
        };
        match (task, &remote) {
            (Task::Predict, Some(_)) => {
                return Err(DataFusionError::NotImplemented(
                    "remote models serve 'embedding' and 'chat' tasks; 'predict' runs ONNX \
                     models"
                        .into(),
                ));
            }
            (Task::Chat, None) => {
                return Err(DataFusionError::NotImplemented(
                    "chat models are served by an endpoint: 'provider' = 'openai'".into(),
                ));
            }
            _ => {}
        }
        if task == Task::Embedding && tokenizer.is_none() && remote.is_none() {
            return Err(plan_error(
                "an embedding model needs the option 'tokenizer' (its tokenizer.json)".into(),
            ));
        }
        let device = DeviceChoice::parse(options.get("device").map_or("auto", String::as_str))?;
        let default_batch = match (task, &remote) {
            (Task::Chat, _) => 16,
            (_, Some(_)) => 64,
            (Task::Embedding, None) => 32,
            // One model run per DataFusion batch: ONNX Runtime's fixed cost
            // per run is what small batches pay for.
            (Task::Predict, None) => 8192,
        };
        let max_batch_size = positive(&options, "max_batch_size", default_batch)?;
        let max_wait_ms = number(&options, "max_batch_wait_ms", 2)?;
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let batch = BatchSettings {
            max_batch_size,
            max_wait: Duration::from_millis(max_wait_ms as u64),
            max_queued_rows: positive(&options, "max_queued_rows", 65_536)?,
            intra_threads: positive(&options, "intra_threads", cores)?,
        };
        let pooling = match options
            .get("pooling")
            .map(|p| p.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("mean") => Pooling::Mean,
            Some("cls") => Pooling::Cls,
            Some(other) => {
                return Err(plan_error(format!(
                    "unknown pooling '{other}': expected 'mean' or 'cls'"
                )));
            }
        };
        let normalize = match options
            .get("normalize")
            .map(|p| p.to_ascii_lowercase())
            .as_deref()
        {
            None | Some("true" | "on" | "1") => true,
            Some("false" | "off" | "0") => false,
            Some(other) => {
                return Err(plan_error(format!(
                    "option 'normalize' must be true or false, not '{other}'"
                )));
            }
        };
        if task == Task::Embedding && (!inputs.is_empty() || !outputs.is_empty()) {
            return Err(plan_error(
                "an embedding model takes text and returns EMBEDDING(n); \
                 leave out INPUT and OUTPUT"
                    .into(),
            ));
        }
        if task == Task::Chat {
            check_chat_columns(&inputs, &outputs)?;
        }
        let chat = ChatSettings {
            system_prompt: options.get("system_prompt").cloned(),
            temperature: options
                .get("temperature")
                .map(|t| {
                    t.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|t| (0.0..=2.0).contains(t))
                        .ok_or_else(|| {
                            plan_error(format!(
                                "model option 'temperature' is a number from 0 to 2, not '{t}'"
                            ))
                        })
                })
                .transpose()?,
            max_tokens: options
                .contains_key("max_tokens")
                .then(|| positive(&options, "max_tokens", 1))
                .transpose()?,
        };
        Ok(Self {
            name: name.to_string(),
            provider,
            task,
            path,
            remote,
            tokenizer,
            device,
            batch,
            max_tokens: positive(&options, "max_tokens", 256)?,
            pooling,
            normalize,
            image: image_preprocessing(&options)?,
            chat,
            inputs,
            outputs,
            options,
            comment: None,
        })
    }
}

fn remote_settings(name: &str, options: &BTreeMap<String, String>) -> Result<RemoteSettings> {
    let endpoint = options.get("endpoint").cloned().ok_or_else(|| {
        plan_error(
            "an 'openai' model needs the option 'endpoint' (the API's base URL, e.g. \
             'https://api.openai.com/v1')"
                .into(),
        )
    })?;
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(plan_error(format!(
            "model option 'endpoint' must be an http:// or https:// URL, not '{endpoint}'"
        )));
    }
    Ok(RemoteSettings {
        endpoint,
        model: options
            .get("model")
            .cloned()
            .unwrap_or_else(|| name.to_string()),
        api_key_env: options
            .get("api_key_env")
            .cloned()
            .unwrap_or_else(|| "OPENAI_API_KEY".into()),
        max_concurrency: positive(options, "max_concurrency", 4)?,
        timeout: Duration::from_millis(positive(options, "timeout_ms", 30_000)? as u64),
        max_retries: number(options, "max_retries", 3)? as u32,
    })
}

/// A chat model takes one text column and returns one.
fn check_chat_columns(inputs: &[FieldRef], outputs: &[FieldRef]) -> Result<()> {
    let text = |fields: &[FieldRef]| {
        fields.is_empty()
            || matches!(
                fields,
                [f] if matches!(f.data_type(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
            )
    };
    if text(inputs) && text(outputs) {
        Ok(())
    } else {
        Err(plan_error(
            "a chat model takes one text column and returns one: INPUT (prompt STRING) \
             OUTPUT (response STRING)"
                .into(),
        ))
    }
}

fn image_preprocessing(options: &BTreeMap<String, String>) -> Result<ImagePreprocessing> {
    let size = |key: &str| -> Result<Option<u32>> {
        options
            .get(key)
            .map(|_| {
                let n = positive(options, key, 1)?;
                u32::try_from(n)
                    .ok()
                    .filter(|&n| n <= 16_384)
                    .ok_or_else(|| plan_error(format!("model option '{key}' is at most 16384")))
            })
            .transpose()
    };
    let channels = |key: &str, default: f32| -> Result<[f32; 3]> {
        let Some(text) = options.get(key) else {
            return Ok([default; 3]);
        };
        let values: Vec<f32> = text
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<std::result::Result<_, _>>()
            .ok()
            .filter(|v: &Vec<f32>| v.iter().all(|x| x.is_finite()))
            .ok_or_else(|| {
                plan_error(format!(
                    "model option '{key}' takes three numbers (R,G,B), not '{text}'"
                ))
            })?;
        match values.as_slice() {
            [r, g, b] => Ok([*r, *g, *b]),
            [v] => Ok([*v; 3]),
            _ => Err(plan_error(format!(
                "model option '{key}' takes three numbers (R,G,B), not '{text}'"
            ))),
        }
    };
    let std = channels("image_std", 1.0)?;
    if std.contains(&0.0) {
        return Err(plan_error("model option 'image_std' cannot hold 0".into()));
    }
    Ok(ImagePreprocessing {
        width: size("image_width")?,
        height: size("image_height")?,
        mean: channels("image_mean", 0.0)?,
        std,
    })
}

/// A definition the server cannot accept: an unknown option, or an
/// option's value outside its domain (SQLSTATE 22023).
fn plan_error(message: String) -> DataFusionError {
    SluiceError::new(SqlState::INVALID_PARAMETER_VALUE, message).into()
}

fn number(options: &BTreeMap<String, String>, key: &str, default: usize) -> Result<usize> {
    match options.get(key) {
        None => Ok(default),
        Some(text) => text.trim().parse().map_err(|_| {
            plan_error(format!(
                "model option '{key}' must be a whole number, not '{text}'"
            ))
        }),
    }
}

fn positive(options: &BTreeMap<String, String>, key: &str, default: usize) -> Result<usize> {
    let value = number(options, key, default)?;
    if value == 0 {
        return Err(plan_error(format!(
            "model option '{key}' must be at least 1"
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn task_follows_the_tokenizer_option() {
        let embed = ModelSpec::new(
            "m",
            vec![],
            vec![],
            options(&[("path", "m.onnx"), ("tokenizer", "t.json")]),
        )
        .unwrap();
        assert_eq!(embed.task, Task::Embedding);
        assert_eq!(embed.batch.max_batch_size, 32);
        let predict = ModelSpec::new("m", vec![], vec![], options(&[("path", "m.onnx")])).unwrap();
        assert_eq!(predict.task, Task::Predict);
    }

    #[test]
    fn bad_options_are_rejected() {
        let err = |pairs: &[(&str, &str)]| {
            ModelSpec::new("m", vec![], vec![], options(pairs))
                .unwrap_err()
                .to_string()
        };
        assert!(err(&[]).contains("'path'"));
        assert!(err(&[("path", "m"), ("colour", "red")]).contains("unknown model option 'colour'"));
        assert!(err(&[("path", "m"), ("device", "tpu")]).contains("unknown device 'tpu'"));
        assert!(err(&[("path", "m"), ("max_batch_size", "0")]).contains("at least 1"));
        assert!(err(&[("path", "m"), ("max_batch_size", "x")]).contains("whole number"));
        assert!(err(&[("path", "m"), ("provider", "triton")]).contains("not supported"));
        assert!(err(&[("provider", "openai")]).contains("'endpoint'"));
        assert!(err(&[("provider", "openai"), ("endpoint", "ftp://x")]).contains("http"));
        assert!(err(&[("path", "m"), ("task", "embedding")]).contains("'tokenizer'"));
    }
}
