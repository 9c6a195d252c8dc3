//! The inspector's record with real traces: the repository's template run by the emulator, the
//! record kept on disk and in SQLite, searched, rebuilt and pruned.

#![allow(clippy::unwrap_used)]

use mailroom_emulator::receipt::Envelope;
use mailroom_emulator::{Emulator, Settings};
use mailroom_inspector::query::Query;
use mailroom_inspector::{Inbox, Record, Retention, Source};
use std::path::{Path, PathBuf};

const KEEP_ALL: Retention = Retention {
    max_messages: 0,
    max_age: None,
};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn envelope(to: &str) -> Envelope {
    Envelope {
        mail_from: "carla@example.org".into(),
        recipients: vec![to.into()],
        helo: "client.test".into(),
        client_ip: "192.0.2.7".into(),
        tls: false,
    }
}

/// Runs `eml` (a file under events/mail) through the template and records it.
async fn run(
    emulator: &Emulator,
    inbox: &Inbox,
    eml: &str,
    to: &str,
    extra: &[(&str, &str)],
) -> Record {
    let raw = std::fs::read(root().join("events/mail").join(eml)).unwrap();
    let mut headers = String::new();
    for (k, v) in extra {
        headers.push_str(&format!("{k}: {v}\r\n"));
    }
    let mut raw_with = headers.into_bytes();
    raw_with.extend_from_slice(&raw);
    let size = raw_with.len();
    let mut trace = emulator.receive(raw_with, envelope(to)).await.unwrap();
    let message = std::mem::take(&mut trace.final_message);
    let record = Record::from_trace(
        &trace,
        Source::Deliver,
        &envelope(to),
        &message,
        size,
        "250 ok".into(),
    );
    inbox.add(&record, Some(&message)).unwrap();
    record
}

async fn emulator(state: &Path) -> Emulator {
    let mut settings = Settings::new(root().join("template.yaml"));
    settings.state_dir = state.to_path_buf();
    Emulator::new(&settings).await.unwrap()
}

fn ids(inbox: &Inbox, q: &str) -> Vec<String> {
    let mut page: Vec<String> = inbox
        .list(&Query::parse(q).unwrap(), 0, 100)
        .unwrap()
        .messages
        .into_iter()
        .map(|r| r.subject)
        .collect();
    page.sort();
    page
}

