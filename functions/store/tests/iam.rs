//! The store function with exactly the IAM policy template.yaml gives it, on a moto server that
//! enforces IAM: it must store a message with that policy, and fail without any one of its grants.

use mailroom::SesEvent;
use mailroom::aws::S3Store;
use mailroom::layout::Locations;
use mailroom_store::{Config, handle};
use mailroom_testkit::iam::{self, World};

const ID: &str = "o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1";
const MESSAGE_JSON: &str =
    "messages/2025-01-15/o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1/message.json";

#[tokio::test]
async fn store_needs_exactly_its_template_policy() {
    let srv = iam::server();
    let admin = iam::s3(&srv.admin());
    let raw = mailroom_testkit::event_file("mail/store-attachments.eml");
    let bucket = srv
        .bucket_with("store-iam", &format!("raw/{ID}"), raw)
        .await;
    let (event, config) = event_and_config(&bucket, None);

    let world = World::new().bucket("RawMailBucket", &bucket);
    let report = iam::least_privilege("StoreFunction", &world, |conf| {
        let (admin, bucket, event, config) = (&admin, &bucket, &event, &config);
        async move {
            clear_stored(admin, bucket).await?;
            let store = S3Store::new(iam::s3(&conf));
            let report = handle(event, config, &store)
                .await
                .map_err(|e| e.to_string())?;
            stored(admin, bucket, &report).await
        }
    })
    .await;
    report.assert_exercised_except(&[(
        "s3:ListBucket",
        &format!("arn:aws:s3:::{bucket}"),
        "lets a missing raw object read as 404 rather than 403; moto answers 404 either way",
    )]);
}

/// With `KmsKeyArn` set, the raw mail is encrypted as SES encrypts it: store must still manage with
/// exactly its template policy, whose KMS grants name exactly the configured key.
#[tokio::test]
async fn store_decrypts_with_exactly_its_template_policy() {
    let srv = iam::server();
    let admin = iam::s3(&srv.admin());
    let raw = mailroom_testkit::event_file("mail/store-attachments.eml");
    let (bucket, key_arn) = srv.bucket_with_sealed("store-iam-kms", ID, raw).await;
    let (event, config) = event_and_config(&bucket, Some(&key_arn));

    let world = World::new()
        .bucket("RawMailBucket", &bucket)
        .param("KmsKeyArn", &key_arn);
    let report = iam::least_privilege("StoreFunction", &world, |conf| {
        let (admin, bucket, event, config, key_arn) = (&admin, &bucket, &event, &config, &key_arn);
        async move {
            clear_stored(admin, bucket).await?;
            let store = iam::mail_store(&conf, Some(key_arn));
            let report = handle(event, config, &store)
                .await
                .map_err(|e| e.to_string())?;
            stored(admin, bucket, &report).await
        }
    })
    .await;
    report.assert_exercised_except_kms(
        Some(&key_arn),
        &[(
            "s3:ListBucket",
            &format!("arn:aws:s3:::{bucket}"),
            "lets a missing raw object read as 404 rather than 403; moto answers 404 either way",
        )],
    );
}

/// Each run starts from nothing stored.
async fn clear_stored(admin: &aws_sdk_s3::Client, bucket: &str) -> Result<(), String> {
    let listed = admin
        .list_objects_v2()
        .bucket(bucket)
        .prefix("messages/")
        .send()
        .await
        .map_err(|e| format!("list: {e:?}"))?;
    for o in listed.contents() {
        admin
            .delete_object()
            .bucket(bucket)
            .key(o.key().unwrap_or_default())
            .send()
            .await
            .map_err(|e| format!("delete: {e:?}"))?;
    }
    Ok(())
}

async fn stored(
    admin: &aws_sdk_s3::Client,
    bucket: &str,
    report: &mailroom_store::Report,
) -> Result<(), String> {
    admin
        .head_object()
        .bucket(bucket)
        .key(MESSAGE_JSON)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("message.json not stored ({report:?}): {e:?}"))
}

/// The sample event, and the template's environment: raw/ and messages/ in the one bucket.
fn event_and_config(bucket: &str, kms_key: Option<&str>) -> (SesEvent, Config) {
    let event = serde_json::from_slice(&mailroom_testkit::event_file("lambda/store-event.json"))
        .expect("event");
    let locations = Locations::new(
        bucket,
        "raw/",
        Some(bucket.into()),
        Some("messages/".into()),
    )
    .with_kms_key(kms_key.map(str::to_string));
    let config = Config {
        locations,
        limits: mailroom::Limits::default(),
    };
    (event, config)
}
