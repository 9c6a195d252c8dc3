//! Carries out receipt actions for the rule engine: S3 writes the message, SNS publishes the
//! notification with the content, Bounce sends a DSN through the bouncer, Lambda runs our real
//! handler in process; every action with a `TopicArn` also publishes its alert notification.

use crate::error::{ActionError, Fate, FunctionError};
use crate::functions::{Function, Returned};
use crate::ports::{Log, Ports};
use crate::receipt::{Action, Executor, InvocationType, Outcome, SnsEncoding, Step};
use async_trait::async_trait;
use bytes::Bytes;
use mailroom::ports::{
    BounceRequest, BounceType, BouncedRecipient, DsnAction, MessageDsn, ObjectMeta, Publication,
    RecipientDsn,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// SES's limit on the SNS action: larger mail bounces (docs/ses.md §3.2).
pub const SNS_CONTENT_LIMIT: usize = 150 * 1024;
/// SES's limit on a RequestResponse invocation (docs/ses.md §2).
pub const REQUEST_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
const NOTIFICATION_SUBJECT: &str = "Amazon SES Email Receipt Notification";

pub struct LocalExecutor {
    pub ports: Ports,
    /// By function ARN.
    pub functions: BTreeMap<String, Deployed>,
    pub region: String,
}

/// What a function is invoked with outside the rule set.
#[derive(Debug, Clone, Copy)]
pub enum Trigger<'e> {
    /// An SES event, as a receipt rule's Lambda action gives it.
    Ses(&'e mailroom::SesEvent),
    /// A batch from the function's retry queue, as the queue's trigger gives it.
    Sqs(&'e mailroom_api::SqsEvent),
}

impl LocalExecutor {
    /// Invokes the function with this logical id once, outside any rule: its answer and where
    /// its outputs landed. For running one function again on the exact event a rule gave it
    /// (the inspector's "invoke again"), or on a job of its retry queue ("run attempt n now").
    pub async fn invoke_once(
        &self,
        logical_id: &str,
        trigger: Trigger<'_>,
    ) -> Result<(Returned, Vec<String>), String> {
        let f = self.deployed(logical_id)?;
        let log = Log::default();
        let ports = self.ports.recording(&log);
        let returned = match trigger {
            Trigger::Ses(event) => f.function.invoke(event, &ports).await,
            Trigger::Sqs(event) => f.function.invoke_sqs(event, &ports).await,
        }
        .map_err(|e: FunctionError| format!("{e:#}"))?;
        Ok((returned, log.take()))
    }

    fn deployed(&self, logical_id: &str) -> Result<&Deployed, String> {
        self.functions
            .values()
            .find(|f| f.logical_id == logical_id)
            .ok_or_else(|| format!("the template has no function {logical_id}"))
    }

    /// How the function with this logical id retries, when it does on its own.
    pub fn retries(&self, logical_id: &str) -> Option<crate::functions::Retries> {
        self.deployed(logical_id).ok()?.function.retries()
    }
}

/// A function with Lambda's asynchronous-invocation settings from the template.
pub struct Deployed {
    pub function: Box<dyn Function>,
    /// The function's binary (`store`, `api`, ...), as the template's CodeUri names it.
    pub binary: String,
    /// Its logical id in the template.
    pub logical_id: String,
    pub max_retries: u32,
    pub on_failure: Option<String>,
}

#[async_trait]
impl Executor for LocalExecutor {
    async fn execute(&self, step: &Step<'_>) -> Result<Outcome, ActionError> {
        let log = Log::default();
        let ports = self.ports.recording(&log);
        let mut outcome = Outcome::default();
        let result = self.run(step, &ports, &mut outcome).await;
        if result.is_ok()
            && let Some(topic) = alert_topic(step.action)
        {
            publish_notification(&ports, topic, step, None).await?;
        }
        outcome.outputs = log.take();
        result.map(|()| outcome)
    }

    fn function_of(&self, function_arn: &str) -> Option<(String, String)> {
        self.functions
            .get(function_arn)
            .map(|f| (f.binary.clone(), f.logical_id.clone()))
    }
}

/// The optional alert topic of actions other than SNS (which publishes to its topic anyway).
fn alert_topic(action: &Action) -> Option<&str> {
    match action {
        Action::S3 { topic_arn, .. }
        | Action::Lambda { topic_arn, .. }
        | Action::Bounce { topic_arn, .. }
        | Action::Stop { topic_arn }
        | Action::Workmail { topic_arn, .. } => topic_arn.as_deref(),
        Action::Sns { .. } | Action::AddHeader { .. } => None,
    }
}

async fn publish_notification(
    ports: &Ports,
    topic: &str,
    step: &Step<'_>,
    content: Option<String>,
) -> Result<String, ActionError> {
    let body = serde_json::to_string(&step.notification(content))?;
    Ok(ports
        .publisher
        .publish(&Publication {
            topic_arn: topic.to_string(),
            subject: Some(NOTIFICATION_SUBJECT.to_string()),
            message: body,
            ..Publication::default()
        })
        .await?)
}

/// The encryption context SES wraps a message's data key in (docs/ses.md §3.3, "Encrypt message").
fn ses_context(step: &Step<'_>) -> mailroom::ports::EncryptionContext {
    mailroom::ports::EncryptionContext::from([
        (
            "aws:ses:message-id".to_string(),
            step.mail.message_id.clone(),
        ),
        ("aws:ses:rule-name".to_string(), step.rule.name.clone()),
        (
            "aws:ses:source-account".to_string(),
            crate::template::DEFAULT_ACCOUNT.to_string(),
        ),
    ])
}

impl LocalExecutor {
    async fn run(
        &self,
        step: &Step<'_>,
        ports: &Ports,
        out: &mut Outcome,
    ) -> Result<(), ActionError> {
        match step.action {
            Action::S3 {
                bucket,
                kms_key_arn,
                ..
            } => {
                let key = step.object_key().unwrap_or_default();
                let mut body = step.message.to_vec();
                let mut meta = ObjectMeta::new("application/octet-stream");
                let mut how = String::new();
                if let Some(kms_key) = kms_key_arn {
                    let metadata = mailroom::envelope::seal(
                        ports.data_keys.as_ref(),
                        kms_key,
                        &ses_context(step),
                        &mut body,
                    )
                    .await?;
                    meta = meta.with_metadata(metadata);
                    how = format!(", encrypted under {kms_key}");
                }
                ports
                    .objects
                    .put_if_absent(bucket, &key, Bytes::from(body), &meta)
                    .await?;
                out.summary = Some(format!(
                    "stored {} bytes at s3://{bucket}/{key}{how}",
                    step.message.len()
                ));
            }
            Action::Sns {
                topic_arn,
                encoding,
            } => {
                if step.message.len() > SNS_CONTENT_LIMIT {
                    return Err(ActionError::TooLargeForSns {
                        size: step.message.len(),
                    });
                }
                let content = match encoding {
                    SnsEncoding::Utf8 => String::from_utf8_lossy(step.message).into_owned(),
                    SnsEncoding::Base64 => base64_encode(step.message),
                };
                publish_notification(ports, topic_arn, step, Some(content)).await?;
                out.summary = Some("notification with content published".to_string());
            }
            Action::Bounce {
                smtp_reply_code,
                status_code,
                message,
                sender,
                ..
            } => {
                let req = bounce_request(
                    step,
                    smtp_reply_code,
                    status_code.as_deref(),
                    message,
                    sender,
                    &self.region,
                );
                let id = ports.bouncer.send_bounce(&req).await?;
                out.summary = Some(format!("bounce sent ({id})"));
            }
            Action::Stop { .. } => {
                out.summary = Some("rule set stopped".to_string());
            }
            Action::AddHeader { .. } => {}
            Action::Workmail { .. } => {
                out.summary = Some(
                    "WorkMail is not emulated: nothing was delivered to a mailbox".to_string(),
                );
            }
            Action::Lambda {
                function_arn,
                invocation_type,
                ..
            } => {
                let f =
                    self.functions
                        .get(function_arn)
                        .ok_or_else(|| ActionError::NoFunction {
                            arn: function_arn.clone(),
                        })?;
                let event = step.event();
                let returned = match invocation_type {
                    InvocationType::RequestResponse => tokio::time::timeout(
                        REQUEST_RESPONSE_TIMEOUT,
                        f.function.invoke(&event, ports),
                    )
                    .await
                    .map_err(|_| ActionError::RequestResponseTimeout)??,
                    InvocationType::Event => invoke_async(f, function_arn, &event, ports).await?,
                };
                out.disposition = returned.disposition;
                out.summary = Some(returned.summary);
            }
        }
        Ok(())
    }
}

/// Lambda's asynchronous invocation: up to `max_retries` more attempts after a function error
/// (at once here, rather than after 1 and 2 minutes), then the on-failure destination gets the
/// event, so a message whose function keeps failing is never dropped silently.
async fn invoke_async(
    f: &Deployed,
    function_arn: &str,
    event: &mailroom::SesEvent,
    ports: &Ports,
) -> Result<Returned, ActionError> {
    let retries = usize::try_from(f.max_retries).unwrap_or(usize::MAX);
    let mut errors: Vec<FunctionError> = Vec::new();
    let last = loop {
        match f.function.invoke(event, ports).await {
            Ok(mut r) => {
                if !errors.is_empty() {
                    let before: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    r.summary = format!(
                        "attempt {} succeeded after: {}; {}",
                        errors.len() + 1,
                        before.join("; "),
                        r.summary
                    );
                }
                return Ok(r);
            }
            Err(e) if errors.len() < retries => errors.push(e),
            Err(e) => break e,
        }
    };
    let attempts = errors.len() + 1;
    let Some(dest) = &f.on_failure else {
        return Err(ActionError::Exhausted {
            last,
            attempts,
            fate: Fate::Dropped,
        });
    };
    let record = serde_json::json!({
        "version": "1.0",
        "timestamp": crate::receipt::mail::iso_millis(time::OffsetDateTime::now_utc()),
        "requestContext": {
            "functionArn": format!("{function_arn}:$LATEST"),
            "condition": "RetriesExhausted",
            "approximateInvokeCount": attempts,
        },
        "requestPayload": event,
        "responseContext": { "statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled" },
        "responsePayload": { "errorMessage": last.to_string() },
    })
    .to_string();
    let sent = if let Some(rest) = dest.strip_prefix("arn:aws:sqs:") {
        let parts: Vec<&str> = rest.splitn(3, ':').collect();
        let [region, account, name] = parts.as_slice() else {
            return Err(ActionError::BadDestination {
                last,
                destination: dest.clone(),
            });
        };
        let url = format!("https://sqs.{region}.amazonaws.com/{account}/{name}");
        ports.queue.send(&url, &record, Duration::ZERO).await
    } else {
        ports
            .publisher
            .publish(&Publication {
                topic_arn: dest.clone(),
                message: record,
                ..Publication::default()
            })
            .await
    };
    let destination = dest.clone();
    let fate = match sent {
        Ok(_) => Fate::SentTo { destination },
        Err(error) => Fate::NotSent { destination, error },
    };
    Err(ActionError::Exhausted {
        last,
        attempts,
        fate,
    })
}

fn base64_encode(bytes: &[u8]) -> String {
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, bytes)
}

/// The SendBounce request SES itself makes for a Bounce action: every recipient the rule matched.
fn bounce_request(
    step: &Step<'_>,
    code: &str,
    status: Option<&str>,
    message: &str,
    sender: &str,
    region: &str,
) -> BounceRequest {
    let status = status
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}.0.0", code.chars().next().unwrap_or('5')));
    let bounce_type = match status.as_str() {
        "5.1.1" => BounceType::DoesNotExist,
        "5.3.4" => BounceType::MessageTooLarge,
        "5.2.2" => BounceType::ExceededQuota,
        "5.6.1" => BounceType::ContentRejected,
        s if s.starts_with('4') => BounceType::TemporaryFailure,
        _ => BounceType::Undefined,
    };
    BounceRequest {
        original_message_id: step.mail.message_id.clone(),
        bounce_sender: sender.to_string(),
        bounce_sender_arn: None,
        explanation: Some(message.to_string()),
        message_dsn: Some(MessageDsn {
            reporting_mta: format!("dns; inbound-smtp.{region}.amazonaws.com"),
            arrival_date: Some(step.mail.timestamp.clone()),
            extension_fields: Vec::new(),
        }),
        recipients: step
            .receipt
            .recipients
            .iter()
            .map(|r| BouncedRecipient {
                recipient: r.clone(),
                recipient_arn: None,
                bounce_type: Some(bounce_type),
                dsn: Some(RecipientDsn {
                    final_recipient: Some(r.clone()),
                    action: DsnAction::Failed,
                    remote_mta: None,
                    status: status.clone(),
                    diagnostic_code: Some(format!("smtp; {code} {status} {message}")),
                    last_attempt_date: Some(step.receipt.timestamp.clone()),
                    extension_fields: Vec::new(),
                }),
            })
            .collect(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::base64_encode;

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64_encode(b""), "");
        assert_eq!(base64_encode(b"f"), "Zg==");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(b"foo"), "Zm9v");
        assert_eq!(base64_encode(&[0xff, 0xfe, 0x00, 0x01]), "//4AAQ==");
    }
}
