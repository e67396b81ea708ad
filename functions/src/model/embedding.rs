//! Text embedding models (`EMBED`): tokenize with the model's own
//! `tokenizer.json`, run the transformer in batches padded only to the
//! longest sequence of each batch, then pool and normalise as
//! sentence-transformers does.
//!
//! Rows are sorted by token count before they are cut into batches, so
//! sentences of similar length share a batch and little compute goes to
//! padding (sentence-transformers' `encode` does the same).

use std::path::Path;
use std::time::Instant;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use ort::session::Session;
use ort::value::{DynValue, Tensor, TensorElementType};
use tokenizers::TruncationParams;
use tokenizers::pipeline::{EncodeOptions, Input, Inputs, Override, PipelineTokenizer};

use super::batcher::{BatchRunner, ModelMetrics};
use super::spec::{ModelSpec, Pooling};
use super::tensors::{TensorSpec, model_error};
use sluice_types::vector::vector_array;

/// How the model's inputs and output are named and shaped.
#[derive(Debug, Clone)]
pub struct EmbeddingLayout {
    ids: String,
    mask: Option<String>,
    type_ids: Option<String>,
    /// Element type of the id tensors (int64 for most exports, int32 for some).
    id_element: TensorElementType,
    output: String,
    /// `[batch, tokens, dim]` (token vectors to pool) or `[batch, dim]`.
    output_is_per_token: bool,
    /// Embedding dimension.
    pub dim: usize,
}

impl EmbeddingLayout {
    /// Works out the layout from the model's signature.
    pub fn of(model: &str, inputs: &[TensorSpec], outputs: &[TensorSpec]) -> Result<Self> {
        let find = |names: &[&str]| {
            inputs
                .iter()
                .find(|t| names.contains(&t.name.as_str()))
                .map(|t| t.name.clone())
        };
        let ids_spec = inputs
            .iter()
            .find(|t| t.name == "input_ids")
            .or_else(|| inputs.first())
            .ok_or_else(|| plan(format!("model {model} has no inputs")))?;
        if !matches!(
            ids_spec.element,
            TensorElementType::Int64 | TensorElementType::Int32
        ) {
            return Err(plan(format!(
                "model {model} is not a text model: its input '{}' is not token ids",
                ids_spec.name
            )));
        }
        let output = outputs
            .iter()
            .find(|t| t.name == "sentence_embedding")
            .or_else(|| outputs.iter().find(|t| t.name == "last_hidden_state"))
            .or_else(|| outputs.first())
            .ok_or_else(|| plan(format!("model {model} has no tensor outputs")))?;
        if output.element != TensorElementType::Float32 {
            return Err(plan(format!(
                "model {model}'s output '{}' is not float32",
                output.name
            )));
        }
        let dim = match output.shape.last() {
            Some(&d) if d > 0 && matches!(output.shape.len(), 2 | 3) => d as usize,
            _ => {
                return Err(plan(format!(
                    "model {model}'s output '{}' has shape {:?}; expected [batch, tokens, dim] \
                     or [batch, dim] with a fixed dim",
                    output.name, output.shape
                )));
            }
        };
        Ok(Self {
            ids: ids_spec.name.clone(),
            mask: find(&["attention_mask"]),
            type_ids: find(&["token_type_ids"]),
            id_element: ids_spec.element,
            output: output.name.clone(),
            output_is_per_token: output.shape.len() == 3,
            dim,
        })
    }
}

/// Loads a `tokenizer.json`, upgrading older formats first.
pub fn load_tokenizer(path: &Path) -> Result<PipelineTokenizer> {
    let text = tokenizers::canonicalize_file(path)
        .map_err(|e| plan(format!("cannot read tokenizer {}: {e}", path.display())))?;
    tokenizers::from_json(&text)
        .map_err(|e| plan(format!("cannot load tokenizer {}: {e}", path.display())))
}

/// Runs a text embedding model on string columns.
pub struct TextEmbedder {
    session: Session,
    tokenizer: PipelineTokenizer,
    layout: EmbeddingLayout,
    options: EncodeOptions,
    pooling: Pooling,
    normalize: bool,
}

