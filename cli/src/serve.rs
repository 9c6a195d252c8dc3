//! `mailroom serve`: accepts SMTP on 127.0.0.1:2525 and runs every message through the emulated
//! SES receipt rule set, printing a trace per message.
//!
//! The dialogue itself is the emulator's pure state machine ([`mailroom_emulator::smtp`]); this
//! is the I/O around it: bounded line reads, replies, the message spooled to a temporary file,
//! STARTTLS, and time. The SMTP server is written here rather than taken from a crate: the
//! maintained embeddable server (mailin-embedded) reads each line with an unbounded `read_until`
//! on blocking threads and has no way to stop it from a test, and the emulator must hold SES's
//! limits exactly.
//!
//! A connection from an address the template's IP address filters block is answered 554 and
//! closed before the session starts, as SES refuses it; it holds no connection slot.
//!
//! What one client can take is bounded: at most `--max-connections` sessions at once (more are
//! answered 421 and closed), each for at most `--session-timeout`, ended after `--idle-timeout`
//! without progress (NOOPs, rejected commands and repeated EHLOs are not progress). Message data
//! goes to an anonymous temporary file while it arrives, and only [`MAX_DELIVERIES`] messages are
//! read back and run through the rule set at once, so parallel large messages do not multiply
//! memory.
//!
//! STARTTLS is offered when a certificate is given (`--tls-cert`, `--tls-key`); without one,
//! `TlsPolicy: Require` rules are exercised with `mailroom deliver --tls`.

use crate::deliver;
use anyhow::Context;
use mailroom_emulator::Emulator;
use mailroom_emulator::receipt::Envelope;
use mailroom_emulator::smtp::{Event, Input, Session, Step, Timeout};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncSeekExt, AsyncWrite, AsyncWriteExt, BufReader,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

/// Messages run through the rule set at once; the others wait with their data on disk.
const MAX_DELIVERIES: usize = 2;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to accept SMTP on.
    #[arg(long, default_value = "127.0.0.1:2525", value_name = "ADDR:PORT")]
    pub listen: SocketAddr,
    /// Print each message's trace as one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
    /// PEM certificate chain: offer STARTTLS (with --tls-key).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Sessions held at once; further connections are answered 421 and closed.
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_connections: u32,
    /// Seconds a session may go without progress (a command that moves the transaction on, or
    /// message data) before it is closed.
    #[arg(long, default_value_t = 300, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
    /// Seconds a session may last in all, whatever it does.
    #[arg(long, default_value_t = 1800, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
    pub session_timeout: u64,
    /// Serve no web inspector (transactions are still recorded for `mailroom inspect`).
    #[arg(long)]
    pub no_ui: bool,
    #[command(flatten)]
    pub ui: crate::inspect::UiArgs,
    #[command(flatten)]
    pub settings: crate::settings::EmulatorArgs,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(args))
}

/// The warning for a listener other hosts can reach: `serve` accepts mail for any recipient the
/// template's rules name, relays nothing but runs every function on it, and has no
/// authentication, so it should not face a network by accident.
fn exposure_warning(addr: SocketAddr) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!(
            "mailroom: warning: listening on {addr}, reachable from other hosts: anyone who can \
             connect can send mail through the emulator's rule set (no authentication). Use \
             --listen 127.0.0.1:PORT unless that is what you want."
        )
    })
}

