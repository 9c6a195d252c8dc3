//! The bounce function (SES Lambda action, usually `RequestResponse` in the gate rule): bounces
//! recipients that have no mailbox, and optionally mail the filter policy rejects, through the
//! classic SES `SendBounce` API with proper DSN fields ([`mod@plan`]).
//!
//! Handler: `handle(&SesEvent, &Config, &dyn Bouncer) -> Result<DispositionResponse,
//! BounceError>`; [`bounce_record`] does one record and reports what it did.
//!
//! Dispositions:
//! - every recipient known: `CONTINUE`, no bounce;
//! - some unknown: bounce those, `CONTINUE` (the known ones must still get the mail from the
//!   rule set's later actions);
//! - all unknown: bounce them, then `STOP_RULE_SET` (nothing is left to store or deliver).
//!
//! With `Event` invocation SES ignores the answer, but the bounce is sent just the same.
//!
//! Backscatter guard ([`plan::backscatter_guard`]): a null or mailer-daemon sender,
//! auto-submitted or bulk mail, a delivery report, truncated headers, or an SPF/DMARC/spam/virus
//! `FAIL` is never bounced; the unknown recipients are dropped with the reason logged.
//!
//! Failures: throttling, 5xx and timeouts from SES return [`BounceError::Send`] so the invocation
//! is retried (SendBounce accepts mail up to 24 h old). A permanent failure (`MessageRejected`, a
//! bad request) is logged once and answered with `CONTINUE`, so the mail goes on to the receive
//! rule and its raw copy lands in S3 (named in the log line when `MAILROOM_RAW_BUCKET` is set)
//! rather than vanishing.
//!
//! One structured log line per message (`"bounce decision"`): message id, envelope sender,
//! invocation type, recipients, known and rejected recipients, outcome, disposition, reasons and
//! the bounce's SES message id.
//!
//! # Layout
//! - this file: [`Config`], [`env_vars`], [`handle`] and [`bounce_record`] (send, log, answer);
//! - [`mod@plan`]: the pure part, which recipients to bounce, the backscatter guard and the
//!   `SendBounce` request.
//!
//! # Configuration
//! | variable | values | default | meaning |
//! |---|---|---|---|
//! | `MAILROOM_MAILBOXES` | list of `user@domain`, `@domain` | required | recipients that exist; `user@domain` also takes `user+label@domain` |
//! | `MAILROOM_BOUNCE_SENDER` | address | required | `BounceSender` (From of the bounce); must be an SES-verified identity |
//! | `MAILROOM_BOUNCE_SENDER_ARN` | ARN | unset | `BounceSenderArn` for sending authorization |
//! | `MAILROOM_REPORTING_MTA` | e.g. `dns; mx.example.com` | `dns; inbound-smtp.<region>.amazonaws.com` | `MessageDsn.ReportingMta`; region from the function ARN, else `AWS_REGION` |
//! | `MAILROOM_BOUNCE_EXPLANATION` | text | SES's own | `Explanation` |
//! | `MAILROOM_BOUNCE_REJECTED` | `true` \| `false` | `false` | also bounce mail the filter policy (stop's variables) drops, as `ContentRejected` 5.7.1 |
//! | `MAILROOM_BOUNCE_DISPOSITION` | `stop_rule_set` \| `stop_rule` | `stop_rule_set` | answer when no recipient is left |
//! | `MAILROOM_RAW_BUCKET`, `MAILROOM_RAW_PREFIX` | bucket, prefix | unset | where the receive rule stores raw mail, for log lines |

pub mod plan;

use mailroom::config::{self, ConfigError, Env};
use mailroom::diagnostic::FunctionError;
use mailroom::ports::{Bouncer, PortError};
use mailroom::ses::{Disposition, DispositionResponse, raw_object_key};
use mailroom::{SesEvent, SesRecord};
use plan::{BouncePlan, BouncePolicy, plan};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub policy: BouncePolicy,
    /// `s3://bucket/prefix`: where later rules keep the raw mail, named when a bounce fails.
    pub raw: Option<(String, String)>,
}

impl Config {
    pub fn from_env(env: &(impl Env + ?Sized)) -> Result<Config, ConfigError> {
        Ok(Config {
            policy: BouncePolicy::from_env(env)?,
            raw: config::optional(env, "MAILROOM_RAW_BUCKET").map(|bucket| {
                (
                    bucket,
                    config::optional(env, "MAILROOM_RAW_PREFIX").unwrap_or_default(),
                )
            }),
        })
    }

    fn raw_url(&self, message_id: &str) -> String {
        match &self.raw {
            Some((bucket, prefix)) => {
                format!("s3://{bucket}/{}", raw_object_key(prefix, message_id))
            }
            None => "the receive rule's S3 action (MAILROOM_RAW_BUCKET unset)".to_string(),
        }
    }
}

