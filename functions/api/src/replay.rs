//! Re-driving dead-lettered deliveries (`mailroom replay`): each dead letter's job goes back to the
//! retry queue with a fresh schedule (or is attempted right away), and leaves the DLQ only once
//! that worked. Letters that are not jobs, and letters this run itself dead-lettered again, stay.
//!
//! The DLQ may also hold Lambda's own on-failure records for SES events the function could not
//! even queue (`{"requestContext":…,"requestPayload":<the SES event>}`, when the function's async
//! on-failure destination is the DLQ). Given [`Options::locations`], those become jobs too.

use crate::{ApiError, Config, Deps, Step, jobs_at, now_unix, process};
use mailroom::SesEvent;
use mailroom::layout::Locations;
use mailroom::ports::{PortError, Queue};
use mailroom::webhook::delivery::{DeadLetter, Job};
use serde::Serialize;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub dlq_url: String,
    pub retry_queue_url: String,
    /// Report what would happen; change nothing. (Received letters stay invisible for the DLQ's
    /// visibility timeout, then reappear.)
    pub dry_run: bool,
    /// Stop after this many letters.
    pub max: Option<usize>,
    /// Where raw mail is, to turn Lambda on-failure records of SES events into jobs.
    pub locations: Option<Locations>,
    /// Fan those out per recipient, as the function is configured to.
    pub per_recipient: bool,
}

/// Lambda's async on-failure record (destination or DLQ), as far as replay needs it.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct OnFailure {
    request_payload: SesEvent,
}

/// The jobs a DLQ body holds: a dead letter's one job, or one per message of an SES event Lambda
/// gave up on. `Err` explains why there are none.
fn jobs_in(body: &str, opts: &Options) -> Result<(String, String, Vec<Job>), String> {
    if let Ok(letter) = serde_json::from_str::<DeadLetter>(body) {
        return match letter.job {
            Some(job) => Ok((letter.reason, letter.detail, vec![job])),
            None => Err(format!(
                "{} letter without a job (see its body)",
                letter.reason
            )),
        };
    }
    let failure: OnFailure = serde_json::from_str(body)
        .map_err(|e| format!("neither a dead letter nor a Lambda on-failure record: {e}"))?;
    let locations = opts.locations.as_ref().ok_or(
        "a Lambda on-failure record: set MAILROOM_RAW_BUCKET/MAILROOM_RAW_PREFIX to replay it",
    )?;
    let now = now_unix();
    let jobs: Vec<Job> = failure
        .request_payload
        .records
        .iter()
        .filter(|r| mailroom::layout::is_plain_message_id(&r.ses.mail.message_id))
        .flat_map(|r| jobs_at(r, locations, opts.per_recipient, now))
        .collect();
    if jobs.is_empty() {
        return Err("a Lambda on-failure record without a usable SES message".into());
    }
    Ok((
        "lambda-on-failure".into(),
        "the SES invocation failed".into(),
        jobs,
    ))
}

/// What happened to one dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub webhook_id: Option<String>,
    pub reason: String,
    /// `requeued`, `would-requeue`, `delivered`, `scheduled`, `dead-lettered`, `skipped`.
    pub action: String,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Queue(#[from] PortError),
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// The job as a fresh first attempt.
pub fn reset(mut job: Job, now: i64) -> Job {
    job.attempt = 1;
    job.first_attempt_at = now;
    job.not_before = 0;
    job.last_error = None;
    job.last_status = None;
    job
}

/// Replays the DLQ. With `direct` (a config and the function's ports) each job is attempted now
/// instead of being queued; a failure then follows the normal schedule.
pub async fn replay(
    queue: &dyn Queue,
    opts: &Options,
    direct: Option<(&Config, Deps<'_>)>,
) -> Result<Vec<Item>, ReplayError> {
    let max = opts.max.unwrap_or(usize::MAX);
    let mut items = Vec::new();
    // A letter seen twice means the DLQ's visibility timeout is shorter than this run: stop.
    let mut seen = std::collections::HashSet::new();
    let mut produced = std::collections::HashSet::new();
    'outer: while items.len() < max {
        let batch = queue
            .receive(&opts.dlq_url, 10, Duration::from_secs(1))
            .await?;
        if batch.is_empty() {
            break;
        }
        for msg in batch {
            if items.len() >= max || !seen.insert(msg.message_id.clone()) {
                break 'outer;
            }
            let (reason, letter_detail, jobs) = match jobs_in(&msg.body, opts) {
                Ok(found) => found,
                Err(detail) => {
                    items.push(Item {
                        webhook_id: None,
                        reason: "unknown".into(),
                        action: "skipped".into(),
                        detail,
                    });
                    continue;
                }
            };
            if let Some(job) = jobs.iter().find(|j| produced.contains(&j.webhook_id)) {
                // Dead-lettered again by this very run: replaying it now would loop.
                items.push(Item {
                    webhook_id: Some(job.webhook_id.clone()),
                    reason,
                    action: "skipped".into(),
                    detail: "dead-lettered again during this run".into(),
                });
                continue;
            }
            let mut done = Vec::with_capacity(jobs.len());
            for job in jobs {
                let webhook_id = Some(job.webhook_id.clone());
                let job = reset(job, now_unix());
                let (action, detail) = if opts.dry_run {
                    ("would-requeue".to_string(), letter_detail.clone())
                } else if let Some((config, deps)) = direct {
                    match process(job, config, deps).await? {
                        Step::Delivered { http_status, .. } => {
                            ("delivered".into(), format!("HTTP {http_status}"))
                        }
                        Step::Scheduled { reason, .. } => ("scheduled".into(), reason),
                        Step::DeadLettered {
                            detail, webhook_id, ..
                        } => {
                            produced.insert(webhook_id);
                            ("dead-lettered".into(), detail)
                        }
                        Step::Deferred { .. } | Step::Skipped { .. } => {
                            ("requeued".into(), String::new())
                        }
                    }
                } else {
                    let body = serde_json::to_string(&job).map_err(|e| ApiError::BadEvent {
                        kind: "job",
                        reason: e.to_string(),
                    })?;
                    queue
                        .send(&opts.retry_queue_url, &body, Duration::ZERO)
                        .await?;
                    ("requeued".to_string(), letter_detail.clone())
                };
                done.push(Item {
                    webhook_id,
                    reason: reason.clone(),
                    action,
                    detail,
                });
            }
            if !opts.dry_run {
                queue.delete(&opts.dlq_url, &msg.receipt_handle).await?;
            }
            items.extend(done);
        }
    }
    Ok(items)
}
