//! The model catalog of one engine: every `CREATE MODEL`, and for each the
//! one loaded session (with its batching queue) that all queries,
//! partitions and connections share.
//!
//! Models restored when a data directory is opened are loaded lazily, at
//! first use, so a model file that has gone missing fails the queries that
//! use it rather than the engine's start.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, RwLock};

use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::error::{DataFusionError, Result};
use sluice_types::error::{SluiceError, SqlState};

use super::batcher::{BatchRunner, ModelMetrics, ModelQueue, RunStats};
use super::embedding::{EmbeddingLayout, TextEmbedder, load_tokenizer};
use super::predictor::{PredictLayout, Predictor};
use super::remote::{RemoteChat, RemoteEmbedder};
use super::runtime::{Device, open_session};
use super::secrets::KeyVariablePolicy;
use super::spec::{ModelSpec, Task};
use super::tensors::{TensorSpec, signature};

/// What a loaded model offers to SQL.
#[derive(Debug, Clone)]
pub enum ModelInterface {
    /// `EMBED(model, text)` → `EMBEDDING(dim)`.
    Embedding {
        /// Embedding dimension.
        dim: usize,
    },
    /// `ML_PREDICT`.
    Predict(PredictLayout),
    /// `ML_PREDICT(model, prompt)` on a chat model → the answer's text.
    Chat {
        /// The prompt column.
        input: FieldRef,
        /// The answer column.
        output: FieldRef,
    },
}

impl ModelInterface {
    /// The columns `ML_PREDICT` returns (as the fields of its struct);
    /// `None` for embedding models, which `EMBED` calls.
    pub fn prediction_fields(&self) -> Option<Vec<FieldRef>> {
        match self {
            Self::Embedding { .. } => None,
            Self::Predict(layout) => {
                Some(layout.outputs.iter().map(|(_, f)| Arc::clone(f)).collect())
            }
            Self::Chat { output, .. } => Some(vec![Arc::clone(output)]),
        }
    }
}

/// A model loaded into ONNX Runtime, ready to serve.
#[derive(Debug)]
pub struct LoadedModel {
    /// Its definition.
    pub spec: ModelSpec,
    /// How SQL calls it.
    pub interface: ModelInterface,
    /// The model's own tensor inputs.
    pub tensor_inputs: Vec<TensorSpec>,
    /// The model's own tensor outputs.
    pub tensor_outputs: Vec<TensorSpec>,
    /// Where it runs.
    pub device: Device,
    /// Why `auto` chose CPU, if it did.
    pub fallback_reason: Option<String>,
    queue: ModelQueue,
}

impl LoadedModel {
    /// Opens the model file and checks it against the definition.
    pub fn load(spec: ModelSpec) -> Result<Self> {
        if let Some(remote) = &spec.remote {
            let (interface, runner): (ModelInterface, Box<dyn BatchRunner>) = match spec.task {
                Task::Chat => {
                    let column = |declared: &[FieldRef], name: &str| {
                        declared
                            .first()
                            .cloned()
                            .unwrap_or_else(|| Arc::new(Field::new(name, DataType::Utf8, true)))
                    };
                    let interface = ModelInterface::Chat {
                        input: column(&spec.inputs, "prompt"),
                        output: column(&spec.outputs, "response"),
                    };
                    let chat = RemoteChat::new(remote.clone(), spec.chat.clone());
                    (interface, Box::new(chat))
                }
                _ => {
                    let embedder = RemoteEmbedder::connect(remote.clone(), spec.normalize)?;
                    let dim = embedder.dim;
                    (ModelInterface::Embedding { dim }, Box::new(embedder))
                }
            };
            let queue = ModelQueue::start(&spec.name, runner, &spec.batch)?;
            return Ok(Self {
                spec,
                interface,
                tensor_inputs: vec![],
                tensor_outputs: vec![],
                device: Device::Remote,
                fallback_reason: None,
                queue,
            });
        }
        if !spec.path.is_file() {
            return Err(SluiceError::new(
                SqlState::UNDEFINED_FILE,
                format!("model file {} does not exist", spec.path.display()),
            )
            .into());
        }
        let opened = open_session(&spec.path, spec.device, spec.batch.intra_threads)?;
        let (tensor_inputs, tensor_outputs) = signature(&opened.session);
        let (interface, runner): (ModelInterface, Box<dyn BatchRunner>) = match spec.task {
            Task::Embedding => {
                let layout = EmbeddingLayout::of(&spec.name, &tensor_inputs, &tensor_outputs)?;
                let tokenizer_path = spec.tokenizer.as_ref().ok_or_else(|| {
                    DataFusionError::Plan("an embedding model needs a tokenizer".into())
                })?;
                let tokenizer = load_tokenizer(tokenizer_path)?;
                let dim = layout.dim;
                let embedder = TextEmbedder::new(opened.session, tokenizer, layout, &spec);
                (ModelInterface::Embedding { dim }, Box::new(embedder))
            }
            Task::Chat => {
                return Err(DataFusionError::NotImplemented(
                    "chat models are served by an endpoint: 'provider' = 'openai'".into(),
                ));
            }
            Task::Predict => {
                let layout = PredictLayout::of(&spec, &tensor_inputs, &tensor_outputs)?;
                let predictor = Predictor::new(opened.session, layout.clone(), &spec);
                (ModelInterface::Predict(layout), Box::new(predictor))
            }
        };
        let queue = ModelQueue::start(&spec.name, runner, &spec.batch)?;
        Ok(Self {
            spec,
            interface,
            tensor_inputs,
            tensor_outputs,
            device: opened.device,
            fallback_reason: opened.fallback_reason,
            queue,
        })
    }

