//! Outbound HTTP for webhook delivery: one POST, its status, and what went wrong on the wire.
//!
//! The sender reports what happened and decides nothing: turning a status, a `Retry-After` or a
//! timeout into "delivered / gone / retry / give up" is pure logic in `webhook::delivery`.

use async_trait::async_trait;
use bytes::Bytes;
use std::time::Duration;

/// One webhook POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    pub url: String,
    /// Header name and value pairs, sent in order (names as given; HTTP is case-insensitive).
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The whole exchange (connect, send, response headers and body) must finish within this.
    pub timeout: Duration,
}

/// The endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookResponse {
    pub status: u16,
    /// The raw `Retry-After` header (delta-seconds or an HTTP-date), if any.
    pub retry_after: Option<String>,
    /// The start of the response body (adapters keep at most a few KiB) for logs and the DLQ.
    pub body_excerpt: String,
}

/// Why there is no response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportErrorKind {
    /// No complete response within the timeout.
    Timeout,
    /// DNS, TCP connect or TLS handshake failed (includes connection refused).
    Connect,
    /// The connection broke mid-exchange or the response was not HTTP.
    Protocol,
    /// The request could not be built (bad URL, bad header). Retrying will not help.
    InvalidRequest,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct TransportError {
    pub kind: TransportErrorKind,
    pub message: String,
}

impl TransportError {
    pub fn new(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        TransportError {
            kind,
            message: message.into(),
        }
    }
}

#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// POSTs once. `Ok` for any HTTP response, whatever its status; `Err` when there was none.
    async fn post(&self, req: &WebhookRequest) -> Result<WebhookResponse, TransportError>;
}
