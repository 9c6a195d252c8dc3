//! The handler's decisions and failure paths with in-memory ports: what is not forwarded and
//! why, retries that never send twice, and permanent rejections that are never silent.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Outbox, Store, World, config, event};
use mailroom::diagnostic::{Diagnostic, FunctionError};
use mailroom_forward::sender::{SendError, SendErrorKind};
use mailroom_forward::{Delivery, ForwardError, Outcome, handle, metrics};

const ID: &str = "fwdhandler000000000000000000000000000001";
const MAIL: &[u8] = b"From: Jane <jane@sender.example.net>\r\nTo: info@example.com\r\n\
    Subject: hello\r\nDate: Wed, 15 Jan 2025 10:00:00 +0000\r\nMessage-ID: <h1@sender.example.net>\r\n\
    \r\nHello.\r\n";

/// The usual case: Jane writes to info@example.com.
fn jane_to_info(raw: &[u8]) -> mailroom::SesEvent {
    event(
        ID,
        raw,
        "jane@sender.example.net",
        &["info@example.com"],
        &[],
    )
}

fn skipped_reason(o: &Outcome) -> &str {
    match o {
        Outcome::Skipped { reason, .. } => reason,
        other => panic!("{other:?}"),
    }
}

fn deliveries(o: &Outcome) -> &[Delivery] {
    match o {
        Outcome::Forwarded { deliveries, .. } => deliveries,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn routes_tags_and_several_destinations() {
    let cfg = config(
        "info@example.com=me@gmail.com,team@outlook.com; billing@=attach:acct@gmail.com",
        &[("MAILROOM_FORWARD_PLUS_TAG", "keep")],
    );
    let w = World::new(&cfg, Store::with_raw(ID, MAIL), Outbox::default());
    let ev = event(
        ID,
        MAIL,
        "jane@sender.example.net",
        &[
            "info+orders@example.com",
            "billing@example.org",
            "nobody@example.com",
        ],
        &[],
    );
    let report = handle(&ev, &cfg, w.deps()).await.unwrap();
    let d = deliveries(&report.outcomes[0]);
    assert_eq!(d.len(), 3, "{d:?}");
    let sent = w.outbox.sent();
    let to: Vec<&str> = sent.iter().map(|m| m.to.as_str()).collect();
    assert_eq!(
        to,
        [
            "me+orders@gmail.com",
            "team+orders@outlook.com",
            "acct@gmail.com"
        ]
    );
    let attached = String::from_utf8_lossy(&sent[2].raw).into_owned();
    assert!(
        attached.contains("Content-Type: message/rfc822"),
        "{attached}"
    );
    assert_eq!(w.counts.of(metrics::FORWARDED), 3);
    // One marker per destination.
    assert_eq!(
        w.store
            .keys()
            .iter()
            .filter(|k| k.starts_with("forwarded/") && !k.contains(".claim-"))
            .count(),
        3
    );
}

#[tokio::test]
async fn nothing_the_gate_would_drop_or_a_machine_sent_is_forwarded() {
    let cfg = config("@example.com=me@gmail.com", &[]);
    for (verdicts, source, headers, want) in [
        (
            vec![("spam", "FAIL")],
            "jane@sender.example.net",
            "",
            "stop policy",
        ),
        (
            vec![("virus", "FAIL")],
            "jane@sender.example.net",
            "",
            "stop policy",
        ),
        (
            vec![("dmarc", "FAIL"), ("dmarcPolicy", "reject")],
            "jane@sender.example.net",
            "",
            "dmarc_reject",
        ),
        (vec![], "", "", "machine"),
        (vec![], "MAILER-DAEMON@mx.example.net", "", "machine"),
        (
            vec![],
            "jane@sender.example.net",
            "Auto-Submitted: auto-replied\r\n",
            "machine",
        ),
        (
            vec![],
            "jane@sender.example.net",
            "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n",
            "machine",
        ),
    ] {
        let raw = [headers.as_bytes(), MAIL].concat();
        let w = World::new(&cfg, Store::with_raw(ID, &raw), Outbox::default());
        let ev = event(ID, &raw, source, &["info@example.com"], &verdicts);
        let report = handle(&ev, &cfg, w.deps()).await.unwrap();
        let reason = skipped_reason(&report.outcomes[0]);
        assert!(reason.contains(want), "{want}: {reason}");
        assert!(w.outbox.sent().is_empty());
    }
    // DMARC quarantine is only tagged by the gate: it is forwarded.
    let w = World::new(&cfg, Store::with_raw(ID, MAIL), Outbox::default());
    let ev = event(
        ID,
        MAIL,
        "jane@sender.example.net",
        &["info@example.com"],
        &[("dmarc", "FAIL"), ("dmarcPolicy", "quarantine")],
    );
    handle(&ev, &cfg, w.deps()).await.unwrap();
    assert_eq!(w.outbox.sent().len(), 1);
}

#[tokio::test]
async fn mail_ses_could_not_verify_is_never_sent_under_its_senders_name() {
    const PAYPAL: &[u8] = b"From: \"PayPal\" <service@paypal.com>\r\nTo: info@example.com\r\n\
        Subject: Your account\r\nDate: Wed, 15 Jan 2025 10:00:00 +0000\r\n\r\nVerify now.\r\n";
    for verdicts in [
        vec![("spf", "FAIL")],
        vec![("dmarc", "FAIL"), ("dmarcPolicy", "none")],
        vec![("dmarc", "FAIL"), ("dmarcPolicy", "quarantine")],
        vec![("spam", "GRAY")],
        vec![("virus", "PROCESSING_FAILED")],
    ] {
        let cfg = config("@example.com=me@gmail.com", &[]);
        let w = World::new(&cfg, Store::with_raw(ID, PAYPAL), Outbox::default());
        let ev = event(
            ID,
            PAYPAL,
            "service@paypal.com",
            &["info@example.com"],
            &verdicts,
        );
        let report = handle(&ev, &cfg, w.deps()).await.unwrap();
        let Outcome::Forwarded { deliveries, .. } = &report.outcomes[0] else {
            // The gate's own policy may drop it outright; then nothing is sent either.
            assert!(
                skipped_reason(&report.outcomes[0]).contains("stop policy"),
                "{verdicts:?}"
            );
            assert!(w.outbox.sent().is_empty());
            continue;
        };
        assert!(
            matches!(
                &deliveries[0],
                Delivery::Sent {
                    mode: mailroom_forward::map::Mode::Attach,
                    ..
                }
            ),
            "{verdicts:?}: {deliveries:?}"
        );
        let sent = String::from_utf8(w.outbox.sent()[0].raw.to_vec()).unwrap();
        let head = &sent[..sent.find("\r\n\r\n").unwrap()];
        assert!(
            head.contains("unverified: service@paypal.com via example.com"),
            "{head}"
        );
        assert!(!head.contains("PayPal via"), "{head}");
        assert!(
            head.contains("Subject: [unverified sender] Fwd: Your account"),
            "{head}"
        );
        assert!(head.contains("X-Mailroom-Verdicts: "), "{head}");

        // Held instead, when the operator asks for it: nothing sent, counted, raw left in S3.
        let cfg = config(
            "@example.com=me@gmail.com",
            &[("MAILROOM_FORWARD_UNVERIFIED", "hold")],
        );
        let w = World::new(&cfg, Store::with_raw(ID, PAYPAL), Outbox::default());
        let report = handle(&ev, &cfg, w.deps()).await.unwrap();
        assert!(
            skipped_reason(&report.outcomes[0]).starts_with("held"),
            "{verdicts:?}"
        );
        assert!(w.outbox.sent().is_empty());
        assert_eq!(w.counts.of(metrics::HELD), 1);
    }
}

#[tokio::test]
async fn a_destination_another_invocation_is_sending_is_not_sent_twice() {
    let cfg = config("@example.com=me@gmail.com", &[]);
    let claim = format!("forwarded/{ID}/me@gmail.com.claim-1");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    // A concurrent invocation claimed it a moment ago and may be sending it now.
    let w = World::new(&cfg, Store::with_raw(ID, MAIL), Outbox::default());
    w.store.0.lock().unwrap().insert(
        claim.clone(),
        bytes::Bytes::from(format!("{{\"until\":{}}}", now + 60)),
    );
    let err = handle(&jane_to_info(MAIL), &cfg, w.deps())
        .await
        .unwrap_err();
    assert!(matches!(err, ForwardError::Busy { .. }), "{err}");
    assert!(
        err.is_retryable(),
        "Lambda retries it later, when the marker says sent"
    );
    assert!(w.outbox.sent().is_empty());

    // The claim of a run that crashed has run out: the next round is claimed and it is sent.
    let w = World::new(&cfg, Store::with_raw(ID, MAIL), Outbox::default());
    w.store.0.lock().unwrap().insert(
        claim,
        bytes::Bytes::from(format!("{{\"until\":{}}}", now - 1)),
    );
    handle(&jane_to_info(MAIL), &cfg, w.deps()).await.unwrap();
    assert_eq!(w.outbox.sent().len(), 1);
    let keys = w.store.keys();
    assert!(
        keys.contains(&format!("forwarded/{ID}/me@gmail.com.claim-2")),
        "{keys:?}"
    );
    assert!(
        keys.contains(&format!("forwarded/{ID}/me@gmail.com")),
        "{keys:?}"
    );

    // Two invocations of the same event at once: one sends, the other is told to retry.
    let w = World::new(&cfg, Store::with_raw(ID, MAIL), Outbox::default());
    let ev = jane_to_info(MAIL);
    let (a, b) = tokio::join!(handle(&ev, &cfg, w.deps()), handle(&ev, &cfg, w.deps()));
    assert_eq!(w.outbox.sent().len(), 1, "{a:?} {b:?}");
}

#[tokio::test]
async fn a_header_block_over_the_bound_is_not_parsed_but_still_reported() {
    // 3 MB of header lines, over the 1 MiB store and api read.
    let mut raw = Vec::new();
    for i in 0..100_000 {
        raw.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "f".repeat(16)).as_bytes());
    }
    raw.extend_from_slice(MAIL);
    let cfg = config("@example.com=me@gmail.com", &[]);
    let w = World::new(&cfg, Store::with_raw(ID, &raw), Outbox::default());
    let report = handle(&jane_to_info(&raw), &cfg, w.deps()).await.unwrap();
    assert!(
        matches!(
            &deliveries(&report.outcomes[0])[0],
            Delivery::Sent {
                mode: mailroom_forward::map::Mode::Digest,
                ..
            }
        ),
        "{report:?}"
    );
    let sent = w.outbox.sent();
    assert!(sent[0].raw.len() < 10_000, "{}", sent[0].raw.len());
    let text = String::from_utf8_lossy(&sent[0].raw).into_owned();
    // The Subject comes from SES's event (its commonHeaders), the message is not read.
    assert!(text.contains("Subject: Fwd (partial): "), "{text}");
    assert_eq!(w.counts.of(metrics::PARTIAL), 1);
}

