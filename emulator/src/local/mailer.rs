//! SES `SendEmail` (raw) into the outbox folder: each message the forward function sends is
//! written as `outbox/<id>-forward.eml`, with `<id>-forward.json` holding the envelope. Like SES,
//! it refuses a message that breaks SES's header rules, so a local run shows what SES would do.

use super::{io_error, new_id};
use async_trait::async_trait;
use mailroom_forward::sender::{MailSender, OutgoingMail, SendError, SendErrorKind};
use mailroom_forward::ses_rules;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct LocalMailer {
    root: PathBuf,
}

impl LocalMailer {
    pub fn new(state: &Path) -> Self {
        LocalMailer {
            root: state.to_path_buf(),
        }
    }
}

#[async_trait]
impl MailSender for LocalMailer {
    async fn send(&self, mail: &OutgoingMail) -> Result<String, SendError> {
        let violations = ses_rules::validate(&mail.raw);
        if !violations.is_empty() {
            let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
            return Err(SendError::new(
                SendErrorKind::Rejected,
                format!("MessageRejected: {}", text.join("; ")),
            ));
        }
        let dir = self.root.join("outbox");
        let failed = |e: std::io::Error, p: &Path| {
            SendError::new(
                SendErrorKind::Retry,
                io_error("SendEmail", p, &e).to_string(),
            )
        };
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| failed(e, &dir))?;
        let id = new_id();
        let eml = dir.join(format!("{id}-forward.eml"));
        tokio::fs::write(&eml, &mail.raw)
            .await
            .map_err(|e| failed(e, &eml))?;
        let envelope = serde_json::json!({
            "FromEmailAddress": mail.from,
            "Destination": {"ToAddresses": [mail.to]},
            "ConfigurationSetName": mail.configuration_set,
            "FromEmailAddressIdentityArn": mail.identity_arn,
            "Content": {"Raw": {"File": eml.display().to_string()}},
        });
        let json = eml.with_extension("json");
        tokio::fs::write(&json, envelope.to_string())
            .await
            .map_err(|e| failed(e, &json))?;
        Ok(eml.display().to_string())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_what_ses_takes_and_refuses_what_it_would_not() {
        let dir = tempfile::tempdir().unwrap();
        let m = LocalMailer::new(dir.path());
        let mut mail = OutgoingMail {
            from: "f@example.com".into(),
            to: "me@gmail.com".into(),
            raw: bytes::Bytes::from_static(b"From: f@example.com\r\nDate: x\r\n\r\nhi\r\n"),
            configuration_set: None,
            identity_arn: None,
        };
        let path = m.send(&mail).await.unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), &mail.raw[..]);
        mail.raw = bytes::Bytes::from_static(b"From: a@x\r\nFrom: b@x\r\nDate: x\r\n\r\n");
        let e = m.send(&mail).await.unwrap_err();
        assert_eq!(e.kind, SendErrorKind::Rejected);
        assert!(e.message.contains("From"), "{e}");
    }
}
