//! The local webhook sink end to end, through the real binary: the project template's default
//! `WebhookUrl` (a reserved example host) is delivered to the sink and recorded with a valid
//! signature and no retry; an ordinary URL still goes to its server; `--webhook-sink` forces the
//! sink for any URL; `serve` routes the same way.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use mailroom_testkit::http::{HttpServer, Reply};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const EML: &str = "events/mail/multipart-alternative.eml";
const SUBJECT: &str = "Your order #1042 has shipped";
const HEADER_MESSAGE_ID: &str = "20250115100000.1042@mail.example.net";

/// The api action's trace outputs.
fn api_outputs(run: &Run) -> Vec<String> {
    let api = run.rule("receive")["actions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["description"] == "Lambda mailroom-ApiFunction (Event)")
        .unwrap()
        .clone();
    assert_eq!(api["status"]["status"], "ok", "{api}");
    api["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_string())
        .collect()
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Files under `dir` (none when it does not exist).
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// The one webhook the sink recorded for this run, checked against the trace and the .eml.
fn the_recorded_webhook(run: &Run, state: &Path) -> serde_json::Value {
    let listed = run.json["webhooks"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{}", run.json["webhooks"]);
    let file = Path::new(listed[0]["file"].as_str().unwrap()).to_path_buf();
    assert!(file.starts_with(state.join("webhooks")), "{file:?}");
    assert_eq!(files(&state.join("webhooks")), vec![file.clone()]);
    assert_eq!(listed[0]["signatureValid"], true);
    let doc = read_json(&file);
    assert_eq!(doc["method"], "POST");
    assert_eq!(doc["signatureValid"], true, "{}", doc["signatureError"]);
    assert!(doc.get("signatureError").is_none());
    let data = &doc["body"]["data"];
    assert_eq!(data["messageId"], run.message_id().as_str());
    assert_eq!(data["email"]["subject"], SUBJECT);
    assert_eq!(data["email"]["messageId"], HEADER_MESSAGE_ID);
    assert_eq!(
        doc["headers"]["webhook-id"], listed[0]["webhookId"],
        "the file is named after the webhook-id"
    );
    assert_eq!(
        file.file_name().unwrap().to_str().unwrap(),
        format!("{}.json", listed[0]["webhookId"].as_str().unwrap())
    );
    assert!(
        doc["headers"]["webhook-signature"]
            .as_str()
            .unwrap()
            .starts_with("v1,")
    );
    doc
}

#[test]
fn the_default_example_url_is_delivered_to_the_sink_with_a_valid_signature() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let run = deliver(
        &root().join(EML),
        &root().join("template.yaml"),
        &state,
        &["--to", "support@example.com"],
    );
    assert!(run.ok(), "{}", run.stderr());
    let doc = the_recorded_webhook(&run, &state);
    assert_eq!(doc["url"], "https://hooks.example.com/mail");
    assert_eq!(doc["headers"]["host"], "hooks.example.com");
    let outputs = api_outputs(&run);
    assert_eq!(
        outputs[0],
        "POST https://hooks.example.com/mail (reserved example domain: delivered to the local sink) → HTTP 200"
    );
    let file = run.json["webhooks"][0]["file"].as_str().unwrap();
    assert_eq!(outputs[1], format!("webhook {file} (signature valid)"));
    assert_eq!(outputs.len(), 2, "{outputs:?}");
    // Delivered: nothing waits for a retry and nothing was dead-lettered.
    assert_eq!(files(&state.join("sqs")), Vec::<std::path::PathBuf>::new());
}

#[test]
fn the_text_trace_says_where_the_webhook_went() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let output = Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .current_dir(root())
        .args(["deliver", EML, "--to", "support@example.com", "--state-dir"])
        .arg(&state)
        .env_remove("MAILROOM_WEBHOOK_SECRET")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains(
            "→ POST https://hooks.example.com/mail (reserved example domain: delivered to the local sink) → HTTP 200\n"
        ),
        "{text}"
    );
    let file = files(&state.join("webhooks")).pop().unwrap();
    assert!(
        text.contains(&format!("→ webhook {} (signature valid)\n", file.display())),
        "{text}"
    );
    assert!(!text.contains("SQS"), "{text}");
}

#[test]
fn other_reserved_names_go_to_the_sink_with_their_path_and_the_query_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let run = deliver(
        &root().join(EML),
        &root().join("template.yaml"),
        &state,
        &[
            "--to",
            "support@example.com",
            "--param",
            "WebhookUrl=https://in.hooks.test:8443/mail/in?team=ops",
        ],
    );
    assert!(run.ok(), "{}", run.stderr());
    let doc = the_recorded_webhook(&run, &state);
    // A query may carry a token: the sink writes to disk, so it keeps the path only.
    assert_eq!(doc["url"], "https://in.hooks.test:8443/mail/in?<redacted>");
    assert_eq!(doc["headers"]["host"], "in.hooks.test:8443");
    assert!(
        api_outputs(&run)[0].contains("(reserved test domain: delivered to the local sink)"),
        "{:?}",
        api_outputs(&run)
    );
}

