//! The [`RuleSets`] adapter over the classic SES API (`aws-sdk-ses`); receipt rule sets have no
//! SES v2 equivalent.

use crate::RuleSets;
use async_trait::async_trait;
use mailroom::aws::classify;
use mailroom::ports::PortError;

#[derive(Debug, Clone)]
pub struct SesRuleSets {
    client: aws_sdk_ses::Client,
}

impl SesRuleSets {
    pub fn new(client: aws_sdk_ses::Client) -> Self {
        SesRuleSets { client }
    }
}

#[async_trait]
impl RuleSets for SesRuleSets {
    async fn active(&self) -> Result<Option<String>, PortError> {
        let out = self
            .client
            .describe_active_receipt_rule_set()
            .send()
            .await
            .map_err(|e| classify("ses:DescribeActiveReceiptRuleSet", &e))?;
        Ok(out.metadata().and_then(|m| m.name()).map(str::to_string))
    }

    async fn set_active(&self, name: Option<&str>) -> Result<(), PortError> {
        self.client
            .set_active_receipt_rule_set()
            .set_rule_set_name(name.map(str::to_string))
            .send()
            .await
            .map_err(|e| classify("ses:SetActiveReceiptRuleSet", &e))?;
        Ok(())
    }
}
