//! Golden tests: every `events/mail/*.eml` and `events/mail/defects/*.eml` parsed and compared with the `*.json` beside it.
//!
//! Each message is checked twice. First as stored, against the expected JSON exactly. Then with
//! the other line ending (LF files converted to CRLF, CRLF files to LF), against the same JSON
//! modulo what line endings legitimately change: every `size` and `sha256` (byte counts and
//! digests of undecoded text differ) is dropped and `\r\n` becomes `\n` inside strings.
//!
//! A mismatch writes the actual output beside the fixture as `<name>.json.failed` (or
//! `<name>.json.<variant>.failed`) for `diff`; `*.failed` is gitignored. `MAILROOM_BLESS=1`
//! rewrites the expected files instead: read every rewritten file before committing it.

use std::path::PathBuf;

use mailroom::{Email, Limits, Parsed};
use serde_json::Value;
use sha2::{Digest, Sha256};

fn fixtures() -> Vec<PathBuf> {
    let samples = mailroom_testkit::mail_fixtures();
    assert!(
        samples.len() >= 12,
        "expected the fixture set, found {}",
        samples.len()
    );
    // One fixture per parsing defect found on real mail, named after what it reproduces.
    let defects = mailroom_testkit::defect_fixtures();
    assert!(!defects.is_empty(), "expected the defect fixtures");
    samples.into_iter().chain(defects).collect()
}

fn parse(raw: &[u8], name: &str) -> Parsed {
    match Email::parse(raw, &Limits::default()) {
        Ok(parsed) => parsed,
        Err(e) => panic!("{name}: {e}"),
    }
}

fn to_json(parsed: &Parsed) -> String {
    match serde_json::to_string_pretty(&parsed.email) {
        Ok(s) => s + "\n",
        Err(e) => panic!("serialize: {e}"),
    }
}

/// `contents` lines up with `attachments` and every digest and size is honest.
fn check_contents(parsed: &Parsed, name: &str) {
    let attachments = &parsed.email.attachments;
    assert_eq!(parsed.contents.len(), attachments.len(), "{name}");
    for (i, (a, bytes)) in attachments.iter().zip(&parsed.contents).enumerate() {
        assert_eq!(a.index, i, "{name}: attachment indices are dense");
        assert_eq!(a.size, bytes.len() as u64, "{name}: attachment {i} size");
        assert_eq!(
            a.sha256,
            hex::encode(Sha256::digest(bytes)),
            "{name}: attachment {i}"
        );
    }
}

fn other_line_ending(raw: &[u8]) -> (Vec<u8>, &'static str) {
    if raw.windows(2).any(|w| w == b"\r\n") {
        (raw.iter().copied().filter(|&b| b != b'\r').collect(), "lf")
    } else {
        let mut out = Vec::with_capacity(raw.len() + raw.len() / 20);
        for &b in raw {
            if b == b'\n' {
                out.push(b'\r');
            }
            out.push(b);
        }
        (out, "crlf")
    }
}

fn normalize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.remove("size");
            map.remove("sha256");
            map.values_mut().for_each(normalize);
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        Value::String(s) if s.contains('\r') => *s = s.replace("\r\n", "\n"),
        _ => {}
    }
}

fn json_value(text: &str, what: &str) -> Value {
    match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => panic!("{what} is not JSON: {e}"),
    }
}

#[test]
fn every_fixture_matches_its_expected_json() {
    let bless = std::env::var("MAILROOM_BLESS").is_ok_and(|v| v == "1");
    let mut failures = Vec::new();

    for eml in fixtures() {
        let name = eml
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let raw = match std::fs::read(&eml) {
            Ok(raw) => raw,
            Err(e) => panic!("{name}: {e}"),
        };
        let expected_path = eml.with_extension("json");
        let parsed = parse(&raw, &name);
        check_contents(&parsed, &name);
        assert_eq!(
            parsed.email.size,
            raw.len() as u64,
            "{name}: size is the input length"
        );
        let actual = to_json(&parsed);

        if bless && let Err(e) = std::fs::write(&expected_path, &actual) {
            panic!("{}: {e}", expected_path.display());
        }
        let expected_text = std::fs::read_to_string(&expected_path).unwrap_or_default();
        let failed = PathBuf::from(format!("{}.failed", expected_path.display()));
        if expected_text.is_empty()
            || json_value(&expected_text, &name) != json_value(&actual, &name)
        {
            let _ = std::fs::write(&failed, &actual);
            failures.push(format!("{name}: see {}", failed.display()));
            continue;
        }
        let _ = std::fs::remove_file(&failed);

        // The same message with the other line ending.
        let (converted, variant) = other_line_ending(&raw);
        let reparsed = parse(&converted, &format!("{name} ({variant})"));
        check_contents(&reparsed, &name);
        assert_eq!(reparsed.email.size, converted.len() as u64);
        let mut want = json_value(&expected_text, &name);
        let mut got = json_value(&to_json(&reparsed), &name);
        normalize(&mut want);
        normalize(&mut got);
        let failed = PathBuf::from(format!("{}.{variant}.failed", expected_path.display()));
        if want != got {
            let pretty = serde_json::to_string_pretty(&got).unwrap_or_default();
            let _ = std::fs::write(&failed, pretty + "\n");
            failures.push(format!(
                "{name} with {variant} line endings: see {}",
                failed.display()
            ));
        } else {
            let _ = std::fs::remove_file(&failed);
        }
    }

    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn expected_json_deserializes_back_into_the_model() {
    for eml in fixtures() {
        let path = eml.with_extension("json");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let email: Email = match serde_json::from_str(&text) {
            Ok(e) => e,
            Err(e) => panic!("{}: {e}", path.display()),
        };
        assert_eq!(email.schema, mailroom::email::SCHEMA);
    }
}
