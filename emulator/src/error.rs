//! Why an action or an in-process function failed. The trace shows an error only as its message,
//! so every message here reads as the text a user sees for a failed action.

use mailroom::ports::PortError;

/// Whatever a function's handler returned as its error; each function crate has its own type.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A function invocation that failed: Lambda reports only the error's message, and so do we.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct FunctionError(#[source] BoxError);

impl FunctionError {
    /// A handler's error, or a message the runtime around it produced (a timeout, a crash).
    pub fn new(error: impl Into<BoxError>) -> FunctionError {
        FunctionError(error.into())
    }
}

/// Why the executor could not carry out a receipt action.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0}")]
    Function(#[from] FunctionError),
    /// A port (bucket, topic, queue, bouncer) refused the write.
    #[error("{0}")]
    Port(#[from] PortError),
    #[error("{0}")]
    Encode(#[from] serde_json::Error),
    /// The S3 action's `KmsKeyArn` is set and the message could not be encrypted under it.
    #[error("encrypting the message: {0}")]
    Encrypt(#[from] mailroom::envelope::EnvelopeError),
    #[error("message is {size} bytes, over the SNS action's 150 KB: SES bounces it")]
    TooLargeForSns { size: usize },
    #[error("no in-process function for {arn}")]
    NoFunction { arn: String },
    #[error("timed out after 30 s (SES's RequestResponse limit)")]
    RequestResponseTimeout,
    /// An `Event` invocation failed on every attempt; `last` is the last attempt's error.
    #[error("{last} (failed {attempts} attempts; {fate})")]
    Exhausted {
        last: FunctionError,
        attempts: usize,
        fate: Fate,
    },
    #[error("{last} (bad on-failure destination {destination})")]
    BadDestination {
        last: FunctionError,
        destination: String,
    },
}

/// What became of an event whose asynchronous invocation ran out of attempts.
#[derive(Debug, thiserror::Error)]
pub enum Fate {
    #[error("no on-failure destination, so Lambda drops the event")]
    Dropped,
    #[error("the event went to the on-failure destination {destination}")]
    SentTo { destination: String },
    #[error("sending it to {destination} failed too: {error}")]
    NotSent {
        destination: String,
        error: PortError,
    },
}
