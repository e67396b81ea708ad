//! The object roots a server may read (`--object-root`), and the check
//! every object function makes before touching a URI: a URI outside every
//! root is a permission error, whatever its spelling (`../`, percent
//! escapes, symbolic links leading out of a root).

use std::path::{Component, Path as FsPath, PathBuf};

use datafusion::error::{DataFusionError, Result};
use sluice_types::error::{SluiceError, SqlState};
use url::Url;

/// One root objects may be read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectRoot {
    /// A local folder, canonical (symbolic links resolved).
    Local(PathBuf),
    /// `s3://bucket/prefix/`: keys of `bucket` starting with `prefix`
    /// (empty: the whole bucket).
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix, ending in `/` unless empty.
        prefix: String,
    },
}

impl ObjectRoot {
    /// Reads one `--object-root`: a local path, a `file://` URL (the folder
    /// must exist) or `s3://bucket[/prefix]`.
    pub fn parse(text: &str) -> Result<Self> {
        let config_error = |why: String| {
            DataFusionError::Configuration(format!("invalid object root {text}: {why}"))
        };
        let local = if text.contains("://") {
            let url = Url::parse(text).map_err(|e| config_error(e.to_string()))?;
            match url.scheme() {
                "s3" | "s3a" => {
                    let bucket = url
                        .host_str()
                        .filter(|b| !b.is_empty())
                        .ok_or_else(|| config_error("no bucket".into()))?;
                    let mut prefix = url.path().trim_start_matches('/').to_owned();
                    if !prefix.is_empty() && !prefix.ends_with('/') {
                        prefix.push('/');
                    }
                    return Ok(ObjectRoot::S3 {
                        bucket: bucket.to_owned(),
                        prefix,
                    });
                }
                "file" => url
                    .to_file_path()
                    .map_err(|()| config_error("not a local path".into()))?,
                other => {
                    return Err(config_error(format!(
                        "unsupported scheme {other}:// (use a local path, file:// or s3://)"
                    )));
                }
            }
        } else {
            PathBuf::from(text)
        };
        let canonical = local
            .canonicalize()
            .map_err(|e| config_error(e.to_string()))?;
        if !canonical.is_dir() {
            return Err(config_error("not a folder".into()));
        }
        Ok(ObjectRoot::Local(canonical))
    }
}

/// Where a permitted URI leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A local file, by its canonical path.
    Local(PathBuf),
    /// An S3 object.
    S3 {
        /// The bucket.
        bucket: String,
        /// The object key.
        key: String,
    },
}

/// The configured roots.
#[derive(Debug, Clone, Default)]
pub struct ObjectRoots {
    roots: Vec<ObjectRoot>,
}

impl ObjectRoots {
    /// Roots from their `--object-root` spellings.
    pub fn parse(texts: &[String]) -> Result<Self> {
        Ok(Self {
            roots: texts
                .iter()
                .map(|t| ObjectRoot::parse(t))
                .collect::<Result<_>>()?,
        })
    }

    /// The roots.
    pub fn roots(&self) -> &[ObjectRoot] {
        &self.roots
    }

    /// Checks `uri` against the roots. `must_exist` is false for listing a
    /// prefix, which need not be an existing file.
    pub fn check(&self, uri: &str) -> Result<Target> {
        let url = Url::parse(uri).map_err(|_| {
            DataFusionError::from(SluiceError::new(
                SqlState::INVALID_TEXT_REPRESENTATION,
                format!("invalid object URI {uri}: expected s3://bucket/key or file:///path"),
            ))
        })?;
        if self.roots.is_empty() {
            return Err(permission_denied(
                uri,
                "no object roots are configured (start the server with --object-root)",
            ));
        }
        match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| DataFusionError::Execution(format!("invalid file URI {uri}")))?;
                let resolved = resolve_local(&path);
                let inside = self.roots.iter().any(|root| match root {
                    ObjectRoot::Local(dir) => resolved.starts_with(dir),
                    ObjectRoot::S3 { .. } => false,
                });
                if inside {
                    Ok(Target::Local(resolved))
                } else {
                    Err(permission_denied(uri, "it is outside every object root"))
                }
            }
            "s3" | "s3a" => {
                let bucket = url.host_str().unwrap_or_default().to_owned();
                let key = percent_decode(url.path().trim_start_matches('/'));
                // object_store refuses `.`/`..` segments itself; refusing them
                // here keeps the prefix check meaningful.
                if key.split('/').any(|s| s == ".." || s == ".") {
                    return Err(permission_denied(uri, "it contains . or .. segments"));
                }
                let inside = self.roots.iter().any(|root| match root {
                    ObjectRoot::S3 { bucket: b, prefix } => *b == bucket && key.starts_with(prefix),
                    ObjectRoot::Local(_) => false,
                });
                if inside {
                    Ok(Target::S3 { bucket, key })
                } else {
                    Err(permission_denied(uri, "it is outside every object root"))
                }
            }
            other => Err(DataFusionError::from(SluiceError::new(
                SqlState::FEATURE_NOT_SUPPORTED,
                format!("unsupported object URI scheme {other}:// in {uri} (use s3:// or file://)"),
            ))),
        }
    }
}

