//! Hostile and malformed input: every case must come back as `Ok` (with flags) or a typed
//! `ParseError` — never a panic, a stack overflow or a hang. Speed lives in the benchmark; these
//! tests only prove the outcome.

use mailroom::email::flags;
use mailroom::{Email, Limits, ParseError, Parsed};

fn ok(raw: &[u8]) -> Parsed {
    ok_with(raw, &Limits::default())
}

fn ok_with(raw: &[u8], limits: &Limits) -> Parsed {
    match Email::parse(raw, limits) {
        Ok(parsed) => {
            assert_eq!(parsed.contents.len(), parsed.email.attachments.len());
            assert_eq!(parsed.email.size, raw.len() as u64);
            parsed
        }
        Err(e) => panic!("expected Ok, got {e}"),
    }
}

fn has_flag(parsed: &Parsed, flag: &str) -> bool {
    parsed.email.flags.iter().any(|f| f == flag)
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn empty_and_blank_input_is_empty() {
    assert_eq!(
        Email::parse(b"", &Limits::default()),
        Err(ParseError::Empty)
    );
    assert_eq!(
        Email::parse(b"\r\n\r\n \t", &Limits::default()),
        Err(ParseError::Empty)
    );
}

#[test]
fn oversize_input_is_refused_before_parsing() {
    let limits = Limits::default();
    let raw = vec![b'a'; limits.max_size + 1];
    assert_eq!(
        Email::parse(&raw, &limits),
        Err(ParseError::TooLarge {
            size: limits.max_size + 1,
            limit: limits.max_size
        })
    );
}

#[test]
fn binary_garbage_is_not_mime() {
    for seed in 1..50u64 {
        let raw = noise(seed, 4096);
        match Email::parse(&raw, &Limits::default()) {
            Ok(_) | Err(ParseError::NotMime { .. }) => {}
            Err(ParseError::HeadersTooLarge { .. }) => {}
            Err(e) => panic!("seed {seed}: unexpected {e}"),
        }
    }
    assert!(matches!(
        Email::parse(&[0xff, 0xfe, 0, 1, 2, b':', b'\n'], &Limits::default()),
        Err(ParseError::NotMime { .. })
    ));
}

#[test]
fn garbage_after_a_valid_header_still_parses() {
    for seed in 1..50u64 {
        let mut raw =
            b"Subject: noise\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n".to_vec();
        raw.extend(noise(seed, 8192));
        raw.extend_from_slice(b"\r\n--x\r\nContent-Transfer-Encoding: base64\r\n\r\n");
        raw.extend(noise(seed + 1000, 2048));
        ok(&raw);
    }
}

#[test]
fn ten_thousand_nested_multiparts_are_cut_at_max_depth() {
    let depth = 10_000;
    let mut raw = String::from("From: a@example.com\nSubject: deep\n");
    for i in 0..depth {
        raw.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n"
        ));
    }
    raw.push_str("Content-Type: application/octet-stream\n\nleaf\n");
    for i in (0..depth).rev() {
        raw.push_str(&format!("--b{i}--\n"));
    }
    let parsed = ok(raw.as_bytes());
    assert!(
        has_flag(&parsed, flags::MAX_DEPTH_EXCEEDED),
        "{:?}",
        parsed.email.flags
    );
    // The container at the limit is kept whole, unparsed, as one attachment: nothing is lost.
    assert_eq!(parsed.email.attachments.len(), 1);
    assert_eq!(parsed.email.attachments[0].content_type, "multipart/mixed");
    assert!(parsed.contents[0].windows(5).any(|w| w == b"\nleaf"));
}

