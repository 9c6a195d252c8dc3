//! What happens after each delivery attempt, and the durable retry job.
//!
//! [`classify`] turns an HTTP response (or its absence) into an [`Outcome`]: 2xx delivered,
//! 410 gone, 408/429/5xx/timeouts/connection failures retried (honouring `Retry-After`), every
//! other status a permanent failure. [`RetryPolicy`] is the schedule: by default ten attempts
//! over about three days with exponential spacing and ±20 % jitter.
//!
//! SQS delays a message by at most 15 minutes, so a [`Job`] carries `notBefore`: a consumer
//! that receives a job early sends it again with `min(remaining, 15 min)` delay and acks the
//! copy it holds. A six-hour wait is then 24 short hops instead of one message held for hours,
//! which keeps every hop an ordinary send + delete (no visibility juggling, no receive counts
//! that a queue's redrive policy would mistake for poison).

use crate::ports::{TransportError, TransportErrorKind, WebhookResponse};
use std::time::Duration;

/// The verdict on one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: done.
    Delivered { status: u16 },
    /// 410 Gone: the endpoint asked us to stop; dead-letter without further attempts.
    Gone,
    /// Try again, not before `retry_after` if the endpoint said so.
    Retry {
        reason: String,
        status: Option<u16>,
        retry_after: Option<Duration>,
    },
    /// A status retrying will not change (400, 401, 403, 404, 413, 3xx …).
    Permanent { reason: String, status: Option<u16> },
}

impl Outcome {
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Delivered { status } => Some(*status),
            Outcome::Gone => Some(410),
            Outcome::Retry { status, .. } | Outcome::Permanent { status, .. } => *status,
        }
    }

    pub fn reason(&self) -> String {
        match self {
            Outcome::Delivered { status } => format!("delivered (HTTP {status})"),
            Outcome::Gone => "endpoint answered 410 Gone".to_string(),
            Outcome::Retry { reason, .. } | Outcome::Permanent { reason, .. } => reason.clone(),
        }
    }
}

/// Classifies one attempt. `now_unix` resolves an HTTP-date `Retry-After`.
pub fn classify(result: &Result<WebhookResponse, TransportError>, now_unix: i64) -> Outcome {
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            return match e.kind {
                TransportErrorKind::InvalidRequest => Outcome::Permanent {
                    reason: format!("request could not be built: {}", e.message),
                    status: None,
                },
                kind => Outcome::Retry {
                    reason: format!("{}: {}", transport_word(kind), e.message),
                    status: None,
                    retry_after: None,
                },
            };
        }
    };
    let status = resp.status;
    let excerpt = one_line(&resp.body_excerpt, 200);
    let with_body = |what: String| {
        if excerpt.is_empty() {
            what
        } else {
            format!("{what}: {excerpt}")
        }
    };
    match status {
        200..=299 => Outcome::Delivered { status },
        410 => Outcome::Gone,
        408 | 429 | 500..=599 => Outcome::Retry {
            reason: with_body(format!("HTTP {status}")),
            status: Some(status),
            retry_after: resp
                .retry_after
                .as_deref()
                .and_then(|v| parse_retry_after(v, now_unix)),
        },
        300..=399 => Outcome::Permanent {
            reason: format!(
                "HTTP {status}: redirects are not followed (a POST body does not survive them); \
                 configure the final URL"
            ),
            status: Some(status),
        },
        _ => Outcome::Permanent {
            reason: with_body(format!("HTTP {status}")),
            status: Some(status),
        },
    }
}

fn transport_word(kind: TransportErrorKind) -> &'static str {
    match kind {
        TransportErrorKind::Timeout => "timed out",
        TransportErrorKind::Connect => "could not connect",
        TransportErrorKind::Protocol => "connection failed mid-request",
        TransportErrorKind::InvalidRequest => "invalid request",
    }
}

fn one_line(s: &str, max_chars: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max_chars)
        .collect();
    flat.trim().to_string()
}

/// `Retry-After`: delta-seconds or an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn parse_retry_after(value: &str, now_unix: i64) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(v, format).ok()?.assume_utc();
    let secs = at.unix_timestamp().saturating_sub(now_unix).max(0);
    Some(Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

/// When to try again, and when to give up.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The wait before attempt 2, 3, …; its length + 1 is the total number of attempts.
    pub delays: Vec<Duration>,
    /// Each wait is scaled by a random factor in `[1 - jitter, 1 + jitter]`.
    pub jitter: f64,
    /// The longest `Retry-After` honoured; longer requests are cut to this.
    pub max_retry_after: Duration,
}

