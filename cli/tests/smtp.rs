//! `mailroom serve` over real SMTP on 127.0.0.1, driven by a real client (lettre): accepted
//! mail lands where the rule set says, unmatched recipients are refused at RCPT time, mail over
//! 40 MB is refused, and the raw protocol holds its limits.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use lettre::address::Envelope;
use lettre::message::Message;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running `mailroom serve` on a free port; killed on drop.
struct Server {
    child: Child,
    port: u16,
    traces: mpsc::Receiver<String>,
    state: PathBuf,
}

impl Server {
    fn start(template: &Path, state: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mailroom"))
            .current_dir(root())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--ui",
                "127.0.0.1:0",
                "--json",
                "--template",
            ])
            .arg(template)
            .arg("--state-dir")
            .arg(state)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let banner = rx.recv_timeout(Duration::from_secs(60)).unwrap();
        let addr = banner
            .split_whitespace()
            .find(|w| w.starts_with("127.0.0.1:"))
            .unwrap_or_else(|| panic!("no address in {banner:?}"));
        let port = addr
            .trim_start_matches("127.0.0.1:")
            .trim_end_matches(',')
            .parse()
            .unwrap();
        Server {
            child,
            port,
            traces: rx,
            state: state.to_path_buf(),
        }
    }

    fn transport(&self) -> AsyncSmtpTransport<Tokio1Executor> {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(self.port)
            .timeout(Some(Duration::from_secs(120)))
            .build()
    }

    fn next_trace(&self) -> serde_json::Value {
        let line = self.traces.recv_timeout(Duration::from_secs(60)).unwrap();
        serde_json::from_str(&line).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn message(to: &str) -> Message {
    Message::builder()
        .from("Jane Sender <jane@sender.example.net>".parse().unwrap())
        .to(to.parse().unwrap())
        .subject("Hello over SMTP")
        .body(String::from(".leading dot survives\r\nHello.\r\n"))
        .unwrap()
}

#[tokio::test]
async fn accepted_rejected_and_oversize_mail() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &root().join("template.yaml"),
        &dir.path().join("state"),
        &["--param", DEAD_WEBHOOK],
    );
    let smtp = server.transport();

    // Accepted: the reply carries the SES messageId and the raw object is already in place.
    let response = smtp.send(message("support@example.com")).await.unwrap();
    assert_eq!(response.code().to_string(), "250");
    let text: String = response.message().collect::<Vec<_>>().join(" ");
    let id = text.rsplit(' ').next().unwrap().to_string();
    assert_eq!(id.len(), 40, "{text}");
    let raw = server.state.join("s3/mailroom-rawmailbucket/raw").join(&id);
    let stored = std::fs::read_to_string(&raw).unwrap();
    assert!(stored.starts_with("Return-Path: <jane@sender.example.net>\r\nReceived: from "));
    assert!(
        stored.contains("\r\n.leading dot survives\r\n"),
        "dot-unstuffed once: {stored}"
    );
    let trace = server.next_trace();
    assert_eq!(trace["messageId"], id.as_str());
    assert_eq!(
        trace["recipients"],
        serde_json::json!(["support@example.com"])
    );
    let receive = trace["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "receive")
        .unwrap();
    assert_eq!(receive["actions"].as_array().unwrap().len(), 5);

    // Rejected at RCPT: no rule takes example.net.
    let err = smtp.send(message("someone@example.net")).await.unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert_eq!(err.status().unwrap().to_string(), "550", "{err}");

    // Oversize: refused with 552, and nothing is stored.
    let mut big =
        b"From: jane@sender.example.net\r\nTo: support@example.com\r\nSubject: big\r\n\r\n"
            .to_vec();
    let line = [b'x'; 998];
    while big.len() <= 40 * 1024 * 1024 {
        big.extend_from_slice(&line);
        big.extend_from_slice(b"\r\n");
    }
    let envelope = Envelope::new(
        Some("jane@sender.example.net".parse().unwrap()),
        vec!["support@example.com".parse().unwrap()],
    )
    .unwrap();
    let before = std::fs::read_dir(server.state.join("s3/mailroom-rawmailbucket/raw"))
        .unwrap()
        .count();
    let err = smtp.send_raw(&envelope, &big).await.unwrap_err();
    assert_eq!(err.status().unwrap().to_string(), "552", "{err}");
    let after = std::fs::read_dir(server.state.join("s3/mailroom-rawmailbucket/raw"))
        .unwrap()
        .count();
    assert_eq!(before, after);

    // The server is still healthy after all that.
    smtp.send(message("support@example.com")).await.unwrap();
}

