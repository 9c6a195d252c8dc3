//! The api function: POSTs each received message to the user's HTTP endpoint, signed per the
//! Standard Webhooks spec, and keeps retrying from SQS for about three days before dead-lettering.
//!
//! One binary, two triggers, told apart by the event's shape ([`handle`]):
//! - the SES Lambda action (`Event` invocation) makes the first attempt:
//!   `handle_ses(&SesEvent, &Config, &Deps) -> Result<Report, ApiError>`;
//! - the retry queue's SQS trigger makes every later one:
//!   `handle_sqs(&SqsEvent, &Config, &Deps) -> SqsBatchResponse` (partial batch failures, so one
//!   bad job never re-drives the others).
//!
//! Every attempt rebuilds the body from the raw mail in S3 ([`deliver_once`]); the queue only holds
//! a small [`Job`] (where the raw mail is, the SES envelope and verdicts, the attempt number). The
//! `webhook-id` is the SES messageId (plus `-<n>` per recipient when fanned out), the same on
//! every attempt, so receivers can de-duplicate.
//!
//! Never losing mail: a failed attempt is re-enqueued before its trigger is acknowledged; if that
//! send fails, the SES invocation returns `Err` (Lambda's async retry runs it again) and the SQS
//! record is reported failed (SQS redelivers it). The last failure, a 410, a permanent HTTP status
//! or unreadable raw mail sends a [`DeadLetter`] to the DLQ, naming the raw object, which is never
//! deleted; `mailroom replay` re-drives it.
//!
//! # Layout
//! - this file: the ports ([`Deps`]), errors, [`handle`] and its two triggers, and the jobs an SES
//!   record makes;
//! - [`config`]: the configuration and [`env_vars`];
//! - [`sqs`]: the SQS batch event and partial batch response;
//! - [`retry`]: one attempt ([`deliver_once`]), then the next attempt or a dead letter;
//! - [`secrets`]: resolving a secret ARN at cold start; [`replay`]: re-driving dead letters.

pub mod config;
pub mod replay;
pub mod retry;
pub mod secrets;
pub mod sqs;

pub use config::*;
pub use retry::*;
pub use sqs::*;

use mailroom::SesEvent;
use mailroom::diagnostic::FunctionError;
use mailroom::email::Verdicts;
use mailroom::layout::{self, Locations};
use mailroom::ports::{ObjectStore, PortError, Queue, WebhookSender};
use mailroom::ses::{SesRecord, VerdictStatus};
use mailroom::webhook::delivery::{DeadLetter, JOB_VERSION, Job, SesContext};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// The function's side effects, as ports.
#[derive(Clone, Copy)]
pub struct Deps<'a> {
    pub store: &'a dyn ObjectStore,
    pub queue: &'a dyn Queue,
    pub http: &'a dyn WebhookSender,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A retry or dead letter could not be queued: the invocation must fail so it runs again.
    #[error(
        "could not queue delivery {webhook_id} to {queue}: {source} (the raw mail stays at {raw})"
    )]
    Enqueue {
        webhook_id: String,
        queue: String,
        /// `s3://bucket/key` of the raw mail.
        raw: String,
        source: PortError,
    },
    #[error("the event is neither an SES nor an SQS event: {0}")]
    UnknownEvent(String),
    #[error("the {kind} event does not parse: {reason}")]
    BadEvent { kind: &'static str, reason: String },
    #[error("the webhook secret from {0} was never loaded")]
    SecretNotLoaded(String),
}

impl FunctionError for ApiError {
    const FUNCTION: &'static str = "Api";

    fn is_retryable(&self) -> bool {
        matches!(self, ApiError::Enqueue { .. })
    }

    fn variant(&self) -> &'static str {
        match self {
            ApiError::Enqueue { .. } => "Enqueue",
            ApiError::UnknownEvent(_) => "UnknownEvent",
            ApiError::BadEvent { .. } => "BadEvent",
            ApiError::SecretNotLoaded(_) => "SecretNotLoaded",
        }
    }
}

mailroom::impl_diagnostic!(ApiError);

/// What became of one job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Step {
    Delivered {
        webhook_id: String,
        attempt: u32,
        http_status: u16,
    },
    /// Attempt failed; the next one is queued.
    Scheduled {
        webhook_id: String,
        next_attempt: u32,
        delay_secs: u64,
        reason: String,
    },
    /// Not due yet: re-queued for up to 15 minutes more.
    Deferred {
        webhook_id: String,
        remaining_secs: u64,
    },
    DeadLettered {
        webhook_id: String,
        reason: String,
        detail: String,
    },
    /// SES's probe when a rule is created, or a record without a usable message id.
    Skipped { message_id: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub steps: Vec<Step>,
}

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

