//! `mailroom serve`: accepts SMTP on 127.0.0.1:2525 and runs every message through the emulated
//! SES receipt rule set, printing a trace per message.
//!
//! The SMTP server is written here rather than taken from a crate. The maintained embeddable
//! server (mailin-embedded) reads each line with an unbounded `read_until` on blocking threads
//! and has no way to stop it from a test; what the emulator needs is small (RFC 5321 without
//! relaying or AUTH) and must hold SES's limits exactly, so a bounded async session is simpler
//! and more robust: command lines ≤ 4 KiB and text lines ≤ 1 MiB, the message capped at 40 MB
//! (SIZE is advertised and checked at MAIL FROM, the data is counted while read and refused with
//! 552 past the cap without being kept), at most 100 recipients, a 5-minute idle timeout, and 20
//! bad commands before the connection is dropped.
//!
//! Like SES, recipients that no enabled rule matches are refused at RCPT time (550 5.1.1), and
//! recipients whose every matching rule has `TlsPolicy: Require` are refused without TLS
//! (530 5.7.0). STARTTLS is offered when a certificate is given (`--tls-cert`, `--tls-key`);
//! without one, such rules are exercised with `mailroom deliver --tls`.

use crate::deliver;
use anyhow::Context;
use mailroom_emulator::receipt::Envelope;
use mailroom_emulator::{Emulator, MAX_MESSAGE_BYTES};
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const MAX_COMMAND_LINE: usize = 4096;
const MAX_TEXT_LINE: usize = 1024 * 1024;
const MAX_RECIPIENTS: usize = 100;
const MAX_ERRORS: usize = 20;
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
const HOSTNAME: &str = "inbound-smtp.local.mailroom";

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

async fn serve(args: Args) -> anyhow::Result<()> {
    let acceptor = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(tls_acceptor(cert, key)?)),
        _ => None,
    };
    let emulator = Arc::new(Emulator::new(&args.settings.clone().into()).await?);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "mailroom: SMTP on {addr}, rule set {:?} from {} ({} rules); Ctrl-C stops",
            emulator.rule_set.name,
            emulator.template.display(),
            emulator.rule_set.rules.len()
        )?;
        out.flush()?;
    }
    let output = Output {
        json: args.json,
        colour: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        template: emulator.template.display().to_string(),
    };
    let output = Arc::new(output);
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
                let emulator = emulator.clone();
                let output = output.clone();
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    if let Err(e) = session(stream, peer, &emulator, &output, acceptor.as_deref()).await {
                        eprintln!("mailroom: session with {peer}: {e}");
                    }
                });
            }
            _ = tokio::signal::ctrl_c() => {
                println!("mailroom: stopped");
                return Ok(());
            }
        }
    }
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
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
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
    TooLong,
    Eof,
}

/// Reads one line (through LF) of at most `max` bytes; a longer line is consumed and reported.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Line> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if line.is_empty() && !too_long {
                Line::Eof
            } else if too_long {
                Line::TooLong
            } else {
                Line::Text(line)
            });
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        if !too_long {
            if line.len() + chunk.len() > max {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let n = chunk.len();
        r.consume(n);
        if done {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Text(line)
            });
        }
    }
}

async fn timed_line<R: AsyncBufRead + Unpin>(r: &mut R, max: usize) -> std::io::Result<Line> {
    match tokio::time::timeout(IDLE_TIMEOUT, read_line(r, max)).await {
        Ok(res) => res,
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "client idle too long",
        )),
    }
}

#[derive(Default)]
struct Transaction {
    mail_from: Option<String>,
    recipients: Vec<String>,
}

/// `<addr>` plus parameters from `MAIL FROM:` / `RCPT TO:` arguments.
fn parse_path(arg: &str) -> Option<(String, Vec<(String, String)>)> {
    let arg = arg.trim();
    let rest = arg.strip_prefix('<')?;
    let end = rest.find('>')?;
    let addr = rest[..end].trim();
    // Source routes (`<@a,@b:user@c>`) are obsolete; keep the mailbox.
    let addr = addr.rsplit(':').next().unwrap_or(addr).to_string();
    let params = rest[end + 1..]
        .split_whitespace()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_ascii_uppercase(), v.to_string()),
            None => (p.to_ascii_uppercase(), String::new()),
        })
        .collect();
    Some((addr, params))
}

