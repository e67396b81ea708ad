//! A connector's `'path'`: a local folder or an object-store prefix,
//! opened through DataFusion's object-store registry (so `s3://` buckets
//! are configured once, as for external tables).

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::SessionContext;
use object_store::path::Path;

use super::source::generator::invalid_option;

/// The store, the prefix and the base URI (`file://`, `s3://bucket`) of a
/// `'path'` option: `file:///…`, a local path, or `s3://bucket/prefix`.
pub fn open_location(
    ctx: &SessionContext,
    path: &str,
) -> Result<(Arc<dyn object_store::ObjectStore>, Path, String)> {
    let url = if path.contains("://") {
        url::Url::parse(path)
            .map_err(|e| invalid_option(&format!("path '{path}' is not a URL: {e}")))?
    } else {
        let absolute = std::path::absolute(path)
            .map_err(|e| invalid_option(&format!("path '{path}': {e}")))?;
        url::Url::from_directory_path(&absolute)
            .map_err(|()| invalid_option(&format!("path '{path}' is not a folder")))?
    };
    if url.scheme() == "file" {
        // The local store writes under existing folders only.
        std::fs::create_dir_all(url.path())
            .map_err(|e| invalid_option(&format!("cannot create folder {}: {e}", url.path())))?;
    }
    crate::storage::register_store_for(ctx, url.as_str())?;
    let store_url = ObjectStoreUrl::parse(format!(
        "{}://{}",
        url.scheme(),
        url.host_str().unwrap_or("")
    ))?;
    let store = ctx.runtime_env().object_store(&store_url)?;
    let prefix = Path::from_url_path(url.path())
        .map_err(|e| invalid_option(&format!("path '{path}': {e}")))?;
    let base = format!("{}://{}", url.scheme(), url.host_str().unwrap_or(""));
    Ok((store, prefix, base))
}
