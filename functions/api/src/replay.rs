//! Re-driving dead-lettered deliveries (`mailroom replay`): each dead letter's job goes back to the
//! retry queue with a fresh schedule (or is attempted right away), and leaves the DLQ only once
//! that worked. Letters that are not jobs, and letters this run itself dead-lettered again, stay.
//!
//! Besides the api function's own [`DeadLetter`]s, the DLQ receives bare [`Job`]s: the retry
//! queue's redrive policy moves a job there unchanged once SQS handed it out `maxReceiveCount`
//! times without a success (the function crashed or timed out on it each time).
//!
//! The DLQ may also hold Lambda's own on-failure records for SES events the function could not
//! even queue (`{"requestContext":…,"requestPayload":<the SES event>}`, when the function's async
//! on-failure destination is the DLQ). Given [`Options::locations`], those become jobs too, but
//! only the api function's: a queue shared with store and fanout also holds theirs, which are
//! not webhook deliveries and stay in the queue (skipped, never deleted). Another function's
//! record is run again only through a [`Reinvoke`] given for it (the CLI gives one for forward,
//! whose markers make a second run send only what the first did not), and leaves the queue only
//! when that run succeeded.

use crate::{ApiError, Config, Deps, Step, jobs_at, now_unix, process};
use mailroom::SesEvent;
use mailroom::layout::Locations;
use mailroom::policy::Mailboxes;
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
    /// Only these recipients exist (the function's `MAILROOM_MAILBOXES`); `None`: all.
    pub mailboxes: Option<Mailboxes>,
}

/// Lambda's async on-failure record (destination or DLQ), as far as replay needs it.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct OnFailure {
    #[serde(default)]
    request_context: RequestContext,
    request_payload: SesEvent,
    #[serde(default)]
    response_payload: Option<serde_json::Value>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestContext {
    #[serde(default)]
    function_arn: String,
}

/// Which function an on-failure record is from: the one that failed is the one to run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failed {
    Api,
    /// Another function on the shared invocation DLQ (store, fanout, forward): its event means
    /// nothing to the webhook, and replaying it as webhook jobs would send duplicates.
    Other(&'static str),
    Unknown,
}

/// Tells the function from the error type our functions report (`<Function>.<Retryable|
/// Permanent>.<What>`), else from the function's name (the template's logical ids).
fn failed_function(record: &OnFailure) -> Failed {
    let error_type = record
        .response_payload
        .as_ref()
        .and_then(|p| p.get("errorType"))
        .and_then(|t| t.as_str())
        .unwrap_or_default();
    let name = record
        .request_context
        .function_arn
        .rsplit(":function:")
        .next()
        .unwrap_or_default()
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    for (prefix, what) in [
        ("Store.", "store"),
        ("Fanout.", "fanout"),
        ("Forward.", "forward"),
    ] {
        if error_type.starts_with(prefix) {
            return Failed::Other(what);
        }
    }
    if error_type.starts_with("Api.") {
        return Failed::Api;
    }
    for (logical, what) in [
        ("storefunction", "store"),
        ("fanoutfunction", "fanout"),
        ("forwardfunction", "forward"),
    ] {
        if name.contains(logical) {
            return Failed::Other(what);
        }
    }
    if name.contains("apifunction") {
        return Failed::Api;
    }
    Failed::Unknown
}

/// Runs another function's SES event again, as Lambda would have.
#[async_trait::async_trait]
pub trait Reinvoke: Send + Sync {
    /// The function it runs (`forward`), as the on-failure record names it (its `errorType` prefix or logical id).
    fn function(&self) -> &'static str;
    /// What the run did, or why it failed.
    async fn reinvoke(&self, event: &SesEvent) -> Result<String, String>;
}

/// The function and SES event of another function's Lambda on-failure record.
fn other_function_event(body: &str) -> Option<(&'static str, SesEvent)> {
    let failure: OnFailure = serde_json::from_str(body).ok()?;
    match failed_function(&failure) {
        Failed::Other(what) => Some((what, failure.request_payload)),
        Failed::Api | Failed::Unknown => None,
    }
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
    // The retry queue's redrive policy moves a job SQS handed out `maxReceiveCount` times here
    // as it was: a bare job.
    if let Ok(job) = serde_json::from_str::<Job>(body) {
        let detail = format!(
            "redriven from the retry queue after attempt {} kept failing the function",
            job.attempt
        );
        return Ok(("redriven".into(), detail, vec![job]));
    }
    let failure: OnFailure = serde_json::from_str(body)
        .map_err(|e| format!("neither a dead letter, a job nor a Lambda on-failure record: {e}"))?;
    match failed_function(&failure) {
        Failed::Api => {}
        Failed::Other(what) => {
            return Err(format!(
                "a Lambda on-failure record of the {what} function ({}): not a webhook delivery; \
                 re-invoke that function with the record's requestPayload (left in the queue)",
                failure.request_context.function_arn
            ));
        }
        Failed::Unknown => {
            return Err(format!(
                "a Lambda on-failure record of an unknown function ({:?}): left in the queue",
                failure.request_context.function_arn
            ));
        }
    }
    let locations = opts.locations.as_ref().ok_or(
        "a Lambda on-failure record: set MAILROOM_RAW_BUCKET/MAILROOM_RAW_PREFIX to replay it",
    )?;
    let now = now_unix();
    let jobs: Vec<Job> = failure
        .request_payload
        .records
        .iter()
        .filter(|r| mailroom::layout::is_plain_message_id(&r.ses.mail.message_id))
        .flat_map(|r| {
            jobs_at(
                r,
                locations,
                opts.per_recipient,
                opts.mailboxes.as_ref(),
                now,
            )
        })
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
    /// `requeued`, `would-requeue`, `delivered`, `scheduled`, `dead-lettered`, `skipped`, and
    /// for another function's event `reinvoked` or `would-reinvoke`.
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
    replay_with(queue, opts, direct, &[]).await
}

/// [`replay`], running other functions' on-failure records through `reinvokers`.
pub async fn replay_with(
    queue: &dyn Queue,
    opts: &Options,
    direct: Option<(&Config, Deps<'_>)>,
    reinvokers: &[&dyn Reinvoke],
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
            if let Some((what, event)) = other_function_event(&msg.body)
                && let Some(r) = reinvokers.iter().find(|r| r.function() == what)
            {
                let (action, detail) = if opts.dry_run {
                    ("would-reinvoke", format!("the {what} function's SES event"))
                } else {
                    match r.reinvoke(&event).await {
                        Ok(done) => ("reinvoked", done),
                        Err(e) => (
                            "skipped",
                            format!(
                                "running the {what} function again failed: {e} (left in the queue)"
                            ),
                        ),
                    }
                };
                if action == "reinvoked" {
                    queue.delete(&opts.dlq_url, &msg.receipt_handle).await?;
                }
                items.push(Item {
                    webhook_id: None,
                    reason: "lambda-on-failure".into(),
                    action: action.into(),
                    detail,
                });
                continue;
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
                        Step::Deferred { .. } | Step::Postponed { .. } | Step::Skipped { .. } => {
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