fn valid_mailbox(addr: &str) -> bool {
    addr.len() <= 320
        && addr
            .rsplit_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains(['@', ' ']))
        && !addr.contains(['\r', '\n', ' ', '<', '>'])
}

async fn reply<W: AsyncWrite + Unpin>(w: &mut W, text: &str) -> std::io::Result<()> {
    w.write_all(text.as_bytes()).await?;
    w.write_all(b"\r\n").await?;
    w.flush().await
}

/// How a dialogue ended: for good, or to continue over TLS after STARTTLS.
enum Next {
    Done,
    StartTls,
}

async fn session(
    stream: TcpStream,
    peer: SocketAddr,
    emulator: &Emulator,
    output: &Output,
    acceptor: Option<&TlsAcceptor>,
) -> anyhow::Result<()> {
    let mut conn = BufReader::new(stream);
    reply(
        &mut conn,
        &format!("220 {HOSTNAME} ESMTP mailroom (local SES receiving emulator)"),
    )
    .await?;
    let next = dialogue(&mut conn, peer, emulator, output, acceptor.is_some(), false).await?;
    let (Next::StartTls, Some(acceptor)) = (next, acceptor) else {
        return Ok(());
    };
    // Anything the client pipelined after STARTTLS was sent in clear: drop the connection
    // rather than let it run inside the TLS session (RFC 3207 §4.2, command injection).
    if !conn.buffer().is_empty() {
        anyhow::bail!("data pipelined after STARTTLS; connection dropped");
    }
    let tls = tokio::time::timeout(IDLE_TIMEOUT, acceptor.accept(conn.into_inner()))
        .await
        .context("TLS handshake timed out")?
        .context("TLS handshake")?;
    let mut conn = BufReader::new(tls);
    dialogue(&mut conn, peer, emulator, output, false, true).await?;
    Ok(())
}