/// The default waits between attempts: 1 min, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 20 h
/// (about 3 days in all, ten attempts).
pub const DEFAULT_DELAYS_SECS: [u64; 9] = [
    60,
    5 * 60,
    30 * 60,
    2 * 3600,
    5 * 3600,
    10 * 3600,
    14 * 3600,
    20 * 3600,
    20 * 3600,
];

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            delays: DEFAULT_DELAYS_SECS
                .iter()
                .map(|s| Duration::from_secs(*s))
                .collect(),
            jitter: 0.2,
            max_retry_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays.len()).unwrap_or(u32::MAX - 1) + 1
    }

    /// The wait after failed attempt `attempt` (1-based), or `None` when it was the last.
    /// `retry_after` (from the endpoint) is honoured up to [`Self::max_retry_after`] and never
    /// shortens the schedule's own wait.
    pub fn next_delay(&self, attempt: u32, retry_after: Option<Duration>) -> Option<Duration> {
        let idx = usize::try_from(attempt).ok()?.checked_sub(1)?;
        let base = *self.delays.get(idx)?;
        let jitter = self.jitter.clamp(0.0, 1.0);
        let factor = if jitter > 0.0 {
            1.0 + rand::random_range(-jitter..=jitter)
        } else {
            1.0
        };
        // `mul_f64` panics past `Duration::MAX`; a schedule of `u64::MAX` seconds is a typo, not
        // a reason to crash every attempt.
        let jittered =
            Duration::try_from_secs_f64(base.as_secs_f64() * factor).unwrap_or(Duration::MAX);
        let asked = retry_after.map(|r| r.min(self.max_retry_after));
        Some(asked.map_or(jittered, |a| a.max(jittered)))
    }

    /// Parses `1m,5m,30m,2h` (units s, m, h, d; a bare number is seconds; `0` allowed).
    pub fn parse_delays(text: &str) -> Result<Vec<Duration>, String> {
        text.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(parse_duration)
            .collect()
    }
}

/// `90`, `90s`, `15m`, `2h`, `1d`, `250ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 5m, 2h or 1d"))?;
    let secs = |mult: u64| Duration::from_secs(n.saturating_mul(mult));
    match unit {
        "" | "s" => Ok(secs(1)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(secs(60)),
        "h" => Ok(secs(3600)),
        "d" => Ok(secs(86400)),
        _ => Err(format!(
            "{s:?}: unknown unit {unit:?} (use ms, s, m, h or d)"
        )),
    }
}

/// The SES context a payload needs that the raw MIME does not hold: envelope and verdicts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SesContext {
    /// `mail.timestamp`: when SES received the message.
    #[serde(default)]
    pub timestamp: String,
    /// Envelope MAIL FROM (empty for the null sender).
    #[serde(default)]
    pub mail_from: String,
    /// Envelope recipients this delivery is for (one when fanned out per recipient).
    #[serde(default)]
    pub recipients: Vec<String>,
    #[serde(default)]
    pub verdicts: crate::email::Verdicts,
}

/// One pending delivery, as kept in the retry queue and the dead-letter queue. It names where the
/// raw message is instead of carrying the payload: each attempt rebuilds the payload from S3,
/// so the job stays small and the raw mail stays the one source of truth.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Job format version.
    pub v: u32,
    /// SES `messageId`.
    pub message_id: String,
    /// The Standard Webhooks `webhook-id`: the messageId, plus `-<n>` when fanned out.
    pub webhook_id: String,
    pub bucket: String,
    pub key: String,
    /// Index into the SES event's `receipt.recipients` when fanned out per recipient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_index: Option<usize>,
    pub ses: SesContext,
    /// The attempt this job will make next (1-based).
    pub attempt: u32,
    /// Unix seconds of the first attempt.
    pub first_attempt_at: i64,
    /// Unix seconds before which the attempt must not run.
    #[serde(default)]
    pub not_before: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u16>,
}

pub const JOB_VERSION: u32 = 1;

