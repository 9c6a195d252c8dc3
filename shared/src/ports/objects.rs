//! Object storage (S3): reading the raw message SES wrote, writing the browsable layout.

use super::PortError;
use async_trait::async_trait;
use bytes::Bytes;
use std::collections::HashMap;
use std::time::Duration;

/// An object with its user metadata (names without S3's `x-amz-meta-` prefix): an encrypted
/// message's envelope lives there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Object {
    pub body: Bytes,
    pub metadata: HashMap<String, String>,
}

/// Headers stored with an object and served back on GET.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectMeta {
    pub content_type: String,
    pub content_disposition: Option<String>,
    /// User metadata (`x-amz-meta-*`): what SES's S3 action writes with an encrypted message.
    pub metadata: HashMap<String, String>,
}

impl ObjectMeta {
    pub fn new(content_type: impl Into<String>) -> Self {
        ObjectMeta {
            content_type: content_type.into(),
            content_disposition: None,
            metadata: HashMap::new(),
        }
    }

    pub fn with_disposition(mut self, disposition: impl Into<String>) -> Self {
        self.content_disposition = Some(disposition.into());
        self
    }

    pub fn with_metadata(mut self, metadata: HashMap<String, String>) -> Self {
        self.metadata = metadata;
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created,
    /// An object was already at the key, so nothing was written (a retried invocation).
    AlreadyExists,
}

#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// The whole object. `ErrorKind::NotFound` when there is none.
    async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, PortError>;

    /// The whole object and its user metadata. The default is for stores that keep none.
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Object, PortError> {
        Ok(Object {
            body: self.get(bucket, key).await?,
            metadata: HashMap::new(),
        })
    }

    /// The message's size in bytes: for an object SES encrypted, the plaintext's length its
    /// metadata records. The default reads the object; adapters override it with a
    /// metadata-only request so a size check never pulls 40 MB through a 128 MB function.
    async fn size(&self, bucket: &str, key: &str) -> Result<u64, PortError> {
        Ok(self.get(bucket, key).await?.len() as u64)
    }

    /// Writes only when nothing is at `key` yet (S3 `If-None-Match: *`), so retries write nothing twice.
    async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
    ) -> Result<PutOutcome, PortError>;

    /// How long a URL from [`Self::presign_get`] asked to last `wanted` will really work. S3
    /// refuses a presigned URL once the credentials that signed it expire, whatever the URL says,
    /// so callers sign for this long and promise no more. The default is for stores whose links
    /// do not depend on expiring credentials.
    async fn presign_lifetime(&self, wanted: Duration) -> Duration {
        wanted
    }

    /// A URL that lets its holder GET the object until it expires.
    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, PortError>;
}

/// A shared store is a store: the emulator hands one to every function it runs.
#[async_trait]
impl<T: ObjectStore + ?Sized> ObjectStore for std::sync::Arc<T> {
    async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, PortError> {
        (**self).get(bucket, key).await
    }

    async fn get_object(&self, bucket: &str, key: &str) -> Result<Object, PortError> {
        (**self).get_object(bucket, key).await
    }

    async fn size(&self, bucket: &str, key: &str) -> Result<u64, PortError> {
        (**self).size(bucket, key).await
    }

    async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
    ) -> Result<PutOutcome, PortError> {
        (**self).put_if_absent(bucket, key, body, meta).await
    }

    async fn presign_lifetime(&self, wanted: Duration) -> Duration {
        (**self).presign_lifetime(wanted).await
    }

    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, PortError> {
        (**self).presign_get(bucket, key, expires_in).await
    }
}
