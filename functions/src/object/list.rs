//! `list_objects(prefix[, pattern])`: the objects under a prefix, one row
//! each, streamed as the store lists them (a million-object prefix is never
//! held in memory). `pattern` is a glob matched against the part of the key
//! after the prefix (`*.jpg` stays in the prefix's folder, `**/*.jpg`
//! descends).
//!
//! Columns: `ref` (`OBJECT_REF`), and its `uri`, `size` and `last_modified`
//! as plain columns to filter and sort on.

use std::sync::Arc;

use datafusion::arrow::array::TimestampMicrosecondArray;
use datafusion::arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::catalog::{TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::StreamExt;
use globset::{GlobBuilder, GlobMatcher};
use object_store::path::Path;
use sluice_types::SluiceType;
use sluice_types::object_ref::{ObjectRef, object_ref_array};

use super::roots::Target;
use super::{ObjectAccess, object_ref_of};

/// Rows per batch of listed objects. Small, because each row is heavy work
/// downstream (a read, a decode): DataFusion spreads whole batches over its
/// partitions, so a folder of a few hundred images in one batch would be
/// decoded on one core.
const BATCH_ROWS: usize = 64;

/// The table function.
#[derive(Debug)]
pub struct ListObjects {
    access: Arc<ObjectAccess>,
}

impl ListObjects {
    /// `list_objects` over `access`.
    pub fn new(access: Arc<ObjectAccess>) -> Self {
        Self { access }
    }
}

impl TableFunctionImpl for ListObjects {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let texts = args
            .exprs()
            .iter()
            .map(literal_text)
            .collect::<Result<Vec<_>>>()?;
        let (prefix, pattern) = match texts.as_slice() {
            [prefix] => (prefix.clone(), None),
            [prefix, pattern] => (prefix.clone(), Some(pattern.clone())),
            _ => return Err(usage()),
        };
        let matcher = pattern
            .map(|p| {
                GlobBuilder::new(&p)
                    .literal_separator(true)
                    .build()
                    .map(|g| g.compile_matcher())
                    .map_err(|e| {
                        DataFusionError::Plan(format!("invalid list_objects pattern {p}: {e}"))
                    })
            })
            .transpose()?;
        // Checked now, so a prefix outside the roots fails at planning.
        let target = self.access.roots().check(&prefix)?;
        let listing = Listing {
            access: Arc::clone(&self.access),
            target,
            matcher,
            schema: schema(),
        };
        Ok(Arc::new(StreamingTable::try_new(
            schema(),
            vec![Arc::new(listing)],
        )?))
    }
}

fn usage() -> DataFusionError {
    DataFusionError::Plan(
        "list_objects takes a prefix and an optional glob: list_objects('s3://bucket/prefix/', '*.jpg')"
            .into(),
    )
}

fn literal_text(expr: &Expr) -> Result<String> {
    match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
            _,
        ) => Ok(s.clone()),
        _ => Err(usage()),
    }
}

/// The result columns.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        SluiceType::ObjectRef.field("ref", false),
        Field::new("uri", DataType::Utf8, false),
        Field::new("size", DataType::Int64, true),
        Field::new(
            "last_modified",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
    ]))
}

/// One listing, run when the scan starts.
#[derive(Debug)]
struct Listing {
    access: Arc<ObjectAccess>,
    target: Target,
    matcher: Option<GlobMatcher>,
    schema: SchemaRef,
}

impl PartitionStream for Listing {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let schema = Arc::clone(&self.schema);
        let opened = self.access.open(&self.target);
        let (store, location) = match opened {
            Ok(opened) => opened,
            Err(e) => {
                return Box::pin(RecordBatchStreamAdapter::new(
                    schema,
                    futures::stream::once(async move { Err(e) }),
                ));
            }
        };
        let base = match uri_base(&self.target) {
            Ok(base) => base,
            Err(e) => {
                return Box::pin(RecordBatchStreamAdapter::new(
                    schema,
                    futures::stream::once(async move { Err(e) }),
                ));
            }
        };
        let list_root = location.clone();
        let matcher = self.matcher.clone();
        let access = Arc::clone(&self.access);
        let batch_schema = Arc::clone(&schema);
        let listed = store
            .list(Some(&location))
            .filter_map(move |entry| {
                let item = match entry {
                    Ok(meta) => {
                        let segments = relative_segments(&list_root, &meta.location);
                        let wanted = matcher
                            .as_ref()
                            .is_none_or(|m| m.is_match(segments.join("/")));
                        let uri = object_uri(&base, &segments);
                        // A symbolic link inside a root may lead out of it.
                        (wanted && access.roots().check(&uri).is_ok())
                            .then(|| Ok(object_ref_of(uri, &meta)))
                    }
                    Err(object_store::Error::NotFound { .. }) => None,
                    Err(e) => Some(Err(DataFusionError::Execution(format!(
                        "cannot list objects: {e}"
                    )))),
                };
                futures::future::ready(item)
            })
            .chunks(BATCH_ROWS)
            .map(move |chunk| {
                let refs = chunk.into_iter().collect::<Result<Vec<ObjectRef>>>()?;
                batch(&batch_schema, refs)
            });
        Box::pin(RecordBatchStreamAdapter::new(schema, listed))
    }
}

/// The URI of the folder listed, to which listed keys (relative to it) are
/// appended: `s3://b/cats/` for `s3://b/cats` or `s3://b/cats/`; local
/// folders by their canonical path.
fn uri_base(target: &Target) -> Result<url::Url> {
    let invalid = |e: String| DataFusionError::Execution(format!("cannot list objects: {e}"));
    match target {
        Target::Local(path) => {
            url::Url::from_directory_path(path).map_err(|()| invalid(path.display().to_string()))
        }
        Target::S3 { bucket, key } => {
            let mut url =
                url::Url::parse(&format!("s3://{bucket}/")).map_err(|e| invalid(e.to_string()))?;
            if let Ok(mut segments) = url.path_segments_mut() {
                segments.pop_if_empty();
                segments.extend(key.split('/').filter(|s| !s.is_empty()));
                segments.push("");
            }
            Ok(url)
        }
    }
}

/// The names below the listed folder, as the store holds them.
fn relative_segments(root: &Path, location: &Path) -> Vec<String> {
    match location.prefix_match(root) {
        Some(parts) => parts.map(|p| p.as_ref().to_owned()).collect(),
        None => location.parts().map(|p| p.as_ref().to_owned()).collect(),
    }
}

/// The URI of a listed object: the folder's URI with the names appended,
/// each percent-encoded as a URI path segment (so `#`, `?` and `%` in names
/// survive the trip back through `read_bytes`).
fn object_uri(base: &url::Url, segments: &[String]) -> String {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty();
        path.extend(segments);
    }
    url.into()
}

fn batch(schema: &SchemaRef, refs: Vec<ObjectRef>) -> Result<RecordBatch> {
    let uris = StringArray::from_iter_values(refs.iter().map(|r| r.uri.as_str()));
    let sizes = Int64Array::from_iter(refs.iter().map(|r| r.size));
    let modified = TimestampMicrosecondArray::from_iter(refs.iter().map(|r| r.last_modified))
        .with_timezone("UTC");
    let wrapped: Vec<Option<ObjectRef>> = refs.into_iter().map(Some).collect();
    let columns: Vec<ArrayRef> = vec![
        object_ref_array(&wrapped)?,
        Arc::new(uris),
        Arc::new(sizes),
        Arc::new(modified),
    ];
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}
