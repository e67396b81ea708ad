//! Where a data directory lives: a local folder or an object-store URL
//! (`s3://bucket/prefix`), opened as an `object_store` store plus a root
//! path inside it. External tables and `COPY … TO` on `s3://` locations use
//! stores built the same way.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::SessionContext;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use sluice_functions::object::s3_store;
use url::Url;

use super::synced_local::{SyncedLocalFileSystem, remove_abandoned_uploads};

/// A data directory: a local folder, or a prefix in an object store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataLocation {
    /// A folder on the local file system.
    Local(PathBuf),
    /// `s3://bucket/prefix`: credentials, region and endpoint come from the
    /// usual `AWS_*` environment variables (`AWS_ENDPOINT_URL` for
    /// S3-compatible stores).
    S3(Url),
}

impl DataLocation {
    /// Reads `--data-dir`: a URL with a scheme (`s3://…`, `file://…`) or a
    /// local path.
    pub fn parse(text: &str) -> Result<Self> {
        if !text.contains("://") {
            return Ok(Self::Local(PathBuf::from(text)));
        }
        let url = Url::parse(text).map_err(|e| {
            DataFusionError::Configuration(format!("invalid data directory URL {text}: {e}"))
        })?;
        match url.scheme() {
            "s3" | "s3a" => Ok(Self::S3(url)),
            "file" => url
                .to_file_path()
                .map(Self::Local)
                .map_err(|()| DataFusionError::Configuration(format!("invalid file URL {text}"))),
            other => Err(DataFusionError::Configuration(format!(
                "unsupported data directory scheme {other}:// (use a local path or s3://bucket/prefix)"
            ))),
        }
    }

    /// Opens the store and the root path of the data directory in it,
    /// creating a local folder if it does not exist.
    pub fn open(&self) -> Result<(Arc<dyn ObjectStore>, Path)> {
        match self {
            Self::Local(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| {
                    DataFusionError::Configuration(format!(
                        "cannot create data directory {}: {e}",
                        dir.display()
                    ))
                })?;
                let removed = remove_abandoned_uploads(dir).map_err(|e| {
                    DataFusionError::Configuration(format!(
                        "cannot clean data directory {}: {e}",
                        dir.display()
                    ))
                })?;
                if removed > 0 {
                    log::info!("removed {removed} file(s) left by writes a crash interrupted");
                }
                let local = LocalFileSystem::new_with_prefix(dir).map_err(|e| {
                    DataFusionError::Configuration(format!(
                        "cannot open data directory {}: {e}",
                        dir.display()
                    ))
                })?;
                Ok((Arc::new(SyncedLocalFileSystem::new(local)), Path::default()))
            }
            Self::S3(url) => {
                let store = s3_store(url)?;
                let root = Path::from(url.path().trim_matches('/'));
                Ok((store, root))
            }
        }
    }
}

impl fmt::Display for DataLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(dir) => write!(f, "{}", dir.display()),
            Self::S3(url) => write!(f, "{url}"),
        }
    }
}

/// Makes `location` readable by DataFusion (external tables, `COPY … TO`):
/// registers an S3 store for its bucket, built from the environment, unless
/// one is registered already. Local paths need nothing.
pub fn register_store_for(ctx: &SessionContext, location: &str) -> Result<()> {
    let Ok(url) = Url::parse(location) else {
        return Ok(());
    };
    if !matches!(url.scheme(), "s3" | "s3a") {
        return Ok(());
    }
    let Some(bucket) = url.host_str() else {
        return Err(DataFusionError::Plan(format!(
            "location {location} names no bucket"
        )));
    };
    let bucket_url = ObjectStoreUrl::parse(format!("{}://{bucket}", url.scheme()))?;
    if ctx.runtime_env().object_store(&bucket_url).is_ok() {
        return Ok(());
    }
    let store = s3_store(bucket_url.as_ref())?;
    ctx.register_object_store(bucket_url.as_ref(), store);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_urls() {
        assert_eq!(
            DataLocation::parse("./data").unwrap(),
            DataLocation::Local(PathBuf::from("./data"))
        );
        assert_eq!(
            DataLocation::parse("file:///tmp/x").unwrap(),
            DataLocation::Local(PathBuf::from("/tmp/x"))
        );
        assert!(matches!(
            DataLocation::parse("s3://bucket/prefix").unwrap(),
            DataLocation::S3(_)
        ));
        let err = DataLocation::parse("gs://bucket").unwrap_err();
        assert!(
            err.to_string()
                .contains("unsupported data directory scheme"),
            "{err}"
        );
    }
}
