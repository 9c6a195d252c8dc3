//! The forwarding corpus: every message under `events/mail/forward/` (real-world shapes that
//! broke forwarders: several DKIM signatures, duplicate Delivered-To, odd-case Message-ID, folded
//! multi-address From, groups, encoded names, raw 8-bit headers, S/MIME, conflicting MIME
//! fields, overlong lines), every other `events/mail/*.eml`, and a generated 35 MB message, each
//! run through the forward handler. Each output must break none of SES's rules, and parsed again
//! it must say what the input said: the same subject, recipients, bodies and attachments under
//! the rewrite, or the input itself, byte for byte, as the attachment.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Outbox, Store, World, config, event};
use mailroom::{Email, Limits, Parsed};
use mailroom_forward::map::Mode;
use mailroom_forward::{Delivery, Outcome, handle, ses_rules};
use std::path::{Path, PathBuf};

fn emls(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    v.sort();
    v
}

fn parse(raw: &[u8], what: &str) -> Parsed {
    Email::parse(raw, &Limits::default()).unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn addresses(list: &[mailroom::email::Address]) -> Vec<String> {
    list.iter()
        .map(|a| a.address.to_ascii_lowercase())
        .collect()
}

fn attachments(e: &Email) -> Vec<(String, String, Option<String>)> {
    e.attachments
        .iter()
        .map(|a| (a.content_type.clone(), a.sha256.clone(), a.filename.clone()))
        .collect()
}

/// What forwarding `raw` produced, and in which mode; `None` when it was not forwarded.
async fn forward(raw: &[u8], name: &str) -> Option<(Vec<u8>, Mode)> {
    let id = "fwdcorpus0000000000000000000000000000001";
    let cfg = config("@example.com=me@gmail.com", &[]);
    let world = World::new(&cfg, Store::with_raw(id, raw), Outbox::default());
    let ev = event(
        id,
        raw,
        "sender@sender.example.net",
        &["info@example.com"],
        &[],
    );
    let report = handle(&ev, &cfg, world.deps())
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    match &report.outcomes[0] {
        Outcome::Forwarded { deliveries, .. } => match &deliveries[0] {
            Delivery::Sent { mode, .. } => {
                let sent = world.outbox.sent();
                assert_eq!(sent.len(), 1, "{name}");
                assert_eq!(sent[0].to, "me@gmail.com");
                assert_eq!(sent[0].from, "forwarder@example.com");
                Some((sent[0].raw.to_vec(), *mode))
            }
            other => panic!("{name}: {other:?}"),
        },
        Outcome::Skipped { reason, .. } => {
            assert!(reason.contains("machine"), "{name}: skipped for {reason}");
            None
        }
        other => panic!("{name}: {other:?}"),
    }
}

/// The output parsed again says what the input said.
fn compare(raw: &[u8], out: &[u8], mode: Mode, name: &str) {
    let input = parse(raw, name).email;
    let parsed = parse(out, name);
    let output = &parsed.email;
    assert_eq!(
        addresses(&output.from),
        ["forwarder@example.com"],
        "{name}: From"
    );
    match mode {
        Mode::Digest => {
            let text = output.text.clone().unwrap_or_default();
            assert!(text.contains("could not be"), "{name}: {text}");
        }
        Mode::Rewrite => {
            assert_eq!(output.subject, input.subject, "{name}: subject");
            assert_eq!(addresses(&output.to), addresses(&input.to), "{name}: To");
            assert_eq!(addresses(&output.cc), addresses(&input.cc), "{name}: Cc");
            assert_eq!(output.text, input.text, "{name}: text");
            assert_eq!(output.html, input.html, "{name}: html");
            assert_eq!(
                attachments(output),
                attachments(&input),
                "{name}: attachments"
            );
            assert_eq!(output.in_reply_to, input.in_reply_to, "{name}: In-Reply-To");
            for r in &input.references {
                assert!(output.references.contains(r), "{name}: reference {r}");
            }
            let replies = if input.reply_to.is_empty() {
                &input.from
            } else {
                &input.reply_to
            };
            if !replies.is_empty() {
                assert_eq!(
                    addresses(&output.reply_to),
                    addresses(replies),
                    "{name}: Reply-To"
                );
            }
            assert!(output.date.is_some(), "{name}: Date");
        }
        Mode::Attach => {
            let original = output
                .attachments
                .iter()
                .find(|a| a.content_type == "message/rfc822")
                .unwrap_or_else(|| panic!("{name}: no message/rfc822 part"));
            assert_eq!(
                parsed.contents[original.index], raw,
                "{name}: the original is attached byte for byte"
            );
            let nested = original.message.as_ref().expect("nested message parsed");
            assert_eq!(nested.subject, input.subject, "{name}: nested subject");
            assert_eq!(nested.text, input.text, "{name}: nested text");
        }
    }
}

fn root() -> PathBuf {
    mailroom_testkit::events_dir().join("mail")
}

#[tokio::test]
async fn the_forwarding_corpus_breaks_no_ses_rule_and_keeps_the_content() {
    let mut modes = std::collections::BTreeMap::new();
    let files: Vec<PathBuf> = emls(&root().join("forward"))
        .into_iter()
        .chain(emls(&root()))
        .chain(emls(&root().join("defects")))
        .collect();
    assert!(files.len() >= 30, "{}", files.len());
    for path in &files {
        let name = path.strip_prefix(root()).unwrap().display().to_string();
        // As SMTP delivers it (and SES stores it): CRLF line ends.
        let raw = mailroom_forward::rewrite::to_crlf(&std::fs::read(path).unwrap());
        let Some((out, mode)) = forward(&raw, &name).await else {
            modes.insert(name, "not forwarded".to_string());
            continue;
        };
        let violations = ses_rules::validate_for(&out, "forwarder@example.com");
        assert_eq!(violations, vec![], "{name}");
        compare(&raw, &out, mode, &name);
        modes.insert(name, format!("{mode:?}"));
    }
    // The shapes that must take a given path.
    let want = [
        ("forward/dkim-signatures.eml", "Rewrite"),
        ("forward/duplicate-headers.eml", "Rewrite"),
        ("forward/folded-from-groups.eml", "Rewrite"),
        ("forward/encoded-names.eml", "Rewrite"),
        ("forward/eight-bit-headers.eml", "Rewrite"),
        ("calendar-invite.eml", "Rewrite"),
        ("forward/smime-signed.eml", "Attach"),
        ("forward/conflicting-content-type.eml", "Attach"),
        ("forward/long-line.eml", "Attach"),
        ("bounce-dsn.eml", "not forwarded"),
    ];
    for (name, mode) in want {
        assert_eq!(
            modes.get(name).map(String::as_str),
            Some(mode),
            "{name}: {modes:?}"
        );
    }
}

#[tokio::test]
async fn rewritten_headers_are_the_ones_a_forward_needs() {
    let raw = std::fs::read(root().join("forward/dkim-signatures.eml")).unwrap();
    let (out, _) = forward(&raw, "dkim").await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let head = &text[..text.find("\r\n\r\n").unwrap()];
    assert!(
        head.contains("From: \"Ana Lopez via example.com\" <forwarder@example.com>\r\n"),
        "{head}"
    );
    assert!(
        head.contains("Reply-To: \"Ana Lopez\" <ana@sender.example.net>\r\n"),
        "{head}"
    );
    for gone in [
        "DKIM-Signature",
        "ARC-",
        "Return-Path",
        "Sender:",
        "Message-Id",
    ] {
        assert!(!head.contains(gone), "{gone} left in {head}");
    }
    // SES's own fields do not travel on (a sender can write them too, and SES reads them when
    // sending); SES's verdicts do, in our own field.
    assert!(!head.to_ascii_lowercase().contains("x-ses-"), "{head}");
    assert!(head.contains("X-Mailroom-Verdicts: spf=PASS"), "{head}");

    let raw = std::fs::read(root().join("forward/duplicate-headers.eml")).unwrap();
    let (out, _) = forward(&raw, "dups").await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.matches("Delivered-To:").count(), 1);
    assert!(text.contains("Delivered-To: info@example.com\r\n"));
    assert!(text.contains(
        "References: <plan-0@lists.example.org> <plan-1@lists.example.org>\r\n <side@lists.example.org>\r\n"
    ) || text.contains(
        "References: <plan-0@lists.example.org> <plan-1@lists.example.org> <side@lists.example.org>\r\n"
    ), "{text}");
    assert!(text.contains("Keywords: release, plan\r\n"), "{text}");
    assert_eq!(text.matches("List-Unsubscribe:").count(), 1);
    assert!(!text.contains("MESSAGE-ID"));
}

