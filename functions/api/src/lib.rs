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
use mailroom::policy::Mailboxes;
use mailroom::ports::{ObjectStore, PortError, Queue, WebhookSender};
use mailroom::ses::SesRecord;
use mailroom::webhook::delivery::{DeadLetter, JOB_VERSION, Job, SesContext};
use serde::Serialize;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What one job may spend on AWS calls beyond its webhook timeout: reading the raw mail,
/// uploading large attachments (and the decrypted copy of encrypted raw mail), queueing what
/// follows and acknowledging its record. Each call is
/// bounded by the shared SDK timeouts (`mailroom::aws::timeouts`); a job is cut off at
/// `webhook timeout + this` (see [`Config::job_budget`]).
pub const JOB_AWS_BUDGET: Duration = Duration::from_secs(15);

/// Kept free at the end of an invocation to return its answer to Lambda.
pub const FINISH_MARGIN: Duration = Duration::from_secs(1);

/// When the invocation must have answered: Lambda kills it then, and SQS would redeliver the
/// whole batch, finished jobs included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// No deadline (the emulator, replay, tests of other things).
    pub const NONE: Deadline = Deadline(None);

    /// `after` from now.
    pub fn after(after: Duration) -> Deadline {
        Deadline(Instant::now().checked_add(after))
    }

    /// From the Lambda context's deadline (milliseconds since the Unix epoch).
    pub fn from_unix_millis(deadline_ms: u64) -> Deadline {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Deadline::after(Duration::from_millis(deadline_ms.saturating_sub(now_ms)))
    }

    /// True when `need` still fits before the deadline.
    pub fn fits(&self, need: Duration) -> bool {
        self.0
            .is_none_or(|d| d.saturating_duration_since(Instant::now()) >= need)
    }
}

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
    /// A job outran its budget (a hung S3 or SQS call): cut off so the batch meets its deadline.
    #[error("delivery {webhook_id} took longer than its {budget:?} budget")]
    Overran {
        webhook_id: String,
        budget: Duration,
    },
}

impl FunctionError for ApiError {
    const FUNCTION: &'static str = "Api";

    fn is_retryable(&self) -> bool {
        matches!(self, ApiError::Enqueue { .. } | ApiError::Overran { .. })
    }

    fn variant(&self) -> &'static str {
        match self {
            ApiError::Enqueue { .. } => "Enqueue",
            ApiError::UnknownEvent(_) => "UnknownEvent",
            ApiError::BadEvent { .. } => "BadEvent",
            ApiError::SecretNotLoaded(_) => "SecretNotLoaded",
            ApiError::Overran { .. } => "Overran",
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
    /// Not attempted: too little time was left in the invocation, so it went to the retry queue
    /// as it was.
    Postponed { webhook_id: String },
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
    handle_until(event, config, deps, Deadline::NONE).await
}

/// [`handle`] within the invocation's deadline: no job starts that could not finish before it.
pub async fn handle_until(
    event: serde_json::Value,
    config: &Config,
    deps: Deps<'_>,
    deadline: Deadline,
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
        let resp = handle_sqs_until(&ev, config, deps, deadline).await?;
        to_value(serde_json::to_value(resp))
    } else if source == "aws:ses" || first.is_some_and(|r| r.get("ses").is_some()) {
        let ev: SesEvent = serde_json::from_value(event).map_err(|e| ApiError::BadEvent {
            kind: "SES",
            reason: e.to_string(),
        })?;
        let report = handle_ses_until(&ev, config, deps, deadline).await?;
        to_value(serde_json::to_value(report))
    } else {
        let head: String = event.to_string().chars().take(200).collect();
        Err(ApiError::UnknownEvent(head))
    }
}

fn ses_context(record: &SesRecord, recipients: Vec<String>) -> SesContext {
    SesContext {
        timestamp: record.ses.mail.timestamp.clone(),
        mail_from: record.ses.mail.source.clone(),
        recipients,
        verdicts: Verdicts::from_receipt(&record.ses.receipt),
    }
}

/// The jobs one SES record makes: one, or one per envelope recipient when fanned out. None
/// when no recipient is on the mailbox list.
pub fn jobs_for(record: &SesRecord, config: &Config, now: i64) -> Vec<Job> {
    jobs_at(
        record,
        &config.locations,
        config.per_recipient,
        config.mailboxes.as_ref(),
        now,
    )
}

/// [`jobs_for`] with only what it needs (replay builds jobs without a full [`Config`]).
///
/// A recipient that is not on `mailboxes` does not exist: the bounce function sent its sender a
/// "does not exist" DSN (or refused to, as possible backscatter), so no delivery names it, and
/// `envelope.recipients` lists only the ones that exist. Fanned-out jobs keep the recipient's
/// index in SES's list in their `webhook-id`.
pub fn jobs_at(
    record: &SesRecord,
    locations: &Locations,
    per_recipient: bool,
    mailboxes: Option<&Mailboxes>,
    now: i64,
) -> Vec<Job> {
    let id = &record.ses.mail.message_id;
    let all = &record.ses.receipt.recipients;
    let exists = |r: &String| mailboxes.is_none_or(|m| m.contains(r));
    if !all.is_empty() && !all.iter().any(exists) {
        return Vec::new();
    }
    let recipients: Vec<String> = all.iter().filter(|r| exists(r)).cloned().collect();
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
        all.iter()
            .enumerate()
            .filter(|(_, r)| exists(r))
            .map(|(i, r)| job(format!("{id}-{i}"), Some(i), vec![r.clone()]))
            .collect()
    } else {
        vec![job(id.clone(), None, recipients)]
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
    handle_ses_until(event, config, deps, Deadline::NONE).await
}

