//! Remote embedding models: `EMBED` through `/embeddings`. Each gathered
//! batch is sent as requests of (at most) the batch size's texts.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use serde_json::{Value, json};
use sluice_types::error::{SluiceError, SqlState};
use sluice_types::vector::vector_array;

use super::client::{Answer, RemoteClient};
use crate::model::batcher::{BatchRunner, ModelMetrics};
use crate::model::embedding::normalize;
use crate::model::spec::RemoteSettings;

/// An embedding model served over HTTP.
pub struct RemoteEmbedder {
    client: RemoteClient,
    normalize: bool,
    /// Embedding dimension, found by a probe request at load.
    pub dim: usize,
}

impl RemoteEmbedder {
    /// Connects to the endpoint and learns the dimension with one request.
    pub fn connect(settings: RemoteSettings, normalize: bool) -> Result<Self> {
        let mut embedder = Self {
            client: RemoteClient::new(settings),
            normalize,
            dim: 0,
        };
        let probe = embedder
            .request(&["dimension probe".to_string()])
            .map_err(|e| DataFusionError::Plan(format!("remote model is not usable: {e}")))?;
        embedder.dim = probe.first().map_or(0, Vec::len);
        if embedder.dim == 0 {
            return Err(DataFusionError::Plan(
                "remote model returned an empty embedding".into(),
            ));
        }
        Ok(embedder)
    }

    /// One `/embeddings` request, retried on transient failures.
    fn request(&self, texts: &[String]) -> Answer<Vec<Vec<f32>>> {
        let body = json!({ "model": self.client.settings.model, "input": texts });
        self.client.post("embeddings", &body, |text| {
            parse_embeddings(text, texts.len())
        })
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
        let chunks: Vec<Vec<String>> = present
            .chunks(batch_size.max(1))
            .map(|chunk| chunk.iter().map(|&i| texts.value(i).to_string()).collect())
            .collect();
        let started = Instant::now();
        let results = self
            .client
            .each_concurrently(&chunks, |chunk| self.request(chunk));
        let model = &self.client.settings.model;
        let dim = self.dim;
        let mut values = vec![0f32; texts.len() * dim];
        let mut valid = vec![false; texts.len()];
        let mut row_iter = present.iter();
        for (chunk, result) in chunks.iter().zip(results) {
            let vectors = result.map_err(|e| {
                DataFusionError::from(SluiceError::new(
                    SqlState::EXTERNAL_ROUTINE_EXCEPTION,
                    format!("model error (remote model {model}): {e}"),
                ))
            })?;
            metrics.record_batch(chunk.len(), Duration::ZERO);
            for mut vector in vectors {
                let Some(&row) = row_iter.next() else { break };
                if vector.len() != dim {
                    return Err(SluiceError::new(
                        SqlState::EXTERNAL_ROUTINE_EXCEPTION,
                        format!(
                            "model error (remote model {model}): embedding of {} values, expected {dim}",
                            vector.len()
                        ),
                    )
                    .into());
                }
                if self.normalize {
                    normalize(&mut vector);
                }
                values[row * dim..(row + 1) * dim].copy_from_slice(&vector);
                valid[row] = true;
            }
        }
        metrics
            .model_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        vector_array(dim as i32, values, valid)
    }
}

/// Reads an `/embeddings` answer: `data[*].embedding`, ordered by `index`.
fn parse_embeddings(text: &str, expected: usize) -> std::result::Result<Vec<Vec<f32>>, String> {
    let answer: Value =
        serde_json::from_str(text).map_err(|e| format!("answer is not JSON: {e}"))?;
    let data = answer
        .get("data")
        .and_then(Value::as_array)
        .ok_or("answer has no 'data' array")?;
    let mut rows: Vec<(usize, Vec<f32>)> = Vec::with_capacity(data.len());
    for (position, item) in data.iter().enumerate() {
        let index = item
            .get("index")
            .and_then(Value::as_u64)
            .map_or(position, |i| i as usize);
        let vector = item
            .get("embedding")
            .and_then(Value::as_array)
            .ok_or("answer item has no 'embedding' array")?
            .iter()
            .map(|v| {
                v.as_f64()
                    .map(|f| f as f32)
                    .ok_or("embedding holds a non-number")
            })
            .collect::<std::result::Result<Vec<f32>, _>>()?;
        rows.push((index, vector));
    }
    if rows.len() != expected {
        return Err(format!(
            "answer has {} embeddings for {expected} inputs",
            rows.len()
        ));
    }
    rows.sort_by_key(|(i, _)| *i);
    Ok(rows.into_iter().map(|(_, v)| v).collect())
}

impl BatchRunner for RemoteEmbedder {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_read_in_index_order() {
        let text = r#"{"data":[{"index":1,"embedding":[3,4]},{"index":0,"embedding":[1,2]}]}"#;
        assert_eq!(
            parse_embeddings(text, 2).unwrap(),
            vec![vec![1.0, 2.0], vec![3.0, 4.0]]
        );
        assert!(
            parse_embeddings(text, 3)
                .unwrap_err()
                .contains("2 embeddings for 3")
        );
        assert!(parse_embeddings("{}", 1).unwrap_err().contains("'data'"));
        assert!(
            parse_embeddings("nope", 1)
                .unwrap_err()
                .contains("not JSON")
        );
    }
}