/// One SMTP exchange over a plain socket: send `line`, return the full reply.
fn exchange(stream: &mut TcpStream, reader: &mut BufReader<TcpStream>, line: &str) -> String {
    if !line.is_empty() {
        stream.write_all(line.as_bytes()).unwrap();
        stream.write_all(b"\r\n").unwrap();
    }
    let mut reply = String::new();
    loop {
        let mut l = String::new();
        reader.read_line(&mut l).unwrap();
        reply.push_str(&l);
        if l.len() < 4 || l.as_bytes()[3] != b'-' {
            return reply;
        }
    }
}

#[test]
fn protocol_limits_and_tls_policy() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &test_template("strict.yaml"),
        &dir.path().join("state"),
        &[],
    );
    let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    assert!(exchange(&mut s, &mut r, "").starts_with("220 "));
    assert!(
        exchange(&mut s, &mut r, "MAIL FROM:<a@b.c>").starts_with("503 "),
        "EHLO first"
    );
    let ehlo = exchange(&mut s, &mut r, "EHLO client.test");
    assert!(ehlo.contains("SIZE 41943040"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "no certificate, no STARTTLS");
    let size = exchange(&mut s, &mut r, "MAIL FROM:<a@b.c> SIZE=41943041");
    assert!(size.starts_with("552 5.3.4"), "{size}");
    assert!(exchange(&mut s, &mut r, "MAIL FROM:<a@b.c> SIZE=100").starts_with("250 "));
    let tls = exchange(&mut s, &mut r, "RCPT TO:<x@secure.example.com>");
    assert!(tls.starts_with("530 5.7.0"), "TlsPolicy Require: {tls}");
    let none = exchange(&mut s, &mut r, "RCPT TO:<x@elsewhere.example>");
    assert!(none.starts_with("550 5.1.1"), "{none}");
    assert!(
        exchange(&mut s, &mut r, "DATA").starts_with("503 "),
        "no recipient yet"
    );
    assert!(exchange(&mut s, &mut r, "RCPT TO:<x@plain.example.com>").starts_with("250 "));
    let long = format!("NOOP {}", "x".repeat(5000));
    assert!(exchange(&mut s, &mut r, &long).starts_with("500 5.5.2"));
    assert!(exchange(&mut s, &mut r, "DATA").starts_with("354 "));
    let done = exchange(&mut s, &mut r, "Subject: hi\r\n\r\nbody\r\n.");
    assert!(done.starts_with("250 2.0.0 Ok "), "{done}");
    let id = done.trim().rsplit(' ').next().unwrap().to_string();
    assert!(
        server
            .state
            .join("s3/strict-bucket/plain")
            .join(&id)
            .exists()
    );
    assert!(exchange(&mut s, &mut r, "QUIT").starts_with("221 "));
    let mut rest = Vec::new();
    let _ = r.read_to_end(&mut rest);
    assert!(rest.is_empty());
}

