//! The SMTP dialogue, line by line, without sockets.

use super::*;
use crate::receipt::{Rule, TlsPolicy};

fn rules() -> RuleSet {
    let rule = |name: &str, recipients: &[&str], tls_policy| Rule {
        name: name.into(),
        enabled: true,
        scan_enabled: true,
        tls_policy,
        recipients: recipients.iter().map(|s| s.to_string()).collect(),
        actions: Vec::new(),
    };
    RuleSet {
        name: "test-set".into(),
        rules: vec![
            rule("plain", &["plain.example.com"], TlsPolicy::Optional),
            rule("secure", &["secure.example.com"], TlsPolicy::Require),
        ],
    }
}

/// The replies of a step, as text.
fn replies(step: &Step<'_>) -> Vec<String> {
    step.events
        .iter()
        .filter_map(|e| match e {
            Event::Reply(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

/// Feeds a command line (CRLF added) and returns its first reply.
fn say(s: &mut Session<'_>, line: &str) -> String {
    let line = format!("{line}\r\n");
    let step = s.feed(Input::Line(line.as_bytes()));
    replies(&step).first().cloned().unwrap_or_default()
}

/// Feeds raw bytes split into lines (through each LF), collecting every event's effect: the
/// message data appended, the envelope handed over, the replies.
#[derive(Default, Debug)]
struct Fed {
    data: Vec<u8>,
    envelopes: Vec<Envelope>,
    replies: Vec<String>,
    discarded: bool,
    closed: bool,
    refused: Vec<Refusal>,
}

fn feed_raw(s: &mut Session<'_>, raw: &[u8]) -> Fed {
    let mut fed = Fed::default();
    for line in raw.split_inclusive(|&b| b == b'\n') {
        let step = s.feed(Input::Line(line));
        for e in step.events {
            match e {
                Event::Reply(r) => fed.replies.push(r),
                Event::Data(d) => fed.data.extend_from_slice(d),
                Event::Discard => {
                    fed.discarded = true;
                    fed.data.clear();
                }
                Event::Message(env) => fed.envelopes.push(env),
                Event::Close => fed.closed = true,
                Event::Refused(r) => fed.refused.push(r),
                Event::StartTls => {}
            }
        }
    }
    fed
}

#[test]
fn a_recipient_refused_at_rcpt_is_reported_with_the_reply_the_client_read() {
    let rules = rules();
    let mut s = Session::new(&rules, "192.0.2.1".into(), false, false);
    let fed = feed_raw(
        &mut s,
        b"EHLO client.test\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<x@elsewhere.example>\r\n\
          RCPT TO:<x@secure.example.com>\r\nRCPT TO:<x@plain.example.com>\r\n",
    );
    let seen: Vec<(&str, &str)> = fed
        .refused
        .iter()
        .map(|r| (r.recipient.as_str(), &r.reply[..9]))
        .collect();
    assert_eq!(
        seen,
        [
            ("x@elsewhere.example", "550 5.1.1"),
            ("x@secure.example.com", "530 5.7.0")
        ]
    );
    let first = &fed.refused[0];
    assert_eq!(
        (
            first.mail_from.as_str(),
            first.client_ip.as_str(),
            first.helo.as_str()
        ),
        ("a@b.example", "192.0.2.1", "client.test")
    );
    assert!(fed.replies.contains(&first.reply), "{:?}", fed.replies);
}

fn ready<'r>(rules: &'r RuleSet) -> Session<'r> {
    let mut s = Session::new(rules, "192.0.2.1".into(), false, false);
    assert!(say(&mut s, "EHLO client.test").starts_with("250-"));
    assert!(say(&mut s, "MAIL FROM:<a@b.example>").starts_with("250 "));
    assert!(say(&mut s, "RCPT TO:<x@plain.example.com>").starts_with("250 "));
    s
}

#[test]
fn a_message_is_unstuffed_and_handed_over_with_its_envelope() {
    let rules = rules();
    let mut s = ready(&rules);
    assert!(say(&mut s, "DATA").starts_with("354 "));
    assert_eq!(s.max_line(), MAX_TEXT_LINE);
    let fed = feed_raw(&mut s, b"Subject: x\r\n\r\n..leading dot\r\n.\r\nNOOP\r\n");
    assert_eq!(fed.data, b"Subject: x\r\n\r\n.leading dot\r\n");
    assert_eq!(
        fed.envelopes,
        vec![Envelope {
            mail_from: "a@b.example".into(),
            recipients: vec!["x@plain.example.com".into()],
            helo: "client.test".into(),
            client_ip: "192.0.2.1".into(),
            tls: false,
        }]
    );
    assert!(fed.replies.is_empty(), "nothing is read while delivering");
    let step = s.delivered(Ok("0123".into()));
    assert_eq!(replies(&step), ["250 2.0.0 Ok 0123"]);
    assert_eq!(s.max_line(), MAX_COMMAND_LINE);
    let step = s.delivered(Err("boom\r\nInjected: x".into()));
    assert!(step.events.is_empty(), "no message is being delivered");
    assert!(say(&mut s, "MAIL FROM:<a@b.example>").starts_with("250 "));
}

#[test]
fn a_failed_delivery_answers_554_on_one_line() {
    let rules = rules();
    let mut s = ready(&rules);
    say(&mut s, "DATA");
    feed_raw(&mut s, b"Subject: x\r\n\r\nbody\r\n.\r\n");
    let step = s.delivered(Err("boom\r\nInjected: \x1b[31mx".into()));
    assert_eq!(replies(&step), ["554 5.6.0 boom  Injected: ?[31mx"]);
}

#[test]
fn only_crlf_dot_crlf_ends_data() {
    let rules = rules();
    let mut s = ready(&rules);
    say(&mut s, "DATA");
    // Bare-LF dots, a dot with a bare LF, a CR-dot: all content; the smuggled commands with them.
    let smuggled: &[u8] = b"Subject: x\r\n\r\nhi\n.\r\nMAIL FROM:<evil@x.example>\r\nhi\r\n.\nRCPT TO:<y@plain.example.com>\r\nhi\r.\r\nDATA\r\n";
    let fed = feed_raw(&mut s, smuggled);
    assert!(fed.envelopes.is_empty(), "DATA ended early: {fed:?}");
    assert!(fed.replies.is_empty(), "{fed:?}");
    assert_eq!(fed.data, smuggled, "every line kept as it came");
    let fed = feed_raw(&mut s, b".\r\n");
    assert_eq!(fed.envelopes.len(), 1);
    assert_eq!(fed.envelopes[0].mail_from, "a@b.example");
}

#[test]
fn data_past_the_cap_is_discarded_and_refused() {
    let rules = rules();
    let mut s = ready(&rules);
    say(&mut s, "DATA");
    let mut line = vec![b'x'; 1000];
    line.extend_from_slice(b"\r\n");
    let mut kept = 0;
    let mut discarded = false;
    for _ in 0..=(MAX_MESSAGE_BYTES / line.len()) {
        for e in s.feed(Input::Line(&line)).events {
            match e {
                Event::Data(d) => kept += d.len(),
                Event::Discard => discarded = true,
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(discarded);
    assert!(kept <= MAX_MESSAGE_BYTES);
    let fed = feed_raw(&mut s, b".\r\n");
    assert!(fed.envelopes.is_empty());
    assert_eq!(fed.replies.len(), 1);
    assert!(fed.replies[0].starts_with("552 5.3.4"), "{fed:?}");
    assert!(say(&mut s, "MAIL FROM:<a@b.example>").starts_with("250 "));
}

#[test]
fn a_too_long_text_line_refuses_the_message() {
    let rules = rules();
    let mut s = ready(&rules);
    say(&mut s, "DATA");
    let step = s.feed(Input::TooLong { crlf: true });
    assert!(step.progress && step.events.is_empty());
    let fed = feed_raw(&mut s, b"rest\r\n.\r\n");
    assert!(fed.envelopes.is_empty());
    assert!(fed.replies[0].starts_with("500 5.5.2"), "{fed:?}");
}

#[test]
fn command_order_and_syntax() {
    let rules = rules();
    let mut s = Session::new(&rules, "192.0.2.1".into(), false, false);
    assert!(say(&mut s, "MAIL FROM:<a@b.c>").starts_with("503 "));
    assert!(say(&mut s, "EHLO").starts_with("501 5.5.4"));
    let ehlo = say(&mut s, "EHLO client.test");
    assert!(ehlo.contains("SIZE 41943040"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"));
    assert!(say(&mut s, "RCPT TO:<x@plain.example.com>").starts_with("503 "));
    assert!(say(&mut s, "MAIL FROM:<a@b.c> SIZE=41943041").starts_with("552 5.3.4"));
    assert!(say(&mut s, "MAIL FROM:a@b.c").starts_with("501 "));
    assert!(say(&mut s, "MAIL FROM:<a@b.c> SIZE=100").starts_with("250 "));
    assert!(say(&mut s, "MAIL FROM:<a@b.c>").starts_with("503 5.5.1 Sender"));
    assert!(say(&mut s, "DATA").starts_with("503 "));
    assert!(say(&mut s, "RCPT TO:<x@secure.example.com>").starts_with("530 5.7.0"));
    assert!(say(&mut s, "RCPT TO:<x@elsewhere.example>").starts_with("550 5.1.1"));
    assert!(say(&mut s, "RCPT TO:<not an address>").starts_with("501 5.1.3"));
    assert!(say(&mut s, "RCPT TO:<x@plain.example.com>").starts_with("250 "));
    assert_eq!(
        replies(&s.feed(Input::TooLong { crlf: true })),
        ["500 5.5.2 Line too long"]
    );
    assert!(say(&mut s, "RSET").starts_with("250 "));
    assert!(
        say(&mut s, "DATA").starts_with("503 "),
        "RSET forgot the transaction"
    );
    assert!(say(&mut s, "VRFY x").starts_with("252 "));
    assert!(say(&mut s, "STARTTLS").starts_with("502 "));
    assert!(say(&mut s, "FOO").starts_with("502 5.5.2"));
    let step = s.feed(Input::Line(b"QUIT\r\n"));
    assert_eq!(
        step.events,
        [Event::Reply("221 2.0.0 Bye".into()), Event::Close]
    );
    assert!(s.is_closed());
    assert!(s.feed(Input::Line(b"NOOP\r\n")).events.is_empty());
}

#[test]
fn starttls_is_offered_only_with_a_certificate_and_only_once() {
    let rules = rules();
    let mut s = Session::new(&rules, "192.0.2.1".into(), true, false);
    assert!(say(&mut s, "EHLO c.test").contains("250-STARTTLS"));
    let step = s.feed(Input::Line(b"STARTTLS\r\n"));
    assert_eq!(
        step.events,
        [
            Event::Reply("220 2.0.0 Ready to start TLS".into()),
            Event::StartTls
        ]
    );
    assert!(s.is_closed());
    let mut s = Session::new(&rules, "192.0.2.1".into(), true, true);
    assert!(!say(&mut s, "EHLO c.test").contains("STARTTLS"));
    assert!(say(&mut s, "STARTTLS").starts_with("503 5.5.1 TLS already"));
    assert!(say(&mut s, "MAIL FROM:<a@b.c>").starts_with("250 "));
    assert!(say(&mut s, "RCPT TO:<x@secure.example.com>").starts_with("250 "));
}

#[test]
fn rejected_recipients_end_the_session_after_the_error_limit() {
    let rules = rules();
    let mut s = ready(&rules);
    let mut closed_after = None;
    for i in 1..=5000 {
        let line = format!("RCPT TO:<u{i}@nowhere.example>\r\n");
        let step = s.feed(Input::Line(line.as_bytes()));
        if step.events.contains(&Event::Close) {
            assert!(replies(&step).last().unwrap().starts_with("421 4.7.0"));
            closed_after = Some(i);
            break;
        }
    }
    assert_eq!(closed_after, Some(MAX_ERRORS));
    assert!(s.is_closed());
}

#[test]
fn syntax_errors_end_the_session_after_the_error_limit() {
    let rules = rules();
    let mut s = Session::new(&rules, "192.0.2.1".into(), false, false);
    for _ in 1..MAX_ERRORS {
        assert!(
            !s.feed(Input::Line(b"FOO\r\n"))
                .events
                .contains(&Event::Close)
        );
    }
    let step = s.feed(Input::Line(b"FOO\r\n"));
    assert_eq!(step.events.last(), Some(&Event::Close));
}

#[test]
fn control_characters_never_reach_the_envelope() {
    let rules = rules();
    let mut s = Session::new(&rules, "192.0.2.1".into(), false, false);
    for helo in [
        "EHLO a\rInjected: x",
        "EHLO a\0b",
        "HELO a\x1b[2Jb",
        "EHLO a\x7fb",
    ] {
        assert!(say(&mut s, helo).starts_with("501 5.5.2"), "{helo:?}");
    }
    assert!(say(&mut s, "EHLO client.test").starts_with("250-"));
    for from in [
        "MAIL FROM:<a\x1b[31m@b.example>",
        "MAIL FROM:<a\0@b.example>",
        "MAIL FROM:<a\r@b.example>",
    ] {
        assert!(say(&mut s, from).starts_with("553 5.1.7"), "{from:?}");
    }
    assert!(say(&mut s, "RCPT TO:<x\x1b@plain.example.com>").starts_with("503 "));
    assert!(say(&mut s, "MAIL FROM:<a@b.example>").starts_with("250 "));
    assert!(say(&mut s, "RCPT TO:<x\x1b@plain.example.com>").starts_with("501 5.1.3"));
}

#[test]
fn only_progress_restarts_the_idle_timer() {
    let rules = rules();
    let mut s = Session::new(&rules, "192.0.2.1".into(), false, false);
    assert!(s.feed(Input::Line(b"EHLO c.test\r\n")).progress);
    for junk in [
        "NOOP",
        "RSET",
        "VRFY x",
        "EHLO c.test",
        "FOO",
        "RCPT TO:<x@nowhere.example>",
    ] {
        let line = format!("{junk}\r\n");
        assert!(!s.feed(Input::Line(line.as_bytes())).progress, "{junk}");
    }
    assert!(s.feed(Input::Line(b"MAIL FROM:<a@b.example>\r\n")).progress);
    assert!(
        !s.feed(Input::Line(b"RCPT TO:<x@nowhere.example>\r\n"))
            .progress
    );
    assert!(
        s.feed(Input::Line(b"RCPT TO:<x@plain.example.com>\r\n"))
            .progress
    );
    assert!(s.feed(Input::Line(b"DATA\r\n")).progress);
    assert!(s.feed(Input::Line(b"line\r\n")).progress);
}

#[test]
fn timeouts_say_why_and_close() {
    let rules = rules();
    let mut s = Session::new(&rules, "192.0.2.1".into(), false, false);
    let step = s.timed_out(Timeout::Lifetime);
    assert!(replies(&step)[0].starts_with("421 4.4.2 Session time limit"));
    assert_eq!(step.events.last(), Some(&Event::Close));
    assert!(s.is_closed());
    let mut s = Session::new(&rules, "192.0.2.1".into(), false, false);
    assert!(replies(&s.timed_out(Timeout::Idle))[0].starts_with("421 4.4.2 Idle"));
}

#[test]
fn paths_and_parameters() {
    let (a, p) = parse_path("<a@b.c> SIZE=100 BODY=8BITMIME").unwrap();
    assert_eq!(a, "a@b.c");
    assert_eq!(p[0], ("SIZE".into(), "100".into()));
    assert_eq!(parse_path("<>").unwrap().0, "");
    assert_eq!(parse_path("<@relay:u@d.e>").unwrap().0, "u@d.e");
    assert!(parse_path("a@b.c").is_none());
    assert!(valid_mailbox("a@b.c"));
    assert!(!valid_mailbox("a b@c.d"));
    assert!(!valid_mailbox("nodomain"));
}

#[test]
fn the_refusal_of_a_blocked_address_is_one_554_line() {
    let r = Session::refused_greeting();
    assert!(r.starts_with("554 5.7.1 "), "{r}");
    assert!(!r.contains(['\r', '\n']), "{r}");
}
