//! Remote models behind an OpenAI-compatible HTTP API (`'provider' =
//! 'openai'`): `EMBED` through `/embeddings`. They run in the same model
//! worker and batching queue as local models, so the same backpressure
//! applies; on top, each gathered batch is sent as requests of
//! `max_batch_size` texts with at most `max_concurrency` in flight, a
//! timeout per request, and retries with exponential backoff on transport
//! errors, 429 and 5xx answers.
//!
//! The API key is read from the environment variable named by
//! `'api_key_env'` (default `OPENAI_API_KEY`) when the model is loaded, so
//! no secret is stored in the catalog.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use serde_json::{Value, json};
use sluice_types::vector::vector_array;

use super::batcher::{BatchRunner, ModelMetrics};
use super::embedding::normalize;
use super::spec::RemoteSettings;

/// The embeddings of one request, or why it failed.
type Answer = std::result::Result<Vec<Vec<f32>>, String>;

/// An embedding model served over HTTP.
pub struct RemoteEmbedder {
    agent: ureq::Agent,
    url: String,
    model: String,
    api_key: Option<String>,
    settings: RemoteSettings,
    max_batch_size: usize,
    normalize: bool,
    /// Embedding dimension, found by a probe request at load.
    pub dim: usize,
}

impl RemoteEmbedder {
    /// Connects to the endpoint and learns the dimension with one request.
    pub fn connect(
        settings: RemoteSettings,
        model: String,
        max_batch_size: usize,
        normalize: bool,
    ) -> Result<Self> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(settings.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let api_key = std::env::var(&settings.api_key_env).ok();
        let url = format!("{}/embeddings", settings.endpoint.trim_end_matches('/'));
        let mut embedder = Self {
            agent,
            url,
            model,
            api_key,
            settings,
            max_batch_size,
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
    fn request(&self, texts: &[String]) -> Answer {
        let body = json!({ "model": self.model, "input": texts });
        let mut attempt = 0;
        loop {
            let outcome = self.send(&body, texts.len());
            match outcome {
                Ok(vectors) => return Ok(vectors),
                Err((message, retryable)) => {
                    if !retryable || attempt >= self.settings.max_retries {
                        let tries = attempt + 1;
                        return Err(format!("{message} (after {tries} attempt(s))"));
                    }
                    // 100 ms, 200 ms, 400 ms, … capped at 5 s.
                    let backoff =
                        Duration::from_millis(100 << attempt.min(6)).min(Duration::from_secs(5));
                    std::thread::sleep(backoff);
                    attempt += 1;
                }
            }
        }
    }

    /// Sends once; on failure says whether a retry may help.
    fn send(
        &self,
        body: &Value,
        expected: usize,
    ) -> std::result::Result<Vec<Vec<f32>>, (String, bool)> {
        let mut request = self.agent.post(&self.url);
        if let Some(key) = &self.api_key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let mut response = request
            .send_json(body)
            .map_err(|e| (format!("request to {} failed: {e}", self.url), true))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(|e| {
            (
                format!("reading the answer of {} failed: {e}", self.url),
                true,
            )
        })?;
        if status != 200 {
            let retryable = status == 429 || status >= 500;
            let detail: String = text.chars().take(300).collect();
            return Err((
                format!("{} answered {status}: {detail}", self.url),
                retryable,
            ));
        }
        parse_embeddings(&text, expected).map_err(|e| (e, false))
    }

    fn embed(&mut self, texts: &ArrayRef, metrics: &ModelMetrics) -> Result<ArrayRef> {
        let texts = cast(texts, &DataType::Utf8)?;
        let texts = texts.as_string::<i32>();
        let present: Vec<usize> = (0..texts.len()).filter(|&i| texts.is_valid(i)).collect();
        let chunks: Vec<Vec<String>> = present
            .chunks(self.max_batch_size)
            .map(|chunk| chunk.iter().map(|&i| texts.value(i).to_string()).collect())
            .collect();
        let started = Instant::now();
        let results = self.request_all(&chunks);
        let dim = self.dim;
        let mut values = vec![0f32; texts.len() * dim];
        let mut valid = vec![false; texts.len()];
        let mut row_iter = present.iter();
        for (chunk, result) in chunks.iter().zip(results) {
            let vectors = result.map_err(|e| {
                DataFusionError::Execution(format!(
                    "model error (remote model {}): {e}",
                    self.model
                ))
            })?;
            metrics.record_batch(chunk.len(), Duration::ZERO);
            for mut vector in vectors {
                let Some(&row) = row_iter.next() else { break };
                if vector.len() != dim {
                    return Err(DataFusionError::Execution(format!(
                        "model error (remote model {}): embedding of {} values, expected {dim}",
                        self.model,
                        vector.len()
                    )));
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

    /// Sends every chunk, at most `max_concurrency` at a time; answers in
    /// chunk order.
    fn request_all(&self, chunks: &[Vec<String>]) -> Vec<Answer> {
        let next = AtomicUsize::new(0);
        let mut results: Vec<Option<Answer>> = (0..chunks.len()).map(|_| None).collect();
        let workers = self.settings.max_concurrency.min(chunks.len()).max(1);
        let answers: Vec<Vec<(usize, Answer)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(chunk) = chunks.get(i) else { break };
                            mine.push((i, self.request(chunk)));
                        }
                        mine
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        for (i, answer) in answers.into_iter().flatten() {
            results[i] = Some(answer);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err("request was not sent".into())))
            .collect()
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
    fn run(&mut self, inputs: &[ArrayRef], metrics: &ModelMetrics) -> Result<Vec<ArrayRef>> {
        let texts = inputs
            .first()
            .ok_or_else(|| DataFusionError::Internal("EMBED got no input column".into()))?;
        Ok(vec![self.embed(texts, metrics)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_in_index_order() {
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
