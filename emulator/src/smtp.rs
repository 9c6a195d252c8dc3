//! The SMTP session of `mailroom serve` as a pure state machine: it is fed one line at a time
//! (or "that line was too long", or "time is up") and answers with [`Event`]s: replies to send,
//! message bytes to spool, a finished message to hand to the rule set, a TLS upgrade, the end of
//! the connection. It does no I/O and reads no clock, so every rule of the dialogue is tested
//! here line by line; the server around it (`mailroom serve`) only reads lines, writes replies,
//! spools data and keeps time.
//!
//! What it holds (RFC 5321 without relaying or AUTH, with SES's limits):
//! - command lines up to [`MAX_COMMAND_LINE`], text lines up to [`MAX_TEXT_LINE`], the message
//!   up to [`MAX_MESSAGE_BYTES`] (SIZE is advertised and checked at MAIL FROM; data past the cap
//!   is counted, not kept, and refused with 552), at most [`MAX_RECIPIENTS`] recipients;
//! - [`MAX_ERRORS`] failed commands per session, rejected recipients included, then 421 and the
//!   end of the session, so a client cannot probe addresses or spin forever;
//! - only `CRLF . CRLF` ends DATA: a `.` line after a bare LF is message content, so a second
//!   transaction cannot be smuggled inside the first (the "SMTP smuggling" family of attacks);
//! - HELO names and addresses with control characters (CR, LF, NUL, ESC, ...) are refused: they
//!   would end up in the `Received` header and on the terminal;
//! - like SES, recipients no enabled rule matches are refused at RCPT time (550 5.1.1), and
//!   recipients whose every matching rule has `TlsPolicy: Require` are refused without TLS
//!   (530 5.7.0).
//!
//! Each [`Step`] says whether the input was progress (a command that moved the transaction on,
//! or message data): the server's idle timer restarts only then, so a client dripping NOOPs or
//! rejected commands does not hold its connection open.

use crate::MAX_MESSAGE_BYTES;
use crate::receipt::mail::printable;
use crate::receipt::{Envelope, RuleSet};

/// Longest command line, CRLF included (RFC 5321 §4.5.3.1.4 asks for at least 512).
pub const MAX_COMMAND_LINE: usize = 4096;
/// Longest line of message text (RFC 5321 asks for 1000; real mail is sloppier).
pub const MAX_TEXT_LINE: usize = 1024 * 1024;
/// Recipients per transaction (SES's limit is 50 per message it sends; it takes 100 inbound).
pub const MAX_RECIPIENTS: usize = 100;
/// Failed commands, rejected recipients included, before the session is ended.
pub const MAX_ERRORS: usize = 20;
/// The name the server gives itself in its greeting and replies.
pub const HOSTNAME: &str = "inbound-smtp.local.mailroom";

/// One input to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input<'a> {
    /// A line through its LF (the last line before the end of the stream may have none).
    Line(&'a [u8]),
    /// A line longer than [`Session::max_line`], read and dropped; `crlf` tells whether it
    /// ended in CRLF.
    TooLong { crlf: bool },
}

/// Why the server gives up on a session because of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// No progress for the idle time.
    Idle,
    /// The whole session ran past its lifetime.
    Lifetime,
}

/// What the server must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'a> {
    /// Send this reply (without the final CRLF; multi-line replies carry inner CRLFs).
    Reply(String),
    /// Append these bytes (dot-unstuffed) to the message being received.
    Data(&'a [u8]),
    /// Throw away what was appended so far: the message is refused (too large).
    Discard,
    /// The message is complete: run it through the rule set, then call
    /// [`Session::delivered`] with the outcome.
    Message(Envelope),
    /// A recipient was refused at RCPT as SES refuses it (no rule, or TLS required): the reply
    /// is also sent as an [`Event::Reply`]; this is for a record of what the client saw.
    Refused(Refusal),
    /// Upgrade the connection to TLS, then start a new session over it (RFC 3207).
    StartTls,
    /// Close the connection.
    Close,
}

/// The events for one input, and whether it was progress.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step<'a> {
    pub events: Vec<Event<'a>>,
    pub progress: bool,
}

impl<'a> Step<'a> {
    fn reply(text: impl Into<String>) -> Self {
        Step {
            events: vec![Event::Reply(text.into())],
            progress: false,
        }
    }

    fn progress(mut self) -> Self {
        self.progress = true;
        self
    }
}

