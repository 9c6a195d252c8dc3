//! Forwards every message under the given folders through the real handler, as SMTP delivers
//! them (CRLF line ends), and checks what would be sent against SES's rules: the gate that says
//! forwarding third-party mail breaks no header rule and loses nothing.
//!
//! `cargo run --ignore-rust-version -p mailroom-forward --example forward_corpus -- DIR ...`
//!
//! Each message file (any depth) is stored as the raw object of one SES event to `info@example.com`,
//! forwarded by the catch-all map `@example.com=me@gmail.com` with in-memory ports, and every
//! message handed to the sender is validated with [`ses_rules::validate_for`]. A message is
//! *lost* when the handler fails, or reports neither a send nor a deliberate skip (a machine's
//! mail). Prints one line per mode and exits 1 on any violation or loss, or when the folders
//! hold no message.

use async_trait::async_trait;
use mailroom::SesEvent;
use mailroom::ports::ObjectStore;
use mailroom_forward::map::{MapCache, Parameters};
use mailroom_forward::metrics::Metrics;
use mailroom_forward::sender::{MailSender, OutgoingMail, SendError};
use mailroom_forward::{Config, Delivery, Deps, Outcome, handle, rewrite, ses_rules};
use mailroom_testkit::MemoryStore;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const ID: &str = "fwdcorpus0000000000000000000000000000001";
const BUCKET: &str = "mail";

#[derive(Default)]
struct Outbox(Mutex<Vec<OutgoingMail>>);

#[async_trait]
impl MailSender for Outbox {
    async fn send(&self, mail: &OutgoingMail) -> Result<String, SendError> {
        let mut sent = self.0.lock().map_err(|e| {
            SendError::new(
                mailroom_forward::sender::SendErrorKind::Retry,
                e.to_string(),
            )
        })?;
        sent.push(mail.clone());
        Ok(format!("sent-{}", sent.len()))
    }
}

/// The map is inline: nothing is read from SSM.
struct NoParameters;

#[async_trait]
impl Parameters for NoParameters {
    async fn get(&self, arn: &str) -> Result<String, mailroom::ports::PortError> {
        Err(mailroom::ports::PortError::new(
            mailroom::ports::ErrorKind::Permanent,
            "ssm:GetParameter",
            arn.to_string(),
        ))
    }
}

struct NoMetrics;

impl Metrics for NoMetrics {
    fn count(&self, _: &'static str, _: u64) {}
}

fn emls(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            emls(&path, out);
        } else {
            // Every message file, as the differential test takes them: not dotfiles (the
            // corpus's pins), not its JSON or failure notes.
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if !name.starts_with('.') && !name.ends_with(".json") && !name.ends_with(".failed") {
                out.push(path);
            }
        }
    }
}

fn event(raw: &[u8]) -> anyhow::Result<SesEvent> {
    let (fields, _, _) = ses_rules::fields(raw);
    let headers: Vec<serde_json::Value> = fields
        .iter()
        .take(200)
        .map(|f| {
            serde_json::json!({
                "name": String::from_utf8_lossy(f.name),
                "value": String::from_utf8_lossy(f.value).trim(),
            })
        })
        .collect();
    let pass = serde_json::json!({"status": "PASS"});
    Ok(serde_json::from_value(serde_json::json!({"Records": [{
        "eventSource": "aws:ses", "eventVersion": "1.0",
        "ses": {
            "mail": {
                "timestamp": "2025-01-15T10:00:00.000Z", "source": "sender@sender.example.net",
                "messageId": ID, "destination": ["info@example.com"], "headersTruncated": false,
                "headers": headers, "commonHeaders": {"subject": "corpus"}
            },
            "receipt": {
                "timestamp": "2025-01-15T10:00:00.000Z", "processingTimeMillis": 1,
                "recipients": ["info@example.com"], "spamVerdict": pass, "virusVerdict": pass,
                "spfVerdict": pass, "dkimVerdict": pass, "dmarcVerdict": pass,
                "action": {"type": "Lambda", "functionArn": "arn:aws:lambda:us-east-1:1:function:f",
                           "invocationType": "Event"}
            }
        }
    }]}))?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(!dirs.is_empty(), "usage: forward_corpus DIR ...");
    let mut files = Vec::new();
    for d in &dirs {
        emls(Path::new(d), &mut files);
    }
    anyhow::ensure!(!files.is_empty(), "no message under {dirs:?}");
    let env = [
        ("MAILROOM_RAW_BUCKET", BUCKET),
        ("MAILROOM_RAW_PREFIX", "raw/"),
        ("MAILROOM_FORWARD_FROM", "forwarder@example.com"),
        ("MAILROOM_FORWARD_MAP", "@example.com=me@gmail.com"),
    ];
    let config = Config::from_env(env.as_slice())?;
    let mut modes: BTreeMap<String, usize> = BTreeMap::new();
    let (mut violations, mut lost) = (0usize, 0usize);
    for path in &files {
        let name = path.display().to_string();
        let raw = rewrite::to_crlf(&std::fs::read(path)?);
        let store = MemoryStore::new();
        store.insert(BUCKET, &format!("raw/{ID}"), raw.clone());
        let outbox = Outbox::default();
        let maps: MapCache = config.map_cache();
        let deps = Deps {
            store: &store as &dyn ObjectStore,
            sender: &outbox,
            parameters: &NoParameters,
            maps: &maps,
            metrics: &NoMetrics,
        };
        let report = match handle(&event(&raw)?, &config, deps).await {
            Ok(r) => r,
            Err(e) => {
                lost += 1;
                println!("LOST {name}: {e}");
                continue;
            }
        };
        let mode = match report.outcomes.first() {
            Some(Outcome::Forwarded { deliveries, .. }) => match deliveries.first() {
                Some(Delivery::Sent { mode, .. }) => format!("{mode:?}").to_lowercase(),
                other => {
                    lost += 1;
                    println!("LOST {name}: {other:?}");
                    continue;
                }
            },
            Some(Outcome::Skipped { reason, .. }) if reason.contains("machine") => {
                "not forwarded (a machine's mail)".into()
            }
            other => {
                lost += 1;
                println!("LOST {name}: {other:?}");
                continue;
            }
        };
        let sent = outbox.0.lock().map(|s| s.clone()).unwrap_or_default();
        for mail in &sent {
            let v = ses_rules::validate_for(&mail.raw, "forwarder@example.com");
            if !v.is_empty() {
                violations += v.len();
                let text: Vec<String> = v.iter().map(ToString::to_string).collect();
                println!("VIOLATION {name}: {}", text.join("; "));
            }
        }
        *modes.entry(mode).or_default() += 1;
    }
    for (mode, n) in &modes {
        println!("{mode:<34}{n:>6}");
    }
    println!(
        "{} messages forwarded as SMTP delivers them: {violations} header-rule violations, {lost} lost",
        files.len()
    );
    if violations > 0 || lost > 0 {
        std::process::exit(1);
    }
    Ok(())
}
