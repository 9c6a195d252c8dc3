//! The store handler over the wire against moto's S3: fixtures in, the layout out.

use bytes::Bytes;
use mailroom::SesEvent;
use mailroom::aws::S3Store;
use mailroom::diagnostic::FunctionError;
use mailroom::layout::Locations;
use mailroom::ports::{ObjectMeta, ObjectStore};
use mailroom_store::{Config, Outcome, handle};
use std::collections::BTreeMap;

const ID: &str = "o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1";
const PREFIX: &str = "messages/2025-01-15/o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1/";

fn event(file: &str) -> SesEvent {
    serde_json::from_slice(&mailroom_testkit::event_file(&format!("lambda/{file}")))
        .expect("fixture is an SES event")
}

fn config(bucket: &str) -> Config {
    Config {
        locations: Locations::new(bucket, "raw/", None, None),
        limits: mailroom::Limits::default(),
    }
}

#[derive(Debug, PartialEq)]
struct Object {
    body: Vec<u8>,
    etag: Option<String>,
    content_type: Option<String>,
    content_disposition: Option<String>,
}

/// Every object in the bucket, with body and headers.
async fn objects(bucket: &str) -> BTreeMap<String, Object> {
    let s3 = mailroom_testkit::s3();
    let list = s3
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .expect("list");
    let mut out = BTreeMap::new();
    for o in list.contents() {
        let key = o.key().expect("key").to_string();
        let got = s3
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .expect("get");
        let content_type = got.content_type().map(str::to_string);
        let content_disposition = got.content_disposition().map(str::to_string);
        let etag = got.e_tag().map(str::to_string);
        let body = got.body.collect().await.expect("body").to_vec();
        out.insert(
            key,
            Object {
                body,
                etag,
                content_type,
                content_disposition,
            },
        );
    }
    out
}

fn stored(outcome: &Outcome) -> (usize, usize) {
    match outcome {
        Outcome::Stored {
            created, existing, ..
        } => (*created, *existing),
        other => panic!("expected Stored, got {other:?}"),
    }
}

#[tokio::test]
async fn writes_the_browsable_layout_with_real_types() {
    let (bucket, store) =
        mailroom_testkit::bucket_with_raw("store", ID, "store-attachments.eml").await;
    let report = handle(&event("store-event.json"), &config(&bucket), &store)
        .await
        .expect("stored");
    assert_eq!(report.outcomes.len(), 1);
    assert_eq!(stored(&report.outcomes[0]), (5, 0));

    let objs = objects(&bucket).await;
    let keys: Vec<&str> = objs.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        vec![
            "messages/2025-01-15/o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1/attachments/0-logo.png",
            "messages/2025-01-15/o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1/attachments/1-Q4_report.pdf",
            "messages/2025-01-15/o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1/body.html",
            "messages/2025-01-15/o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1/body.txt",
            "messages/2025-01-15/o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1/message.json",
            "raw/o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1",
        ],
        "the raw message stays; the layout sits beside it"
    );

    let pdf = &objs[&format!("{PREFIX}attachments/1-Q4_report.pdf")];
    assert_eq!(pdf.content_type.as_deref(), Some("application/pdf"));
    assert_eq!(
        pdf.content_disposition.as_deref(),
        Some("attachment; filename=\"Q4_report.pdf\"; filename*=UTF-8''Q4_report.pdf")
    );
    assert!(pdf.body.starts_with(b"%PDF-1.4"), "decoded, not base64");
    let png = &objs[&format!("{PREFIX}attachments/0-logo.png")];
    assert_eq!(png.content_type.as_deref(), Some("image/png"));
    assert!(
        png.content_disposition
            .as_deref()
            .is_some_and(|d| d.starts_with("inline;"))
    );
    assert!(png.body.starts_with(b"\x89PNG"));

    let text = &objs[&format!("{PREFIX}body.txt")];
    assert_eq!(
        text.content_type.as_deref(),
        Some("text/plain; charset=utf-8")
    );
    assert!(
        String::from_utf8_lossy(&text.body).contains("Grüße"),
        "quoted-printable decoded to UTF-8"
    );
    let html = &objs[&format!("{PREFIX}body.html")];
    assert_eq!(
        html.content_type.as_deref(),
        Some("text/html; charset=utf-8")
    );

    let json = &objs[&format!("{PREFIX}message.json")];
    assert_eq!(json.content_type.as_deref(), Some("application/json"));
    let model: mailroom::Email =
        serde_json::from_slice(&json.body).expect("message.json is the model");
    assert_eq!(model.schema, mailroom::email::SCHEMA);
    assert_eq!(model.subject.as_deref(), Some("Quarterly report"));
    assert_eq!(model.envelope.recipients, vec!["support@example.com"]);
    assert_eq!(model.verdicts.and_then(|v| v.spam).as_deref(), Some("PASS"));
    assert_eq!(model.attachments.len(), 2);
    assert_eq!(model.attachments[1].content_type, "application/pdf");
}

