//! `mailroom deliver` end to end: rule semantics through the real binary, the real stop,
//! bounce, store, fanout and api handlers, and the local adapters' files.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use std::path::Path;

const BUCKET: &str = "mailroom-semantics";

fn object(state: &Path, prefix: &str, id: &str) -> std::path::PathBuf {
    state.join("s3").join(BUCKET).join(prefix).join(id)
}

#[test]
fn every_matching_rule_runs_in_order_with_its_own_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let msg = write_message(dir.path(), "support@example.com", "");
    let run = deliver(
        &msg,
        &test_template("semantics.yaml"),
        &state,
        &[
            "--to",
            "support@example.com",
            "--to",
            "someone@sub.example.org",
        ],
    );
    assert!(run.ok(), "{}", run.stderr());
    let id = run.message_id();
    assert_eq!(id.len(), 40);
    let names: Vec<&str> = run.json["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["gate", "support", "domains", "disabled", "bouncer", "last"],
        "After chains the rules in order"
    );
    // Catch-all rules take both recipients; the others only what they match.
    assert_eq!(
        run.rule("gate")["matched"],
        serde_json::json!(["support@example.com", "someone@sub.example.org"])
    );
    assert_eq!(
        run.rule("support")["matched"],
        serde_json::json!(["support@example.com"])
    );
    assert_eq!(
        run.rule("domains")["matched"],
        serde_json::json!(["support@example.com", "someone@sub.example.org"])
    );
    assert!(
        run.rule("disabled")["skipped"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );
    assert!(!run.ran("bouncer"));
    assert_eq!(
        run.rule("gate")["actions"][0]["disposition"],
        "CONTINUE",
        "the gate let PASS mail through"
    );

    // S3 keys are prefix + messageId (a `/` added after a bare prefix).
    for prefix in ["gate", "support", "domains", "last"] {
        assert!(object(&state, prefix, &id).exists(), "{prefix}/{id}");
    }
    assert!(!object(&state, "disabled", &id).exists());
    // AddHeader reached the gate's S3 copy, placed above SES's own headers, and later rules.
    let gate = std::fs::read_to_string(object(&state, "gate", &id)).unwrap();
    assert!(
        gate.starts_with(
            "X-Gate: passed\r\nReturn-Path: <jane@sender.example.net>\r\nReceived: from localhost"
        ),
        "{gate}"
    );
    assert!(gate.contains(&format!("with SMTP id {id} for support@example.com")));
    assert!(gate.contains("X-SES-Spam-Verdict: PASS\r\n"));
    let support = std::fs::read_to_string(object(&state, "support", &id)).unwrap();
    assert!(support.starts_with("X-Gate: passed\r\n"));
    assert!(support.ends_with("Hello there.\r\n"));
    // The S3 action's alert topic got a notification without content.
    let alerts = std::fs::read_to_string(state.join("sns/mailroom-Alerts.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(alerts.lines().next().unwrap()).unwrap();
    let note: serde_json::Value =
        serde_json::from_str(line["publication"]["message"].as_str().unwrap()).unwrap();
    assert_eq!(note["notificationType"], "Received");
    assert_eq!(note["receipt"]["action"]["type"], "S3");
    assert_eq!(
        note["receipt"]["action"]["objectKey"],
        format!("domains/{id}")
    );
    assert!(note.get("content").is_none());
}

#[test]
fn stop_rule_set_from_the_gate_ends_everything() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let msg = write_message(dir.path(), "support@example.com", "");
    let run = deliver(
        &msg,
        &test_template("semantics.yaml"),
        &state,
        &["--to", "support@example.com", "--verdict", "spam=FAIL"],
    );
    assert!(run.ok(), "{}", run.stderr());
    let gate = run.rule("gate");
    assert_eq!(gate["actions"][0]["disposition"], "STOP_RULE_SET");
    assert_eq!(gate["endedBy"], "STOP_RULE_SET");
    assert_eq!(gate["actions"].as_array().unwrap().len(), 1);
    assert!(!run.has_rule("support") && !run.has_rule("last"));
    assert!(
        run.json["stopped"]
            .as_str()
            .unwrap()
            .contains("STOP_RULE_SET")
    );
    assert!(!state.join("s3").exists(), "nothing was stored");
}

#[test]
fn stop_rule_from_the_gate_skips_only_the_rest_of_its_rule() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // The verdict comes from the test header this time.
    let msg = write_message(
        dir.path(),
        "support@example.com",
        "X-Mailroom-Verdicts: spam=FAIL\r\n",
    );
    let run = deliver(
        &msg,
        &test_template("semantics.yaml"),
        &state,
        &[
            "--to",
            "support@example.com",
            "--param",
            "GateDisposition=STOP_RULE",
        ],
    );
    assert!(run.ok(), "{}", run.stderr());
    let id = run.message_id();
    assert_eq!(run.rule("gate")["endedBy"], "STOP_RULE");
    assert!(!object(&state, "gate", &id).exists());
    assert!(run.ran("support") && run.ran("last"));
    assert!(object(&state, "last", &id).exists());
    let last = std::fs::read_to_string(object(&state, "last", &id)).unwrap();
    assert!(
        !last.contains("X-Gate"),
        "the skipped AddHeader never applied"
    );
    assert!(last.contains("X-SES-Spam-Verdict: FAIL\r\n"));
}