#[tokio::test]
async fn concurrent_sessions_each_get_their_own_message() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &test_template("strict.yaml"),
        &dir.path().join("state"),
        &[],
    );
    let mut tasks = Vec::new();
    for i in 0..6 {
        let smtp = server.transport();
        tasks.push(tokio::spawn(async move {
            let msg = Message::builder()
                .from("jane@sender.example.net".parse().unwrap())
                .to(format!("user{i}@plain.example.com").parse().unwrap())
                .subject(format!("message {i}"))
                .body(format!("body {i}\r\n"))
                .unwrap();
            let response = smtp.send(msg).await.unwrap();
            let text: String = response.message().collect::<Vec<_>>().join(" ");
            (i, text.rsplit(' ').next().unwrap().to_string())
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for t in tasks {
        let (i, id) = t.await.unwrap();
        let stored =
            std::fs::read_to_string(server.state.join("s3/strict-bucket/plain").join(&id)).unwrap();
        assert!(stored.contains(&format!("Subject: message {i}\r\n")));
        assert!(stored.contains(&format!("for user{i}@plain.example.com;")));
        ids.insert(id);
    }
    assert_eq!(ids.len(), 6);
}

/// Reads one SMTP reply (all its lines) from an async stream.
async fn read_reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut reply = String::new();
    loop {
        let mut l = String::new();
        r.read_line(&mut l).await.unwrap();
        reply.push_str(&l);
        if l.len() < 4 || l.as_bytes()[3] != b'-' {
            return reply;
        }
    }
}

async fn say<S: tokio::io::AsyncBufRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    line: &str,
) -> String {
    use tokio::io::AsyncWriteExt;
    s.write_all(format!("{line}\r\n").as_bytes()).await.unwrap();
    s.flush().await.unwrap();
    read_reply(s).await
}

#[tokio::test]
async fn starttls_lets_tls_required_recipients_in() {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success(), "openssl could not make a test certificate");
    let server = Server::start(
        &test_template("strict.yaml"),
        &dir.path().join("state"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );

    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let mut plain = tokio::io::BufReader::new(tcp);
    assert!(read_reply(&mut plain).await.starts_with("220 "));
    let ehlo = say(&mut plain, "EHLO client.test").await;
    assert!(ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(
        say(&mut plain, "MAIL FROM:<a@b.example>")
            .await
            .starts_with("250 ")
    );
    let refused = say(&mut plain, "RCPT TO:<x@secure.example.com>").await;
    assert!(refused.starts_with("530 5.7.0"), "{refused}");
    assert!(say(&mut plain, "STARTTLS").await.starts_with("220 "));

    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tls = connector
        .connect(
            ServerName::try_from("localhost").unwrap(),
            plain.into_inner(),
        )
        .await
        .unwrap();
    let mut tls = tokio::io::BufReader::new(tls);
    let ehlo = say(&mut tls, "EHLO client.test").await;
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(
        say(&mut tls, "MAIL FROM:<a@b.example>")
            .await
            .starts_with("250 ")
    );
    let ok = say(&mut tls, "RCPT TO:<x@secure.example.com>").await;
    assert!(ok.starts_with("250 "), "over TLS: {ok}");
    assert!(say(&mut tls, "DATA").await.starts_with("354 "));
    let done = say(&mut tls, "Subject: secret\r\n\r\nbody\r\n.").await;
    assert!(done.starts_with("250 2.0.0 Ok "), "{done}");
    let id = done.trim().rsplit(' ').next().unwrap().to_string();
    assert!(server.state.join("s3/strict-bucket").join(&id).exists());
    let trace = server.next_trace();
    assert_eq!(trace["messageId"], id.as_str());
    let secure = trace["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "secure")
        .unwrap();
    assert!(secure["skipped"].is_null(), "{secure}");
    assert!(say(&mut tls, "QUIT").await.starts_with("221 "));
}

/// `mailroom serve` on `strict.yaml` with a fresh state folder (kept while the `TempDir` lives).
fn strict(extra: &[&str]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &test_template("strict.yaml"),
        &dir.path().join("state"),
        extra,
    );
    (dir, server)
}

/// Sends `commands` round and round, each answered 250, pausing `pause` before each, until the
/// server ends the session: unprompted, or with a 421 in place of a command's answer (whichever the
/// timing gives), or 80 commands have gone; returns what it said last.
fn until_the_server_speaks(
    s: &mut TcpStream,
    r: &mut BufReader<TcpStream>,
    commands: &[&str],
    pause: Duration,
) -> String {
    for command in commands.iter().cycle().take(80) {
        if let Some(line) = unprompted(r, pause) {
            return line;
        }
        let reply = exchange(s, r, command);
        if reply.starts_with("421 ") {
            return reply;
        }
        assert!(reply.starts_with("250 "), "{command}: {reply}");
    }
    String::new()
}

/// A plain-socket client: connects and reads the greeting.
fn client(server: &Server) -> (TcpStream, BufReader<TcpStream>, String) {
    let s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut s = s;
    let greeting = exchange(&mut s, &mut r, "");
    (s, r, greeting)
}

/// A line the server sends unprompted within `wait` (a 421 before it closes), if any. Asking
/// first keeps the client from writing into a closed connection.
fn unprompted(r: &mut BufReader<TcpStream>, wait: Duration) -> Option<String> {
    r.get_ref().set_read_timeout(Some(wait)).unwrap();
    let mut line = String::new();
    let got = r.read_line(&mut line);
    r.get_ref()
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    match got {
        Ok(_) => Some(line),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// Whether the server has closed its side: a read returns nothing.
fn closed(r: &mut BufReader<TcpStream>) -> bool {
    let mut rest = Vec::new();
    match r.read_to_end(&mut rest) {
        Ok(_) => rest.is_empty(),
        // A server that closes while our last command is still unread in its socket makes the
        // kernel answer with a reset: the session ended all the same.
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted
        ),
    }
}

#[test]
fn connections_over_the_limit_are_refused_with_421() {
    let (_dir, server) = strict(&[]);
    // The default limit is 100 sessions: the 101st and later are answered 421 and closed.
    let mut held = Vec::new();
    for _ in 0..100 {
        let (s, r, greeting) = client(&server);
        assert!(greeting.starts_with("220 "), "{greeting}");
        held.push((s, r));
    }
    for _ in 0..5 {
        let (_s, mut r, greeting) = client(&server);
        assert!(greeting.starts_with("421 4.7.0"), "{greeting}");
        assert!(closed(&mut r));
    }
    // A held session still works, and once sessions end their places are free again.
    let (s, r) = &mut held[0];
    assert!(exchange(s, r, "EHLO client.test").starts_with("250"));
    for (mut s, mut r) in held.drain(..) {
        assert!(exchange(&mut s, &mut r, "QUIT").starts_with("221 "));
    }
    let greeting = (0..100)
        .map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            client(&server).2
        })
        .find(|g| g.starts_with("220 "));
    assert!(greeting.is_some(), "places were not freed");
}

#[test]
fn rejected_recipients_end_the_session() {
    let (_dir, server) = strict(&[]);
    let (mut s, mut r, _) = client(&server);
    assert!(exchange(&mut s, &mut r, "EHLO client.test").starts_with("250"));
    assert!(exchange(&mut s, &mut r, "MAIL FROM:<a@b.example>").starts_with("250 "));
    // Twenty refused recipients are twenty errors: the last is followed by 421 and the end.
    for i in 0..20 {
        let reply = exchange(&mut s, &mut r, &format!("RCPT TO:<u{i}@nowhere.example>"));
        assert!(reply.starts_with("550 "), "{reply}");
    }
    let mut bye = String::new();
    r.read_line(&mut bye).unwrap();
    assert!(bye.starts_with("421 4.7.0"), "{bye}");
    assert!(closed(&mut r));
}

#[test]
fn a_bare_lf_dot_does_not_end_data_and_nothing_is_smuggled() {
    let (_dir, server) = strict(&[]);
    let (mut s, mut r, _) = client(&server);
    assert!(exchange(&mut s, &mut r, "EHLO client.test").starts_with("250"));
    assert!(exchange(&mut s, &mut r, "MAIL FROM:<a@b.example>").starts_with("250 "));
    assert!(exchange(&mut s, &mut r, "RCPT TO:<x@plain.example.com>").starts_with("250 "));
    assert!(exchange(&mut s, &mut r, "DATA").starts_with("354 "));
    // After a bare-LF ".", a second transaction to another recipient; then the real end.
    let smuggled = "Subject: first\r\n\r\nhello\n.\nMAIL FROM:<evil@b.example>\r\nRCPT TO:<y@plain.example.com>\r\nDATA\r\nSubject: smuggled\r\n\r\nevil\r\n.";
    let done = exchange(&mut s, &mut r, smuggled);
    assert!(done.starts_with("250 2.0.0 Ok "), "{done}");
    let id = done.trim().rsplit(' ').next().unwrap().to_string();
    let stored =
        std::fs::read_to_string(server.state.join("s3/strict-bucket/plain").join(&id)).unwrap();
    assert!(
        stored.contains("hello\n.\nMAIL FROM:<evil@b.example>\r\n"),
        "{stored}"
    );
    assert!(exchange(&mut s, &mut r, "QUIT").starts_with("221 "));
    assert!(closed(&mut r), "no second reply: nothing was smuggled");
    let trace = server.next_trace();
    assert_eq!(
        trace["recipients"],
        serde_json::json!(["x@plain.example.com"])
    );
    let stored = std::fs::read_dir(server.state.join("s3/strict-bucket/plain"))
        .unwrap()
        .count();
    assert_eq!(stored, 1, "one message, not two");
}

#[test]
fn control_characters_in_helo_and_mail_from_are_refused() {
    let (_dir, server) = strict(&[]);
    let (mut s, mut r, _) = client(&server);
    let helo = exchange(&mut s, &mut r, "EHLO evil\rX-Injected: yes");
    assert!(helo.starts_with("501 "), "{helo}");
    let helo = exchange(&mut s, &mut r, "EHLO evil\0nul");
    assert!(helo.starts_with("501 "), "{helo}");
    assert!(exchange(&mut s, &mut r, "EHLO client.test").starts_with("250"));
    let from = exchange(&mut s, &mut r, "MAIL FROM:<a\x1b]0;owned\x07@b.example>");
    assert!(from.starts_with("553 "), "{from}");
}

#[test]
fn a_slow_drip_of_noops_does_not_hold_a_session() {
    let (_dir, server) = strict(&["--idle-timeout", "2", "--session-timeout", "600"]);
    let (mut s, mut r, _) = client(&server);
    assert!(exchange(&mut s, &mut r, "EHLO client.test").starts_with("250"));
    // Each NOOP comes well within the idle time, yet none of them is progress.
    let last = until_the_server_speaks(&mut s, &mut r, &["NOOP"], Duration::from_millis(500));
    assert!(last.starts_with("421 4.4.2 Idle"), "{last}");
    assert!(closed(&mut r));
}

#[test]
fn a_session_that_keeps_making_progress_still_ends() {
    let (_dir, server) = strict(&["--idle-timeout", "600", "--session-timeout", "2"]);
    let (mut s, mut r, _) = client(&server);
    assert!(exchange(&mut s, &mut r, "EHLO client.test").starts_with("250"));
    let commands = ["MAIL FROM:<a@b.example>", "RSET"];
    let last = until_the_server_speaks(&mut s, &mut r, &commands, Duration::from_millis(150));
    assert!(last.starts_with("421 4.4.2 Session time limit"), "{last}");
    assert!(closed(&mut r));
}

/// The IP address filters act before the session, as SES's do: a blocked address gets one 554
/// reply instead of the greeting, and an allow entry lets an address through its block.
#[tokio::test]
async fn ip_filters_refuse_a_blocked_client_before_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let serve = |name: &str, filters: &[&str]| {
        let args = [&["--param", DEAD_WEBHOOK][..], filters].concat();
        Server::start(&root().join("template.yaml"), &dir.path().join(name), &args)
    };
    let blocked = serve("blocked", &["--param=BlockedCidrs=127.0.0.0/8"]);
    let mut s = TcpStream::connect(("127.0.0.1", blocked.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    assert!(
        all.starts_with("554 5.7.1 ") && all.ends_with("\r\n") && all.lines().count() == 1,
        "one 554 reply, then the end: {all:?}"
    );
    let line = blocked.next_trace();
    assert_eq!(line["ipFilter"]["refused"], true, "{line}");
    assert_eq!(line["ipFilter"]["clientIp"], "127.0.0.1");
    assert_eq!(line["ipFilter"]["filter"]["name"], "BlockFilter0");
    assert_eq!(line["ipFilter"]["filter"]["cidr"], "127.0.0.0/8");
    // A real client sees a permanent refusal, and nothing reaches the rules.
    let err = blocked
        .transport()
        .send(message("support@example.com"))
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(!blocked.state.join("s3").exists(), "no rule ran");

    let allowed = serve(
        "allowed",
        &[
            "--param=BlockedCidrs=127.0.0.0/8",
            "--param=AllowedCidrs=127.0.0.1",
        ],
    );
    let response = allowed
        .transport()
        .send(message("support@example.com"))
        .await
        .unwrap();
    assert_eq!(response.code().to_string(), "250");
    let trace = allowed.next_trace();
    assert_eq!(trace["ipFilter"]["refused"], false, "{trace}");
    assert_eq!(trace["ipFilter"]["filter"]["name"], "AllowFilter0");
    assert_eq!(trace["ipFilter"]["overrides"]["name"], "BlockFilter0");
    assert!(trace["rules"].as_array().is_some_and(|r| !r.is_empty()));
}
