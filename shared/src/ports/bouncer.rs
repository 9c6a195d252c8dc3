//! Bouncing (classic SES `SendBounce`): the bounce function's one side effect.
//!
//! A [`BounceRequest`] is plain data mirroring the `SendBounce` request fields, so the SES adapter
//! and the local emulator's file-system adapter produce the same bounce from the same input.

use super::PortError;
use async_trait::async_trait;

/// `BounceType` of one bounced recipient, as the SES API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum BounceType {
    DoesNotExist,
    MessageTooLarge,
    ExceededQuota,
    ContentRejected,
    Undefined,
    TemporaryFailure,
}

impl BounceType {
    pub fn as_str(self) -> &'static str {
        match self {
            BounceType::DoesNotExist => "DoesNotExist",
            BounceType::MessageTooLarge => "MessageTooLarge",
            BounceType::ExceededQuota => "ExceededQuota",
            BounceType::ContentRejected => "ContentRejected",
            BounceType::Undefined => "Undefined",
            BounceType::TemporaryFailure => "TemporaryFailure",
        }
    }
}

/// The DSN `Action` of one recipient (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DsnAction {
    Failed,
    Delayed,
    Delivered,
    Relayed,
    Expanded,
}

impl DsnAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DsnAction::Failed => "failed",
            DsnAction::Delayed => "delayed",
            DsnAction::Delivered => "delivered",
            DsnAction::Relayed => "relayed",
            DsnAction::Expanded => "expanded",
        }
    }
}

/// One `Name: Value` DSN extension field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DsnExtension {
    pub name: String,
    pub value: String,
}

/// `RecipientDsnFields` of one bounced recipient.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecipientDsn {
    /// The bare address; SES adds `rfc822;` itself, so it must not be prefixed.
    pub final_recipient: Option<String>,
    pub action: DsnAction,
    pub remote_mta: Option<String>,
    /// Enhanced status code, e.g. `5.1.1`.
    pub status: String,
    /// e.g. `smtp; 550 5.1.1 <user@example.com>: mailbox unknown`.
    pub diagnostic_code: Option<String>,
    /// RFC 3339 timestamp.
    pub last_attempt_date: Option<String>,
    pub extension_fields: Vec<DsnExtension>,
}

/// One `BouncedRecipientInfo`. SES requires a bounce type or DSN fields (we always send both).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BouncedRecipient {
    pub recipient: String,
    pub recipient_arn: Option<String>,
    pub bounce_type: Option<BounceType>,
    pub dsn: Option<RecipientDsn>,
}

/// `MessageDsn`: who reports the failure and when the mail arrived.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MessageDsn {
    /// e.g. `dns; inbound-smtp.us-east-1.amazonaws.com`.
    pub reporting_mta: String,
    /// RFC 3339 timestamp (the SES `mail.timestamp`).
    pub arrival_date: Option<String>,
    pub extension_fields: Vec<DsnExtension>,
}

/// The whole `SendBounce` request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BounceRequest {
    /// The SES `mail.messageId` of the message being bounced.
    pub original_message_id: String,
    /// The bounce's From; must be an SES-verified identity.
    pub bounce_sender: String,
    pub bounce_sender_arn: Option<String>,
    /// Human-readable text; SES generates one when absent.
    pub explanation: Option<String>,
    pub message_dsn: Option<MessageDsn>,
    /// At least one.
    pub recipients: Vec<BouncedRecipient>,
}

#[async_trait]
pub trait Bouncer: Send + Sync {
    /// Sends the bounce and returns the message id SES assigned to it.
    async fn send_bounce(&self, req: &BounceRequest) -> Result<String, PortError>;
}
