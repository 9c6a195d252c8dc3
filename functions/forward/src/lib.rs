//! The forward function (SES Lambda action, `Event` invocation, after the receive rule's S3
//! action): sends each received message on to the outside inboxes its recipients forward to,
//! DMARC-safe, through SES API v2 `SendEmail` with raw content.
//!
//! Handler: `handle(&SesEvent, &Config, Deps) -> Result<Report, ForwardError>`;
//! [`forward_record`] does one record.
//!
//! For each record, in order:
//! 1. the [forward map](map) gives the destinations of the envelope recipients (none: nothing
//!    to do);
//! 2. mail the stop policy would drop ([`mailroom::policy`], the verdicts SES put in the event)
//!    and mail a machine sent ([`mailroom::automated`]: delivery reports, auto-replies) is not
//!    forwarded;
//! 3. the raw message is read from S3; mail that has been through this function
//!    `MAILROOM_FORWARD_MAX_HOPS` times already is a loop and stops (logged, counted);
//! 4. per destination, unless its marker object says it was sent already: the message is
//!    [rewritten](rewrite::rewrite) (or, by the entry's choice or when the rewrite cannot make a
//!    message SES accepts, [attached](rewrite::attach) to a new one), checked against
//!    [SES's rules](ses_rules), sent, and the marker written (`If-None-Match`).
//!
//! Never silent: throttling, 5xx, timeouts and account or identity problems fail the
//! invocation, so Lambda retries it and then hands the event to the on-failure queue (the raw
//! mail stays in S3; destinations already sent are skipped on the retry). SES refusing one
//! message for good is logged once with the raw object's location, counted
//! (`mailroom/ForwardRejected`), optionally reported to `MAILROOM_FORWARD_NOTICE_TO`, and marked
//! so a retry does not report it again.
//!
//! # Layout
//! - this file: [`Config`], [`env_vars`], [`Deps`] (and its AWS adapters, `AwsAdapters`),
//!   [`ForwardError`], the handler;
//! - [`map`]: the forward map, its two notations and its cache;
//! - [`rewrite`] and [`header`]: the two modes and the header fields they write;
//! - [`ses_rules`]: SES's rules for raw messages, checked on every output;
//! - [`sender`]: the sending port and its SES v2 adapter; [`metrics`]: counters.

pub mod header;
pub mod map;
pub mod metrics;
pub mod rewrite;
pub mod sender;
pub mod ses_rules;

use bytes::Bytes;
use mailroom::config::{self, ConfigError, Env};
use mailroom::diagnostic::FunctionError;
use mailroom::layout::{self, Locations};
use mailroom::policy::{Action, FilterPolicy};
use mailroom::ports::{ErrorKind, ObjectMeta, ObjectStore, PortError};
use mailroom::{SesEvent, SesRecord};
use map::{ForwardMap, LoadError, MapCache, MapSpec, Mode, Parameters, Route, TagPolicy};
use metrics::Metrics;
use rewrite::{Hop, Identity};
use sender::{MailSender, OutgoingMail, SendErrorKind};
use serde::Serialize;
use std::time::Duration;

pub const MAP_VAR: &str = "MAILROOM_FORWARD_MAP";
pub const MAP_PARAMETER_VAR: &str = "MAILROOM_FORWARD_MAP_PARAMETER";
pub const MAP_TTL_VAR: &str = "MAILROOM_FORWARD_MAP_TTL_SECS";
pub const FROM_VAR: &str = "MAILROOM_FORWARD_FROM";
pub const NAME_FORMAT_VAR: &str = "MAILROOM_FORWARD_NAME_FORMAT";
pub const PLUS_TAG_VAR: &str = "MAILROOM_FORWARD_PLUS_TAG";
pub const MAX_HOPS_VAR: &str = "MAILROOM_FORWARD_MAX_HOPS";
pub const CONFIGURATION_SET_VAR: &str = "MAILROOM_FORWARD_CONFIGURATION_SET";
pub const NOTICE_TO_VAR: &str = "MAILROOM_FORWARD_NOTICE_TO";
pub const MARKER_PREFIX_VAR: &str = "MAILROOM_FORWARD_MARKER_PREFIX";
pub const UNVERIFIED_VAR: &str = "MAILROOM_FORWARD_UNVERIFIED";
pub const IDENTITY_ARN_VAR: &str = "MAILROOM_FORWARD_IDENTITY_ARN";