#[tokio::test]
async fn recipients_the_gate_bounced_are_not_forwarded() {
    let cfg = config(
        "info@example.com=me@gmail.com; ghost@example.com=ghost@gmail.com",
        &[
            ("MAILROOM_MAILBOXES", "info@example.com"),
            (
                "MAILROOM_FORWARD_IDENTITY_ARN",
                "arn:aws:ses:us-east-1:123456789012:identity/example.com",
            ),
        ],
    );
    let w = World::new(&cfg, Store::with_raw(ID, MAIL), Outbox::default());
    let ev = event(
        ID,
        MAIL,
        "jane@sender.example.net",
        &["info@example.com", "ghost@example.com"],
        &[],
    );
    handle(&ev, &cfg, w.deps()).await.unwrap();
    let sent = w.outbox.sent();
    assert_eq!(
        sent.iter().map(|m| m.to.as_str()).collect::<Vec<_>>(),
        ["me@gmail.com"]
    );
    assert_eq!(
        sent[0].identity_arn.as_deref(),
        Some("arn:aws:ses:us-east-1:123456789012:identity/example.com")
    );
    let w = World::new(&cfg, Store::with_raw(ID, MAIL), Outbox::default());
    let ev = event(
        ID,
        MAIL,
        "jane@sender.example.net",
        &["ghost@example.com"],
        &[],
    );
    let report = handle(&ev, &cfg, w.deps()).await.unwrap();
    assert!(skipped_reason(&report.outcomes[0]).contains("mailbox list"));
    assert!(w.outbox.sent().is_empty());
}

