//! One delivery attempt and what follows it: the next attempt queued on the retry schedule, or a
//! dead letter. Every function here leaves the raw mail where it is.

use crate::{ApiError, Config, Deps, Step, now_unix, rfc3339};
use bytes::Bytes;
use mailroom::Email;
use mailroom::envelope;
use mailroom::layout;
use mailroom::ports::queue::MAX_DELAY;
use mailroom::ports::{ErrorKind, PortError, WebhookRequest};
use mailroom::served;
use mailroom::webhook::delivery::{self, DeadLetter, Job, Outcome};
use mailroom::webhook::payload::{self, Delivery, Format, RawLocation};
use mailroom::webhook::signing;
use std::time::Duration;

pub(crate) async fn send_dead_letter(
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

pub(crate) async fn enqueue(
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
    if let Err(detail) = trusted(&job, config) {
        tracing::error!(webhook_id = %job.webhook_id, bucket = %job.bucket, key = %job.key, %detail,
            "job names raw mail this function does not deliver: dead-lettering it unattempted");
        return dead_letter(job, "invalid-job", detail, config, deps).await;
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
                    let secs = delay
                        .as_secs()
                        .saturating_add(u64::from(delay.subsec_nanos() > 0));
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

/// A job from the queue is only as trustworthy as whoever could send to the queue: it may name
/// only the raw mail of its own message id, where this function's configuration says raw mail
/// is, so the role's read access (and the presigned links it hands out) never reach other keys.
fn trusted(job: &Job, config: &Config) -> Result<(), String> {
    let loc = &config.locations;
    if !layout::is_plain_message_id(&job.message_id) {
        return Err(format!(
            "messageId {:?} is not a plain SES message id",
            job.message_id
        ));
    }
    if job.bucket != loc.raw_bucket || job.key != loc.raw_key(&job.message_id) {
        return Err(format!(
            "s3://{}/{} is not where raw mail {} is (s3://{}/{})",
            job.bucket,
            job.key,
            job.message_id,
            loc.raw_bucket,
            loc.raw_key(&job.message_id)
        ));
    }
    Ok(())
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
    // Denied or malformed calls fail the same way on every attempt: dead-letter now, with the
    // reason, instead of retrying on the schedule for days.
    if !e.is_retryable() {
        return Attempt::Sent(Outcome::Permanent {
            reason: format!("{what}: {e}"),
            status: None,
        });
    }
    Attempt::Sent(Outcome::Retry {
        reason: format!("{what}: {e}"),
        status: None,
        retry_after: None,
    })
}

/// Reads the raw mail, builds and signs the body, POSTs it once and classifies the answer.
/// S3 trouble other than a missing object counts as a failed attempt: retried on schedule when
/// retrying can help, dead-lettered at once when it cannot (access denied).
pub async fn deliver_once(job: &Job, config: &Config, deps: Deps<'_>) -> Attempt {
    let object = match deps.store.get_object(&job.bucket, &job.key).await {
        Ok(object) => object,
        Err(e) if e.kind == ErrorKind::NotFound => {
            return Attempt::Unreadable(format!(
                "raw mail not found at s3://{}/{}: {e}",
                job.bucket, job.key
            ));
        }
        Err(e) => return infra_retry("reading the raw mail", &e),
    };
    // Decided by the object, not by whether a key is configured: mail stored before the key was
    // set is plain, and its own object is what the raw URL serves.
    let encrypted = envelope::is_encrypted(&object.metadata);
    let raw = object.body;
    let parsed = match Email::parse(&raw, &config.limits) {
        Ok(p) => p,
        Err(e) => return Attempt::Unreadable(format!("raw mail does not parse: {e}")),
    };
    let folder = config
        .locations
        .message(&layout::date_of(&job.ses.timestamp), &job.message_id);
    // A presigned GET of SES's encrypted object would hand the consumer ciphertext: the URL
    // names a decrypted copy in the message's folder instead, written once (SSE-KMS under the
    // same key, like everything else mailroom writes).
    let raw_url_target = match config.format {
        Format::Mailroom if encrypted => {
            let key = folder.raw_copy();
            if let Err(e) = deps
                .store
                .put_if_absent(&folder.bucket, &key, raw.clone(), &served::raw_copy_meta())
                .await
            {
                return infra_retry("writing the decrypted copy of the raw mail", &e);
            }
            Some((folder.bucket.clone(), key))
        }
        Format::Mailroom => Some((job.bucket.clone(), job.key.clone())),
        Format::Postmark => None,
    };
    // Only Postmark's RawEmail needs the raw bytes again: otherwise they go now, before the
    // body is built beside the parsed message.
    let raw = if config.include_raw {
        raw
    } else {
        drop(raw);
        bytes::Bytes::new()
    };
    let now = now_unix();
    // Signed for as long as the signing credentials last, and never promised for longer.
    let lifetime = deps.store.presign_lifetime(config.presign_expiry).await;
    let expires_at =
        rfc3339(now.saturating_add(i64::try_from(lifetime.as_secs()).unwrap_or(i64::MAX)));
    let plan = payload::plan_attachments(&parsed, &config.inline);
    let mut deliveries = Vec::with_capacity(plan.len());
    for (att, inline) in parsed.email.attachments.iter().zip(&plan) {
        if *inline {
            deliveries.push(Delivery::Inline);
            continue;
        }
        // The same key and headers the store function uses, so a stored message is not copied
        // twice and whichever of the two writes first leaves the same object.
        let key = folder.attachment_of(att);
        let bytes = Bytes::copy_from_slice(parsed.contents.get(att.index).map_or(&[][..], |c| c));
        let meta = served::attachment_meta(att);
        if let Err(e) = deps
            .store
            .put_if_absent(&folder.bucket, &key, bytes, &meta)
            .await
        {
            return infra_retry("uploading a large attachment", &e);
        }
        match deps.store.presign_get(&folder.bucket, &key, lifetime).await {
            Ok(url) => deliveries.push(Delivery::Url {
                url,
                expires_at: expires_at.clone(),
            }),
            Err(e) => return infra_retry("presigning a large attachment", &e),
        }
    }
    let raw_url = match &raw_url_target {
        Some((bucket, key)) => deps.store.presign_get(bucket, key, lifetime).await.ok(),
        None => None,
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
