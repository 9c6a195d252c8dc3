//! File-system adapters for the ports, so the real handlers run with no AWS at all. Everything
//! lands under one state folder (`.mailroom/` by default), in a layout meant to be browsed:
//!
//! | port | where |
//! |---|---|
//! | S3 ([`ObjectStore`]) | `s3/<bucket>/<key>`; Content-Type etc. in `s3-meta/<bucket>/<key>.json` |
//! | SNS ([`Publisher`]) | `sns/<topic name>.jsonl`, one publication per line |
//! | SES SendBounce ([`Bouncer`]) | `outbox/<messageId>-bounce-<n>.json`, the request as SES would get it |
//! | SQS ([`Queue`]) | `sqs/<queue name>/<visible-at ms>-<id>.json`, one file per message |
//!
//! Keys and names are checked so nothing escapes the state folder (`..`, absolute paths).

use async_trait::async_trait;
use bytes::Bytes;
use mailroom::ports::queue::{MAX_DELAY, Queue, Received};
use mailroom::ports::{
    BounceRequest, Bouncer, ErrorKind, ObjectMeta, ObjectStore, PortError, Publication, Publisher,
    PutOutcome,
};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How long a received local SQS message stays invisible before it can be received again.
const VISIBILITY: Duration = Duration::from_secs(30);

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
    mailroom::receipt::new_message_id()[..24].to_string()
}

/// S3 in a folder.
#[derive(Debug, Clone)]
pub struct LocalObjectStore {
    root: PathBuf,
}

impl LocalObjectStore {
    pub fn new(state: &Path) -> Self {
        LocalObjectStore {
            root: state.to_path_buf(),
        }
    }

    pub fn path_of(&self, bucket: &str, key: &str) -> Result<PathBuf, PortError> {
        let bucket = safe_relative("s3", bucket)?;
        Ok(self
            .root
            .join("s3")
            .join(bucket)
            .join(safe_relative("s3", key)?))
    }

    fn meta_path(&self, bucket: &str, key: &str) -> Result<PathBuf, PortError> {
        let bucket = safe_relative("s3", bucket)?;
        let mut p = self
            .root
            .join("s3-meta")
            .join(bucket)
            .join(safe_relative("s3", key)?)
            .into_os_string();
        p.push(".json");
        Ok(PathBuf::from(p))
    }
}

#[async_trait]
impl ObjectStore for LocalObjectStore {
    async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, PortError> {
        let path = self.path_of(bucket, key)?;
        tokio::fs::read(&path)
            .await
            .map(Bytes::from)
            .map_err(|e| io_error("GetObject", &path, &e))
    }

    async fn size(&self, bucket: &str, key: &str) -> Result<u64, PortError> {
        let path = self.path_of(bucket, key)?;
        tokio::fs::metadata(&path)
            .await
            .map(|m| m.len())
            .map_err(|e| io_error("HeadObject", &path, &e))
    }

    async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
    ) -> Result<PutOutcome, PortError> {
        let path = self.path_of(bucket, key)?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_error("PutObject", parent, &e))?;
        }
        let mut f = match tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .await
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Ok(PutOutcome::AlreadyExists);
            }
            Err(e) => return Err(io_error("PutObject", &path, &e)),
        };
        let written = async {
            f.write_all(&body).await?;
            f.flush().await
        }
        .await;
        if let Err(e) = written {
            // A half-written file would read as a complete object: remove it so a retry rewrites.
            let _ = tokio::fs::remove_file(&path).await;
            return Err(io_error("PutObject", &path, &e));
        }
        let meta_path = self.meta_path(bucket, key)?;
        if let Some(parent) = meta_path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| io_error("PutObject", parent, &e))?;
        }
        let json = serde_json::json!({
            "contentType": meta.content_type,
            "contentDisposition": meta.content_disposition,
            "size": body.len(),
        });
        tokio::fs::write(&meta_path, json.to_string())
            .await
            .map_err(|e| io_error("PutObject", &meta_path, &e))?;
        Ok(PutOutcome::Created)
    }

    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        _expires_in: Duration,
    ) -> Result<String, PortError> {
        let path = self.path_of(bucket, key)?;
        let abs = std::path::absolute(&path).unwrap_or(path);
        Ok(format!("file://{}", abs.display()))
    }
}