impl TextEmbedder {
    /// An embedder over an open session.
    pub fn new(
        session: Session,
        tokenizer: PipelineTokenizer,
        layout: EmbeddingLayout,
        spec: &ModelSpec,
    ) -> Self {
        let options = EncodeOptions {
            // Padding is done here, per batch, to the batch's longest row.
            padding: Override::Off,
            truncation: Override::With(TruncationParams {
                max_length: spec.max_tokens,
                ..TruncationParams::default()
            }),
            ..EncodeOptions::default()
        };
        Self {
            session,
            tokenizer,
            layout,
            options,
            pooling: spec.pooling,
            normalize: spec.normalize,
        }
    }

    fn embed(
        &mut self,
        texts: &ArrayRef,
        batch_size: usize,
        metrics: &ModelMetrics,
    ) -> Result<ArrayRef> {
        let texts = cast(texts, &DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        let present: Vec<usize> = (0..texts.len()).filter(|&i| texts.is_valid(i)).collect();
        let batch: Vec<Input> = present
            .iter()
            .map(|&i| Input::Single(texts.value(i).to_string()))
            .collect();
        let encodings = self
            .tokenizer
            .encode(Inputs::Batch(batch), &self.options)
            .wait()
            .map_err(|e| DataFusionError::Execution(format!("tokenizer failed: {e}")))?;

        let dim = self.layout.dim;
        let mut values = vec![0f32; texts.len() * dim];
        let mut valid = vec![false; texts.len()];
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&k| encodings[k].len());
        for chunk in order.chunks(batch_size.max(1)) {
            let seq = chunk
                .iter()
                .map(|&k| encodings[k].len())
                .max()
                .unwrap_or(0)
                .max(1);
            let rows = chunk.len();
            let mut ids = vec![0i64; rows * seq];
            let mut mask = vec![0i64; rows * seq];
            let mut type_ids = vec![0i64; rows * seq];
            for (r, &k) in chunk.iter().enumerate() {
                let encoding = &encodings[k];
                let base = r * seq;
                for (t, token) in encoding.ids().iter().enumerate() {
                    ids[base + t] = i64::from(token.id());
                }
                match encoding.attention_mask() {
                    Some(m) => {
                        for (t, &bit) in m.iter().enumerate() {
                            mask[base + t] = i64::from(bit);
                        }
                    }
                    None => mask[base..base + encoding.len()].fill(1),
                }
                if let Some(types) = encoding.type_ids() {
                    for (t, &ty) in types.iter().enumerate() {
                        type_ids[base + t] = i64::from(ty);
                    }
                }
            }
            let started = Instant::now();
            let pooled = self.run_batch(rows, seq, ids, &mask, type_ids)?;
            metrics.record_batch(rows, started.elapsed());
            for (r, &k) in chunk.iter().enumerate() {
                let row = present[k];
                values[row * dim..(row + 1) * dim].copy_from_slice(&pooled[r * dim..(r + 1) * dim]);
                valid[row] = true;
            }
        }
        vector_array(dim as i32, values, valid)
    }