#[test]
fn ten_thousand_nested_messages_do_not_overflow_the_stack() {
    let depth = 10_000;
    let mut raw = String::new();
    for _ in 0..depth {
        raw.push_str("From: a@example.com\nContent-Type: message/rfc822\n\n");
    }
    raw.push_str("From: leaf@example.com\nSubject: leaf\n\nleaf body\n");
    let parsed = ok(raw.as_bytes());
    assert!(
        has_flag(&parsed, flags::MAX_DEPTH_EXCEEDED),
        "{:?}",
        parsed.email.flags
    );

    // The nesting the model keeps is bounded by max_depth.
    let mut levels = 0;
    let mut email = &parsed.email;
    while let Some(nested) = email.attachments.first().and_then(|a| a.message.as_deref()) {
        levels += 1;
        email = nested;
    }
    assert!(levels <= Limits::default().max_depth, "{levels} levels");
    assert!(levels > 0);
}

#[test]
fn a_hundred_thousand_headers_within_the_limit_parse() {
    let mut raw = String::from("From: a@example.com\n");
    for i in 0..100_000 {
        raw.push_str(&format!("X{i}:v\n"));
    }
    raw.push_str("\nbody\n");
    assert!(raw.len() < Limits::default().max_header_bytes);
    let parsed = ok(raw.as_bytes());
    assert_eq!(parsed.email.headers.len(), 100_001);
    assert_eq!(parsed.email.text.as_deref(), Some("body\n"));
}

#[test]
fn header_blocks_over_the_limit_are_refused() {
    let mut raw = String::from("From: a@example.com\n");
    for i in 0..200_000 {
        raw.push_str(&format!("X-{i}: v\n"));
    }
    raw.push_str("\nbody\n");
    assert_eq!(
        Email::parse(raw.as_bytes(), &Limits::default()),
        Err(ParseError::HeadersTooLarge {
            limit: Limits::default().max_header_bytes
        })
    );
}

#[test]
fn a_five_megabyte_header_line_is_refused() {
    let mut raw = b"Subject: ".to_vec();
    raw.extend(std::iter::repeat_n(b'x', 5 * 1024 * 1024));
    raw.extend_from_slice(b"\n\nbody\n");
    assert!(matches!(
        Email::parse(&raw, &Limits::default()),
        Err(ParseError::HeadersTooLarge { .. })
    ));
    // With a limit that allows it, it parses.
    let roomy = Limits {
        max_header_bytes: 6 * 1024 * 1024,
        ..Limits::default()
    };
    let parsed = ok_with(&raw, &roomy);
    assert_eq!(parsed.email.subject.map(|s| s.len()), Some(5 * 1024 * 1024));
}

#[test]
fn unterminated_boundaries_keep_what_arrived() {
    let raw = b"From: a@example.com\nContent-Type: multipart/mixed; boundary=zz\n\n--zz\n\
                Content-Type: text/plain\n\nfirst part\n--zz\nContent-Type: application/pdf\n\
                Content-Transfer-Encoding: base64\n\nJVBERi0xLjQK";
    let parsed = ok(raw);
    assert_eq!(parsed.email.text.as_deref(), Some("first part"));
    assert_eq!(parsed.email.attachments.len(), 1);
    // A part cut off before its boundary keeps what arrived, decoded, and the cut is flagged.
    assert_eq!(parsed.contents[0], b"%PDF-1.4\n");
    assert!(
        has_flag(&parsed, flags::MISSING_BOUNDARY),
        "{:?}",
        parsed.email.flags
    );
}

#[test]
fn a_huge_base64_attachment_decodes_once_and_exactly() {
    let payload = noise(7, 24 * 1024 * 1024);
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &payload);
    let mut raw = String::from(
        "From: a@example.com\nContent-Type: multipart/mixed; boundary=q\n\n--q\n\
         Content-Type: text/plain\n\nsee attached\n--q\nContent-Type: application/octet-stream\n\
         Content-Disposition: attachment; filename=big.bin\nContent-Transfer-Encoding: base64\n\n",
    );
    for line in b64.as_bytes().chunks(76) {
        raw.push_str(std::str::from_utf8(line).unwrap_or_default());
        raw.push('\n');
    }
    raw.push_str("--q--\n");
    let parsed = ok(raw.as_bytes());
    assert_eq!(parsed.email.attachments.len(), 1);
    assert_eq!(parsed.email.attachments[0].size, payload.len() as u64);
    assert!(parsed.contents[0] == payload);
}

