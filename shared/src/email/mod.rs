//! The one JSON model of an email that every function shares (schema `mailroom.email/1`).
//!
//! `Email::parse` turns raw MIME into [`Parsed`]: the serializable [`Email`] plus the decoded
//! bytes of each attachment, kept apart so the JSON stays small and the bytes are decoded once.

mod html;
pub mod model;
mod parse;
pub mod reply;
mod ses;

pub use html::html_to_text;
pub use model::*;
pub(crate) use parse::body_reply;
pub use parse::{flags, header_block_len};
pub use reply::{Method as ReplyMethod, Reply};
pub use ses::mailbox_hash;

/// The version tag written into every serialized [`Email`].
pub const SCHEMA: &str = "mailroom.email/1";

/// Largest text or HTML body whose reply is computed. Replies are short; a body this large is a
/// document, and another copy of it in [`Email::reply`] would only cost memory.
pub const REPLY_MAX_BODY: usize = 4 * 1024 * 1024;

/// The most text made up from an HTML-only message's `html` (bytes of UTF-8), flagged
/// `text_from_html_truncated` when reached: a whole second copy of a 100 MB body is what would put
/// every function reading it over its memory, and the HTML itself stays whole.
pub const TEXT_FROM_HTML_MAX: usize = 4 * 1024 * 1024;

/// Bounds that keep hostile input from costing unbounded time or memory.
/// SES's largest message for the S3 action, as it is received (docs/ses.md §3): larger mail is
/// refused at SMTP.
pub const SES_MAX_MESSAGE_BYTES: usize = 40 * 1024 * 1024;

/// Room for the headers SES prepends before it writes the message to S3 (`Return-Path`,
/// `Received`, `X-SES-*`, `Authentication-Results`, a DKIM signature: a few KB, docs/ses.md §1.2).
/// The object the functions read may be this much larger than [`SES_MAX_MESSAGE_BYTES`].
pub const SES_HEADER_ALLOWANCE: usize = 256 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest raw message accepted, in bytes: by default SES's limit plus the headers it
    /// prepends, so nothing SES accepted is refused here.
    pub max_size: usize,
    /// Most MIME parts walked; further parts are dropped and flagged.
    pub max_parts: usize,
    /// Deepest multipart / message/rfc822 nesting walked.
    pub max_depth: usize,
    /// Largest header block (of the top-level message) accepted, in bytes.
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_size: SES_MAX_MESSAGE_BYTES + SES_HEADER_ALLOWANCE,
            max_parts: 1000,
            max_depth: 10,
            max_header_bytes: 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("message is empty")]
    Empty,
    #[error("message is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("header block is over the {limit}-byte limit")]
    HeadersTooLarge { limit: usize },
    #[error("not a MIME message: {reason}")]
    NotMime { reason: String },
    #[error("the MIME parser failed on this message: {reason}")]
    ParserPanicked { reason: String },
}
