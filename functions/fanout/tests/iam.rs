//! The fanout function with exactly the IAM policy template.yaml gives it, on a moto server that
//! enforces IAM: it must publish a message's summary with that policy, and fail without any one
//! of its grants.

use mailroom::SesEvent;
use mailroom::aws::SnsPublisher;
use mailroom_fanout::{Config, handle};
use mailroom_testkit::iam::{self, World};
use std::collections::HashMap;

const ID: &str = "o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1";

#[tokio::test]
async fn fanout_needs_exactly_its_template_policy() {
    needs_exactly_its_template_policy(false).await;
}

/// With `KmsKeyArn` set (the raw mail encrypted as SES does), the one kms:Decrypt grant is needed.
#[tokio::test]
async fn fanout_decrypts_with_exactly_its_template_policy() {
    needs_exactly_its_template_policy(true).await;
}

async fn needs_exactly_its_template_policy(encrypted: bool) {
    let srv = iam::server();
    let admin = srv.admin();
    let raw = mailroom_testkit::event_file("mail/store-attachments.eml");
    let (bucket, kms_key) = if encrypted {
        let (bucket, key) = srv.bucket_with_sealed("fanout-iam-kms", ID, raw).await;
        (bucket, Some(key))
    } else {
        let bucket = srv
            .bucket_with("fanout-iam", &format!("raw/{ID}"), raw)
            .await;
        (bucket, None)
    };
    let topic = srv.topic("mail").await;
    let (inbox, inbox_arn) = srv.queue("inbox").await;
    aws_sdk_sns::Client::new(&admin)
        .subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&inbox_arn)
        .send()
        .await
        .expect("subscribe");
    let event: SesEvent =
        serde_json::from_slice(&mailroom_testkit::event_file("lambda/store-event.json"))
            .expect("event");
    let env: HashMap<String, String> = [
        ("MAILROOM_RAW_BUCKET", bucket.as_str()),
        ("MAILROOM_RAW_PREFIX", "raw/"),
        ("MAILROOM_STORE_BUCKET", bucket.as_str()),
        ("MAILROOM_STORE_PREFIX", "messages/"),
        ("MAILROOM_TOPIC_ARN", topic.as_str()),
        ("MAILROOM_KMS_KEY_ARN", kms_key.as_deref().unwrap_or("")),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let config = Config::from_env(&env).expect("config");
    let sqs = aws_sdk_sqs::Client::new(&admin);

    let world = World::new()
        .bucket("RawMailBucket", &bucket)
        .topic("MailTopic", &topic)
        .kms_key(kms_key.as_deref());
    let report = iam::least_privilege("FanoutFunction", &world, |conf| {
        let (event, config, sqs, inbox) = (&event, &config, &sqs, &inbox);
        async move {
            let store = iam::mail_store(&conf, config.locations.kms_key.as_deref());
            let publisher = SnsPublisher::from_conf(&conf);
            let report = handle(event, config, &store, &publisher)
                .await
                .map_err(|e| e.to_string())?;
            let got = sqs
                .receive_message()
                .queue_url(inbox)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .map_err(|e| format!("receive: {e:?}"))?;
            for m in got.messages() {
                sqs.delete_message()
                    .queue_url(inbox)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .map_err(|e| format!("delete: {e:?}"))?;
            }
            match got.messages().len() {
                1 => Ok(()),
                n => Err(format!("{n} summaries reached the subscriber: {report:?}")),
            }
        }
    })
    .await;
    report.assert_exercised_except(&[(
        "s3:ListBucket",
        &format!("arn:aws:s3:::{bucket}"),
        "lets a missing raw object read as 404 rather than 403; moto answers 404 either way",
    )]);
    // moto does not check SNS resources: the template must name exactly the configured topic.
    assert_eq!(report.widened_resources("sns:Publish"), vec![topic.clone()]);
    // Nor KMS keys: with a key, the template names exactly it, and fanout needs the grant.
    let kms: Vec<String> = kms_key.into_iter().collect();
    assert_eq!(report.widened_resources("kms:Decrypt"), kms);
    for (g, without) in report
        .needed
        .iter()
        .filter(|(g, _)| g.action == "kms:Decrypt")
    {
        eprintln!(
            "needed {} on {}: without it, {without}",
            g.action, g.resource
        );
    }
    let needs_kms = report.needed.iter().any(|(g, _)| g.action == "kms:Decrypt");
    assert_eq!(needs_kms, !kms.is_empty(), "{report:?}");
}
