//! S3 in a folder: objects under `s3/<bucket>/<key>`, their metadata beside them.

use super::{io_error, safe_relative};
use async_trait::async_trait;
use bytes::Bytes;
use mailroom::ports::{Object, ObjectMeta, ObjectStore, PortError, PutOutcome};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// S3 in a folder.
#[derive(Debug, Clone)]
pub struct LocalObjectStore {
    root: PathBuf,
}

impl LocalObjectStore {
    pub fn new(state: &Path) -> Self {
        LocalObjectStore {
            root: state.to_path_buf(),
        }
    }

    pub fn path_of(&self, bucket: &str, key: &str) -> Result<PathBuf, PortError> {
        let bucket = safe_relative("s3", bucket)?;
        Ok(self
            .root
            .join("s3")
            .join(bucket)
            .join(safe_relative("s3", key)?))
    }

    /// The user metadata saved beside an object (none for objects written before it was kept).
    async fn user_metadata(
        &self,
        bucket: &str,
        key: &str,
    ) -> Result<HashMap<String, String>, PortError> {
        let path = self.meta_path(bucket, key)?;
        let text = match tokio::fs::read(&path).await {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashMap::new()),
            Err(e) => return Err(io_error("HeadObject", &path, &e)),
        };
        let saved: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
            PortError::new(
                mailroom::ports::ErrorKind::Permanent,
                "HeadObject",
                format!("{}: {e}", path.display()),
            )
        })?;
        Ok(saved
            .get("metadata")
            .and_then(|m| serde_json::from_value(m.clone()).ok())
            .unwrap_or_default())
    }

    fn meta_path(&self, bucket: &str, key: &str) -> Result<PathBuf, PortError> {
        let bucket = safe_relative("s3", bucket)?;
        let mut p = self
            .root
            .join("s3-meta")
            .join(bucket)
            .join(safe_relative("s3", key)?)
            .into_os_string();
        p.push(".json");
        Ok(PathBuf::from(p))
    }
}

#[async_trait]
impl ObjectStore for LocalObjectStore {
    async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, PortError> {
        let path = self.path_of(bucket, key)?;
        tokio::fs::read(&path)
            .await
            .map(Bytes::from)
            .map_err(|e| io_error("GetObject", &path, &e))
    }

    async fn get_object(&self, bucket: &str, key: &str) -> Result<Object, PortError> {
        let body = self.get(bucket, key).await?;
        Ok(Object {
            body,
            metadata: self.user_metadata(bucket, key).await?,
        })
    }

    async fn size(&self, bucket: &str, key: &str) -> Result<u64, PortError> {
        let path = self.path_of(bucket, key)?;
        let stored = tokio::fs::metadata(&path)
            .await
            .map(|m| m.len())
            .map_err(|e| io_error("HeadObject", &path, &e))?;
        // As S3Store: an encrypted message is measured by its plaintext.
        let plaintext = self
            .user_metadata(bucket, key)
            .await?
            .get(mailroom::envelope::UNENCRYPTED_LENGTH)
            .and_then(|v| v.trim().parse::<u64>().ok());
        Ok(plaintext.unwrap_or(stored))
    }

    async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
    ) -> Result<PutOutcome, PortError> {
        let path = self.path_of(bucket, key)?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_error("PutObject", parent, &e))?;
        }
        let mut f = match tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Ok(PutOutcome::AlreadyExists);
            }
            Err(e) => return Err(io_error("PutObject", &path, &e)),
        };
        let written = async {
            f.write_all(&body).await?;
            f.flush().await
        }
        .await;
        if let Err(e) = written {
            // A half-written file would read as a complete object: remove it so a retry rewrites.
            let _ = tokio::fs::remove_file(&path).await;
            return Err(io_error("PutObject", &path, &e));
        }
        let meta_path = self.meta_path(bucket, key)?;
        if let Some(parent) = meta_path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_error("PutObject", parent, &e))?;
        }
        let json = serde_json::json!({
            "contentType": meta.content_type,
            "contentDisposition": meta.content_disposition,
            "metadata": meta.metadata,
            "size": body.len(),
        });
        tokio::fs::write(&meta_path, json.to_string())
            .await
            .map_err(|e| io_error("PutObject", &meta_path, &e))?;
        Ok(PutOutcome::Created)
    }

    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        _expires_in: Duration,
    ) -> Result<String, PortError> {
        let path = self.path_of(bucket, key)?;
        let abs = std::path::absolute(&path).unwrap_or(path);
        Ok(format!("file://{}", abs.display()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use mailroom::ports::ErrorKind;

    #[tokio::test]
    async fn object_store_is_conditional_and_keeps_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalObjectStore::new(dir.path());
        let meta = ObjectMeta::new("message/rfc822");
        let out = s
            .put_if_absent("b", "raw/abc", Bytes::from_static(b"one"), &meta)
            .await
            .unwrap();
        assert_eq!(out, PutOutcome::Created);
        let again = s
            .put_if_absent("b", "raw/abc", Bytes::from_static(b"two"), &meta)
            .await
            .unwrap();
        assert_eq!(again, PutOutcome::AlreadyExists);
        assert_eq!(s.get("b", "raw/abc").await.unwrap(), "one");
        assert_eq!(s.size("b", "raw/abc").await.unwrap(), 3);
        let m = std::fs::read_to_string(dir.path().join("s3-meta/b/raw/abc.json")).unwrap();
        assert!(m.contains("message/rfc822"));
        let missing = s.get("b", "raw/nope").await.unwrap_err();
        assert_eq!(missing.kind, ErrorKind::NotFound);
        for bad in ["../x", "a/../../x", "/abs", "a//b", ""] {
            let e = s.get("b", bad).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Permanent, "{bad}");
        }
        assert!(
            s.presign_get("b", "raw/abc", Duration::from_secs(1))
                .await
                .unwrap()
                .starts_with("file://")
        );
    }
}