#[test]
fn bounce_action_sends_a_dsn_and_stop_ends_the_rule_set() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let msg = write_message(dir.path(), "nobody@example.com", "");
    let run = deliver(
        &msg,
        &test_template("semantics.yaml"),
        &state,
        &["--to", "nobody@example.com"],
    );
    assert!(run.ok(), "{}", run.stderr());
    let id = run.message_id();
    let bouncer = run.rule("bouncer");
    assert_eq!(bouncer["endedBy"], "Stop action");
    assert!(!run.has_rule("last"));
    let dsn = state.join("outbox").join(format!("{id}-bounce-1.json"));
    let req: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dsn).unwrap()).unwrap();
    assert_eq!(req["original_message_id"], id.as_str());
    assert_eq!(req["bounce_sender"], "mailer-daemon@mailroom.example.com");
    assert_eq!(req["recipients"][0]["recipient"], "nobody@example.com");
    assert_eq!(req["recipients"][0]["bounce_type"], "DoesNotExist");
    assert_eq!(req["recipients"][0]["dsn"]["status"], "5.1.1");
    // The DSN SES would mail back to the envelope sender.
    let eml = std::fs::read_to_string(dsn.with_extension("eml")).unwrap();
    assert!(eml.contains("\r\nTo: jane@sender.example.net\r\n"), "{eml}");
    assert!(eml.contains("report-type=delivery-status"));
    assert!(eml.contains(
        "Final-Recipient: rfc822; nobody@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
    ));
    assert!(
        eml.contains("Subject: Hello\r\n"),
        "original headers are attached"
    );
    assert!(
        bouncer["actions"][0]["outputs"][0]
            .as_str()
            .unwrap()
            .contains("SendBounce")
    );
}

#[test]
fn project_template_stores_publishes_and_queues_the_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let run = deliver(
        &root().join("events/mail/multipart-alternative.eml"),
        &root().join("template.yaml"),
        &state,
        &["--to", "support@example.com", "--param", DEAD_WEBHOOK],
    );
    assert!(run.ok(), "{}", run.stderr());
    let id = run.message_id();
    assert_eq!(run.rule("gate")["actions"][0]["disposition"], "CONTINUE");
    assert_eq!(run.rule("gate")["actions"][1]["disposition"], "CONTINUE");
    let receive = run.rule("receive");
    let kinds: Vec<&str> = receive["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["description"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "S3 s3://mailroom-rawmailbucket/raw/",
            "Lambda mailroom-StoreFunction (Event)",
            "Lambda mailroom-FanoutFunction (Event)",
            "Lambda mailroom-ApiFunction (Event)",
            "Lambda mailroom-ForwardFunction (Event)"
        ]
    );
    for a in receive["actions"].as_array().unwrap() {
        assert_eq!(a["status"]["status"], "ok", "{a}");
    }
    let bucket = state.join("s3/mailroom-rawmailbucket");
    assert!(bucket.join("raw").join(&id).exists());
    let stored: Vec<_> = walk(&bucket.join("messages"));
    assert!(
        stored.iter().any(|p| p.ends_with("message.json")),
        "{stored:?}"
    );
    let topic = std::fs::read_to_string(state.join("sns/mailroom-MailTopic.jsonl")).unwrap();
    assert!(topic.contains(&id));
    // The webhook endpoint is down: the api function queued the retry locally.
    let queued = walk(&state.join("sqs/mailroom-WebhookRetryQueue"));
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert!(state.join("webhook-secret").exists());
}