#[tokio::test]
async fn a_loop_through_the_attachment_mode_stops_too() {
    let cfg = config("@example.com=attach:me@gmail.com", &[]);
    let mut raw = MAIL.to_vec();
    let mut rounds = 0;
    loop {
        let w = World::new(&cfg, Store::with_raw(ID, &raw), Outbox::default());
        let ev = event(
            ID,
            &raw,
            "forwarder@example.com",
            &["info@example.com"],
            &[],
        );
        handle(&ev, &cfg, w.deps()).await.unwrap();
        let Some(next) = w.outbox.sent().first().map(|m| m.raw.to_vec()) else {
            assert_eq!(w.counts.of(metrics::LOOP), 1);
            break;
        };
        raw = next;
        rounds += 1;
        assert!(rounds <= 8, "still forwarding after {rounds} rounds");
    }
    // The default limit is 3 hops, as in the rewrite mode.
    assert_eq!(rounds, 3);
}

#[tokio::test]
async fn a_loop_stops_at_the_hop_limit_and_is_counted() {
    let cfg = config(
        "@example.com=me@gmail.com",
        &[("MAILROOM_FORWARD_MAX_HOPS", "2")],
    );
    let once = {
        let w = World::new(&cfg, Store::with_raw(ID, MAIL), Outbox::default());
        let ev = jane_to_info(MAIL);
        handle(&ev, &cfg, w.deps()).await.unwrap();
        w.outbox.sent()[0].raw.to_vec()
    };
    // The forwarded copy comes back once: it may go round again (hop 2)…
    let w = World::new(&cfg, Store::with_raw(ID, &once), Outbox::default());
    let ev = event(
        ID,
        &once,
        "forwarder@example.com",
        &["info@example.com"],
        &[],
    );
    handle(&ev, &cfg, w.deps()).await.unwrap();
    let twice = w.outbox.sent()[0].raw.to_vec();
    // …but not a third time.
    let w = World::new(&cfg, Store::with_raw(ID, &twice), Outbox::default());
    let ev = event(
        ID,
        &twice,
        "forwarder@example.com",
        &["info@example.com"],
        &[],
    );
    let report = handle(&ev, &cfg, w.deps()).await.unwrap();
    assert!(skipped_reason(&report.outcomes[0]).contains("loop"));
    assert!(w.outbox.sent().is_empty());
    assert_eq!(w.counts.of(metrics::LOOP), 1);
}

