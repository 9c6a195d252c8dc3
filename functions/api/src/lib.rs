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

pub mod replay;
pub mod secrets;

use bytes::Bytes;
use mailroom::config::{self, ConfigError, Env};
use mailroom::email::Verdicts;
use mailroom::layout::{self, Locations};
use mailroom::ports::queue::MAX_DELAY;
use mailroom::ports::{
    ErrorKind, ObjectMeta, ObjectStore, PortError, Queue, WebhookRequest, WebhookSender,
};
use mailroom::ses::{SesRecord, VerdictStatus};
use mailroom::webhook::delivery::{
    self, DeadLetter, JOB_VERSION, Job, Outcome, RetryPolicy, SesContext,
};
use mailroom::webhook::payload::{self, Delivery, Format, RawLocation};
use mailroom::webhook::signing::{self, Secret};
use mailroom::{Email, Limits, SesEvent};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const URL_VAR: &str = "MAILROOM_WEBHOOK_URL";
pub const FORMAT_VAR: &str = "MAILROOM_WEBHOOK_FORMAT";
pub const SECRET_VAR: &str = "MAILROOM_WEBHOOK_SECRET";
pub const SECRET_ARN_VAR: &str = "MAILROOM_WEBHOOK_SECRET_ARN";
pub const BEARER_VAR: &str = "MAILROOM_WEBHOOK_BEARER";
pub const BASIC_AUTH_VAR: &str = "MAILROOM_WEBHOOK_BASIC_AUTH";
pub const TIMEOUT_VAR: &str = "MAILROOM_WEBHOOK_TIMEOUT_MS";
pub const RETRY_QUEUE_VAR: &str = "MAILROOM_RETRY_QUEUE_URL";
pub const DLQ_VAR: &str = "MAILROOM_DLQ_URL";
pub const INLINE_MAX_VAR: &str = "MAILROOM_INLINE_ATTACHMENT_MAX_BYTES";
pub const INLINE_TOTAL_VAR: &str = "MAILROOM_INLINE_TOTAL_MAX_BYTES";
pub const PRESIGN_EXPIRY_VAR: &str = "MAILROOM_PRESIGN_EXPIRY_SECS";
pub const INCLUDE_RAW_VAR: &str = "MAILROOM_WEBHOOK_INCLUDE_RAW";
pub const PER_RECIPIENT_VAR: &str = "MAILROOM_WEBHOOK_PER_RECIPIENT";
pub const SCHEDULE_VAR: &str = "MAILROOM_RETRY_SCHEDULE";
pub const JITTER_VAR: &str = "MAILROOM_RETRY_JITTER";
pub const MAX_RETRY_AFTER_VAR: &str = "MAILROOM_RETRY_AFTER_MAX_SECS";
pub const MAX_MESSAGE_BYTES_VAR: &str = "MAILROOM_MAX_MESSAGE_BYTES";