#[test]
fn project_template_bounces_unknown_mailboxes_through_the_bounce_function() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let msg = write_message(dir.path(), "nobody@example.com", "");
    let run = deliver(
        &msg,
        &root().join("template.yaml"),
        &state,
        &[
            "--to",
            "nobody@example.com",
            "--param",
            "Mailboxes=support@example.com",
            "--param",
            DEAD_WEBHOOK,
        ],
    );
    assert!(run.ok(), "{}", run.stderr());
    let gate = run.rule("gate");
    assert_eq!(gate["actions"][1]["disposition"], "STOP_RULE_SET");
    assert!(!run.has_rule("receive"));
    let outbox: Vec<_> = walk(&state.join("outbox"));
    assert_eq!(outbox.len(), 2, "a request and its DSN: {outbox:?}");
    let json = outbox
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .unwrap();
    let req: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(req["recipients"][0]["recipient"], "nobody@example.com");
    assert!(!state.join("s3").exists());
}

#[test]
fn unmatched_recipients_are_refused_and_the_exit_status_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let msg = write_message(dir.path(), "a@example.net", "");
    let run = deliver(
        &msg,
        &root().join("template.yaml"),
        &state,
        &["--to", "a@example.net", "--param", DEAD_WEBHOOK],
    );
    assert!(!run.ok());
    assert!(run.stderr().contains("550 5.1.1"), "{}", run.stderr());
    assert_eq!(run.json["rejected"], serde_json::json!(["a@example.net"]));
}

#[test]
fn deliver_client_ip_tries_the_ip_filters() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let msg = write_message(dir.path(), "support@example.com", "");
    let filters = [
        "--param=BlockedCidrs=0.0.0.0/0,2001:db8::/32",
        "--param=AllowedCidrs=192.0.2.0/24",
    ];
    let from = |ip: &str| {
        let args = [
            &filters[..],
            &["--to=support@example.com", "--client-ip", ip],
        ]
        .concat();
        let args = [&args[..], &["--param", DEAD_WEBHOOK]].concat();
        deliver(&msg, &root().join("template.yaml"), &state, &args)
    };
    let refused = from("203.0.113.9");
    assert!(!refused.ok());
    assert!(
        refused
            .stderr()
            .contains("refused by IP filter BlockFilter0 (Block 0.0.0.0/0)"),
        "{}",
        refused.stderr()
    );
    assert_eq!(refused.json["ipFilter"]["refused"], true);
    assert_eq!(refused.json["rules"], serde_json::json!([]), "no rule runs");
    let v6 = from("2001:db8::25");
    assert!(!v6.ok());
    assert_eq!(v6.json["ipFilter"]["filter"]["name"], "BlockFilter1");
    let allowed = from("192.0.2.5");
    assert!(allowed.ok(), "{}", allowed.stderr());
    assert_eq!(allowed.json["ipFilter"]["filter"]["name"], "AllowFilter0");
    assert_eq!(
        allowed.json["ipFilter"]["overrides"]["name"],
        "BlockFilter0"
    );
    assert!(allowed.ran("receive"));
    // Without filters the trace says nothing of them, as before.
    let plain = deliver(
        &msg,
        &root().join("template.yaml"),
        &state,
        &["--to", "support@example.com", "--param", DEAD_WEBHOOK],
    );
    assert!(plain.json.get("ipFilter").is_none(), "{}", plain.json);
}

