//! The SQS event and the partial batch response, as Lambda exchanges them with the retry
//! queue's trigger (only the fields used).

use serde::{Deserialize, Serialize};

/// The SQS event as Lambda delivers it (only the fields we use).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SqsEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<SqsRecord>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsRecord {
    #[serde(default)]
    pub message_id: String,
    #[serde(default)]
    pub receipt_handle: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub event_source: Option<String>,
}

/// The record Lambda's poller makes of a message it received, for whoever plays the poller over
/// the [`mailroom::ports::Queue`] port (the tests).
impl From<&mailroom::ports::Received> for SqsRecord {
    fn from(m: &mailroom::ports::Received) -> Self {
        SqsRecord {
            message_id: m.message_id.clone(),
            receipt_handle: m.receipt_handle.clone(),
            body: m.body.clone(),
            event_source: Some("aws:sqs".into()),
        }
    }
}

/// `{"batchItemFailures":[{"itemIdentifier":"<messageId>"}]}`: the records SQS must redeliver.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SqsBatchResponse {
    pub batch_item_failures: Vec<BatchItemFailure>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchItemFailure {
    pub item_identifier: String,
}
