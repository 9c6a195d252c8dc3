//! `mailroom parse FILE|-`: raw MIME in, the `mailroom.email/1` JSON model out.

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use mailroom::{Email, Limits, SesEvent};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The raw message to parse, or `-` for standard input.
    pub file: PathBuf,
    /// Print indented JSON (the default when standard output is a terminal).
    #[arg(long, conflicts_with = "compact")]
    pub pretty: bool,
    /// Print the JSON on one line (the default when standard output is not a terminal).
    #[arg(long)]
    pub compact: bool,
    /// An SES Lambda event (JSON) whose first record supplies envelope and verdicts.
    #[arg(long, value_name = "EVENT.json")]
    pub ses_event: Option<PathBuf>,
    /// Largest message accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_size)]
    pub max_size: usize,
    /// Most MIME parts walked.
    #[arg(long, default_value_t = Limits::default().max_parts)]
    pub max_parts: usize,
    /// Deepest multipart / message/rfc822 nesting walked.
    #[arg(long, default_value_t = Limits::default().max_depth)]
    pub max_depth: usize,
    /// Largest top-level header block accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_header_bytes)]
    pub max_header_bytes: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let limits = Limits {
        max_size: args.max_size,
        max_parts: args.max_parts,
        max_depth: args.max_depth,
        max_header_bytes: args.max_header_bytes,
    };
    let name = args.file.display().to_string();
    let raw = read_input(&args.file, limits.max_size)?;
    let parsed = Email::parse(&raw, &limits).with_context(|| name.clone())?;
    let mut email = parsed.email;
    if let Some(event) = &args.ses_event {
        let json = std::fs::read(event).with_context(|| format!("{}", event.display()))?;
        let event: SesEvent = serde_json::from_slice(&json)
            .with_context(|| format!("{}: not an SES event", event.display()))?;
        let record = event
            .records
            .first()
            .context("the SES event has no records")?;
        email.apply_ses(&record.ses);
    }

    let pretty = args.pretty || (!args.compact && std::io::stdout().is_terminal());
    let mut out = std::io::stdout().lock();
    if pretty {
        serde_json::to_writer_pretty(&mut out, &email)?;
    } else {
        serde_json::to_writer(&mut out, &email)?;
    }
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// Reads at most `max_size + 1` bytes, so an oversized input is refused without being loaded.
fn read_input(path: &PathBuf, max_size: usize) -> anyhow::Result<Vec<u8>> {
    let cap = max_size.saturating_add(1) as u64;
    let mut raw = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(cap)
            .read_to_end(&mut raw)
            .context("reading standard input")?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(cap).read_to_end(&mut raw))
            .with_context(|| format!("{}", path.display()))?;
    }
    Ok(raw)
}
