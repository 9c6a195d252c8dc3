//! Property test for `Email::parse`: structured MIME trees, mutated fixtures and raw bytes.
//!
//! Bounded (256 cases per property) so it runs in CI in seconds. Properties: parsing never
//! panics (a caught parser panic counts as a failure too), and every `Ok` is self-consistent:
//! attachment indices are dense, `contents` lines up with `attachments`, every `sha256` and
//! `size` matches the bytes, `size` is the input length, safe filenames are safe, and the JSON
//! round-trips.

use mailroom::{Email, Limits, ParseError, Parsed};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use sha2::{Digest, Sha256};

fn config() -> Config {
    Config {
        cases: 256,
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..Config::default()
    }
}

fn check(raw: &[u8]) -> Result<(), TestCaseError> {
    match Email::parse(raw, &Limits::default()) {
        Ok(parsed) => check_parsed(raw, &parsed),
        Err(ParseError::ParserPanicked { reason }) => {
            Err(TestCaseError::fail(format!("parser panicked: {reason}")))
        }
        Err(_) => Ok(()),
    }
}

fn check_parsed(raw: &[u8], parsed: &Parsed) -> Result<(), TestCaseError> {
    let email = &parsed.email;
    prop_assert_eq!(email.size, raw.len() as u64);
    prop_assert_eq!(parsed.contents.len(), email.attachments.len());
    for (i, (a, bytes)) in email.attachments.iter().zip(&parsed.contents).enumerate() {
        prop_assert_eq!(a.index, i);
        prop_assert_eq!(a.size, bytes.len() as u64);
        prop_assert_eq!(&a.sha256, &hex::encode(Sha256::digest(bytes)));
        let safe = &a.safe_filename;
        prop_assert!(!safe.is_empty() && safe.len() <= mailroom::keys::MAX_FILENAME_BYTES);
        prop_assert!(!safe.contains('/') && !safe.contains('\\') && !safe.contains(".."));
        prop_assert!(!safe.starts_with('.') && !safe.chars().any(char::is_control));
    }
    let json = serde_json::to_string(email).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: Email =
        serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, email);
    Ok(())
}

/// A MIME part tree rendered to bytes.
#[derive(Debug, Clone)]
enum Part {
    Leaf {
        content_type: &'static str,
        charset: Option<&'static str>,
        encoding: &'static str,
        filename: Option<String>,
        disposition: Option<&'static str>,
        content_id: Option<String>,
        body: Vec<u8>,
    },
    Multi {
        subtype: &'static str,
        boundary: String,
        children: Vec<Part>,
    },
    Message(Box<Part>),
}

fn leaf() -> impl Strategy<Value = Part> {
    (
        prop::sample::select(vec![
            "text/plain",
            "text/html",
            "text/csv",
            "image/png",
            "application/pdf",
            "application/octet-stream",
            "message/rfc822",
        ]),
        prop::option::of(prop::sample::select(vec![
            "utf-8",
            "iso-8859-1",
            "iso-2022-jp",
            "shift_jis",
            "koi8-r",
            "bogus",
        ])),
        prop::sample::select(vec![
            "7bit",
            "8bit",
            "base64",
            "quoted-printable",
            "x-weird",
        ]),
        prop::option::of(any::<String>()),
        prop::option::of(prop::sample::select(vec!["inline", "attachment", "weird"])),
        prop::option::of("[a-z0-9.@]{0,12}"),
        prop::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(
            |(content_type, charset, encoding, filename, disposition, content_id, body)| {
                Part::Leaf {
                    content_type,
                    charset,
                    encoding,
                    filename,
                    disposition,
                    content_id,
                    body,
                }
            },
        )
}

fn tree() -> impl Strategy<Value = Part> {
    leaf().prop_recursive(4, 24, 5, |inner| {
        prop_oneof![
            (
                prop::sample::select(vec!["mixed", "alternative", "related", "digest", "x-odd"]),
                "[A-Za-z0-9'()+_,./:=?-]{1,30}",
                prop::collection::vec(inner.clone(), 0..5),
            )
                .prop_map(|(subtype, boundary, children)| Part::Multi {
                    subtype,
                    boundary,
                    children
                }),
            inner.prop_map(|p| Part::Message(Box::new(p))),
        ]
    })
}

fn render(part: &Part, out: &mut Vec<u8>) {
    match part {
        Part::Leaf {
            content_type,
            charset,
            encoding,
            filename,
            disposition,
            content_id,
            body,
        } => {
            out.extend_from_slice(format!("Content-Type: {content_type}").as_bytes());
            if let Some(c) = charset {
                out.extend_from_slice(format!("; charset={c}").as_bytes());
            }
            out.extend_from_slice(b"\n");
            if let Some(d) = disposition {
                out.extend_from_slice(format!("Content-Disposition: {d}").as_bytes());
                if let Some(f) = filename {
                    out.extend_from_slice(b"; filename=\"");
                    out.extend_from_slice(f.as_bytes());
                    out.extend_from_slice(b"\"");
                }
                out.extend_from_slice(b"\n");
            }
            if let Some(id) = content_id {
                out.extend_from_slice(format!("Content-ID: <{id}>\n").as_bytes());
            }
            out.extend_from_slice(format!("Content-Transfer-Encoding: {encoding}\n\n").as_bytes());
            if *encoding == "base64" {
                let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, body);
                for line in b64.as_bytes().chunks(76) {
                    out.extend_from_slice(line);
                    out.push(b'\n');
                }
            } else {
                out.extend_from_slice(body);
                out.push(b'\n');
            }
        }
        Part::Multi {
            subtype,
            boundary,
            children,
        } => {
            out.extend_from_slice(
                format!("Content-Type: multipart/{subtype}; boundary=\"{boundary}\"\n\n")
                    .as_bytes(),
            );
            for child in children {
                out.extend_from_slice(format!("--{boundary}\n").as_bytes());
                render(child, out);
            }
            out.extend_from_slice(format!("--{boundary}--\n").as_bytes());
        }
        Part::Message(inner) => {
            out.extend_from_slice(b"Content-Type: message/rfc822\n\nFrom: inner@example.com\n");
            render(inner, out);
        }
    }
}

