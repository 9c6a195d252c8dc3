//! The inspector's filter-policy tester against another implementation: moto's SNS, over the
//! wire. One publication with fanout's kind of attributes; one SQS queue per policy, subscribed
//! through it; what each queue received must be what `filter_policy::evaluate` decides, and what
//! the cases say SNS decides. (Here, where the AWS SDK is already a test dependency: in the
//! inspector's crate it would be built for its benchmark example too.)

#![allow(clippy::unwrap_used)]

use aws_sdk_sns::types::MessageAttributeValue;
use aws_sdk_sqs::types::QueueAttributeName;
use mailroom_inspector::filter_policy::evaluate;
use serde_json::json;

/// (policy, delivered), from the conditions SNS documents.
const CASES: &[(&str, bool)] = &[
    (r#"{"spam": ["PASS"]}"#, true),
    (r#"{"spam": ["FAIL", "PASS"]}"#, true),
    (r#"{"recipient": ["billing@example.com"]}"#, true),
    (r#"{"sender_domain": [{"prefix": "exa"}]}"#, true),
    (r#"{"size": [{"numeric": [">", 1000, "<=", 2000]}]}"#, true),
    (r#"{"size": [1971]}"#, true),
    (r#"{"spam": [{"anything-but": ["FAIL", "GRAY"]}]}"#, true),
    (
        r#"{"virus": [{"exists": false}], "spam": [{"exists": true}]}"#,
        true,
    ),
    (r#"{"spam": ["pass"]}"#, false),
    (r#"{"spam": ["PASS"], "has_attachments": ["false"]}"#, false),
    (r#"{"recipient": ["other@example.com"]}"#, false),
    (r#"{"size": [{"numeric": ["<", 1000]}]}"#, false),
    (r#"{"virus": ["PASS"]}"#, false),
    (r#"{"spam": [{"exists": false}]}"#, false),
    (
        r#"{"sender_domain": [{"anything-but": ["example.org"]}]}"#,
        false,
    ),
];

fn string(v: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(v)
        .build()
        .unwrap()
}

#[tokio::test]
async fn moto_delivers_what_the_tester_decides() {
    let sns = mailroom_testkit::sns();
    let sqs = mailroom_testkit::sqs();
    let topic = sns
        .create_topic()
        .name(mailroom_testkit::unique("policies"))
        .send()
        .await
        .unwrap()
        .topic_arn()
        .unwrap()
        .to_string();
    let mut queues = Vec::new();
    for (policy, _) in CASES {
        let url = sqs
            .create_queue()
            .queue_name(mailroom_testkit::unique("policy"))
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_string();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes()
            .unwrap()[&QueueAttributeName::QueueArn]
            .clone();
        sns.subscribe()
            .topic_arn(&topic)
            .protocol("sqs")
            .endpoint(arn)
            .attributes("FilterPolicy", *policy)
            .send()
            .await
            .unwrap();
        queues.push(url);
    }
    sns.publish()
        .topic_arn(&topic)
        .message("{}")
        .message_attributes("spam", string("PASS"))
        .message_attributes("sender_domain", string("example.org"))
        .message_attributes(
            "size",
            MessageAttributeValue::builder()
                .data_type("Number")
                .string_value("1971")
                .build()
                .unwrap(),
        )
        .message_attributes(
            "recipient",
            MessageAttributeValue::builder()
                .data_type("String.Array")
                .string_value(r#"["support@example.com","billing@example.com"]"#)
                .build()
                .unwrap(),
        )
        .message_attributes("has_attachments", string("true"))
        .send()
        .await
        .unwrap();
    let attributes = json!({
        "spam": {"Type": "String", "Value": "PASS"},
        "sender_domain": {"Type": "String", "Value": "example.org"},
        "size": {"Type": "Number", "Value": "1971"},
        "recipient": {"Type": "String.Array", "Value": ["support@example.com", "billing@example.com"]},
        "has_attachments": {"Type": "String", "Value": "true"}
    });
    let mut disagreements = Vec::new();
    for ((policy, expected), url) in CASES.iter().zip(&queues) {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap()
            .messages()
            .len()
            == 1;
        let decided = evaluate(policy, &attributes).unwrap().delivered;
        println!("{policy}: moto {got}, tester {decided}, expected {expected}");
        if got != decided || decided != *expected {
            disagreements.push(*policy);
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:?}");
}
