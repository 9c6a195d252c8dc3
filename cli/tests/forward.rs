//! `mailroom deliver` with the project's template and a forward map: the forward function runs in
//! process after the S3 action, writes what SES would send to `.mailroom/outbox/`, and says so in
//! the trace with one `deliver` line per destination.
#![allow(clippy::unwrap_used)]

mod common;

use common::{DEAD_WEBHOOK, deliver, root};

#[test]
fn deliver_forwards_to_every_destination_through_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let run = deliver(
        &root().join("events/mail/forward/dkim-signatures.eml"),
        &root().join("template.yaml"),
        &state,
        &[
            "--to",
            "info@example.com",
            "--from",
            "ana@sender.example.net",
            "--param",
            DEAD_WEBHOOK,
            "--param",
            "ForwardMap=info@example.com=me@gmail.com,team@outlook.com; @example.com=attach:all@gmail.com",
        ],
    );
    assert!(run.ok(), "{}", run.stderr());
    let forward = run.rule("receive")["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["description"] == "Lambda mailroom-ForwardFunction (Event)")
        .cloned()
        .unwrap();
    assert_eq!(forward["status"]["status"], "ok", "{forward}");
    let lines: Vec<&str> = forward["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.as_str())
        .filter(|o| o.starts_with("deliver "))
        .collect();
    assert_eq!(lines.len(), 2, "{forward}");
    assert!(lines[0].starts_with("deliver me@gmail.com → "), "{lines:?}");
    assert!(
        lines[1].starts_with("deliver team@outlook.com → "),
        "{lines:?}"
    );
    let mut emls: Vec<_> = std::fs::read_dir(state.join("outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    emls.sort();
    assert_eq!(emls.len(), 2, "{emls:?}");
    for eml in &emls {
        let raw = std::fs::read(eml).unwrap();
        assert_eq!(
            mailroom_forward::ses_rules::validate_for(&raw, "forwarder@example.com"),
            vec![],
            "{}",
            eml.display()
        );
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("From: \"Ana Lopez via example.com\" <forwarder@example.com>"));
        let envelope: serde_json::Value =
            serde_json::from_slice(&std::fs::read(eml.with_extension("json")).unwrap()).unwrap();
        assert_eq!(envelope["FromEmailAddress"], "forwarder@example.com");
    }
    // The markers: one per destination, beside the raw mail.
    let id = run.message_id();
    let markers = state.join("s3/mailroom-rawmailbucket/forwarded").join(&id);
    assert!(markers.join("me@gmail.com").exists());
    assert!(markers.join("team@outlook.com").exists());
}

#[test]
fn without_a_map_nothing_is_forwarded_and_the_trace_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let run = deliver(
        &root().join("events/mail/multipart-alternative.eml"),
        &root().join("template.yaml"),
        &state,
        &["--to", "support@example.com", "--param", DEAD_WEBHOOK],
    );
    assert!(run.ok(), "{}", run.stderr());
    let forward = &run.rule("receive")["actions"][4];
    assert_eq!(
        forward["description"],
        "Lambda mailroom-ForwardFunction (Event)"
    );
    let summary = forward["summary"].as_str().unwrap();
    assert!(summary.contains("no forward map entry"), "{summary}");
    assert!(!state.join("outbox").exists());
}
