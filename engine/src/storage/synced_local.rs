//! A local file-system store whose writes reach the disk before they are
//! acknowledged.
//!
//! `object_store`'s `LocalFileSystem` writes a temporary file and renames
//! (or hard-links) it into place, but never calls fsync: a write it reports
//! done survives the process dying, not the machine losing power. A Sluice
//! commit is acknowledged to the client, so every put here syncs the file
//! and then its folder (which holds the new name), as Postgres flushes its
//! WAL at commit. No crate offers this on top of `object_store`, hence this
//! small wrapper: everything else is delegated unchanged.
//!
//! The temporary file of a put cut short by a crash (`<name>#<digits>`)
//! stays on disk, and `LocalFileSystem` hides such names from listings, so
//! no sweep through the store can see it: [`remove_abandoned_uploads`]
//! deletes them with a walk of the folder when the data directory opens.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// Deletes the temporary files that puts interrupted by a crash left under
/// `root` (`LocalFileSystem` names them `<name>#<digits>`); returns how
/// many. Called before the store is opened, so no put of this process can
/// be in flight; one of an older process still running can only fail.
pub fn remove_abandoned_uploads(root: &std::path::Path) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in walkdir::WalkDir::new(root) {
        let entry = entry.map_err(std::io::Error::other)?;
        let is_upload = entry.file_type().is_file()
            && entry
                .file_name()
                .to_str()
                .and_then(|name| name.rsplit_once('#'))
                .is_some_and(|(_, suffix)| {
                    !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_digit())
                });
        if is_upload {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// [`LocalFileSystem`] with an fsync of each written file and its folder.
#[derive(Debug)]
pub struct SyncedLocalFileSystem {
    inner: Arc<LocalFileSystem>,
}

impl SyncedLocalFileSystem {
    /// Wraps `inner`.
    pub fn new(inner: LocalFileSystem) -> Self {
        Self {
            inner: Arc::new(inner),
        }
    }

    async fn sync(&self, location: &Path) -> Result<()> {
        let file = self.inner.path_to_filesystem(location)?;
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            if let Some(folder) = file.parent() {
                std::fs::File::open(folder)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(|e| object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        })?
        .map_err(|e| object_store::Error::Generic {
            store: "LocalFileSystem",
            source: Box::new(e),
        })
    }
}

impl fmt::Display for SyncedLocalFileSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Synced{}", self.inner)
    }
}

#[async_trait]
impl ObjectStore for SyncedLocalFileSystem {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        let result = self.inner.put_opts(location, payload, opts).await?;
        self.sync(location).await?;
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        // Multipart uploads are DataFusion's (COPY … TO): its own files,
        // not Sluice's commits.
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.inner.copy_opts(from, to, options).await?;
        self.sync(to).await
    }
}

#[cfg(test)]
mod tests {
    use super::remove_abandoned_uploads;

    #[test]
    fn removes_only_interrupted_upload_files() -> std::io::Result<()> {
        let root = std::env::temp_dir().join(format!("sluice-uploads-{}", uuid::Uuid::new_v4()));
        let nested = root.join("tables/s/t/indexes");
        std::fs::create_dir_all(&nested)?;
        let kept = ["graph.usearch", "notes#draft", "plain#"];
        for name in kept {
            std::fs::write(nested.join(name), b"x")?;
        }
        std::fs::write(nested.join("graph.usearch#1"), b"x")?;
        std::fs::write(root.join("m.json#27"), b"x")?;

        assert_eq!(remove_abandoned_uploads(&root)?, 2);
        let mut left: Vec<_> = std::fs::read_dir(&nested)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect::<Result<_, _>>()?;
        left.sort();
        assert_eq!(left, ["graph.usearch", "notes#draft", "plain#"]);
        assert!(!root.join("m.json#27").exists());
        std::fs::remove_dir_all(&root)
    }
}