/// The canonical form of `path`: symbolic links resolved when it exists;
/// when it does not, its deepest existing ancestor resolved and the rest
/// normalised lexically, so a missing file inside a root is "not found",
/// not "permission denied", and `..` can never climb out unseen.
fn resolve_local(path: &FsPath) -> PathBuf {
    if let Ok(canonical) = path.canonicalize() {
        return canonical;
    }
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                normal.pop();
            }
            Component::CurDir => {}
            other => normal.push(other),
        }
    }
    let mut existing = normal.as_path();
    let mut rest = Vec::new();
    while let Some(parent) = existing.parent() {
        if let Ok(canonical) = existing.canonicalize() {
            let mut resolved = canonical;
            resolved.extend(rest.iter().rev());
            return resolved;
        }
        if let Some(name) = existing.file_name() {
            rest.push(name.to_owned());
        }
        existing = parent;
    }
    normal
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// SQLSTATE 42501: outside every object root.
fn permission_denied(uri: &str, why: &str) -> DataFusionError {
    SluiceError::new(
        SqlState::INSUFFICIENT_PRIVILEGE,
        format!("permission denied for object {uri}: {why}"),
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roots_for(dir: &FsPath) -> ObjectRoots {
        ObjectRoots::parse(&[
            dir.to_string_lossy().into_owned(),
            "s3://media/images".into(),
        ])
        .unwrap()
    }

    #[test]
    fn uris_inside_roots_pass_and_others_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("cats")).unwrap();
        std::fs::write(root.join("cats/a.jpg"), b"x").unwrap();
        std::fs::write(dir.path().join("secret"), b"s").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("link")).unwrap();
        let roots = ObjectRoots::parse(&[root.to_string_lossy().into_owned()]).unwrap();
        let url = |p: &str| format!("file://{}/{p}", root.display());
        assert!(matches!(
            roots.check(&url("cats/a.jpg")),
            Ok(Target::Local(_))
        ));
        // Missing files inside a root are allowed (and then not found).
        assert!(roots.check(&url("cats/missing.jpg")).is_ok());
        for outside in [
            "file:///etc/passwd".to_owned(),
            url("../secret"),
            url("cats/../../secret"),
            url("cats/%2e%2e/%2e%2e/secret"),
            url("missing/../../secret"),
            #[cfg(unix)]
            url("link"),
        ] {
            let err = roots.check(&outside).unwrap_err().to_string();
            assert!(err.contains("permission denied"), "{outside}: {err}");
        }
    }

    #[test]
    fn s3_roots_check_bucket_and_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let roots = roots_for(dir.path());
        assert_eq!(
            roots.check("s3://media/images/cat.jpg").unwrap(),
            Target::S3 {
                bucket: "media".into(),
                key: "images/cat.jpg".into()
            }
        );
        for outside in [
            "s3://media/imagesX/cat.jpg",
            "s3://other/images/cat.jpg",
            "s3://media/images/../secret",
            "s3://media/images/%2e%2e/secret",
        ] {
            let err = roots.check(outside).unwrap_err().to_string();
            assert!(err.contains("permission denied"), "{outside}: {err}");
        }
        assert!(roots.check("http://example.com/a").is_err());
        assert!(roots.check("not a uri").is_err());
    }

    #[test]
    fn without_roots_everything_is_refused() {
        let err = ObjectRoots::default()
            .check("file:///tmp/a")
            .unwrap_err()
            .to_string();
        assert!(err.contains("--object-root"), "{err}");
    }
}
