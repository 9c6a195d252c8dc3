//! Durable queues (SQS): the api function's retry schedule and its dead-letter queue.
//!
//! A queue is named by its URL so one client serves both the retry queue and the DLQ. Bodies are
//! opaque text (the api function puts a JSON delivery job in them); a message becomes visible
//! `delay` after it is sent. SQS caps that delay at [`MAX_DELAY`]; callers needing longer waits
//! re-enqueue (see `webhook::delivery`).

use super::PortError;
use async_trait::async_trait;
use std::time::Duration;

/// The longest delay SQS accepts on `SendMessage` (`DelaySeconds` ≤ 900).
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// One message taken from a queue; it stays in the queue (invisible) until deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub message_id: String,
    /// The handle `delete` needs; valid for this receive only.
    pub receipt_handle: String,
    pub body: String,
    /// How many times SQS has handed this message out (`ApproximateReceiveCount`), when known.
    pub receive_count: Option<u32>,
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends `body`, visible after `delay` (clamped to [`MAX_DELAY`] by adapters). Returns the
    /// queue's message id.
    async fn send(&self, queue_url: &str, body: &str, delay: Duration)
    -> Result<String, PortError>;

    /// Up to `max` messages (1..=10), waiting at most `wait` for the first one (long polling).
    /// An empty vector means the queue looked empty.
    async fn receive(
        &self,
        queue_url: &str,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<Received>, PortError>;

    /// Removes a received message for good.
    async fn delete(&self, queue_url: &str, receipt_handle: &str) -> Result<(), PortError>;
}
