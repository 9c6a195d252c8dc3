//! The store function (SES Lambda action, `Event` invocation): reads the raw message the rule's
//! S3 action wrote, parses it once, and writes a browsable layout beside it (see
//! [`mailroom::layout`]): `message.json`, `body.txt`, `body.html` and each attachment with its
//! own `Content-Type` and `Content-Disposition`, made safe to serve by [`mailroom::served`].
//!
//! Handler: `handle(&SesEvent, &Config, &dyn ObjectStore) -> Result<Report, StoreError>`.
//!
//! Idempotent per SES messageId: every object is written with a conditional put (a retried
//! invocation writes nothing twice) and `message.json` is written last, so its presence means the
//! layout is complete; a retry after a partial failure fills in only what is missing.
//!
//! Failures: throttling, 5xx and timeouts return [`StoreError`] so Lambda retries. A missing raw
//! object, a setup notification or a bad record are permanent: they are logged once (naming
//! where the raw mail is, which is never touched) and reported in the [`Report`] with `Ok`, so
//! Lambda does not retry them in vain. A message that is too large, not MIME or that the parser
//! fails on is a mail nobody can read from the layout: it returns the permanent
//! [`StoreError::Unparseable`], so it shows in the `Errors` alarm and, after Lambda's retries, in
//! the invocation DLQ, while the raw message stays in S3.
//!
//! # Layout
//! Everything is in this file: [`Config`] (with [`env_vars`]), [`handle`] and [`store_record`];
//! the keys come from [`mailroom::layout`], shared with fanout and api.

use bytes::Bytes;
use mailroom::config::{self, ConfigError, Env};
use mailroom::diagnostic::FunctionError;
use mailroom::email::Disposition;
use mailroom::layout::{self, Locations, MessageLayout};
use mailroom::ports::{ObjectMeta, ObjectStore, PortError, PutOutcome};
use mailroom::served::{attachment_meta, content_disposition};
use mailroom::{Email, Limits, SesEvent, SesRecord};
use serde::Serialize;

pub const MAX_MESSAGE_BYTES_VAR: &str = "MAILROOM_MAX_MESSAGE_BYTES";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub locations: Locations,
    pub limits: Limits,
}

impl Config {
    /// [`Locations::from_env`] plus `MAILROOM_MAX_MESSAGE_BYTES` (default 40 MB, SES's S3 limit).
    pub fn from_env(env: &(impl Env + ?Sized)) -> Result<Config, ConfigError> {
        let locations = Locations::from_env(env)?;
        let defaults = Limits::default();
        let max_size = config::parsed_or(env, MAX_MESSAGE_BYTES_VAR, defaults.max_size)?;
        Ok(Config {
            locations,
            limits: Limits {
                max_size,
                ..defaults
            },
        })
    }
}

/// Every `MAILROOM_*` variable [`Config::from_env`] may read: the template may set no other on
/// this function.
pub fn env_vars() -> Vec<&'static str> {
    [layout::ENV_VARS, &[MAX_MESSAGE_BYTES_VAR]].concat()
}

/// What happened to each record of the event (the invocation's result, and the log's subject).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// The layout is complete. `existing` counts objects an earlier invocation had written.
    Stored {
        message_id: String,
        bucket: String,
        prefix: String,
        created: usize,
        existing: usize,
    },
    /// SES's probe when a rule is created: nothing to store.
    SetupNotification { message_id: String },
    /// No raw object at the configured location: nothing stored.
    RawMissing { message_id: String, raw: String },
    /// The record cannot name a raw object (e.g. a message id that is not one).
    BadRecord { message_id: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("reading raw message {raw}: {source}")]
    ReadRaw { raw: String, source: PortError },
    #[error("writing s3://{bucket}/{key}: {source} (the raw message stays at {raw})")]
    Write {
        bucket: String,
        key: String,
        raw: String,
        source: PortError,
    },
    #[error("serializing message.json: {reason} (the raw message stays at {raw})")]
    Serialize { raw: String, reason: String },
    /// Too large, not MIME, or the parser failed on it: nothing can be stored, and a person must
    /// look at the raw message. Failing (rather than reporting `Ok`) is what makes that visible:
    /// the invocation counts in the function's `Errors` metric (alarmed), and once Lambda's async
    /// retries fail too the event lands in the invocation DLQ (alarmed) naming the message.
    #[error("message {message_id} cannot be stored: {reason} (the raw message stays at {raw})")]
    Unparseable {
        message_id: String,
        raw: String,
        reason: String,
    },
}