/// The SMTP conversation, over plain TCP or TLS. RFC 3207: after STARTTLS the client starts
/// over with EHLO, so a dialogue's state never crosses the upgrade.
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut BufReader<S>,
    peer: SocketAddr,
    emulator: &Emulator,
    output: &Output,
    can_starttls: bool,
    tls: bool,
) -> anyhow::Result<Next> {
    let mut helo: Option<String> = None;
    let mut tx = Transaction::default();
    let mut errors = 0;
    loop {
        if errors >= MAX_ERRORS {
            reply(conn, "421 4.7.0 Too many errors, closing connection").await?;
            return Ok(Next::Done);
        }
        let line = match timed_line(conn, MAX_COMMAND_LINE).await {
            Ok(Line::Text(l)) => l,
            Ok(Line::Eof) => return Ok(Next::Done),
            Ok(Line::TooLong) => {
                errors += 1;
                reply(conn, "500 5.5.2 Line too long").await?;
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                reply(conn, "421 4.4.2 Idle timeout, closing connection").await?;
                return Ok(Next::Done);
            }
            Err(e) => return Err(e.into()),
        };
        let line = String::from_utf8_lossy(&line);
        let line = line.trim_end_matches(['\r', '\n']);
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        let verb = verb.to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" | "HELO" => {
                let name = arg.trim();
                if name.is_empty() {
                    errors += 1;
                    reply(conn, &format!("501 5.5.4 {verb} needs a domain")).await?;
                    continue;
                }
                helo = Some(name.to_string());
                tx = Transaction::default();
                if verb == "EHLO" {
                    let starttls = if can_starttls { "250-STARTTLS\r\n" } else { "" };
                    reply(
                        conn,
                        &format!(
                            "250-{HOSTNAME} Hello {name}\r\n{starttls}250-SIZE {MAX_MESSAGE_BYTES}\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES"
                        ),
                    )
                    .await?;
                } else {
                    reply(conn, &format!("250 {HOSTNAME} Hello {name}")).await?;
                }
            }
            "MAIL" => {
                let Some(path) = arg
                    .get(..5)
                    .filter(|p| p.eq_ignore_ascii_case("FROM:"))
                    .and_then(|_| parse_path(&arg[5..]))
                else {
                    errors += 1;
                    reply(conn, "501 5.5.4 Syntax: MAIL FROM:<address>").await?;
                    continue;
                };
                if helo.is_none() {
                    errors += 1;
                    reply(conn, "503 5.5.1 Send EHLO or HELO first").await?;
                    continue;
                }
                if tx.mail_from.is_some() {
                    errors += 1;
                    reply(conn, "503 5.5.1 Sender already given").await?;
                    continue;
                }
                let (addr, params) = path;
                if !addr.is_empty() && !valid_mailbox(&addr) {
                    errors += 1;
                    reply(conn, "553 5.1.7 Bad sender address syntax").await?;
                    continue;
                }
                let size = params
                    .iter()
                    .find(|(k, _)| k == "SIZE")
                    .and_then(|(_, v)| v.parse::<u64>().ok());
                if size.is_some_and(|s| s > MAX_MESSAGE_BYTES as u64) {
                    reply(
                        conn,
                        "552 5.3.4 Message size exceeds fixed maximum message size",
                    )
                    .await?;
                    continue;
                }
                tx.mail_from = Some(addr);
                reply(conn, "250 2.1.0 Ok").await?;
            }
            "RCPT" => {
                let Some((addr, _)) = arg
                    .get(..3)
                    .filter(|p| p.eq_ignore_ascii_case("TO:"))
                    .and_then(|_| parse_path(&arg[3..]))
                else {
                    errors += 1;
                    reply(conn, "501 5.5.4 Syntax: RCPT TO:<address>").await?;
                    continue;
                };
                if tx.mail_from.is_none() {
                    errors += 1;
                    reply(conn, "503 5.5.1 Need MAIL before RCPT").await?;
                    continue;
                }
                if !valid_mailbox(&addr) {
                    errors += 1;
                    reply(conn, "501 5.1.3 Bad recipient address syntax").await?;
                    continue;
                }
                if tx.recipients.len() >= MAX_RECIPIENTS {
                    reply(conn, "452 4.5.3 Too many recipients").await?;
                    continue;
                }
                if !emulator.rule_set.accepts(&addr) {
                    reply(
                        conn,
                        &format!(
                            "550 5.1.1 <{addr}>: Recipient address rejected: no enabled receipt rule matches"
                        ),
                    )
                    .await?;
                    continue;
                }
                if !tls && emulator.rule_set.requires_tls(&addr) {
                    reply(
                        conn,
                        "530 5.7.0 Must issue a STARTTLS command first (TlsPolicy Require)",
                    )
                    .await?;
                    continue;
                }
                tx.recipients.push(addr);
                reply(conn, "250 2.1.5 Ok").await?;
            }
            "DATA" => {
                if tx.mail_from.is_none() || tx.recipients.is_empty() {
                    errors += 1;
                    reply(conn, "503 5.5.1 Need MAIL and RCPT before DATA").await?;
                    continue;
                }
                reply(conn, "354 End data with <CR><LF>.<CR><LF>").await?;
                let data = match read_data(conn).await {
                    Ok(d) => d,
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                        reply(conn, "421 4.4.2 Idle timeout, closing connection").await?;
                        return Ok(Next::Done);
                    }
                    Err(e) => return Err(e.into()),
                };
                let tx_done = std::mem::take(&mut tx);
                let raw = match data {
                    Data::Message(raw) => raw,
                    Data::TooLarge => {
                        reply(
                            conn,
                            "552 5.3.4 Message size exceeds fixed maximum message size",
                        )
                        .await?;
                        continue;
                    }
                    Data::LineTooLong => {
                        reply(conn, "500 5.5.2 Line too long").await?;
                        continue;
                    }
                    Data::Eof => return Ok(Next::Done),
                };
                let envelope = Envelope {
                    mail_from: tx_done.mail_from.unwrap_or_default(),
                    recipients: tx_done.recipients,
                    helo: helo.clone().unwrap_or_default(),
                    client_ip: peer.ip().to_string(),
                    tls,
                };
                let size = raw.len();
                match emulator.receive(raw, envelope).await {
                    Ok(trace) => {
                        output.trace(&trace, size);
                        reply(conn, &format!("250 2.0.0 Ok {}", trace.message_id)).await?;
                    }
                    Err(e) => {
                        let msg = format!("{e:#}").replace(['\r', '\n'], " ");
                        reply(conn, &format!("554 5.6.0 {msg}")).await?;
                    }
                }
            }
            "RSET" => {
                tx = Transaction::default();
                reply(conn, "250 2.0.0 Ok").await?;
            }
            "NOOP" => reply(conn, "250 2.0.0 Ok").await?,
            "VRFY" => {
                reply(conn, "252 2.5.2 Cannot verify, but will accept").await?;
            }
            "QUIT" => {
                reply(conn, "221 2.0.0 Bye").await?;
                return Ok(Next::Done);
            }
            "STARTTLS" if can_starttls => {
                reply(conn, "220 2.0.0 Ready to start TLS").await?;
                return Ok(Next::StartTls);
            }
            "STARTTLS" => {
                errors += 1;
                let why = if tls {
                    "503 5.5.1 TLS already active"
                } else {
                    "502 5.5.1 TLS is not configured (serve --tls-cert/--tls-key)"
                };
                reply(conn, why).await?;
            }
            _ => {
                errors += 1;
                reply(conn, "502 5.5.2 Command not recognized").await?;
            }
        }
    }
}