/// SNS as JSON lines, one file per topic.
#[derive(Debug, Clone)]
pub struct LocalPublisher {
    root: PathBuf,
}

impl LocalPublisher {
    pub fn new(state: &Path) -> Self {
        LocalPublisher {
            root: state.to_path_buf(),
        }
    }

    pub fn path_of(&self, topic_arn: &str) -> Result<PathBuf, PortError> {
        let name = safe_relative("Publish", resource_name(topic_arn))?;
        let mut p = self.root.join("sns").join(name).into_os_string();
        p.push(".jsonl");
        Ok(PathBuf::from(p))
    }
}

#[async_trait]
impl Publisher for LocalPublisher {
    async fn publish(&self, msg: &Publication) -> Result<String, PortError> {
        let id = new_id();
        let path = self.path_of(&msg.topic_arn)?;
        let line = serde_json::json!({
            "messageId": id,
            "publishedAt": mailroom::receipt::mail::iso_millis(time::OffsetDateTime::now_utc()),
            "publication": msg,
        });
        append_line(&path, &line.to_string(), "Publish").await?;
        Ok(id)
    }
}

/// SES SendBounce into an outbox folder: per bounce, the request as SES got it (`.json`) and
/// the DSN SES would mail to the original sender (`.eml`, RFC 3464 `multipart/report`).
///
/// Like SES, it bounces only messages it received (SendBounce answers `MessageRejected`
/// otherwise): the emulator tells it about each message with [`LocalBouncer::remember`].
#[derive(Debug, Clone)]
pub struct LocalBouncer {
    root: PathBuf,
    received: Arc<Mutex<Received24h>>,
}

/// The messages a bounce may refer to, oldest first, bounded so a long `serve` stays small.
#[derive(Debug, Default)]
struct Received24h {
    order: VecDeque<String>,
    by_id: HashMap<String, Original>,
}

#[derive(Debug, Clone)]
struct Original {
    mail_from: String,
    header_block: Vec<u8>,
}

const REMEMBERED: usize = 10_000;

impl LocalBouncer {
    pub fn new(state: &Path) -> Self {
        LocalBouncer {
            root: state.to_path_buf(),
            received: Arc::default(),
        }
    }

    /// Records a received message so that bounces of it can be addressed.
    pub fn remember(&self, message_id: &str, mail_from: &str, raw: &[u8]) {
        let (_, body_at) = mailroom::receipt::mail::split_headers(raw);
        let original = Original {
            mail_from: mail_from.to_string(),
            header_block: raw[..body_at.min(raw.len())].to_vec(),
        };
        if let Ok(mut r) = self.received.lock() {
            if r.by_id.insert(message_id.to_string(), original).is_none() {
                r.order.push_back(message_id.to_string());
            }
            while r.order.len() > REMEMBERED {
                if let Some(old) = r.order.pop_front() {
                    r.by_id.remove(&old);
                }
            }
        }
    }

    fn original(&self, message_id: &str) -> Option<Original> {
        self.received
            .lock()
            .ok()
            .and_then(|r| r.by_id.get(message_id).cloned())
    }
}

