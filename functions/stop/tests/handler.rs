//! The stop handler on the sample events in `events/lambda/stop-*.json`.

use mailroom::SesEvent;
use mailroom::diagnostic::FunctionError;
use mailroom::policy::{Action, Rule, SizeCheck};
use mailroom::ports::ErrorKind;
use mailroom_stop::{Config, StopError, decide, handle};
use mailroom_testkit::{LogCapture, MemoryStore};

fn event(name: &str) -> SesEvent {
    serde_json::from_slice(&mailroom_testkit::event_file(&format!("lambda/{name}")))
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn config(env: &[(&str, &str)]) -> Config {
    Config::from_env(env).expect("valid config")
}

async fn disposition(name: &str, env: &[(&str, &str)]) -> String {
    handle(&event(name), &config(env), None)
        .await
        .expect("decided")
        .disposition
}

#[tokio::test]
async fn fixtures_get_the_default_policy_answers() {
    let expected = [
        ("stop-clean.json", "CONTINUE"),
        ("stop-spam-fail.json", "STOP_RULE_SET"),
        ("stop-virus-fail.json", "STOP_RULE_SET"),
        ("stop-dmarc-reject.json", "STOP_RULE_SET"),
        // quarantine and SPF FAIL are tagged by default, not dropped.
        ("stop-dmarc-quarantine.json", "CONTINUE"),
        ("stop-dmarc-none.json", "CONTINUE"),
        ("stop-odd-verdicts.json", "CONTINUE"),
        ("stop-bcc-only.json", "STOP_RULE_SET"),
    ];
    for (name, want) in expected {
        assert_eq!(disposition(name, &[]).await, want, "{name}");
    }
}

#[tokio::test]
async fn the_response_is_the_ses_disposition_shape() {
    let out = handle(&event("stop-spam-fail.json"), &config(&[]), None)
        .await
        .expect("decided");
    assert_eq!(
        serde_json::to_string(&out).expect("json"),
        r#"{"disposition":"STOP_RULE_SET"}"#
    );
}

#[tokio::test]
async fn every_rule_is_configurable() {
    assert_eq!(
        disposition("stop-spam-fail.json", &[("MAILROOM_STOP_SPAM", "tag")]).await,
        "CONTINUE"
    );
    assert_eq!(
        disposition(
            "stop-dmarc-reject.json",
            &[
                ("MAILROOM_DMARC_REJECT", "off"),
                ("MAILROOM_STOP_SPF", "off")
            ]
        )
        .await,
        "CONTINUE"
    );
    assert_eq!(
        disposition(
            "stop-dmarc-quarantine.json",
            &[("MAILROOM_DMARC_QUARANTINE", "drop")]
        )
        .await,
        "STOP_RULE_SET"
    );
    assert_eq!(
        disposition("stop-dmarc-none.json", &[("MAILROOM_DMARC_NONE", "drop")]).await,
        "STOP_RULE_SET"
    );
    assert_eq!(
        disposition("stop-dmarc-none.json", &[("MAILROOM_STOP_DKIM", "drop")]).await,
        "STOP_RULE_SET"
    );
    assert_eq!(
        disposition(
            "stop-virus-fail.json",
            &[("MAILROOM_STOP_DISPOSITION", "stop_rule")]
        )
        .await,
        "STOP_RULE"
    );
    assert_eq!(
        disposition(
            "stop-clean.json",
            &[("MAILROOM_DENY_SENDERS", "@example.net")]
        )
        .await,
        "STOP_RULE_SET"
    );
    assert_eq!(
        disposition(
            "stop-odd-verdicts.json",
            &[("MAILROOM_STOP_VIRUS_UNVERIFIED", "drop")]
        )
        .await,
        "STOP_RULE_SET"
    );
}

#[tokio::test]
async fn odd_verdicts_never_fail_even_with_the_strictest_policy() {
    let strict = [
        ("MAILROOM_STOP_SPF", "drop"),
        ("MAILROOM_STOP_DKIM", "drop"),
        ("MAILROOM_DMARC_NONE", "drop"),
        ("MAILROOM_DMARC_QUARANTINE", "drop"),
    ];
    assert_eq!(
        disposition("stop-odd-verdicts.json", &strict).await,
        "CONTINUE"
    );
}

#[tokio::test]
async fn the_allow_list_lets_an_authenticated_sender_past_spam_but_not_a_virus() {
    let allow = [("MAILROOM_ALLOW_SENDERS", "sender@example.net")];
    assert_eq!(disposition("stop-spam-fail.json", &allow).await, "CONTINUE");
    assert_eq!(
        disposition("stop-virus-fail.json", &allow).await,
        "STOP_RULE_SET"
    );
    // SPF and DMARC failed: the claimed sender is not authenticated, so the entry does nothing.
    assert_eq!(
        disposition("stop-dmarc-reject.json", &allow).await,
        "STOP_RULE_SET"
    );
}

#[tokio::test]
async fn tag_mode_keeps_the_verdicts_in_the_decision() {
    let ev = event("stop-dmarc-quarantine.json");
    let d = decide(&ev.records[0], &config(&[]), None).await;
    assert_eq!(d.action, Action::Tag);
    let rules: Vec<Rule> = d.reasons.iter().map(|r| r.rule).collect();
    assert_eq!(rules, [Rule::Spf, Rule::DmarcQuarantine]);
}

#[tokio::test]
async fn an_event_without_records_is_a_permanent_bad_event() {
    let err = handle(&SesEvent { records: vec![] }, &config(&[]), None)
        .await
        .expect_err("no records");
    assert!(matches!(err, StopError::BadEvent(_)));
    assert!(!err.is_retryable());
    let diag = lambda_runtime::Diagnostic::from(err);
    assert_eq!(diag.error_type, "Stop.Permanent.BadEvent");
}

#[tokio::test]
async fn size_rule_reads_the_raw_object_and_fails_open() {
    let env = [
        ("MAILROOM_MAX_SIZE", "1KB"),
        ("MAILROOM_RAW_BUCKET", "mail"),
        ("MAILROOM_RAW_PREFIX", "raw/"),
    ];
    let cfg = config(&env);
    let ev = event("stop-clean.json");
    let key = format!("raw/{}", ev.records[0].ses.mail.message_id);
    let big = MemoryStore::read_only().with("mail", &key, vec![b'x'; 2048]);
    let out = handle(&ev, &cfg, Some(&big)).await.expect("decided");
    assert_eq!(out.disposition, "STOP_RULE_SET");
    let d = decide(&ev.records[0], &cfg, Some(&big)).await;
    assert_eq!(d.size, SizeCheck::Checked(2048));
    assert_eq!(d.reasons[0].rule, Rule::Size);

    let small = MemoryStore::read_only().with("mail", &key, &b"Subject: hi\r\n\r\nhi\r\n"[..]);
    assert_eq!(
        handle(&ev, &cfg, Some(&small))
            .await
            .expect("decided")
            .disposition,
        "CONTINUE"
    );

    for kind in [ErrorKind::Throttled, ErrorKind::NotFound] {
        let broken = MemoryStore::read_only();
        broken.fail_gets(Some(kind));
        let d = decide(&ev.records[0], &cfg, Some(&broken)).await;
        assert_eq!(
            (d.action, d.size),
            (Action::Allow, SizeCheck::Unknown),
            "{kind:?}"
        );
    }
    // Without a store the rule is inert rather than an error.
    let d = decide(&ev.records[0], &cfg, None).await;
    assert_eq!(d.size, SizeCheck::Unknown);
}

#[tokio::test(flavor = "current_thread")]
async fn one_structured_line_per_decision_names_the_reasons() {
    let logs = LogCapture::start();
    handle(&event("stop-dmarc-reject.json"), &config(&[]), None)
        .await
        .expect("decided");
    let text = logs.text();
    let lines = logs.lines();
    assert_eq!(lines.len(), 1, "{text}");
    let f = &lines[0]["fields"];
    assert_eq!(f["message"], "stop decision");
    assert_eq!(f["message_id"], "o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1");
    assert_eq!(f["recipients"], "support@example.com");
    assert_eq!(f["decision"], "drop");
    assert_eq!(f["disposition"], "STOP_RULE_SET");
    assert_eq!(f["rules"], "spf,dmarc_reject");
    let reasons = f["reasons"].as_str().unwrap_or("");
    assert!(
        reasons.contains("DMARC FAIL, sender policy reject"),
        "{reasons}"
    );
}

#[tokio::test]
async fn size_rule_measures_encrypted_mail_by_its_plaintext() {
    let ev = event("stop-clean.json");
    let id = ev.records[0].ses.mail.message_id.clone();
    let (bucket, store) = mailroom_testkit::bucket_with_sealed_raw(
        "stop-kms",
        &id,
        "multipart-alternative.eml",
        mailroom_testkit::Sealed::Intact,
    )
    .await;
    let plain = mailroom_testkit::event_file("mail/multipart-alternative.eml").len();
    // A limit of exactly the mail's size: the ciphertext, 16 bytes longer, would exceed it.
    let limit = plain.to_string();
    let cfg = config(&[
        ("MAILROOM_MAX_SIZE", limit.as_str()),
        ("MAILROOM_RAW_BUCKET", bucket.as_str()),
        ("MAILROOM_RAW_PREFIX", "raw/"),
    ]);
    let d = decide(&ev.records[0], &cfg, Some(store.inner())).await;
    assert_eq!(d.size, SizeCheck::Checked(plain as u64));
    assert_eq!(d.action, Action::Allow);
}