pub(crate) fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Dispatches on the event's shape: `Records[0].eventSource` `aws:sqs` → retries, else SES.
pub async fn handle(
    event: serde_json::Value,
    config: &Config,
    deps: Deps<'_>,
) -> Result<serde_json::Value, ApiError> {
    let first = event.get("Records").and_then(|r| r.get(0));
    let source = first
        .and_then(|r| r.get("eventSource"))
        .and_then(|s| s.as_str())
        .unwrap_or_default();
    let to_value = |v: Result<serde_json::Value, serde_json::Error>| {
        v.map_err(|e| ApiError::BadEvent {
            kind: "response",
            reason: e.to_string(),
        })
    };
    if source == "aws:sqs" {
        let ev: SqsEvent = serde_json::from_value(event).map_err(|e| ApiError::BadEvent {
            kind: "SQS",
            reason: e.to_string(),
        })?;
        let resp = handle_sqs(&ev, config, deps).await?;
        to_value(serde_json::to_value(resp))
    } else if source == "aws:ses" || first.is_some_and(|r| r.get("ses").is_some()) {
        let ev: SesEvent = serde_json::from_value(event).map_err(|e| ApiError::BadEvent {
            kind: "SES",
            reason: e.to_string(),
        })?;
        let report = handle_ses(&ev, config, deps).await?;
        to_value(serde_json::to_value(report))
    } else {
        let head: String = event.to_string().chars().take(200).collect();
        Err(ApiError::UnknownEvent(head))
    }
}

fn ses_context(record: &SesRecord, recipients: Vec<String>) -> SesContext {
    let r = &record.ses.receipt;
    let status = |v: &Option<VerdictStatus>| v.as_ref().map(|v| v.status.as_str().to_string());
    SesContext {
        timestamp: record.ses.mail.timestamp.clone(),
        mail_from: record.ses.mail.source.clone(),
        recipients,
        verdicts: Verdicts {
            spam: status(&r.spam_verdict),
            virus: status(&r.virus_verdict),
            spf: status(&r.spf_verdict),
            dkim: status(&r.dkim_verdict),
            dmarc: status(&r.dmarc_verdict),
            dmarc_policy: r.dmarc_policy.as_ref().map(|p| p.as_str().to_string()),
        },
    }
}

/// The jobs one SES record makes: one, or one per envelope recipient when fanned out.
pub fn jobs_for(record: &SesRecord, config: &Config, now: i64) -> Vec<Job> {
    jobs_at(record, &config.locations, config.per_recipient, now)
}

/// [`jobs_for`] with only what it needs (replay builds jobs without a full [`Config`]).
pub fn jobs_at(
    record: &SesRecord,
    locations: &Locations,
    per_recipient: bool,
    now: i64,
) -> Vec<Job> {
    let id = &record.ses.mail.message_id;
    let recipients = &record.ses.receipt.recipients;
    let job = |webhook_id: String, index: Option<usize>, rcpts: Vec<String>| Job {
        v: JOB_VERSION,
        message_id: id.clone(),
        webhook_id,
        bucket: locations.raw_bucket.clone(),
        key: locations.raw_key(id),
        recipient_index: index,
        ses: ses_context(record, rcpts),
        attempt: 1,
        first_attempt_at: now,
        not_before: 0,
        last_error: None,
        last_status: None,
    };
    if per_recipient && !recipients.is_empty() {
        recipients
            .iter()
            .enumerate()
            .map(|(i, r)| job(format!("{id}-{i}"), Some(i), vec![r.clone()]))
            .collect()
    } else {
        vec![job(id.clone(), None, recipients.clone())]
    }
}