/// The DSN SES sends for a SendBounce request (RFC 3464).
fn render_dsn(req: &BounceRequest, original: &Original) -> String {
    use std::fmt::Write as _;
    let boundary = format!("dsn-{}", new_id());
    let now = time::OffsetDateTime::now_utc();
    let date = now
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default();
    let to = if original.mail_from.is_empty() {
        "<>".to_string()
    } else {
        original.mail_from.clone()
    };
    let mut s = String::new();
    let _ = write!(
        s,
        "From: {}\r\nTo: {to}\r\nSubject: Delivery Status Notification (Failure)\r\nDate: {date}\r\nMessage-ID: <{}@local.mailroom>\r\nAuto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"{boundary}\"\r\n\r\n",
        req.bounce_sender,
        new_id()
    );
    let explanation = req.explanation.clone().unwrap_or_else(|| {
        "An error occurred while trying to deliver the mail to the following recipients:".into()
    });
    let _ = write!(
        s,
        "--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{explanation}\r\n"
    );
    for r in &req.recipients {
        let _ = write!(s, "{}\r\n", r.recipient);
    }
    let _ = write!(
        s,
        "\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
    );
    if let Some(m) = &req.message_dsn {
        let _ = write!(s, "Reporting-MTA: {}\r\n", m.reporting_mta);
        if let Some(a) = &m.arrival_date {
            let _ = write!(s, "Arrival-Date: {a}\r\n");
        }
        for e in &m.extension_fields {
            let _ = write!(s, "{}: {}\r\n", e.name, e.value);
        }
    }
    for r in &req.recipients {
        let _ = write!(s, "\r\n");
        match &r.dsn {
            Some(d) => {
                let fin = d.final_recipient.as_deref().unwrap_or(&r.recipient);
                let _ = write!(
                    s,
                    "Final-Recipient: rfc822; {fin}\r\nAction: {}\r\nStatus: {}\r\n",
                    d.action.as_str(),
                    d.status
                );
                if let Some(m) = &d.remote_mta {
                    let _ = write!(s, "Remote-MTA: {m}\r\n");
                }
                if let Some(c) = &d.diagnostic_code {
                    let _ = write!(s, "Diagnostic-Code: {c}\r\n");
                }
                if let Some(l) = &d.last_attempt_date {
                    let _ = write!(s, "Last-Attempt-Date: {l}\r\n");
                }
                for e in &d.extension_fields {
                    let _ = write!(s, "{}: {}\r\n", e.name, e.value);
                }
            }
            None => {
                let status = match r.bounce_type {
                    Some(mailroom::ports::BounceType::DoesNotExist) => "5.1.1",
                    Some(mailroom::ports::BounceType::MessageTooLarge) => "5.3.4",
                    Some(mailroom::ports::BounceType::ExceededQuota) => "5.2.2",
                    Some(mailroom::ports::BounceType::ContentRejected) => "5.6.1",
                    Some(mailroom::ports::BounceType::TemporaryFailure) => "4.0.0",
                    _ => "5.0.0",
                };
                let _ = write!(
                    s,
                    "Final-Recipient: rfc822; {}\r\nAction: failed\r\nStatus: {status}\r\n",
                    r.recipient
                );
            }
        }
    }
    let _ = write!(
        s,
        "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n{}\r\n--{boundary}--\r\n",
        String::from_utf8_lossy(&original.header_block).trim_end()
    );
    s
}

#[async_trait]
impl Bouncer for LocalBouncer {
    async fn send_bounce(&self, req: &BounceRequest) -> Result<String, PortError> {
        let original = self.original(&req.original_message_id).ok_or_else(|| {
            PortError::new(
                ErrorKind::Permanent,
                "SendBounce",
                format!(
                    "MessageRejected: no message {:?} was received (SES bounces only mail it received)",
                    req.original_message_id
                ),
            )
        })?;
        if req.recipients.is_empty() {
            return Err(PortError::new(
                ErrorKind::Permanent,
                "SendBounce",
                "MessageRejected: BouncedRecipientInfoList is empty",
            ));
        }
        let dir = self.root.join("outbox");
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_error("SendBounce", &dir, &e))?;
        let id = safe_relative("SendBounce", &req.original_message_id)?;
        let json = serde_json::to_string_pretty(req)
            .map_err(|e| PortError::new(ErrorKind::Permanent, "SendBounce", e.to_string()))?;
        for n in 1..1000 {
            let path = dir.join(format!("{}-bounce-{n}.json", id.display()));
            match tokio::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .await
            {
                Ok(mut f) => {
                    f.write_all(json.as_bytes())
                        .await
                        .map_err(|e| io_error("SendBounce", &path, &e))?;
                    let eml = path.with_extension("eml");
                    tokio::fs::write(&eml, render_dsn(req, &original))
                        .await
                        .map_err(|e| io_error("SendBounce", &eml, &e))?;
                    return Ok(eml.display().to_string());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error("SendBounce", &path, &e)),
            }
        }
        Err(PortError::new(
            ErrorKind::Permanent,
            "SendBounce",
            "too many bounces for one message",
        ))
    }
}

