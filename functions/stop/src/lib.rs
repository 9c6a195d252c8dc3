//! The stop function: the receipt rule set's gate (SES Lambda action, `RequestResponse`).
//!
//! It applies the filter policy ([`mailroom::policy::FilterPolicy`]) to each message and returns
//! `{"disposition":"STOP_RULE_SET"}` (or `STOP_RULE`) for mail to drop and `CONTINUE` for mail to
//! keep. A rule in "tag" mode lets the mail continue and records its verdict in the decision's log
//! line; the gate cannot change the message, and a later function that needs the verdict gets the
//! same answer by evaluating the same policy on the same event.
//!
//! Handler: `handle(&SesEvent, &Config, Option<&dyn ObjectStore>) -> Result<DispositionResponse,
//! StopError>`. The object store is only used for the size rule (below); pass `None` otherwise.
//!
//! One structured log line per message (`"stop decision"`) carries the message id, envelope
//! sender, recipients, action, disposition, every matching rule with its reason, the allow entry
//! that applied, and what was known about the size.
//!
//! Verdicts SES reports as `GRAY`, `PROCESSING_FAILED`, `DISABLED`, unknown strings or not at all
//! never make the function fail: the policy decides what they mean.
//!
//! # Layout
//! Everything is in this file: [`Config`] (read once, [`env_vars`] lists what it reads),
//! [`handle`] and [`decide`]; the policy itself is [`mailroom::policy`], shared with bounce.
//!
//! # Size
//! The SES Lambda event carries neither the message nor its size. When `MAILROOM_MAX_SIZE` and
//! `MAILROOM_RAW_BUCKET` are both set, the gate rule is expected to start with an S3 action, and
//! the function reads `MAILROOM_RAW_PREFIX + messageId` to measure it. When the object cannot be
//! read the size rule is skipped (fail open: a gate that errors could hold all mail back) and the
//! log line says so. Without `MAILROOM_RAW_BUCKET` the size rule is inert.
//!
//! # Configuration
//! | variable | values | default | meaning |
//! |---|---|---|---|
//! | `MAILROOM_STOP_SPAM` | `drop` \| `tag` \| `off` | `drop` | spam verdict `FAIL` |
//! | `MAILROOM_STOP_VIRUS` | `drop` \| `tag` \| `off` | `drop` | virus verdict `FAIL` (never bypassed by the allow list) |
//! | `MAILROOM_STOP_VIRUS_UNVERIFIED` | `drop` \| `tag` \| `off` | `off` | virus verdict `GRAY`, `PROCESSING_FAILED` or unknown |
//! | `MAILROOM_STOP_SPF` | `drop` \| `tag` \| `off` | `tag` | SPF verdict `FAIL` |
//! | `MAILROOM_STOP_DKIM` | `drop` \| `tag` \| `off` | `off` | DKIM verdict `FAIL` |
//! | `MAILROOM_DMARC_REJECT` | `drop` \| `tag` \| `off` | `drop` | DMARC `FAIL`, sender policy `reject` |
//! | `MAILROOM_DMARC_QUARANTINE` | `drop` \| `tag` \| `off` | `tag` | DMARC `FAIL`, sender policy `quarantine` |
//! | `MAILROOM_DMARC_NONE` | `drop` \| `tag` \| `off` | `off` | DMARC `FAIL`, policy `none` or not reported |
//! | `MAILROOM_ALLOW_SENDERS` | list of `user@domain`, `domain`, `@domain`, `.domain` | empty | authenticated senders (SPF `PASS` envelope or DMARC `PASS` From) that bypass every rule but virus |
//! | `MAILROOM_DENY_SENDERS` | same syntax | empty | envelope sender or From address to refuse |
//! | `MAILROOM_STOP_DENIED` | `drop` \| `tag` \| `off` | `drop` | what a deny-list match does |
//! | `MAILROOM_MAX_SIZE` | bytes, or `512KB`, `10MB` | unset | maximum raw size (needs `MAILROOM_RAW_BUCKET`) |
//! | `MAILROOM_STOP_OVERSIZE` | `drop` \| `tag` \| `off` | `drop` | what an oversize message does |
//! | `MAILROOM_RAW_BUCKET`, `MAILROOM_RAW_PREFIX` | bucket, key prefix | unset, empty | where the gate rule's S3 action wrote the raw mail |
//! | `MAILROOM_STOP_DISPOSITION` | `stop_rule_set` \| `stop_rule` | `stop_rule_set` | what a drop returns |
//!
//! Lists are comma- or space-separated and case-insensitive; `user@domain` also matches
//! `user+label@domain`.

use mailroom::config::{self, ConfigError, Env};
use mailroom::diagnostic::FunctionError;
use mailroom::policy::{Decision, FilterPolicy, SizeCheck};
use mailroom::ports::ObjectStore;
use mailroom::ses::{Disposition, DispositionResponse, SesMessage, raw_object_key};
use mailroom::{SesEvent, SesRecord};

