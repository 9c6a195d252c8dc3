//! The KMS adapter of `DataKeys` and the envelope format over the wire against moto: mail sealed
//! as SES seals it and stored in S3 is read back through `read_mail`; tampered objects are refused.

use bytes::Bytes;
use mailroom::aws::{KmsDataKeys, S3Store};
use mailroom::envelope::{self, Decryption, EnvelopeError, ReadError};
use mailroom::ports::{DataKeys, EncryptionContext, ErrorKind, ObjectStore};
use std::collections::HashMap;

const MAIL: &[u8] = b"From: a@example.org\r\nTo: b@example.com\r\nSubject: sealed\r\n\r\nhello\r\n";

fn ses_context(message_id: &str) -> EncryptionContext {
    EncryptionContext::from([
        ("aws:ses:message-id".into(), message_id.into()),
        ("aws:ses:rule-name".into(), "store".into()),
        ("aws:ses:source-account".into(), "123456789012".into()),
    ])
}

/// Puts `body` with `metadata` as SES does (user metadata, `x-amz-meta-` on the wire).
async fn put(bucket: &str, key: &str, body: Vec<u8>, metadata: HashMap<String, String>) {
    mailroom_testkit::s3()
        .put_object()
        .bucket(bucket)
        .key(key)
        .set_metadata(Some(metadata))
        .body(body.into())
        .send()
        .await
        .expect("put");
}

async fn sealed_object(key_arn: &str, bucket: &str, key: &str) -> HashMap<String, String> {
    let keys = KmsDataKeys::new(mailroom_testkit::kms());
    let mut body = MAIL.to_vec();
    let meta = envelope::seal(&keys, key_arn, &ses_context(key), &mut body)
        .await
        .expect("seal with moto's KMS");
    put(bucket, key, body, meta.clone()).await;
    meta
}

#[tokio::test]
async fn data_keys_round_trip_only_with_their_context() {
    let key_arn = mailroom_testkit::kms_key().await;
    let keys = KmsDataKeys::new(mailroom_testkit::kms());
    let context = ses_context("m1");
    let data_key = keys.generate(&key_arn, &context).await.expect("generate");
    assert_eq!(data_key.plaintext.len(), 32);
    let back = keys
        .decrypt(Some(&key_arn), &data_key.wrapped, &context)
        .await
        .expect("decrypt");
    assert_eq!(back, data_key.plaintext);

    let err = keys
        .decrypt(Some(&key_arn), &data_key.wrapped, &ses_context("m2"))
        .await
        .expect_err("another context");
    assert!(!err.is_retryable(), "{err}");
}

#[tokio::test]
async fn mail_sealed_under_kms_is_read_back_through_s3() {
    let key_arn = mailroom_testkit::kms_key().await;
    let bucket = mailroom_testkit::bucket("sealed").await;
    sealed_object(&key_arn, &bucket, "inbox/m1").await;
    let store = S3Store::new(mailroom_testkit::s3());
    let keys = KmsDataKeys::new(mailroom_testkit::kms());

    // The size check sees the mail's size, not the ciphertext's.
    assert_eq!(
        store.size(&bucket, "inbox/m1").await.expect("size"),
        MAIL.len() as u64
    );
    let raw = store.get(&bucket, "inbox/m1").await.expect("get");
    assert_ne!(&raw[..], MAIL, "S3 holds ciphertext");

    let decryption = Decryption {
        keys: &keys,
        key_id: Some(&key_arn),
    };
    let mail = envelope::read_mail(&store, Some(decryption), &bucket, "inbox/m1")
        .await
        .expect("read_mail");
    assert_eq!(mail, Bytes::from_static(MAIL));

    let err = envelope::read_mail(&store, None, &bucket, "inbox/m1")
        .await
        .expect_err("no key configured");
    assert_eq!(err, ReadError::Envelope(EnvelopeError::NoKeys));
}

#[tokio::test]
async fn tampered_objects_are_refused() {
    let key_arn = mailroom_testkit::kms_key().await;
    let other_key = mailroom_testkit::kms_key().await;
    let bucket = mailroom_testkit::bucket("tampered").await;
    let store = S3Store::new(mailroom_testkit::s3());
    let keys = KmsDataKeys::new(mailroom_testkit::kms());
    let meta = sealed_object(&key_arn, &bucket, "good").await;
    let sealed = store.get(&bucket, "good").await.expect("get").to_vec();
    let decryption = Decryption {
        keys: &keys,
        key_id: Some(&key_arn),
    };

    let mut flipped = sealed.clone();
    *flipped.last_mut().expect("tag") ^= 0x80;
    put(&bucket, "flipped-tag", flipped, meta.clone()).await;

    let mut wrong_context = meta.clone();
    wrong_context.insert(
        envelope::MATDESC.into(),
        serde_json::to_string(&ses_context("someone-else")).expect("json"),
    );
    put(&bucket, "wrong-context", sealed.clone(), wrong_context).await;

    // Sealed under another key: what the configured key must not open.
    sealed_object(&other_key, &bucket, "wrong-key").await;

    for (key, want) in [
        ("flipped-tag", "authentication failed"),
        ("wrong-context", "KMS did not unwrap"),
        ("wrong-key", "KMS did not unwrap"),
    ] {
        let err = envelope::read_mail(&store, Some(decryption), &bucket, key)
            .await
            .expect_err(key);
        eprintln!("refused s3://{bucket}/{key}: {err}");
        assert!(!err.is_retryable(), "{key}: {err}");
        assert!(err.to_string().contains(want), "{key}: {err}");
        if let ReadError::Envelope(EnvelopeError::Kms(e)) = &err {
            assert_ne!(e.kind, ErrorKind::Transient, "{key}: {e}");
        }
    }
}

#[tokio::test]
async fn writes_are_sse_kms_under_the_key_and_presigned_urls_still_fetch() {
    use mailroom::ports::ObjectMeta;
    let key_arn = mailroom_testkit::kms_key().await;
    let bucket = mailroom_testkit::bucket("ssekms").await;
    let store = S3Store::new(mailroom_testkit::s3()).with_sse_kms(Some(key_arn.clone()));
    store
        .put_if_absent(
            &bucket,
            "messages/m/message.json",
            Bytes::from_static(b"{}"),
            &ObjectMeta::new("application/json"),
        )
        .await
        .expect("put");
    let head = mailroom_testkit::s3()
        .head_object()
        .bucket(&bucket)
        .key("messages/m/message.json")
        .send()
        .await
        .expect("head");
    assert_eq!(
        head.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms)
    );
    assert_eq!(head.ssekms_key_id(), Some(key_arn.as_str()));
    let url = store
        .presign_get(
            &bucket,
            "messages/m/message.json",
            std::time::Duration::from_secs(60),
        )
        .await
        .expect("presign");
    let body = reqwest::get(&url)
        .await
        .expect("GET")
        .bytes()
        .await
        .expect("body");
    assert_eq!(&body[..], b"{}");
}
