//! [`Bouncer`] over the classic SES API's `SendBounce` (SES v2 has no bounce operation).
//!
//! SES allows `SendBounce` at most once per second (docs/ses.md §4.5). The adapter keeps a gate
//! per client, so calls from one warm Lambda container are spaced a second apart; concurrent
//! containers are not coordinated, and a throttling answer from SES is reported as
//! [`ErrorKind::Throttled`] so Lambda retries the invocation later.

use super::classify;
use crate::ports::bouncer::{
    BounceRequest, BounceType, BouncedRecipient, Bouncer, DsnAction, DsnExtension, MessageDsn,
    RecipientDsn,
};
use crate::ports::{ErrorKind, PortError};
use async_trait::async_trait;
use aws_sdk_ses::types as ses;
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

const OPERATION: &str = "ses:SendBounce";

/// The documented `SendBounce` rate.
pub const MIN_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct SesBouncer {
    client: aws_sdk_ses::Client,
    min_interval: Duration,
    /// When the previous call was sent; held across the call so calls never overlap.
    last: Mutex<Option<Instant>>,
}

impl SesBouncer {
    pub fn new(client: aws_sdk_ses::Client) -> Self {
        SesBouncer {
            client,
            min_interval: MIN_INTERVAL,
            last: Mutex::new(None),
        }
    }

    pub fn from_conf(config: &aws_config::SdkConfig) -> Self {
        SesBouncer::new(aws_sdk_ses::Client::new(config))
    }

    pub fn client(&self) -> &aws_sdk_ses::Client {
        &self.client
    }
}

#[async_trait]
impl Bouncer for SesBouncer {
    async fn send_bounce(&self, req: &BounceRequest) -> Result<String, PortError> {
        let recipients = req
            .recipients
            .iter()
            .map(recipient_info)
            .collect::<Result<Vec<_>, _>>()?;
        let dsn = req.message_dsn.as_ref().map(message_dsn).transpose()?;

        let mut last = self.last.lock().await;
        if let Some(prev) = *last {
            tokio::time::sleep_until(prev + self.min_interval).await;
        }
        *last = Some(Instant::now());
        let out = self
            .client
            .send_bounce()
            .original_message_id(&req.original_message_id)
            .bounce_sender(&req.bounce_sender)
            .set_bounce_sender_arn(req.bounce_sender_arn.clone())
            .set_explanation(req.explanation.clone())
            .set_message_dsn(dsn)
            .set_bounced_recipient_info_list(Some(recipients))
            .send()
            .await
            .map_err(|e| classify(OPERATION, &e))?;
        Ok(out.message_id.unwrap_or_default())
    }
}

fn invalid(what: &str, e: impl std::fmt::Display) -> PortError {
    PortError::new(ErrorKind::Permanent, OPERATION, format!("{what}: {e}"))
}

fn timestamp(field: &str, text: &str) -> Result<DateTime, PortError> {
    DateTime::from_str(text, Format::DateTime).map_err(|e| invalid(field, e))
}

fn extensions(fields: &[DsnExtension]) -> Result<Option<Vec<ses::ExtensionField>>, PortError> {
    if fields.is_empty() {
        return Ok(None);
    }
    fields
        .iter()
        .map(|f| {
            ses::ExtensionField::builder()
                .name(&f.name)
                .value(&f.value)
                .build()
                .map_err(|e| invalid("ExtensionField", e))
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn bounce_type(t: BounceType) -> ses::BounceType {
    match t {
        BounceType::DoesNotExist => ses::BounceType::DoesNotExist,
        BounceType::MessageTooLarge => ses::BounceType::MessageTooLarge,
        BounceType::ExceededQuota => ses::BounceType::ExceededQuota,
        BounceType::ContentRejected => ses::BounceType::ContentRejected,
        BounceType::Undefined => ses::BounceType::Undefined,
        BounceType::TemporaryFailure => ses::BounceType::TemporaryFailure,
    }
}

fn dsn_action(a: DsnAction) -> ses::DsnAction {
    match a {
        DsnAction::Failed => ses::DsnAction::Failed,
        DsnAction::Delayed => ses::DsnAction::Delayed,
        DsnAction::Delivered => ses::DsnAction::Delivered,
        DsnAction::Relayed => ses::DsnAction::Relayed,
        DsnAction::Expanded => ses::DsnAction::Expanded,
    }
}

fn recipient_info(r: &BouncedRecipient) -> Result<ses::BouncedRecipientInfo, PortError> {
    let dsn = r
        .dsn
        .as_ref()
        .map(|d: &RecipientDsn| {
            ses::RecipientDsnFields::builder()
                .set_final_recipient(d.final_recipient.clone())
                .action(dsn_action(d.action))
                .set_remote_mta(d.remote_mta.clone())
                .status(&d.status)
                .set_diagnostic_code(d.diagnostic_code.clone())
                .set_last_attempt_date(
                    d.last_attempt_date
                        .as_deref()
                        .map(|t| timestamp("LastAttemptDate", t))
                        .transpose()?,
                )
                .set_extension_fields(extensions(&d.extension_fields)?)
                .build()
                .map_err(|e| invalid("RecipientDsnFields", e))
        })
        .transpose()?;
    if r.bounce_type.is_none() && dsn.is_none() {
        return Err(invalid(
            "BouncedRecipientInfo",
            "either BounceType or RecipientDsnFields is required",
        ));
    }
    ses::BouncedRecipientInfo::builder()
        .recipient(&r.recipient)
        .set_recipient_arn(r.recipient_arn.clone())
        .set_bounce_type(r.bounce_type.map(bounce_type))
        .set_recipient_dsn_fields(dsn)
        .build()
        .map_err(|e| invalid("BouncedRecipientInfo", e))
}

fn message_dsn(d: &MessageDsn) -> Result<ses::MessageDsn, PortError> {
    ses::MessageDsn::builder()
        .reporting_mta(&d.reporting_mta)
        .set_arrival_date(
            d.arrival_date
                .as_deref()
                .map(|t| timestamp("ArrivalDate", t))
                .transpose()?,
        )
        .set_extension_fields(extensions(&d.extension_fields)?)
        .build()
        .map_err(|e| invalid("MessageDsn", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_fields_convert_and_bad_ones_are_permanent() {
        let r = BouncedRecipient {
            recipient: "a@example.com".into(),
            recipient_arn: None,
            bounce_type: Some(BounceType::DoesNotExist),
            dsn: Some(RecipientDsn {
                final_recipient: Some("a@example.com".into()),
                action: DsnAction::Failed,
                remote_mta: None,
                status: "5.1.1".into(),
                diagnostic_code: None,
                last_attempt_date: Some("not a date".into()),
                extension_fields: vec![],
            }),
        };
        let e = recipient_info(&r).expect_err("bad date");
        assert_eq!(e.kind, ErrorKind::Permanent);
        assert!(e.message.contains("LastAttemptDate"), "{e}");

        let d = message_dsn(&MessageDsn {
            reporting_mta: "dns; x".into(),
            arrival_date: Some("2025-01-15T10:00:02.028Z".into()),
            extension_fields: vec![DsnExtension {
                name: "X-A".into(),
                value: "b".into(),
            }],
        })
        .expect("valid dsn");
        assert_eq!(
            d.arrival_date.map(|t| t.secs()),
            Some(1_736_935_202),
            "ArrivalDate keeps the SES timestamp"
        );

        let neither = BouncedRecipient {
            bounce_type: None,
            dsn: None,
            ..r
        };
        assert_eq!(
            recipient_info(&neither).expect_err("neither").kind,
            ErrorKind::Permanent
        );
    }
}