/// SQS as a folder per queue; the file name carries when the message becomes visible.
#[derive(Debug, Clone)]
pub struct LocalQueue {
    root: PathBuf,
}

impl LocalQueue {
    pub fn new(state: &Path) -> Self {
        LocalQueue {
            root: state.to_path_buf(),
        }
    }

    pub fn dir_of(&self, queue_url: &str) -> Result<PathBuf, PortError> {
        Ok(self
            .root
            .join("sqs")
            .join(safe_relative("SQS", resource_name(queue_url))?))
    }
}

/// `<visible-at ms>-<id>.json` → (visible-at, id).
fn parse_queue_file(name: &str) -> Option<(u128, &str)> {
    let stem = name.strip_suffix(".json")?;
    let (at, id) = stem.split_once('-')?;
    Some((at.parse().ok()?, id))
}

#[async_trait]
impl Queue for LocalQueue {
    async fn send(
        &self,
        queue_url: &str,
        body: &str,
        delay: Duration,
    ) -> Result<String, PortError> {
        let dir = self.dir_of(queue_url)?;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_error("SendMessage", &dir, &e))?;
        let id = new_id();
        let visible = now_millis() + delay.min(MAX_DELAY).as_millis();
        let path = dir.join(format!("{visible:015}-{id}.json"));
        let json = serde_json::json!({ "id": id, "receiveCount": 0, "body": body });
        tokio::fs::write(&path, json.to_string())
            .await
            .map_err(|e| io_error("SendMessage", &path, &e))?;
        Ok(id)
    }

    async fn receive(
        &self,
        queue_url: &str,
        max: u32,
        _wait: Duration,
    ) -> Result<Vec<Received>, PortError> {
        let dir = self.dir_of(queue_url)?;
        let mut names = Vec::new();
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("ReceiveMessage", &dir, &e)),
        };
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io_error("ReceiveMessage", &dir, &e))?
        {
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        names.sort();
        let now = now_millis();
        let mut out = Vec::new();
        for name in names {
            if out.len() >= max.clamp(1, 10) as usize {
                break;
            }
            let Some((visible, id)) = parse_queue_file(&name) else {
                continue;
            };
            if visible > now {
                continue;
            }
            let path = dir.join(&name);
            let Ok(text) = tokio::fs::read_to_string(&path).await else {
                continue;
            };
            let Ok(mut json) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            let count = json["receiveCount"].as_u64().unwrap_or(0) + 1;
            json["receiveCount"] = count.into();
            let handle = format!("{:015}-{id}.json", now + VISIBILITY.as_millis());
            let moved = dir.join(&handle);
            // The rename is the claim: a concurrent receiver that loses it skips the message.
            if tokio::fs::rename(&path, &moved).await.is_err() {
                continue;
            }
            tokio::fs::write(&moved, json.to_string())
                .await
                .map_err(|e| io_error("ReceiveMessage", &moved, &e))?;
            out.push(Received {
                message_id: id.to_string(),
                receipt_handle: handle,
                body: json["body"].as_str().unwrap_or_default().to_string(),
                receive_count: u32::try_from(count).ok(),
            });
        }
        Ok(out)
    }

    async fn delete(&self, queue_url: &str, receipt_handle: &str) -> Result<(), PortError> {
        let dir = self.dir_of(queue_url)?;
        let path = dir.join(safe_relative("DeleteMessage", receipt_handle)?);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            // SQS accepts deleting an already-deleted message.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("DeleteMessage", &path, &e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn object_store_is_conditional_and_keeps_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalObjectStore::new(dir.path());
        let meta = ObjectMeta::new("message/rfc822");
        let out = s
            .put_if_absent("b", "raw/abc", Bytes::from_static(b"one"), &meta)
            .await
            .unwrap();
        assert_eq!(out, PutOutcome::Created);
        let again = s
            .put_if_absent("b", "raw/abc", Bytes::from_static(b"two"), &meta)
            .await
            .unwrap();
        assert_eq!(again, PutOutcome::AlreadyExists);
        assert_eq!(s.get("b", "raw/abc").await.unwrap(), "one");
        assert_eq!(s.size("b", "raw/abc").await.unwrap(), 3);
        let m = std::fs::read_to_string(dir.path().join("s3-meta/b/raw/abc.json")).unwrap();
        assert!(m.contains("message/rfc822"));
        let missing = s.get("b", "raw/nope").await.unwrap_err();
        assert_eq!(missing.kind, ErrorKind::NotFound);
        for bad in ["../x", "a/../../x", "/abs", "a//b", ""] {
            let e = s.get("b", bad).await.unwrap_err();
            assert_eq!(e.kind, ErrorKind::Permanent, "{bad}");
        }
        assert!(
            s.presign_get("b", "raw/abc", Duration::from_secs(1))
                .await
                .unwrap()
                .starts_with("file://")
        );
    }

    #[tokio::test]
    async fn publisher_appends_json_lines_per_topic() {
        let dir = tempfile::tempdir().unwrap();
        let p = LocalPublisher::new(dir.path());
        let msg = Publication {
            topic_arn: "arn:aws:sns:us-east-1:123456789012:mail".into(),
            message: "{}".into(),
            ..Publication::default()
        };
        p.publish(&msg).await.unwrap();
        p.publish(&msg).await.unwrap();
        let text = std::fs::read_to_string(dir.path().join("sns/mail.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2);
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["publication"]["topic_arn"], msg.topic_arn);
    }

    #[tokio::test]
    async fn queue_delays_receives_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let q = LocalQueue::new(dir.path());
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/retry";
        q.send(url, "now", Duration::ZERO).await.unwrap();
        q.send(url, "later", Duration::from_secs(600))
            .await
            .unwrap();
        let got = q.receive(url, 10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "now");
        assert_eq!(got[0].receive_count, Some(1));
        assert!(
            q.receive(url, 10, Duration::ZERO).await.unwrap().is_empty(),
            "in flight and delayed messages are invisible"
        );
        q.delete(url, &got[0].receipt_handle).await.unwrap();
        q.delete(url, &got[0].receipt_handle).await.unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("sqs/retry"))
                .unwrap()
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn bouncer_bounces_only_received_mail() {
        use mailroom::ports::{BounceType, BouncedRecipient};
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBouncer::new(dir.path());
        let req = BounceRequest {
            original_message_id: "m1".into(),
            bounce_sender: "mailer-daemon@example.com".into(),
            bounce_sender_arn: None,
            explanation: None,
            message_dsn: None,
            recipients: vec![BouncedRecipient {
                recipient: "gone@example.com".into(),
                recipient_arn: None,
                bounce_type: Some(BounceType::DoesNotExist),
                dsn: None,
            }],
        };
        let e = b.send_bounce(&req).await.unwrap_err();
        assert!(e.message.contains("MessageRejected"), "{e}");
        b.remember("m1", "s@x.org", b"Subject: hi\r\n\r\nbody");
        let path = b.send_bounce(&req).await.unwrap();
        let eml = std::fs::read_to_string(&path).unwrap();
        assert!(eml.contains("To: s@x.org\r\n"));
        assert!(eml.contains("Status: 5.1.1\r\n"));
        assert!(eml.contains("text/rfc822-headers\r\n\r\nSubject: hi\r\n"));
        assert!(dir.path().join("outbox/m1-bounce-1.json").exists());
        b.send_bounce(&req).await.unwrap();
        assert!(dir.path().join("outbox/m1-bounce-2.eml").exists());
    }

    #[test]
    fn names_from_arns_and_urls() {
        assert_eq!(resource_name("arn:aws:sns:us-east-1:1:topic"), "topic");
        assert_eq!(resource_name("https://sqs.x/1/queue"), "queue");
        assert_eq!(resource_name("https://sqs.x/1/queue/"), "queue");
    }
}
