//! The forward function over the wire: raw mail in moto's S3, sent through moto's SES v2
//! `SendEmail` (raw content) with the one real adapter, markers written back to S3. What moto
//! received is read from its model dump and checked against SES's rules.
#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::Counts;
use mailroom::aws::S3Store;
use mailroom::diagnostic::FunctionError;
use mailroom::ports::{ObjectMeta, ObjectStore};
use mailroom_forward::sender::{SendErrorKind, SesV2Sender};
use mailroom_forward::{Config, Delivery, Deps, ForwardError, Outcome, handle, ses_rules};
use mailroom_testkit::SentMail;

fn ses() -> aws_sdk_sesv2::Client {
    aws_sdk_sesv2::Client::new(&mailroom_testkit::sdk_config())
}

struct Setup {
    bucket: String,
    store: S3Store,
    config: Config,
}

async fn setup(id: &str, raw: &[u8], from: &str, extra: &[(&str, &str)]) -> Setup {
    let bucket = mailroom_testkit::bucket("fwd").await;
    let store = S3Store::new(mailroom_testkit::s3());
    store
        .put_if_absent(
            &bucket,
            &format!("raw/{id}"),
            Bytes::copy_from_slice(raw),
            &ObjectMeta::new("message/rfc822"),
        )
        .await
        .expect("put raw");
    let mut env = vec![
        ("MAILROOM_RAW_BUCKET", bucket.as_str()),
        ("MAILROOM_RAW_PREFIX", "raw/"),
        ("MAILROOM_FORWARD_FROM", from),
        ("MAILROOM_FORWARD_MAP", "info@example.com=me@gmail.com"),
    ];
    env.extend_from_slice(extra);
    let config = Config::from_env(env.as_slice()).expect("config");
    Setup {
        bucket,
        store,
        config,
    }
}

async fn run(s: &Setup, ev: &mailroom::SesEvent) -> Result<mailroom_forward::Report, ForwardError> {
    let sender = SesV2Sender::new(ses());
    let maps = s.config.map_cache();
    let counts = Counts::default();
    let deps = Deps {
        store: &s.store,
        sender: &sender,
        parameters: &common::NoParameters,
        maps: &maps,
        metrics: &counts,
    };
    handle(ev, &s.config, deps).await
}

fn raw_fixture(name: &str) -> Vec<u8> {
    mailroom_testkit::event_file(&format!("mail/forward/{name}"))
}

#[tokio::test]
async fn forwards_through_sesv2_and_marks_the_destination() {
    let domain = mailroom_testkit::verified_domain("fwd").await;
    let from = format!("forwarder@{domain}");
    // Sent with FromEmailAddressIdentityArn, as the template configures it.
    let identity_arn = format!("arn:aws:ses:us-east-1:123456789012:identity/{domain}");
    let id = "fwdmoto00000000000000000000000000000001";
    let raw = raw_fixture("dkim-signatures.eml");
    let s = setup(
        id,
        &raw,
        &from,
        &[
            ("MAILROOM_FORWARD_CONFIGURATION_SET", "forward"),
            ("MAILROOM_FORWARD_IDENTITY_ARN", &identity_arn),
        ],
    )
    .await;
    ses()
        .create_configuration_set()
        .configuration_set_name("forward")
        .send()
        .await
        .ok();
    let ev = common::event(
        id,
        &raw,
        "bounces+x1@sender.example.net",
        &["info@example.com"],
        &[],
    );
    let report = run(&s, &ev).await.expect("forwarded");
    let Outcome::Forwarded { deliveries, .. } = &report.outcomes[0] else {
        panic!("{report:?}")
    };
    let Delivery::Sent { ses_message_id, .. } = &deliveries[0] else {
        panic!("{deliveries:?}")
    };
    let sent = mailroom_testkit::ses_sent();
    let SentMail {
        destinations: dest,
        raw: data,
        ..
    } = sent
        .iter()
        .find(|m| &m.id == ses_message_id)
        .expect("moto has the message");
    assert!(dest.iter().any(|d| d.contains("me@gmail.com")), "{dest:?}");
    assert_eq!(ses_rules::validate_for(data.as_bytes(), &from), vec![]);
    // Long header values are folded: compare the From field unfolded.
    let unfolded = data.replace("\r\n ", " ").replace("\n ", " ");
    assert!(
        unfolded.contains(&format!("\"Ana Lopez via {domain}\" <{from}>")),
        "{data}"
    );
    // The marker is in S3: the same event again sends nothing.
    let marker = format!("forwarded/{id}/me@gmail.com");
    assert!(s.store.size(&s.bucket, &marker).await.is_ok());
    let again = run(&s, &ev).await.expect("second run");
    let Outcome::Forwarded { deliveries, .. } = &again.outcomes[0] else {
        panic!("{again:?}")
    };
    assert!(matches!(deliveries[0], Delivery::AlreadySent { .. }));
    assert_eq!(
        mailroom_testkit::ses_sent()
            .iter()
            .filter(|m| &m.raw == data)
            .count(),
        1
    );
}

