//! Rule semantics, checked against a recording executor.
#![allow(clippy::unwrap_used)]

use super::*;
use crate::error::{ActionError, FunctionError};
use mailroom::ses::{SesEvent, Verdict};
use std::collections::HashMap;
use std::sync::Mutex;

/// Records every step; Lambda functions answer with the disposition scripted for their name.
#[derive(Default)]
struct Recorder {
    dispositions: HashMap<String, String>,
    failing: Vec<String>,
    calls: Mutex<Vec<Call>>,
}

#[derive(Debug, Clone)]
struct Call {
    rule: String,
    what: String,
    recipients: Vec<String>,
    event: SesEvent,
    message: Vec<u8>,
}

#[async_trait::async_trait]
impl Executor for Recorder {
    async fn execute(&self, step: &Step<'_>) -> Result<Outcome, ActionError> {
        let what = match step.action {
            Action::Lambda { function_arn, .. } => {
                function_arn.rsplit(':').next().unwrap_or("").to_string()
            }
            other => other.kind().to_string(),
        };
        self.calls.lock().unwrap().push(Call {
            rule: step.rule.name.clone(),
            what: what.clone(),
            recipients: step.receipt.recipients.clone(),
            event: step.event(),
            message: step.message.to_vec(),
        });
        if self.failing.contains(&what) {
            return Err(FunctionError::new(format!("{what} failed")).into());
        }
        Ok(Outcome {
            disposition: self.dispositions.get(&what).cloned(),
            outputs: step.object_key().into_iter().collect(),
            summary: None,
        })
    }
}

impl Recorder {
    fn with(dispositions: &[(&str, &str)]) -> Self {
        Recorder {
            dispositions: dispositions
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Recorder::default()
        }
    }
    fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
    fn sequence(&self) -> Vec<String> {
        self.calls()
            .iter()
            .map(|c| format!("{}/{}", c.rule, c.what))
            .collect()
    }
}

fn lambda(name: &str, rr: bool) -> Action {
    Action::Lambda {
        function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
        invocation_type: if rr {
            InvocationType::RequestResponse
        } else {
            InvocationType::Event
        },
        topic_arn: None,
    }
}

fn s3(prefix: &str) -> Action {
    Action::S3 {
        bucket: "raw-bucket".into(),
        prefix: prefix.into(),
        topic_arn: None,
        kms_key_arn: None,
    }
}

fn rule(name: &str, recipients: &[&str], actions: Vec<Action>) -> Rule {
    Rule {
        name: name.into(),
        enabled: true,
        scan_enabled: true,
        tls_policy: TlsPolicy::Optional,
        recipients: recipients.iter().map(|s| s.to_string()).collect(),
        actions,
    }
}

fn set(rules: Vec<Rule>) -> RuleSet {
    RuleSet {
        name: "test-set".into(),
        rules,
    }
}

const RAW: &[u8] = b"From: Jane <jane@sender.net>\r\nTo: support@example.com, Bob <bob@example.com>\r\nSubject: Hello\r\nMessage-ID: <abc@sender.net>\r\nDate: Wed, 15 Jan 2025 10:00:00 +0000\r\n\r\nHi.\r\n";

fn inbound(recipients: &[&str]) -> Inbound {
    Inbound {
        raw: RAW.to_vec(),
        envelope: Envelope {
            mail_from: "bounce+x=jane@sender.net".into(),
            recipients: recipients.iter().map(|s| s.to_string()).collect(),
            helo: "mx.sender.net".into(),
            client_ip: "127.0.0.1".into(),
            tls: false,
        },
        verdicts: Verdicts::default(),
        message_id: new_message_id(),
        received_at: time::OffsetDateTime::now_utc(),
        region: "us-east-1".into(),
    }
}

