//! The fanout function (SES Lambda action, `Event` invocation): publishes a compact summary of
//! each message to SNS, with message attributes subscribers filter on (see
//! [`summary`] for the summary and the attributes).
//!
//! Handler: `handle(&SesEvent, &Config, &dyn ObjectStore, &dyn Publisher) -> Result<Report, FanoutError>`.
//!
//! It reads and parses the raw message itself rather than waiting for the store function (both
//! run as `Event` actions of the same rule, in no guaranteed order); the summary's S3 pointers
//! name the keys store writes. Bodies travel inline only while the publication stays under
//! SNS's 256 KB limit. The SES messageId is the dedupe key: it is in every summary, and is the
//! `MessageDeduplicationId` on FIFO topics (a Lambda retry then publishes nothing new).
//!
//! Failures: throttling, 5xx and timeouts return [`FanoutError`] so Lambda retries. A setup
//! notification, a bad record or a missing raw object are permanent: logged once with the raw
//! location and reported with `Ok`. A message that does not parse is still announced, from
//! SES's headers, with `parseError` set.
//!
//! # Layout
//! - this file: [`Config`], [`env_vars`], [`handle`] and [`fanout_record`] (read, parse, publish);
//! - [`summary`]: the pure part, the summary, its attributes and the SNS size rules.

pub mod summary;

use crate::summary::{Input, TooLarge};
use mailroom::config::{self, ConfigError, Env};
use mailroom::diagnostic::FunctionError;
use mailroom::layout::{self, Locations};
use mailroom::policy::Mailboxes;
use mailroom::ports::{ErrorKind, ObjectStore, PortError, Publisher};
use mailroom::{Email, Limits, SesEvent, SesRecord};
use serde::Serialize;

pub const TOPIC_ARN_VAR: &str = "MAILROOM_TOPIC_ARN";
pub const GROUP_ID_VAR: &str = "MAILROOM_FANOUT_GROUP_ID";
pub const MAX_MESSAGE_BYTES_VAR: &str = "MAILROOM_MAX_MESSAGE_BYTES";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub locations: Locations,
    pub topic_arn: String,
    /// FIFO topics: a fixed `MessageGroupId` (one ordered stream); default is per recipient domain.
    pub group_id: Option<String>,
    pub limits: Limits,
    /// The recipients that exist (`MAILROOM_MAILBOXES`): the summary names no other, because
    /// the gate bounced them.
    pub mailboxes: Option<mailroom::policy::Mailboxes>,
}

impl Config {
    /// [`Locations::from_env`], `MAILROOM_TOPIC_ARN` (required), `MAILROOM_FANOUT_GROUP_ID`,
    /// `MAILROOM_MAX_MESSAGE_BYTES` (default 40 MB).
    pub fn from_env(env: &(impl Env + ?Sized)) -> Result<Config, ConfigError> {
        let locations = Locations::from_env(env)?;
        let topic_arn = config::required(env, TOPIC_ARN_VAR)?;
        if !topic_arn.starts_with("arn:") || topic_arn.split(':').count() < 6 {
            return Err(ConfigError::Invalid {
                name: TOPIC_ARN_VAR.to_string(),
                value: topic_arn,
                reason: "expected an SNS topic ARN (arn:aws:sns:region:account:name)".to_string(),
            });
        }
        let defaults = Limits::default();
        let max_size = config::parsed_or(env, MAX_MESSAGE_BYTES_VAR, defaults.max_size)?;
        Ok(Config {
            locations,
            topic_arn,
            group_id: config::optional(env, GROUP_ID_VAR),
            limits: Limits {
                max_size,
                ..defaults
            },
            mailboxes: mailroom::policy::Mailboxes::from_env(env)?,
        })
    }
}

/// Every `MAILROOM_*` variable [`Config::from_env`] may read: the template may set no other on
/// this function.
pub fn env_vars() -> Vec<&'static str> {
    [
        layout::ENV_VARS,
        &[
            TOPIC_ARN_VAR,
            GROUP_ID_VAR,
            MAX_MESSAGE_BYTES_VAR,
            mailroom::policy::MAILBOXES_VAR,
        ],
    ]
    .concat()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Published {
        message_id: String,
        sns_message_id: String,
        /// The summary's `bodies`: `inline`, `partial`, `s3` or `none`.
        bodies: String,
        bytes: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        parse_error: Option<String>,
    },
    SetupNotification {
        message_id: String,
    },
    RawMissing {
        message_id: String,
        raw: String,
    },
    BadRecord {
        message_id: String,
        reason: String,
    },
    /// No recipient is on the mailbox list: the gate bounced them all, so nothing is published.
    NoMailbox {
        message_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
}

#[derive(Debug, thiserror::Error)]
pub enum FanoutError {
    #[error("reading raw message {raw}: {source}")]
    ReadRaw { raw: String, source: PortError },
    #[error("publishing to {topic}: {source} (the raw message stays at {raw})")]
    Publish {
        topic: String,
        raw: String,
        source: PortError,
    },
    #[error("{source} (the raw message stays at {raw})")]
    TooLarge { raw: String, source: TooLarge },
}

impl FunctionError for FanoutError {
    const FUNCTION: &'static str = "Fanout";

    fn is_retryable(&self) -> bool {
        match self {
            FanoutError::ReadRaw { source, .. } | FanoutError::Publish { source, .. } => {
                source.is_retryable()
            }
            FanoutError::TooLarge { .. } => false,
        }
    }

