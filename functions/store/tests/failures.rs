//! Failure injection the real S3 cannot be asked for: throttled writes and reads. The testkit's
//! in-memory store, failing on demand, shows what Lambda is told, and that a retry completes the
//! layout.

use mailroom::SesEvent;
use mailroom::diagnostic::FunctionError;
use mailroom::layout::Locations;
use mailroom::ports::ErrorKind;
use mailroom_store::{Config, Outcome, handle};
use mailroom_testkit::MemoryStore;

const RAW_KEY: &str = "raw/o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1";

fn setup() -> (SesEvent, Config, MemoryStore) {
    let event = serde_json::from_slice(&mailroom_testkit::event_file("lambda/store-event.json"))
        .expect("fixture");
    let config = Config {
        locations: Locations::new("mail", "raw/", None, None),
        limits: mailroom::Limits::default(),
    };
    let store = MemoryStore::new().with(
        "mail",
        RAW_KEY,
        mailroom_testkit::event_file("mail/store-attachments.eml"),
    );
    (event, config, store)
}

#[tokio::test]
async fn throttled_write_fails_retryably_and_the_retry_completes_the_layout() {
    let (event, config, store) = setup();
    store.fail_puts("body.html", ErrorKind::Throttled, 1);

    let err = handle(&event, &config, &store)
        .await
        .expect_err("throttled");
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("s3://mail/raw/"), "{err}");
    let diagnostic = lambda_runtime::Diagnostic::from(err);
    assert_eq!(diagnostic.error_type, "Store.Retryable.Write");
    assert!(
        !store
            .keys("mail")
            .iter()
            .any(|k| k.ends_with("message.json")),
        "message.json only ever marks a complete layout"
    );

    let report = handle(&event, &config, &store).await.expect("retry");
    match &report.outcomes[0] {
        Outcome::Stored {
            created, existing, ..
        } => assert_eq!((*created, *existing), (2, 3)),
        other => panic!("{other:?}"),
    }
    assert!(
        store
            .keys("mail")
            .iter()
            .any(|k| k.ends_with("message.json"))
    );
}

#[tokio::test]
async fn transient_read_is_retryable_and_access_denied_is_not() {
    let (event, config, store) = setup();
    store.fail_gets(Some(ErrorKind::Transient));
    let err = handle(&event, &config, &store).await.expect_err("5xx");
    assert!(err.is_retryable());
    assert_eq!(
        lambda_runtime::Diagnostic::from(err).error_type,
        "Store.Retryable.ReadRaw"
    );

    store.fail_gets(Some(ErrorKind::Permanent));
    let err = handle(&event, &config, &store).await.expect_err("403");
    assert!(!err.is_retryable());
    assert_eq!(
        store.keys("mail"),
        vec![RAW_KEY.to_string()],
        "nothing written"
    );
}