#[test]
fn bad_input_fails_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let msg = write_message(dir.path(), "support@example.com", "");
    let bad_verdict = deliver(
        &msg,
        &root().join("template.yaml"),
        &state,
        &["--to", "support@example.com", "--verdict", "spam=MAYBE"],
    );
    assert!(!bad_verdict.ok());
    assert!(bad_verdict.stderr().contains("spam=MAYBE"));
    let bad_param = deliver(
        &msg,
        &root().join("template.yaml"),
        &state,
        &[
            "--to",
            "support@example.com",
            "--param",
            "TlsPolicy=Sometimes",
        ],
    );
    assert!(!bad_param.ok());
    assert!(bad_param.stderr().contains("Parameters.TlsPolicy"));
    let tpl = dir.path().join("bad.yaml");
    std::fs::write(
        &tpl,
        "Resources:\n  S:\n    Type: AWS::SES::ReceiptRuleSet\n  R:\n    Type: AWS::SES::ReceiptRule\n    Properties:\n      RuleSetName: !Ref S\n      Rule:\n        Name: r\n        Enabled: true\n        Actions:\n          - S3Action: { BucketName: !ImportValue elsewhere }\n",
    )
    .unwrap();
    let unsupported = deliver(&msg, &tpl, &state, &["--to", "support@example.com"]);
    assert!(!unsupported.ok());
    let err = unsupported.stderr();
    assert!(
        err.contains("ImportValue") && err.contains("Resources.R.Properties.Rule"),
        "{err}"
    );
}

#[test]
fn tls_required_rules_run_only_for_tls_mail() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let msg = write_message(dir.path(), "a@secure.example.com", "");
    let plain = deliver(
        &msg,
        &test_template("strict.yaml"),
        &state,
        &["--to", "a@secure.example.com"],
    );
    assert!(plain.ok(), "{}", plain.stderr());
    assert!(
        plain.rule("secure")["skipped"]
            .as_str()
            .unwrap()
            .contains("TLS")
    );
    let tls = deliver(
        &msg,
        &test_template("strict.yaml"),
        &state,
        &["--to", "a@secure.example.com", "--tls"],
    );
    assert!(tls.ran("secure"));
    assert!(
        state
            .join("s3/strict-bucket")
            .join(tls.message_id())
            .exists()
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn sns_action_ships_the_content_up_to_150_kb() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let msg = write_message(dir.path(), "a@example.com", "");
    let run = deliver(
        &msg,
        &test_template("sns.yaml"),
        &state,
        &["--to", "a@example.com"],
    );
    assert!(run.ok(), "{}", run.stderr());
    let lines = std::fs::read_to_string(state.join("sns/inbound.jsonl")).unwrap();
    let line: serde_json::Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(
        line["publication"]["subject"],
        "Amazon SES Email Receipt Notification"
    );
    let note: serde_json::Value =
        serde_json::from_str(line["publication"]["message"].as_str().unwrap()).unwrap();
    assert_eq!(note["receipt"]["action"]["encoding"], "UTF8");
    assert_eq!(note["receipt"]["spamVerdict"]["status"], "DISABLED");
    let content = note["content"].as_str().unwrap();
    assert!(content.starts_with("Return-Path: <jane@sender.example.net>\r\n"));
    assert!(content.ends_with("Hello there.\r\n"));

    let big = dir.path().join("big.eml");
    let mut text = std::fs::read(&msg).unwrap();
    text.extend(std::iter::repeat_n(b'x', 151 * 1024));
    std::fs::write(&big, text).unwrap();
    let run = deliver(
        &big,
        &test_template("sns.yaml"),
        &state,
        &["--to", "a@example.com"],
    );
    assert!(!run.ok());
    let action = &run.rule("notify")["actions"][0];
    assert_eq!(action["status"]["status"], "failed");
    assert!(
        action["status"]["error"]
            .as_str()
            .unwrap()
            .contains("150 KB")
    );
    assert_eq!(
        std::fs::read_to_string(state.join("sns/inbound.jsonl"))
            .unwrap()
            .lines()
            .count(),
        1
    );
}

