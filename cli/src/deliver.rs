//! `mailroom deliver FILE.eml --to rcpt@domain`: one message through the emulated SES receipt
//! rule set, without SMTP, and a readable trace of what every rule and action did and where
//! their outputs landed (`--json` for machines). Colours only when standard output is a terminal
//! (and `NO_COLOR` is unset).

use anyhow::Context;
use mailroom_emulator::receipt::{Envelope, Status, Trace, mail};
use mailroom_emulator::{Emulator, MAX_MESSAGE_BYTES};
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The raw message (.eml) to deliver, or `-` for standard input.
    pub file: PathBuf,
    /// An envelope recipient (RCPT TO); repeatable.
    #[arg(long = "to", required = true, value_name = "ADDRESS")]
    pub to: Vec<String>,
    /// The envelope sender (MAIL FROM); defaults to the message's From address.
    #[arg(long, value_name = "ADDRESS")]
    pub from: Option<String>,
    /// Treat the message as received over TLS (for rules with TlsPolicy Require).
    #[arg(long)]
    pub tls: bool,
    /// The connecting address, as the template's IP address filters see it.
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDRESS")]
    pub client_ip: std::net::IpAddr,
    /// Print the trace as JSON.
    #[arg(long)]
    pub json: bool,
    /// Transactions the inspector's record keeps, newest first (0 keeps all).
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub keep: usize,
    #[command(flatten)]
    pub settings: crate::settings::EmulatorArgs,
}

impl Args {
    fn retention(&self) -> mailroom_inspector::Retention {
        mailroom_inspector::Retention {
            max_messages: self.keep,
            max_age: None,
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(deliver(args))
}

fn read_message(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let name = file.display().to_string();
    let mut raw = Vec::new();
    let limit = (MAX_MESSAGE_BYTES + 1) as u64;
    if name == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut raw)
            .context("reading standard input")?;
    } else {
        std::fs::File::open(file)
            .with_context(|| name.clone())?
            .take(limit)
            .read_to_end(&mut raw)
            .with_context(|| name.clone())?;
    }
    Ok(raw)
}

async fn deliver(args: Args) -> anyhow::Result<()> {
    let raw = read_message(&args.file)?;
    let emulator = Emulator::new(&args.settings.clone().into()).await?;
    let mail_from = match &args.from {
        Some(f) => mail::bare_address(f),
        None => {
            let (headers, _) = mail::split_headers(&raw);
            headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("From"))
                .and_then(|h| mail::split_address_list(&h.value).into_iter().next())
                .map(|a| mail::bare_address(&a))
                .unwrap_or_default()
        }
    };
    let envelope = Envelope {
        mail_from,
        recipients: args.to.iter().map(|r| mail::bare_address(r)).collect(),
        helo: "localhost".to_string(),
        client_ip: args.client_ip.to_string(),
        tls: args.tls,
    };
    let size = raw.len();
    let sent = envelope.clone();
    // A connection the IP filters refuse has no final message: keep what was sent to record it.
    let kept = (!emulator.filters.is_empty()).then(|| raw.clone());
    // Progress goes to standard error, and only when it is a terminal.
    let progress = std::io::stderr().is_terminal();
    let show = |step: &mailroom_emulator::receipt::Step<'_>| {
        if progress {
            eprint!(
                "\r\x1b[2K  rule {} › {}…",
                step.rule.name,
                step.action.describe()
            );
        }
    };
    let trace = emulator.receive_observed(raw, envelope, &show).await;
    if progress {
        eprint!("\r\x1b[2K");
    }
    let mut trace = trace?;
    let inbox = crate::inspect::open(&args.settings.state_dir, args.retention())?;
    let reply = result_line(&trace);
    let (mut record, message) = crate::inspect::record_of(
        &mut trace,
        kept,
        mailroom_inspector::Source::Deliver,
        &sent,
        size,
        reply,
    );
    record.params.clone_from(&args.settings.template.params);
    let recorded_id = record.id.clone();
    crate::inspect::record(&inbox, record, Some(message)).await;
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut json = serde_json::to_value(&trace)?;
        json["template"] = emulator.template.display().to_string().into();
        json["size"] = size.into();
        json["webhooks"] = serde_json::to_value(emulator.sink_records())?;
        writeln!(out, "{}", serde_json::to_string_pretty(&json)?)?;
    } else {
        let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        let text = render(
            &trace,
            &emulator.template.display().to_string(),
            size,
            colour,
        );
        out.write_all(text.as_bytes())?;
        writeln!(
            out,
            "recorded for the inspector: mailroom inspect, then http://127.0.0.1:8025/message/{recorded_id}"
        )?;
    }
    out.flush()?;
    verdict(&trace)
}

/// What an SMTP client would have read at the end of this transaction.
pub fn result_line(trace: &Trace) -> String {
    match verdict(trace) {
        Ok(()) => mailroom_emulator::smtp::accepted_reply(&trace.message_id),
        Err(e) => format!("{e:#}"),
    }
}

