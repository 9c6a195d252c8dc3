//! [`Queue`] over Amazon SQS: the api function's retry queue and dead-letter queue.

use super::classify;
use crate::ports::queue::MAX_DELAY;
use crate::ports::{PortError, Queue, Received};
use async_trait::async_trait;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        SqsQueue { client }
    }

    pub fn from_conf(config: &aws_config::SdkConfig) -> Self {
        SqsQueue::new(aws_sdk_sqs::Client::new(config))
    }

    pub fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }
}

/// Whole seconds, rounded up so a job never runs before its time, capped at SQS's 900 s.
fn delay_seconds(delay: Duration) -> i32 {
    let d = delay.min(MAX_DELAY);
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(secs).unwrap_or(900)
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(
        &self,
        queue_url: &str,
        body: &str,
        delay: Duration,
    ) -> Result<String, PortError> {
        let out = self
            .client
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .delay_seconds(delay_seconds(delay))
            .send()
            .await
            .map_err(|e| classify("sqs:SendMessage", &e))?;
        Ok(out.message_id.unwrap_or_default())
    }

    async fn receive(
        &self,
        queue_url: &str,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<Received>, PortError> {
        let out = self
            .client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .wait_time_seconds(i32::try_from(wait.as_secs().min(20)).unwrap_or(20))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| classify("sqs:ReceiveMessage", &e))?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| Received {
                receive_count: m
                    .attributes
                    .as_ref()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok()),
                message_id: m.message_id.unwrap_or_default(),
                receipt_handle: m.receipt_handle.unwrap_or_default(),
                body: m.body.unwrap_or_default(),
            })
            .collect())
    }

    async fn delete(&self, queue_url: &str, receipt_handle: &str) -> Result<(), PortError> {
        self.client
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(|e| classify("sqs:DeleteMessage", &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_round_up_and_cap() {
        assert_eq!(delay_seconds(Duration::ZERO), 0);
        assert_eq!(delay_seconds(Duration::from_millis(1)), 1);
        assert_eq!(delay_seconds(Duration::from_secs(60)), 60);
        assert_eq!(delay_seconds(Duration::from_secs(7200)), 900);
    }
}
