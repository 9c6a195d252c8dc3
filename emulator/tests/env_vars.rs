//! Each function's list of the variables it reads (what the template check trusts) against what
//! its `Config::from_env` really asks for, with every optional branch switched on.

use mailroom_testkit::{RecordingEnv, assert_lists_reads};

fn check(binary: &str, values: &[(&str, &str)], read: impl Fn(&RecordingEnv<'_>) -> bool) {
    let env = RecordingEnv::new(values);
    assert!(read(&env), "{binary}: the test environment must be valid");
    let listed = mailroom_emulator::functions::env_vars(binary).expect("one of ours");
    assert_lists_reads(&listed, &env);
}

#[test]
fn stop_lists_what_it_reads() {
    let values = [
        ("MAILROOM_RAW_BUCKET", "mail"),
        ("MAILROOM_MAX_SIZE", "10MB"),
    ];
    check("stop", &values, |env| {
        mailroom_stop::Config::from_env(env).is_ok()
    });
}

#[test]
fn bounce_lists_what_it_reads() {
    let values = [
        ("MAILROOM_MAILBOXES", "support@example.com"),
        ("MAILROOM_BOUNCE_SENDER", "mailer-daemon@example.com"),
        ("MAILROOM_BOUNCE_REJECTED", "true"),
        ("MAILROOM_RAW_BUCKET", "mail"),
    ];
    check("bounce", &values, |env| {
        mailroom_bounce::Config::from_env(env).is_ok()
    });
}

#[test]
fn store_and_fanout_list_what_they_read() {
    let values = [
        ("MAILROOM_RAW_BUCKET", "mail"),
        (
            "MAILROOM_TOPIC_ARN",
            "arn:aws:sns:us-east-1:123456789012:mail",
        ),
    ];
    check("store", &values, |env| {
        mailroom_store::Config::from_env(env).is_ok()
    });
    check("fanout", &values, |env| {
        mailroom_fanout::Config::from_env(env).is_ok()
    });
}

#[test]
fn api_lists_what_it_reads() {
    let values = [
        ("MAILROOM_RAW_BUCKET", "mail"),
        ("MAILROOM_WEBHOOK_URL", "https://hooks.example.com/in"),
        (
            "MAILROOM_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ),
        (
            "MAILROOM_RETRY_QUEUE_URL",
            "https://sqs.us-east-1.amazonaws.com/1/retry",
        ),
        (
            "MAILROOM_DLQ_URL",
            "https://sqs.us-east-1.amazonaws.com/1/dlq",
        ),
        ("MAILROOM_RETRY_SCHEDULE", "1m,5m"),
    ];
    check("api", &values, |env| {
        mailroom_api::Config::from_env(env).is_ok()
    });
}

#[test]
fn forward_lists_what_it_reads() {
    let values = [
        ("MAILROOM_RAW_BUCKET", "mail"),
        ("MAILROOM_FORWARD_FROM", "forwarder@example.com"),
        ("MAILROOM_FORWARD_MAP", "info@example.com=me@gmail.com"),
        ("MAILROOM_FORWARD_NOTICE_TO", "admin@example.com"),
    ];
    check("forward", &values, |env| {
        mailroom_forward::Config::from_env(env).is_ok()
    });
}

#[test]
fn a_variable_of_another_crate_is_not_listed() {
    let fanout = mailroom_emulator::functions::env_vars("fanout").expect("fanout");
    assert!(!fanout.contains(&"MAILROOM_STOP_SPAM"));
    assert!(mailroom_emulator::functions::env_vars("not-ours").is_none());
    let activate = mailroom_emulator::functions::env_vars("activate-ruleset").expect("ours");
    assert!(activate.is_empty());
}
