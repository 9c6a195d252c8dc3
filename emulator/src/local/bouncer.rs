//! SES SendBounce into an outbox folder, with the DSN SES would mail.

use super::{io_error, new_id, safe_relative};
use async_trait::async_trait;
use mailroom::ports::{BounceRequest, Bouncer, ErrorKind, PortError};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::io::AsyncWriteExt;

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

/// The messages a bounce may refer to, oldest first, bounded in count and in bytes so a long
/// `serve` stays small whatever it is sent.
#[derive(Debug, Default)]
struct Received24h {
    order: VecDeque<String>,
    by_id: HashMap<String, Original>,
    bytes: usize,
}

#[derive(Debug, Clone)]
struct Original {
    mail_from: String,
    header_block: Vec<u8>,
}

const REMEMBERED: usize = 10_000;
/// The most of one message's header block kept for its DSN (`text/rfc822-headers`): a message
/// that is all header must not be kept whole.
const MAX_HEADER_BLOCK: usize = 64 * 1024;
/// The most header bytes kept for all remembered messages together.
const REMEMBERED_BYTES: usize = 16 * 1024 * 1024;

impl LocalBouncer {
    pub fn new(state: &Path) -> Self {
        LocalBouncer {
            root: state.to_path_buf(),
            received: Arc::default(),
        }
    }

    /// Records a received message so that bounces of it can be addressed.
    pub fn remember(&self, message_id: &str, mail_from: &str, raw: &[u8]) {
        let original = Original {
            mail_from: mail_from.to_string(),
            header_block: header_block(raw).to_vec(),
        };
        let size = original.header_block.len() + original.mail_from.len();
        if let Ok(mut r) = self.received.lock() {
            r.bytes += size;
            match r.by_id.insert(message_id.to_string(), original) {
                None => r.order.push_back(message_id.to_string()),
                Some(old) => r.bytes -= old.header_block.len() + old.mail_from.len(),
            }
            while r.order.len() > REMEMBERED || r.bytes > REMEMBERED_BYTES {
                let Some(oldest) = r.order.pop_front() else {
                    break;
                };
                if let Some(old) = r.by_id.remove(&oldest) {
                    r.bytes -= old.header_block.len() + old.mail_from.len();
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

/// The header block of `raw`, at most [`MAX_HEADER_BLOCK`] bytes of it, cut after a whole line.
fn header_block(raw: &[u8]) -> &[u8] {
    let head = &raw[..raw.len().min(MAX_HEADER_BLOCK)];
    let (_, body_at) = crate::receipt::mail::split_headers(head);
    let block = &head[..body_at.min(head.len())];
    if block.len() < MAX_HEADER_BLOCK {
        return block;
    }
    match block.iter().rposition(|&b| b == b'\n') {
        Some(i) => &block[..=i],
        None => &[],
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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

    /// A message that is all header: 100 KiB of fields and no body.
    fn all_header(n: usize) -> Vec<u8> {
        let mut raw = b"Subject: big\r\n".to_vec();
        while raw.len() < 100 * 1024 {
            raw.extend_from_slice(format!("X-Pad-{n}: {}\r\n", "x".repeat(200)).as_bytes());
        }
        raw
    }

    #[test]
    fn a_message_that_is_all_header_is_not_kept_whole() {
        let raw = all_header(0);
        let block = header_block(&raw);
        assert!(block.len() <= MAX_HEADER_BLOCK, "{}", block.len());
        assert!(block.len() > MAX_HEADER_BLOCK - 300);
        assert!(block.starts_with(b"Subject: big\r\n") && block.ends_with(b"\r\n"));
        assert_eq!(header_block(b"A: b\r\n\r\nbody"), b"A: b\r\n\r\n");
    }

    #[test]
    fn remembered_messages_are_bounded_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBouncer::new(dir.path());
        let mails = 2 * REMEMBERED_BYTES / MAX_HEADER_BLOCK;
        for n in 0..mails {
            b.remember(&format!("m{n}"), "s@x.org", &all_header(n));
        }
        let r = b.received.lock().unwrap();
        let held: usize = r
            .by_id
            .values()
            .map(|o| o.header_block.len() + o.mail_from.len())
            .sum();
        assert_eq!(held, r.bytes);
        assert!(r.bytes <= REMEMBERED_BYTES, "{}", r.bytes);
        assert!(!r.by_id.contains_key("m0"), "the oldest is forgotten first");
        assert!(r.by_id.contains_key(&format!("m{}", mails - 1)));
    }
}