    fn variant(&self) -> &'static str {
        match self {
            FanoutError::ReadRaw { .. } => "ReadRaw",
            FanoutError::Publish { .. } => "Publish",
            FanoutError::TooLarge { .. } => "TooLarge",
        }
    }
}

mailroom::impl_diagnostic!(FanoutError);

/// Publishes one summary per record; the first failure stops and fails the invocation.
pub async fn handle(
    event: &SesEvent,
    config: &Config,
    store: &dyn ObjectStore,
    publisher: &dyn Publisher,
) -> Result<Report, FanoutError> {
    let mut outcomes = Vec::with_capacity(event.records.len());
    for record in &event.records {
        outcomes.push(fanout_record(record, config, store, publisher).await?);
    }
    Ok(Report { outcomes })
}

pub async fn fanout_record(
    record: &SesRecord,
    config: &Config,
    store: &dyn ObjectStore,
    publisher: &dyn Publisher,
) -> Result<Outcome, FanoutError> {
    let mail = &record.ses.mail;
    let id = mail.message_id.as_str();
    if mailroom::ses::is_setup_notification(id) {
        tracing::info!(
            message_id = id,
            "SES setup notification: nothing to publish"
        );
        return Ok(Outcome::SetupNotification {
            message_id: id.to_string(),
        });
    }
    if !layout::is_plain_message_id(id) {
        let reason = "messageId is empty or not a plain SES message id".to_string();
        tracing::error!(message_id = id, %reason, "bad record: nothing published");
        return Ok(Outcome::BadRecord {
            message_id: id.to_string(),
            reason,
        });
    }
    // Recipients the gate bounced ("does not exist") are not announced as having received it.
    let all = &record.ses.receipt.recipients;
    let existing = Mailboxes::existing(config.mailboxes.as_ref(), all);
    if existing.is_empty() && !all.is_empty() {
        tracing::info!(
            message_id = id,
            "no recipient is on the mailbox list (the gate bounced them): nothing to publish"
        );
        return Ok(Outcome::NoMailbox {
            message_id: id.to_string(),
        });
    }
    let filtered;
    let ses = if existing.len() == all.len() {
        &record.ses
    } else {
        let mut m = record.ses.clone();
        m.receipt.recipients = existing.into_iter().cloned().collect();
        filtered = m;
        &filtered
    };
    let mail = &ses.mail;
    let loc = &config.locations;
    let raw_url = loc.raw_url(id);
    let raw = match store.get(&loc.raw_bucket, &loc.raw_key(id)).await {
        Ok(raw) => raw,
        Err(e) if e.kind == ErrorKind::NotFound => {
            tracing::error!(message_id = id, raw = %raw_url, error = %e,
                "raw message not found: nothing published; check MAILROOM_RAW_BUCKET/MAILROOM_RAW_PREFIX");
            return Ok(Outcome::RawMissing {
                message_id: id.to_string(),
                raw: raw_url,
            });
        }
        Err(source) => {
            return Err(FanoutError::ReadRaw {
                raw: raw_url,
                source,
            });
        }
    };
    let (email, parse_error): (Option<Email>, Option<String>) =
        match Email::parse(&raw, &config.limits) {
            Ok(parsed) => (Some(parsed.email.with_ses(ses)), None),
            Err(e) => {
                tracing::warn!(message_id = id, raw = %raw_url, error = %e,
                    "message could not be parsed: publishing a summary from SES's headers");
                (None, Some(e.to_string()))
            }
        };
    drop(raw);

    let input = Input {
        mail,
        receipt: &ses.receipt,
        email: email.as_ref(),
        parse_error: parse_error.as_deref(),
        locations: loc,
        topic_arn: &config.topic_arn,
        group_id: config.group_id.as_deref(),
    };
    let built = summary::publication(&input).map_err(|source| {
        tracing::error!(message_id = id, raw = %raw_url, error = %source, "summary too large for SNS");
        FanoutError::TooLarge {
            raw: raw_url.clone(),
            source,
        }
    })?;
    let (publication, bodies) = (built.publication, built.bodies.to_string());
    let bytes = summary::publication_size(&publication);
    let sns_message_id =
        publisher
            .publish(&publication)
            .await
            .map_err(|source| FanoutError::Publish {
                topic: config.topic_arn.clone(),
                raw: raw_url.clone(),
                source,
            })?;
    tracing::info!(message_id = id, sns_message_id = %sns_message_id, topic = %config.topic_arn,
        bodies = %bodies, bytes, "published");
    Ok(Outcome::Published {
        message_id: id.to_string(),
        sns_message_id,
        bodies,
        bytes,
        parse_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_bad_variables() {
        let c = Config::from_env(&[
            ("MAILROOM_RAW_BUCKET", "mail"),
            (
                "MAILROOM_TOPIC_ARN",
                "arn:aws:sns:us-east-1:123456789012:mail.fifo",
            ),
            ("MAILROOM_FANOUT_GROUP_ID", "inbox"),
        ])
        .expect("config");
        assert_eq!(c.group_id.as_deref(), Some("inbox"));
        let e = Config::from_env(&[("MAILROOM_RAW_BUCKET", "mail")]).expect_err("no topic");
        assert!(e.to_string().contains("MAILROOM_TOPIC_ARN"), "{e}");
        let e = Config::from_env(&[
            ("MAILROOM_RAW_BUCKET", "mail"),
            ("MAILROOM_TOPIC_ARN", "mail-topic"),
        ])
        .expect_err("not an ARN");
        assert!(e.to_string().contains("MAILROOM_TOPIC_ARN"), "{e}");
    }
}
