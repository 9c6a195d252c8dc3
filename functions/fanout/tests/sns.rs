//! The SNS publisher and the fanout handler over the wire against moto: topics subscribed to SQS
//! queues, so each test reads back exactly what subscribers would receive.

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use bytes::Bytes;
use mailroom::SesEvent;
use mailroom::aws::{S3Store, SnsPublisher};
use mailroom::layout::Locations;
use mailroom::ports::{Attribute, ObjectMeta, ObjectStore, Publication, Publisher};
use mailroom_fanout::{Config, Outcome, handle};
use serde_json::Value;
use std::collections::BTreeMap;

/// A topic (FIFO when `fifo`) and a queue subscribed to it, optionally through a filter policy.
struct Subscribed {
    topic_arn: String,
    queue_url: String,
}

async fn topic(fifo: bool) -> String {
    let suffix = if fifo { ".fifo" } else { "" };
    let mut req = mailroom_testkit::sns()
        .create_topic()
        .name(format!("{}{suffix}", mailroom_testkit::unique("mail")));
    if fifo {
        req = req.attributes("FifoTopic", "true");
    }
    req.send()
        .await
        .expect("create topic")
        .topic_arn()
        .expect("topic arn")
        .to_string()
}

async fn subscribe(topic_arn: &str, fifo: bool, filter: Option<&str>) -> Subscribed {
    let sqs = mailroom_testkit::sqs();
    let suffix = if fifo { ".fifo" } else { "" };
    let mut req = sqs
        .create_queue()
        .queue_name(format!("{}{suffix}", mailroom_testkit::unique("inbox")));
    if fifo {
        req = req.attributes(QueueAttributeName::FifoQueue, "true");
    }
    let queue_url = req
        .send()
        .await
        .expect("create queue")
        .queue_url()
        .expect("queue url")
        .to_string();
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .expect("queue attributes");
    let queue_arn = attrs
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .expect("queue arn")
        .clone();
    let mut sub = mailroom_testkit::sns()
        .subscribe()
        .topic_arn(topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn);
    if let Some(f) = filter {
        sub = sub.attributes("FilterPolicy", f);
    }
    sub.send().await.expect("subscribe");
    Subscribed {
        topic_arn: topic_arn.to_string(),
        queue_url,
    }
}

/// A received SNS envelope (raw delivery off) and the SQS-side MessageGroupId, if any.
struct Received {
    envelope: Value,
    group_id: Option<String>,
}

async fn receive(queue_url: &str) -> Vec<Received> {
    let out = mailroom_testkit::sqs()
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(1)
        .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
        .send()
        .await
        .expect("receive");
    out.messages()
        .iter()
        .map(|m| Received {
            envelope: serde_json::from_str(m.body().unwrap_or("")).expect("SNS envelope JSON"),
            group_id: m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
                .cloned(),
        })
        .collect()
}

