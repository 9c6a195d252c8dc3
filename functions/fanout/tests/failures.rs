//! What Lambda is told when SNS or S3 fail: the testkit's in-memory ports, failing on demand.

use mailroom::SesEvent;
use mailroom::diagnostic::FunctionError;
use mailroom::layout::Locations;
use mailroom::ports::ErrorKind;
use mailroom_fanout::{Config, Outcome, handle};
use mailroom_testkit::{MemoryStore, RecordingPublisher};

fn setup(fail: Vec<ErrorKind>) -> (SesEvent, Config, MemoryStore, RecordingPublisher) {
    let event: SesEvent =
        serde_json::from_slice(&mailroom_testkit::event_file("lambda/fanout-event.json"))
            .expect("fixture");
    let config = Config {
        locations: Locations::new("mail", "raw/", None, None),
        topic_arn: "arn:aws:sns:us-east-1:123456789012:mail.fifo".into(),
        group_id: None,
        limits: mailroom::Limits::default(),
        mailboxes: None,
    };
    let raw = MemoryStore::read_only().with(
        "mail",
        &format!("raw/{}", event.records[0].ses.mail.message_id),
        mailroom_testkit::event_file("mail/store-attachments.eml"),
    );
    let publisher = RecordingPublisher::failing_first(fail);
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
    let published = publisher.published();
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

#[tokio::test]
async fn recipients_the_gate_bounced_are_not_announced() {
    let (event, mut config, raw, publisher) = setup(vec![]);
    // The event's recipients are support@ and sales@; only support@ exists.
    config.mailboxes =
        Some(mailroom::policy::Mailboxes::parse(&["support@example.com"]).expect("list"));
    handle(&event, &config, &raw, &publisher)
        .await
        .expect("published");
    let published = publisher.published();
    let summary: serde_json::Value = serde_json::from_str(&published[0].message).expect("JSON");
    assert_eq!(
        summary["envelope"]["recipients"],
        serde_json::json!(["support@example.com"])
    );
    assert!(
        !published[0].message.contains("sales@example.com"),
        "{}",
        published[0].message
    );

    // None exists: nothing is published.
    config.mailboxes = Some(mailroom::policy::Mailboxes::parse(&["@other.org"]).expect("list"));
    let report = handle(&event, &config, &raw, &publisher).await.expect("ok");
    assert!(
        matches!(report.outcomes[0], Outcome::NoMailbox { .. }),
        "{report:?}"
    );
    assert_eq!(publisher.published().len(), 1);
}