/// What the dead-letter queue holds: the job as it stood after its last attempt, plus why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// `gone`, `permanent`, `exhausted`, `unreadable` (raw mail missing or unparseable) or
    /// `invalid-job` (a queue message that is not a job, see `body`, or a job naming raw mail
    /// somewhere this function does not deliver from).
    pub reason: String,
    pub detail: String,
    /// Attempts made.
    pub attempts: u32,
    /// Unix seconds.
    pub dead_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<Job>,
    /// The raw queue body when it was not a job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, retry_after: Option<&str>) -> Result<WebhookResponse, TransportError> {
        Ok(WebhookResponse {
            status,
            retry_after: retry_after.map(str::to_string),
            body_excerpt: "nope\nline".into(),
        })
    }

    #[test]
    fn statuses_classify() {
        assert_eq!(
            classify(&resp(204, None), 0),
            Outcome::Delivered { status: 204 }
        );
        assert_eq!(classify(&resp(410, None), 0), Outcome::Gone);
        for s in [408, 429, 500, 502, 503, 599] {
            assert!(
                matches!(classify(&resp(s, None), 0), Outcome::Retry { .. }),
                "{s}"
            );
        }
        for s in [301, 400, 401, 403, 404, 413, 422] {
            assert!(
                matches!(classify(&resp(s, None), 0), Outcome::Permanent { .. }),
                "{s}"
            );
        }
        let Outcome::Permanent { reason, .. } = classify(&resp(400, None), 0) else {
            panic!()
        };
        assert_eq!(reason, "HTTP 400: nope line");
    }

    #[test]
    fn transport_failures_retry_except_bad_requests() {
        let e = |k| Err(TransportError::new(k, "x"));
        assert!(matches!(
            classify(&e(TransportErrorKind::Timeout), 0),
            Outcome::Retry { status: None, .. }
        ));
        assert!(matches!(
            classify(&e(TransportErrorKind::Connect), 0),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(&e(TransportErrorKind::InvalidRequest), 0),
            Outcome::Permanent { .. }
        ));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let Outcome::Retry { retry_after, .. } = classify(&resp(429, Some("120")), 0) else {
            panic!()
        };
        assert_eq!(retry_after, Some(Duration::from_secs(120)));
        // 1994-11-06T08:49:37Z = 784111777
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111777 - 30),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", 784111777 + 30),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", 0), None);
    }

    #[test]
    fn default_schedule_lasts_about_three_days() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts(), 10);
        let total: u64 = DEFAULT_DELAYS_SECS.iter().sum();
        assert!(
            (2.8 * 86400.0..3.2 * 86400.0).contains(&(total as f64)),
            "{total}"
        );
        // Exponential-ish: never shrinking.
        assert!(DEFAULT_DELAYS_SECS.windows(2).all(|w| w[0] <= w[1]));
        for attempt in 1..=9 {
            let base = p.delays[attempt as usize - 1].as_secs_f64();
            let d = p
                .next_delay(attempt, None)
                .expect("test value")
                .as_secs_f64();
            assert!(
                d >= base * 0.79 && d <= base * 1.21,
                "{attempt}: {d} vs {base}"
            );
        }
        assert_eq!(p.next_delay(10, None), None);
        assert_eq!(p.next_delay(0, None), None);
    }

    #[test]
    fn retry_after_lengthens_but_is_capped() {
        let p = RetryPolicy {
            delays: vec![Duration::from_secs(60)],
            jitter: 0.0,
            max_retry_after: Duration::from_secs(3600),
        };
        assert_eq!(
            p.next_delay(1, Some(Duration::from_secs(5))),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            p.next_delay(1, Some(Duration::from_secs(600))),
            Some(Duration::from_secs(600))
        );
        assert_eq!(
            p.next_delay(1, Some(Duration::from_secs(999_999))),
            Some(Duration::from_secs(3600))
        );
    }

    #[test]
    fn extreme_schedules_do_not_panic() {
        let p = RetryPolicy {
            delays: vec![Duration::MAX, Duration::from_secs(u64::MAX)],
            jitter: 0.2,
            max_retry_after: Duration::MAX,
        };
        for attempt in 1..=2 {
            let d = p.next_delay(attempt, Some(Duration::MAX)).expect("a delay");
            assert!(d >= Duration::from_secs(u64::MAX / 2), "{d:?}");
        }
        let parsed = RetryPolicy::parse_delays("18446744073709551615d").expect("parses");
        assert_eq!(parsed, [Duration::from_secs(u64::MAX)]);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(
            RetryPolicy::parse_delays("0, 1s 5m,2h,1d,250ms").expect("test value"),
            vec![
                Duration::ZERO,
                Duration::from_secs(1),
                Duration::from_secs(300),
                Duration::from_secs(7200),
                Duration::from_secs(86400),
                Duration::from_millis(250)
            ]
        );
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn job_round_trips_in_camel_case() {
        let job = Job {
            v: JOB_VERSION,
            message_id: "m1".into(),
            webhook_id: "m1-0".into(),
            bucket: "b".into(),
            key: "raw/m1".into(),
            recipient_index: Some(0),
            ses: SesContext::default(),
            attempt: 2,
            first_attempt_at: 10,
            not_before: 70,
            last_error: Some("HTTP 500".into()),
            last_status: Some(500),
        };
        let json = serde_json::to_value(&job).expect("test value");
        assert_eq!(json["webhookId"], "m1-0");
        assert_eq!(json["notBefore"], 70);
        let back: Job = serde_json::from_value(json).expect("test value");
        assert_eq!(back, job);
    }
}
