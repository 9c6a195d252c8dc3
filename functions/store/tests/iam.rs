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
    let event: SesEvent =
        serde_json::from_slice(&mailroom_testkit::event_file("lambda/store-event.json"))
            .expect("event");
    // The template's environment: raw/ and messages/ in the one bucket.
    let config = Config {
        locations: Locations::new(
            &bucket,
            "raw/",
            Some(bucket.clone()),
            Some("messages/".into()),
        ),
        limits: mailroom::Limits::default(),
    };

    let world = World::new().bucket("RawMailBucket", &bucket);
    let report = iam::least_privilege("StoreFunction", &world, |conf| {
        let (admin, bucket, event, config) = (&admin, &bucket, &event, &config);
        async move {
            // Each run starts from nothing stored.
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
            let store = S3Store::new(iam::s3(&conf));
            let report = handle(event, config, &store)
                .await
                .map_err(|e| e.to_string())?;
            admin
                .head_object()
                .bucket(bucket)
                .key(MESSAGE_JSON)
                .send()
                .await
                .map_err(|e| format!("message.json not stored ({report:?}): {e:?}"))?;
            Ok(())
        }
    })
    .await;
    report.assert_exercised_except(&[(
        "s3:ListBucket",
        &format!("arn:aws:s3:::{bucket}"),
        "lets a missing raw object read as 404 rather than 403; moto answers 404 either way",
    )]);
}