/// Where the webhook secrets come from.
#[derive(Debug, Clone)]
pub enum Secrets {
    /// Parsed from `MAILROOM_WEBHOOK_SECRET`.
    Loaded(Vec<Secret>),
    /// `MAILROOM_WEBHOOK_SECRET_ARN`: resolved once at cold start by the binary
    /// (Secrets Manager or SSM Parameter Store), then replaced by `Loaded`.
    Arn(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub url: String,
    pub format: Format,
    pub secrets: Secrets,
    /// The full `Authorization` header value, if the endpoint wants one.
    pub authorization: Option<String>,
    pub retry_queue_url: String,
    pub dlq_url: String,
    pub timeout: Duration,
    pub locations: Locations,
    pub limits: Limits,
    pub inline: payload::Limits,
    pub presign_expiry: Duration,
    /// Postmark format: include `RawEmail`.
    pub include_raw: bool,
    /// One delivery per envelope recipient instead of one per message.
    pub per_recipient: bool,
    pub policy: RetryPolicy,
}

fn invalid(name: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl Config {
    /// Reads every variable in the table of docs/webhooks.md; errors name the variable.
    pub fn from_env(env: &(impl Env + ?Sized)) -> Result<Config, ConfigError> {
        use base64::Engine;
        let url = config::required(env, URL_VAR)?;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(invalid(URL_VAR, &url, "must be an http:// or https:// URL"));
        }
        let format = config::choice(env, FORMAT_VAR, &["mailroom", "postmark"], "mailroom")?;
        let format = Format::parse(&format).unwrap_or(Format::Mailroom);
        let secrets = match (
            config::optional(env, SECRET_VAR),
            config::optional(env, SECRET_ARN_VAR),
        ) {
            (Some(text), _) => Secrets::Loaded(
                Secret::parse_list(&text)
                    .map_err(|e| invalid(SECRET_VAR, "(hidden)", e.to_string()))?,
            ),
            (None, Some(arn)) => {
                if !(arn.starts_with("arn:aws:secretsmanager:") || arn.starts_with("arn:aws:ssm:"))
                {
                    return Err(invalid(
                        SECRET_ARN_VAR,
                        &arn,
                        "expected a Secrets Manager secret or SSM parameter ARN",
                    ));
                }
                Secrets::Arn(arn)
            }
            (None, None) => {
                return Err(ConfigError::Missing {
                    name: format!("{SECRET_VAR} (or {SECRET_ARN_VAR})"),
                });
            }
        };
        let authorization = match (
            config::optional(env, BEARER_VAR),
            config::optional(env, BASIC_AUTH_VAR),
        ) {
            (Some(token), _) => Some(format!("Bearer {token}")),
            (None, Some(userpass)) => {
                if !userpass.contains(':') {
                    return Err(invalid(
                        BASIC_AUTH_VAR,
                        "(hidden)",
                        "expected user:password",
                    ));
                }
                Some(format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(userpass)
                ))
            }
            (None, None) => None,
        };
        let timeout_ms: u64 = config::parsed_or(env, TIMEOUT_VAR, 15_000)?;
        if timeout_ms == 0 {
            return Err(invalid(TIMEOUT_VAR, "0", "must be at least 1 ms"));
        }
        let defaults = Limits::default();
        let max_size = config::parsed_or(env, MAX_MESSAGE_BYTES_VAR, defaults.max_size)?;
        let mut policy = RetryPolicy::default();
        if let Some(text) = config::optional(env, SCHEDULE_VAR) {
            policy.delays = RetryPolicy::parse_delays(&text)
                .map_err(|reason| invalid(SCHEDULE_VAR, &text, reason))?;
        }
        policy.jitter = config::parsed_or(env, JITTER_VAR, policy.jitter)?;
        if !(0.0..=1.0).contains(&policy.jitter) {
            return Err(invalid(
                JITTER_VAR,
                &policy.jitter.to_string(),
                "must be between 0 and 1",
            ));
        }
        policy.max_retry_after = Duration::from_secs(config::parsed_or(
            env,
            MAX_RETRY_AFTER_VAR,
            policy.max_retry_after.as_secs(),
        )?);
        // SigV4 presigned URLs live at most 7 days.
        let presign_secs: u64 = config::parsed_or(env, PRESIGN_EXPIRY_VAR, 7 * 86400)?;
        if !(1..=7 * 86400).contains(&presign_secs) {
            return Err(invalid(
                PRESIGN_EXPIRY_VAR,
                &presign_secs.to_string(),
                "must be 1..=604800 (S3 presigned URLs last at most 7 days)",
            ));
        }
        Ok(Config {
            url,
            format,
            secrets,
            authorization,
            retry_queue_url: config::required(env, RETRY_QUEUE_VAR)?,
            dlq_url: config::required(env, DLQ_VAR)?,
            timeout: Duration::from_millis(timeout_ms),
            locations: Locations::from_env(env)?,
            limits: Limits {
                max_size,
                ..defaults
            },
            inline: payload::Limits {
                inline_max_bytes: config::parsed_or(env, INLINE_MAX_VAR, 5 * 1024 * 1024)?,
                inline_total_max_bytes: config::parsed_or(env, INLINE_TOTAL_VAR, 20 * 1024 * 1024)?,
            },
            presign_expiry: Duration::from_secs(presign_secs),
            include_raw: config::flag(env, INCLUDE_RAW_VAR, false)?,
            per_recipient: config::flag(env, PER_RECIPIENT_VAR, false)?,
            policy,
        })
    }

