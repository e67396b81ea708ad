//! Remote models behind an OpenAI-compatible HTTP API (`'provider' =
//! 'openai'`): embeddings (`EMBED`) and chat completions (`ML_PREDICT`).
//! They run in the same model worker and batching queue as local models,
//! so the same backpressure applies; on top, requests are bounded by
//! `max_concurrency`, time out, and are retried with backoff
//! ([`client`]).
//!
//! The API key is read from the environment variable named by
//! `'api_key_env'` (default `OPENAI_API_KEY`) when the model is loaded, so
//! no secret is stored in the catalog.

mod chat;
mod client;
mod embeddings;

pub use chat::RemoteChat;
pub use embeddings::RemoteEmbedder;
