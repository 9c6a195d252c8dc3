//! What moto cannot be made to do, answered by a small server on 127.0.0.1: a service that
//! accepts the connection and never answers (every call made through the shared SDK
//! configuration is bounded), and S3's 409 `ConditionalRequestConflict`.

use bytes::Bytes;
use mailroom::aws::{OPERATION_TIMEOUT, S3Store};
use mailroom::ports::{ErrorKind, ObjectMeta, ObjectStore};
use mailroom_testkit::http::{HttpServer, Reply};
use std::time::{Duration, Instant};

/// An S3 client at `endpoint` with the shared timeouts.
fn store_at(endpoint: String) -> S3Store {
    let creds = aws_credential_types::Credentials::new("testing", "testing", None, None, "test");
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(creds))
        .timeout_config(mailroom::aws::timeouts())
        .build();
    let conf = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(true)
        .build();
    S3Store::new(aws_sdk_s3::Client::from_conf(conf))
}

#[tokio::test]
async fn the_shared_config_sets_operation_and_attempt_timeouts() {
    let conf = mailroom::aws::sdk_config().await;
    let t = conf.timeout_config().expect("timeouts set");
    assert_eq!(t.operation_timeout(), Some(OPERATION_TIMEOUT));
    assert_eq!(
        t.operation_attempt_timeout(),
        Some(mailroom::aws::ATTEMPT_TIMEOUT)
    );
    assert!(t.connect_timeout().is_some());
}

#[tokio::test]
async fn a_service_that_never_answers_times_out() {
    // Reads each request and holds the answer far past every timeout.
    let server = HttpServer::always(Reply::status(200).after(Duration::from_secs(3600))).await;
    let endpoint = server.url("");
    let store = store_at(endpoint);
    let started = Instant::now();
    // The outer bound only keeps a regression from hanging the test run.
    let result = tokio::time::timeout(
        OPERATION_TIMEOUT + Duration::from_secs(30),
        store.get("bucket", "raw/m1"),
    )
    .await
    .expect("the call ends by itself");
    let err = result.expect_err("nothing answered");
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert!(err.message.contains("timed out"), "{err}");
    assert!(
        started.elapsed() < OPERATION_TIMEOUT + Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_conditional_put_that_conflicts_is_retried_not_taken_as_written() {
    // S3's answer while another conditional write of the same key is in flight.
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\
        <Code>ConditionalRequestConflict</Code>\
        <Message>A conflicting conditional operation is currently in progress \
        against this resource. Please try again.</Message>\
        <RequestId>1</RequestId></Error>";
    let reply = Reply::status(409)
        .header("content-type", "application/xml")
        .body(body);
    let server = HttpServer::always(reply).await;
    let endpoint = server.url("");
    let err = store_at(endpoint)
        .put_if_absent(
            "bucket",
            "messages/m1/message.json",
            Bytes::from_static(b"{}"),
            &ObjectMeta::new("application/json"),
        )
        .await
        .expect_err("the other writer may still fail: nothing is known to be there");
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert!(err.message.contains("ConditionalRequestConflict"), "{err}");
}