const OWN_VARS: &[&str] = &[
    MAP_VAR,
    MAP_PARAMETER_VAR,
    MAP_TTL_VAR,
    FROM_VAR,
    NAME_FORMAT_VAR,
    PLUS_TAG_VAR,
    MAX_HOPS_VAR,
    CONFIGURATION_SET_VAR,
    NOTICE_TO_VAR,
    MARKER_PREFIX_VAR,
    UNVERIFIED_VAR,
    IDENTITY_ARN_VAR,
    mailroom::policy::MAILBOXES_VAR,
];

/// What becomes of mail SES could not vouch for (see [`unverified`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unverified {
    /// Sent on in the attachment mode, marked, never under the sender's name.
    Attach,
    /// Not sent: logged, counted (`mailroom/ForwardHeld`), left in S3.
    Hold,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub locations: Locations,
    pub map: MapSpec,
    pub map_ttl: Duration,
    pub identity: Identity,
    pub tags: TagPolicy,
    pub max_hops: usize,
    pub configuration_set: Option<String>,
    pub notice_to: Option<String>,
    /// Key prefix (in the raw bucket) of the markers that make sending idempotent.
    pub marker_prefix: String,
    /// The stop function's policy, evaluated again on the same verdicts.
    pub policy: FilterPolicy,
    pub unverified: Unverified,
    /// `FromEmailAddressIdentityArn`: with it set, SES ignores `X-SES-*` fields in the content
    /// (they are dropped before sending too).
    pub identity_arn: Option<String>,
    /// The recipients that exist; the others were bounced by the gate and are not forwarded.
    pub mailboxes: Option<mailroom::policy::Mailboxes>,
}

fn invalid(name: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        name: name.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl Config {
    /// Reads every variable in the table of docs/functions.md; errors name the variable.
    pub fn from_env(env: &(impl Env + ?Sized)) -> Result<Config, ConfigError> {
        let locations = Locations::from_env(env)?;
        let map = match (
            config::optional(env, MAP_VAR),
            config::optional(env, MAP_PARAMETER_VAR),
        ) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    MAP_PARAMETER_VAR,
                    "(both set)",
                    format!("set {MAP_VAR} or {MAP_PARAMETER_VAR}, not both"),
                ));
            }
            (_, Some(arn)) => {
                if mailroom::aws::secrets::SecretService::of(&arn)
                    != Some(mailroom::aws::secrets::SecretService::ParameterStore)
                {
                    return Err(invalid(
                        MAP_PARAMETER_VAR,
                        &arn,
                        "expected an SSM parameter ARN (arn:aws:ssm:<region>:<account>:parameter/<name>)",
                    ));
                }
                MapSpec::Parameter(arn)
            }
            (text, None) => MapSpec::Inline(
                ForwardMap::parse(text.as_deref().unwrap_or_default())
                    .map_err(|e| invalid(MAP_VAR, "(see the reason)", e.to_string()))?,
            ),
        };
        let address = config::required(env, FROM_VAR)?.to_ascii_lowercase();
        if mailroom::policy::bare_address(&address).as_deref() != Some(address.as_str())
            || !address.is_ascii()
        {
            return Err(invalid(FROM_VAR, &address, "expected a plain user@domain"));
        }
        let name_format = config::optional(env, NAME_FORMAT_VAR)
            .unwrap_or_else(|| "{name} via {domain}".to_string());
        let tags = match config::choice(env, PLUS_TAG_VAR, &["keep", "drop"], "drop")?.as_str() {
            "keep" => TagPolicy::Keep,
            _ => TagPolicy::Drop,
        };
        let max_hops: usize = config::parsed_or(env, MAX_HOPS_VAR, 3)?;
        if max_hops == 0 {
            return Err(invalid(MAX_HOPS_VAR, "0", "must be at least 1"));
        }
        let notice_to = config::optional(env, NOTICE_TO_VAR);
        if let Some(n) = &notice_to
            && mailroom::policy::bare_address(n).is_none()
        {
            return Err(invalid(NOTICE_TO_VAR, n, "expected an address"));
        }
        Ok(Config {
            locations,
            map,
            map_ttl: Duration::from_secs(config::parsed_or(env, MAP_TTL_VAR, 300)?),
            identity: Identity {
                address,
                name_format,
            },
            tags,
            max_hops,
            configuration_set: config::optional(env, CONFIGURATION_SET_VAR),
            notice_to,
            marker_prefix: config::optional(env, MARKER_PREFIX_VAR)
                .unwrap_or_else(|| "forwarded/".to_string()),
            policy: FilterPolicy::from_env(env)?,
            unverified: match config::choice(env, UNVERIFIED_VAR, &["attach", "hold"], "attach")?
                .as_str()
            {
                "hold" => Unverified::Hold,
                _ => Unverified::Attach,
            },
            identity_arn: match config::optional(env, IDENTITY_ARN_VAR) {
                Some(arn) if !arn.starts_with("arn:") || !arn.contains(":identity/") => {
                    return Err(invalid(
                        IDENTITY_ARN_VAR,
                        &arn,
                        "expected arn:<partition>:ses:<region>:<account>:identity/<identity>",
                    ));
                }
                arn => arn,
            },
            mailboxes: mailroom::policy::Mailboxes::from_env(env)?,
        })
    }

    /// The cache the map is read through, built once per cold start.
    pub fn map_cache(&self) -> MapCache {
        MapCache::new(self.map.clone(), self.map_ttl)
    }

    fn marker_key(&self, message_id: &str, destination: &str) -> String {
        format!(
            "{}/{message_id}/{}",
            self.marker_prefix.trim_end_matches('/'),
            layout::segment(destination)
        )
    }
}

