//! `mailroom inspect`: the receipt inspector over an existing state dir, without SMTP; and what
//! `serve` and `deliver` use to record into it and serve it.

use anyhow::Context;
use mailroom_emulator::Emulator;
use mailroom_emulator::receipt::{Envelope, Trace};
use mailroom_inspector::web::{Invoked, Run, Runner, TemplateFile};
use mailroom_inspector::{Inbox, Inspector, Record, Retention, Source};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the inspector listens and how much it keeps (shared by `serve` and `inspect`).
#[derive(Debug, Clone, clap::Args)]
pub struct UiArgs {
    /// Address of the web inspector and its JSON API.
    #[arg(
        long = "ui",
        default_value = "127.0.0.1:8025",
        value_name = "ADDR:PORT"
    )]
    pub ui: SocketAddr,
    /// Let --ui listen on an address other hosts can reach (mail, traces and the API have no
    /// authentication).
    #[arg(long)]
    pub ui_allow_remote: bool,
    /// Transactions kept, newest first (0 keeps all).
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub keep: usize,
    /// Days a transaction is kept (none: no age limit).
    #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_days: Option<u64>,
}

impl UiArgs {
    pub fn retention(&self) -> Retention {
        Retention {
            max_messages: self.keep,
            max_age: self
                .keep_days
                .map(|d| std::time::Duration::from_secs(d * 86_400)),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The state dir whose record to browse.
    #[arg(long, default_value = ".mailroom", value_name = "DIR")]
    pub state_dir: PathBuf,
    #[command(flatten)]
    pub ui: UiArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async {
        let inbox = open(&args.state_dir, args.ui.retention())?;
        let addr = start(&args.ui, inbox.clone(), None).await?;
        println!(
            "mailroom: inspector on http://{addr}/ ({} transactions in {}); Ctrl-C stops",
            inbox.count()?,
            inbox.dir().display()
        );
        tokio::signal::ctrl_c().await?;
        Ok(())
    })
}

/// The record under `state_dir`.
pub fn open(state_dir: &Path, retention: Retention) -> anyhow::Result<Arc<Inbox>> {
    Ok(Arc::new(Inbox::open(state_dir, retention).with_context(
        || format!("opening the inspector's record in {}", state_dir.display()),
    )?))
}

/// Binds the inspector and serves it in the background; the address it got. With a `runner`,
/// its pages can inject mail and replay stored mail.
pub async fn start(
    ui: &UiArgs,
    inbox: Arc<Inbox>,
    runner: Option<Arc<dyn Runner>>,
) -> anyhow::Result<SocketAddr> {
    if !ui.ui.ip().is_loopback() {
        if !ui.ui_allow_remote {
            anyhow::bail!(
                "--ui {}: not a loopback address; add --ui-allow-remote to serve mail and traces to other hosts",
                ui.ui
            );
        }
        eprintln!(
            "mailroom: warning: the inspector on {} is reachable from other hosts, without authentication",
            ui.ui
        );
    }
    let listener = tokio::net::TcpListener::bind(ui.ui)
        .await
        .with_context(|| format!("inspector: listening on {}", ui.ui))?;
    let addr = listener.local_addr()?;
    let state = if ui.ui.ip().is_loopback() {
        Inspector::new(inbox, runner, addr.to_string())
    } else {
        Inspector::exposed(inbox, runner, addr.to_string(), ui.ui.ip())
    };
    tokio::spawn(async move {
        if let Err(e) = mailroom_inspector::web::serve(listener, state).await {
            eprintln!("mailroom: inspector stopped: {e}");
        }
    });
    Ok(addr)
}

/// Records in the background of the async runtime (SQLite and file writes block); a failure
/// is reported and never fails the mail, whose outputs are already where the rule set put them.
pub async fn record(inbox: &Arc<Inbox>, record: Record, message: Option<Vec<u8>>) {
    let id = record.id.clone();
    if let Err(e) = add(inbox, record, message).await {
        eprintln!("mailroom: inspector: not recorded {id}: {e}");
    }
}

/// Adds a record on the blocking pool (SQLite and file writes).
async fn add(inbox: &Arc<Inbox>, record: Record, message: Option<Vec<u8>>) -> Result<(), String> {
    let inbox = inbox.clone();
    tokio::task::spawn_blocking(move || inbox.add(&record, message.as_deref()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// The record of one run of the rule set, and the message to keep with it: what SES stored, or,
/// when an IP filter refused the connection and no rule ran, `sent` (the message as sent, kept
/// by the caller for that case).
pub fn record_of(
    trace: &mut Trace,
    sent: Option<Vec<u8>>,
    source: Source,
    envelope: &Envelope,
    size: usize,
    reply: String,
) -> (Record, Vec<u8>) {
    let message = match std::mem::take(&mut trace.final_message) {
        m if m.is_empty() => sent.unwrap_or_default(),
        m => m,
    };
    let record = Record::from_trace(trace, source, envelope, &message, size, reply);
    (record, message)
}

/// Injected and replayed mail for `serve`'s inspector: through the server's own emulator, or,
/// when a replay changes template parameters, through one built for that run.
pub struct EmulatorRunner {
    emulator: Arc<Emulator>,
    settings: mailroom_emulator::Settings,
    inbox: Arc<Inbox>,
    /// The template file's digest when the server's emulator read it.
    loaded_digest: Option<String>,
}

impl EmulatorRunner {
    /// A runner over the server's emulator, built from `settings` just now.
    pub fn new(
        emulator: Arc<Emulator>,
        settings: mailroom_emulator::Settings,
        inbox: Arc<Inbox>,
    ) -> EmulatorRunner {
        EmulatorRunner {
            loaded_digest: TemplateFile::digest_of(&settings.template),
            emulator,
            settings,
            inbox,
        }
    }
}

impl EmulatorRunner {
    /// The server's emulator, or, with parameters or when the template is to be read again, one
    /// built for them from the template on disk now (and how that template is named for the
    /// record).
    async fn emulator_for(
        &self,
        params: &[(String, String)],
        from_disk: bool,
    ) -> Result<(Arc<Emulator>, Option<String>), String> {
        if params.is_empty() && !from_disk {
            return Ok((self.emulator.clone(), None));
        }
        let mut settings = self.settings.clone();
        for (k, v) in params {
            settings.params.retain(|(name, _)| name != k);
            settings.params.push((k.clone(), v.clone()));
        }
        let digest = TemplateFile::digest_of(&settings.template);
        let fresh = Emulator::new(&settings).await.map_err(|e| {
            format!(
                "{} with these parameters: {e:#}",
                settings.template.display()
            )
        })?;
        let template = format!(
            "{} (sha256 {})",
            settings.template.display(),
            digest.as_deref().unwrap_or("unreadable")
        );
        Ok((Arc::new(fresh), Some(template)))
    }

    /// The emulator a recorded run went through: a replay's parameters and template again, so
    /// that running one of its functions once more (or its queued retry) sends where it sent.
    async fn emulator_of(
        &self,
        record: &Record,
    ) -> Result<(Arc<Emulator>, Option<String>), String> {
        self.emulator_for(&record.params, record.template.is_some())
            .await
    }
}

#[async_trait::async_trait]
impl Runner for EmulatorRunner {
    async fn run(&self, run: Run) -> Result<Record, String> {
        // A replay reads the template from disk again, so that an edited rule shows in the
        // comparison without a restart; injected mail goes through the server's own rule set.
        let replay = matches!(run.source, Source::Replay);
        let (emulator, template) = self.emulator_for(&run.params, replay).await?;
        let size = run.raw.len();
        let kept = (!emulator.filters.is_empty()).then(|| run.raw.clone());
        let mut trace = emulator
            .receive(run.raw, run.envelope.clone())
            .await
            .map_err(|e| format!("{e:#}"))?;
        let reply = crate::deliver::result_line(&trace);
        let (mut record, message) =
            record_of(&mut trace, kept, run.source, &run.envelope, size, reply);
        record.params = run.params;
        record.template = template;
        add(&self.inbox, record.clone(), Some(message)).await?;
        Ok(record)
    }

    async fn invoke(
        &self,
        record: &Record,
        logical_id: &str,
        event: &serde_json::Value,
    ) -> Result<Invoked, String> {
        let event: mailroom::SesEvent = serde_json::from_value(event.clone())
            .map_err(|e| format!("the recorded event does not read as an SES event: {e}"))?;
        let started = std::time::Instant::now();
        let (emulator, _) = self.emulator_of(record).await?;
        let (answer, outputs) = emulator.invoke(logical_id, &event).await?;
        Ok(invoked(logical_id, answer, outputs, started))
    }

    fn events_dir(&self) -> Option<PathBuf> {
        let dir = self.settings.template.parent()?;
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        Some(dir.join("events").join("lambda"))
    }

    fn template(&self) -> Option<TemplateFile> {
        Some(TemplateFile {
            path: self.settings.template.display().to_string(),
            changed: TemplateFile::digest_of(&self.settings.template) != self.loaded_digest,
        })
    }

    fn retries(&self, logical_id: &str) -> Option<mailroom_emulator::functions::Retries> {
        self.emulator.retries(logical_id)
    }

    async fn retry_now(
        &self,
        record: &Record,
        logical_id: &str,
        job: &Path,
    ) -> Result<Invoked, String> {
        let started = std::time::Instant::now();
        let (emulator, _) = self.emulator_of(record).await?;
        let (answer, outputs) = emulator.retry_now(logical_id, job).await?;
        Ok(invoked(logical_id, answer, outputs, started))
    }
}

fn invoked(
    logical_id: &str,
    answer: String,
    outputs: Vec<String>,
    started: std::time::Instant,
) -> Invoked {
    Invoked {
        logical_id: logical_id.to_string(),
        answer,
        outputs,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    }
}
