//! The HTTP side of remote models: JSON requests to an OpenAI-compatible
//! API with a timeout each, retries with exponential backoff on transport
//! errors, 429 and 5xx answers, and at most `max_concurrency` requests in
//! flight. It runs on the model's worker thread (never on the async
//! runtime), so a blocking client is the simple, right tool.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::model::spec::RemoteSettings;

/// The answer to one request, or why it failed (after retries).
pub type Answer<T> = std::result::Result<T, String>;

/// A connection to one endpoint.
pub struct RemoteClient {
    agent: ureq::Agent,
    base: String,
    api_key: Option<String>,
    /// The endpoint's settings (model name, limits).
    pub settings: RemoteSettings,
}

impl RemoteClient {
    /// A client for `settings`; the API key is read from the environment
    /// now, so no secret is stored in the catalog.
    pub fn new(settings: RemoteSettings) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(settings.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let api_key = std::env::var(&settings.api_key_env).ok();
        Self {
            agent,
            base: settings.endpoint.trim_end_matches('/').to_string(),
            api_key,
            settings,
        }
    }

    /// POSTs `body` to `path` (under the endpoint) and reads the JSON
    /// answer with `read`, retrying transient failures.
    pub fn post<T>(&self, path: &str, body: &Value, read: impl Fn(&str) -> Answer<T>) -> Answer<T> {
        let url = format!("{}/{path}", self.base);
        let mut attempt = 0;
        loop {
            match self.send(&url, body, &read) {
                Ok(answer) => return Ok(answer),
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
    fn send<T>(
        &self,
        url: &str,
        body: &Value,
        read: impl Fn(&str) -> Answer<T>,
    ) -> std::result::Result<T, (String, bool)> {
        let mut request = self.agent.post(url);
        if let Some(key) = &self.api_key {
            request = request.header("Authorization", format!("Bearer {key}"));
        }
        let mut response = request
            .send_json(body)
            .map_err(|e| (format!("request to {url} failed: {e}"), true))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| (format!("reading the answer of {url} failed: {e}"), true))?;
        if status != 200 {
            let retryable = status == 429 || status >= 500;
            let detail: String = text.chars().take(300).collect();
            return Err((format!("{url} answered {status}: {detail}"), retryable));
        }
        read(&text).map_err(|e| (e, false))
    }

    /// Runs `request` on every item, at most `max_concurrency` at a time;
    /// answers in item order.
    pub fn each_concurrently<I: Sync, T: Send>(
        &self,
        items: &[I],
        request: impl Fn(&I) -> Answer<T> + Sync,
    ) -> Vec<Answer<T>> {
        let next = AtomicUsize::new(0);
        let workers = self.settings.max_concurrency.min(items.len()).max(1);
        let answers: Vec<Vec<(usize, Answer<T>)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..workers)
                .map(|_| {
                    scope.spawn(|| {
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(item) = items.get(i) else { break };
                            mine.push((i, request(item)));
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
        let mut results: Vec<Option<Answer<T>>> = (0..items.len()).map(|_| None).collect();
        for (i, answer) in answers.into_iter().flatten() {
            results[i] = Some(answer);
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err("request was not sent".into())))
            .collect()
    }
}