#[test]
fn an_ordinary_url_still_goes_to_its_server() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // A real HTTP endpoint on 127.0.0.1 that answers 200 to everything and keeps what it got.
    let server = HttpServer::scripted_on_thread(vec![Reply::status(200).body("ok")]);
    let url = server.url("/hook");
    let run = deliver(
        &root().join(EML),
        &root().join("template.yaml"),
        &state,
        &[
            "--to",
            "support@example.com",
            "--param",
            &format!("WebhookUrl={url}"),
        ],
    );
    assert!(run.ok(), "{}", run.stderr());
    assert_eq!(api_outputs(&run), vec![format!("POST {url} → HTTP 200")]);
    let seen = server.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[0].path.as_str()),
        ("POST", "/hook")
    );
    assert!(
        seen[0]
            .header("webhook-signature")
            .is_some_and(|s| s.starts_with("v1,")),
        "{seen:?}"
    );
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body["data"]["messageId"], run.message_id().as_str());
    assert!(!state.join("webhooks").exists(), "the sink was not used");
    assert_eq!(run.json["webhooks"], serde_json::json!([]));
    assert_eq!(files(&state.join("sqs")), Vec::<std::path::PathBuf>::new());
}

#[test]
fn the_flag_forces_the_sink_for_any_url() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    // Without the flag this URL fails and the retry is queued (the emulator suite shows it).
    let run = deliver(
        &root().join(EML),
        &root().join("template.yaml"),
        &state,
        &[
            "--to",
            "support@example.com",
            "--param",
            DEAD_WEBHOOK,
            "--webhook-sink",
        ],
    );
    assert!(run.ok(), "{}", run.stderr());
    let doc = the_recorded_webhook(&run, &state);
    assert_eq!(doc["url"], "http://127.0.0.1:9/hook");
    assert_eq!(
        api_outputs(&run)[0],
        "POST http://127.0.0.1:9/hook (--webhook-sink: delivered to the local sink) → HTTP 200"
    );
    assert_eq!(files(&state.join("sqs")), Vec::<std::path::PathBuf>::new());
}

#[test]
fn help_mentions_the_flag() {
    for command in ["deliver", "serve"] {
        let output = Command::new(env!("CARGO_BIN_EXE_mailroom"))
            .args([command, "--help"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(text.contains("--webhook-sink"), "{command}: {text}");
        assert!(text.contains("example.com"), "{command}: {text}");
    }
}

fn reply(reader: &mut BufReader<TcpStream>) -> String {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(!line.is_empty(), "connection closed after {all:?}");
        all.push_str(&line);
        if line.as_bytes().get(3) != Some(&b'-') {
            return all;
        }
    }
}

#[test]
fn serve_routes_the_default_url_to_the_sink_too() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .current_dir(root())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--ui",
            "127.0.0.1:0",
            "--json",
            "--state-dir",
        ])
        .arg(&state)
        .env_remove("MAILROOM_WEBHOOK_SECRET")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner = lines.next().unwrap().unwrap();
    let addr = banner
        .split_whitespace()
        .find(|w| w.starts_with("127.0.0.1:"))
        .unwrap()
        .trim_end_matches(',')
        .to_string();
    let stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    assert!(reply(&mut reader).starts_with("220"));
    let message = std::fs::read(root().join(EML)).unwrap();
    for (line, code) in [
        ("EHLO client.example.net", "250"),
        ("MAIL FROM:<shop@example.net>", "250"),
        ("RCPT TO:<support@example.com>", "250"),
        ("DATA", "354"),
    ] {
        writer.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let r = reply(&mut reader);
        assert!(r.starts_with(code), "{line}: {r}");
    }
    // The fixture has no line starting with a dot, so it needs no dot-stuffing.
    writer.write_all(&message).unwrap();
    writer.write_all(b".\r\n").unwrap();
    let done = reply(&mut reader);
    assert!(done.starts_with("250 2.0.0 Ok "), "{done}");
    writer.write_all(b"QUIT\r\n").unwrap();
    let trace: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let outputs = trace["rules"][1]["actions"][3]["outputs"].to_string();
    assert!(
        outputs.contains(
            "POST https://hooks.example.com/mail (reserved example domain: delivered to the local sink) → HTTP 200"
        ),
        "{trace}"
    );
    assert!(outputs.contains("(signature valid)"), "{outputs}");
    let recorded = files(&state.join("webhooks"));
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let doc = read_json(&recorded[0]);
    assert_eq!(doc["signatureValid"], true);
    assert_eq!(doc["body"]["data"]["email"]["subject"], SUBJECT);
    assert_eq!(files(&state.join("sqs")), Vec::<std::path::PathBuf>::new());
}
