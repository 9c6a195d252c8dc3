//! `mailroom deliver --aws`: the same rule set and handlers, with the real AWS SDK adapters
//! pointed at moto through `AWS_ENDPOINT_URL`.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::process::Command;

/// A bucket, a topic and a queue subscribed to it on moto, for tests/templates/aws.yaml.
struct World {
    moto: &'static mailroom_testkit::Moto,
    bucket: String,
    topic_name: String,
    queue: String,
}

impl World {
    async fn new() -> World {
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
        World {
            moto,
            bucket,
            topic_name,
            queue,
        }
    }

    /// `mailroom deliver --aws` of one message to support@example.com, with `params` added: its
    /// trace.
    fn deliver(&self, params: &[String]) -> serde_json::Value {
        let dir = tempfile::tempdir().unwrap();
        let msg = write_message(dir.path(), "support@example.com", "");
        let mut command = Command::new(env!("CARGO_BIN_EXE_mailroom"));
        command
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
            .args(["--param", &format!("BucketName={}", self.bucket)])
            .args(["--param", &format!("TopicName={}", self.topic_name)]);
        for p in params {
            command.args(["--param", p]);
        }
        let output = command
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .env("AWS_ENDPOINT_URL", &self.moto.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", mailroom_testkit::REGION)
            .env_remove("AWS_PROFILE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stderr}");
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// The object at `key`: its user metadata and its bytes as stored.
    async fn read(&self, key: &str) -> (std::collections::HashMap<String, String>, Vec<u8>) {
        let out = mailroom_testkit::s3()
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .unwrap();
        let metadata = out.metadata().cloned().unwrap_or_default();
        (metadata, out.body.collect().await.unwrap().to_vec())
    }

    /// The keys under messages/.
    async fn stored(&self) -> Vec<String> {
        let listed = mailroom_testkit::s3()
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix("messages/")
            .send()
            .await
            .unwrap();
        listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }
}

#[tokio::test]
async fn aws_mode_writes_to_s3_and_publishes_to_sns_over_the_wire() {
    let w = World::new().await;
    let (queue, sqs) = (&w.queue, mailroom_testkit::sqs());
    let trace = w.deliver(&[]);
    let id = trace["messageId"].as_str().unwrap().to_string();

    let (_, raw) = w.read(&format!("raw/{id}")).await;
    assert!(raw.starts_with(b"Return-Path: <jane@sender.example.net>\r\n"));
    let keys = w.stored().await;
    assert!(
        keys.iter().any(|k| k.ends_with("/message.json")),
        "{keys:?}"
    );

    // The SNS action's notification (with base64 content) and fanout's summary.
    let mut bodies = Vec::new();
    for _ in 0..10 {
        let got = sqs
            .receive_message()
            .queue_url(queue)
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

/// With `KmsKeyArn` set, the S3 action encrypts the raw mail under the key in moto's KMS as SES
/// does, and store and fanout, reading it over the wire, decrypt it with the KMS adapter.
#[tokio::test]
async fn aws_mode_with_a_kms_key_encrypts_raw_mail_and_the_functions_decrypt_it() {
    let w = World::new().await;
    let key = mailroom_testkit::kms_key().await;
    let trace = w.deliver(&[format!("KmsKeyArn={key}")]);
    let id = trace["messageId"].as_str().unwrap().to_string();

    let (metadata, body) = w.read(&format!("raw/{id}")).await;
    assert!(
        metadata.contains_key(mailroom::envelope::KEY_V2),
        "{metadata:?}"
    );
    let matdesc = &metadata[mailroom::envelope::MATDESC];
    assert!(matdesc.contains(&key), "{matdesc}");
    assert!(!body.starts_with(b"Return-Path:"), "ciphertext at rest");

    let keys = w.stored().await;
    assert!(
        keys.iter().any(|k| k.ends_with("/message.json")),
        "store decrypted and stored the message: {keys:?}"
    );
    let text_key = keys
        .iter()
        .find(|k| k.ends_with("/body.txt"))
        .unwrap_or_else(|| panic!("no body.txt: {keys:?}"));
    let (_, text) = w.read(text_key).await;
    assert!(
        String::from_utf8_lossy(&text).contains("Hello there."),
        "{text:?}"
    );
    eprintln!(
        "raw/{id}: {} bytes of ciphertext under {key}; stored {text_key}",
        body.len()
    );

    let sqs = mailroom_testkit::sqs();
    let mut summary = None;
    for _ in 0..10 {
        let got = sqs
            .receive_message()
            .queue_url(&w.queue)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        summary = summary.or_else(|| {
            got.messages()
                .iter()
                .filter_map(|m| m.body())
                .find(|b| b.contains(&id) && !b.contains("notificationType"))
                .map(str::to_string)
        });
        if summary.is_some() {
            break;
        }
    }
    assert!(
        summary.is_some(),
        "fanout published a summary of the decrypted mail"
    );
}