/// Every `MAILROOM_*` variable [`Config::from_env`] may read: the template may set no other on
/// this function.
pub fn env_vars() -> Vec<&'static str> {
    [layout::ENV_VARS, OWN_VARS, mailroom::policy::ENV_VARS].concat()
}

/// The function's side effects, as ports.
#[derive(Clone, Copy)]
pub struct Deps<'a> {
    pub store: &'a dyn ObjectStore,
    pub sender: &'a dyn MailSender,
    pub parameters: &'a dyn Parameters,
    pub maps: &'a MapCache,
    pub metrics: &'a dyn Metrics,
}

/// The AWS adapters behind [`Deps`], built once per container. `mailroom replay` re-runs
/// dead-lettered events with these same adapters, so the two cannot drift apart.
#[cfg(feature = "aws")]
pub struct AwsAdapters {
    pub store: mailroom::envelope::Decrypting<mailroom::aws::S3Store>,
    pub sender: sender::SesV2Sender,
    pub parameters: map::SsmParameters,
}

#[cfg(feature = "aws")]
impl AwsAdapters {
    /// `kms_key`: the key SES encrypts raw mail with (`Locations::kms_key`).
    pub fn from_conf(sdk: &mailroom::aws::SdkConfig, kms_key: Option<&str>) -> AwsAdapters {
        AwsAdapters {
            store: mailroom::aws::mail_store(sdk, kms_key),
            sender: sender::SesV2Sender::from_conf(sdk),
            parameters: map::SsmParameters(sdk.clone()),
        }
    }

    /// The handler's ports over these adapters, counting into CloudWatch's embedded metrics.
    pub fn deps<'a>(&'a self, maps: &'a MapCache) -> Deps<'a> {
        Deps {
            store: &self.store,
            sender: &self.sender,
            parameters: &self.parameters,
            maps,
            metrics: &metrics::Emf,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error(transparent)]
    Map(#[from] LoadError),
    #[error("reading raw message {raw}: {source}")]
    ReadRaw { raw: String, source: PortError },
    #[error("forward marker s3://{bucket}/{key}: {source} (the raw message stays at {raw})")]
    Marker {
        bucket: String,
        key: String,
        raw: String,
        source: PortError,
    },
    #[error(
        "{message_id} to {destination} is being sent by another invocation (its claim holds until {until}): retry later"
    )]
    Busy {
        message_id: String,
        destination: String,
        until: i64,
    },
    #[error("sending {message_id} to {destination}: {source} (the raw message stays at {raw})")]
    Send {
        message_id: String,
        destination: String,
        raw: String,
        source: sender::SendError,
    },
}

impl FunctionError for ForwardError {
    const FUNCTION: &'static str = "Forward";

    fn is_retryable(&self) -> bool {
        match self {
            ForwardError::Map(LoadError::Fetch { source, .. }) => source.is_retryable(),
            ForwardError::Map(LoadError::Invalid { .. }) => false,
            ForwardError::ReadRaw { source, .. } | ForwardError::Marker { source, .. } => {
                source.is_retryable()
            }
            ForwardError::Send { source, .. } => source.kind == SendErrorKind::Retry,
            ForwardError::Busy { .. } => true,
        }
    }

    fn variant(&self) -> &'static str {
        match self {
            ForwardError::Map(_) => "Map",
            ForwardError::ReadRaw { .. } => "ReadRaw",
            ForwardError::Marker { .. } => "Marker",
            ForwardError::Send { .. } => "Send",
            ForwardError::Busy { .. } => "Busy",
        }
    }
}

mailroom::impl_diagnostic!(ForwardError);