/// A 35 MB message (a 26 MB attachment, base64) is forwarded whole, under SES's 40 MB.
#[tokio::test]
async fn a_message_too_large_for_ses_goes_as_its_text_and_one_that_fits_goes_whole() {
    /// A message with `megabytes` of random attachment, base64 in 76-column lines.
    fn big(megabytes: usize) -> (Vec<u8>, Vec<u8>) {
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let bytes: Vec<u8> = (0..megabytes * 1_000_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let mut raw = b"From: Big Sender <big@sender.example.net>\r\nTo: info@example.com\r\n\
            Subject: the big one\r\nDate: Thu, 23 Jan 2025 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
            Content-Type: multipart/mixed; boundary=big\r\n\r\n--big\r\nContent-Type: text/plain\r\n\r\n\
            see attachment\r\n--big\r\nContent-Type: application/octet-stream\r\n\
            Content-Disposition: attachment; filename=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            .to_vec();
        for line in b64.as_bytes().chunks(76) {
            raw.extend_from_slice(line);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"--big--\r\n");
        (raw, bytes)
    }
    // 21 MB of data is a 29 MB message: 38.7 MB once base64-encoded, within SES's 40 MB.
    let (raw, bytes) = big(21);
    assert!(ses_rules::encoded_size(raw.len()) < ses_rules::MAX_MESSAGE_BYTES);
    let (out, mode) = forward(&raw, "29mb").await.unwrap();
    assert_eq!(mode, Mode::Rewrite);
    assert_eq!(
        ses_rules::validate_for(&out, "forwarder@example.com"),
        vec![]
    );
    let parsed = parse(&out, "29mb");
    assert!(
        parsed.contents[0] == bytes,
        "the attachment arrives unchanged"
    );
    drop((raw, bytes, out, parsed));

    // 26 MB of data is a 35 MB message, 47 MB once encoded: SES would refuse it. Before, it was
    // sent as is (the check counted 40 MiB of raw bytes).
    let (raw, _) = big(26);
    assert!(raw.len() > 35_000_000, "{}", raw.len());
    let (out, mode) = forward(&raw, "35mb").await.unwrap();
    assert_eq!(mode, Mode::Digest);
    assert_eq!(
        ses_rules::validate_for(&out, "forwarder@example.com"),
        vec![]
    );
    let parsed = parse(&out, "35mb").email;
    assert_eq!(
        parsed.subject.as_deref(),
        Some("Fwd (partial): the big one")
    );
    let text = parsed.text.unwrap_or_default();
    assert!(text.contains("once base64-encoded"), "{text}");
    assert!(
        text.contains("- data.bin (application/octet-stream, 26000000 bytes)"),
        "{text}"
    );
    assert!(text.contains("s3://"), "where the original is kept: {text}");
    assert!(
        text.contains("see attachment"),
        "the original's text: {text}"
    );
}

#[tokio::test]
async fn an_attachment_type_ses_refuses_goes_as_a_digest_naming_it() {
    let raw = b"From: a@sender.example.net\r\nTo: info@example.com\r\nSubject: tools\r\n\
        Date: Thu, 23 Jan 2025 10:00:00 +0000\r\nMIME-Version: 1.0\r\n\
        Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n\
        the installer\r\n--b\r\nContent-Type: application/octet-stream\r\n\
        Content-Disposition: attachment; filename=\"setup.EXE\"\r\n\r\nMZ\r\n--b--\r\n";
    let (out, mode) = forward(raw, "exe").await.unwrap();
    assert_eq!(mode, Mode::Digest);
    assert_eq!(
        ses_rules::validate_for(&out, "forwarder@example.com"),
        vec![]
    );
    let text = parse(&out, "exe").email.text.unwrap_or_default();
    assert!(
        text.contains("\"setup.EXE\" has a type SES does not send"),
        "{text}"
    );
    assert!(text.contains("the installer"), "{text}");
}
