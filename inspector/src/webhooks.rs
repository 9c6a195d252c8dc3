//! The webhook deliveries of one message, gathered for its page: every attempt the api function
//! made (first try, retries, redeliveries, kept by the emulator in
//! `<state>/webhook-attempts/<id>.jsonl`), the retry schedule its configuration sets, the retry
//! job waiting in its queue and the dead letter it ended in, if any.

use crate::record::Record;
use mailroom::webhook::delivery::{self, RetryPolicy};
use mailroom_emulator::functions::Retries;
use mailroom_emulator::local::LocalQueue;
use mailroom_emulator::sink::{Attempt, read_attempts};
use serde_json::Value;
use std::path::Path;

/// One webhook of one api action: what was tried, what waits, how it would go on.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub webhook_id: String,
    pub attempts: Vec<Attempt>,
    /// The api function's retry schedule, when the rule set is loaded (not in `inspect`).
    pub policy: Option<RetryPolicy>,
    /// Retry jobs waiting in the retry queue, oldest first.
    pub queued: Vec<Job>,
    /// Dead letters for this webhook in the dead-letter queue.
    pub dead: Vec<Job>,
}

/// A message in the local retry or dead-letter queue.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// The file, relative to the state dir.
    pub file: String,
    /// The attempt it will make (a retry job) or the attempts made (a dead letter).
    pub attempt: u32,
    /// When it becomes visible, Unix milliseconds (a retry job).
    pub due_ms: Option<u128>,
    /// Why the last attempt failed, or why it was dead-lettered.
    pub reason: String,
}

impl Job {
    /// `3 attempts`, for a dead letter.
    pub fn attempts_label(&self) -> String {
        match self.attempt {
            1 => "1 attempt".to_string(),
            n => format!("{n} attempts"),
        }
    }
}

/// The webhooks an api action delivered, named in its answer (`webhook_id`), each with its
/// attempts, schedule and queued jobs. `retries` is the function's configuration, when known.
pub fn of_action(action: &Value, state: &Path, retries: Option<&Retries>) -> Vec<Delivery> {
    let Some(answer) = action
        .get("summary")
        .and_then(Value::as_str)
        .and_then(|s| serde_json::from_str::<Value>(&s[s.find('[').unwrap_or(0)..]).ok())
    else {
        return Vec::new();
    };
    let mut ids: Vec<String> = answer
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|step| step.get("webhook_id").and_then(Value::as_str))
        .map(str::to_string)
        .collect();
    ids.dedup();
    let queue = LocalQueue::new(state);
    let retry_jobs: Vec<(Job, delivery::Job)> = retries
        .map(|r| queued_in(&queue, state, &r.queue_url))
        .unwrap_or_default();
    let dead_letters: Vec<(Job, delivery::DeadLetter)> = retries
        .map(|r| queued_in(&queue, state, &r.dlq_url))
        .unwrap_or_default();
    ids.into_iter()
        .map(|id| Delivery {
            attempts: read_attempts(state, &id),
            policy: retries.map(|r| r.policy.clone()),
            queued: retry_jobs
                .iter()
                .filter(|(_, j)| j.webhook_id == id)
                .map(|(file, j)| Job {
                    attempt: j.attempt,
                    reason: j.last_error.clone().unwrap_or_default(),
                    ..file.clone()
                })
                .collect(),
            dead: dead_letters
                .iter()
                .filter(|(_, d)| d.job.as_ref().is_some_and(|j| j.webhook_id == id))
                .map(|(file, d)| Job {
                    attempt: d.attempts,
                    due_ms: None,
                    reason: format!("{}: {}", d.reason, d.detail),
                    ..file.clone()
                })
                .collect(),
            webhook_id: id,
        })
        .collect()
}

/// The messages of one local queue whose body reads as `T`, each with its file (relative to
/// `state`) and when it is due; the rest of the [`Job`] is the caller's to fill.
fn queued_in<T: serde::de::DeserializeOwned>(
    queue: &LocalQueue,
    state: &Path,
    url: &str,
) -> Vec<(Job, T)> {
    queue
        .pending(url)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let body = serde_json::from_str(&p.message.body).ok()?;
            let file = p
                .file
                .strip_prefix(state)
                .ok()?
                .to_string_lossy()
                .into_owned();
            let job = Job {
                file,
                attempt: 0,
                due_ms: Some(p.visible_at_ms),
                reason: String::new(),
            };
            Some((job, body))
        })
        .collect()
}