impl FunctionError for StoreError {
    const FUNCTION: &'static str = "Store";

    /// True for throttling, 5xx and timeouts: Lambda's retry is likely to succeed.
    fn is_retryable(&self) -> bool {
        match self {
            StoreError::ReadRaw { source, .. } | StoreError::Write { source, .. } => {
                source.is_retryable()
            }
            StoreError::Serialize { .. } | StoreError::Unparseable { .. } => false,
        }
    }

    fn variant(&self) -> &'static str {
        match self {
            StoreError::ReadRaw { .. } => "ReadRaw",
            StoreError::Write { .. } => "Write",
            StoreError::Serialize { .. } => "Serialize",
            StoreError::Unparseable { .. } => "Unparseable",
        }
    }
}

mailroom::impl_diagnostic!(StoreError);

/// Stores every record of the event; the first retryable failure stops and fails the invocation.
pub async fn handle(
    event: &SesEvent,
    config: &Config,
    store: &dyn ObjectStore,
) -> Result<Report, StoreError> {
    let mut outcomes = Vec::with_capacity(event.records.len());
    for record in &event.records {
        outcomes.push(store_record(record, config, store).await?);
    }
    Ok(Report { outcomes })
}

/// Stores one message.
pub async fn store_record(
    record: &SesRecord,
    config: &Config,
    store: &dyn ObjectStore,
) -> Result<Outcome, StoreError> {
    let mail = &record.ses.mail;
    let id = mail.message_id.as_str();
    if mailroom::ses::is_setup_notification(id) {
        tracing::info!(message_id = id, "SES setup notification: nothing to store");
        return Ok(Outcome::SetupNotification {
            message_id: id.to_string(),
        });
    }
    if !layout::is_plain_message_id(id) {
        let reason = "messageId is empty or not a plain SES message id".to_string();
        tracing::error!(message_id = id, %reason, "bad record: nothing stored");
        return Ok(Outcome::BadRecord {
            message_id: id.to_string(),
            reason,
        });
    }

    let loc = &config.locations;
    let raw_url = loc.raw_url(id);
    let raw = match loc.read_raw(store, id).await {
        Ok(Some(raw)) => raw,
        Ok(None) => {
            return Ok(Outcome::RawMissing {
                message_id: id.to_string(),
                raw: raw_url,
            });
        }
        Err(source) => {
            return Err(StoreError::ReadRaw {
                raw: raw_url,
                source,
            });
        }
    };

    let parsed = match Email::parse(&raw, &config.limits) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(message_id = id, raw = %raw_url, error = %e,
                "message could not be parsed: nothing stored, the raw message stays in S3; failing the invocation so it is counted, alarmed and dead-lettered");
            return Err(StoreError::Unparseable {
                message_id: id.to_string(),
                raw: raw_url,
                reason: e.to_string(),
            });
        }
    };
    // The model owns everything it needs: free the raw bytes before writing.
    drop(raw);
    let mailroom::Parsed {
        mut email,
        contents,
    } = parsed;
    email.apply_ses(&record.ses);

    let layout = loc.message(&layout::date_of(&mail.timestamp), id);
    // Serialized before the bodies are moved out into their own objects.
    let json = to_json_exact(&email).map_err(|e| StoreError::Serialize {
        raw: raw_url.clone(),
        reason: e.to_string(),
    })?;

    let mut w = Writer {
        store,
        layout: &layout,
        raw: &raw_url,
        created: 0,
        existing: 0,
    };
    // Taken by `Attachment::index` and moved into `Bytes`: each decoded part exists once.
    let mut contents: Vec<Option<Vec<u8>>> = contents.into_iter().map(Some).collect();
    for attachment in &email.attachments {
        let Some(bytes) = contents.get_mut(attachment.index).and_then(Option::take) else {
            tracing::warn!(
                message_id = id,
                index = attachment.index,
                "attachment without content"
            );
            continue;
        };
        w.put(
            layout.attachment_of(attachment),
            Bytes::from(bytes),
            attachment_meta(attachment),
        )
        .await?;
    }
    if let Some(text) = email.text.take() {
        let meta = ObjectMeta::new("text/plain; charset=utf-8").with_disposition("inline");
        w.put(layout.body_text(), Bytes::from(text), meta).await?;
    }
    if let Some(html) = email.html.take() {
        // Served as a download: mail HTML is untrusted and must not run on a bucket's origin.
        let meta = ObjectMeta::new("text/html; charset=utf-8")
            .with_disposition(content_disposition(Disposition::Attachment, "body.html"));
        w.put(layout.body_html(), Bytes::from(html), meta).await?;
    }
    // Last: its presence tells readers (and retries) the layout is complete.
    let meta = ObjectMeta::new("application/json");
    w.put(layout.message_json(), Bytes::from(json), meta)
        .await?;

    let (created, existing) = (w.created, w.existing);
    tracing::info!(message_id = id, bucket = %layout.bucket, prefix = %layout.prefix,
        created, existing, "stored");
    Ok(Outcome::Stored {
        message_id: id.to_string(),
        bucket: layout.bucket,
        prefix: layout.prefix,
        created,
        existing,
    })
}