#[tokio::test]
async fn an_unverified_sender_fails_the_invocation_and_leaves_the_raw_mail() {
    let id = "fwdmoto00000000000000000000000000000002";
    let raw = raw_fixture("encoded-names.eml");
    let from = format!(
        "forwarder@{}.example.org",
        mailroom_testkit::unique("unverified")
    );
    let s = setup(id, &raw, &from, &[]).await;
    let ev = common::event(
        id,
        &raw,
        "noreply@sender.example.net",
        &["info@example.com"],
        &[],
    );
    let err = run(&s, &ev).await.unwrap_err();
    let ForwardError::Send { source, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(source.kind, SendErrorKind::Setup, "{source}");
    assert!(!err.is_retryable());
    assert!(s.store.get(&s.bucket, &format!("raw/{id}")).await.is_ok());
    assert!(
        s.store
            .size(&s.bucket, &format!("forwarded/{id}/me@gmail.com"))
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_message_ses_rejects_is_reported_to_the_notice_address() {
    let domain = mailroom_testkit::verified_domain("fwd").await;
    let from = format!("forwarder@{domain}");
    let admin = format!("admin@{domain}");
    let id = "fwdmoto00000000000000000000000000000003";
    // moto counts the message's own To/Cc as recipients too: 60 of them exceed SES's limit of
    // 50, and moto answers MessageRejected, as SES does for a message it refuses.
    let to: Vec<String> = (0..60).map(|i| format!("r{i}@example.org")).collect();
    let raw = format!(
        "From: Many <many@sender.example.net>\r\nTo: {}\r\nSubject: too many\r\n\
         Date: Wed, 15 Jan 2025 10:00:00 +0000\r\n\r\nhi\r\n",
        to.join(",\r\n ")
    );
    let s = setup(
        id,
        raw.as_bytes(),
        &from,
        &[("MAILROOM_FORWARD_NOTICE_TO", admin.as_str())],
    )
    .await;
    let ev = common::event(
        id,
        raw.as_bytes(),
        "many@sender.example.net",
        &["info@example.com"],
        &[],
    );
    let report = run(&s, &ev)
        .await
        .expect("a rejection is not an invocation failure");
    let Outcome::Forwarded { deliveries, .. } = &report.outcomes[0] else {
        panic!("{report:?}")
    };
    let Delivery::Rejected { reason, notice, .. } = &deliveries[0] else {
        panic!("{deliveries:?}")
    };
    assert!(reason.contains("MessageRejected"), "{reason}");
    assert!(
        notice.as_deref().is_some_and(|n| n.starts_with("sent")),
        "{notice:?}"
    );
    let noticed = mailroom_testkit::ses_sent()
        .into_iter()
        .find(|m| m.destinations.iter().any(|x| x.contains(&admin)) && m.raw.contains(id))
        .expect("the notice reached SES");
    assert!(noticed.raw.contains(&format!("s3://{}/raw/{id}", s.bucket)));
    assert!(
        s.store
            .size(&s.bucket, &format!("forwarded/{id}/me@gmail.com"))
            .await
            .is_ok()
    );
}