#[tokio::test]
async fn throttling_fails_the_invocation_and_the_retry_sends_only_what_is_left() {
    let cfg = config("info@example.com=a@gmail.com,b@gmail.com", &[]);
    let outbox = Outbox::failing(vec![
        Ok(()),
        Err(SendError::new(
            SendErrorKind::Retry,
            "HTTP 429 TooManyRequestsException",
        )),
    ]);
    let w = World::new(&cfg, Store::with_raw(ID, MAIL), outbox);
    let ev = jane_to_info(MAIL);
    let err = handle(&ev, &cfg, w.deps()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(
        err.to_string().contains("raw/"),
        "names the raw mail: {err}"
    );
    assert_eq!(Diagnostic::from(err).error_type, "Forward.Retryable.Send");
    assert_eq!(w.outbox.sent().len(), 1);
    // Lambda's retry: a@ has its marker, b@ is sent now; a third run sends nothing.
    let report = handle(&ev, &cfg, w.deps()).await.unwrap();
    let d = deliveries(&report.outcomes[0]);
    assert!(matches!(&d[0], Delivery::AlreadySent { destination } if destination == "a@gmail.com"));
    assert!(matches!(&d[1], Delivery::Sent { .. }));
    handle(&ev, &cfg, w.deps()).await.unwrap();
    let to: Vec<String> = w.outbox.sent().iter().map(|m| m.to.clone()).collect();
    assert_eq!(to, ["a@gmail.com", "b@gmail.com"]);
}

#[tokio::test]
async fn an_account_problem_fails_the_invocation_for_the_dead_letter_queue() {
    let cfg = config("info@example.com=a@gmail.com", &[]);
    let outbox = Outbox::failing(vec![Err(SendError::new(
        SendErrorKind::Setup,
        "MessageRejected: Email address is not verified.",
    ))]);
    let w = World::new(&cfg, Store::with_raw(ID, MAIL), outbox);
    let ev = jane_to_info(MAIL);
    let err = handle(&ev, &cfg, w.deps()).await.unwrap_err();
    assert!(matches!(err, ForwardError::Send { .. }));
    assert_eq!(Diagnostic::from(err).error_type, "Forward.Permanent.Send");
    // No marker, and the claim released: the replayed event will send it.
    let keys = w.store.keys();
    assert_eq!(
        keys.iter()
            .filter(|k| !k.contains(".claim-"))
            .collect::<Vec<_>>(),
        [&format!("raw/{ID}")]
    );
    assert!(
        keys.iter().any(|k| k.ends_with(".claim-1.released")),
        "{keys:?}"
    );
}

#[tokio::test]
async fn a_permanent_rejection_is_logged_counted_noticed_once_and_never_retried() {
    let cfg = config(
        "info@example.com=a@gmail.com",
        &[("MAILROOM_FORWARD_NOTICE_TO", "admin@example.com")],
    );
    let outbox = Outbox::failing(vec![Err(SendError::new(
        SendErrorKind::Rejected,
        "MessageRejected: content rejected",
    ))]);
    let w = World::new(&cfg, Store::with_raw(ID, MAIL), outbox);
    let ev = jane_to_info(MAIL);
    let report = handle(&ev, &cfg, w.deps()).await.unwrap();
    let d = deliveries(&report.outcomes[0]);
    let Delivery::Rejected { reason, notice, .. } = &d[0] else {
        panic!("{d:?}")
    };
    assert!(reason.contains("content rejected"));
    assert!(
        notice
            .as_deref()
            .is_some_and(|n| n.starts_with("sent to admin@example.com"))
    );
    assert_eq!(w.counts.of(metrics::REJECTED), 1);
    let sent = w.outbox.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to, "admin@example.com");
    let notice = String::from_utf8_lossy(&sent[0].raw).into_owned();
    assert!(notice.contains(&format!("s3://mail/raw/{ID}")), "{notice}");
    assert_eq!(mailroom_forward::ses_rules::validate(&sent[0].raw), vec![]);
    // The raw mail stays; a retry of the same event neither sends nor notices again.
    assert!(w.store.keys().contains(&format!("raw/{ID}")));
    let again = handle(&ev, &cfg, w.deps()).await.unwrap();
    assert!(matches!(
        deliveries(&again.outcomes[0])[0],
        Delivery::AlreadySent { .. }
    ));
    assert_eq!(w.outbox.sent().len(), 1);
}

