//! The local SES receiving emulator: the receipt rule set from `template.yaml`, evaluated by
//! [`crate::receipt`], with our real function handlers run in process against local
//! adapters (a folder for S3, JSON lines for SNS, a folder per SQS queue, DSN requests and
//! forwarded mail in an outbox), or against real AWS (any endpoint via `AWS_ENDPOINT_URL`) with `--aws`.
//! `mailroom deliver` and `mailroom serve` are thin front ends over [`Emulator`].

//!
//! # Layout
//! - [`template`]: reads `template.yaml`: a CloudFormation evaluator (`template/intrinsics.rs`)
//!   and the SES rule extraction on top of it (`template/rules.rs`).
//! - [`receipt`]: the SES receipt rule engine, pure: rule sets, recipient matching, what SES adds
//!   to a message, the evaluation with every side effect behind an [`receipt::Executor`].
//! - [`error`]: why an action or an in-process function failed.
//! - [`executor`]: carries out the actions (S3, SNS, Bounce, Lambda) for the engine.
//! - [`functions`]: our functions run in process, each from its crate's one `Config::from_env`,
//!   and the list of variables each crate reads.
//! - [`ports`]: the set of ports handed to functions and actions, local or AWS, recording writes.
//! - [`local`]: file-system adapters, one file per port.
//! - [`sink`]: the local webhook receiver.
//! - [`smtp`]: the SMTP session of `mailroom serve`, a pure state machine (no I/O).

pub mod error;
pub mod executor;
pub mod functions;
pub mod local;
pub mod ports;
pub mod receipt;
pub mod sink;
pub mod smtp;
pub mod template;

use anyhow::Context;
use receipt::{Envelope, Inbound, RuleSet, Trace, Verdicts};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

/// SES's largest message (S3 action limit, headers included): larger mail is refused.
pub const MAX_MESSAGE_BYTES: usize = mailroom::email::SES_MAX_MESSAGE_BYTES;
/// The test header that sets verdicts for one message (`X-Mailroom-Verdicts: spam=FAIL`).
pub const VERDICTS_HEADER: &str = "X-Mailroom-Verdicts";

/// What an [`Emulator`] is built from (the `deliver` and `serve` options).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The SAM template whose receipt rule set is emulated.
    pub template: PathBuf,
    /// Template parameter overrides, e.g. `("Recipients", "example.com")`.
    pub params: Vec<(String, String)>,
    /// Which rule set, when the template has several (logical id or name).
    pub rule_set: Option<String>,
    /// Where local S3, SNS, SQS and bounces are kept.
    pub state_dir: PathBuf,
    /// A verdict for every message: `spam=FAIL`, `dmarc=FAIL`, `dmarc-policy=reject`.
    pub verdicts: Vec<String>,
    /// Use real AWS (or the endpoint in AWS_ENDPOINT_URL) instead of local folders.
    pub aws: bool,
    /// Deliver every webhook to the local sink whatever the URL (reserved example hosts always
    /// go there).
    pub webhook_sink: bool,
}

impl Settings {
    /// The defaults of the command line: `template.yaml`, state in `.mailroom`, local adapters.
    pub fn new(template: impl Into<PathBuf>) -> Settings {
        Settings {
            template: template.into(),
            params: Vec::new(),
            rule_set: None,
            state_dir: PathBuf::from(".mailroom"),
            verdicts: Vec::new(),
            aws: false,
            webhook_sink: false,
        }
    }
}

pub struct Emulator {
    pub rule_set: RuleSet,
    /// The template's receipt IP address filters, applied to every connecting address.
    pub filters: Vec<receipt::IpFilter>,
    pub template: PathBuf,
    pub region: String,
    pub verdicts: Verdicts,
    local_bouncer: Option<Arc<local::LocalBouncer>>,
    executor: Arc<executor::LocalExecutor>,
    sink: Arc<sink::WebhookSink>,
    /// Local SQS, where the api function's retry jobs wait; `None` with `--aws`.
    local_queue: Option<local::LocalQueue>,
}