/// What became of one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Delivery {
    Sent {
        destination: String,
        mode: Mode,
        /// Why the attachment mode was used when the entry asked for a rewrite.
        #[serde(skip_serializing_if = "Option::is_none")]
        fallback: Option<String>,
        ses_message_id: String,
    },
    /// A marker says an earlier invocation sent it.
    AlreadySent { destination: String },
    /// SES (or our own check of SES's rules) refuses this message for good.
    Rejected {
        destination: String,
        reason: String,
        notice: Option<String>,
    },
}

/// What happened to each record of the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    Forwarded {
        message_id: String,
        deliveries: Vec<Delivery>,
    },
    /// Not forwarded on purpose: no map entry, the stop policy, a machine's mail, a loop.
    Skipped { message_id: String, reason: String },
    /// No raw object at the configured location.
    RawMissing { message_id: String, raw: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub outcomes: Vec<Outcome>,
}

/// Forwards every record; the first failure to retry stops and fails the invocation.
pub async fn handle(
    event: &SesEvent,
    config: &Config,
    deps: Deps<'_>,
) -> Result<Report, ForwardError> {
    let mut outcomes = Vec::with_capacity(event.records.len());
    for record in &event.records {
        outcomes.push(forward_record(record, config, deps).await?);
    }
    Ok(Report { outcomes })
}

fn skipped(message_id: &str, reason: impl Into<String>) -> Outcome {
    let reason = reason.into();
    tracing::info!(message_id, %reason, "not forwarded");
    Outcome::Skipped {
        message_id: message_id.to_string(),
        reason,
    }
}

/// Forwards one message to every destination its recipients lead to.
pub async fn forward_record(
    record: &SesRecord,
    config: &Config,
    deps: Deps<'_>,
) -> Result<Outcome, ForwardError> {
    let msg = &record.ses;
    let id = msg.mail.message_id.as_str();
    if mailroom::ses::is_setup_notification(id) {
        return Ok(skipped(id, "SES setup notification"));
    }
    if !layout::is_plain_message_id(id) {
        return Ok(skipped(
            id,
            "messageId is empty or not a plain SES message id",
        ));
    }
    let map = deps.maps.get(deps.parameters).await?;
    // A recipient that is not a mailbox was bounced by the gate ("does not exist"): forwarding
    // it anyway would deliver what its sender was told did not arrive.
    let recipients: Vec<String> =
        mailroom::policy::Mailboxes::existing(config.mailboxes.as_ref(), &msg.receipt.recipients)
            .into_iter()
            .cloned()
            .collect();
    if recipients.is_empty() && !msg.receipt.recipients.is_empty() {
        return Ok(skipped(
            id,
            "no recipient is on the mailbox list (the gate bounced them)",
        ));
    }
    let routes = map.routes(&recipients, config.tags);
    if routes.is_empty() {
        return Ok(skipped(id, "no forward map entry for its recipients"));
    }
    let decision = config.policy.evaluate(msg);
    if decision.action == Action::Drop {
        return Ok(skipped(
            id,
            format!("the stop policy drops it: {}", decision.reasons_text()),
        ));
    }
    if let Some(why) = mailroom::automated::sender(&msg.mail.source)
        .or_else(|| mailroom::automated::headers(&msg.mail.headers))
    {
        return Ok(skipped(id, format!("sent by a machine: {why}")));
    }
    let suspicion = unverified(&msg.receipt);
    if let (Some(why), Unverified::Hold) = (&suspicion, config.unverified) {
        deps.metrics.count(metrics::HELD, 1);
        tracing::warn!(message_id = id, raw = %config.locations.raw_url(id), reason = %why,
            "not forwarded: SES could not verify the sender; the raw message stays in S3");
        return Ok(skipped(
            id,
            format!("held: SES could not verify the sender ({why})"),
        ));
    }

    let loc = &config.locations;
    let raw_url = loc.raw_url(id);
    let raw = match loc.read_raw(deps.store, id).await {
        Ok(Some(raw)) => raw,
        Ok(None) => {
            return Ok(Outcome::RawMissing {
                message_id: id.to_string(),
                raw: raw_url,
            });
        }
        Err(source) => {
            return Err(ForwardError::ReadRaw {
                raw: raw_url,
                source,
            });
        }
    };
    let hops = rewrite::hops(&raw);
    if hops >= config.max_hops {
        deps.metrics.count(metrics::LOOP, 1);
        tracing::warn!(message_id = id, raw = %raw_url, hops,
            "forwarding loop: the message has been forwarded {hops} times already, not again");
        return Ok(skipped(
            id,
            format!(
                "loop: forwarded {hops} times already (limit {})",
                config.max_hops
            ),
        ));
    }

    let mut deliveries = Vec::with_capacity(routes.len());
    for route in &routes {
        deliveries.push(deliver(record, config, deps, &raw, &raw_url, route).await?);
    }
    Ok(Outcome::Forwarded {
        message_id: id.to_string(),
        deliveries,
    })
}

