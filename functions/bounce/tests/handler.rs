//! The bounce handler on the sample events in `events/lambda/bounce-*.json`, with the testkit's
//! recording `Bouncer` (the SES adapter itself is tested over the wire in `shared/tests`).

use mailroom::SesEvent;
use mailroom::diagnostic::FunctionError;
use mailroom::ports::{BounceType, DsnAction, ErrorKind};
use mailroom_bounce::{BounceError, Config, Outcome, bounce_record, handle};
use mailroom_testkit::{LogCapture, RecordingBouncer};

fn event(name: &str) -> SesEvent {
    serde_json::from_slice(&mailroom_testkit::event_file(&format!("lambda/{name}")))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

const ID: &str = "o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1";

fn config(extra: &[(&str, &str)]) -> Config {
    let mut env = vec![
        (
            "MAILROOM_MAILBOXES",
            "support@example.com @team.example.com sales@example.com",
        ),
        ("MAILROOM_BOUNCE_SENDER", "mailer-daemon@example.com"),
        ("MAILROOM_RAW_BUCKET", "mail"),
        ("MAILROOM_RAW_PREFIX", "raw"),
    ];
    env.extend_from_slice(extra);
    Config::from_env(env.as_slice()).expect("valid config")
}

#[tokio::test]
async fn unknown_recipient_is_bounced_with_a_full_dsn_and_stops_the_rule_set() {
    let rec = RecordingBouncer::default();
    let out = handle(&event("bounce-unknown.json"), &config(&[]), &rec)
        .await
        .expect("handled");
    assert_eq!(out.disposition, "STOP_RULE_SET");
    let sent = rec.sent();
    assert_eq!(sent.len(), 1);
    let req = &sent[0];
    assert_eq!(req.original_message_id, ID);
    assert_eq!(req.bounce_sender, "mailer-daemon@example.com");
    let dsn = req.message_dsn.as_ref().expect("message dsn");
    assert_eq!(
        dsn.reporting_mta,
        "dns; inbound-smtp.us-east-1.amazonaws.com"
    );
    assert_eq!(
        dsn.arrival_date.as_deref(),
        Some("2025-01-15T10:00:02.028Z")
    );
    assert_eq!(req.recipients.len(), 1);
    let r = &req.recipients[0];
    assert_eq!(r.recipient, "nobody@example.com");
    assert_eq!(r.bounce_type, Some(BounceType::DoesNotExist));
    let f = r.dsn.as_ref().expect("recipient dsn");
    assert_eq!(f.final_recipient.as_deref(), Some("nobody@example.com"));
    assert_eq!(f.action, DsnAction::Failed);
    assert_eq!(f.status, "5.1.1");
    assert!(
        f.diagnostic_code
            .as_deref()
            .is_some_and(|d| d.starts_with("smtp; 550 5.1.1 ")),
        "{f:?}"
    );
}

#[tokio::test]
async fn known_recipients_continue_without_a_bounce() {
    let rec = RecordingBouncer::default();
    let out = handle(&event("bounce-known.json"), &config(&[]), &rec)
        .await
        .expect("handled");
    assert_eq!(out.disposition, "CONTINUE");
    assert!(rec.sent().is_empty());
}

#[tokio::test]
async fn mixed_bcc_only_mail_bounces_only_the_unknown_and_continues() {
    let rec = RecordingBouncer::default();
    let ev = event("bounce-mixed.json");
    assert_eq!(ev.records[0].ses.mail.common_headers.to, None);
    let out = handle(&ev, &config(&[]), &rec).await.expect("handled");
    assert_eq!(out.disposition, "CONTINUE");
    let sent = rec.sent();
    let bounced: Vec<_> = sent[0]
        .recipients
        .iter()
        .map(|r| r.recipient.as_str())
        .collect();
    // Sales+Q1@Example.com is sales@example.com with a label: known.
    assert_eq!(bounced, ["ghost@example.com"]);
}

#[tokio::test]
async fn backscatter_is_never_sent() {
    for (name, why) in [
        ("bounce-auto-submitted.json", "Auto-Submitted"),
        ("bounce-null-sender.json", "null"),
        ("bounce-dmarc-fail.json", "SPF verdict FAIL"),
    ] {
        let rec = RecordingBouncer::default();
        let report = bounce_record(&event(name).records[0], &config(&[]), &rec)
            .await
            .expect("handled");
        assert!(rec.sent().is_empty(), "{name}");
        match &report.outcome {
            Outcome::Suppressed { reason } => assert!(reason.contains(why), "{name}: {reason}"),
            other => panic!("{name}: {other:?}"),
        }
        // Nobody here wants the mail: it stops, silently.
        assert_eq!(report.disposition.as_str(), "STOP_RULE_SET", "{name}");
    }
}

#[tokio::test]
async fn event_invocations_still_bounce() {
    let rec = RecordingBouncer::default();
    let ev = event("bounce-event-invocation.json");
    assert_eq!(
        ev.records[0].ses.receipt.action.invocation_type.as_deref(),
        Some("Event")
    );
    handle(&ev, &config(&[]), &rec).await.expect("handled");
    assert_eq!(rec.sent().len(), 1);
}

#[tokio::test]
async fn throttling_fails_the_invocation_so_lambda_retries() {
    let rec = RecordingBouncer::failing(ErrorKind::Throttled);
    let err = handle(&event("bounce-unknown.json"), &config(&[]), &rec)
        .await
        .expect_err("retry");
    assert!(err.is_retryable());
    assert!(matches!(err, BounceError::Send { .. }));
    let diag = lambda_runtime::Diagnostic::from(err);
    assert_eq!(diag.error_type, "Bounce.Retryable.Send");
}

#[tokio::test]
async fn a_permanent_refusal_lets_the_mail_continue_instead_of_losing_it() {
    let rec = RecordingBouncer::failing(ErrorKind::Permanent);
    let ev = event("bounce-unknown.json");
    let out = handle(&ev, &config(&[]), &rec).await.expect("not retried");
    assert_eq!(out.disposition, "CONTINUE");
    let report = bounce_record(&ev.records[0], &config(&[]), &rec)
        .await
        .expect("not retried");
    assert!(matches!(report.outcome, Outcome::BounceFailed { .. }));
}

#[tokio::test]
async fn policy_rejections_bounce_as_content_rejected_when_enabled() {
    let rec = RecordingBouncer::default();
    let cfg = config(&[
        ("MAILROOM_BOUNCE_REJECTED", "true"),
        ("MAILROOM_DENY_SENDERS", "example.net"),
    ]);
    let out = handle(&event("bounce-known.json"), &cfg, &rec)
        .await
        .expect("handled");
    assert_eq!(out.disposition, "STOP_RULE_SET");
    let sent = rec.sent();
    assert_eq!(
        sent[0].recipients[0].bounce_type,
        Some(BounceType::ContentRejected)
    );
}

#[tokio::test]
async fn an_event_without_records_is_a_permanent_bad_event() {
    let err = handle(
        &SesEvent { records: vec![] },
        &config(&[]),
        &RecordingBouncer::default(),
    )
    .await
    .expect_err("bad");
    assert!(!err.is_retryable());
    assert_eq!(
        lambda_runtime::Diagnostic::from(err).error_type,
        "Bounce.Permanent.BadEvent"
    );
}

#[test]
fn configuration_names_what_is_missing() {
    let e = Config::from_env(&[("MAILROOM_BOUNCE_SENDER", "a@example.com")]).expect_err("no list");
    assert!(e.to_string().contains("MAILROOM_MAILBOXES"), "{e}");
}

#[tokio::test(flavor = "current_thread")]
async fn one_structured_line_per_decision() {
    let logs = LogCapture::start();
    handle(
        &event("bounce-mixed.json"),
        &config(&[]),
        &RecordingBouncer::default(),
    )
    .await
    .expect("handled");
    let text = logs.text();
    let lines = logs.lines();
    assert_eq!(lines.len(), 1, "{text}");
    let f = &lines[0]["fields"];
    assert_eq!(f["message"], "bounce decision");
    assert_eq!(f["message_id"], ID);
    assert_eq!(f["decision"], "bounced");
    assert_eq!(f["disposition"], "CONTINUE");
    assert_eq!(f["rejected"], "ghost@example.com:DoesNotExist");
    assert_eq!(f["reasons"], "no such mailbox");
    assert_eq!(f["bounce_id"], format!("bounce-{ID}"));
}