impl Emulator {
    /// Loads the template, builds every function it calls and the ports (local or AWS).
    pub async fn new(settings: &Settings) -> anyhow::Result<Emulator> {
        let options = template::Options {
            params: settings.params.iter().cloned().collect::<HashMap<_, _>>(),
            rule_set: settings.rule_set.clone(),
            ..template::Options::default()
        };
        let loaded = template::load_file(&settings.template, &options)?;
        let mut verdicts = Verdicts::default();
        for v in &settings.verdicts {
            verdicts.apply(v).context("--verdict")?;
        }
        let sink = Arc::new(sink::WebhookSink::new(
            &settings.state_dir,
            settings.webhook_sink,
        ));
        let ports = if settings.aws {
            aws_ports(sink.clone()).await?
        } else {
            std::fs::create_dir_all(&settings.state_dir).with_context(|| {
                format!("creating the state folder {}", settings.state_dir.display())
            })?;
            ports::Ports::local(&settings.state_dir, sink.clone())?
        };
        let overrides = functions::LocalOverrides {
            webhook_secret: webhook_secret(&settings.state_dir)?,
            sink: Some(sink.clone()),
        };
        let mut functions = BTreeMap::new();
        for (arn, def) in &loaded.functions {
            functions.insert(
                arn.clone(),
                executor::Deployed {
                    function: functions::build(&def.logical_id, &def.binary, &def.env, &overrides)?,
                    binary: def.binary.clone(),
                    logical_id: def.logical_id.clone(),
                    max_retries: def.max_retries,
                    on_failure: def.on_failure.clone(),
                },
            );
        }
        let local_bouncer = ports.local_bouncer.clone();
        let executor = Arc::new(executor::LocalExecutor {
            ports: ports.clone(),
            functions,
            region: loaded.region.clone(),
        });
        Ok(Emulator {
            rule_set: loaded.rule_set,
            filters: loaded.filters,
            template: settings.template.clone(),
            region: loaded.region,
            verdicts,
            local_bouncer,
            executor,
            sink,
            local_queue: (!settings.aws).then(|| local::LocalQueue::new(&settings.state_dir)),
        })
    }

    /// Invokes one of the template's functions (by logical id) once with `event`, as a retry of
    /// that invocation would: its answer (summary) and where its outputs landed.
    pub async fn invoke(
        &self,
        logical_id: &str,
        event: &mailroom::SesEvent,
    ) -> Result<(String, Vec<String>), String> {
        let (returned, outputs) = self
            .executor
            .invoke_once(logical_id, executor::Trigger::Ses(event))
            .await?;
        Ok((returned.summary, outputs))
    }

    /// How the function with this logical id retries, when it keeps a retry queue (api).
    pub fn retries(&self, logical_id: &str) -> Option<functions::Retries> {
        self.executor.retries(logical_id)
    }

    /// Runs a retry job now instead of when it becomes visible: the job file, one message in
    /// the local retry queue of the function with this logical id, is handed to that function
    /// as its queue's trigger would hand it (the receipt handle is the file, so the function
    /// deletes it as it would delete the SQS message). Its answer and outputs.
    pub async fn retry_now(
        &self,
        logical_id: &str,
        job_file: &std::path::Path,
    ) -> Result<(String, Vec<String>), String> {
        let queue = self
            .local_queue
            .as_ref()
            .ok_or("the retry queue is in AWS; its trigger runs the retries there")?;
        let retries = self
            .retries(logical_id)
            .ok_or_else(|| format!("{logical_id} keeps no retry queue"))?;
        let pending = queue
            .pending_at(&retries.queue_url, job_file)
            .map_err(|e| {
                format!(
                    "{} is not a job in {logical_id}'s retry queue: {e}",
                    job_file.display()
                )
            })?;
        let mut record = mailroom_api::SqsRecord::from(&pending.message);
        // The job is due now: the function re-queues a job received before its `notBefore`.
        if let Ok(mut job) = serde_json::from_str::<serde_json::Value>(&record.body)
            && job.get("notBefore").is_some()
        {
            job["notBefore"] = time::OffsetDateTime::now_utc().unix_timestamp().into();
            record.body = job.to_string();
        }
        let event = mailroom_api::SqsEvent {
            records: vec![record],
        };
        let (returned, mut outputs) = self
            .executor
            .invoke_once(logical_id, executor::Trigger::Sqs(&event))
            .await?;
        // Lambda's poller deletes each record the batch response does not list as failed; the
        // function itself deletes only what it re-queued.
        let failed = serde_json::from_str::<mailroom_api::SqsBatchResponse>(&returned.summary)
            .map(|r| !r.batch_item_failures.is_empty())
            .unwrap_or(true);
        if !failed {
            match std::fs::remove_file(job_file) {
                Ok(()) => outputs.push(format!("SQS {} (deleted)", job_file.display())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("deleting {}: {e}", job_file.display())),
            }
        }
        Ok((returned.summary, outputs))
    }

    /// The webhooks the local sink has recorded so far.
    pub fn sink_records(&self) -> Vec<sink::Recorded> {
        self.sink.recorded()
    }

    /// What the IP address filters make of a connection from `ip`; `None` when the template
    /// creates no filter (nothing to decide, nothing to show).
    pub fn ip_filter(&self, ip: std::net::IpAddr) -> Option<receipt::FilterDecision> {
        (!self.filters.is_empty()).then(|| receipt::filters::decide(&self.filters, ip))
    }

    /// Runs one received message through the rule set. `raw` is the message as sent.
    pub async fn receive(&self, raw: Vec<u8>, envelope: Envelope) -> anyhow::Result<Trace> {
        self.receive_observed(raw, envelope, &|_| {}).await
    }