    /// Runs the model on input columns through its batching queue; also
    /// returns what the model runs that served them did.
    /// `batch_size` overrides the model's rows per run for these rows.
    pub async fn infer(
        &self,
        inputs: Vec<datafusion::arrow::array::ArrayRef>,
        batch_size: Option<usize>,
    ) -> Result<(Vec<datafusion::arrow::array::ArrayRef>, RunStats)> {
        self.queue.infer(inputs, batch_size).await.map_err(|e| {
            if let Some(typed) = SluiceError::find(&e) {
                let message = format!("model {}: {}", self.spec.name, typed.message);
                return SluiceError::new(typed.sqlstate, message).into();
            }
            match e {
                DataFusionError::Execution(m) => {
                    DataFusionError::Execution(format!("model {}: {m}", self.spec.name))
                }
                other => other,
            }
        })
    }

    /// The model's counters.
    pub fn metrics(&self) -> &ModelMetrics {
        self.queue.metrics()
    }

    /// `rows`, `batches`, mean batch size and milliseconds in the model.
    pub fn usage(&self) -> (u64, u64, f64, f64) {
        let m = self.metrics();
        let rows = m.rows.load(Ordering::Relaxed);
        let batches = m.batches.load(Ordering::Relaxed);
        let mean = if batches == 0 {
            0.0
        } else {
            rows as f64 / batches as f64
        };
        let millis = m.model_nanos.load(Ordering::Relaxed) as f64 / 1e6;
        (rows, batches, mean, millis)
    }
}

/// Why a model could not be loaded: the failure's SQLSTATE, when it had
/// one, and its message (kept, so later calls report the same).
type LoadFailure = (Option<SqlState>, String);

/// One catalog entry: the definition, and the model once loaded.
#[derive(Debug)]
pub struct ModelEntry {
    /// The definition.
    pub spec: ModelSpec,
    /// The loaded model, or why it could not be loaded (its SQLSTATE, if
    /// the failure had one, and message).
    loaded: OnceLock<std::result::Result<Arc<LoadedModel>, LoadFailure>>,
}