/// The envelope's MessageAttributes as name → (Type, Value).
fn attributes(envelope: &Value) -> BTreeMap<String, (String, String)> {
    envelope["MessageAttributes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        (
                            v["Type"].as_str().unwrap_or("").to_string(),
                            v["Value"].as_str().unwrap_or("").to_string(),
                        ),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn publisher_delivers_message_subject_and_typed_attributes() {
    let sub = subscribe(&topic(false).await, false, None).await;
    let publisher = SnsPublisher::new(mailroom_testkit::sns());
    let msg = Publication {
        topic_arn: sub.topic_arn.clone(),
        subject: Some("Mail: hello".into()),
        message: r#"{"schema":"mailroom.summary/1"}"#.into(),
        attributes: BTreeMap::from([
            (
                "recipient".to_string(),
                Attribute::StringArray(vec!["a@example.com".into(), "b@example.com".into()]),
            ),
            ("size".to_string(), Attribute::number(1234)),
            ("spam".to_string(), Attribute::String("PASS".into())),
        ]),
        group_id: None,
        dedup_id: None,
    };
    let id = publisher.publish(&msg).await.expect("publish");
    assert!(!id.is_empty());

    let got = receive(&sub.queue_url).await;
    assert_eq!(got.len(), 1);
    let env = &got[0].envelope;
    assert_eq!(env["MessageId"], id.as_str());
    assert_eq!(env["Subject"], "Mail: hello");
    assert_eq!(env["Message"], r#"{"schema":"mailroom.summary/1"}"#);
    let attrs = attributes(env);
    assert_eq!(
        attrs["recipient"],
        (
            "String.Array".into(),
            r#"["a@example.com","b@example.com"]"#.into()
        )
    );
    assert_eq!(attrs["size"], ("Number".into(), "1234".into()));
    assert_eq!(attrs["spam"], ("String".into(), "PASS".into()));
}

#[tokio::test]
async fn publishing_to_a_missing_topic_is_permanent() {
    let publisher = SnsPublisher::new(mailroom_testkit::sns());
    let err = publisher
        .publish(&Publication {
            topic_arn: "arn:aws:sns:us-east-1:123456789012:no-such-topic".into(),
            message: "x".into(),
            ..Publication::default()
        })
        .await
        .expect_err("no topic");
    assert!(!err.is_retryable(), "{err}");
}

#[tokio::test]
async fn fifo_topics_take_group_and_deduplication_ids() {
    let sub = subscribe(&topic(true).await, true, None).await;
    let publisher = SnsPublisher::new(mailroom_testkit::sns());
    let msg = Publication {
        topic_arn: sub.topic_arn.clone(),
        message: "summary".into(),
        group_id: Some("example.com".into()),
        dedup_id: Some("o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1".into()),
        ..Publication::default()
    };
    publisher.publish(&msg).await.expect("publish");
    // A Lambda retry publishes the same messageId again: the topic drops the duplicate.
    publisher.publish(&msg).await.expect("republish");
    let got = receive(&sub.queue_url).await;
    assert_eq!(got.len(), 1, "deduplicated on the SES messageId");
    assert_eq!(got[0].envelope["Message"], "summary");
    assert_eq!(got[0].group_id.as_deref(), Some("example.com"));

    let err = publisher
        .publish(&Publication {
            group_id: None,
            ..msg.clone()
        })
        .await
        .expect_err("FIFO needs a group id");
    assert!(!err.is_retryable(), "{err}");
}

fn event(file: &str) -> SesEvent {
    serde_json::from_slice(&mailroom_testkit::event_file(&format!("lambda/{file}")))
        .expect("fixture is an SES event")
}

fn config(bucket: &str, topic_arn: &str) -> Config {
    Config {
        locations: Locations::new(bucket, "raw/", None, None),
        topic_arn: topic_arn.to_string(),
        group_id: None,
        limits: mailroom::Limits::default(),
        mailboxes: None,
    }
}

#[tokio::test]
async fn handler_publishes_a_summary_that_filter_policies_route() {
    const ID: &str = "o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1";
    let topic_arn = topic(false).await;
    let all = subscribe(&topic_arn, false, None).await;
    let sales_with_files = subscribe(
        &topic_arn,
        false,
        Some(r#"{"recipient":["sales@example.com"],"has_attachments":["true"]}"#),
    )
    .await;
    let dmarc_failures = subscribe(&topic_arn, false, Some(r#"{"dmarc":["FAIL"]}"#)).await;
    let huge = subscribe(
        &topic_arn,
        false,
        Some(r#"{"size":[{"numeric":[">",1000000]}]}"#),
    )
    .await;

    let (bucket, store) =
        mailroom_testkit::bucket_with_raw("fanout", ID, "store-attachments.eml").await;
    let publisher = SnsPublisher::new(mailroom_testkit::sns());
    let report = handle(
        &event("fanout-event.json"),
        &config(&bucket, &topic_arn),
        &store,
        &publisher,
    )
    .await
    .expect("published");
    match &report.outcomes[0] {
        Outcome::Published { bodies, .. } => assert_eq!(bodies, "inline"),
        other => panic!("{other:?}"),
    }

    let got = receive(&all.queue_url).await;
    assert_eq!(got.len(), 1);
    let summary: Value =
        serde_json::from_str(got[0].envelope["Message"].as_str().expect("Message")).expect("JSON");
    assert_eq!(summary["schema"], "mailroom.summary/1");
    assert_eq!(summary["messageId"], ID);
    assert_eq!(summary["subject"], "Quarterly report");
    assert_eq!(summary["hasAttachments"], true);
    assert_eq!(summary["attachmentCount"], 2);
    assert_eq!(summary["raw"]["key"], format!("raw/{ID}"));
    assert_eq!(
        summary["stored"]["messageJson"],
        format!("messages/2025-01-15/{ID}/message.json")
    );
    assert!(
        summary["text"]
            .as_str()
            .is_some_and(|t| t.contains("Grüße"))
    );
    let attrs = attributes(&got[0].envelope);
    assert_eq!(attrs["sender_domain"].1, "example.net");
    assert_eq!(attrs["has_attachments"].1, "true");
    assert_eq!(attrs["subject"].1, "Quarterly report");
    assert_eq!(attrs["size"].0, "Number");
    assert!(attrs.len() <= 10);

    assert_eq!(receive(&sales_with_files.queue_url).await.len(), 1);
    assert_eq!(receive(&dmarc_failures.queue_url).await.len(), 0);
    assert_eq!(receive(&huge.queue_url).await.len(), 0);

    // The same topic, a DMARC-failing message: only the DMARC subscriber (and "all") hear it.
    const SPOOF: &str = "bmql2tc8b4h90qte7gat7fdsq0opui6spk9o3fo1";
    let (bucket, store) =
        mailroom_testkit::bucket_with_raw("fanout", SPOOF, "store-hostile-filenames.eml").await;
    handle(
        &event("fanout-dmarc-fail.json"),
        &config(&bucket, &topic_arn),
        &store,
        &publisher,
    )
    .await
    .expect("published");
    let got = receive(&dmarc_failures.queue_url).await;
    assert_eq!(got.len(), 1);
    let attrs = attributes(&got[0].envelope);
    assert_eq!(attrs["dmarc"].1, "FAIL");
    assert_eq!(receive(&sales_with_files.queue_url).await.len(), 0);
}

#[tokio::test]
async fn handler_skips_setup_probe_and_reports_missing_raw_without_publishing() {
    let topic_arn = topic(false).await;
    let all = subscribe(&topic_arn, false, None).await;
    let bucket = mailroom_testkit::bucket("fanout").await;
    let store = S3Store::new(mailroom_testkit::s3());
    let publisher = SnsPublisher::new(mailroom_testkit::sns());
    let cfg = config(&bucket, &topic_arn);

    let report = handle(
        &event("store-setup-notification.json"),
        &cfg,
        &store,
        &publisher,
    )
    .await
    .expect("ok");
    assert!(matches!(
        report.outcomes[0],
        Outcome::SetupNotification { .. }
    ));
    let report = handle(&event("fanout-event.json"), &cfg, &store, &publisher)
        .await
        .expect("missing raw is permanent, not an error");
    assert!(
        matches!(&report.outcomes[0], Outcome::RawMissing { raw, .. } if raw.starts_with(&format!("s3://{bucket}/raw/")))
    );
    assert!(receive(&all.queue_url).await.is_empty());
}

#[tokio::test]
async fn unparseable_mail_is_still_announced_with_a_pointer_to_the_raw_message() {
    const ID: &str = "o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1";
    let topic_arn = topic(false).await;
    let all = subscribe(&topic_arn, false, None).await;
    let bucket = mailroom_testkit::bucket("fanout").await;
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
    let publisher = SnsPublisher::new(mailroom_testkit::sns());
    let report = handle(
        &event("fanout-event.json"),
        &config(&bucket, &topic_arn),
        &store,
        &publisher,
    )
    .await
    .expect("published");
    assert!(matches!(
        &report.outcomes[0],
        Outcome::Published {
            parse_error: Some(_),
            ..
        }
    ));
    let got = receive(&all.queue_url).await;
    let summary: Value =
        serde_json::from_str(got[0].envelope["Message"].as_str().expect("Message")).expect("JSON");
    assert!(summary["parseError"].is_string());
    assert_eq!(summary["raw"]["bucket"], bucket.as_str());
    assert_eq!(summary["subject"], "Quarterly report");
}

#[tokio::test]
async fn mail_ses_encrypted_is_published_and_tampered_mail_is_not() {
    use mailroom_testkit::Sealed;
    const ID: &str = "o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1";
    let topic_arn = topic(false).await;
    let all = subscribe(&topic_arn, false, None).await;
    let publisher = SnsPublisher::new(mailroom_testkit::sns());
    for how in [Sealed::Intact, Sealed::FlippedTag, Sealed::OtherKey] {
        let (bucket, store) = mailroom_testkit::bucket_with_sealed_raw(
            "fanout-kms",
            ID,
            "store-attachments.eml",
            how,
        )
        .await;
        let config = config(&bucket, &topic_arn);
        let result = handle(&event("fanout-event.json"), &config, &store, &publisher).await;
        let got = receive(&all.queue_url).await;
        if how == Sealed::Intact {
            result.expect("published");
            assert_eq!(got.len(), 1);
            let message = got[0].envelope["Message"].as_str().expect("Message");
            let summary: Value = serde_json::from_str(message).expect("JSON");
            assert_eq!(summary["subject"], "Quarterly report");
        } else {
            let err = result.expect_err("refused");
            assert!(
                matches!(err, mailroom_fanout::FanoutError::ReadRaw { .. }),
                "{how:?}: {err}"
            );
            assert!(got.is_empty(), "{how:?}: nothing published");
        }
    }
}
