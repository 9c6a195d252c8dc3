//! `mailroom parse` as a user runs it: the real binary on every fixture, on stdin and on bad input.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn mailroom(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = match Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => panic!("cannot run mailroom: {e}"),
    };
    // Dropping the pipe closes stdin, so the child sees end of input.
    if let (Some(mut pipe), Some(bytes)) = (child.stdin.take(), stdin) {
        let _ = pipe.write_all(bytes);
    }
    match child.wait_with_output() {
        Ok(out) => out,
        Err(e) => panic!("mailroom did not finish: {e}"),
    }
}

fn json(bytes: &[u8], what: &str) -> serde_json::Value {
    match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => panic!("{what}: not JSON ({e}): {}", String::from_utf8_lossy(bytes)),
    }
}

fn assert_one_line_error(out: &Output) {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.starts_with("mailroom: "), "{stderr:?}");
}

#[test]
fn parse_prints_the_expected_model_for_every_fixture() {
    let files = mailroom_testkit::mail_fixtures();
    assert!(files.len() >= 12);
    for eml in files {
        let path = eml.to_string_lossy().into_owned();
        let out = mailroom(&["parse", &path], None);
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = std::fs::read(eml.with_extension("json")).unwrap_or_default();
        assert_eq!(json(&out.stdout, &path), json(&expected, &path), "{path}");
    }
}

#[test]
fn dash_reads_standard_input_and_compact_is_one_line() {
    let raw = b"From: Ana <ana+tag@example.com>\r\nSubject: hi\r\n\r\nhello\r\n";
    let out = mailroom(&["parse", "-", "--compact"], Some(raw));
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 1);
    let v = json(&out.stdout, "stdin");
    assert_eq!(v["schema"], "mailroom.email/1");
    assert_eq!(v["subject"], "hi");
    assert_eq!(v["mailboxHash"], serde_json::Value::Null);
    assert_eq!(v["from"][0]["name"], "Ana");
    assert_eq!(v["text"], "hello\n");
}

#[test]
fn ses_event_fills_envelope_and_verdicts() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let eml = root.join("events/mail/attachments.eml");
    let event = root.join("events/lambda/store-event.json");
    let out = mailroom(
        &[
            "parse",
            &eml.to_string_lossy(),
            "--ses-event",
            &event.to_string_lossy(),
        ],
        None,
    );
    assert!(out.status.success(), "{out:?}");
    let v = json(&out.stdout, "with event");
    assert!(v["envelope"]["mailFrom"].is_string());
    assert!(
        v["envelope"]["recipients"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    );
    assert!(v["verdicts"]["spam"].is_string());
}

#[test]
fn bad_input_is_one_line_and_exit_status_one() {
    assert_one_line_error(&mailroom(&["parse", "-"], Some(b"")));
    assert_one_line_error(&mailroom(&["parse", "-"], Some(b"\x00\x01\x02 binary\n")));
    assert_one_line_error(&mailroom(&["parse", "/no/such/file.eml"], None));
    let big = mailroom(
        &["parse", "-", "--max-size", "10"],
        Some(b"Subject: over ten bytes\n\nbody\n"),
    );
    assert_one_line_error(&big);
    assert!(String::from_utf8_lossy(&big.stderr).contains("limit"));
    let headers = mailroom(
        &["parse", "-", "--max-header-bytes", "8"],
        Some(b"Subject: long header\n\nbody\n"),
    );
    assert_one_line_error(&headers);
}

#[test]
fn usage_errors_exit_with_two() {
    assert_eq!(mailroom(&["parse"], None).status.code(), Some(2));
    assert_eq!(
        mailroom(&["parse", "x", "--pretty", "--compact"], None)
            .status
            .code(),
        Some(2)
    );
    assert_eq!(mailroom(&["no-such-command"], None).status.code(), Some(2));
}