/// [`handle_ses`] within the invocation's deadline: jobs there is no time left for, and a job
/// that overran its budget, go to the retry queue unattempted (as attempt 1 still).
pub async fn handle_ses_until(
    event: &SesEvent,
    config: &Config,
    deps: Deps<'_>,
    deadline: Deadline,
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
        let jobs = jobs_for(record, config, now);
        if jobs.is_empty() {
            tracing::info!(message_id = id, recipients = ?record.ses.receipt.recipients,
                "no recipient is on the mailbox list (the gate bounced them): nothing to deliver");
            steps.push(Step::Skipped {
                message_id: id.to_string(),
                reason: "no recipient is on the mailbox list".into(),
            });
            continue;
        }
        for job in jobs {
            let result = if deadline.fits(config.job_budget() + FINISH_MARGIN) {
                let attempt = bounded(process(job.clone(), config, deps), &job, config).await;
                match attempt {
                    Err(ApiError::Overran { .. }) => postpone(job, config, deps).await,
                    other => other,
                }
            } else {
                postpone(job, config, deps).await
            };
            match result {
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

/// Runs `job` cut off at [`Config::job_budget`].
async fn bounded(
    work: impl std::future::Future<Output = Result<Step, ApiError>>,
    job: &Job,
    config: &Config,
) -> Result<Step, ApiError> {
    let budget = config.job_budget();
    tokio::time::timeout(budget, work)
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::Overran {
                webhook_id: job.webhook_id.clone(),
                budget,
            })
        })
}

/// Queues a job unattempted, for the retry queue's trigger to run with time to spare.
async fn postpone(job: Job, config: &Config, deps: Deps<'_>) -> Result<Step, ApiError> {
    tracing::warn!(webhook_id = %job.webhook_id,
        "not enough time left in this invocation: queueing the delivery unattempted");
    retry::enqueue(&job, Duration::ZERO, config, deps).await?;
    Ok(Step::Postponed {
        webhook_id: job.webhook_id,
    })
}

/// Later attempts, from the retry queue. A record is reported failed (SQS redelivers it) when
/// its follow-up could not be queued, when it overran its budget, or when it was never started
/// because the rest of the batch would not fit before `deadline`.
///
/// A record whose follow-up is queued is deleted from the retry queue at once, not only through
/// the batch response: should the invocation still die (a crash, a kill), SQS redelivers only
/// what was not finished, so no next attempt is ever queued twice.
pub async fn handle_sqs(
    event: &SqsEvent,
    config: &Config,
    deps: Deps<'_>,
) -> Result<SqsBatchResponse, ApiError> {
    handle_sqs_until(event, config, deps, Deadline::NONE).await
}

/// [`handle_sqs`] within the invocation's deadline.
pub async fn handle_sqs_until(
    event: &SqsEvent,
    config: &Config,
    deps: Deps<'_>,
    deadline: Deadline,
) -> Result<SqsBatchResponse, ApiError> {
    if let Secrets::Arn(arn) = &config.secrets {
        return Err(ApiError::SecretNotLoaded(arn.clone()));
    }
    let mut failures = Vec::new();
    for (n, record) in event.records.iter().enumerate() {
        if !deadline.fits(config.job_budget() + FINISH_MARGIN) {
            let unstarted = &event.records[n..];
            tracing::warn!(unstarted = unstarted.len(), budget = ?config.job_budget(),
                "not enough time left for another job: SQS redelivers the rest");
            failures.extend(unstarted.iter().map(|r| BatchItemFailure {
                item_identifier: r.message_id.clone(),
            }));
            break;
        }
        let result = match serde_json::from_str::<Job>(&record.body) {
            Ok(job) => bounded(process(job.clone(), config, deps), &job, config)
                .await
                .map(|_| ()),
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
        match result {
            Ok(()) => acknowledge(record, config, deps).await,
            Err(e) => {
                tracing::error!(sqs_message_id = %record.message_id, error = %e,
                    "leaving the record on the queue for SQS to redeliver");
                failures.push(BatchItemFailure {
                    item_identifier: record.message_id.clone(),
                });
            }
        }
    }
    Ok(SqsBatchResponse {
        batch_item_failures: failures,
    })
}

/// Deletes a finished record from the retry queue. A failure only costs the early delete: the
/// batch response still acknowledges the record.
async fn acknowledge(record: &SqsRecord, config: &Config, deps: Deps<'_>) {
    if let Err(e) = deps
        .queue
        .delete(&config.retry_queue_url, &record.receipt_handle)
        .await
    {
        tracing::warn!(sqs_message_id = %record.message_id, error = %e,
            "could not delete the finished record early; the batch response acknowledges it");
    }
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
