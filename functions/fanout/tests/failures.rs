//! What Lambda is told when SNS or S3 fail: in-memory ports that fail on demand.

use async_trait::async_trait;
use bytes::Bytes;
use mailroom::SesEvent;
use mailroom::diagnostic::FunctionError;
use mailroom::layout::Locations;
use mailroom::ports::{
    ErrorKind, ObjectMeta, ObjectStore, PortError, Publication, Publisher, PutOutcome,
};
use mailroom_fanout::{Config, Outcome, handle};
use std::sync::Mutex;
use std::time::Duration;

struct OneObject(Bytes);

#[async_trait]
impl ObjectStore for OneObject {
    async fn get(&self, _: &str, _: &str) -> Result<Bytes, PortError> {
        Ok(self.0.clone())
    }
    async fn put_if_absent(
        &self,
        _: &str,
        _: &str,
        _: Bytes,
        _: &ObjectMeta,
    ) -> Result<PutOutcome, PortError> {
        Err(PortError::new(
            ErrorKind::Permanent,
            "put",
            "fanout never writes",
        ))
    }
    async fn presign_get(&self, _: &str, _: &str, _: Duration) -> Result<String, PortError> {
        Err(PortError::new(ErrorKind::Permanent, "presign", "unused"))
    }
}

/// Fails with `fail` while it lasts, then records what it publishes.
struct Flaky {
    fail: Mutex<Vec<ErrorKind>>,
    published: Mutex<Vec<Publication>>,
}

#[async_trait]
impl Publisher for Flaky {
    async fn publish(&self, msg: &Publication) -> Result<String, PortError> {
        if let Some(kind) = self.fail.lock().expect("lock").pop() {
            return Err(PortError::new(kind, "sns:Publish", "injected"));
        }
        self.published.lock().expect("lock").push(msg.clone());
        Ok("sns-id".into())
    }
}

fn setup(fail: Vec<ErrorKind>) -> (SesEvent, Config, OneObject, Flaky) {
    let event = serde_json::from_slice(&mailroom_testkit::event_file("lambda/fanout-event.json"))
        .expect("fixture");
    let config = Config {
        locations: Locations::new("mail", "raw/", None, None),
        topic_arn: "arn:aws:sns:us-east-1:123456789012:mail.fifo".into(),
        group_id: None,
        limits: mailroom::Limits::default(),
    };
    let raw = OneObject(Bytes::from(mailroom_testkit::event_file(
        "mail/store-attachments.eml",
    )));
    let publisher = Flaky {
        fail: Mutex::new(fail),
        published: Mutex::new(Vec::new()),
    };
    (event, config, raw, publisher)
}

#[tokio::test]
async fn throttled_publish_is_retried_with_the_same_dedup_id() {
    let (event, config, raw, publisher) = setup(vec![ErrorKind::Throttled]);
    let err = handle(&event, &config, &raw, &publisher)
        .await
        .expect_err("throttled");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("s3://mail/raw/"), "{err}");
    assert_eq!(
        lambda_runtime::Diagnostic::from(err).error_type,
        "Fanout.Retryable.Publish"
    );

    let report = handle(&event, &config, &raw, &publisher)
        .await
        .expect("retry");
    assert!(matches!(report.outcomes[0], Outcome::Published { .. }));
    let published = publisher.published.lock().expect("lock");
    assert_eq!(published.len(), 1);
    assert_eq!(
        published[0].dedup_id.as_deref(),
        Some("o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1")
    );
    assert_eq!(published[0].group_id.as_deref(), Some("example.com"));
}

#[tokio::test]
async fn access_denied_is_permanent() {
    let (event, config, raw, publisher) = setup(vec![ErrorKind::Permanent]);
    let err = handle(&event, &config, &raw, &publisher)
        .await
        .expect_err("denied");
    assert!(!err.is_retryable());
    assert_eq!(
        lambda_runtime::Diagnostic::from(err).error_type,
        "Fanout.Permanent.Publish"
    );
}