/// The attempts of every api action in a record, by (rule, action) index.
pub fn of_record(
    record: &Record,
    state: &Path,
    retries: &dyn Fn(&str) -> Option<Retries>,
) -> Deliveries {
    let mut out = Vec::new();
    let rules = record
        .trace
        .as_ref()
        .and_then(|t| t.get("rules"))
        .and_then(Value::as_array);
    for (ri, rule) in rules.into_iter().flatten().enumerate() {
        let actions = rule.get("actions").and_then(Value::as_array);
        for (ai, action) in actions.into_iter().flatten().enumerate() {
            if action.get("function").and_then(Value::as_str) != Some("api") {
                continue;
            }
            let config = action
                .get("logicalId")
                .and_then(Value::as_str)
                .and_then(retries);
            let deliveries = of_action(action, state, config.as_ref());
            if !deliveries.is_empty() {
                out.push(((ri, ai), deliveries));
            }
        }
    }
    out
}

/// Where a message's webhooks stand, for the list: `failed` when one was dead-lettered,
/// `retrying` when one waits in the retry queue, `delivered` when each one's latest attempt was
/// answered 2xx; `None` when the attempts do not say.
pub fn status(deliveries: &Deliveries) -> Option<&'static str> {
    let all: Vec<&Delivery> = deliveries.iter().flat_map(|(_, d)| d).collect();
    if all.is_empty() {
        return None;
    }
    if all.iter().any(|d| !d.dead.is_empty()) {
        return Some("failed");
    }
    if all.iter().any(|d| !d.queued.is_empty()) {
        return Some("retrying");
    }
    let delivered = |d: &&Delivery| {
        d.attempts
            .last()
            .and_then(|a| a.status)
            .is_some_and(|s| (200..300).contains(&s))
    };
    all.iter().all(delivered).then_some("delivered")
}

/// The deliveries as the JSON API answers them: per webhook, the action it came from, its
/// attempts, the schedule (waits in seconds), what waits in the retry queue and what was
/// dead-lettered.
pub fn to_json(deliveries: &Deliveries) -> Value {
    let list: Vec<Value> = deliveries
        .iter()
        .flat_map(|((rule, action), ds)| {
            ds.iter().map(move |d| {
                serde_json::json!({
                    "webhookId": d.webhook_id,
                    "rule": rule,
                    "action": action,
                    "attempts": d.attempts,
                    "schedule": d.policy.as_ref().map(|p| serde_json::json!({
                        "attempts": p.max_attempts(),
                        "delaysSecs": p.delays.iter().map(|w| w.as_secs()).collect::<Vec<_>>(),
                        "jitter": p.jitter,
                        "maxRetryAfterSecs": p.max_retry_after.as_secs(),
                    })),
                    "queued": d.queued,
                    "deadLetters": d.dead,
                })
            })
        })
        .collect();
    Value::Array(list)
}

/// The webhook deliveries of a record's api actions, by (rule, action) index.
pub type Deliveries = Vec<((usize, usize), Vec<Delivery>)>;

/// `90 s`, `5 min`, `2 h 30 min`: a wait on the schedule.
pub fn human(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "at once".to_string(),
        60..=7199 if s.is_multiple_of(60) => format!("{} min", s / 60),
        1..=119 => format!("{s} s"),
        120..=7199 => format!("{} min {} s", s / 60, s % 60),
        _ if s.is_multiple_of(3600) => format!("{} h", s / 3600),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn waits_read_as_a_person_would_say_them() {
        let cases = [
            (0, "at once"),
            (45, "45 s"),
            (60, "1 min"),
            (90, "90 s"),
            (300, "5 min"),
            (150, "2 min 30 s"),
            (7200, "2 h"),
            (72_000, "20 h"),
            (9000, "2 h 30 min"),
        ];
        for (secs, text) in cases {
            assert_eq!(human(Duration::from_secs(secs)), text, "{secs} s");
        }
    }
}