#[tokio::test]
async fn a_run_is_recorded_searched_rebuilt_and_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let emulator = emulator(dir.path()).await;
    let inbox = Inbox::open(dir.path(), KEEP_ALL).unwrap();

    let invoice = run(
        &emulator,
        &inbox,
        "attachments.eml",
        "support@example.com",
        &[],
    )
    .await;
    let spam = run(
        &emulator,
        &inbox,
        "multipart-alternative.eml",
        "support@example.com",
        &[("X-Mailroom-Verdicts", "spam=FAIL")],
    )
    .await;
    let html = run(
        &emulator,
        &inbox,
        "html-only.eml",
        "support@example.com",
        &[],
    )
    .await;

    // What the trace says, as the list shows it.
    assert_eq!(invoice.disposition, "accepted");
    assert_eq!(invoice.rules, ["gate", "receive"]);
    assert_eq!(invoice.webhook.as_deref(), Some("delivered"));
    assert_eq!(invoice.forward.as_deref(), Some("skipped"));
    assert_eq!(invoice.attachments, 3);
    assert_eq!(
        invoice.verdicts.get("spam").map(String::as_str),
        Some("PASS")
    );
    assert_eq!(spam.verdicts.get("spam").map(String::as_str), Some("FAIL"));
    let actions = invoice.trace.as_ref().unwrap()["rules"][1]["actions"]
        .as_array()
        .unwrap()
        .clone();
    let store = actions.iter().find(|a| a["function"] == "store").unwrap();
    assert_eq!(store["logicalId"], "StoreFunction");
    assert_eq!(
        store["event"]["Records"][0]["ses"]["mail"]["messageId"],
        invoice.id.as_str()
    );

    // The stored message is SES's: its headers in front of what was sent.
    let stored = inbox.message(&invoice.id).unwrap().unwrap();
    let sent = std::fs::read(root().join("events/mail/attachments.eml")).unwrap();
    assert_eq!(&stored[invoice.added_header_bytes as usize..], &sent[..]);

    // Mailpit's terms and the receipt terms.
    assert_eq!(ids(&inbox, "has:attachment"), [invoice.subject.as_str()]);
    assert_eq!(ids(&inbox, "verdict:spam=FAIL"), [spam.subject.as_str()]);
    assert_eq!(
        ids(&inbox, "-verdict:spam=FAIL has:attachment"),
        [invoice.subject.as_str()]
    );
    // The spam was stopped at the gate: no receive rule, no webhook.
    assert_eq!(spam.disposition, "stopped");
    assert_eq!(ids(&inbox, "disposition:stopped"), [spam.subject.as_str()]);
    assert_eq!(ids(&inbox, "webhook:delivered").len(), 2);
    assert_eq!(ids(&inbox, "rule:receive").len(), 2);
    assert_eq!(
        ids(&inbox, "rule:rece").len(),
        0,
        "a rule term names a whole rule"
    );
    assert_eq!(ids(&inbox, "from:carla").len(), 3);
    assert_eq!(
        ids(&inbox, &format!("subject:\"{}\"", invoice.subject)),
        [invoice.subject.as_str()]
    );
    assert_eq!(ids(&inbox, "before:2000-01-01").len(), 0);
    assert_eq!(ids(&inbox, "after:2000-01-01").len(), 3);
    assert_eq!(ids(&inbox, "disposition:refused").len(), 0);

    // The folders are the truth: without its index the record is rebuilt, whole.
    drop(inbox);
    std::fs::remove_file(dir.path().join("inbox/index.sqlite")).unwrap();
    let inbox = Inbox::open(dir.path(), KEEP_ALL).unwrap();
    assert_eq!(inbox.count().unwrap(), 3);
    assert_eq!(ids(&inbox, "verdict:spam=FAIL"), [spam.subject.as_str()]);
    assert_eq!(inbox.get(&invoice.id).unwrap().trace, invoice.trace);

    // A damaged index is set aside and rebuilt too.
    drop(inbox);
    std::fs::write(
        dir.path().join("inbox/index.sqlite"),
        b"not a database at all",
    )
    .unwrap();
    for ext in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.path().join(format!("inbox/index.sqlite{ext}")));
    }
    let inbox = Inbox::open(
        dir.path(),
        Retention {
            max_messages: 2,
            max_age: None,
        },
    )
    .unwrap();
    // ... and pruned to the retention on opening: the oldest went, folder and all.
    assert_eq!(inbox.count().unwrap(), 2);
    assert!(inbox.get(&invoice.id).is_err());
    assert!(!dir.path().join("inbox").join(&invoice.id).exists());
    assert!(dir.path().join("inbox/index.sqlite.damaged").exists());

    // `latest`, and deletion.
    assert_eq!(inbox.get("latest").unwrap().id, html.id);
    assert_eq!(inbox.delete(&[]).unwrap(), 2);
    assert_eq!(inbox.count().unwrap(), 0);
}

#[tokio::test]
async fn ids_that_are_paths_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path(), Retention::default()).unwrap();
    std::fs::write(dir.path().join("secret"), b"x").unwrap();
    for id in ["../secret", "..", "a/b", "", "latest"] {
        assert!(inbox.get(id).is_err(), "{id}");
        assert!(inbox.message(id).is_err(), "{id}");
    }
}

#[tokio::test]
async fn a_refused_recipient_is_a_record_without_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Inbox::open(dir.path(), Retention::default()).unwrap();
    let refusal = mailroom_emulator::smtp::Refusal {
        mail_from: "x@example.net".into(),
        recipient: "nobody@elsewhere.example".into(),
        client_ip: "192.0.2.9".into(),
        helo: "h".into(),
        tls: false,
        reply: "550 5.1.1 <nobody@elsewhere.example>: Recipient address rejected".into(),
    };
    let record = Record::refused(&refusal);
    let mut news = inbox.subscribe();
    inbox.add(&record, None).unwrap();
    assert_eq!(
        news.try_recv().unwrap().id,
        record.id,
        "a new record is announced"
    );
    assert_eq!(inbox.message(&record.id).unwrap(), None);
    let found = inbox
        .list(
            &Query::parse("disposition:refused to:nobody").unwrap(),
            0,
            10,
        )
        .unwrap();
    assert_eq!(found.messages.len(), 1);
    assert_eq!(found.messages[0].reply, refusal.reply);
}
