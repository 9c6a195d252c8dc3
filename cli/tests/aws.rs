//! `mailroom deliver --aws`: the same rule set and handlers, with the real AWS SDK adapters
//! pointed at moto through `AWS_ENDPOINT_URL`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::process::Command;

#[tokio::test]
async fn aws_mode_writes_to_s3_and_publishes_to_sns_over_the_wire() {
    let moto = mailroom_testkit::moto();
    let bucket = mailroom_testkit::unique("mr-emu");
    let topic_name = mailroom_testkit::unique("mr-emu-topic");
    mailroom_testkit::s3()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let sns = mailroom_testkit::sns();
    let topic = sns
        .create_topic()
        .name(&topic_name)
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    // A queue subscribed to the topic shows what was published.
    let sqs = mailroom_testkit::sqs();
    let queue = sqs
        .create_queue()
        .queue_name(mailroom_testkit::unique("mr-emu-q"))
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let queue_arn = sqs
        .get_queue_attributes()
        .queue_url(&queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    sns.subscribe()
        .topic_arn(&topic)
        .protocol("sqs")
        .endpoint(&queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let msg = write_message(dir.path(), "support@example.com", "");
    let output = Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .current_dir(root())
        .arg("deliver")
        .arg(&msg)
        .args([
            "--to",
            "support@example.com",
            "--json",
            "--aws",
            "--template",
        ])
        .arg(test_template("aws.yaml"))
        .args(["--param", &format!("BucketName={bucket}")])
        .args(["--param", &format!("TopicName={topic_name}")])
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", mailroom_testkit::REGION)
        .env_remove("AWS_PROFILE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let trace: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let id = trace["messageId"].as_str().unwrap().to_string();

    let raw = mailroom_testkit::s3()
        .get_object()
        .bucket(&bucket)
        .key(format!("raw/{id}"))
        .send()
        .await
        .unwrap()
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert!(raw.starts_with(b"Return-Path: <jane@sender.example.net>\r\n"));
    let listed = mailroom_testkit::s3()
        .list_objects_v2()
        .bucket(&bucket)
        .prefix("messages/")
        .send()
        .await
        .unwrap();
    let keys: Vec<String> = listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    assert!(
        keys.iter().any(|k| k.ends_with("/message.json")),
        "{keys:?}"
    );

    // The SNS action's notification (with base64 content) and fanout's summary.
    let mut bodies = Vec::new();
    for _ in 0..10 {
        let got = sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        bodies.extend(
            got.messages()
                .iter()
                .filter_map(|m| m.body().map(str::to_string)),
        );
        if bodies.len() >= 2 {
            break;
        }
    }
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let notification = bodies
        .iter()
        .filter_map(|b| serde_json::from_str::<serde_json::Value>(b).ok())
        .find(|v| v["notificationType"] == "Received")
        .unwrap_or_else(|| panic!("no SES notification in {bodies:?}"));
    assert_eq!(notification["receipt"]["action"]["type"], "SNS");
    assert_eq!(notification["receipt"]["action"]["encoding"], "BASE64");
    assert_eq!(notification["mail"]["messageId"], id.as_str());
    assert!(!notification["content"].as_str().unwrap().is_empty());
    assert!(
        bodies
            .iter()
            .any(|b| b.contains(&id) && !b.contains("notificationType")),
        "fanout summary: {bodies:?}"
    );
}
