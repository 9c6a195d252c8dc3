//! In-memory fakes of the ports, for fast tests of a handler's logic: each keeps what it was
//! given and fails on demand, the way the real service can but cannot be asked to. The adapters
//! themselves are tested against moto, never against these.

use async_trait::async_trait;
use bytes::Bytes;
use mailroom::ports::{
    BounceRequest, Bouncer, ErrorKind, ObjectMeta, ObjectStore, PortError, Publication, Publisher,
    PutOutcome,
};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// S3 in memory: objects by bucket and key, conditional puts as S3 does them, and failures on
/// demand (every read, or the next writes of keys ending in a suffix).
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<(String, String), Bytes>>,
    fail_get: Mutex<Option<ErrorKind>>,
    fail_put: Mutex<Option<(String, ErrorKind, usize)>>,
    read_only: bool,
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// A store whose every put fails: for handlers that must only read.
    pub fn read_only() -> Self {
        MemoryStore {
            read_only: true,
            ..MemoryStore::default()
        }
    }

    /// The store with `body` at `bucket`/`key`.
    pub fn with(self, bucket: &str, key: &str, body: impl Into<Bytes>) -> Self {
        self.insert(bucket, key, body);
        self
    }

    pub fn insert(&self, bucket: &str, key: &str, body: impl Into<Bytes>) {
        lock(&self.objects).insert((bucket.to_string(), key.to_string()), body.into());
    }

    /// Every read fails with `kind` (or, with `None`, reads work again).
    pub fn fail_gets(&self, kind: Option<ErrorKind>) {
        *lock(&self.fail_get) = kind;
    }

    /// The next `times` puts of keys ending in `suffix` fail with `kind`.
    pub fn fail_puts(&self, suffix: &str, kind: ErrorKind, times: usize) {
        *lock(&self.fail_put) = Some((suffix.to_string(), kind, times));
    }

    /// The keys held in `bucket`, in order.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        lock(&self.objects)
            .keys()
            .filter(|(b, _)| b == bucket)
            .map(|(_, k)| k.clone())
            .collect()
    }

    pub fn object(&self, bucket: &str, key: &str) -> Option<Bytes> {
        lock(&self.objects)
            .get(&(bucket.to_string(), key.to_string()))
            .cloned()
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, PortError> {
        if let Some(kind) = *lock(&self.fail_get) {
            return Err(PortError::new(kind, "get", "injected"));
        }
        self.object(bucket, key)
            .ok_or_else(|| PortError::new(ErrorKind::NotFound, "get", key))
    }

    async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        _meta: &ObjectMeta,
    ) -> Result<PutOutcome, PortError> {
        if self.read_only {
            return Err(PortError::new(ErrorKind::Permanent, "put", "read-only"));
        }
        if let Some((suffix, kind, left)) = lock(&self.fail_put).as_mut()
            && key.ends_with(suffix.as_str())
            && *left > 0
        {
            *left -= 1;
            return Err(PortError::new(*kind, "put", "injected"));
        }
        let mut objects = lock(&self.objects);
        let id = (bucket.to_string(), key.to_string());
        if objects.contains_key(&id) {
            return Ok(PutOutcome::AlreadyExists);
        }
        objects.insert(id, body);
        Ok(PutOutcome::Created)
    }

    async fn presign_get(&self, bucket: &str, key: &str, _: Duration) -> Result<String, PortError> {
        if self.read_only {
            return Err(PortError::new(ErrorKind::Permanent, "presign", "read-only"));
        }
        Ok(format!("memory://{bucket}/{key}"))
    }
}

/// SNS in memory: records what it publishes, after failing with the given kinds first.
#[derive(Default)]
pub struct RecordingPublisher {
    fail: Mutex<Vec<ErrorKind>>,
    published: Mutex<Vec<Publication>>,
}

impl RecordingPublisher {
    /// A publisher that fails once with each of `kinds` (last first), then works.
    pub fn failing_first(mut kinds: Vec<ErrorKind>) -> Self {
        kinds.reverse();
        RecordingPublisher {
            fail: Mutex::new(kinds),
            published: Mutex::default(),
        }
    }

    pub fn published(&self) -> Vec<Publication> {
        lock(&self.published).clone()
    }
}

#[async_trait]
impl Publisher for RecordingPublisher {
    async fn publish(&self, msg: &Publication) -> Result<String, PortError> {
        if let Some(kind) = lock(&self.fail).pop() {
            return Err(PortError::new(kind, "sns:Publish", "injected"));
        }
        let mut published = lock(&self.published);
        published.push(msg.clone());
        Ok(format!("sns-{}", published.len()))
    }
}

/// SES SendBounce in memory: records every request, and answers with `fail` if set.
#[derive(Default)]
pub struct RecordingBouncer {
    sent: Mutex<Vec<BounceRequest>>,
    fail: Option<ErrorKind>,
}

impl RecordingBouncer {
    pub fn failing(kind: ErrorKind) -> Self {
        RecordingBouncer {
            sent: Mutex::default(),
            fail: Some(kind),
        }
    }

    pub fn sent(&self) -> Vec<BounceRequest> {
        lock(&self.sent).clone()
    }
}

#[async_trait]
impl Bouncer for RecordingBouncer {
    async fn send_bounce(&self, req: &BounceRequest) -> Result<String, PortError> {
        lock(&self.sent).push(req.clone());
        match self.fail {
            Some(kind) => Err(PortError::new(kind, "ses:SendBounce", "injected")),
            None => Ok(format!("bounce-{}", req.original_message_id)),
        }
    }
}

/// A poisoned lock only means another test thread panicked; its data is still what it was.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