#[test]
fn a_function_that_keeps_failing_is_retried_then_dead_lettered_and_the_raw_mail_stays() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // A file where store wants its messages/ folder: every write of the layout fails.
    let bucket = state.join("s3/mailroom-rawmailbucket");
    std::fs::create_dir_all(&bucket).unwrap();
    std::fs::write(bucket.join("messages"), b"in the way").unwrap();
    let msg = write_message(dir.path(), "support@example.com", "");
    let run = deliver(
        &msg,
        &root().join("template.yaml"),
        &state,
        &["--to", "support@example.com", "--param", DEAD_WEBHOOK],
    );
    assert!(!run.ok(), "a failed action fails the run");
    let id = run.message_id();
    let store = &run.rule("receive")["actions"][1];
    assert_eq!(store["status"]["status"], "failed");
    let error = store["status"]["error"].as_str().unwrap();
    assert!(error.contains("failed 3 attempts"), "{error}");
    assert!(error.contains("InvocationDeadLetterQueue"), "{error}");
    // The raw message is still there, and the DLQ holds the whole SES event.
    assert!(bucket.join("raw").join(&id).exists());
    let dlq = walk(&state.join("sqs/mailroom-InvocationDeadLetterQueue"));
    assert_eq!(dlq.len(), 1, "{dlq:?}");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&dlq[0]).unwrap()).unwrap();
    let body: serde_json::Value = serde_json::from_str(record["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(body["requestContext"]["approximateInvokeCount"], 3);
    assert_eq!(
        body["requestPayload"]["Records"][0]["ses"]["mail"]["messageId"],
        id.as_str()
    );
    // The later actions still ran.
    assert_eq!(run.rule("receive")["actions"][2]["status"]["status"], "ok");
}

#[test]
fn with_a_kms_key_the_raw_mail_is_stored_encrypted_and_the_functions_decrypt_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    let eml = root().join("events/mail/multipart-alternative.eml");
    let run = deliver(
        &eml,
        &root().join("template.yaml"),
        &state,
        &[
            "--to",
            "support@example.com",
            "--param",
            DEAD_WEBHOOK,
            "--param",
            &format!("KmsKeyArn={key}"),
        ],
    );
    assert!(run.ok(), "{}", run.stderr());
    let id = run.message_id();
    for a in run.rule("receive")["actions"].as_array().unwrap() {
        assert_eq!(a["status"]["status"], "ok", "{a}");
    }
    // On disk: ciphertext, its envelope beside it.
    let raw = std::fs::read(state.join("s3/mailroom-rawmailbucket/raw").join(&id)).unwrap();
    let subject = b"Subject:";
    assert!(!raw.windows(subject.len()).any(|w| w == subject));
    let meta = std::fs::read_to_string(
        state.join(format!("s3-meta/mailroom-rawmailbucket/raw/{id}.json")),
    )
    .unwrap();
    let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
    assert_eq!(meta["metadata"]["x-amz-cek-alg"], "AES/GCM/NoPadding");
    assert!(
        meta["metadata"]["x-amz-matdesc"]
            .as_str()
            .unwrap()
            .contains(&id)
    );
    // What the functions made of it: the decrypted message.
    let stored = walk(&state.join("s3/mailroom-rawmailbucket/messages"));
    let json = stored.iter().find(|p| p.ends_with("message.json")).unwrap();
    let model: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    let original = std::fs::read_to_string(&eml).unwrap();
    let subject = model["subject"].as_str().unwrap();
    assert!(original.contains(subject), "{subject}");
    let topic = std::fs::read_to_string(state.join("sns/mailroom-MailTopic.jsonl")).unwrap();
    assert!(topic.contains(subject));
}