impl ModelEntry {
    /// The loaded model, loading it now if needed.
    pub fn loaded(&self) -> Result<Arc<LoadedModel>> {
        self.loaded
            .get_or_init(|| {
                let load = || {
                    LoadedModel::load(self.spec.clone())
                        .map(Arc::new)
                        .map_err(|e| match SluiceError::find(&e) {
                            Some(typed) => (Some(typed.sqlstate), typed.message.clone()),
                            None => (None, e.strip_backtrace()),
                        })
                };
                // Loading reads and optimises the model file (seconds for a
                // large one). On a runtime worker, tell tokio first so its
                // other tasks move to another thread meanwhile.
                match tokio::runtime::Handle::try_current() {
                    Ok(handle)
                        if handle.runtime_flavor()
                            == tokio::runtime::RuntimeFlavor::MultiThread =>
                    {
                        tokio::task::block_in_place(load)
                    }
                    _ => load(),
                }
            })
            .clone()
            .map_err(|(sqlstate, m)| {
                let message = format!("model {} cannot be loaded: {m}", self.spec.name);
                match sqlstate {
                    Some(sqlstate) => SluiceError::new(sqlstate, message).into(),
                    None => DataFusionError::Execution(message),
                }
            })
    }

    /// The loaded model if it has been loaded.
    pub fn if_loaded(&self) -> Option<Arc<LoadedModel>> {
        self.loaded.get().and_then(|r| r.as_ref().ok()).cloned()
    }
}

/// Every model of an engine, by name.
#[derive(Debug, Default)]
pub struct ModelRegistry {
    models: RwLock<BTreeMap<String, Arc<ModelEntry>>>,
    key_variables: KeyVariablePolicy,
}

impl ModelRegistry {
    /// An empty catalog.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty catalog whose remote models may read API keys only from
    /// the variables `key_variables` allows.
    pub fn with_key_variables(key_variables: KeyVariablePolicy) -> Self {
        Self {
            models: RwLock::default(),
            key_variables,
        }
    }

    /// Checks a definition against the server's policies before it is
    /// loaded or stored: a remote model's key variable must be allowed.
    pub fn check(&self, spec: &ModelSpec) -> Result<()> {
        match &spec.remote {
            Some(remote) => self.key_variables.check(&remote.api_key_env),
            None => Ok(()),
        }
    }

    /// Adds a model that is already loaded (`CREATE MODEL` loads eagerly to
    /// report a bad file at once). Replaces a model of the same name only
    /// when `replace` is set.
    pub fn insert(&self, model: LoadedModel, replace: bool) -> Result<()> {
        let name = model.spec.name.clone();
        let entry = ModelEntry {
            spec: model.spec.clone(),
            loaded: OnceLock::new(),
        };
        let _ = entry.loaded.set(Ok(Arc::new(model)));
        let mut models = self.write();
        if !replace && models.contains_key(&name) {
            return Err(already_exists(&name));
        }
        models.insert(name, Arc::new(entry));
        Ok(())
    }

    /// Adds a model to be loaded at first use.
    pub fn insert_unloaded(&self, spec: ModelSpec) {
        let name = spec.name.clone();
        let entry = ModelEntry {
            spec,
            loaded: OnceLock::new(),
        };
        self.write().insert(name, Arc::new(entry));
    }

    /// Whether a model of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// The entry of `name`; names match case-insensitively unless a model
    /// was created with a quoted mixed-case name.
    pub fn entry(&self, name: &str) -> Result<Arc<ModelEntry>> {
        let models = self.read();
        models
            .get(name)
            .or_else(|| models.get(&name.to_lowercase()))
            .cloned()
            .ok_or_else(|| {
                SluiceError::new(
                    SqlState::UNDEFINED_OBJECT,
                    format!("model '{name}' does not exist"),
                )
                .into()
            })
    }

    /// The loaded model of `name`.
    pub fn get(&self, name: &str) -> Result<Arc<LoadedModel>> {
        self.entry(name)?.loaded()
    }

    /// Removes `name`; `false` when there was none.
    pub fn remove(&self, name: &str) -> bool {
        self.write().remove(name).is_some()
    }

    /// Every entry, by name.
    pub fn list(&self) -> Vec<Arc<ModelEntry>> {
        self.read().values().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<ModelEntry>>> {
        // A poisoned lock means a panic mid-insert of a map entry; the map
        // itself is intact.
        self.models.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<ModelEntry>>> {
        self.models.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// The error for a second model of the same name.
pub fn already_exists(name: &str) -> DataFusionError {
    SluiceError::new(
        SqlState::DUPLICATE_OBJECT,
        format!("model '{name}' already exists"),
    )
    .into()
}