#[test]
fn more_parts_than_max_parts_are_dropped_and_flagged() {
    let mut raw =
        String::from("From: a@example.com\nContent-Type: multipart/mixed; boundary=p\n\n");
    for i in 0..5_000 {
        raw.push_str(&format!(
            "--p\nContent-Type: application/octet-stream; name=f{i}.bin\n\n{i}\n"
        ));
    }
    raw.push_str("--p--\n");
    let parsed = ok(raw.as_bytes());
    assert!(has_flag(&parsed, flags::MAX_PARTS_EXCEEDED));
    let max = Limits::default().max_parts;
    assert!(
        parsed.email.attachments.len() < max,
        "{}",
        parsed.email.attachments.len()
    );
    assert!(parsed.email.attachments.len() > max / 2);
    for (i, a) in parsed.email.attachments.iter().enumerate() {
        assert_eq!(a.index, i);
    }
}

#[test]
fn headers_only_and_truncated_messages_parse() {
    ok(b"Subject: no body");
    ok(b"Subject: no body\n\n");
    ok(b"Subject: =?utf-8?B?broken base64?=\nFrom: <<<>>>\nTo: ,,,@@@\nDate: yesterday\n\nx");
    ok(b"Content-Type: multipart/alternative\n\nno boundary parameter");
    ok(b"Content-Type: text/plain; charset=no-such-charset\n\n\xff\xfe text");
    ok(b"Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\n!!!not base64!!!");
}

#[test]
fn small_limits_apply() {
    let tiny = Limits {
        max_size: 1024,
        max_parts: 2,
        max_depth: 1,
        max_header_bytes: 32,
    };
    let raw =
        b"From: a@example.com\nContent-Type: multipart/mixed; boundary=p\n\n--p\n\nx\n--p--\n";
    assert!(matches!(
        Email::parse(raw, &tiny),
        Err(ParseError::HeadersTooLarge { limit: 32 })
    ));
    let parts_and_depth = Limits {
        max_header_bytes: 1024,
        ..tiny.clone()
    };
    let raw = b"From: a@example.com\nContent-Type: multipart/mixed; boundary=p\n\n--p\n\nx\n\
                --p\nContent-Type: image/png\n\nA\n--p\nContent-Type: image/png\n\nB\n--p--\n";
    let parsed = ok_with(raw, &parts_and_depth);
    assert!(
        has_flag(&parsed, flags::MAX_PARTS_EXCEEDED),
        "{:?}",
        parsed.email.flags
    );
    assert!(
        parsed.email.attachments.is_empty(),
        "{:?}",
        parsed.email.attachments
    );
    assert_eq!(parsed.email.text.as_deref(), Some("x"));
}

#[test]
fn hostile_replies_get_their_reply_worked_out() {
    use mailroom::email::ReplyMethod;
    let quoted = "> a quoted line of a long thread\r\n".repeat(100_000);
    let raw = format!("From: a@x.com\r\nSubject: Re: x\r\n\r\nYes.\r\n{quoted}");
    let reply = ok(raw.as_bytes()).email.reply.expect("a reply");
    assert_eq!(
        (reply.text.as_str(), reply.method),
        ("Yes.", ReplyMethod::QuotePrefix)
    );

    let nested = format!(
        "<p>Yes.</p>{}old{}",
        "<blockquote>".repeat(10_000),
        "</blockquote>".repeat(10_000)
    );
    let raw =
        format!("From: a@x.com\r\nContent-Type: text/html; charset=utf-8\r\n\r\n{nested}\r\n");
    let reply = ok(raw.as_bytes()).email.reply.expect("a reply");
    assert_eq!(
        (reply.text.as_str(), reply.method),
        ("Yes.", ReplyMethod::HtmlQuote)
    );

    // A body over the bound gets no reply rather than another copy of itself.
    let long = "x".repeat(mailroom::email::REPLY_MAX_BODY + 1);
    let raw = format!("From: a@x.com\r\n\r\n{long}\r\n");
    assert_eq!(ok(raw.as_bytes()).email.reply, None);
}