/// Success only when the connection was let through, some recipient was taken and no action
/// failed.
pub fn verdict(trace: &Trace) -> anyhow::Result<()> {
    if let Some(d) = trace.ip_filter.as_ref().filter(|d| d.refused) {
        anyhow::bail!("{}", d.describe());
    }
    if trace.rejected.len() == trace.recipients.len() {
        anyhow::bail!(
            "no enabled rule takes {}: SES refuses it at RCPT TO (550 5.1.1)",
            mail::printable(&trace.rejected.join(", "))
        );
    }
    let failed = trace
        .rules
        .iter()
        .flat_map(|r| &r.actions)
        .filter(|a| matches!(a.status, Status::Failed { .. }))
        .count();
    if failed > 0 {
        anyhow::bail!("{failed} action(s) failed (see the trace)");
    }
    Ok(())
}

struct Paint(bool);

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }
    fn green(&self, s: &str) -> String {
        self.wrap("32", s)
    }
    fn red(&self, s: &str) -> String {
        self.wrap("31", s)
    }
    fn yellow(&self, s: &str) -> String {
        self.wrap("33", s)
    }
}

/// The human trace: rule by rule, action by action, then the result.
pub fn render(trace: &Trace, template: &str, size: usize, colour: bool) -> String {
    use std::fmt::Write as _;
    let p = Paint(colour);
    let mut s = String::new();
    // The envelope is the client's: an ESC in it must not reach the terminal raw.
    let from = if trace.mail_from.is_empty() {
        "<>".to_string()
    } else {
        mail::printable(&trace.mail_from)
    };
    let _ = writeln!(
        s,
        "{} {} ({size} bytes) from {from} to {}",
        p.bold("message"),
        if trace.message_id.is_empty() {
            "-"
        } else {
            &trace.message_id
        },
        mail::printable(&trace.recipients.join(", "))
    );
    let _ = writeln!(s, "rule set {:?} from {template}", trace.rule_set);
    if let Some(d) = &trace.ip_filter {
        let line = format!("ip filter: {}", d.describe());
        let _ = writeln!(s, "  {}", if d.refused { p.red(&line) } else { line });
    }
    if !trace.rejected.is_empty() {
        let _ = writeln!(
            s,
            "  {} {} (no enabled rule matches: SES answers 550 5.1.1 at RCPT TO)",
            p.red("rejected"),
            mail::printable(&trace.rejected.join(", "))
        );
    }
    let mut ran = 0;
    for rule in &trace.rules {
        if let Some(why) = &rule.skipped {
            let _ = writeln!(
                s,
                "{}",
                p.dim(&format!("rule {} skipped: {why}", rule.name))
            );
            continue;
        }
        let _ = writeln!(
            s,
            "{} {}  matched {}",
            p.bold("rule"),
            p.bold(&rule.name),
            rule.matched.join(", ")
        );
        for a in &rule.actions {
            ran += 1;
            let status = match &a.status {
                Status::Ok => p.green("ok"),
                Status::Failed { .. } => p.red("FAILED"),
            };
            let disposition = a
                .disposition
                .as_ref()
                .map(|d| {
                    let d = if d == "CONTINUE" {
                        d.clone()
                    } else {
                        p.yellow(d)
                    };
                    format!(" → {d}")
                })
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "  {}. {}  {status}{disposition}",
                a.index + 1,
                a.description
            );
            if let Status::Failed { error } = &a.status {
                let _ = writeln!(s, "       {}", p.red(error));
            }
            if let Some(summary) = &a.summary {
                let _ = writeln!(s, "       {}", p.dim(&truncate(summary, 400)));
            }
            for o in &a.outputs {
                let _ = writeln!(s, "       → {o}");
            }
        }
        if let Some(end) = &rule.ended_by {
            let _ = writeln!(s, "  {}", p.yellow(&format!("rule ended by {end}")));
        }
    }
    let failed = trace
        .rules
        .iter()
        .flat_map(|r| &r.actions)
        .filter(|a| matches!(a.status, Status::Failed { .. }))
        .count();
    let outcome = match (&trace.stopped, failed) {
        (_, n) if n > 0 => p.red(&format!("{n} of {ran} actions failed")),
        (Some(why), _) => p.yellow(&format!("stopped: {why}")),
        (None, _) => p.green("accepted"),
    };
    let _ = writeln!(s, "{} {outcome} ({ran} actions run)", p.bold("result"));
    s
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_never_prints_control_characters_from_the_envelope() {
        let trace = Trace {
            message_id: "m".into(),
            mail_from: "a\x1b]0;owned\x07@b.example".into(),
            recipients: vec!["x\x1b[2J@c.example".into()],
            rule_set: "set".into(),
            ip_filter: None,
            rejected: vec!["y\r\n@c.example".into()],
            rules: Vec::new(),
            stopped: None,
            final_message: Vec::new(),
        };
        let text = render(&trace, "template.yaml", 1, false);
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("from a?]0;owned?@b.example to x?[2J@c.example"));
    }
}
