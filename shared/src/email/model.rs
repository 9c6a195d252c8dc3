//! The serializable model. Field names are the JSON contract (camelCase); see docs/email-model.md.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Email {
    /// Always [`super::SCHEMA`].
    pub schema: String,
    /// The envelope (SMTP MAIL FROM / RCPT TO) when known from SES; empty otherwise.
    pub envelope: Envelope,
    /// The `Message-ID` header without angle brackets.
    pub message_id: Option<String>,
    /// The `Date` header as RFC 3339, when it parses.
    pub date: Option<String>,
    pub subject: Option<String>,
    pub from: Vec<Address>,
    pub sender: Option<Address>,
    pub reply_to: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
    /// The `+tag` of the first envelope recipient (or To address) that has one.
    pub mailbox_hash: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    /// Every header of the top-level message, decoded, in order.
    pub headers: Vec<Header>,
    /// The text body, charset-decoded to UTF-8.
    pub text: Option<String>,
    /// True when `text` was synthesized from `html` because the message had no text part.
    pub text_from_html: bool,
    pub html: Option<String>,
    /// The new text of a reply without the quoted message, and its signature apart (see
    /// [`super::reply`]). `None` without a body, or with one over [`super::REPLY_MAX_BODY`].
    #[serde(default)]
    pub reply: Option<super::Reply>,
    pub attachments: Vec<Attachment>,
    /// SES verdicts, when the message came through SES.
    pub verdicts: Option<Verdicts>,
    /// Size of the raw message in bytes.
    pub size: u64,
    /// Limits hit and repairs made while parsing (e.g. `max_parts_exceeded`).
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub mail_from: Option<String>,
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub name: Option<String>,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Disposition {
    Inline,
    Attachment,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// Position among the message's attachments, from 0; also the index into `Parsed::contents`.
    pub index: usize,
    /// The filename as the sender gave it (decoded), if any.
    pub filename: Option<String>,
    /// A filename safe for an S3 key or a file system (see `keys::safe_filename`).
    pub safe_filename: String,
    pub content_type: String,
    pub size: u64,
    pub content_id: Option<String>,
    pub disposition: Disposition,
    /// Hex SHA-256 of the decoded content.
    pub sha256: String,
    /// For `message/rfc822` parts: the nested message, parsed.
    pub message: Option<Box<Email>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdicts {
    pub spam: Option<String>,
    pub virus: Option<String>,
    pub spf: Option<String>,
    pub dkim: Option<String>,
    pub dmarc: Option<String>,
    pub dmarc_policy: Option<String>,
}

/// The result of parsing: the model plus each attachment's decoded bytes (by `Attachment::index`).
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    pub email: Email,
    pub contents: Vec<Vec<u8>>,
}