    /// The loaded secrets; empty while an ARN is unresolved (sending then fails loudly).
    pub fn secrets(&self) -> &[Secret] {
        match &self.secrets {
            Secrets::Loaded(s) => s,
            Secrets::Arn(_) => &[],
        }
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
}

impl From<ApiError> for lambda_runtime::Diagnostic {
    fn from(e: ApiError) -> Self {
        let what = match &e {
            ApiError::Enqueue { .. } => "Api.Retryable.Enqueue",
            ApiError::UnknownEvent(_) => "Api.Permanent.UnknownEvent",
            ApiError::BadEvent { .. } => "Api.Permanent.BadEvent",
            ApiError::SecretNotLoaded(_) => "Api.Permanent.SecretNotLoaded",
        };
        lambda_runtime::Diagnostic {
            error_type: what.to_string(),
            error_message: e.to_string(),
        }
    }
}

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

pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn rfc3339(unix: i64) -> String {
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

async fn send_dead_letter(
    letter: &DeadLetter,
    config: &Config,
    deps: Deps<'_>,
    webhook_id: &str,
    bucket: &str,
    key: &str,
) -> Result<(), ApiError> {
    let body = serde_json::to_string(letter).map_err(|e| ApiError::BadEvent {
        kind: "dead letter",
        reason: e.to_string(),
    })?;
    deps.queue
        .send(&config.dlq_url, &body, Duration::ZERO)
        .await
        .map(|_| ())
        .map_err(|source| ApiError::Enqueue {
            webhook_id: webhook_id.to_string(),
            queue: config.dlq_url.clone(),
            raw: format!("s3://{bucket}/{key}"),
            source,
        })
}

async fn enqueue(
    job: &Job,
    delay: Duration,
    config: &Config,
    deps: Deps<'_>,
) -> Result<(), ApiError> {
    let body = serde_json::to_string(job).map_err(|e| ApiError::BadEvent {
        kind: "job",
        reason: e.to_string(),
    })?;
    deps.queue
        .send(&config.retry_queue_url, &body, delay.min(MAX_DELAY))
        .await
        .map(|_| ())
        .map_err(|source| ApiError::Enqueue {
            webhook_id: job.webhook_id.clone(),
            queue: config.retry_queue_url.clone(),
            raw: format!("s3://{}/{}", job.bucket, job.key),
            source,
        })
}

/// Runs one job: waits (re-queues) if it is not due, else makes one attempt and queues what
/// follows (the next attempt or a dead letter). `Err` only when that queueing failed.
pub async fn process(mut job: Job, config: &Config, deps: Deps<'_>) -> Result<Step, ApiError> {
    let now = now_unix();
    if job.not_before > now {
        let remaining = u64::try_from(job.not_before - now).unwrap_or(0);
        enqueue(&job, Duration::from_secs(remaining), config, deps).await?;
        return Ok(Step::Deferred {
            webhook_id: job.webhook_id,
            remaining_secs: remaining,
        });
    }
    let attempt = job.attempt;
    let outcome = match deliver_once(&job, config, deps).await {
        Attempt::Sent(outcome) => outcome,
        Attempt::Unreadable(detail) => {
            return dead_letter(job, "unreadable", detail, config, deps).await;
        }
    };
    let raw = format!("s3://{}/{}", job.bucket, job.key);
    match outcome {
        Outcome::Delivered { status } => {
            tracing::info!(webhook_id = %job.webhook_id, attempt, status, "delivered");
            Ok(Step::Delivered {
                webhook_id: job.webhook_id,
                attempt,
                http_status: status,
            })
        }
        Outcome::Gone => {
            tracing::warn!(webhook_id = %job.webhook_id, attempt, %raw, "endpoint answered 410 Gone: not retrying");
            let detail = Outcome::Gone.reason();
            job.last_status = Some(410);
            dead_letter(job, "gone", detail, config, deps).await
        }
        Outcome::Permanent { reason, status } => {
            tracing::warn!(webhook_id = %job.webhook_id, attempt, %raw, %reason, "permanent failure: not retrying");
            job.last_status = status;
            dead_letter(job, "permanent", reason, config, deps).await
        }
        Outcome::Retry {
            reason,
            status,
            retry_after,
        } => {
            job.last_error = Some(reason.clone());
            job.last_status = status;
            match config.policy.next_delay(attempt, retry_after) {
                Some(delay) => {
                    job.attempt = attempt + 1;
                    let secs = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
                    job.not_before = now.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX));
                    tracing::warn!(webhook_id = %job.webhook_id, attempt, %reason, next_in_secs = secs, %raw,
                        "attempt failed: retry scheduled");
                    enqueue(&job, delay, config, deps).await?;
                    Ok(Step::Scheduled {
                        webhook_id: job.webhook_id,
                        next_attempt: job.attempt,
                        delay_secs: secs,
                        reason,
                    })
                }
                None => {
                    tracing::error!(webhook_id = %job.webhook_id, attempt, %reason, %raw,
                        "last attempt failed: dead-lettering");
                    dead_letter(job, "exhausted", reason, config, deps).await
                }
            }
        }
    }
}