    /// One model run; returns `rows × dim` pooled (and normalised) values.
    fn run_batch(
        &mut self,
        rows: usize,
        seq: usize,
        ids: Vec<i64>,
        mask: &[i64],
        type_ids: Vec<i64>,
    ) -> Result<Vec<f32>> {
        let shape = [rows as i64, seq as i64];
        let layout = &self.layout;
        let tensor = |name: &str, data: Vec<i64>| -> Result<DynValue> {
            match layout.id_element {
                TensorElementType::Int32 => {
                    let data: Vec<i32> = data.into_iter().map(|v| v as i32).collect();
                    Tensor::from_array((shape, data)).map(|t| t.into_dyn())
                }
                _ => Tensor::from_array((shape, data)).map(|t| t.into_dyn()),
            }
            .map_err(|e| model_error(name, e))
        };
        let mut inputs: Vec<(String, DynValue)> =
            vec![(layout.ids.clone(), tensor(&layout.ids, ids)?)];
        if let Some(name) = &layout.mask {
            inputs.push((name.clone(), tensor(name, mask.to_vec())?));
        }
        if let Some(name) = &layout.type_ids {
            inputs.push((name.clone(), tensor(name, type_ids)?));
        }
        let output_name = layout.output.clone();
        let per_token = layout.output_is_per_token;
        let dim = layout.dim;
        let outputs = self
            .session
            .run(inputs)
            .map_err(|e| model_error("embedding model", e))?;
        let output = outputs
            .get(&output_name)
            .ok_or_else(|| model_error(&output_name, "output missing"))?;
        let (_, data) = output
            .try_extract_tensor::<f32>()
            .map_err(|e| model_error(&output_name, e))?;
        let mut pooled = vec![0f32; rows * dim];
        if per_token {
            if data.len() != rows * seq * dim {
                return Err(model_error(&output_name, "unexpected output size"));
            }
            pool(data, mask, rows, seq, dim, self.pooling, &mut pooled);
        } else {
            if data.len() != rows * dim {
                return Err(model_error(&output_name, "unexpected output size"));
            }
            pooled.copy_from_slice(data);
        }
        if self.normalize {
            for row in pooled.chunks_mut(dim) {
                normalize(row);
            }
        }
        Ok(pooled)
    }
}

/// Pools `[rows, seq, dim]` token vectors into `[rows, dim]`.
fn pool(
    tokens: &[f32],
    mask: &[i64],
    rows: usize,
    seq: usize,
    dim: usize,
    pooling: Pooling,
    out: &mut [f32],
) {
    for r in 0..rows {
        let target = &mut out[r * dim..(r + 1) * dim];
        match pooling {
            Pooling::Cls => target.copy_from_slice(&tokens[r * seq * dim..r * seq * dim + dim]),
            Pooling::Mean => {
                let mut count = 0f32;
                for t in 0..seq {
                    if mask[r * seq + t] == 0 {
                        continue;
                    }
                    count += 1.0;
                    let token = &tokens[(r * seq + t) * dim..(r * seq + t + 1) * dim];
                    for (acc, v) in target.iter_mut().zip(token) {
                        *acc += v;
                    }
                }
                // sentence-transformers clamps the count at 1e-9.
                let count = count.max(1e-9);
                for v in target.iter_mut() {
                    *v /= count;
                }
            }
        }
    }
}

/// L2-normalises `row` in place (a zero vector stays zero), as
/// sentence-transformers does; shared by local and remote embedders.
pub(crate) fn normalize(row: &mut [f32]) {
    let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    for v in row.iter_mut() {
        *v /= norm;
    }
}

impl BatchRunner for TextEmbedder {
    fn run(
        &mut self,
        inputs: &[ArrayRef],
        batch_size: usize,
        metrics: &ModelMetrics,
    ) -> Result<Vec<ArrayRef>> {
        let texts = inputs
            .first()
            .ok_or_else(|| DataFusionError::Internal("EMBED got no input column".into()))?;
        Ok(vec![self.embed(texts, batch_size, metrics)?])
    }
}

fn plan(message: String) -> DataFusionError {
    DataFusionError::Plan(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pooling_ignores_padding() {
        // Two rows, three token slots, dim 2; row 1 has one padded slot.
        let tokens = [
            1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 1.0, 1.0, 3.0, 3.0, 100.0, 100.0,
        ];
        let mask = [1, 1, 1, 1, 1, 0];
        let mut out = [0f32; 4];
        pool(&tokens, &mask, 2, 3, 2, Pooling::Mean, &mut out);
        assert_eq!(out, [3.0, 4.0, 2.0, 2.0]);
        pool(&tokens, &mask, 2, 3, 2, Pooling::Cls, &mut out);
        assert_eq!(out, [1.0, 2.0, 1.0, 1.0]);
    }

    #[test]
    fn normalised_rows_have_unit_length() {
        let mut row = [3.0, 4.0];
        normalize(&mut row);
        assert_eq!(row, [0.6, 0.8]);
        let mut zero = [0.0, 0.0];
        normalize(&mut zero);
        assert_eq!(zero, [0.0, 0.0]);
    }
}
