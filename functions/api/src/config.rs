//! The api function's configuration, read once at cold start (the table in docs/webhooks.md).

use mailroom::Limits;
use mailroom::config::{self, ConfigError, Env};
use mailroom::layout::{self, Locations};
use mailroom::policy::{MAILBOXES_VAR, Mailboxes};
use mailroom::webhook::delivery::RetryPolicy;
use mailroom::webhook::payload::{self, Format};
use mailroom::webhook::signing::Secret;
use std::time::Duration;

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
    /// What a job may spend on AWS calls besides its webhook POST ([`crate::JOB_AWS_BUDGET`]).
    pub aws_budget: Duration,
    /// `MAILROOM_MAILBOXES`, the bounce function's list: recipients not on it were bounced (or,
    /// as possible backscatter, dropped) by the gate and are never delivered to. Unset: every
    /// recipient SES matched.
    pub mailboxes: Option<Mailboxes>,
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
        if let Some(warning) = mailroom::webhook::http::plaintext_warning(&url) {
            tracing::warn!(variable = URL_VAR, "{warning}");
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
                if mailroom::aws::secrets::SecretService::of(&arn).is_none() {
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
            aws_budget: crate::JOB_AWS_BUDGET,
            mailboxes: mailboxes(env)?,
        })
    }

    /// The longest one job may run: its webhook timeout plus its AWS calls. A batch starts a job
    /// only while this (and [`crate::FINISH_MARGIN`]) still fits before the deadline, so the
    /// function timeout must be at least `batch size × job_budget + FINISH_MARGIN`.
    pub fn job_budget(&self) -> Duration {
        self.timeout.saturating_add(self.aws_budget)
    }

    /// The loaded secrets; empty while an ARN is unresolved (sending then fails loudly).
    pub fn secrets(&self) -> &[Secret] {
        match &self.secrets {
            Secrets::Loaded(s) => s,
            Secrets::Arn(_) => &[],
        }
    }
}

/// `MAILROOM_MAILBOXES`, when set.
pub fn mailboxes(env: &(impl Env + ?Sized)) -> Result<Option<Mailboxes>, ConfigError> {
    Mailboxes::from_env(env)
}

/// Every `MAILROOM_*` variable [`Config::from_env`] may read: the template may set no other on
/// this function.
pub fn env_vars() -> Vec<&'static str> {
    let own: &[&str] = &[
        URL_VAR,
        FORMAT_VAR,
        SECRET_VAR,
        SECRET_ARN_VAR,
        BEARER_VAR,
        BASIC_AUTH_VAR,
        TIMEOUT_VAR,
        RETRY_QUEUE_VAR,
        DLQ_VAR,
        INLINE_MAX_VAR,
        INLINE_TOTAL_VAR,
        PRESIGN_EXPIRY_VAR,
        INCLUDE_RAW_VAR,
        PER_RECIPIENT_VAR,
        SCHEDULE_VAR,
        JITTER_VAR,
        MAX_RETRY_AFTER_VAR,
        MAX_MESSAGE_BYTES_VAR,
        MAILBOXES_VAR,
    ];
    [layout::ENV_VARS, own].concat()
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
                    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw,whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
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
        for other_partition in [
            "arn:aws-cn:secretsmanager:cn-north-1:1:secret:hook",
            "arn:aws-us-gov:ssm:us-gov-west-1:1:parameter/hook",
        ] {
            let c = Config::from_env(
                env(&[(SECRET_VAR, ""), (SECRET_ARN_VAR, other_partition)]).as_slice(),
            )
            .expect(other_partition);
            assert!(matches!(c.secrets, Secrets::Arn(_)), "{other_partition}");
        }
    }
}