async fn dead_letter(
    mut job: Job,
    reason: &str,
    detail: String,
    config: &Config,
    deps: Deps<'_>,
) -> Result<Step, ApiError> {
    job.last_error = Some(detail.clone());
    let letter = DeadLetter {
        reason: reason.to_string(),
        detail: detail.clone(),
        attempts: job.attempt,
        dead_at: now_unix(),
        job: Some(job.clone()),
        body: None,
    };
    tracing::error!(webhook_id = %job.webhook_id, reason, %detail, raw = %format!("s3://{}/{}", job.bucket, job.key),
        "delivery dead-lettered; the raw mail stays in S3 (re-drive with `mailroom replay`)");
    send_dead_letter(
        &letter,
        config,
        deps,
        &job.webhook_id,
        &job.bucket,
        &job.key,
    )
    .await?;
    Ok(Step::DeadLettered {
        webhook_id: job.webhook_id,
        reason: reason.to_string(),
        detail,
    })
}

/// The result of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    Sent(Outcome),
    /// The raw mail is missing or cannot be parsed: no attempt can succeed.
    Unreadable(String),
}

fn infra_retry(what: &str, e: &PortError) -> Attempt {
    Attempt::Sent(Outcome::Retry {
        reason: format!("{what}: {e}"),
        status: None,
        retry_after: None,
    })
}