#[tokio::test]
async fn every_matching_rule_runs_in_order_with_its_own_recipients() {
    let rs = set(vec![
        rule("catch-all", &[], vec![lambda("all", false)]),
        rule(
            "support",
            &["support@example.com"],
            vec![lambda("sup", false)],
        ),
        rule("other-domain", &["example.org"], vec![lambda("org", false)]),
        rule("domain", &["example.com"], vec![lambda("dom", false)]),
    ]);
    let rec = Recorder::default();
    let trace = evaluate(
        &rs,
        &inbound(&["support@example.com", "bob@example.com"]),
        &rec,
    )
    .await;
    assert_eq!(
        rec.sequence(),
        vec!["catch-all/all", "support/sup", "domain/dom"]
    );
    let calls = rec.calls();
    assert_eq!(
        calls[0].recipients,
        vec!["support@example.com", "bob@example.com"]
    );
    assert_eq!(calls[1].recipients, vec!["support@example.com"]);
    assert_eq!(
        calls[2].recipients,
        vec!["support@example.com", "bob@example.com"]
    );
    assert_eq!(
        trace.rules[2].skipped.as_deref(),
        Some("no recipient matched")
    );
    assert!(trace.stopped.is_none());
    assert!(trace.rejected.is_empty());
}

#[tokio::test]
async fn stop_rule_skips_the_rest_of_the_rule_only() {
    let rs = set(vec![
        rule(
            "gate",
            &[],
            vec![lambda("stop", true), lambda("after-stop", false)],
        ),
        rule("receive", &[], vec![s3("raw"), lambda("store", false)]),
    ]);
    let rec = Recorder::with(&[("stop", "stop_rule")]);
    let trace = evaluate(&rs, &inbound(&["a@example.com"]), &rec).await;
    assert_eq!(
        rec.sequence(),
        vec!["gate/stop", "receive/S3", "receive/store"]
    );
    assert_eq!(trace.rules[0].ended_by.as_deref(), Some("STOP_RULE"));
    assert_eq!(
        trace.rules[0].actions[0].disposition.as_deref(),
        Some("STOP_RULE")
    );
    assert!(trace.stopped.is_none());
}

#[tokio::test]
async fn stop_rule_set_ends_everything_in_any_case() {
    for returned in ["STOP_RULE_SET", "stop_rule_set", "Stop_Rule_Set"] {
        let rs = set(vec![
            rule(
                "gate",
                &[],
                vec![lambda("stop", true), lambda("bounce", true)],
            ),
            rule("receive", &[], vec![s3("raw"), lambda("store", false)]),
        ]);
        let rec = Recorder::with(&[("stop", returned)]);
        let trace = evaluate(&rs, &inbound(&["a@example.com"]), &rec).await;
        assert_eq!(rec.sequence(), vec!["gate/stop"], "{returned}");
        assert_eq!(trace.rules.len(), 1, "later rules are not even listed");
        assert!(trace.stopped.as_deref().unwrap().contains("STOP_RULE_SET"));
    }
}

#[tokio::test]
async fn dispositions_of_event_invocations_and_junk_are_ignored() {
    let rs = set(vec![
        rule(
            "one",
            &[],
            vec![
                lambda("event", false),
                lambda("junk", true),
                lambda("last", false),
            ],
        ),
        rule("two", &[], vec![lambda("next", false)]),
    ]);
    let rec = Recorder::with(&[("event", "STOP_RULE_SET"), ("junk", "HALT")]);
    let trace = evaluate(&rs, &inbound(&["a@example.com"]), &rec).await;
    assert_eq!(
        rec.sequence(),
        vec!["one/event", "one/junk", "one/last", "two/next"]
    );
    assert_eq!(
        trace.rules[0].actions[1].disposition.as_deref(),
        Some("CONTINUE")
    );
    assert!(
        trace.rules[0].actions[0]
            .summary
            .as_deref()
            .unwrap()
            .contains("ignored")
    );
}

#[tokio::test]
async fn stop_action_ends_the_rule_set() {
    let rs = set(vec![
        rule(
            "bouncer",
            &["nobody@example.com"],
            vec![
                Action::Bounce {
                    smtp_reply_code: "550".into(),
                    status_code: Some("5.1.1".into()),
                    message: "Mailbox does not exist".into(),
                    sender: "mailer-daemon@example.com".into(),
                    topic_arn: None,
                },
                Action::Stop { topic_arn: None },
                lambda("never", false),
            ],
        ),
        rule("receive", &[], vec![lambda("store", false)]),
    ]);
    let rec = Recorder::default();
    let trace = evaluate(&rs, &inbound(&["nobody@example.com"]), &rec).await;
    assert_eq!(rec.sequence(), vec!["bouncer/Bounce", "bouncer/Stop"]);
    assert_eq!(trace.rules[0].ended_by.as_deref(), Some("Stop action"));
    let action = &rec.calls()[0].event.records[0].ses.receipt.action;
    assert_eq!(action.kind, "Bounce");
    assert_eq!(action.smtp_reply_code.as_deref(), Some("550"));
    assert_eq!(action.sender.as_deref(), Some("mailer-daemon@example.com"));

    // Another recipient does not match the bouncing rule and goes through.
    let rec = Recorder::default();
    evaluate(&rs, &inbound(&["someone@example.com"]), &rec).await;
    assert_eq!(rec.sequence(), vec!["receive/store"]);
}

