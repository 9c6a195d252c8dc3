//! Publishing (SNS): the fanout function's one side effect.
//!
//! A [`Publication`] is plain data so the local emulator can write it to a file exactly as the
//! SNS adapter would send it, message attributes included.

use super::PortError;
use async_trait::async_trait;
use std::collections::BTreeMap;

/// One SNS message attribute value, typed as SNS types them (filter policies depend on the type).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "Type", content = "Value")]
pub enum Attribute {
    /// `String`.
    String(String),
    /// `Number`, kept as its decimal text (SNS takes numbers as strings).
    Number(String),
    /// `String.Array`: a JSON array of strings, which filter policies match element-wise.
    #[serde(rename = "String.Array")]
    StringArray(Vec<String>),
}

impl Attribute {
    /// The SNS `DataType` name.
    pub fn data_type(&self) -> &'static str {
        match self {
            Attribute::String(_) => "String",
            Attribute::Number(_) => "Number",
            Attribute::StringArray(_) => "String.Array",
        }
    }

    /// The `StringValue` SNS expects (`String.Array` is a JSON array in a string).
    pub fn string_value(&self) -> String {
        match self {
            Attribute::String(s) | Attribute::Number(s) => s.clone(),
            Attribute::StringArray(v) => {
                serde_json::to_string(v).unwrap_or_else(|_| "[]".to_string())
            }
        }
    }

    pub fn number(n: impl std::fmt::Display) -> Self {
        Attribute::Number(n.to_string())
    }
}

/// One message to publish to a topic.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Publication {
    pub topic_arn: String,
    /// SNS `Subject` (email subscriptions show it); at most 100 ASCII characters per SNS.
    pub subject: Option<String>,
    pub message: String,
    /// Ordered so the serialized form (and SNS size accounting) is stable.
    pub attributes: BTreeMap<String, Attribute>,
    /// FIFO topics only: `MessageGroupId`.
    pub group_id: Option<String>,
    /// FIFO topics only: `MessageDeduplicationId`.
    pub dedup_id: Option<String>,
}

impl Publication {
    /// True when the topic is an SNS FIFO topic (its name ends in `.fifo`).
    pub fn is_fifo(&self) -> bool {
        self.topic_arn.ends_with(".fifo")
    }
}

#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes and returns the message id SNS assigned.
    async fn publish(&self, msg: &Publication) -> Result<String, PortError>;
}