/// What every session shares.
struct Server {
    emulator: Arc<Emulator>,
    output: Output,
    acceptor: Option<TlsAcceptor>,
    idle: Duration,
    lifetime: Duration,
    /// Messages being read back from their spool and run through the rule set.
    deliveries: Semaphore,
    /// Every transaction, for the inspector.
    inbox: Arc<mailroom_inspector::Inbox>,
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let acceptor = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls_acceptor(cert, key)?),
        _ => None,
    };
    let settings: mailroom_emulator::Settings = args.settings.clone().into();
    let emulator = Arc::new(Emulator::new(&settings).await?);
    let inbox = crate::inspect::open(&args.settings.state_dir, args.ui.retention())?;
    let ui = if args.no_ui {
        None
    } else {
        let runner = Arc::new(crate::inspect::EmulatorRunner::new(
            emulator.clone(),
            settings,
            inbox.clone(),
        ));
        Some(crate::inspect::start(&args.ui, inbox.clone(), Some(runner)).await?)
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    if let Some(warning) = exposure_warning(addr) {
        eprintln!("{warning}");
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "mailroom: SMTP on {addr}, rule set {:?} from {} ({} rules{}){}; Ctrl-C stops",
            emulator.rule_set.name,
            emulator.template.display(),
            emulator.rule_set.rules.len(),
            match emulator.filters.len() {
                0 => String::new(),
                1 => ", 1 IP address filter".to_string(),
                n => format!(", {n} IP address filters"),
            },
            match ui {
                Some(ui) => format!(", inspector on http://{ui}/"),
                None => String::new(),
            }
        )?;
        out.flush()?;
    }
    let output = Output {
        json: args.json,
        colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        template: emulator.template.display().to_string(),
    };
    let server = Arc::new(Server {
        emulator,
        output,
        acceptor,
        idle: Duration::from_secs(args.idle_timeout),
        lifetime: Duration::from_secs(args.session_timeout),
        deliveries: Semaphore::new(MAX_DELIVERIES),
        inbox,
    });
    let connections = Arc::new(Semaphore::new(args.max_connections as usize));
    let mut refused: u64 = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        eprintln!("mailroom: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if let Some(d) = server.emulator.ip_filter(peer.ip()).filter(|d| d.refused) {
                    let reply = Session::refused_greeting();
                    refuse(&stream, &reply);
                    server.output.refused(&d);
                    let server = server.clone();
                    tokio::spawn(async move {
                        let record = connection_refused(&d, peer, reply);
                        crate::inspect::record(&server.inbox, record, None).await;
                    });
                    continue;
                }
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    refused += 1;
                    refuse(&stream, &format!(
                        "421 4.7.0 {} Too many connections, try again later",
                        mailroom_emulator::smtp::HOSTNAME
                    ));
                    continue;
                };
                let server = server.clone();
                tokio::spawn(async move {
                    let _held = permit;
                    if let Err(e) = session(stream, peer, &server).await {
                        eprintln!("mailroom: session with {peer}: {e}");
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => {
                println!("mailroom: stopped ({refused} connections refused over --max-connections)");
                return Ok(());
            }
        }
    }
}

/// Answers a connection with one reply and drops it. The write does not wait: a fresh socket's
/// send buffer takes one line, and a client that cannot take it loses nothing but the reason.
fn refuse(stream: &TcpStream, reply: &str) {
    let _ = stream.try_write(format!("{reply}\r\n").as_bytes());
}