#[tokio::test]
async fn disabled_rules_and_unmatched_recipients() {
    let mut off = rule("off", &[], vec![lambda("off", false)]);
    off.enabled = false;
    let rs = set(vec![
        off,
        rule("com", &["example.com"], vec![lambda("com", false)]),
    ]);
    assert!(
        !rs.accepts("a@example.org"),
        "only a disabled rule takes it"
    );
    assert!(rs.accepts("A@Example.COM"));
    let rec = Recorder::default();
    let trace = evaluate(&rs, &inbound(&["a@example.com", "b@example.org"]), &rec).await;
    assert_eq!(rec.sequence(), vec!["com/com"]);
    assert_eq!(trace.rejected, vec!["b@example.org"]);
    assert_eq!(rec.calls()[0].recipients, vec!["a@example.com"]);
    assert!(
        trace.rules[0]
            .skipped
            .as_deref()
            .unwrap()
            .contains("disabled")
    );
}

#[tokio::test]
async fn add_header_reaches_later_actions_and_rules_only() {
    let rs = set(vec![
        rule(
            "tagger",
            &[],
            vec![
                s3("before"),
                Action::AddHeader {
                    name: "X-Tag".into(),
                    value: "yes".into(),
                },
                s3("after"),
            ],
        ),
        rule("later", &[], vec![lambda("store", false)]),
    ]);
    let rec = Recorder::default();
    let trace = evaluate(&rs, &inbound(&["a@example.com"]), &rec).await;
    let calls = rec.calls();
    assert_eq!(calls.len(), 3, "AddHeader never reaches the executor");
    assert!(!calls[0].message.windows(6).any(|w| w == b"X-Tag:"));
    assert!(calls[1].message.starts_with(b"X-Tag: yes\r\nReturn-Path: "));
    let later = &calls[2].event.records[0].ses.mail.headers;
    assert_eq!(later[0].name, "X-Tag");
    assert_eq!(later[1].name, "Return-Path");
    assert!(trace.final_message.starts_with(b"X-Tag: yes\r\n"));
}

#[tokio::test]
async fn lambda_events_have_the_ses_shape() {
    let rs = set(vec![rule(
        "receive",
        &["example.com"],
        vec![s3("raw/"), lambda("store", false)],
    )]);
    let mut input = inbound(&["support@example.com"]);
    input
        .verdicts
        .apply("dmarc=FAIL dmarc-policy=reject")
        .unwrap();
    let rec = Recorder::default();
    let trace = evaluate(&rs, &input, &rec).await;
    let calls = rec.calls();
    let s3_call = &calls[0];
    assert!(
        s3_call.message.starts_with(
            b"Return-Path: <bounce+x=jane@sender.net>\r\nReceived: from mx.sender.net"
        )
    );
    assert!(s3_call.message.ends_with(RAW));
    assert_eq!(
        trace.rules[0].actions[0].outputs,
        vec![format!("raw/{}", input.message_id)]
    );

    let json = serde_json::to_value(&calls[1].event).unwrap();
    let rec0 = &json["Records"][0];
    assert_eq!(rec0["eventSource"], "aws:ses");
    assert_eq!(rec0["eventVersion"], "1.0");
    let mail = &rec0["ses"]["mail"];
    assert_eq!(mail["messageId"], input.message_id.as_str());
    assert_eq!(mail["source"], "bounce+x=jane@sender.net");
    assert_eq!(
        mail["destination"],
        serde_json::json!(["support@example.com", "bob@example.com"])
    );
    assert_eq!(mail["headersTruncated"], false);
    assert_eq!(mail["headers"][0]["name"], "Return-Path");
    assert_eq!(mail["headers"][7]["name"], "From");
    let common = mail["commonHeaders"].as_object().unwrap();
    let mut keys: Vec<&str> = common.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        vec!["date", "from", "messageId", "returnPath", "subject", "to"]
    );
    let receipt = &rec0["ses"]["receipt"];
    assert_eq!(
        receipt["recipients"],
        serde_json::json!(["support@example.com"])
    );
    assert_eq!(receipt["spamVerdict"]["status"], "PASS");
    assert_eq!(receipt["dmarcVerdict"]["status"], "FAIL");
    assert_eq!(receipt["dmarcPolicy"], "reject");
    assert!(receipt["processingTimeMillis"].is_u64());
    assert_eq!(receipt["action"]["type"], "Lambda");
    assert_eq!(receipt["action"]["invocationType"], "Event");
    assert_eq!(
        receipt["action"]["functionArn"],
        "arn:aws:lambda:us-east-1:123456789012:function:store"
    );
    // Round-trips through our own tolerant types.
    let back: SesEvent = serde_json::from_value(json).unwrap();
    assert_eq!(back.records[0].ses.receipt.spam(), Some(&Verdict::Pass));
}