enum Data {
    Message(Vec<u8>),
    TooLarge,
    LineTooLong,
    Eof,
}

/// Reads DATA through the lone `.` line, undoing dot-stuffing; past the size cap the rest is
/// read and dropped so the client still gets its 552 in step.
async fn read_data<R: AsyncBufRead + Unpin>(r: &mut R) -> std::io::Result<Data> {
    let mut raw = Vec::new();
    let mut too_large = false;
    let mut too_long = false;
    loop {
        let line = match timed_line(r, MAX_TEXT_LINE).await? {
            Line::Eof => return Ok(Data::Eof),
            Line::TooLong => {
                too_long = true;
                continue;
            }
            Line::Text(l) => l,
        };
        if line == b".\r\n" || line == b".\n" {
            break;
        }
        let line = line.strip_prefix(b".").unwrap_or(&line);
        if too_large || raw.len() + line.len() > MAX_MESSAGE_BYTES {
            too_large = true;
            raw = Vec::new();
            continue;
        }
        raw.extend_from_slice(line);
    }
    Ok(if too_large {
        Data::TooLarge
    } else if too_long {
        Data::LineTooLong
    } else {
        Data::Message(raw)
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded() {
        let mut r = BufReader::new(&b"short\r\nloooooooong\r\nend"[..]);
        assert!(matches!(read_line(&mut r, 8).await.unwrap(), Line::Text(l) if l == b"short\r\n"));
        assert!(matches!(read_line(&mut r, 8).await.unwrap(), Line::TooLong));
        assert!(matches!(read_line(&mut r, 8).await.unwrap(), Line::Text(l) if l == b"end"));
        assert!(matches!(read_line(&mut r, 8).await.unwrap(), Line::Eof));
    }

    #[tokio::test]
    async fn data_is_unstuffed_and_ends_at_the_dot() {
        let mut r = BufReader::new(&b"Subject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n"[..]);
        let Data::Message(m) = read_data(&mut r).await.unwrap() else {
            panic!("message expected")
        };
        assert_eq!(m, b"Subject: x\r\n\r\n.leading dot\r\n");
        assert!(matches!(read_line(&mut r, 100).await.unwrap(), Line::Text(l) if l == b"QUIT\r\n"));
    }

    #[test]
    fn paths_and_parameters() {
        let (a, p) = parse_path("<a@b.c> SIZE=100 BODY=8BITMIME").unwrap();
        assert_eq!(a, "a@b.c");
        assert_eq!(p[0], ("SIZE".into(), "100".into()));
        assert_eq!(parse_path("<>").unwrap().0, "");
        assert_eq!(parse_path("<@relay:u@d.e>").unwrap().0, "u@d.e");
        assert!(parse_path("a@b.c").is_none());
        assert!(valid_mailbox("a@b.c"));
        assert!(!valid_mailbox("a b@c.d"));
        assert!(!valid_mailbox("nodomain"));
    }
}
