//! Interoperability with an independent S3 encryption client (`scripts/py/s3ec_interop.py`:
//! boto3 and Python's `cryptography`), both ways, over moto's S3 and KMS.

use mailroom::aws::{KmsDataKeys, S3Store};
use mailroom::envelope::{self, Decryption, EnvelopeError, ReadError};
use mailroom::ports::EncryptionContext;
use mailroom_testkit::{moto, workspace_root};
use std::process::{Command, Output};

fn sample() -> Vec<u8> {
    std::fs::read(workspace_root().join("events/mail/multipart-alternative.eml")).expect("sample")
}

fn python(args: &[&str]) -> Output {
    Command::new(workspace_root().join(".venv/bin/python"))
        .arg(workspace_root().join("scripts/py/s3ec_interop.py"))
        .args(args)
        .args(["--endpoint", &moto().endpoint])
        .output()
        .expect("running scripts/py/s3ec_interop.py")
}

async fn read(bucket: &str, key: &str, key_arn: &str) -> Result<bytes::Bytes, ReadError> {
    let store = S3Store::new(mailroom_testkit::s3());
    let keys = KmsDataKeys::new(mailroom_testkit::kms());
    let decryption = Decryption {
        keys: &keys,
        key_id: Some(key_arn),
    };
    envelope::read_mail(&store, Some(decryption), bucket, key).await
}

#[tokio::test]
async fn mail_sealed_by_the_python_client_is_read_by_mailroom() {
    let key_arn = mailroom_testkit::kms_key().await;
    let bucket = mailroom_testkit::bucket("pyseal").await;
    let file = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(file.path(), sample()).expect("write");
    let path = file.path().to_str().expect("utf-8 path");
    for wrap in ["kms", "kms+context"] {
        let out = python(&[
            "seal",
            "--bucket",
            &bucket,
            "--key",
            wrap,
            "--key-arn",
            &key_arn,
            "--file",
            path,
            "--wrap",
            wrap,
            "--message-id",
            "pyseal-1",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mail = read(&bucket, wrap, &key_arn).await.expect(wrap);
        assert_eq!(&mail[..], &sample()[..], "{wrap}");
        eprintln!(
            "sealed by s3ec_interop.py ({wrap}), read by mailroom: {} bytes, identical",
            mail.len()
        );
    }
}

#[tokio::test]
async fn mail_sealed_by_mailroom_is_read_by_the_python_client() {
    let key_arn = mailroom_testkit::kms_key().await;
    let bucket = mailroom_testkit::bucket("rsseal").await;
    let keys = KmsDataKeys::new(mailroom_testkit::kms());
    let context = EncryptionContext::from([
        ("aws:ses:message-id".into(), "rsseal-1".into()),
        ("aws:ses:rule-name".into(), "store".into()),
        ("aws:ses:source-account".into(), "123456789012".into()),
    ]);
    let mut body = sample();
    let meta = envelope::seal(&keys, &key_arn, &context, &mut body)
        .await
        .expect("seal");
    let s3 = mailroom_testkit::s3();
    for (key, body) in [
        ("good", body.clone()),
        ("flipped", {
            let mut b = body.clone();
            *b.last_mut().expect("tag") ^= 0x01;
            b
        }),
    ] {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .set_metadata(Some(meta.clone()))
            .body(body.into())
            .send()
            .await
            .expect("put");
    }

    let out = python(&[
        "open",
        "--bucket",
        &bucket,
        "--key",
        "good",
        "--key-arn",
        &key_arn,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, sample());
    eprintln!(
        "sealed by mailroom, read by s3ec_interop.py: {} bytes, identical",
        out.stdout.len()
    );

    // The independent client refuses the object mailroom refuses.
    let out = python(&[
        "open",
        "--bucket",
        &bucket,
        "--key",
        "flipped",
        "--key-arn",
        &key_arn,
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());
    let err = read(&bucket, "flipped", &key_arn)
        .await
        .expect_err("flipped");
    eprintln!(
        "flipped tag: s3ec_interop.py exits 3 ({}); mailroom: {err}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    assert!(matches!(
        err,
        ReadError::Envelope(EnvelopeError::Authentication(_))
    ));
}

#[tokio::test]
async fn cbc_objects_of_the_python_client_are_read_and_a_bad_padding_refused() {
    let key_arn = mailroom_testkit::kms_key().await;
    let bucket = mailroom_testkit::bucket("pycbc").await;
    let file = tempfile::NamedTempFile::new().expect("tmp");
    std::fs::write(file.path(), sample()).expect("write");
    let path = file.path().to_str().expect("utf-8 path");
    let out = python(&[
        "seal",
        "--bucket",
        &bucket,
        "--key",
        "cbc",
        "--key-arn",
        &key_arn,
        "--file",
        path,
        "--cek",
        "AES/CBC/PKCS5Padding",
        "--message-id",
        "pycbc-1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mail = read(&bucket, "cbc", &key_arn).await.expect("cbc");
    assert_eq!(&mail[..], &sample()[..]);
    eprintln!(
        "CBC sealed by s3ec_interop.py, read by mailroom: {} bytes, identical",
        mail.len()
    );

    // The block before the last, altered at its end, spoils the padding the last one decrypts to.
    let s3 = mailroom_testkit::s3();
    let got = s3
        .get_object()
        .bucket(&bucket)
        .key("cbc")
        .send()
        .await
        .expect("get");
    let metadata = got.metadata().cloned();
    let mut body = got.body.collect().await.expect("body").to_vec();
    let n = body.len();
    body[n - 17] ^= 0xff;
    s3.put_object()
        .bucket(&bucket)
        .key("cbc-padding")
        .set_metadata(metadata)
        .body(body.into())
        .send()
        .await
        .expect("put");
    let err = read(&bucket, "cbc-padding", &key_arn)
        .await
        .expect_err("bad padding");
    eprintln!("CBC padding spoiled: mailroom: {err}");
    assert_eq!(
        err,
        ReadError::Envelope(EnvelopeError::Authentication("AES-CBC padding invalid"))
    );
    let out = python(&[
        "open",
        "--bucket",
        &bucket,
        "--key",
        "cbc-padding",
        "--key-arn",
        &key_arn,
    ]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the independent client refuses it too"
    );
}