#[tokio::test]
async fn scanning_off_reports_disabled_and_tls_required_rules_wait_for_tls() {
    let mut plain = rule("plain", &[], vec![lambda("f", false)]);
    plain.scan_enabled = false;
    let mut strict = rule("strict", &[], vec![lambda("g", false)]);
    strict.tls_policy = TlsPolicy::Require;
    let rs = set(vec![plain, strict]);
    let rec = Recorder::default();
    let trace = evaluate(&rs, &inbound(&["a@example.com"]), &rec).await;
    assert_eq!(rec.sequence(), vec!["plain/f"]);
    assert!(trace.rules[1].skipped.as_deref().unwrap().contains("TLS"));
    let receipt = &rec.calls()[0].event.records[0].ses.receipt;
    assert_eq!(receipt.spam(), Some(&Verdict::Disabled));
    assert_eq!(receipt.virus(), Some(&Verdict::Disabled));
    assert!(
        !rs.requires_tls("a@example.com"),
        "plain takes it without TLS"
    );

    let mut tls_in = inbound(&["a@example.com"]);
    tls_in.envelope.tls = true;
    let rec = Recorder::default();
    evaluate(&rs, &tls_in, &rec).await;
    assert_eq!(rec.sequence(), vec!["plain/f", "strict/g"]);

    let mut only_strict = rule("strict", &[], vec![]);
    only_strict.tls_policy = TlsPolicy::Require;
    assert!(set(vec![only_strict]).requires_tls("a@example.com"));
}

#[tokio::test]
async fn failing_actions_are_recorded_and_evaluation_goes_on() {
    let rs = set(vec![rule(
        "r",
        &[],
        vec![lambda("broken", true), lambda("next", false)],
    )]);
    let rec = Recorder {
        failing: vec!["broken".into()],
        ..Recorder::default()
    };
    let trace = evaluate(&rs, &inbound(&["a@example.com"]), &rec).await;
    assert_eq!(rec.sequence(), vec!["r/broken", "r/next"]);
    assert!(trace.failed());
    assert_eq!(
        trace.rules[0].actions[0].status,
        Status::Failed {
            error: "broken failed".into()
        }
    );
}

#[test]
fn validation_enforces_ses_constraints() {
    assert!(set(vec![rule("ok.rule-1", &[], vec![])]).validate().is_ok());
    assert!(set(vec![rule("-bad", &[], vec![])]).validate().is_err());
    assert!(
        set(vec![rule("a", &[], vec![]), rule("a", &[], vec![])])
            .validate()
            .is_err()
    );
    let header = |n: &str, v: &str| Action::AddHeader {
        name: n.into(),
        value: v.into(),
    };
    assert!(
        set(vec![rule("a", &[], vec![header("X Bad", "v")])])
            .validate()
            .is_err()
    );
    assert!(
        set(vec![rule("a", &[], vec![header("X-Ok", "a\r\nb")])])
            .validate()
            .is_err()
    );
    let many: Vec<Action> = (0..11).map(|_| Action::Stop { topic_arn: None }).collect();
    assert!(set(vec![rule("a", &[], many)]).validate().is_err());
}
