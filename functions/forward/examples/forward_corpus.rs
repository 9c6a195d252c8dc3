//! Forwards every message under the given folders through the real handler, as SMTP delivers
//! them (CRLF line ends), and checks what would be sent against SES's rules: the gate that says
//! forwarding third-party mail breaks no header rule and loses nothing.
//!
//! `cargo run --ignore-rust-version -p mailroom-forward --example forward_corpus -- DIR ...`
//!
//! Each message file (any depth) is stored as the raw object of one SES event to
//! `info@example.com`, forwarded by the catch-all map `@example.com=me@gmail.com` with the forward
//! tests' in-memory ports, and every message handed to the sender is validated with
//! [`ses_rules::validate_for`]. A message is
//! *lost* when the handler fails, or reports neither a send nor a deliberate skip (a machine's
//! mail). Prints one line per mode and exits 1 on any violation or loss, or when the folders
//! hold no message.

// The forward tests' own in-memory ports and SES event builder, not a second copy of them.
#[path = "../tests/common/mod.rs"]
mod common;

use common::{Outbox, Store, World, config, event};
use mailroom_forward::{Delivery, Outcome, handle, rewrite, ses_rules};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const ID: &str = "fwdcorpus0000000000000000000000000000001";

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

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let dirs: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(!dirs.is_empty(), "usage: forward_corpus DIR ...");
    let mut files = Vec::new();
    for d in &dirs {
        emls(Path::new(d), &mut files);
    }
    anyhow::ensure!(!files.is_empty(), "no message under {dirs:?}");
    let config = config("@example.com=me@gmail.com", &[]);
    let mut modes: BTreeMap<String, usize> = BTreeMap::new();
    let (mut violations, mut lost) = (0usize, 0usize);
    for path in &files {
        let name = path.display().to_string();
        let raw = rewrite::to_crlf(&std::fs::read(path)?);
        let world = World::new(&config, Store::with_raw(ID, &raw), Outbox::default());
        let ev = event(
            ID,
            &raw,
            "sender@sender.example.net",
            &["info@example.com"],
            &[],
        );
        let report = match handle(&ev, &config, world.deps()).await {
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
        for mail in &world.outbox.sent() {
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