/// SES's verdicts as one header value (`spf=PASS dkim=PASS dmarc=FAIL (p=quarantine) spam=PASS
/// virus=PASS`); verdicts SES did not give are left out.
pub fn verdicts(r: &mailroom::ses::SesReceipt) -> String {
    let clean = |v: &mailroom::ses::Verdict| {
        let s = v.as_str();
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
            s.to_string()
        } else {
            "OTHER".to_string()
        }
    };
    let mut parts = Vec::new();
    for (name, v) in [
        ("spf", r.spf()),
        ("dkim", r.dkim()),
        ("dmarc", r.dmarc()),
        ("spam", r.spam()),
        ("virus", r.virus()),
    ] {
        if let Some(v) = v {
            let mut part = format!("{name}={}", clean(v));
            if name == "dmarc"
                && let Some(p) = &r.dmarc_policy
                && p.as_str().bytes().all(|b| b.is_ascii_alphabetic())
            {
                part.push_str(&format!(" (p={})", p.as_str()));
            }
            parts.push(part);
        }
    }
    parts.join(" ")
}

/// Why SES could not vouch for the sender, if it could not: SPF or DMARC failed (whatever the
/// domain's policy: `p=none` is no permission to send under our name), or the spam or virus scan
/// did not come back clean. Such mail is never re-authored as ours.
pub fn unverified(r: &mailroom::ses::SesReceipt) -> Option<String> {
    use mailroom::ses::Verdict;
    let mut why = Vec::new();
    if r.spf() == Some(&Verdict::Fail) {
        why.push("SPF FAIL".to_string());
    }
    if r.dmarc() == Some(&Verdict::Fail) {
        why.push(match &r.dmarc_policy {
            Some(p) if p.as_str().bytes().all(|b| b.is_ascii_alphabetic()) => {
                format!("DMARC FAIL, p={}", p.as_str())
            }
            Some(_) => "DMARC FAIL".to_string(),
            None => "DMARC FAIL".to_string(),
        });
    }
    for (name, v) in [("spam", r.spam()), ("virus", r.virus())] {
        if let Some(v @ (Verdict::Fail | Verdict::Gray | Verdict::ProcessingFailed)) = v {
            why.push(format!("{name} verdict {}", v.as_str()));
        }
    }
    (!why.is_empty()).then(|| why.join(", "))
}