/// The reply to DATA once the rule set has taken the message: it carries SES's messageId.
pub fn accepted_reply(message_id: &str) -> String {
    format!("250 2.0.0 Ok {message_id}")
}

/// The reply to DATA when the emulator could not take the message.
pub fn failed_reply(why: &str) -> String {
    format!("554 5.6.0 {}", printable(&why.replace(['\r', '\n'], " ")))
}

/// A recipient refused at RCPT time, with the reply the client read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub mail_from: String,
    pub recipient: String,
    pub client_ip: String,
    pub helo: String,
    pub tls: bool,
    pub reply: String,
}

#[derive(Debug, Default)]
struct Transaction {
    mail_from: Option<String>,
    recipients: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Command,
    Data {
        bytes: usize,
        too_large: bool,
        too_long: bool,
        after_crlf: bool,
    },
    /// A message was handed over; nothing is read until [`Session::delivered`].
    Delivering,
    Closed,
}

/// One SMTP session, over plain TCP or TLS. After STARTTLS the client starts over with EHLO
/// (RFC 3207 §4.2), so the server builds a new session for the TLS part.
#[derive(Debug)]
pub struct Session<'r> {
    rules: &'r RuleSet,
    client_ip: String,
    can_starttls: bool,
    tls: bool,
    helo: Option<String>,
    tx: Transaction,
    errors: usize,
    mode: Mode,
}

impl<'r> Session<'r> {
    /// A session with a client at `client_ip`; `can_starttls` when a certificate is configured
    /// and the connection is still plain, `tls` once it is encrypted.
    pub fn new(rules: &'r RuleSet, client_ip: String, can_starttls: bool, tls: bool) -> Self {
        Session {
            rules,
            client_ip,
            can_starttls: can_starttls && !tls,
            tls,
            helo: None,
            tx: Transaction::default(),
            errors: 0,
            mode: Mode::Command,
        }
    }

    /// The greeting to send when the connection opens.
    pub fn greeting() -> String {
        format!("220 {HOSTNAME} ESMTP mailroom (local SES receiving emulator)")
    }

    /// The only reply to a connection an IP address filter refuses, instead of the greeting
    /// (RFC 5321 §3.1 lets a server open with 554). SES's own text is not documented
    /// (docs/ses.md §5.5).
    pub fn refused_greeting() -> String {
        format!(
            "554 5.7.1 {HOSTNAME} Access denied: your address is blocked by an IP address filter"
        )
    }

    /// The longest line the next read may return.
    pub fn max_line(&self) -> usize {
        match self.mode {
            Mode::Data { .. } => MAX_TEXT_LINE,
            _ => MAX_COMMAND_LINE,
        }
    }

    /// Whether the session has ended (after [`Event::Close`] or [`Event::StartTls`]).
    pub fn is_closed(&self) -> bool {
        self.mode == Mode::Closed
    }