#[tokio::test]
async fn missing_raw_mail_setup_probes_and_unmapped_recipients() {
    let cfg = config("info@example.com=a@gmail.com", &[]);
    let w = World::new(&cfg, Store::default(), Outbox::default());
    let ev = jane_to_info(MAIL);
    let report = handle(&ev, &cfg, w.deps()).await.unwrap();
    assert!(
        matches!(&report.outcomes[0], Outcome::RawMissing { raw, .. } if raw == &format!("s3://mail/raw/{ID}"))
    );
    let ev = event(
        "AMAZON_SES_SETUP_NOTIFICATION",
        MAIL,
        "",
        &["info@example.com"],
        &[],
    );
    let report = handle(&ev, &cfg, w.deps()).await.unwrap();
    assert!(skipped_reason(&report.outcomes[0]).contains("setup"));
    let ev = event(
        ID,
        MAIL,
        "jane@sender.example.net",
        &["other@example.com"],
        &[],
    );
    let report = handle(&ev, &cfg, w.deps()).await.unwrap();
    assert!(skipped_reason(&report.outcomes[0]).contains("no forward map entry"));
    assert!(w.outbox.sent().is_empty());
}

#[tokio::test]
async fn mail_ses_encrypted_is_forwarded_and_tampered_mail_fails_unsent() {
    use mailroom_testkit::Sealed;
    let raw = mailroom_testkit::event_file("mail/multipart-alternative.eml");
    for how in [Sealed::Intact, Sealed::FlippedTag, Sealed::OtherKey] {
        let (bucket, sealed) = mailroom_testkit::bucket_with_sealed_raw(
            "forward-kms",
            ID,
            "multipart-alternative.eml",
            how,
        )
        .await;
        let cfg = mailroom_forward::Config::from_env(
            [
                ("MAILROOM_RAW_BUCKET", bucket.as_str()),
                ("MAILROOM_RAW_PREFIX", "raw/"),
                ("MAILROOM_FORWARD_FROM", "forwarder@example.com"),
                (
                    "MAILROOM_FORWARD_MAP",
                    "orders@inbox.example.com=me@gmail.com",
                ),
            ]
            .as_slice(),
        )
        .unwrap();
        let w = World::new(&cfg, Store::default(), Outbox::default());
        let deps = mailroom_forward::Deps {
            store: &sealed,
            ..w.deps()
        };
        let ev = event(
            ID,
            &raw,
            "shop@example.net",
            &["orders@inbox.example.com"],
            &[],
        );
        let result = handle(&ev, &cfg, deps).await;
        if how == Sealed::Intact {
            let report = result.unwrap();
            assert_eq!(deliveries(&report.outcomes[0]).len(), 1);
            let sent = w.outbox.sent();
            assert_eq!(sent.len(), 1);
            assert!(String::from_utf8_lossy(&sent[0].raw).contains("Example Shop"));
        } else {
            let err = result.unwrap_err();
            assert!(
                matches!(err, ForwardError::ReadRaw { .. }),
                "{how:?}: {err}"
            );
            assert!(!err.is_retryable(), "{how:?}: {err}");
            assert!(w.outbox.sent().is_empty(), "{how:?}: nothing forwarded");
        }
    }
}
