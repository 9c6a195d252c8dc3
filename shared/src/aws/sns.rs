//! [`Publisher`] over Amazon SNS.

use super::classify;
use crate::ports::{Attribute, PortError, Publication, Publisher};
use async_trait::async_trait;
use aws_sdk_sns::types::MessageAttributeValue;

#[derive(Debug, Clone)]
pub struct SnsPublisher {
    client: aws_sdk_sns::Client,
}

impl SnsPublisher {
    pub fn new(client: aws_sdk_sns::Client) -> Self {
        SnsPublisher { client }
    }

    pub fn from_conf(config: &aws_config::SdkConfig) -> Self {
        SnsPublisher::new(aws_sdk_sns::Client::new(config))
    }

    pub fn client(&self) -> &aws_sdk_sns::Client {
        &self.client
    }
}

fn attribute_value(a: &Attribute) -> Result<MessageAttributeValue, PortError> {
    MessageAttributeValue::builder()
        .data_type(a.data_type())
        .string_value(a.string_value())
        .build()
        .map_err(|e| {
            PortError::new(
                crate::ports::ErrorKind::Permanent,
                "sns:Publish",
                format!("message attribute: {e}"),
            )
        })
}

#[async_trait]
impl Publisher for SnsPublisher {
    async fn publish(&self, msg: &Publication) -> Result<String, PortError> {
        let mut req = self
            .client
            .publish()
            .topic_arn(&msg.topic_arn)
            .message(&msg.message)
            .set_subject(msg.subject.clone())
            .set_message_group_id(msg.group_id.clone())
            .set_message_deduplication_id(msg.dedup_id.clone());
        for (name, value) in &msg.attributes {
            req = req.message_attributes(name, attribute_value(value)?);
        }
        let out = req.send().await.map_err(|e| classify("sns:Publish", &e))?;
        Ok(out.message_id.unwrap_or_default())
    }
}