/// A TLS acceptor from PEM files, with an explicit crypto provider (several are linked in).
fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<TlsAcceptor> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{}: not a PEM certificate chain", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{}: no certificate in it", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("{}: not a PEM private key", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("TLS certificate and key do not fit together")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

struct Output {
    json: bool,
    colour: bool,
    template: String,
}

impl Output {
    /// A connection the IP address filters refused: it has no message, so no trace.
    fn refused(&self, decision: &mailroom_emulator::receipt::FilterDecision) {
        let text = if self.json {
            format!("{}\n", serde_json::json!({ "ipFilter": decision }))
        } else {
            format!("connection from {}\n", decision.describe())
        };
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    fn trace(&self, trace: &mailroom_emulator::receipt::Trace, size: usize) {
        let text = if self.json {
            let mut v = serde_json::to_value(trace).unwrap_or_default();
            v["size"] = size.into();
            format!("{v}\n")
        } else {
            deliver::render(trace, &self.template, size, self.colour)
        };
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }
}

enum Line {
    Text(Vec<u8>),
    TooLong { crlf: bool },
    Eof,
}

/// Reads one line (through LF) of at most `max` bytes; a longer line is consumed and reported.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    let mut last = 0u8;
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if too_long {
                Line::TooLong { crlf: false }
            } else if line.is_empty() {
                Line::Eof
            } else {
                Line::Text(line)
            });
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        let crlf = match chunk {
            [.., b'\r', b'\n'] => true,
            [b'\n'] => last == b'\r',
            _ => false,
        };
        last = chunk.last().copied().unwrap_or(last);
        if !too_long {
            if line.len() + chunk.len() > max {
                too_long = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let n = chunk.len();
        r.consume(n);
        if done {
            return Ok(if too_long {
                Line::TooLong { crlf }
            } else {
                Line::Text(line)
            });
        }
    }
}

/// The session's two clocks: progress (idle) and the whole session (lifetime).
struct Clock {
    idle: Duration,
    last_progress: Instant,
    end_of_life: Instant,
}

impl Clock {
    fn deadline(&self) -> Instant {
        (self.last_progress + self.idle).min(self.end_of_life)
    }

    fn why(&self) -> Timeout {
        if self.end_of_life <= self.last_progress + self.idle {
            Timeout::Lifetime
        } else {
            Timeout::Idle
        }
    }
}

/// Sends one reply. A client that does not read its replies gets the idle time to start.
async fn reply<W: AsyncWrite + Unpin>(w: &mut W, text: &str, idle: Duration) -> anyhow::Result<()> {
    // One write per reply: a reply split over two segments waits, under Nagle's algorithm, for
    // the client's delayed ACK of the first (up to 40 ms a reply).
    let line = format!("{text}\r\n");
    let write = async {
        w.write_all(line.as_bytes()).await?;
        w.flush().await
    };
    tokio::time::timeout(idle, write)
        .await
        .context("client does not read its replies")?
        .context("writing a reply")
}

/// How a dialogue ended: for good, or to continue over TLS after STARTTLS.
enum Next {
    Done,
    StartTls,
}

async fn session(stream: TcpStream, peer: SocketAddr, server: &Server) -> anyhow::Result<()> {
    // Replies are whole lines written at once; nothing is gained by holding them back.
    let _ = stream.set_nodelay(true);
    let now = Instant::now();
    let mut clock = Clock {
        idle: server.idle,
        last_progress: now,
        end_of_life: now + server.lifetime,
    };
    let rules = &server.emulator.rule_set;
    let ip = peer.ip().to_string();
    let mut conn = BufReader::new(stream);
    reply(&mut conn, &Session::greeting(), server.idle).await?;
    let plain = Session::new(rules, ip.clone(), server.acceptor.is_some(), false);
    let next = dialogue(&mut conn, plain, server, &mut clock).await?;
    let (Next::StartTls, Some(acceptor)) = (next, &server.acceptor) else {
        return Ok(());
    };
    // Anything the client pipelined after STARTTLS was sent in clear: drop the connection
    // rather than let it run inside the TLS session (RFC 3207 §4.2, command injection).
    if !conn.buffer().is_empty() {
        anyhow::bail!("data pipelined after STARTTLS; connection dropped");
    }
    let tls = tokio::time::timeout_at(clock.deadline(), acceptor.accept(conn.into_inner()))
        .await
        .context("TLS handshake timed out")?
        .context("TLS handshake")?;
    let mut conn = BufReader::new(tls);
    dialogue(
        &mut conn,
        Session::new(rules, ip, false, true),
        server,
        &mut clock,
    )
    .await?;
    Ok(())
}

/// Reads lines into the session and carries out what it answers, until it ends.
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut BufReader<S>,
    mut session: Session<'_>,
    server: &Server,
    clock: &mut Clock,
) -> anyhow::Result<Next> {
    let mut spool: Option<Spool> = None;
    loop {
        let read = tokio::time::timeout_at(clock.deadline(), read_line(conn, session.max_line()));
        let line;
        let step = match read.await {
            Err(_) => session.timed_out(clock.why()),
            Ok(Ok(Line::Eof)) => return Ok(Next::Done),
            Ok(Ok(Line::TooLong { crlf })) => session.feed(Input::TooLong { crlf }),
            Ok(Ok(Line::Text(l))) => {
                line = l;
                session.feed(Input::Line(&line))
            }
            Ok(Err(e)) => return Err(e.into()),
        };
        if step.progress {
            clock.last_progress = Instant::now();
        }
        for event in step.events {
            match event {
                Event::Reply(text) => reply(conn, &text, server.idle).await?,
                Event::Data(bytes) => match &mut spool {
                    Some(s) => s.write(bytes).await?,
                    None => spool = Some(Spool::new(bytes).await?),
                },
                Event::Discard => spool = None,
                Event::Message(envelope) => {
                    let outcome = run_message(server, spool.take(), envelope).await;
                    let Step { events, progress } = session.delivered(outcome);
                    if progress {
                        clock.last_progress = Instant::now();
                    }
                    for event in events {
                        if let Event::Reply(text) = event {
                            reply(conn, &text, server.idle).await?;
                        }
                    }
                }
                Event::Refused(refusal) => {
                    let record = mailroom_inspector::Record::refused(&refusal);
                    crate::inspect::record(&server.inbox, record, None).await;
                }
                Event::StartTls => return Ok(Next::StartTls),
                Event::Close => return Ok(Next::Done),
            }
        }
    }
}

