//! The `SendBounce` adapter over the wire.
//!
//! moto does not implement `SendBounce` (its SES responses have no such action), so these tests
//! run the real SDK client against a small recording HTTP endpoint on 127.0.0.1 that captures the
//! Query-protocol form body and answers with SES's XML.

use mailroom::aws::SesBouncer;
use mailroom::ports::{
    BounceRequest, BounceType, BouncedRecipient, Bouncer, DsnAction, ErrorKind, MessageDsn,
    RecipientDsn,
};
use mailroom_testkit::http::{HttpServer, Recorded, Reply};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::net::TcpListener;

const OK: &str = r#"<SendBounceResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/">
  <SendBounceResult><MessageId>0000014a-bounce-id</MessageId></SendBounceResult>
  <ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata>
</SendBounceResponse>"#;

fn error_xml(code: &str, message: &str) -> String {
    format!(
        r#"<ErrorResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/">
  <Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>
  <RequestId>r-2</RequestId>
</ErrorResponse>"#
    )
}

/// Serves every request with the same status and body, recording what arrived.
async fn endpoint(status: u16, body: String) -> (String, HttpServer) {
    let reply = Reply::status(status)
        .header("content-type", "text/xml")
        .body(body);
    let server = HttpServer::always(reply).await;
    (server.url(""), server)
}

/// The Query-protocol form a request carried.
fn form(request: &Recorded) -> BTreeMap<String, String> {
    parse_form(&String::from_utf8_lossy(&request.body))
}

fn parse_form(body: &str) -> BTreeMap<String, String> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(v) => {
                            out.push(v);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn client(endpoint: &str) -> aws_sdk_ses::Client {
    let conf = aws_sdk_ses::Config::builder()
        .behavior_version(aws_sdk_ses::config::BehaviorVersion::latest())
        .region(aws_sdk_ses::config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_ses::config::Credentials::new(
            "AKIDTEST", "secret", None, None, "test",
        ))
        .endpoint_url(endpoint)
        // One attempt, so a throttling answer reaches the classifier instead of the SDK's retry loop.
        .retry_config(aws_sdk_ses::config::retry::RetryConfig::disabled())
        .build();
    aws_sdk_ses::Client::from_conf(conf)
}

fn request() -> BounceRequest {
    BounceRequest {
        original_message_id: "o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1".into(),
        bounce_sender: "mailer-daemon@example.com".into(),
        bounce_sender_arn: None,
        explanation: Some("No such mailbox".into()),
        message_dsn: Some(MessageDsn {
            reporting_mta: "dns; inbound-smtp.eu-west-1.amazonaws.com".into(),
            arrival_date: Some("2025-01-15T10:00:02.028Z".into()),
            extension_fields: vec![],
        }),
        recipients: vec![BouncedRecipient {
            recipient: "ghost@example.com".into(),
            recipient_arn: None,
            bounce_type: Some(BounceType::DoesNotExist),
            dsn: Some(RecipientDsn {
                final_recipient: Some("ghost@example.com".into()),
                action: DsnAction::Failed,
                remote_mta: None,
                status: "5.1.1".into(),
                diagnostic_code: Some(
                    "smtp; 550 5.1.1 <ghost@example.com>: mailbox does not exist".into(),
                ),
                last_attempt_date: None,
                extension_fields: vec![],
            }),
        }],
    }
}

#[tokio::test]
async fn send_bounce_puts_every_field_on_the_wire() {
    let (url, seen) = endpoint(200, OK.to_string()).await;
    let bouncer = SesBouncer::new(client(&url));
    let id = bouncer.send_bounce(&request()).await.expect("bounce sent");
    assert_eq!(id, "0000014a-bounce-id");

    let seen = seen.requests();
    assert_eq!(seen.len(), 1);
    let f = &form(&seen[0]);
    let get = |k: &str| f.get(k).map(String::as_str);
    assert_eq!(get("Action"), Some("SendBounce"));
    assert_eq!(get("Version"), Some("2010-12-01"));
    assert_eq!(
        get("OriginalMessageId"),
        Some("o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1")
    );
    assert_eq!(get("BounceSender"), Some("mailer-daemon@example.com"));
    assert_eq!(get("Explanation"), Some("No such mailbox"));
    assert_eq!(
        get("MessageDsn.ReportingMta"),
        Some("dns; inbound-smtp.eu-west-1.amazonaws.com")
    );
    assert_eq!(
        get("MessageDsn.ArrivalDate"),
        Some("2025-01-15T10:00:02.028Z")
    );
    let m = "BouncedRecipientInfoList.member.1.";
    assert_eq!(get(&format!("{m}Recipient")), Some("ghost@example.com"));
    assert_eq!(get(&format!("{m}BounceType")), Some("DoesNotExist"));
    assert_eq!(
        get(&format!("{m}RecipientDsnFields.FinalRecipient")),
        Some("ghost@example.com")
    );
    assert_eq!(
        get(&format!("{m}RecipientDsnFields.Action")),
        Some("failed")
    );
    assert_eq!(get(&format!("{m}RecipientDsnFields.Status")), Some("5.1.1"));
    assert_eq!(
        get(&format!("{m}RecipientDsnFields.DiagnosticCode")),
        Some("smtp; 550 5.1.1 <ghost@example.com>: mailbox does not exist")
    );
    assert!(
        !f.contains_key("BouncedRecipientInfoList.member.2.Recipient"),
        "{f:?}"
    );
    assert!(!f.contains_key("BounceSenderArn"));
}

#[tokio::test]
async fn consecutive_bounces_are_spaced_one_second_apart() {
    let (url, seen) = endpoint(200, OK.to_string()).await;
    let bouncer = SesBouncer::new(client(&url));
    bouncer.send_bounce(&request()).await.expect("first");
    bouncer.send_bounce(&request()).await.expect("second");
    let seen = seen.requests();
    assert_eq!(seen.len(), 2);
    let gap = seen[1].at.duration_since(seen[0].at);
    // A lower bound, not a speed target: SES allows one SendBounce per second.
    assert!(gap >= Duration::from_millis(950), "gap was {gap:?}");
}

#[tokio::test]
async fn throttling_is_retryable() {
    let (url, _) = endpoint(503, error_xml("Throttling", "Rate exceeded")).await;
    let err = SesBouncer::new(client(&url))
        .send_bounce(&request())
        .await
        .expect_err("throttled");
    assert_eq!(err.kind, ErrorKind::Throttled, "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn server_errors_are_retryable() {
    let (url, _) = endpoint(500, error_xml("InternalFailure", "oops")).await;
    let err = SesBouncer::new(client(&url))
        .send_bounce(&request())
        .await
        .expect_err("5xx");
    assert_eq!(err.kind, ErrorKind::Transient, "{err}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn message_rejected_is_permanent() {
    let (url, _) = endpoint(
        400,
        error_xml("MessageRejected", "Message older than 24 hours"),
    )
    .await;
    let err = SesBouncer::new(client(&url))
        .send_bounce(&request())
        .await
        .expect_err("rejected");
    assert_eq!(err.kind, ErrorKind::Permanent, "{err}");
    assert!(!err.is_retryable());
    assert!(err.message.contains("MessageRejected"), "{err}");
}

#[tokio::test]
async fn unreachable_endpoint_is_retryable() {
    // Bind and drop to get a port nobody listens on.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        l.local_addr().expect("addr").port()
    };
    let err = SesBouncer::new(client(&format!("http://127.0.0.1:{port}")))
        .send_bounce(&request())
        .await
        .expect_err("refused");
    assert!(err.is_retryable(), "{err}");
}