fn message(part: &Part, crlf: bool) -> Vec<u8> {
    let mut out = b"From: Someone <a+tag@example.com>\nTo: b@example.org\nSubject: prop\n\
                    MIME-Version: 1.0\n"
        .to_vec();
    render(part, &mut out);
    if crlf {
        let mut with_cr = Vec::with_capacity(out.len() * 11 / 10);
        for b in out {
            if b == b'\n' {
                with_cr.push(b'\r');
            }
            with_cr.push(b);
        }
        with_cr
    } else {
        out
    }
}

fn fixtures() -> Vec<Vec<u8>> {
    mailroom_testkit::mail_fixtures()
        .iter()
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            prop_oneof![
                prop::collection::vec(any::<u8>(), 1..16),
                prop::sample::select(vec![
                    b"\n--".to_vec(),
                    b"\r\n\r\n".to_vec(),
                    b"=?utf-8?B?".to_vec(),
                    b"?=".to_vec(),
                    b"Content-Type: message/rfc822\n\n".to_vec(),
                    b"Content-Type: multipart/mixed; boundary=x\n\n--x\n".to_vec(),
                    b"Content-Transfer-Encoding: base64\n".to_vec(),
                    b"=\n".to_vec(),
                ]),
            ]
        )
            .prop_map(|(i, bytes)| Mutation::Insert(i, bytes)),
        (any::<usize>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..200).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn mutate(mut raw: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = raw.len().max(1);
        match m {
            Mutation::Flip(i, b) => {
                if let Some(byte) = raw.get_mut(i % len) {
                    *byte ^= b;
                }
            }
            Mutation::Insert(i, bytes) => {
                let at = i % (raw.len() + 1);
                raw.splice(at..at, bytes.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let at = i % len;
                let end = (at + n).min(raw.len());
                if at < end {
                    raw.drain(at..end);
                }
            }
            Mutation::Truncate(i) => raw.truncate(i % len),
            Mutation::Duplicate(i, n) => {
                let at = i % len;
                let end = (at + n).min(raw.len());
                if at < end {
                    let copy = raw[at..end].to_vec();
                    raw.splice(end..end, copy);
                }
            }
        }
    }
    raw
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn structured_mime_parses_consistently(part in tree(), crlf in any::<bool>()) {
        let raw = message(&part, crlf);
        let parsed = Email::parse(&raw, &Limits::default());
        prop_assert!(parsed.is_ok(), "{:?}", parsed.err());
        check(&raw)?;
    }

    #[test]
    fn mutated_fixtures_never_panic(
        which in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 1..8),
    ) {
        let fixtures = fixtures();
        prop_assume!(!fixtures.is_empty());
        let raw = mutate(fixtures[which.index(fixtures.len())].clone(), &mutations);
        check(&raw)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(raw in prop::collection::vec(any::<u8>(), 0..2048)) {
        check(&raw)?;
    }

    #[test]
    fn header_lines_of_arbitrary_text_never_panic(
        lines in prop::collection::vec("[ -~\u{80}-\u{2000}]{0,80}", 1..20),
    ) {
        let mut raw = b"Subject: x\n".to_vec();
        for line in lines {
            raw.extend_from_slice(line.as_bytes());
            raw.push(b'\n');
        }
        check(&raw)?;
    }
}