/// Reads the message back from its spool and runs it through the rule set, a few at a time.
async fn run_message(
    server: &Server,
    spool: Option<Spool>,
    envelope: Envelope,
) -> Result<String, String> {
    let _turn = server
        .deliveries
        .acquire()
        .await
        .map_err(|e| e.to_string())?;
    let raw = match spool {
        Some(s) => s
            .into_bytes()
            .await
            .map_err(|e| format!("reading the spooled message back: {e}"))?,
        None => Vec::new(),
    };
    let size = raw.len();
    let sent = envelope.clone();
    match server.emulator.receive(raw, envelope).await {
        Ok(mut trace) => {
            server.output.trace(&trace, size);
            let reply = mailroom_emulator::smtp::accepted_reply(&trace.message_id);
            let (record, message) = crate::inspect::record_of(
                &mut trace,
                None,
                mailroom_inspector::Source::Smtp,
                &sent,
                size,
                reply,
            );
            crate::inspect::record(&server.inbox, record, Some(message)).await;
            Ok(trace.message_id)
        }
        Err(e) => {
            let why = format!("{e:#}");
            let record = mailroom_inspector::Record::without_message(
                mailroom_inspector::Source::Smtp,
                &sent,
                mailroom_emulator::smtp::failed_reply(&why),
                "failed",
            );
            crate::inspect::record(&server.inbox, record, None).await;
            Err(why)
        }
    }
}

/// The record of a connection an IP address filter refused before the session.
fn connection_refused(
    decision: &mailroom_emulator::receipt::FilterDecision,
    peer: SocketAddr,
    reply: String,
) -> mailroom_inspector::Record {
    let envelope = Envelope {
        mail_from: String::new(),
        recipients: Vec::new(),
        helo: String::new(),
        client_ip: peer.ip().to_string(),
        tls: false,
    };
    let mut record = mailroom_inspector::Record::without_message(
        mailroom_inspector::Source::Smtp,
        &envelope,
        reply,
        "refused",
    );
    record.trace = Some(serde_json::json!({ "ipFilter": decision, "rules": [] }));
    record
}

/// Message data as it arrives, in an anonymous temporary file (gone when dropped), so a slow
/// client's 40 MB sit on disk rather than in memory.
struct Spool {
    file: tokio::io::BufWriter<tokio::fs::File>,
    len: usize,
}

impl Spool {
    async fn new(first: &[u8]) -> std::io::Result<Spool> {
        let file = tokio::task::spawn_blocking(tempfile::tempfile)
            .await
            .map_err(std::io::Error::other)??;
        let mut spool = Spool {
            file: tokio::io::BufWriter::new(tokio::fs::File::from_std(file)),
            len: 0,
        };
        spool.write(first).await?;
        Ok(spool)
    }

    async fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.len += bytes.len();
        self.file.write_all(bytes).await
    }

    async fn into_bytes(mut self) -> std::io::Result<Vec<u8>> {
        self.file.flush().await?;
        let mut file = self.file.into_inner();
        file.seek(std::io::SeekFrom::Start(0)).await?;
        let mut raw = Vec::with_capacity(self.len);
        tokio::io::AsyncReadExt::read_to_end(&mut file, &mut raw).await?;
        Ok(raw)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_a_listener_off_the_loopback_is_warned_about() {
        for quiet in ["127.0.0.1:2525", "127.8.9.10:25", "[::1]:2525"] {
            assert_eq!(exposure_warning(quiet.parse().unwrap()), None, "{quiet}");
        }
        for open in ["0.0.0.0:2525", "[::]:25", "192.0.2.7:2525"] {
            let w = exposure_warning(open.parse().unwrap()).expect(open);
            assert!(w.contains("reachable from other hosts"), "{w}");
        }
    }

    #[tokio::test]
    async fn lines_are_bounded() {
        let mut r = BufReader::new(&b"short\r\nloooooooong\r\nlooooooooong\nend"[..]);
        assert!(matches!(read_line(&mut r, 8).await.unwrap(), Line::Text(l) if l == b"short\r\n"));
        assert!(matches!(
            read_line(&mut r, 8).await.unwrap(),
            Line::TooLong { crlf: true }
        ));
        assert!(matches!(
            read_line(&mut r, 8).await.unwrap(),
            Line::TooLong { crlf: false }
        ));
        assert!(matches!(read_line(&mut r, 8).await.unwrap(), Line::Text(l) if l == b"end"));
        assert!(matches!(read_line(&mut r, 8).await.unwrap(), Line::Eof));
    }

    #[tokio::test]
    async fn a_crlf_split_across_reads_is_seen() {
        let mut r = BufReader::with_capacity(4, &b"0123456\r\nx"[..]);
        assert!(matches!(
            read_line(&mut r, 4).await.unwrap(),
            Line::TooLong { crlf: true }
        ));
    }

    #[tokio::test]
    async fn the_spool_gives_back_what_was_written() {
        let mut spool = Spool::new(b"Subject: x\r\n").await.unwrap();
        spool.write(b"\r\nbody\r\n").await.unwrap();
        assert_eq!(
            spool.into_bytes().await.unwrap(),
            b"Subject: x\r\n\r\nbody\r\n"
        );
    }
}