    /// Feeds one input.
    pub fn feed<'a>(&mut self, input: Input<'a>) -> Step<'a> {
        match self.mode {
            Mode::Closed | Mode::Delivering => Step::default(),
            Mode::Data { .. } => self.data(input),
            Mode::Command => {
                let step = match input {
                    Input::TooLong { .. } => self.error("500 5.5.2 Line too long"),
                    Input::Line(line) => self.command(line),
                };
                self.close_after_too_many_errors(step)
            }
        }
    }

    /// The server ran out of time for this session.
    pub fn timed_out(&mut self, why: Timeout) -> Step<'static> {
        self.mode = Mode::Closed;
        let text = match why {
            Timeout::Idle => "421 4.4.2 Idle timeout, closing connection",
            Timeout::Lifetime => "421 4.4.2 Session time limit reached, closing connection",
        };
        Step {
            events: vec![Event::Reply(text.into()), Event::Close],
            progress: false,
        }
    }

    /// The outcome of the message handed over with [`Event::Message`]: its SES messageId, or
    /// why the emulator could not take it.
    pub fn delivered(&mut self, outcome: Result<String, String>) -> Step<'static> {
        if self.mode != Mode::Delivering {
            return Step::default();
        }
        self.mode = Mode::Command;
        match outcome {
            Ok(message_id) => Step::reply(accepted_reply(&message_id)).progress(),
            Err(why) => Step::reply(failed_reply(&why)),
        }
    }

    /// A refused recipient: the reply, and the refusal for the record.
    fn refuse(&mut self, recipient: String, reply: String) -> Step<'static> {
        let refusal = Refusal {
            mail_from: self.tx.mail_from.clone().unwrap_or_default(),
            recipient,
            client_ip: self.client_ip.clone(),
            helo: self.helo.clone().unwrap_or_default(),
            tls: self.tls,
            reply: reply.clone(),
        };
        let mut step = self.error(reply);
        step.events.push(Event::Refused(refusal));
        step
    }

    fn error(&mut self, reply: impl Into<String>) -> Step<'static> {
        self.errors += 1;
        Step::reply(reply)
    }

    fn close_after_too_many_errors<'x>(&mut self, mut step: Step<'x>) -> Step<'x> {
        if self.errors >= MAX_ERRORS && self.mode == Mode::Command {
            self.mode = Mode::Closed;
            step.events.push(Event::Reply(
                "421 4.7.0 Too many errors, closing connection".into(),
            ));
            step.events.push(Event::Close);
        }
        step
    }

    fn command(&mut self, line: &[u8]) -> Step<'static> {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\r', '\n']);
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        let verb = verb.to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" | "HELO" => self.helo(&verb, arg.trim()),
            "MAIL" => self.mail(arg),
            "RCPT" => self.rcpt(arg),
            "DATA" => {
                if self.tx.mail_from.is_none() || self.tx.recipients.is_empty() {
                    return self.error("503 5.5.1 Need MAIL and RCPT before DATA");
                }
                self.mode = Mode::Data {
                    bytes: 0,
                    too_large: false,
                    too_long: false,
                    after_crlf: true,
                };
                Step::reply("354 End data with <CR><LF>.<CR><LF>").progress()
            }
            "RSET" => {
                self.tx = Transaction::default();
                Step::reply("250 2.0.0 Ok")
            }
            "NOOP" => Step::reply("250 2.0.0 Ok"),
            "VRFY" => Step::reply("252 2.5.2 Cannot verify, but will accept"),
            "QUIT" => {
                self.mode = Mode::Closed;
                Step {
                    events: vec![Event::Reply("221 2.0.0 Bye".into()), Event::Close],
                    progress: false,
                }
            }
            "STARTTLS" if self.can_starttls => {
                self.mode = Mode::Closed;
                Step {
                    events: vec![
                        Event::Reply("220 2.0.0 Ready to start TLS".into()),
                        Event::StartTls,
                    ],
                    progress: true,
                }
            }
            "STARTTLS" if self.tls => self.error("503 5.5.1 TLS already active"),
            "STARTTLS" => {
                self.error("502 5.5.1 TLS is not configured (serve --tls-cert/--tls-key)")
            }
            _ => self.error("502 5.5.2 Command not recognized"),
        }
    }

    fn helo(&mut self, verb: &str, name: &str) -> Step<'static> {
        if name.is_empty() {
            return self.error(format!("501 5.5.4 {verb} needs a domain"));
        }
        if name.len() > 255 || name.chars().any(char::is_control) {
            return self.error(format!("501 5.5.2 {verb}: invalid domain"));
        }
        let first = self.helo.is_none();
        self.helo = Some(name.to_string());
        self.tx = Transaction::default();
        let reply = if verb == "EHLO" {
            let starttls = if self.can_starttls {
                "250-STARTTLS\r\n"
            } else {
                ""
            };
            format!(
                "250-{HOSTNAME} Hello {name}\r\n{starttls}250-SIZE {MAX_MESSAGE_BYTES}\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES"
            )
        } else {
            format!("250 {HOSTNAME} Hello {name}")
        };
        let step = Step::reply(reply);
        if first { step.progress() } else { step }
    }

    fn mail(&mut self, arg: &str) -> Step<'static> {
        let Some((addr, params)) = arg
            .get(..5)
            .filter(|p| p.eq_ignore_ascii_case("FROM:"))
            .and_then(|_| parse_path(&arg[5..]))
        else {
            return self.error("501 5.5.4 Syntax: MAIL FROM:<address>");
        };
        if self.helo.is_none() {
            return self.error("503 5.5.1 Send EHLO or HELO first");
        }
        if self.tx.mail_from.is_some() {
            return self.error("503 5.5.1 Sender already given");
        }
        if !addr.is_empty() && !valid_mailbox(&addr) {
            return self.error("553 5.1.7 Bad sender address syntax");
        }
        let size = params
            .iter()
            .find(|(k, _)| k == "SIZE")
            .and_then(|(_, v)| v.parse::<u64>().ok());
        if size.is_some_and(|s| s > MAX_MESSAGE_BYTES as u64) {
            return self.error("552 5.3.4 Message size exceeds fixed maximum message size");
        }
        self.tx.mail_from = Some(addr);
        Step::reply("250 2.1.0 Ok").progress()
    }

    fn rcpt(&mut self, arg: &str) -> Step<'static> {
        let Some((addr, _)) = arg
            .get(..3)
            .filter(|p| p.eq_ignore_ascii_case("TO:"))
            .and_then(|_| parse_path(&arg[3..]))
        else {
            return self.error("501 5.5.4 Syntax: RCPT TO:<address>");
        };
        if self.tx.mail_from.is_none() {
            return self.error("503 5.5.1 Need MAIL before RCPT");
        }
        if !valid_mailbox(&addr) {
            return self.error("501 5.1.3 Bad recipient address syntax");
        }
        if self.tx.recipients.len() >= MAX_RECIPIENTS {
            return self.error("452 4.5.3 Too many recipients");
        }
        if !self.rules.accepts(&addr) {
            let reply = format!(
                "550 5.1.1 <{addr}>: Recipient address rejected: no enabled receipt rule matches"
            );
            return self.refuse(addr, reply);
        }
        if !self.tls && self.rules.requires_tls(&addr) {
            let reply = "530 5.7.0 Must issue a STARTTLS command first (TlsPolicy Require)";
            return self.refuse(addr, reply.to_string());
        }
        self.tx.recipients.push(addr);
        Step::reply("250 2.1.5 Ok").progress()
    }

    fn data<'a>(&mut self, input: Input<'a>) -> Step<'a> {
        let Mode::Data {
            mut bytes,
            mut too_large,
            mut too_long,
            after_crlf,
        } = self.mode
        else {
            return Step::default();
        };
        let mut step = Step::default().progress();
        let line = match input {
            Input::TooLong { crlf } => {
                too_long = true;
                self.mode = Mode::Data {
                    bytes,
                    too_large,
                    too_long,
                    after_crlf: crlf,
                };
                return step;
            }
            Input::Line(line) => line,
        };
        // Only CRLF "." CRLF ends the data (RFC 5321 §4.1.1.4): a "." line after a bare LF, or
        // ending in a bare LF, is content, so no second transaction hides inside this one.
        if after_crlf && line == b".\r\n" {
            return self.end_of_data(too_large, too_long);
        }
        let ends_crlf = line.ends_with(b"\r\n");
        let content = match line.strip_prefix(b".") {
            Some(rest) if after_crlf && ends_crlf => rest,
            _ => line,
        };
        if !too_large && bytes + content.len() > MAX_MESSAGE_BYTES {
            too_large = true;
            step.events.push(Event::Discard);
        }
        bytes = bytes.saturating_add(content.len());
        if !too_large && !content.is_empty() {
            step.events.push(Event::Data(content));
        }
        self.mode = Mode::Data {
            bytes,
            too_large,
            too_long,
            after_crlf: ends_crlf,
        };
        step
    }

    fn end_of_data(&mut self, too_large: bool, too_long: bool) -> Step<'static> {
        let tx = std::mem::take(&mut self.tx);
        if too_large {
            self.mode = Mode::Command;
            return self.error("552 5.3.4 Message size exceeds fixed maximum message size");
        }
        if too_long {
            self.mode = Mode::Command;
            return self.error("500 5.5.2 Line too long");
        }
        self.mode = Mode::Delivering;
        Step {
            events: vec![Event::Message(Envelope {
                mail_from: tx.mail_from.unwrap_or_default(),
                recipients: tx.recipients,
                helo: self.helo.clone().unwrap_or_default(),
                client_ip: self.client_ip.clone(),
                tls: self.tls,
            })],
            progress: true,
        }
    }
}

/// `<addr>` plus parameters from `MAIL FROM:` / `RCPT TO:` arguments.
pub fn parse_path(arg: &str) -> Option<(String, Vec<(String, String)>)> {
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

/// A mailbox we take: `local@domain`, no spaces, brackets or control characters.
pub fn valid_mailbox(addr: &str) -> bool {
    addr.len() <= 320
        && addr
            .rsplit_once('@')
            .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty() && !d.contains(['@', ' ']))
        && !addr.contains([' ', '<', '>'])
        && !addr.chars().any(char::is_control)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;
