//! Remote chat models (`'task' = 'chat'`): `ML_PREDICT('llm', prompt)`
//! sends each row as one conversation to `/chat/completions` and returns
//! the answer's text. A chat request takes one conversation, so the rows
//! of a gathered batch go out as concurrent requests (`max_concurrency`).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use serde_json::{Value, json};
use sluice_types::error::{SluiceError, SqlState};

use super::client::{Answer, RemoteClient};
use crate::model::batcher::{BatchRunner, ModelMetrics};
use crate::model::spec::{ChatSettings, RemoteSettings};

/// A chat model served over HTTP.
pub struct RemoteChat {
    client: RemoteClient,
    chat: ChatSettings,
}

impl RemoteChat {
    /// A chat model at the endpoint of `settings`. Nothing is sent until
    /// the first query: a probe would be a paid completion.
    pub fn new(settings: RemoteSettings, chat: ChatSettings) -> Self {
        Self {
            client: RemoteClient::new(settings),
            chat,
        }
    }

    /// One completion of `prompt`, retried on transient failures.
    fn complete(&self, prompt: &str) -> Answer<String> {
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = &self.chat.system_prompt {
            messages.push(json!({ "role": "system", "content": system }));
        }
        messages.push(json!({ "role": "user", "content": prompt }));
        let mut body = json!({ "model": self.client.settings.model, "messages": messages });
        if let Some(temperature) = self.chat.temperature {
            body["temperature"] = json!(temperature);
        }
        if let Some(max_tokens) = self.chat.max_tokens {
            body["max_tokens"] = json!(max_tokens);
        }
        self.client
            .post("chat/completions", &body, parse_completion)
    }

    fn answer(&mut self, prompts: &ArrayRef, metrics: &ModelMetrics) -> Result<ArrayRef> {
        let prompts = cast(prompts, &DataType::Utf8)?;
        let prompts = prompts.as_string::<i32>();
        let present: Vec<usize> = (0..prompts.len())
            .filter(|&i| prompts.is_valid(i))
            .collect();
        let started = Instant::now();
        let answers = self
            .client
            .each_concurrently(&present, |&row| self.complete(prompts.value(row)));
        metrics.record_batch(present.len(), Duration::ZERO);
        metrics
            .model_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        let mut texts: Vec<Option<String>> = vec![None; prompts.len()];
        for (&row, answer) in present.iter().zip(answers) {
            let text = answer.map_err(|e| {
                DataFusionError::from(SluiceError::new(
                    SqlState::EXTERNAL_ROUTINE_EXCEPTION,
                    format!(
                        "model error (remote model {}): {e}",
                        self.client.settings.model
                    ),
                ))
            })?;
            texts[row] = Some(text);
        }
        let mut builder = StringBuilder::new();
        for text in texts {
            builder.append_option(text);
        }
        Ok(std::sync::Arc::new(builder.finish()))
    }
}

/// Reads a `/chat/completions` answer: `choices[0].message.content`.
fn parse_completion(text: &str) -> Answer<String> {
    let answer: Value =
        serde_json::from_str(text).map_err(|e| format!("answer is not JSON: {e}"))?;
    let choice = answer
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or("answer has no 'choices'")?;
    choice
        .get("message")
        .and_then(|m| m.get("content"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| "answer's first choice has no message content".to_string())
}

impl BatchRunner for RemoteChat {
    fn run(
        &mut self,
        inputs: &[ArrayRef],
        _batch_size: usize,
        metrics: &ModelMetrics,
    ) -> Result<Vec<ArrayRef>> {
        let prompts = inputs
            .first()
            .ok_or_else(|| DataFusionError::Internal("a chat model got no prompt".into()))?;
        Ok(vec![self.answer(prompts, metrics)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_are_read_from_the_first_choice() {
        let text = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"hi"}}]}"#;
        assert_eq!(parse_completion(text).unwrap(), "hi");
        assert!(
            parse_completion(r#"{"choices":[]}"#)
                .unwrap_err()
                .contains("'choices'")
        );
        assert!(
            parse_completion(r#"{"choices":[{"message":{}}]}"#)
                .unwrap_err()
                .contains("no message content")
        );
        assert!(parse_completion("nope").unwrap_err().contains("not JSON"));
    }
}
