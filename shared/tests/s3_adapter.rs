//! The S3 adapter of `ObjectStore` over the wire against moto.

use bytes::Bytes;
use mailroom::aws::S3Store;
use mailroom::ports::{ErrorKind, ObjectMeta, ObjectStore, PutOutcome};
use std::time::Duration;

#[tokio::test]
async fn conditional_put_writes_once_and_get_reads_back() {
    let bucket = mailroom_testkit::bucket("objects").await;
    let store = S3Store::new(mailroom_testkit::s3());
    let meta = ObjectMeta::new("text/plain; charset=utf-8").with_disposition("inline");

    let first = store
        .put_if_absent(&bucket, "a/b.txt", Bytes::from_static(b"first"), &meta)
        .await
        .expect("first put");
    assert_eq!(first, PutOutcome::Created);

    let second = store
        .put_if_absent(&bucket, "a/b.txt", Bytes::from_static(b"second"), &meta)
        .await
        .expect("second put");
    assert_eq!(second, PutOutcome::AlreadyExists);

    let body = store.get(&bucket, "a/b.txt").await.expect("get");
    assert_eq!(store.size(&bucket, "a/b.txt").await.expect("size"), 5);
    assert_eq!(
        &body[..],
        b"first",
        "a retried write must not replace the object"
    );

    let head = mailroom_testkit::s3()
        .head_object()
        .bucket(&bucket)
        .key("a/b.txt")
        .send()
        .await
        .expect("head");
    assert_eq!(head.content_type(), Some("text/plain; charset=utf-8"));
    assert_eq!(head.content_disposition(), Some("inline"));
}

#[tokio::test]
async fn missing_object_is_not_found_and_not_retryable() {
    let bucket = mailroom_testkit::bucket("objects").await;
    let store = S3Store::new(mailroom_testkit::s3());
    let err = store.get(&bucket, "nope").await.expect_err("missing");
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert!(!err.is_retryable());
    let err = store.size(&bucket, "nope").await.expect_err("missing");
    assert_eq!(
        err.kind,
        ErrorKind::NotFound,
        "HEAD 404 has no error code: {err}"
    );

    let err = store
        .get("no-such-bucket-mailroom", "x")
        .await
        .expect_err("no bucket");
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn presigned_url_fetches_the_object() {
    let bucket = mailroom_testkit::bucket("objects").await;
    let store = S3Store::new(mailroom_testkit::s3());
    store
        .put_if_absent(
            &bucket,
            "att/1-report.pdf",
            Bytes::from_static(b"%PDF-1.4"),
            &ObjectMeta::new("application/pdf"),
        )
        .await
        .expect("put");
    let url = store
        .presign_get(&bucket, "att/1-report.pdf", Duration::from_secs(300))
        .await
        .expect("presign");
    assert!(url.contains("X-Amz-Signature="), "{url}");
    assert!(url.starts_with(&mailroom_testkit::moto().endpoint), "{url}");
}