/// First attempts, from the SES Lambda action. Fails (so Lambda retries the event) only when a
/// failed delivery could not be queued; a retried event may re-deliver recipients that had
/// succeeded, under the same `webhook-id`.
pub async fn handle_ses(
    event: &SesEvent,
    config: &Config,
    deps: Deps<'_>,
) -> Result<Report, ApiError> {
    if let Secrets::Arn(arn) = &config.secrets {
        return Err(ApiError::SecretNotLoaded(arn.clone()));
    }
    let now = now_unix();
    let mut steps = Vec::new();
    let mut first_error = None;
    for record in &event.records {
        let id = record.ses.mail.message_id.as_str();
        if mailroom::ses::is_setup_notification(id) {
            tracing::info!(
                message_id = id,
                "SES setup notification: nothing to deliver"
            );
            steps.push(Step::Skipped {
                message_id: id.to_string(),
                reason: "setup notification".into(),
            });
            continue;
        }
        if !layout::is_plain_message_id(id) {
            tracing::error!(
                message_id = id,
                "record has no usable messageId: cannot locate the raw mail, nothing delivered"
            );
            steps.push(Step::Skipped {
                message_id: id.to_string(),
                reason: "messageId is empty or not a plain SES message id".into(),
            });
            continue;
        }
        for job in jobs_for(record, config, now) {
            match process(job, config, deps).await {
                Ok(step) => steps.push(step),
                Err(e) => {
                    tracing::error!(error = %e, "delivery could not be queued; failing the invocation so Lambda retries it");
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(Report { steps }),
    }
}

/// Later attempts, from the retry queue. A record is reported failed (SQS redelivers it) only
/// when its follow-up could not be queued.
pub async fn handle_sqs(
    event: &SqsEvent,
    config: &Config,
    deps: Deps<'_>,
) -> Result<SqsBatchResponse, ApiError> {
    if let Secrets::Arn(arn) = &config.secrets {
        return Err(ApiError::SecretNotLoaded(arn.clone()));
    }
    let mut failures = Vec::new();
    for record in &event.records {
        let result = match serde_json::from_str::<Job>(&record.body) {
            Ok(job) => process(job, config, deps).await.map(|_| ()),
            Err(e) => {
                tracing::error!(sqs_message_id = %record.message_id, error = %e,
                    "retry queue message is not a delivery job: moving it to the DLQ as is");
                let letter = DeadLetter {
                    reason: "invalid-job".into(),
                    detail: e.to_string(),
                    attempts: 0,
                    dead_at: now_unix(),
                    job: None,
                    body: Some(record.body.clone()),
                };
                send_dead_letter(&letter, config, deps, &record.message_id, "", "").await
            }
        };
        if let Err(e) = result {
            tracing::error!(sqs_message_id = %record.message_id, error = %e,
                "leaving the record on the queue for SQS to redeliver");
            failures.push(BatchItemFailure {
                item_identifier: record.message_id.clone(),
            });
        }
    }
    Ok(SqsBatchResponse {
        batch_item_failures: failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fan_out_makes_one_job_per_recipient() {
        let event: SesEvent = serde_json::from_str(
            r#"{"Records":[{"eventSource":"aws:ses","ses":{
                "mail":{"timestamp":"2025-01-15T10:00:02.028Z","source":"a@x.net","messageId":"m1"},
                "receipt":{"recipients":["b+t@x.com","c@x.com"],"spamVerdict":{"status":"PASS"},
                           "dmarcPolicy":"reject"}}}]}"#,
        )
        .expect("event");
        let rec = &event.records[0];
        let env = [
            (URL_VAR, "https://hooks.example.com/mail"),
            (SECRET_VAR, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            (RETRY_QUEUE_VAR, "https://sqs/retry"),
            (DLQ_VAR, "https://sqs/dlq"),
            ("MAILROOM_RAW_BUCKET", "inbound"),
            ("MAILROOM_RAW_PREFIX", "raw/"),
        ];
        let mut c = Config::from_env(&env).expect("config");
        let one = jobs_for(rec, &c, 100);
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].webhook_id, "m1");
        assert_eq!(one[0].key, "raw/m1");
        assert_eq!(one[0].ses.recipients.len(), 2);
        assert_eq!(one[0].ses.verdicts.spam.as_deref(), Some("PASS"));
        assert_eq!(one[0].ses.verdicts.dmarc_policy.as_deref(), Some("reject"));
        c.per_recipient = true;
        let many = jobs_for(rec, &c, 100);
        let ids: Vec<_> = many.iter().map(|j| j.webhook_id.as_str()).collect();
        assert_eq!(ids, ["m1-0", "m1-1"]);
        assert_eq!(many[1].ses.recipients, ["c@x.com"]);
        assert_eq!(many[1].recipient_index, Some(1));
        assert!(
            many.iter()
                .all(|j| j.attempt == 1 && j.first_attempt_at == 100)
        );
    }
}
