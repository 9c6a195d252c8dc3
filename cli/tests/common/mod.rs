//! Helpers for the emulator's end-to-end tests: run the real `mailroom` binary against a
//! template and a fresh state folder.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root, where `template.yaml` and `events/` live.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn test_template(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/templates")
        .join(name)
}

/// A webhook URL nothing listens on, so the api function fails fast without the network.
pub const DEAD_WEBHOOK: &str = "WebhookUrl=http://127.0.0.1:9/hook";

pub struct Run {
    pub output: Output,
    pub json: serde_json::Value,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.output.status.success()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    /// The rule entry named `name` in the trace.
    pub fn rule(&self, name: &str) -> &serde_json::Value {
        self.json["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("rule {name} not in trace: {}", self.json))
    }
    pub fn has_rule(&self, name: &str) -> bool {
        self.json["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == name)
    }
    pub fn ran(&self, name: &str) -> bool {
        self.has_rule(name) && self.rule(name)["skipped"].is_null()
    }
    pub fn message_id(&self) -> String {
        self.json["messageId"].as_str().unwrap().to_string()
    }
}

/// `mailroom deliver --json MESSAGE --template T --state-dir S <extra…>`.
pub fn deliver(message: &Path, template: &Path, state: &Path, extra: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_mailroom"))
        .current_dir(root())
        .arg("deliver")
        .arg(message)
        .arg("--json")
        .arg("--template")
        .arg(template)
        .arg("--state-dir")
        .arg(state)
        .args(extra)
        .env_remove("MAILROOM_WEBHOOK_SECRET")
        .output()
        .unwrap();
    let json = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
    Run { output, json }
}

/// A plain message from a sender that passes every check.
pub fn write_message(dir: &Path, to: &str, extra_headers: &str) -> PathBuf {
    let path = dir.join("message.eml");
    let text = format!(
        "From: Jane Sender <jane@sender.example.net>\r\nTo: {to}\r\nSubject: Hello\r\nMessage-ID: <t1@sender.example.net>\r\nDate: Wed, 15 Jan 2025 10:00:00 +0000\r\n{extra_headers}MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello there.\r\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}