/// Where the gate rule's S3 action wrote the raw message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLocation {
    pub bucket: String,
    pub prefix: String,
}

impl RawLocation {
    pub fn key(&self, message_id: &str) -> String {
        raw_object_key(&self.prefix, message_id)
    }

    pub fn url(&self, message_id: &str) -> String {
        format!("s3://{}/{}", self.bucket, self.key(message_id))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub policy: FilterPolicy,
    /// Set when the size rule can read the raw message (see the crate docs).
    pub raw: Option<RawLocation>,
}

impl Config {
    pub fn from_env(env: &(impl Env + ?Sized)) -> Result<Config, ConfigError> {
        let policy = FilterPolicy::from_env(env)?;
        let raw = config::optional(env, "MAILROOM_RAW_BUCKET").map(|bucket| RawLocation {
            bucket,
            prefix: config::optional(env, "MAILROOM_RAW_PREFIX").unwrap_or_default(),
        });
        Ok(Config { policy, raw })
    }

    /// Whether the handler needs an object store: only the size rule reads the raw message.
    pub fn needs_store(&self) -> bool {
        self.raw.is_some() && self.policy.max_size.is_some()
    }
}

/// Every `MAILROOM_*` variable [`Config::from_env`] may read: the template may set no other on
/// this function.
pub fn env_vars() -> Vec<&'static str> {
    [
        mailroom::policy::ENV_VARS,
        &["MAILROOM_RAW_BUCKET", "MAILROOM_RAW_PREFIX"],
    ]
    .concat()
}

#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// Nothing to decide on: an invocation that is not an SES receipt event.
    #[error("bad event: {0}")]
    BadEvent(String),
}

impl FunctionError for StopError {
    const FUNCTION: &'static str = "Stop";

    /// No variant is retryable: everything that could be (reading the size) fails open instead.
    fn is_retryable(&self) -> bool {
        match self {
            StopError::BadEvent(_) => false,
        }
    }

    fn variant(&self) -> &'static str {
        match self {
            StopError::BadEvent(_) => "BadEvent",
        }
    }
}

mailroom::impl_diagnostic!(StopError);

/// Decides every record; the strongest disposition wins (SES sends one record per invocation).
pub async fn handle(
    event: &SesEvent,
    config: &Config,
    store: Option<&dyn ObjectStore>,
) -> Result<DispositionResponse, StopError> {
    if event.records.is_empty() {
        return Err(StopError::BadEvent("no Records in the event".to_string()));
    }
    let mut out = Disposition::Continue;
    for record in &event.records {
        let decision = decide(record, config, store).await;
        out = strongest(out, decision.disposition);
    }
    Ok(out.into())
}

/// Evaluates one record and writes its decision line.
pub async fn decide(
    record: &SesRecord,
    config: &Config,
    store: Option<&dyn ObjectStore>,
) -> Decision {
    let msg = &record.ses;
    let size = measure(msg, config, store).await;
    let decision = config.policy.evaluate_with_size(msg, size);
    log_decision(msg, &decision);
    decision
}

fn strongest(a: Disposition, b: Disposition) -> Disposition {
    let rank = |d: Disposition| match d {
        Disposition::Continue => 0,
        Disposition::StopRule => 1,
        Disposition::StopRuleSet => 2,
    };
    if rank(b) > rank(a) { b } else { a }
}

/// The raw message's size, when the size rule is configured and the object can be read.
async fn measure(
    msg: &SesMessage,
    config: &Config,
    store: Option<&dyn ObjectStore>,
) -> Option<u64> {
    config.policy.max_size?;
    let (raw, store) = (config.raw.as_ref()?, store?);
    let id = &msg.mail.message_id;
    match store.size(&raw.bucket, &raw.key(id)).await {
        Ok(size) => Some(size),
        Err(e) => {
            tracing::warn!(message_id = %id, raw = %raw.url(id), error = %e,
                "raw message unreadable: size rule skipped for this message");
            None
        }
    }
}

fn log_decision(msg: &SesMessage, d: &Decision) {
    let size = match d.size {
        SizeCheck::NotConfigured => "not_configured".to_string(),
        SizeCheck::Unknown => "unknown".to_string(),
        SizeCheck::Checked(n) => n.to_string(),
    };
    tracing::info!(
        message_id = %msg.mail.message_id,
        sender = %msg.mail.source,
        recipients = %msg.receipt.recipients.join(","),
        decision = d.action.as_str(),
        disposition = d.disposition.as_str(),
        reasons = %d.reasons_text(),
        rules = %d.reasons.iter().map(|r| r.rule.as_str()).collect::<Vec<_>>().join(","),
        allowed_by = d.allowed_by.as_deref().unwrap_or(""),
        size = %size,
        "stop decision"
    );
}
