//! File-system adapters for the ports, so the real handlers run with no AWS at all. Everything
//! lands under one state folder (`.mailroom/` by default), in a layout meant to be browsed:
//!
//! | port | where |
//! |---|---|
//! | S3 ([`ObjectStore`](mailroom::ports::ObjectStore)) | `s3/<bucket>/<key>`; Content-Type etc. in `s3-meta/<bucket>/<key>.json` |
//! | SNS ([`Publisher`](mailroom::ports::Publisher)) | `sns/<topic name>.jsonl`, one publication per line |
//! | SES SendBounce ([`Bouncer`](mailroom::ports::Bouncer)) | `outbox/<messageId>-bounce-<n>.json`, the request as SES would get it |
//! | SES SendEmail ([`MailSender`](mailroom_forward::sender::MailSender)) | `outbox/<id>-forward.eml`, the raw message; `.json` beside it, the envelope |
//! | SQS ([`Queue`](mailroom::ports::Queue)) | `sqs/<queue name>/<visible-at ms>-<id>.json`, one file per message |
//!
//! Keys and names are checked so nothing escapes the state folder (`..`, absolute paths). One
//! file per adapter; the helpers they share are here.

mod bouncer;
mod mailer;
mod objects;
mod publisher;
mod queue;

pub use bouncer::LocalBouncer;
pub use mailer::LocalMailer;
pub use objects::LocalObjectStore;
pub use publisher::LocalPublisher;
pub use queue::{LocalQueue, Pending};

use mailroom::ports::{ErrorKind, PortError};
use std::path::{Path, PathBuf};
use tokio::io::AsyncWriteExt;

fn io_error(operation: &'static str, path: &Path, e: &std::io::Error) -> PortError {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::InvalidInput => {
            ErrorKind::Permanent
        }
        _ => ErrorKind::Transient,
    };
    PortError::new(kind, operation, format!("{}: {e}", path.display()))
}

/// `a/b/c` as a relative path, refusing anything that could leave the folder.
fn safe_relative(operation: &'static str, name: &str) -> Result<PathBuf, PortError> {
    let bad =
        |why: &str| PortError::new(ErrorKind::Permanent, operation, format!("{name:?}: {why}"));
    if name.is_empty() {
        return Err(bad("empty name"));
    }
    let mut out = PathBuf::new();
    for seg in name.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(bad(
                "empty, `.` or `..` path segments cannot be stored locally",
            ));
        }
        if seg.contains(['\\', '\0']) || seg.len() > 255 {
            return Err(bad("segment not storable as a file name"));
        }
        out.push(seg);
    }
    Ok(out)
}

/// The last `:`- or `/`-separated part of an ARN or URL: the topic or queue name.
pub fn resource_name(arn_or_url: &str) -> &str {
    arn_or_url
        .rsplit([':', '/'])
        .find(|s| !s.is_empty())
        .unwrap_or(arn_or_url)
}

async fn append_line(path: &Path, line: &str, op: &'static str) -> Result<(), PortError> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| io_error(op, parent, &e))?;
    }
    let mut f = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(|e| io_error(op, path, &e))?;
    // One write per line: O_APPEND keeps concurrent lines whole.
    let mut buf = line.as_bytes().to_vec();
    buf.push(b'\n');
    f.write_all(&buf)
        .await
        .map_err(|e| io_error(op, path, &e))?;
    f.flush().await.map_err(|e| io_error(op, path, &e))
}

fn now_millis() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

fn new_id() -> String {
    crate::receipt::new_message_id()[..24].to_string()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_from_arns_and_urls() {
        assert_eq!(resource_name("arn:aws:sns:us-east-1:1:topic"), "topic");
        assert_eq!(resource_name("https://sqs.x/1/queue"), "queue");
        assert_eq!(resource_name("https://sqs.x/1/queue/"), "queue");
    }
}