/// Every `MAILROOM_*` variable [`Config::from_env`] may read: the template may set no other on
/// this function.
pub fn env_vars() -> Vec<&'static str> {
    [
        plan::ENV_VARS,
        mailroom::policy::ENV_VARS,
        &["MAILROOM_RAW_BUCKET", "MAILROOM_RAW_PREFIX"],
    ]
    .concat()
}

#[derive(Debug, thiserror::Error)]
pub enum BounceError {
    #[error("bad event: {0}")]
    BadEvent(String),
    #[error("SendBounce for {message_id} failed: {source}")]
    Send {
        message_id: String,
        source: PortError,
    },
}

impl FunctionError for BounceError {
    const FUNCTION: &'static str = "Bounce";

    fn is_retryable(&self) -> bool {
        match self {
            BounceError::BadEvent(_) => false,
            BounceError::Send { source, .. } => source.is_retryable(),
        }
    }

    fn variant(&self) -> &'static str {
        match self {
            BounceError::BadEvent(_) => "BadEvent",
            BounceError::Send { .. } => "Send",
        }
    }
}

mailroom::impl_diagnostic!(BounceError);

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to bounce.
    Delivered,
    /// SES accepted the bounce.
    Bounced { bounce_id: String },
    /// The guard refused to bounce; the rejected recipients are dropped silently.
    Suppressed { reason: String },
    /// SES refused the bounce for good; the mail continues so it is not lost.
    BounceFailed { error: String },
}

impl Outcome {
    fn as_str(&self) -> &'static str {
        match self {
            Outcome::Delivered => "deliver",
            Outcome::Bounced { .. } => "bounced",
            Outcome::Suppressed { .. } => "suppressed",
            Outcome::BounceFailed { .. } => "bounce_failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordReport {
    pub plan: BouncePlan,
    pub outcome: Outcome,
    pub disposition: Disposition,
}

/// Handles every record; the strongest disposition wins (SES sends one record per invocation).
pub async fn handle(
    event: &SesEvent,
    config: &Config,
    bouncer: &dyn Bouncer,
) -> Result<DispositionResponse, BounceError> {
    if event.records.is_empty() {
        return Err(BounceError::BadEvent("no Records in the event".to_string()));
    }
    let mut out = Disposition::Continue;
    for record in &event.records {
        let report = bounce_record(record, config, bouncer).await?;
        if rank(report.disposition) > rank(out) {
            out = report.disposition;
        }
    }
    Ok(out.into())
}

fn rank(d: Disposition) -> u8 {
    match d {
        Disposition::Continue => 0,
        Disposition::StopRule => 1,
        Disposition::StopRuleSet => 2,
    }
}

/// Plans, sends the bounce if any, and logs the decision.
pub async fn bounce_record(
    record: &SesRecord,
    config: &Config,
    bouncer: &dyn Bouncer,
) -> Result<RecordReport, BounceError> {
    let msg = &record.ses;
    let id = msg.mail.message_id.as_str();
    let plan = plan(msg, &config.policy);
    let (outcome, disposition) = match (&plan.request, &plan.suppressed) {
        (Some(req), _) => match bouncer.send_bounce(req).await {
            Ok(bounce_id) => (Outcome::Bounced { bounce_id }, plan.disposition),
            Err(source) if source.is_retryable() => {
                tracing::warn!(message_id = id, error = %source,
                    "SendBounce failed, retrying the invocation");
                return Err(BounceError::Send {
                    message_id: id.to_string(),
                    source,
                });
            }
            Err(e) => {
                tracing::error!(message_id = id, error = %e, raw = %config.raw_url(id),
                    "SendBounce refused permanently: not bounced, the mail continues to later rules");
                (
                    Outcome::BounceFailed {
                        error: e.to_string(),
                    },
                    Disposition::Continue,
                )
            }
        },
        (None, Some(reason)) => (
            Outcome::Suppressed {
                reason: reason.clone(),
            },
            plan.disposition,
        ),
        (None, None) => (Outcome::Delivered, plan.disposition),
    };
    let mut reasons = plan.reasons.clone();
    if let Outcome::Suppressed { reason } = &outcome {
        reasons.push(format!("not bounced: {reason}"));
    }
    tracing::info!(
        message_id = id,
        sender = %msg.mail.source,
        invocation_type = msg.receipt.action.invocation_type.as_deref().unwrap_or(""),
        recipients = %msg.receipt.recipients.join(","),
        known = %plan.known.join(","),
        rejected = %plan.rejected.iter().map(|(r, t)| format!("{r}:{}", t.as_str())).collect::<Vec<_>>().join(","),
        decision = outcome.as_str(),
        disposition = disposition.as_str(),
        reasons = %reasons.join("; "),
        bounce_id = match &outcome { Outcome::Bounced { bounce_id } => bounce_id.as_str(), _ => "" },
        "bounce decision"
    );
    Ok(RecordReport {
        plan,
        outcome,
        disposition,
    })
}
