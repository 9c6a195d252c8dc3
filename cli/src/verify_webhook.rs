//! `mailroom verify-webhook`: checks a Standard Webhooks signature the way a receiver should, for
//! people writing or debugging their endpoint. Exit status 0 when valid, 1 otherwise.
//!
//! The body comes from `--body FILE` or stdin, byte for byte. The three headers come from flags or
//! from `--headers FILE`: either `Name: value` lines (as `curl -D` writes them) or a JSON object.

use anyhow::{Context, bail};
use clap::Parser;
use mailroom::config::{self, ProcessEnv};
use mailroom::webhook::signing::{self, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, Secret};
use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;

#[derive(Debug, Parser)]
pub struct Args {
    /// A `whsec_…` secret; repeat for several (any may match) [default: $MAILROOM_WEBHOOK_SECRET].
    #[arg(long)]
    secret: Vec<String>,
    /// The `webhook-id` header.
    #[arg(long)]
    id: Option<String>,
    /// The `webhook-timestamp` header.
    #[arg(long)]
    timestamp: Option<String>,
    /// The `webhook-signature` header.
    #[arg(long)]
    signature: Option<String>,
    /// A file with the request's headers (`Name: value` lines or a JSON object).
    #[arg(long)]
    headers: Option<PathBuf>,
    /// The body file [default: stdin].
    #[arg(long)]
    body: Option<PathBuf>,
    /// Seconds the timestamp may differ from now.
    #[arg(long, default_value_t = signing::DEFAULT_TOLERANCE_SECS)]
    tolerance: u64,
    /// Skip the timestamp check (for verifying old captured requests).
    #[arg(long)]
    ignore_time: bool,
}

/// Header names lowercased, from `Name: value` lines or a JSON object.
pub fn parse_headers(text: &str) -> HashMap<String, String> {
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_str(text.trim()) {
        return map
            .into_iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.to_ascii_lowercase(), s.to_string())))
            .collect();
    }
    text.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut secrets_text = args.secret.join(" ");
    if secrets_text.trim().is_empty() {
        secrets_text = config::optional(&ProcessEnv, "MAILROOM_WEBHOOK_SECRET")
            .context("pass --secret whsec_… or set MAILROOM_WEBHOOK_SECRET")?;
    }
    let secrets = Secret::parse_list(&secrets_text).context("reading the secret")?;
    let from_file = match &args.headers {
        Some(p) => parse_headers(
            &std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?,
        ),
        None => HashMap::new(),
    };
    let header = |flag: Option<String>, name: &str| -> anyhow::Result<String> {
        flag.or_else(|| from_file.get(name).cloned())
            .with_context(|| format!("missing {name}: pass --{} or --headers", &name[8..]))
    };
    let id = header(args.id, HEADER_ID)?;
    let timestamp = header(args.timestamp, HEADER_TIMESTAMP)?;
    let signature = header(args.signature, HEADER_SIGNATURE)?;
    let body = match &args.body {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
        None => {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .context("reading the body from stdin")?;
            b
        }
    };
    let (now, tolerance) = if args.ignore_time {
        (timestamp.trim().parse().unwrap_or(0), u64::MAX)
    } else {
        (mailroom_api::now_unix(), args.tolerance)
    };
    match signing::verify(&secrets, &id, &timestamp, &signature, &body, now, tolerance) {
        Ok(()) => {
            println!("valid: webhook-id {id}, {} body bytes", body.len());
            Ok(())
        }
        Err(e) => bail!("invalid signature: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_from_curl_dumps_and_json() {
        let dump = "HTTP/1.1 200 OK\r\nWebhook-Id: m1\r\nwebhook-timestamp: 17\r\nWebhook-Signature: v1,abc= v1,def=\r\n";
        let h = parse_headers(dump);
        assert_eq!(h["webhook-id"], "m1");
        assert_eq!(h["webhook-signature"], "v1,abc= v1,def=");
        let h = parse_headers(r#"{"Webhook-Id":"m2","webhook-timestamp":"18"}"#);
        assert_eq!(h["webhook-id"], "m2");
        assert_eq!(h["webhook-timestamp"], "18");
    }
}
