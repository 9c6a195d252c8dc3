//! Sending mail: the forward function's one outbound side effect, as a small port with one real
//! adapter over SES API v2 `SendEmail` with raw content ([`SesV2Sender`]). The emulator writes to
//! an outbox folder through the same port.
//!
//! The port lives in this crate, not in `shared/`, because no other function sends mail.
//!
//! Failures come in three kinds, because each is handled differently (docs/ses.md §9.3):
//! [`SendErrorKind::Retry`] (throttling, quotas, 5xx, timeouts) fails the invocation so Lambda
//! retries it; [`SendErrorKind::Rejected`] is SES refusing this one message, which no retry will
//! change; [`SendErrorKind::Setup`] is the account or identity (unverified sender, missing
//! configuration set, paused sending), which fails the invocation too so the event reaches the
//! on-failure queue and can be replayed once it is fixed.

use async_trait::async_trait;
#[cfg(feature = "aws")]
use aws_sdk_sesv2::error::ProvideErrorMetadata;
use bytes::Bytes;

/// The attempt and operation timeouts of one send of `bytes`: the shared 8 s attempt is made for
/// small calls, and a 30 MB upload that outlasts it would be cut off and sent again by the SDK
/// (and then by Lambda), each copy perhaps delivered. One second per MB on top, the operation
/// twice that, within the template's 120 s function timeout.
pub fn send_timeouts(bytes: usize) -> (std::time::Duration, std::time::Duration) {
    use std::time::Duration;
    let mb = u64::try_from(bytes / 1_000_000).unwrap_or(u64::MAX / 4);
    let attempt = Duration::from_secs(8 + mb.min(45));
    let operation = (attempt * 2).min(Duration::from_secs(100));
    (attempt, operation)
}

/// One message to one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// `FromEmailAddress`: the verified identity (the envelope sender).
    pub from: String,
    /// The envelope recipient; the message's own `To` is not consulted.
    pub to: String,
    /// The complete raw message.
    pub raw: Bytes,
    /// SES configuration set for event publishing and suppression.
    pub configuration_set: Option<String>,
    /// `FromEmailAddressIdentityArn`: the identity SES sends as, named outright, so no
    /// `X-SES-FROM-ARN` or `X-SES-SOURCE-ARN` in the content can choose another.
    pub identity_arn: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendErrorKind {
    Retry,
    Rejected,
    Setup,
}

impl SendErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SendErrorKind::Retry => "retry",
            SendErrorKind::Rejected => "rejected",
            SendErrorKind::Setup => "setup",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("SendEmail failed ({}): {message}", kind.as_str())]
pub struct SendError {
    pub kind: SendErrorKind,
    pub message: String,
}

impl SendError {
    pub fn new(kind: SendErrorKind, message: impl Into<String>) -> Self {
        SendError {
            kind,
            message: message.into(),
        }
    }
}

#[async_trait]
pub trait MailSender: Send + Sync {
    /// Sends the message; the answer is SES's message id (or where it was written locally).
    async fn send(&self, mail: &OutgoingMail) -> Result<String, SendError>;
}

/// SES API v2 `SendEmail` with `Content::Raw`.
#[cfg(feature = "aws")]
#[derive(Debug, Clone)]
pub struct SesV2Sender {
    client: aws_sdk_sesv2::Client,
}

#[cfg(feature = "aws")]
impl SesV2Sender {
    pub fn new(client: aws_sdk_sesv2::Client) -> Self {
        SesV2Sender { client }
    }

    pub fn from_conf(config: &aws_config::SdkConfig) -> Self {
        SesV2Sender::new(aws_sdk_sesv2::Client::new(config))
    }
}

#[cfg(feature = "aws")]
#[async_trait]
impl MailSender for SesV2Sender {
    async fn send(&self, mail: &OutgoingMail) -> Result<String, SendError> {
        use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
        let raw = RawMessage::builder()
            .data(aws_smithy_types::Blob::new(mail.raw.to_vec()))
            .build()
            .map_err(|e| SendError::new(SendErrorKind::Setup, e.to_string()))?;
        let (attempt, operation) = send_timeouts(mail.raw.len());
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(mailroom::aws::CONNECT_TIMEOUT)
            .operation_attempt_timeout(attempt)
            .operation_timeout(operation)
            .build();
        let out = self
            .client
            .send_email()
            .from_email_address(&mail.from)
            .destination(Destination::builder().to_addresses(&mail.to).build())
            .content(EmailContent::builder().raw(raw).build())
            .set_configuration_set_name(mail.configuration_set.clone())
            .set_from_email_address_identity_arn(mail.identity_arn.clone())
            .customize()
            .config_override(aws_sdk_sesv2::config::Builder::default().timeout_config(timeouts))
            .send()
            .await
            .map_err(|e| {
                let port = mailroom::aws::classify("sesv2:SendEmail", &e);
                let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("");
                SendError::new(
                    kind_of(port.is_retryable(), code, &port.message),
                    port.message,
                )
            })?;
        Ok(out.message_id.unwrap_or_default())
    }
}

/// Sorts a `SendEmail` failure (docs/ses.md §9.3).
pub fn kind_of(retryable: bool, code: &str, message: &str) -> SendErrorKind {
    // SES's words for an identity it will not send as: unverified, or (moto, and SES with
    // sending authorization) no authority over it. Either is the account's set-up, not the mail.
    let lower = message.to_ascii_lowercase();
    let unverified = [
        "not verified",
        "authority to send",
        "not authorized to send",
    ]
    .iter()
    .any(|m| lower.contains(m));
    if retryable || code == "LimitExceededException" || code == "TooManyRequestsException" {
        SendErrorKind::Retry
    } else if (code == "MessageRejected" && !unverified) || code == "BadRequestException" {
        SendErrorKind::Rejected
    } else {
        SendErrorKind::Setup
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_send_gets_time_to_finish_within_the_function_timeout() {
        let (small, small_op) = send_timeouts(10_000);
        assert_eq!(small, std::time::Duration::from_secs(8));
        assert_eq!(small_op, std::time::Duration::from_secs(16));
        let (big, big_op) = send_timeouts(30_000_000);
        assert_eq!(big, std::time::Duration::from_secs(38));
        assert!(big_op >= big && big_op <= std::time::Duration::from_secs(100));
        assert!(send_timeouts(usize::MAX).1 <= std::time::Duration::from_secs(100));
    }

    #[test]
    fn failures_sort_into_three_kinds() {
        assert_eq!(kind_of(true, "", "timed out"), SendErrorKind::Retry);
        assert_eq!(
            kind_of(false, "LimitExceededException", ""),
            SendErrorKind::Retry
        );
        assert_eq!(
            kind_of(false, "MessageRejected", "Duplicate header 'To'"),
            SendErrorKind::Rejected
        );
        assert_eq!(
            kind_of(false, "MessageRejected", "Email address is not verified."),
            SendErrorKind::Setup
        );
        assert_eq!(
            kind_of(
                false,
                "MessageRejected",
                "Did not have authority to send from email forwarder@example.org"
            ),
            SendErrorKind::Setup
        );
        assert_eq!(
            kind_of(false, "BadRequestException", ""),
            SendErrorKind::Rejected
        );
        for code in [
            "MailFromDomainNotVerifiedException",
            "NotFoundException",
            "SendingPausedException",
            "AccountSuspendedException",
            "AccessDeniedException",
        ] {
            assert_eq!(kind_of(false, code, ""), SendErrorKind::Setup, "{code}");
        }
    }
}
