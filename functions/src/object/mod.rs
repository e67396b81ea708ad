//! Objects in object storage as SQL values: `object_ref(uri)`,
//! `read_bytes`/`read_image`/`read_audio(ref)` and the table function
//! `list_objects(prefix[, pattern])`, the start of a multimodal pipeline:
//!
//! ```sql
//! SELECT image_to_tensor(read_image(ref), 224, 224)
//! FROM list_objects('s3://media/cats/', '*.jpg');
//! ```
//!
//! Every URI is checked against the server's `--object-root`s first
//! ([`roots`]); bytes are read only by the functions that need them, with a
//! bounded number of reads in flight per call, through `object_store`
//! (whose S3 client retries transient failures), and a reference that
//! records an etag or version reads exactly that object or fails.

pub mod functions;
pub mod list;
pub mod roots;
pub mod stores;

use std::sync::Arc;

use bytes::Bytes;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use futures::{StreamExt, TryStreamExt};
use object_store::{GetOptions, ObjectMeta, ObjectStoreExt};
use sluice_types::error::{SluiceError, SqlState};
use sluice_types::object_ref::ObjectRef;

pub use roots::{ObjectRoot, ObjectRoots};
pub use stores::s3_store;

/// Reads at most this many objects at once per function call.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// The largest object a function reads into memory.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 256 * 1024 * 1024;

/// Object access for one server: its roots, its stores, its limits.
#[derive(Debug)]
pub struct ObjectAccess {
    roots: ObjectRoots,
    stores: stores::Stores,
    /// Reads in flight per call.
    pub concurrency: usize,
    /// Objects larger than this are refused rather than read.
    pub max_object_bytes: u64,
}

impl ObjectAccess {
    /// Access confined to `roots`.
    pub fn new(roots: ObjectRoots) -> Self {
        Self {
            roots,
            stores: stores::Stores::default(),
            concurrency: DEFAULT_CONCURRENCY,
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
        }
    }

    /// The configured roots.
    pub fn roots(&self) -> &ObjectRoots {
        &self.roots
    }

    /// The store holding a checked target, and the target's path in it.
    pub fn open(
        &self,
        target: &roots::Target,
    ) -> Result<(Arc<dyn object_store::ObjectStore>, object_store::path::Path)> {
        self.stores.open(target)
    }

    /// Looks up `uri`'s metadata (a HEAD request).
    pub async fn head(&self, uri: &str) -> Result<ObjectRef> {
        let target = self.roots.check(uri)?;
        let (store, location) = self.stores.open(&target)?;
        let meta = store
            .head(&location)
            .await
            .map_err(|e| object_error(uri, e))?;
        Ok(object_ref_of(uri.to_owned(), &meta))
    }

    /// Reads the bytes `r` refers to; a recorded version or etag must
    /// still match.
    pub async fn read(&self, r: &ObjectRef) -> Result<Bytes> {
        let target = self.roots.check(&r.uri)?;
        let (store, location) = self.stores.open(&target)?;
        if let Some(size) = r.size
            && u64::try_from(size).unwrap_or(0) > self.max_object_bytes
        {
            return Err(too_large(&r.uri, self.max_object_bytes));
        }
        let options = GetOptions {
            version: r.version.clone(),
            // A version pins the object already; an etag alone must match.
            if_match: if r.version.is_none() {
                r.etag.clone()
            } else {
                None
            },
            ..GetOptions::default()
        };
        let result = store
            .get_opts(&location, options)
            .await
            .map_err(|e| object_error(&r.uri, e))?;
        if result.meta.size > self.max_object_bytes {
            return Err(too_large(&r.uri, self.max_object_bytes));
        }
        result.bytes().await.map_err(|e| object_error(&r.uri, e))
    }

    /// Reads every reference (`None` stays `None`), at most
    /// [`Self::concurrency`] at a time, in order.
    pub async fn read_all(&self, refs: Vec<Option<ObjectRef>>) -> Result<Vec<Option<Bytes>>> {
        futures::stream::iter(refs)
            .map(|r| async move {
                match r {
                    Some(r) => self.read(&r).await.map(Some),
                    None => Ok(None),
                }
            })
            .buffered(self.concurrency.max(1))
            .try_collect()
            .await
    }
}

/// A reference from a store's metadata; the content type is guessed from
/// the name (S3's HEAD would say it, but object_store does not expose it).
pub fn object_ref_of(uri: String, meta: &ObjectMeta) -> ObjectRef {
    let content_type = mime_guess::from_path(meta.location.as_ref())
        .first()
        .map(|m| m.essence_str().to_owned());
    ObjectRef {
        uri,
        size: i64::try_from(meta.size).ok(),
        etag: meta.e_tag.clone(),
        version: meta.version.clone(),
        content_type,
        last_modified: Some(meta.last_modified.timestamp_micros()),
    }
}

fn too_large(uri: &str, limit: u64) -> DataFusionError {
    SluiceError::new(
        SqlState::PROGRAM_LIMIT_EXCEEDED,
        format!("object {uri} is larger than the {limit}-byte limit on objects read into memory"),
    )
    .into()
}

/// object_store's errors, as messages naming the object.
fn object_error(uri: &str, error: object_store::Error) -> DataFusionError {
    match error {
        object_store::Error::NotFound { .. } => {
            SluiceError::new(SqlState::UNDEFINED_FILE, format!("object not found: {uri}")).into()
        }
        object_store::Error::Precondition { .. } => SluiceError::new(
            SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!(
                "object {uri} changed since the reference was made (its etag no longer matches)"
            ),
        )
        .into(),
        other => DataFusionError::Execution(format!("cannot read object {uri}: {other}")),
    }
}

/// Registers the object functions over `access`.
pub(crate) fn register(ctx: &SessionContext, access: &Arc<ObjectAccess>) {
    for udf in functions::all(access) {
        ctx.register_udf(udf);
    }
    ctx.register_udtf(
        "list_objects",
        Arc::new(list::ListObjects::new(Arc::clone(access))),
    );
}
