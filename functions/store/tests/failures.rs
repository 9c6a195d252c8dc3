//! Failure injection the real S3 cannot be asked for: throttled writes and reads. An in-memory
//! store that fails on demand shows what Lambda is told, and that a retry completes the layout.

use async_trait::async_trait;
use bytes::Bytes;
use mailroom::SesEvent;
use mailroom::diagnostic::FunctionError;
use mailroom::layout::Locations;
use mailroom::ports::{ErrorKind, ObjectMeta, ObjectStore, PortError, PutOutcome};
use mailroom_store::{Config, Outcome, handle};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

const RAW_KEY: &str = "raw/o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1";

#[derive(Default)]
struct FlakyStore {
    objects: Mutex<BTreeMap<String, Bytes>>,
    /// Fail the put of any key ending with this, with this kind, while the count lasts.
    fail_put: Mutex<Option<(String, ErrorKind, usize)>>,
    fail_get: Mutex<Option<ErrorKind>>,
}

impl FlakyStore {
    fn keys(&self) -> Vec<String> {
        self.objects.lock().expect("lock").keys().cloned().collect()
    }
}

#[async_trait]
impl ObjectStore for FlakyStore {
    async fn get(&self, _bucket: &str, key: &str) -> Result<Bytes, PortError> {
        if let Some(kind) = *self.fail_get.lock().expect("lock") {
            return Err(PortError::new(kind, "get", "injected"));
        }
        self.objects
            .lock()
            .expect("lock")
            .get(key)
            .cloned()
            .ok_or_else(|| PortError::new(ErrorKind::NotFound, "get", key))
    }

    async fn put_if_absent(
        &self,
        _bucket: &str,
        key: &str,
        body: Bytes,
        _meta: &ObjectMeta,
    ) -> Result<PutOutcome, PortError> {
        if let Some((suffix, kind, left)) = self.fail_put.lock().expect("lock").as_mut()
            && key.ends_with(suffix.as_str())
            && *left > 0
        {
            *left -= 1;
            return Err(PortError::new(*kind, "put", "injected"));
        }
        let mut objects = self.objects.lock().expect("lock");
        if objects.contains_key(key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        objects.insert(key.to_string(), body);
        Ok(PutOutcome::Created)
    }

    async fn presign_get(&self, _: &str, key: &str, _: Duration) -> Result<String, PortError> {
        Ok(format!("memory://{key}"))
    }
}

fn setup() -> (SesEvent, Config, FlakyStore) {
    let event = serde_json::from_slice(&mailroom_testkit::event_file("lambda/store-event.json"))
        .expect("fixture");
    let config = Config {
        locations: Locations::new("mail", "raw/", None, None),
        limits: mailroom::Limits::default(),
    };
    let store = FlakyStore::default();
    store.objects.lock().expect("lock").insert(
        RAW_KEY.to_string(),
        Bytes::from(mailroom_testkit::event_file("mail/store-attachments.eml")),
    );
    (event, config, store)
}

#[tokio::test]
async fn throttled_write_fails_retryably_and_the_retry_completes_the_layout() {
    let (event, config, store) = setup();
    *store.fail_put.lock().expect("lock") =
        Some(("body.html".to_string(), ErrorKind::Throttled, 1));

    let err = handle(&event, &config, &store)
        .await
        .expect_err("throttled");
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("s3://mail/raw/"), "{err}");
    let diagnostic = lambda_runtime::Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "Store.Retryable.Write");
    assert!(
        !store.keys().iter().any(|k| k.ends_with("message.json")),
        "message.json only ever marks a complete layout"
    );

    let report = handle(&event, &config, &store).await.expect("retry");
    match &report.outcomes[0] {
        Outcome::Stored {
            created, existing, ..
        } => assert_eq!((*created, *existing), (2, 3)),
        other => panic!("{other:?}"),
    }
    assert!(store.keys().iter().any(|k| k.ends_with("message.json")));
}

#[tokio::test]
async fn transient_read_is_retryable_and_access_denied_is_not() {
    let (event, config, store) = setup();
    *store.fail_get.lock().expect("lock") = Some(ErrorKind::Transient);
    let err = handle(&event, &config, &store).await.expect_err("5xx");
    assert!(err.is_retryable());
    assert_eq!(
        lambda_runtime::Diagnostic::from(err).error_type,
        "Store.Retryable.ReadRaw"
    );

    *store.fail_get.lock().expect("lock") = Some(ErrorKind::Permanent);
    let err = handle(&event, &config, &store).await.expect_err("403");
    assert!(!err.is_retryable());
    assert_eq!(store.keys(), vec![RAW_KEY.to_string()], "nothing written");
}