/// Pretty JSON in a buffer of exactly its size. A growing `Vec` would double past the size of a
/// large body, costing tens of MB at the 40 MB limit; measuring first costs a second pass.
fn to_json_exact(email: &Email) -> Result<Vec<u8>, serde_json::Error> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer_pretty(&mut count, email)?;
    let mut json = Vec::with_capacity(count.0);
    serde_json::to_writer_pretty(&mut json, email)?;
    Ok(json)
}

struct Writer<'a> {
    store: &'a dyn ObjectStore,
    layout: &'a MessageLayout,
    raw: &'a str,
    created: usize,
    existing: usize,
}

impl Writer<'_> {
    async fn put(&mut self, key: String, body: Bytes, meta: ObjectMeta) -> Result<(), StoreError> {
        match self
            .store
            .put_if_absent(&self.layout.bucket, &key, body, &meta)
            .await
        {
            Ok(PutOutcome::Created) => self.created += 1,
            Ok(PutOutcome::AlreadyExists) => self.existing += 1,
            Err(source) => {
                return Err(StoreError::Write {
                    bucket: self.layout.bucket.clone(),
                    key,
                    raw: self.raw.to_string(),
                    source,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_env() {
        let c = Config::from_env(&[
            ("MAILROOM_RAW_BUCKET", "mail"),
            ("MAILROOM_RAW_PREFIX", "raw/"),
            ("MAILROOM_MAX_MESSAGE_BYTES", "1000"),
        ])
        .expect("config");
        assert_eq!(c.limits.max_size, 1000);
        assert_eq!(c.locations.store_prefix, "messages/");
        let e = Config::from_env(&[
            ("MAILROOM_RAW_BUCKET", "mail"),
            ("MAILROOM_MAX_MESSAGE_BYTES", "lots"),
        ])
        .expect_err("bad size");
        assert!(e.to_string().contains("MAILROOM_MAX_MESSAGE_BYTES"), "{e}");
    }
}