/// The digest standing in for `raw` (see [`rewrite::digest`]): its text and attachment list
/// read with the same parser and limits as store and api (nothing when it cannot be read).
fn digest_of(raw: &[u8], record: &SesRecord, config: &Config, hop: &Hop<'_>, why: &str) -> Vec<u8> {
    let parsed = mailroom::email::Email::parse(raw, &mailroom::Limits::default()).ok();
    let email = parsed.as_ref().map(|p| &p.email);
    let left_out: Vec<String> = email
        .map(|e| {
            e.attachments
                .iter()
                .map(|a| {
                    format!(
                        "{} ({}, {} bytes)",
                        a.filename.as_deref().unwrap_or("unnamed"),
                        a.content_type,
                        a.size
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let text = email.and_then(|e| e.text.as_deref());
    let subject = email.and_then(|e| e.subject.as_deref()).or(record
        .ses
        .mail
        .common_headers
        .subject
        .as_deref());
    rewrite::digest(
        &config.identity,
        hop,
        &rewrite::Digest {
            why,
            subject,
            text,
            left_out: &left_out,
        },
    )
}

/// The message for one route, in the route's mode, with the reason when the rewrite fell back.
fn build(
    raw: &[u8],
    config: &Config,
    hop: &Hop<'_>,
    route: &Route,
) -> (Vec<u8>, Mode, Option<String>) {
    if let Some(why) = hop.unverified {
        let why = format!("SES could not verify the sender: {why}");
        return (
            rewrite::attach(raw, &config.identity, hop, &why),
            Mode::Attach,
            None,
        );
    }
    if route.mode == Mode::Attach {
        let why = format!(
            "the forward map asks for the attachment mode for {}",
            route.key
        );
        return (
            rewrite::attach(raw, &config.identity, hop, &why),
            Mode::Attach,
            None,
        );
    }
    match rewrite::rewrite(raw, &config.identity, hop) {
        Ok(out) => (out, Mode::Rewrite, None),
        Err(refusal) => {
            let why = refusal.to_string();
            (
                rewrite::attach(raw, &config.identity, hop, &why),
                Mode::Attach,
                Some(why),
            )
        }
    }
}

/// How long past its send's own timeout a claim holds.
const CLAIM_MARGIN: Duration = Duration::from_secs(5);
/// Claim rounds after which something is wrong (each round is a crash or a failed send).
const MAX_CLAIMS: u32 = 20;

enum Claim {
    /// Another invocation claimed this destination and may be sending it until then (Unix time).
    Busy {
        until: i64,
    },
    Store(PortError),
}

/// Claims the right to send to a destination: `<marker>.claim-<n>`, created `If-None-Match`,
/// holding until when it counts. A claim whose time is up (a run that crashed) or that has a
/// `.released` object beside it (a run whose send failed) is over; the next round's key is then
/// claimed, so of any number of concurrent runs exactly one wins each round.
async fn claim(
    store: &dyn ObjectStore,
    bucket: &str,
    marker: &str,
    ttl: Duration,
) -> Result<u32, Claim> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let until = now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
    for round in 1..=MAX_CLAIMS {
        let key = format!("{marker}.claim-{round}");
        let body = Bytes::from(format!("{{\"until\":{until}}}"));
        match store
            .put_if_absent(bucket, &key, body, &ObjectMeta::new("application/json"))
            .await
            .map_err(Claim::Store)?
        {
            mailroom::ports::PutOutcome::Created => return Ok(round),
            mailroom::ports::PutOutcome::AlreadyExists => {}
        }
        let held = match store.get(bucket, &key).await {
            Ok(b) => serde_json::from_slice::<serde_json::Value>(&b)
                .ok()
                .and_then(|v| v["until"].as_i64())
                .unwrap_or(0),
            // Written and gone: treat as expired.
            Err(e) if e.kind == ErrorKind::NotFound => 0,
            Err(e) => return Err(Claim::Store(e)),
        };
        if held > now {
            // Its run failed and said so: the claim is over before its time.
            match store.size(bucket, &format!("{key}.released")).await {
                Ok(_) => continue,
                Err(e) if e.kind == ErrorKind::NotFound => {
                    return Err(Claim::Busy { until: held });
                }
                Err(e) => return Err(Claim::Store(e)),
            }
        }
    }
    Err(Claim::Store(PortError::new(
        ErrorKind::Permanent,
        "claim",
        format!("{MAX_CLAIMS} claims on {marker} all expired without a send finishing"),
    )))
}

async fn deliver(
    record: &SesRecord,
    config: &Config,
    deps: Deps<'_>,
    raw: &Bytes,
    raw_url: &str,
    route: &Route,
) -> Result<Delivery, ForwardError> {
    let id = record.ses.mail.message_id.as_str();
    let bucket = &config.locations.raw_bucket;
    let marker = config.marker_key(id, &route.destination);
    let marker_error = |source| ForwardError::Marker {
        bucket: bucket.clone(),
        key: marker.clone(),
        raw: raw_url.to_string(),
        source,
    };
    match deps.store.size(bucket, &marker).await {
        Ok(_) => {
            tracing::info!(message_id = id, destination = %route.destination, "already forwarded");
            return Ok(Delivery::AlreadySent {
                destination: route.destination.clone(),
            });
        }
        Err(e) if e.kind == ErrorKind::NotFound => {}
        Err(e) => return Err(marker_error(e)),
    }

    let verdicts = verdicts(&record.ses.receipt);
    let suspicion = unverified(&record.ses.receipt);
    let hop = Hop {
        recipient: &route.recipient,
        envelope_sender: &record.ses.mail.source,
        received: &record.ses.mail.timestamp,
        raw_url,
        verdicts: &verdicts,
        unverified: suspicion.as_deref(),
    };
    let limit = mailroom::Limits::default().max_header_bytes;
    let (mut message, mut mode, mut fallback) =
        if mailroom::email::header_block_len(raw, limit + 4) > limit {
            // Not parsed at all: a header block that size is a hostile sender's, and the parser
            // would hold it several times over (store and api refuse it the same way).
            let why = format!("its header block is over the {limit} bytes mailroom reads");
            (
                digest_of(&[], record, config, &hop, &why),
                Mode::Digest,
                Some(why),
            )
        } else {
            build(raw, config, &hop, route)
        };
    if let (Some(why), Mode::Attach) = (&fallback, mode) {
        deps.metrics.count(metrics::FALLBACK, 1);
        tracing::warn!(message_id = id, destination = %route.destination, reason = %why,
            "rewrite refused: forwarding the original as an attachment");
    }
    let mut violations = ses_rules::validate_for(&message, &config.identity.address);
    if !violations.is_empty()
        && violations
            .iter()
            .all(ses_rules::Violation::is_content_limit)
    {
        // The whole message cannot go; what can (its text, and where the rest is) does.
        let why: Vec<String> = violations.iter().take(3).map(ToString::to_string).collect();
        let why = why.join("; ");
        message = digest_of(raw, record, config, &hop, &why);
        mode = Mode::Digest;
        fallback = Some(why);
        violations = ses_rules::validate_for(&message, &config.identity.address);
    }
    if mode == Mode::Digest {
        deps.metrics.count(metrics::PARTIAL, 1);
        tracing::warn!(message_id = id, destination = %route.destination, raw = %raw_url,
            reason = fallback.as_deref().unwrap_or_default(),
            "the whole message cannot be forwarded: sending its text and where it is kept");
    }
    let mut claimed = None;
    let sent = if violations.is_empty() {
        // Claimed before sending, so a second invocation running at the same time (SES may
        // invoke twice) waits instead of sending too; only a crash after the send and before
        // the marker can send twice.
        let ttl = sender::send_timeouts(message.len()).1 + CLAIM_MARGIN;
        claimed = Some(claim(deps.store, bucket, &marker, ttl).await.map_err(
            |source| match source {
                Claim::Busy { until } => ForwardError::Busy {
                    message_id: id.to_string(),
                    destination: route.destination.clone(),
                    until,
                },
                Claim::Store(e) => marker_error(e),
            },
        )?);
        let mail = OutgoingMail {
            from: config.identity.address.clone(),
            to: route.destination.clone(),
            raw: Bytes::from(message),
            configuration_set: config.configuration_set.clone(),
            identity_arn: config.identity_arn.clone(),
        };
        deps.sender.send(&mail).await
    } else {
        let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
        Err(sender::SendError::new(
            SendErrorKind::Rejected,
            format!("not sent, SES would refuse it: {}", text.join("; ")),
        ))
    };
    let delivery = match sent {
        Ok(ses_message_id) => {
            deps.metrics.count(metrics::FORWARDED, 1);
            tracing::info!(message_id = id, destination = %route.destination,
                mode = ?mode, ses_message_id = %ses_message_id, "forwarded");
            Delivery::Sent {
                destination: route.destination.clone(),
                mode,
                fallback,
                ses_message_id,
            }
        }
        Err(e) if e.kind == SendErrorKind::Rejected => {
            deps.metrics.count(metrics::REJECTED, 1);
            tracing::error!(message_id = id, destination = %route.destination, raw = %raw_url,
                error = %e.message, "forward rejected for good: the raw message stays in S3");
            let notice = notify(
                record,
                config,
                deps,
                raw_url,
                &route.destination,
                &e.message,
            )
            .await;
            Delivery::Rejected {
                destination: route.destination.clone(),
                reason: e.message,
                notice,
            }
        }
        Err(source) => {
            // The send failed before SES took it: let the retry claim at once. Best effort; an
            // unreleased claim only runs out.
            if let Some(round) = claimed {
                let released = format!("{marker}.claim-{round}.released");
                if let Err(e) = deps
                    .store
                    .put_if_absent(
                        bucket,
                        &released,
                        Bytes::new(),
                        &ObjectMeta::new("application/json"),
                    )
                    .await
                {
                    tracing::warn!(message_id = id, key = %released, error = %e,
                        "could not release the send's claim: a retry waits until it runs out");
                }
            }
            return Err(ForwardError::Send {
                message_id: id.to_string(),
                destination: route.destination.clone(),
                raw: raw_url.to_string(),
                source,
            });
        }
    };
    let body = serde_json::to_vec(&delivery).unwrap_or_default();
    deps.store
        .put_if_absent(
            bucket,
            &marker,
            Bytes::from(body),
            &ObjectMeta::new("application/json"),
        )
        .await
        .map_err(marker_error)?;
    Ok(delivery)
}

/// Tells `MAILROOM_FORWARD_NOTICE_TO` about a permanent rejection; what became of the notice.
async fn notify(
    record: &SesRecord,
    config: &Config,
    deps: Deps<'_>,
    raw_url: &str,
    destination: &str,
    reason: &str,
) -> Option<String> {
    let to = config.notice_to.as_ref()?;
    let raw = notice_message(record, config, to, raw_url, destination, reason);
    let mail = OutgoingMail {
        from: config.identity.address.clone(),
        to: to.clone(),
        raw: Bytes::from(raw),
        configuration_set: config.configuration_set.clone(),
        identity_arn: config.identity_arn.clone(),
    };
    match deps.sender.send(&mail).await {
        Ok(id) => Some(format!("sent to {to} ({id})")),
        Err(e) => {
            tracing::error!(message_id = %record.ses.mail.message_id, notice_to = %to, error = %e,
                "the notice of a rejected forward could not be sent");
            Some(format!("failed: {e}"))
        }
    }
}

/// The notice: a short plain-text message naming the raw object.
pub fn notice_message(
    record: &SesRecord,
    config: &Config,
    to: &str,
    raw_url: &str,
    destination: &str,
    reason: &str,
) -> Vec<u8> {
    let mail = &record.ses.mail;
    let subject = mail
        .common_headers
        .subject
        .as_deref()
        .unwrap_or("(no subject)");
    let text = format!(
        "mailroom could not forward a message.\r\n\r\n\
         Message: {}\r\nFrom: {}\r\nSubject: {subject}\r\nReceived: {}\r\n\
         Destination: {destination}\r\nReason: {reason}\r\n\r\n\
         The raw message is kept at {raw_url}.\r\n",
        mail.message_id,
        if mail.source.is_empty() {
            "<>"
        } else {
            mail.source.as_str()
        },
        mail.timestamp,
    );
    let text = text.replace(|c: char| !c.is_ascii(), "?");
    let eol = header::Eol::Crlf;
    let mut out = String::new();
    out.push_str(&header::field(
        "From",
        &format!("\"mailroom\" <{}>", config.identity.address),
        eol,
    ));
    out.push_str(&header::field("To", &format!("<{to}>"), eol));
    out.push_str(&header::field(
        "Subject",
        &format!("Forward failed: {}", mail.message_id),
        eol,
    ));
    out.push_str(&header::field(
        "Date",
        &time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap_or_default(),
        eol,
    ));
    out.push_str(&header::field("Auto-Submitted", "auto-generated", eol));
    out.push_str(&header::field("MIME-Version", "1.0", eol));
    out.push_str(&header::field(
        "Content-Type",
        "text/plain; charset=us-ascii",
        eol,
    ));
    out.push_str("\r\n");
    for line in text.split("\r\n") {
        // Keep every line within SES's limit even for a very long reason.
        let mut rest = line;
        while rest.len() > 900 {
            out.push_str(&rest[..900]);
            out.push_str("\r\n");
            rest = &rest[900..];
        }
        out.push_str(rest);
        out.push_str("\r\n");
    }
    out.into_bytes()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut v = vec![
            ("MAILROOM_RAW_BUCKET", "mail"),
            ("MAILROOM_RAW_PREFIX", "raw/"),
            ("MAILROOM_FORWARD_FROM", "Forwarder@Example.com"),
        ];
        v.extend_from_slice(extra);
        v
    }

    #[test]
    fn config_defaults_and_errors_name_the_variable() {
        let c = Config::from_env(env(&[]).as_slice()).unwrap();
        assert_eq!(c.identity.address, "forwarder@example.com");
        assert_eq!(c.identity.domain(), "example.com");
        assert_eq!(c.max_hops, 3);
        assert_eq!(c.tags, TagPolicy::Drop);
        assert!(matches!(&c.map, MapSpec::Inline(m) if m.is_empty()));
        assert_eq!(
            c.marker_key("m1", "Me@gmail.com"),
            "forwarded/m1/Me@gmail.com"
        );
        for (bad, var) in [
            (("MAILROOM_FORWARD_MAP", "nonsense"), MAP_VAR),
            (
                ("MAILROOM_FORWARD_MAP_PARAMETER", "/just/a/name"),
                MAP_PARAMETER_VAR,
            ),
            (("MAILROOM_FORWARD_MAX_HOPS", "0"), MAX_HOPS_VAR),
            (("MAILROOM_FORWARD_PLUS_TAG", "maybe"), PLUS_TAG_VAR),
            (("MAILROOM_FORWARD_NOTICE_TO", "nobody"), NOTICE_TO_VAR),
        ] {
            let e = Config::from_env(env(&[bad]).as_slice()).unwrap_err();
            assert!(e.to_string().contains(var), "{e}");
        }
        let e = Config::from_env([("MAILROOM_RAW_BUCKET", "mail")].as_slice()).unwrap_err();
        assert!(e.to_string().contains(FROM_VAR), "{e}");
        let p = Config::from_env(
            env(&[(
                "MAILROOM_FORWARD_MAP_PARAMETER",
                "arn:aws:ssm:us-east-1:123456789012:parameter/mailroom/forward-map",
            )])
            .as_slice(),
        )
        .unwrap();
        assert!(matches!(p.map, MapSpec::Parameter(_)));
    }
}