    /// [`Emulator::receive`], calling `observe` before each action runs (for progress display).
    pub async fn receive_observed(
        &self,
        raw: Vec<u8>,
        envelope: Envelope,
        observe: &(dyn Fn(&receipt::Step<'_>) + Sync),
    ) -> anyhow::Result<Trace> {
        if raw.len() > MAX_MESSAGE_BYTES {
            anyhow::bail!(
                "message is {} bytes, over SES's {MAX_MESSAGE_BYTES}-byte limit: SES refuses it (552 5.3.4)",
                raw.len()
            );
        }
        // An address that is not one (only a caller of the library could pass it) matches no
        // filter: accepted, as SES accepts what its filters do not name.
        let ip_filter = envelope
            .client_ip
            .parse()
            .ok()
            .and_then(|ip| self.ip_filter(ip));
        if ip_filter.as_ref().is_some_and(|d| d.refused) {
            return Ok(Trace {
                message_id: String::new(),
                mail_from: envelope.mail_from,
                recipients: envelope.recipients,
                rule_set: self.rule_set.name.clone(),
                stopped: Some("connection refused by an IP address filter: no rule runs".into()),
                ip_filter,
                rejected: Vec::new(),
                rules: Vec::new(),
                final_message: Vec::new(),
            });
        }
        let mut verdicts = self.verdicts.clone();
        let (headers, _) = receipt::mail::split_headers(&raw);
        for h in headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(VERDICTS_HEADER))
        {
            verdicts
                .apply(&h.value)
                .with_context(|| format!("{VERDICTS_HEADER} header"))?;
        }
        let message_id = receipt::new_message_id();
        if let Some(b) = &self.local_bouncer {
            b.remember(&message_id, &envelope.mail_from, &raw);
        }
        let inbound = Inbound {
            raw,
            envelope,
            verdicts,
            message_id,
            received_at: time::OffsetDateTime::now_utc(),
            region: self.region.clone(),
        };
        let observed = Observed {
            inner: self.executor.as_ref(),
            observe,
        };
        let mut trace = receipt::evaluate(&self.rule_set, &inbound, &observed).await;
        trace.ip_filter = ip_filter;
        Ok(trace)
    }
}

struct Observed<'a> {
    inner: &'a dyn receipt::Executor,
    observe: &'a (dyn Fn(&receipt::Step<'_>) + Sync),
}

#[async_trait::async_trait]
impl receipt::Executor for Observed<'_> {
    async fn execute(
        &self,
        step: &receipt::Step<'_>,
    ) -> Result<receipt::Outcome, error::ActionError> {
        (self.observe)(step);
        self.inner.execute(step).await
    }

    fn function_of(&self, function_arn: &str) -> Option<(String, String)> {
        self.inner.function_of(function_arn)
    }
}

/// The local webhook signing secret: `MAILROOM_WEBHOOK_SECRET` if set, else one generated once
/// and kept in `<state>/webhook-secret` so a local receiver can verify every delivery.
fn webhook_secret(state: &std::path::Path) -> anyhow::Result<String> {
    if let Ok(s) = std::env::var("MAILROOM_WEBHOOK_SECRET")
        && !s.trim().is_empty()
    {
        return Ok(s.trim().to_string());
    }
    let path = state.join("webhook-secret");
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| path.display().to_string()),
    }
    let secret = mailroom::webhook::signing::Secret::generate();
    std::fs::create_dir_all(state).with_context(|| state.display().to_string())?;
    std::fs::write(&path, format!("{secret}\n")).with_context(|| path.display().to_string())?;
    Ok(secret)
}

#[cfg(feature = "aws")]
async fn aws_ports(sink: Arc<sink::WebhookSink>) -> anyhow::Result<ports::Ports> {
    let config = mailroom::aws::sdk_config().await;
    Ok(ports::Ports {
        objects: Arc::new(mailroom::aws::S3Store::from_conf(&config)),
        publisher: Arc::new(mailroom::aws::SnsPublisher::from_conf(&config)),
        bouncer: Arc::new(mailroom::aws::SesBouncer::from_conf(&config)),
        queue: Arc::new(mailroom::aws::SqsQueue::from_conf(&config)),
        http: ports::routed_http(sink.clone())?,
        mailer: Arc::new(mailroom_forward::sender::SesV2Sender::from_conf(&config)),
        parameters: Arc::new(mailroom_forward::map::SsmParameters(config.clone())),
        metrics: Arc::new(ports::NoMetrics),
        data_keys: Arc::new(mailroom::aws::KmsDataKeys::from_conf(&config)),
        state: None,
        local_bouncer: None,
        sink,
    })
}

#[cfg(not(feature = "aws"))]
async fn aws_ports(_sink: Arc<sink::WebhookSink>) -> anyhow::Result<ports::Ports> {
    anyhow::bail!("{NO_AWS}")
}

/// What a build without the `aws` feature answers when asked to call AWS.
pub const NO_AWS: &str = "this mailroom was built without AWS support (the `aws` feature); \
     run it as `cargo run --ignore-rust-version -p mailroom-cli -- ...` (`cargo mailroom` leaves \
     the AWS SDK out to build faster)";
