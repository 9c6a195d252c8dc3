//! The small traits behind which every side effect sits, one real AWS adapter each (in
//! [`crate::aws`]) plus local file-system adapters for the emulator.
//!
//! Adapters translate their SDK's errors into [`PortError`], whose [`ErrorKind`] is what the
//! functions need to decide between "let Lambda retry" and "log once and stop".

pub mod bouncer;
pub mod datakeys;
pub mod http;
pub mod objects;
pub mod publisher;
pub mod queue;

pub use bouncer::{
    BounceRequest, BounceType, BouncedRecipient, Bouncer, DsnAction, DsnExtension, MessageDsn,
    RecipientDsn,
};
pub use datakeys::{DataKey, DataKeys, EncryptionContext, LocalDataKeys};
pub use http::{
    TransportError, TransportErrorKind, WebhookRequest, WebhookResponse, WebhookSender,
};
pub use objects::{Object, ObjectMeta, ObjectStore, PutOutcome};
pub use publisher::{Attribute, Publication, Publisher};
pub use queue::{Queue, Received};

/// What kind of failure an adapter saw, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The thing asked for does not exist (missing object, unknown topic). Permanent.
    NotFound,
    /// A conditional write found the target already there. Usually success for idempotent writers.
    AlreadyExists,
    /// Throttling or rate limiting: retry later.
    Throttled,
    /// Timeouts, connection failures, 5xx: retry.
    Transient,
    /// Bad request, invalid configuration: retrying will not help.
    Permanent,
    /// The caller's IAM policy (or a resource policy) does not allow the call. Permanent: the
    /// same call is denied on every retry until the policy changes, so it must be logged as such
    /// rather than retried for days.
    AccessDenied,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation} failed ({kind:?}): {message}")]
pub struct PortError {
    pub kind: ErrorKind,
    pub operation: &'static str,
    pub message: String,
}

impl PortError {
    pub fn new(kind: ErrorKind, operation: &'static str, message: impl Into<String>) -> Self {
        PortError {
            kind,
            operation,
            message: message.into(),
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Throttled | ErrorKind::Transient)
    }
}