/// Reads the raw mail, builds and signs the body, POSTs it once and classifies the answer.
/// S3 trouble other than a missing object counts as a failed attempt (retried on schedule).
pub async fn deliver_once(job: &Job, config: &Config, deps: Deps<'_>) -> Attempt {
    let raw = match deps.store.get(&job.bucket, &job.key).await {
        Ok(raw) => raw,
        Err(e) if e.kind == ErrorKind::NotFound => {
            return Attempt::Unreadable(format!(
                "raw mail not found at s3://{}/{}: {e}",
                job.bucket, job.key
            ));
        }
        Err(e) => return infra_retry("reading the raw mail", &e),
    };
    let parsed = match Email::parse(&raw, &config.limits) {
        Ok(p) => p,
        Err(e) => return Attempt::Unreadable(format!("raw mail does not parse: {e}")),
    };
    let now = now_unix();
    let expires_at = rfc3339(
        now.saturating_add(i64::try_from(config.presign_expiry.as_secs()).unwrap_or(i64::MAX)),
    );
    let plan = payload::plan_attachments(&parsed, &config.inline);
    let folder = config
        .locations
        .message(&layout::date_of(&job.ses.timestamp), &job.message_id);
    let mut deliveries = Vec::with_capacity(plan.len());
    for (att, inline) in parsed.email.attachments.iter().zip(&plan) {
        if *inline {
            deliveries.push(Delivery::Inline);
            continue;
        }
        // The same key the store function uses, so a stored message is not copied twice.
        let key = folder.attachment_of(att);
        let bytes = Bytes::copy_from_slice(parsed.contents.get(att.index).map_or(&[][..], |c| c));
        let meta = ObjectMeta::new(att.content_type.clone());
        if let Err(e) = deps
            .store
            .put_if_absent(&folder.bucket, &key, bytes, &meta)
            .await
        {
            return infra_retry("uploading a large attachment", &e);
        }
        match deps
            .store
            .presign_get(&folder.bucket, &key, config.presign_expiry)
            .await
        {
            Ok(url) => deliveries.push(Delivery::Url {
                url,
                expires_at: expires_at.clone(),
            }),
            Err(e) => return infra_retry("presigning a large attachment", &e),
        }
    }
    let raw_url = match config.format {
        Format::Mailroom => deps
            .store
            .presign_get(&job.bucket, &job.key, config.presign_expiry)
            .await
            .ok(),
        Format::Postmark => None,
    };
    let raw_location = RawLocation {
        bucket: job.bucket.clone(),
        key: job.key.clone(),
        url_expires_at: raw_url.as_ref().map(|_| expires_at.clone()),
        url: raw_url,
    };
    let input = payload::Input {
        format: config.format,
        webhook_id: &job.webhook_id,
        message_id: &job.message_id,
        parsed: &parsed,
        ses: &job.ses,
        raw_location: &raw_location,
        attachments: &deliveries,
        raw_email: config.include_raw.then_some(&raw[..]),
    };
    let body = match payload::build(&input) {
        Ok(b) => b,
        Err(e) => return Attempt::Unreadable(format!("building the payload: {e}")),
    };
    drop(parsed);
    let timestamp = now_unix();
    let mut headers = signing::headers(config.secrets(), &job.webhook_id, timestamp, &body);
    headers.push(("content-type".into(), "application/json".into()));
    headers.push(("x-mailroom-attempt".into(), job.attempt.to_string()));
    if let Some(auth) = &config.authorization {
        headers.push(("authorization".into(), auth.clone()));
    }
    let req = WebhookRequest {
        url: config.url.clone(),
        headers,
        body: Bytes::from(body),
        timeout: config.timeout,
    };
    let result = deps.http.post(&req).await;
    Attempt::Sent(delivery::classify(&result, now_unix()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn env(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v = vec![
            (URL_VAR, "https://hooks.example.com/mail"),
            (SECRET_VAR, SECRET),
            (RETRY_QUEUE_VAR, "https://sqs/retry"),
            (DLQ_VAR, "https://sqs/dlq"),
            ("MAILROOM_RAW_BUCKET", "inbound"),
        ];
        for (k, val) in extra {
            v.retain(|(name, _)| name != k);
            v.push((k, val));
        }
        v
    }

    fn err(extra: &[(&'static str, &'static str)]) -> String {
        Config::from_env(env(extra).as_slice())
            .expect_err("config must be rejected")
            .to_string()
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::from_env(env(&[]).as_slice()).expect("config");
        assert_eq!(c.format, Format::Mailroom);
        assert_eq!(c.timeout, Duration::from_secs(15));
        assert_eq!(c.policy, RetryPolicy::default());
        assert_eq!(c.inline.inline_max_bytes, 5 * 1024 * 1024);
        assert_eq!(c.presign_expiry, Duration::from_secs(7 * 86400));
        assert_eq!(c.secrets().len(), 1);
        assert!(c.authorization.is_none());
        assert!(!c.per_recipient && !c.include_raw);
    }

    #[test]
    fn auth_schedule_and_rotation() {
        let c = Config::from_env(
            env(&[
                (BASIC_AUTH_VAR, "user:pa:ss"),
                (SCHEDULE_VAR, "0, 2s,1m"),
                (JITTER_VAR, "0"),
                (
                    SECRET_VAR,
                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,whsec_AAAAAAAAAAAAAAAAAAAAAA==",
                ),
                (FORMAT_VAR, "Postmark"),
            ])
            .as_slice(),
        )
        .expect("config");
        assert_eq!(c.authorization.as_deref(), Some("Basic dXNlcjpwYTpzcw=="));
        assert_eq!(c.policy.max_attempts(), 4);
        assert_eq!(c.secrets().len(), 2);
        assert_eq!(c.format, Format::Postmark);
        let c = Config::from_env(env(&[(BEARER_VAR, "tok")]).as_slice()).expect("config");
        assert_eq!(c.authorization.as_deref(), Some("Bearer tok"));
    }

    #[test]
    fn errors_name_the_variable_and_hide_secrets() {
        assert!(err(&[(URL_VAR, "ftp://x")]).contains(URL_VAR));
        assert!(err(&[(URL_VAR, "")]).contains(URL_VAR));
        let e = err(&[(SECRET_VAR, "whsec_%%%notbase64")]);
        assert!(e.contains(SECRET_VAR) && !e.contains("notbase64"), "{e}");
        assert!(err(&[(SECRET_VAR, "")]).contains(SECRET_ARN_VAR));
        assert!(
            err(&[(SECRET_VAR, ""), (SECRET_ARN_VAR, "arn:aws:s3:::b")]).contains(SECRET_ARN_VAR)
        );
        assert!(err(&[(SCHEDULE_VAR, "1m,soon")]).contains(SCHEDULE_VAR));
        assert!(err(&[(JITTER_VAR, "2")]).contains(JITTER_VAR));
        assert!(err(&[(FORMAT_VAR, "sendgrid")]).contains(FORMAT_VAR));
        assert!(err(&[(BASIC_AUTH_VAR, "nocolon")]).contains(BASIC_AUTH_VAR));
        assert!(err(&[(PRESIGN_EXPIRY_VAR, "999999")]).contains(PRESIGN_EXPIRY_VAR));
        assert!(err(&[(TIMEOUT_VAR, "0")]).contains(TIMEOUT_VAR));
        assert!(err(&[(DLQ_VAR, "")]).contains(DLQ_VAR));
        let arn = Config::from_env(
            env(&[
                (SECRET_VAR, ""),
                (
                    SECRET_ARN_VAR,
                    "arn:aws:secretsmanager:us-east-1:1:secret:hook",
                ),
            ])
            .as_slice(),
        )
        .expect("config");
        assert!(matches!(arn.secrets, Secrets::Arn(_)));
        assert!(arn.secrets().is_empty());
    }

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
        let mut c =
            Config::from_env(env(&[("MAILROOM_RAW_PREFIX", "raw/")]).as_slice()).expect("config");
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
