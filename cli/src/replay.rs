//! `mailroom replay`: re-drives the api function's dead-lettered webhook deliveries, and runs
//! the forward function's dead-lettered SES events again when its configuration
//! (`MAILROOM_FORWARD_FROM` and the rest) is in the environment.
//!
//! Each dead letter's job goes back to the retry queue as a fresh first attempt (or, with `--now`,
//! is attempted from here with the api function's configuration from the environment), and is
//! deleted from the DLQ only after that succeeded. The raw mail never left S3, so the payload is
//! rebuilt from it exactly as the function would.

use anyhow::Context;
use clap::Parser;
#[cfg(feature = "aws")]
use mailroom::aws::SqsQueue;
use mailroom::config::{self, ProcessEnv};
use mailroom::layout::Locations;
#[cfg(feature = "aws")]
use mailroom::webhook::http::ReqwestSender;
use mailroom_api::replay::Options;
#[cfg(feature = "aws")]
use mailroom_api::replay::{Reinvoke, replay_with};
#[cfg(feature = "aws")]
use mailroom_api::{Config, Deps};
use mailroom_api::{DLQ_VAR, PER_RECIPIENT_VAR, RETRY_QUEUE_VAR};

#[derive(Debug, Parser)]
pub struct Args {
    /// The dead-letter queue URL [default: $MAILROOM_DLQ_URL].
    #[arg(long)]
    dlq_url: Option<String>,
    /// The retry queue URL [default: $MAILROOM_RETRY_QUEUE_URL].
    #[arg(long)]
    retry_queue_url: Option<String>,
    /// Attempt each delivery from here instead of queueing it (needs the api function's
    /// MAILROOM_* configuration and AWS access to the raw-mail bucket).
    #[arg(long)]
    now: bool,
    /// Show what would be replayed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replay at most this many letters.
    #[arg(long)]
    max: Option<usize>,
}

fn pick(flag: Option<String>, var: &str) -> anyhow::Result<String> {
    flag.or_else(|| config::optional(&ProcessEnv, var))
        .with_context(|| format!("pass --{} or set {var}", var_flag(var)))
}

fn var_flag(var: &str) -> &'static str {
    if var == DLQ_VAR {
        "dlq-url"
    } else {
        "retry-queue-url"
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_async(args))
}

async fn run_async(args: Args) -> anyhow::Result<()> {
    let opts = Options {
        dlq_url: pick(args.dlq_url, DLQ_VAR)?,
        retry_queue_url: pick(args.retry_queue_url, RETRY_QUEUE_VAR)?,
        dry_run: args.dry_run,
        max: args.max,
        // Only needed for Lambda on-failure records of SES events; absent, those are skipped.
        locations: Locations::from_env(&ProcessEnv).ok(),
        per_recipient: config::flag(&ProcessEnv, PER_RECIPIENT_VAR, false)?,
        mailboxes: mailroom_api::mailboxes(&ProcessEnv)?,
    };
    redrive(args.now, args.dry_run, opts).await
}

#[cfg(not(feature = "aws"))]
async fn redrive(_now: bool, _dry_run: bool, _opts: Options) -> anyhow::Result<()> {
    anyhow::bail!("{}", mailroom_emulator::NO_AWS)
}

#[cfg(feature = "aws")]
async fn redrive(now: bool, dry_run: bool, opts: Options) -> anyhow::Result<()> {
    let sdk = mailroom::aws::sdk_config().await;
    let queue = SqsQueue::from_conf(&sdk);
    let forward = match config::optional(&ProcessEnv, mailroom_forward::FROM_VAR) {
        Some(_) => Some(Forward::new(&sdk)?),
        None => {
            eprintln!(
                "mailroom: {} is not set: the forward function's dead-lettered events are left in the queue",
                mailroom_forward::FROM_VAR
            );
            None
        }
    };
    let reinvokers: Vec<&dyn Reinvoke> = forward.iter().map(|f| f as &dyn Reinvoke).collect();
    let items = if now && !dry_run {
        let config = Config::from_env(&ProcessEnv).context("reading the api configuration")?;
        let config = Config {
            dlq_url: opts.dlq_url.clone(),
            retry_queue_url: opts.retry_queue_url.clone(),
            ..config
        };
        let config = mailroom_api::secrets::resolve(config, &sdk).await?;
        let store = mailroom::aws::mail_store(&sdk, config.locations.kms_key.as_deref());
        let http = ReqwestSender::new()?;
        let deps = Deps {
            store: &store,
            queue: &queue,
            http: &http,
        };
        replay_with(&queue, &opts, Some((&config, deps)), &reinvokers).await?
    } else {
        replay_with(&queue, &opts, None, &reinvokers).await?
    };
    for item in &items {
        println!("{}", serde_json::to_string(item)?);
    }
    let verb = if dry_run { "would replay" } else { "replayed" };
    let skipped = items.iter().filter(|i| i.action == "skipped").count();
    eprintln!(
        "mailroom: {verb} {} dead letter(s), skipped {skipped}",
        items.len() - skipped
    );
    Ok(())
}

/// The forward function, wired as its `main.rs` wires it, for its dead-lettered events: its
/// markers make the second run send only to the destinations the first did not reach.
#[cfg(feature = "aws")]
struct Forward {
    config: mailroom_forward::Config,
    aws: mailroom_forward::AwsAdapters,
    maps: mailroom_forward::map::MapCache,
}

#[cfg(feature = "aws")]
impl Forward {
    fn new(sdk: &mailroom::aws::SdkConfig) -> anyhow::Result<Forward> {
        let config = mailroom_forward::Config::from_env(&ProcessEnv)
            .context("reading the forward function's configuration")?;
        Ok(Forward {
            maps: config.map_cache(),
            aws: mailroom_forward::AwsAdapters::from_conf(sdk, config.locations.kms_key.as_deref()),
            config,
        })
    }
}

#[cfg(feature = "aws")]
#[async_trait::async_trait]
impl Reinvoke for Forward {
    fn function(&self) -> &'static str {
        "forward"
    }

    async fn reinvoke(&self, event: &mailroom::SesEvent) -> Result<String, String> {
        let deps = self.aws.deps(&self.maps);
        let report = mailroom_forward::handle(event, &self.config, deps)
            .await
            .map_err(|e| e.to_string())?;
        serde_json::to_string(&report.outcomes).map_err(|e| e.to_string())
    }
}
