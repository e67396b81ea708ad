//! The `object_store` stores objects are read through: one local file
//! system, and one S3 client per bucket, built from the environment the
//! way data directories are ([`s3_store`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use datafusion::error::{DataFusionError, Result};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, RetryConfig};
use url::Url;

use super::roots::Target;

/// An S3 store for the bucket of `url`, configured from the usual `AWS_*`
/// environment variables (`AWS_ENDPOINT_URL` for S3-compatible stores).
/// Transient failures are retried (3 times, within 15 s); an unreachable
/// store fails within seconds rather than after object_store's default
/// three minutes: it is an error the user should see, not a hang.
pub fn s3_store(url: &Url) -> Result<Arc<dyn ObjectStore>> {
    let mut builder = AmazonS3Builder::from_env()
        .with_url(url.as_str())
        .with_retry(RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: 3,
            retry_timeout: Duration::from_secs(15),
        })
        .with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout),
            "5s",
        );
    // A plain-http endpoint is a local S3-compatible server (MinIO, moto):
    // allow it without a second variable.
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .or_else(|_| std::env::var("AWS_ENDPOINT"))
        .unwrap_or_default();
    if endpoint.starts_with("http://") && std::env::var("AWS_ALLOW_HTTP").is_err() {
        builder = builder.with_allow_http(true);
    }
    let store = builder.build().map_err(|e| {
        DataFusionError::Configuration(format!("cannot open object store {url}: {e}"))
    })?;
    Ok(Arc::new(store))
}

/// Stores by target, built once and shared by every query.
#[derive(Debug, Default)]
pub struct Stores {
    local: Mutex<Option<Arc<dyn ObjectStore>>>,
    buckets: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Stores {
    /// The store holding `target` and the object's path in it.
    pub fn open(&self, target: &Target) -> Result<(Arc<dyn ObjectStore>, Path)> {
        match target {
            Target::Local(path) => {
                let mut local = self.local.lock().map_err(poisoned)?;
                let store =
                    Arc::clone(local.get_or_insert_with(|| Arc::new(LocalFileSystem::new())));
                let location = Path::from_absolute_path(path).map_err(|e| {
                    DataFusionError::Execution(format!("invalid path {}: {e}", path.display()))
                })?;
                Ok((store, location))
            }
            Target::S3 { bucket, key } => {
                let mut buckets = self.buckets.lock().map_err(poisoned)?;
                let store = match buckets.get(bucket) {
                    Some(store) => Arc::clone(store),
                    None => {
                        let url = Url::parse(&format!("s3://{bucket}")).map_err(|e| {
                            DataFusionError::Execution(format!("invalid bucket {bucket}: {e}"))
                        })?;
                        let store = s3_store(&url)?;
                        buckets.insert(bucket.clone(), Arc::clone(&store));
                        store
                    }
                };
                let location = Path::parse(key).map_err(|e| {
                    DataFusionError::Execution(format!("invalid object key {key}: {e}"))
                })?;
                Ok((store, location))
            }
        }
    }
}

fn poisoned<T>(_: T) -> DataFusionError {
    DataFusionError::Internal("object store cache poisoned".into())
}