#[tokio::test]
async fn a_retried_invocation_writes_nothing_twice() {
    let (bucket, store) =
        mailroom_testkit::bucket_with_raw("store", ID, "store-attachments.eml").await;
    let ev = event("store-event.json");
    let first = handle(&ev, &config(&bucket), &store).await.expect("first");
    let before = objects(&bucket).await;
    let second = handle(&ev, &config(&bucket), &store).await.expect("retry");
    let after = objects(&bucket).await;

    assert_eq!(stored(&first.outcomes[0]), (5, 0));
    assert_eq!(
        stored(&second.outcomes[0]),
        (0, 5),
        "every object reported as already there"
    );
    assert_eq!(before.len(), after.len());
    assert_eq!(before, after, "same objects, bodies, ETags and headers");
}

#[tokio::test]
async fn a_retry_after_a_partial_failure_fills_in_only_what_is_missing() {
    let (bucket, store) =
        mailroom_testkit::bucket_with_raw("store", ID, "store-attachments.eml").await;
    let ev = event("store-event.json");
    handle(&ev, &config(&bucket), &store).await.expect("first");
    let complete = objects(&bucket).await;
    // As if the first invocation died after the attachments: message.json and bodies never landed.
    let s3 = mailroom_testkit::s3();
    for name in ["message.json", "body.txt", "body.html"] {
        s3.delete_object()
            .bucket(&bucket)
            .key(format!("{PREFIX}{name}"))
            .send()
            .await
            .expect("delete");
    }
    let retry = handle(&ev, &config(&bucket), &store).await.expect("retry");
    assert_eq!(stored(&retry.outcomes[0]), (3, 2));
    let after = objects(&bucket).await;
    let bodies = |m: &BTreeMap<String, Object>| {
        m.iter()
            .map(|(k, o)| (k.clone(), o.body.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(bodies(&complete), bodies(&after));
}

#[tokio::test]
async fn hostile_filenames_stay_inside_the_message_folder() {
    let (bucket, store) =
        mailroom_testkit::bucket_with_raw("store", ID, "store-hostile-filenames.eml").await;
    let report = handle(&event("store-event.json"), &config(&bucket), &store)
        .await
        .expect("stored");
    let (created, _) = stored(&report.outcomes[0]);
    let objs = objects(&bucket).await;
    assert_eq!(objs.len(), created + 1, "layout plus the raw message");

    let attachments: Vec<(&String, &Object)> = objs
        .iter()
        .filter(|(k, _)| k.contains("/attachments/"))
        .collect();
    assert_eq!(attachments.len(), 5, "{:?}", objs.keys());
    for (key, obj) in &attachments {
        let name = key
            .strip_prefix(&format!("{PREFIX}attachments/"))
            .unwrap_or_else(|| panic!("{key} escaped its folder"));
        assert!(!name.contains('/') && !name.contains('\\'), "{key}");
        assert!(!name.chars().any(char::is_control), "{key:?}");
        assert!(!key.split('/').any(|s| s == ".." || s == "."), "{key}");
        let d = obj.content_disposition.as_deref().unwrap_or("");
        assert!(
            !d.contains("..") && !d.contains('/') && !d.chars().any(char::is_control),
            "{d:?}"
        );
    }
    let svg = attachments
        .iter()
        .find(|(_, o)| o.content_type.as_deref() == Some("image/svg+xml"))
        .expect("the svg attachment");
    assert!(
        svg.1
            .content_disposition
            .as_deref()
            .is_some_and(|d| d.starts_with("attachment;")),
        "active content is never served inline"
    );
    for key in objs.keys() {
        assert!(
            key.starts_with(PREFIX) || key == &format!("raw/{ID}"),
            "{key} outside the layout"
        );
    }
}

#[tokio::test]
async fn setup_notification_writes_nothing() {
    let bucket = mailroom_testkit::bucket("store").await;
    let store = S3Store::new(mailroom_testkit::s3());
    let report = handle(
        &event("store-setup-notification.json"),
        &config(&bucket),
        &store,
    )
    .await
    .expect("ok");
    assert!(matches!(
        report.outcomes[0],
        Outcome::SetupNotification { .. }
    ));
    assert!(objects(&bucket).await.is_empty());
}

#[tokio::test]
async fn a_missing_raw_message_is_permanent_and_named() {
    let bucket = mailroom_testkit::bucket("store").await;
    let store = S3Store::new(mailroom_testkit::s3());
    let report = handle(&event("store-event.json"), &config(&bucket), &store)
        .await
        .expect("a missing object is not retried");
    assert_eq!(
        report.outcomes[0],
        Outcome::RawMissing {
            message_id: ID.into(),
            raw: format!("s3://{bucket}/raw/{ID}"),
        }
    );
    assert!(objects(&bucket).await.is_empty());
}

#[tokio::test]
async fn an_unparseable_message_stays_raw_and_fails_the_invocation_permanently() {
    let bucket = mailroom_testkit::bucket("store").await;
    let store = S3Store::new(mailroom_testkit::s3());
    store
        .put_if_absent(
            &bucket,
            &format!("raw/{ID}"),
            Bytes::new(),
            &ObjectMeta::new("message/rfc822"),
        )
        .await
        .expect("put");
    // An `Ok` would hide the lost message: an error counts in the Errors alarm and, after Lambda's
    // async retries, puts the event in the invocation DLQ.
    let err = handle(&event("store-event.json"), &config(&bucket), &store)
        .await
        .expect_err("nothing could be stored");
    assert!(!err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains(&format!("s3://{bucket}/raw/{ID}")),
        "{err}"
    );
    let d = lambda_runtime::Diagnostic::from(err);
    assert_eq!(d.error_type, "Store.Permanent.Unparseable");
    assert_eq!(
        objects(&bucket).await.keys().collect::<Vec<_>>(),
        vec![&format!("raw/{ID}")]
    );
}

#[tokio::test]
async fn a_missing_store_bucket_fails_the_invocation_naming_the_raw_message() {
    let (bucket, store) =
        mailroom_testkit::bucket_with_raw("store", ID, "store-attachments.eml").await;
    let mut cfg = config(&bucket);
    cfg.locations.store_bucket = mailroom_testkit::unique("no-such-bucket");
    let err = handle(&event("store-event.json"), &cfg, &store)
        .await
        .expect_err("cannot write");
    assert!(!err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains(&format!("s3://{bucket}/raw/{ID}")),
        "{err}"
    );
    let d = lambda_runtime::Diagnostic::from(err);
    assert_eq!(d.error_type, "Store.Permanent.Write");
}

#[tokio::test]
async fn a_message_over_the_size_limit_fails_the_invocation_and_stays_raw() {
    let (bucket, store) =
        mailroom_testkit::bucket_with_raw("store", ID, "store-attachments.eml").await;
    let mut cfg = config(&bucket);
    cfg.limits.max_size = 100;
    let err = handle(&event("store-event.json"), &cfg, &store)
        .await
        .expect_err("too large to store");
    assert!(err.to_string().contains("over the 100-byte limit"), "{err}");
    assert_eq!(
        lambda_runtime::Diagnostic::from(err).error_type,
        "Store.Permanent.Unparseable"
    );
    assert_eq!(
        objects(&bucket).await.keys().collect::<Vec<_>>(),
        vec![&format!("raw/{ID}")]
    );
}

#[tokio::test]
async fn mail_ses_encrypted_is_decrypted_and_stored() {
    use mailroom_testkit::Sealed;
    let (bucket, store) = mailroom_testkit::bucket_with_sealed_raw(
        "store-kms",
        ID,
        "store-attachments.eml",
        Sealed::Intact,
    )
    .await;
    let report = handle(&event("store-event.json"), &config(&bucket), &store)
        .await
        .expect("stored");
    assert_eq!(stored(&report.outcomes[0]), (5, 0));
    let objs = objects(&bucket).await;
    let text = &objs[&format!("{PREFIX}body.txt")];
    assert!(String::from_utf8_lossy(&text.body).contains("Grüße"));
}

#[tokio::test]
async fn tampered_or_foreign_encrypted_mail_is_refused_and_nothing_stored() {
    use mailroom_testkit::Sealed;
    for how in [Sealed::FlippedTag, Sealed::OtherKey] {
        let (bucket, store) =
            mailroom_testkit::bucket_with_sealed_raw("store-kms", ID, "store-attachments.eml", how)
                .await;
        let err = handle(&event("store-event.json"), &config(&bucket), &store)
            .await
            .expect_err("refused");
        // An error, not an `Ok` report: the invocation fails, is retried and dead-lettered.
        assert!(
            matches!(err, mailroom_store::StoreError::ReadRaw { .. }),
            "{how:?}: {err}"
        );
        assert!(!err.is_retryable(), "{how:?}: {err}");
        let keys: Vec<String> = objects(&bucket).await.into_keys().collect();
        assert_eq!(
            keys,
            vec![format!("raw/{ID}")],
            "{how:?}: only the raw mail"
        );
    }
}
