//! Peak memory of the store handler on a 40 MB message (SES's S3 action limit), measured the way
//! Lambda bills it: the resident set of a fresh process that only runs the handler.
//!
//! `cargo run --ignore-rust-version -p mailroom-store --example peak_rss [attachment|text|both]`
//!
//! The parent process builds the message, uploads it to moto's S3 (started on 127.0.0.1 unless
//! `MAILROOM_TEST_MOTO_ENDPOINT` names one) and then starts itself again as a child that runs the
//! real handler with the real S3 adapter and prints its own peak RSS (`VmHWM`), so the bytes the
//! parent generated never count. Compare the figure with a 128 MB Lambda.

use bytes::Bytes;
use mailroom::SesEvent;
use mailroom::aws::S3Store;
use mailroom::layout::Locations;
use mailroom::ports::{ObjectMeta, ObjectStore};
use mailroom_store::{Config, handle};
use std::process::Command;

const ID: &str = "o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1";
const TARGET_BYTES: usize = 40_000_000;
const LAMBDA_MB: f64 = 128.0;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let bucket = args.get(2).ok_or("child needs a bucket")?;
        return child(bucket);
    }
    let scenarios: Vec<String> = match args.get(1) {
        Some(s) if s != "both" => vec![s.clone()],
        _ => vec!["attachment".into(), "text".into()],
    };
    let endpoint = mailroom_testkit::moto().endpoint.clone();
    let rt = tokio::runtime::Runtime::new()?;
    println!("scenario    raw bytes   objects  peak RSS (VmHWM)  of a 128 MB Lambda");
    for scenario in scenarios {
        let raw = message(&scenario)?;
        let raw_len = raw.len();
        let bucket = rt.block_on(async {
            let bucket = mailroom_testkit::bucket("peak-rss").await;
            S3Store::new(mailroom_testkit::s3())
                .put_if_absent(
                    &bucket,
                    &format!("raw/{ID}"),
                    Bytes::from(raw),
                    &ObjectMeta::new("message/rfc822"),
                )
                .await
                .map(|_| bucket)
        })?;
        let out = Command::new(std::env::current_exe()?)
            .args(["--child", &bucket])
            .env(mailroom_testkit::ENDPOINT_VAR, &endpoint)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "child failed: {}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let field = |name: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or("?")
                .trim()
                .to_string()
        };
        let kb: f64 = field("peak_kb=").parse().unwrap_or(f64::NAN);
        let mb = kb / 1024.0;
        println!(
            "{scenario:<10} {raw_len:>10}  {:>7}  {mb:>10.1} MiB     {:>5.0}%",
            field("created="),
            100.0 * mb / LAMBDA_MB
        );
    }
    Ok(())
}

/// Runs the handler once and prints `peak_kb=` (VmHWM) and `created=`.
fn child(bucket: &str) -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Runtime::new()?;
    let event: SesEvent =
        serde_json::from_slice(&mailroom_testkit::event_file("lambda/store-event.json"))?;
    let config = Config {
        locations: Locations::new(bucket, "raw/", None, None),
        limits: mailroom::Limits::default(),
    };
    let report = rt.block_on(async {
        let store = S3Store::new(mailroom_testkit::s3());
        handle(&event, &config, &store).await
    })?;
    let created = match &report.outcomes[0] {
        mailroom_store::Outcome::Stored { created, .. } => *created,
        other => return Err(format!("not stored: {other:?}").into()),
    };
    let status = std::fs::read_to_string("/proc/self/status")?;
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .ok_or("no VmHWM in /proc/self/status")?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .to_string();
    println!("peak_kb={peak}\ncreated={created}");
    Ok(())
}

/// A ~40 MB message: one big base64 attachment, or one big text body (plus an HTML twin).
fn message(scenario: &str) -> Result<Vec<u8>, String> {
    let mut m = String::with_capacity(TARGET_BYTES + 4096);
    m.push_str(
        "From: Big Sender <big@example.net>\r\nTo: support@example.com\r\n\
         Subject: forty megabytes\r\nDate: Wed, 15 Jan 2025 10:00:00 +0000\r\n\
         Message-ID: <big@example.net>\r\nMIME-Version: 1.0\r\n",
    );
    match scenario {
        "attachment" => {
            m.push_str("Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n");
            m.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\nThe archive.\r\n--b\r\n");
            m.push_str(
                "Content-Type: application/zip\r\nContent-Transfer-Encoding: base64\r\n\
                 Content-Disposition: attachment; filename=\"archive.zip\"\r\n\r\n",
            );
            // 57 input bytes per 76-character line, as mailers write it.
            let line =
                "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n";
            while m.len() + line.len() + 16 < TARGET_BYTES {
                m.push_str(line);
            }
            m.push_str("--b--\r\n");
        }
        "text" => {
            m.push_str("Content-Type: multipart/alternative; boundary=\"b\"\r\n\r\n--b\r\n");
            m.push_str("Content-Type: text/plain; charset=utf-8\r\n\r\n");
            let line = "All work and no play makes a very long message body, line after line.\r\n";
            let half = TARGET_BYTES / 2;
            while m.len() + line.len() < half {
                m.push_str(line);
            }
            m.push_str("--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>\r\n");
            let line = "<p>All work and no play makes a very long message body.</p>\r\n";
            while m.len() + line.len() + 32 < TARGET_BYTES {
                m.push_str(line);
            }
            m.push_str("</body></html>\r\n--b--\r\n");
        }
        other => {
            return Err(format!(
                "unknown scenario {other}: attachment, text or both"
            ));
        }
    }
    Ok(m.into_bytes())
}
