//! The two ways a message is sent on, both built from mail-parser's reading of the original's
//! header section (field names, value offsets, addresses, decoded text), never from patterns
//! over the raw text:
//!
//! - [`rewrite`]: the original body byte for byte under a rebuilt header section. `From` becomes
//!   the forwarding identity with the sender's name (`"Jane via example.com"
//!   <forwarder@example.com>`), so DMARC aligns with the domain that sends; `Reply-To` keeps
//!   replies going to the sender. `Return-Path`, `Sender`, `Message-ID`, every DKIM and ARC
//!   signature and `Bcc` are left out; of a field SES takes once only the first is kept
//!   (`References`, `In-Reply-To` and `Keywords` are merged instead), and a MIME field given twice
//!   with different values makes the rewrite refuse: which one a reader would believe is a guess.
//!   A field with 8-bit bytes is rebuilt from its decoded value (encoded words, addresses), or
//!   left out when it is trace information nobody reads.
//! - [`attach`]: a new message that says where the mail came from, with the original attached
//!   unchanged as `message/rfc822` (signed mail keeps its signature).

use crate::header::{Eol, address_list, capped, encode_text, field, mailbox, wrap};
use crate::ses_rules;
use mail_parser::{HeaderForm, MessageParser, MessageRef};
use sha2::{Digest as _, Sha256};

/// The header this function adds to everything it sends; loop protection counts them. The
/// attachment mode copies the original's own ones to the new message, so the count survives
/// being wrapped.
pub const HOP_HEADER: &str = "X-Mailroom-Forwarded";

/// SES's verdicts on the original, written on everything this function sends (a sender's own
/// field of that name is dropped), so the destination sees what SES saw.
pub const VERDICTS_HEADER: &str = "X-Mailroom-Verdicts";

/// The longest display name taken from a sender.
const MAX_NAME_CHARS: usize = 64;

/// Who the forwarded mail is from and what it is about, the same for both modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The verified address forwarded mail is sent from (`forwarder@example.com`).
    pub address: String,
    /// The display name: `{name}` (the sender's name, else address), `{address}` (the sender's
    /// address) and `{domain}` (the forwarding address's domain) are replaced.
    pub name_format: String,
}

impl Identity {
    pub fn domain(&self) -> &str {
        self.address.rsplit_once('@').map_or("", |(_, d)| d)
    }

    fn display_name(&self, sender_name: Option<&str>, sender_address: &str) -> String {
        let name = sender_name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .unwrap_or(if sender_address.is_empty() {
                "unknown sender"
            } else {
                sender_address
            });
        let name = capped(name, MAX_NAME_CHARS);
        let sender_address = capped(sender_address, MAX_NAME_CHARS);
        self.name_format
            .replace("{name}", &name)
            .replace("{address}", &sender_address)
            .replace("{domain}", self.domain())
    }
}

/// What a forward adds about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop<'a> {
    /// The envelope recipient whose entry sent the mail on.
    pub recipient: &'a str,
    /// The envelope sender of the original (used when it has no usable `From`).
    pub envelope_sender: &'a str,
    /// When SES received it (RFC 3339), for the attachment mode's text.
    pub received: &'a str,
    /// Where the raw original stays, for the attachment mode's text.
    pub raw_url: &'a str,
    /// The value of [`VERDICTS_HEADER`] (`spf=PASS dkim=FAIL …`).
    pub verdicts: &'a str,
    /// Why SES could not vouch for the sender (SPF or DMARC failed, spam or virus scanning was
    /// not clean), when it could not: such mail is never re-authored as ours.
    pub unverified: Option<&'a str>,
}

/// Why the rewrite cannot be trusted for this message; the attachment mode is used instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the message has no header section mail-parser can read")]
    Unparseable,
    #[error("{name} appears twice with different values")]
    Conflicting { name: String },
    #[error("{name} has 8-bit bytes that cannot be re-encoded")]
    Unencodable { name: String },
    #[error("the message is signed or encrypted ({0}): a rewrite would break what it protects")]
    Protected(String),
    #[error("the rewrite breaks SES's rules: {0}")]
    Invalid(String),
    #[error("the header section holds a line that is not a field ({0}): readers disagree on it")]
    Malformed(String),
    #[error("the message has a lone CR: readers disagree on where its lines end")]
    LoneCr,
    #[error("SES could not verify the sender ({0}): the mail is not sent under our name")]
    Unverified(String),
}

/// Fields never passed on: they name the original's sending path or would be false after the
/// rewrite (`From` and `Reply-To` are written anew).
const DROPPED: &[&str] = &[
    "from",
    "reply-to",
    "sender",
    "return-path",
    "message-id",
    "dkim-signature",
    "domainkey-signature",
    "arc-seal",
    "arc-message-signature",
    "arc-authentication-results",
    "bcc",
    // Ours: written anew from SES's verdicts, never taken from the sender.
    "x-mailroom-verdicts",
];

/// Fields SES itself reads from a raw message (`X-SES-CONFIGURATION-SET`, `X-SES-SOURCE-ARN`,
/// `X-SES-MESSAGE-TAGS`, …): from a sender they would steer our sending, so none is passed on.
const DROPPED_PREFIX: &str = "x-ses-";

/// Fields SES takes once whose later occurrences are merged into the first.
const MERGED: &[&str] = &["references", "in-reply-to", "keywords"];

/// Fields whose value is plain text (RFC 2047 words can carry anything).
const TEXT: &[&str] = &[
    "subject",
    "comments",
    "thread-topic",
    "organization",
    "content-description",
    "original-subject",
    "user-agent",
    "x-mailer",
];

/// Fields whose value is an address list.
const ADDRESSES: &[&str] = &[
    "to",
    "cc",
    "resent-from",
    "resent-to",
    "resent-cc",
    "resent-sender",
    "disposition-notification-to",
    "return-receipt-to",
    "errors-to",
    "original-from",
];

fn parse(raw: &[u8]) -> Option<mail_parser::Message<'_>> {
    MessageParser::new().parse_headers(raw)
}

/// The sender as `(name, address)`: the first mailbox of the first `From`, else the envelope.
fn sender<'m>(msg: &MessageRef<'m>, envelope: &str) -> (Option<String>, String) {
    let first = msg
        .headers()
        .all("From")
        .next()
        .and_then(|h| h.value().as_address())
        .and_then(|l| l.first());
    match first {
        Some(m) if m.address().is_some_and(|a| a.contains('@')) => (
            m.name().map(str::to_string),
            m.address().unwrap_or_default().trim().to_string(),
        ),
        Some(m) => (m.name().map(str::to_string), envelope.to_string()),
        None => (None, envelope.to_string()),
    }
}

/// Whether the top-level type is S/MIME or OpenPGP signed or encrypted content.
pub fn protected(raw: &[u8]) -> Option<String> {
    let msg = parse(raw)?;
    let ct = msg.root().content_type()?;
    let essence = format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")).to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "multipart/signed"
            | "multipart/encrypted"
            | "application/pkcs7-mime"
            | "application/x-pkcs7-mime"
    )
    .then_some(essence)
}

/// How many times mail this function sent has already been forwarded: the top-level
/// [`HOP_HEADER`] fields, counted line by line without parsing (a 36 MB header block costs no
/// more than reading it).
pub fn hops(raw: &[u8]) -> usize {
    let name = HOP_HEADER.as_bytes();
    let mut count = 0;
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.len() > name.len()
            && line[..name.len()].eq_ignore_ascii_case(name)
            && line[name.len()..].trim_ascii_start().first() == Some(&b':')
        {
            count += 1;
        }
    }
    count
}

/// Our own fields: the hop and the verdicts.
fn hop_fields(identity: &Identity, hop: &Hop<'_>, eol: Eol) -> String {
    let mut out = field(
        HOP_HEADER,
        &format!(
            "for <{}>; by <{}>",
            capped(hop.recipient, 200),
            identity.address
        ),
        eol,
    );
    if !hop.verdicts.is_empty() {
        out.push_str(&field(VERDICTS_HEADER, hop.verdicts, eol));
    }
    out
}

/// Whether `raw` has a CR not followed by LF.
pub fn has_lone_cr(raw: &[u8]) -> bool {
    raw.iter()
        .enumerate()
        .any(|(i, &b)| b == b'\r' && raw.get(i + 1) != Some(&b'\n'))
}

/// Whether every line of `raw` ends with CRLF (a final line without a break is fine).
fn crlf_only(raw: &[u8]) -> bool {
    !has_lone_cr(raw)
        && raw
            .iter()
            .enumerate()
            .all(|(i, &b)| b != b'\n' || (i > 0 && raw[i - 1] == b'\r'))
}

/// `body` with every bare LF made CRLF (lone CRs are refused before this), as SMTP carries it.
pub fn to_crlf(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 32);
    for (i, &b) in body.iter().enumerate() {
        if b == b'\n' && (i == 0 || body[i - 1] != b'\r') {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}

fn from_field(
    identity: &Identity,
    name: Option<&str>,
    address: &str,
    unverified: bool,
    eol: Eol,
) -> String {
    // A sender SES could not verify keeps no display name of its choosing ("PayPal"): the
    // destination sees the address it claimed, marked.
    let marked;
    let name = if unverified {
        marked = format!(
            "unverified: {}",
            if address.is_empty() {
                "unknown sender"
            } else {
                address
            }
        );
        Some(marked.as_str())
    } else {
        name
    };
    let display = identity.display_name(name, address);
    let value = mailbox(Some(&display), &identity.address, eol)
        .unwrap_or_else(|| format!("<{}>", identity.address));
    field("From", &value, eol)
}

/// The normalised value two copies of a field are compared by.
fn comparable(value: &[u8]) -> String {
    String::from_utf8_lossy(value)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_ascii_lowercase()
}

/// A value to pass on as written: 7-bit and every line within SES's limit.
fn writable_as_is(value: &[u8]) -> bool {
    value.is_ascii()
        && value
            .split(|&b| b == b'\n')
            .all(|l| l.len() + 1 < ses_rules::MAX_LINE_BYTES - 80)
}

/// `value` with its lines ending in `eol`, whatever the original used.
fn with_eol(value: &[u8], eol: Eol) -> String {
    let text = String::from_utf8_lossy(value);
    let lines: Vec<&str> = text
        .trim_end_matches(['\r', '\n'])
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .collect();
    let mut out = lines.join(eol.as_str());
    out.push_str(eol.as_str());
    out
}

/// One kept field, re-encoded when its raw form cannot be sent; `Ok(None)` drops it.
fn rebuilt(name: &str, lower: &str, value: &[u8], eol: Eol) -> Result<Option<String>, Refusal> {
    if writable_as_is(value) {
        return Ok(Some(format!("{name}:{}", with_eol(value, eol))));
    }
    if TEXT.contains(&lower) || lower.starts_with("x-") {
        let parsed = HeaderForm::Text.parse(value);
        let text = parsed
            .value()
            .as_text()
            .unwrap_or_default()
            .trim()
            .to_string();
        return Ok(Some(field(name, &encode_text(&text, eol), eol)));
    }
    if ADDRESSES.contains(&lower) {
        let parsed = HeaderForm::Addresses.parse(value);
        if let Some(list) = parsed.value().as_address()
            && let Some(v) = address_list(&list, eol)
        {
            return Ok(Some(field(name, &v, eol)));
        }
        return Err(Refusal::Unencodable {
            name: name.to_string(),
        });
    }
    if lower.starts_with("content-") || lower == "mime-version" {
        return Err(Refusal::Unencodable {
            name: name.to_string(),
        });
    }
    // Trace and list fields (Received, Authentication-Results, List-*) with raw 8-bit bytes:
    // informative only, and not re-encodable without changing their grammar.
    Ok(None)
}

/// The rewritten message, or why the attachment mode must be used.
pub fn rewrite(raw: &[u8], identity: &Identity, hop: &Hop<'_>) -> Result<Vec<u8>, Refusal> {
    if let Some(why) = hop.unverified {
        return Err(Refusal::Unverified(why.to_string()));
    }
    if let Some(kind) = protected(raw) {
        return Err(Refusal::Protected(kind));
    }
    if has_lone_cr(raw) {
        return Err(Refusal::LoneCr);
    }
    let (_, _, problems) = ses_rules::fields(raw);
    if let Some(first) = problems.first() {
        return Err(Refusal::Malformed(first.to_string()));
    }
    let parsed = parse(raw).ok_or(Refusal::Unparseable)?;
    let msg = parsed.root();
    // What is sent has CRLF line ends only, whatever was stored.
    let eol = Eol::Crlf;
    let body_at = (msg.root_part().offset_body() as usize).min(raw.len());

    // (lowercased name, index in `kept`, raw value of the first occurrence)
    let mut seen: Vec<(String, usize, Vec<u8>)> = Vec::new();
    let mut kept: Vec<String> = Vec::new();
    let mut merged: Vec<(usize, String, Vec<String>)> = Vec::new();
    for h in msg.headers().iter() {
        let name = h.raw_name().trim_end();
        if name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':') {
            continue;
        }
        let lower = name.to_ascii_lowercase();
        if DROPPED.contains(&lower.as_str()) || lower.starts_with(DROPPED_PREFIX) {
            continue;
        }
        let value = h.raw_value();
        if ses_rules::is_single_occurrence(name)
            && let Some((_, at, first)) = seen.iter().find(|(n, _, _)| *n == lower)
        {
            if MERGED.contains(&lower.as_str()) {
                if let Some((_, _, items)) = merged.iter_mut().find(|(i, _, _)| i == at) {
                    items.extend(merge_items(&lower, value));
                }
            } else if (lower.starts_with("content-") || lower == "mime-version")
                && comparable(first) != comparable(value)
            {
                return Err(Refusal::Conflicting {
                    name: name.to_string(),
                });
            }
            continue;
        }
        let Some(line) = rebuilt(name, &lower, value, eol)? else {
            continue;
        };
        if ses_rules::is_single_occurrence(name) {
            seen.push((lower.clone(), kept.len(), value.to_vec()));
            if MERGED.contains(&lower.as_str()) {
                merged.push((kept.len(), name.to_string(), merge_items(&lower, value)));
            }
        }
        kept.push(line);
    }
    for (at, name, items) in merged {
        let mut unique: Vec<String> = Vec::new();
        for i in items {
            if !unique.contains(&i) {
                unique.push(i);
            }
        }
        let sep = if name.eq_ignore_ascii_case("keywords") {
            ", "
        } else {
            " "
        };
        if let Some(slot) = kept.get_mut(at)
            && unique.len() > 1
        {
            *slot = field(&name, &unique.join(sep), eol);
        }
    }

    let (sender_name, sender_address) = sender(&msg, hop.envelope_sender);
    let reply_to = reply_to(&msg, &sender_name, &sender_address, eol)?;
    let mut head = String::new();
    head.push_str(&hop_fields(identity, hop, eol));
    head.push_str(&from_field(
        identity,
        sender_name.as_deref(),
        &sender_address,
        false,
        eol,
    ));
    if let Some(r) = reply_to {
        head.push_str(&r);
    }
    for line in &kept {
        head.push_str(line);
    }
    if !msg.headers().contains("Date") {
        head.push_str(&field("Date", &now_rfc2822(), eol));
    }
    head.push_str(eol.as_str());
    let body = &raw[body_at..];
    let mut out = Vec::with_capacity(head.len() + body.len());
    out.extend_from_slice(head.as_bytes());
    if crlf_only(body) {
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(&to_crlf(body));
    }
    // Only what the attachment mode could mend: whether the content can go at all (size,
    // attachment types) is decided once, on whichever message is built, by the caller.
    let violations = ses_rules::header_rules_for(&out, &identity.address);
    if !violations.is_empty() {
        let text: Vec<String> = violations.iter().take(3).map(ToString::to_string).collect();
        return Err(Refusal::Invalid(text.join("; ")));
    }
    Ok(out)
}

/// The items of a merged field: message ids with their brackets, or keywords.
fn merge_items(lower: &str, value: &[u8]) -> Vec<String> {
    if lower == "keywords" {
        let text = HeaderForm::Text.parse(value);
        return text
            .value()
            .as_text()
            .unwrap_or_default()
            .split(',')
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty() && k.is_ascii())
            .collect();
    }
    let parsed = HeaderForm::MessageIds.parse(value);
    parsed
        .value()
        .as_text_list()
        .map(|l| {
            l.iter()
                .map(|id| id.trim())
                .filter(|id| !id.is_empty() && id.is_ascii() && !id.contains(['<', '>', ' ']))
                .map(|id| format!("<{id}>"))
                .collect()
        })
        .unwrap_or_default()
}

/// The original `Reply-To`, else every `From` mailbox, else the envelope sender.
fn reply_to(
    msg: &MessageRef<'_>,
    sender_name: &Option<String>,
    sender_address: &str,
    eol: Eol,
) -> Result<Option<String>, Refusal> {
    for name in ["Reply-To", "From"] {
        if let Some(h) = msg.headers().all(name).next() {
            if name == "Reply-To" && writable_as_is(h.raw_value()) {
                return Ok(Some(format!("Reply-To:{}", with_eol(h.raw_value(), eol))));
            }
            if let Some(list) = h.value().as_address()
                && list
                    .mailboxes()
                    .any(|m| m.address().is_some_and(|a| a.contains('@')))
            {
                return address_list(&list, eol)
                    .map(|v| Some(field("Reply-To", &v, eol)))
                    .ok_or(Refusal::Unencodable {
                        name: name.to_string(),
                    });
            }
        }
    }
    Ok(mailbox(sender_name.as_deref(), sender_address, eol).map(|v| field("Reply-To", &v, eol)))
}

fn now_rfc2822() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".to_string())
}

/// A boundary that occurs nowhere in `raw`.
fn boundary(raw: &[u8]) -> String {
    let mut seed = Sha256::digest(raw);
    loop {
        let b = format!("mailroom-fwd-{}", hex::encode(&seed[..12]));
        if !contains(raw, b.as_bytes()) {
            return b;
        }
        seed = Sha256::digest(seed);
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// How the original travels inside the new message: `7bit`/`8bit` keep it byte for byte (RFC
/// 2046 allows nothing else for `message/rfc822`); only an original with a line SES would refuse,
/// or line ends other than CRLF (what is sent has CRLF only), is base64-encoded, which keeps its
/// bytes exactly too.
fn transfer_encoding(raw: &[u8]) -> &'static str {
    let long = raw
        .split(|&b| b == b'\n')
        .any(|l| l.len() + 1 > ses_rules::MAX_LINE_BYTES);
    if long || raw.contains(&0) || !crlf_only(raw) {
        "base64"
    } else if raw.is_ascii() {
        "7bit"
    } else {
        "8bit"
    }
}

/// What the digest says about the original: why it could not go whole, and what it held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest<'a> {
    /// Why the whole message cannot be sent.
    pub why: &'a str,
    /// The original's Subject (from SES's event when the message itself is not read).
    pub subject: Option<&'a str>,
    /// The original's text, when it could be read.
    pub text: Option<&'a str>,
    /// `name (type, size)` of every attachment left out.
    pub left_out: &'a [String],
}

/// The most text a digest carries: the rest is in the original.
const DIGEST_TEXT_BYTES: usize = 1024 * 1024;

/// A plain-text message from the forwarding identity standing in for an original that cannot be
/// sent whole: what was left out, where the original is kept, and its text.
pub fn digest(identity: &Identity, hop: &Hop<'_>, d: &Digest<'_>) -> Vec<u8> {
    let eol = Eol::Crlf;
    let e = eol.as_str();
    let sender = hop.envelope_sender;
    let mut head = String::new();
    head.push_str(&hop_fields(identity, hop, eol));
    head.push_str(&from_field(
        identity,
        None,
        sender,
        hop.unverified.is_some(),
        eol,
    ));
    if let Some(r) = mailbox(None, sender, eol) {
        head.push_str(&field("Reply-To", &r, eol));
    }
    head.push_str(&field("To", &format!("<{}>", hop.recipient), eol));
    let subject = capped(d.subject.map(str::trim).unwrap_or_default(), 998);
    let subject = if subject.is_empty() {
        "Fwd (partial): (no subject)".to_string()
    } else {
        format!("Fwd (partial): {subject}")
    };
    head.push_str(&field("Subject", &encode_text(&subject, eol), eol));
    head.push_str(&field("Date", &now_rfc2822(), eol));
    head.push_str(&field("MIME-Version", "1.0", eol));
    head.push_str(&field("Content-Type", "text/plain; charset=utf-8", eol));
    head.push_str(&field("Content-Transfer-Encoding", "base64", eol));
    head.push_str(e);

    let from_text = if sender.is_empty() {
        "an unknown sender"
    } else {
        sender
    };
    let mut body = String::new();
    let mut para = |text: String| {
        for line in wrap(&text, 76) {
            body.push_str(&line);
            body.push('\n');
        }
        body.push('\n');
    };
    if let Some(why) = hop.unverified {
        para(format!(
            "WARNING: SES could not verify that this mail comes from {from_text} ({}).",
            capped(why, 200)
        ));
    }
    para(format!(
        "Forwarded by mailroom: mail from {from_text} to {}, received {}. It could not be \
         forwarded whole ({}); this is its text. The original is kept at {}.",
        capped(hop.recipient, 200),
        capped(hop.received, 64),
        capped(d.why, 300),
        hop.raw_url
    ));
    if !d.left_out.is_empty() {
        let mut list = String::from("Left out:\n");
        for item in d.left_out.iter().take(100) {
            list.push_str(&format!("- {}\n", capped(item, 200)));
        }
        if d.left_out.len() > 100 {
            list.push_str(&format!("- and {} more\n", d.left_out.len() - 100));
        }
        body.push_str(&list);
        body.push('\n');
    }
    body.push_str("----- Original text -----\n\n");
    match d.text {
        Some(t) if !t.trim().is_empty() => {
            let cut = capped(t, DIGEST_TEXT_BYTES / 4);
            body.push_str(&cut);
            if cut.len() < t.len() {
                body.push_str("\n\n[The text goes on in the original.]");
            }
        }
        _ => body.push_str(
            "(No text could be read from the original: open it from the location above.)",
        ),
    }
    body.push('\n');
    let body = body.replace('\n', "\r\n");
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(body.as_bytes());
    let mut out = Vec::with_capacity(head.len() + encoded.len() * 78 / 76 + 2);
    out.extend_from_slice(head.as_bytes());
    for chunk in encoded.as_bytes().chunks(76) {
        out.extend_from_slice(chunk);
        out.extend_from_slice(e.as_bytes());
    }
    out
}

/// A new message from the forwarding identity with the original attached unchanged.
pub fn attach(raw: &[u8], identity: &Identity, hop: &Hop<'_>, reason: &str) -> Vec<u8> {
    let parsed = parse(raw);
    let msg = parsed.as_ref().map(|p| p.root());
    let eol = Eol::Crlf;
    let e = eol.as_str();
    let (sender_name, sender_address) = match &msg {
        Some(m) => sender(m, hop.envelope_sender),
        None => (None, hop.envelope_sender.to_string()),
    };
    let subject = msg
        .as_ref()
        .and_then(|m| m.headers().all("Subject").next())
        .and_then(|h| h.value().as_text().map(|s| s.trim().to_string()))
        .unwrap_or_default();
    let original_id = msg
        .as_ref()
        .and_then(|m| m.message_id())
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.is_ascii() && !id.contains(['<', '>', ' ']));
    let reply = msg
        .as_ref()
        .and_then(|m| {
            reply_to(m, &sender_name, &sender_address, eol)
                .ok()
                .flatten()
        })
        .or_else(|| {
            mailbox(sender_name.as_deref(), &sender_address, eol)
                .map(|v| field("Reply-To", &v, eol))
        });
    let boundary = boundary(raw);
    let cte = transfer_encoding(raw);

    let mut head = String::new();
    // The original's hops travel with it: without them a loop through the attachment mode
    // would count one hop forever.
    if let Some(m) = &msg {
        for h in m.headers().iter() {
            if h.raw_name().trim().eq_ignore_ascii_case(HOP_HEADER) {
                let value = h.raw_value();
                let value = if value.is_ascii() {
                    String::from_utf8_lossy(value)
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                } else {
                    "an earlier hop".to_string()
                };
                head.push_str(&field(HOP_HEADER, &capped(&value, 200), eol));
            }
        }
    }
    head.push_str(&hop_fields(identity, hop, eol));
    head.push_str(&from_field(
        identity,
        sender_name.as_deref(),
        &sender_address,
        hop.unverified.is_some(),
        eol,
    ));
    if let Some(r) = reply {
        head.push_str(&r);
    }
    head.push_str(&field("To", &format!("<{}>", hop.recipient), eol));
    let subject = capped(&subject, 998);
    let subject = match (subject.is_empty(), hop.unverified.is_some()) {
        (true, false) => "Fwd: (no subject)".to_string(),
        (false, false) => format!("Fwd: {subject}"),
        (true, true) => "[unverified sender] Fwd: (no subject)".to_string(),
        (false, true) => format!("[unverified sender] Fwd: {subject}"),
    };
    head.push_str(&field("Subject", &encode_text(&subject, eol), eol));
    head.push_str(&field("Date", &now_rfc2822(), eol));
    if let Some(id) = original_id {
        head.push_str(&field("References", &format!("<{id}>"), eol));
    }
    head.push_str(&field("MIME-Version", "1.0", eol));
    head.push_str(&field(
        "Content-Type",
        &format!("multipart/mixed; boundary=\"{boundary}\""),
        eol,
    ));
    head.push_str(e);
    let from_text = if sender_address.is_empty() {
        "an unknown sender".to_string()
    } else {
        capped(&sender_address, 200)
    };
    let mut paragraphs = Vec::new();
    if let Some(why) = hop.unverified {
        paragraphs.push(format!(
            "WARNING: SES could not verify that this mail comes from {from_text} ({}). \
             It may be forged; it is attached as received, not sent on as if from its sender.",
            capped(why, 200)
        ));
    }
    paragraphs.push(format!(
        "Forwarded by mailroom: mail from {from_text} to {}, received {}.",
        capped(hop.recipient, 200),
        capped(hop.received, 64)
    ));
    paragraphs.push(format!(
        "The original is attached unchanged ({}).",
        capped(reason, 300)
    ));
    paragraphs.push(format!("It is also kept at {}.", hop.raw_url));
    // Wrapped, so nothing a sender wrote (a reason quoting a 950-byte line) makes a line SES
    // refuses.
    let mut note = String::new();
    for p in paragraphs {
        for line in wrap(
            &p.replace(|c: char| !c.is_ascii() || c.is_control(), "?"),
            76,
        ) {
            note.push_str(&line);
            note.push_str(e);
        }
    }
    head.push_str(&format!(
        "--{boundary}{e}Content-Type: text/plain; charset=us-ascii{e}\
         Content-Transfer-Encoding: 7bit{e}{e}{note}{e}--{boundary}{e}\
         Content-Type: message/rfc822{e}Content-Disposition: attachment; filename=\"original.eml\"{e}\
         Content-Transfer-Encoding: {cte}{e}{e}"
    ));
    let tail = format!("{e}--{boundary}--{e}");
    let mut out = Vec::with_capacity(head.len() + raw.len() * 4 / 3 + tail.len() + 8);
    out.extend_from_slice(head.as_bytes());
    if cte == "base64" {
        use base64::Engine;
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        for (i, chunk) in encoded.as_bytes().chunks(76).enumerate() {
            if i > 0 {
                out.extend_from_slice(e.as_bytes());
            }
            out.extend_from_slice(chunk);
        }
    } else {
        // The line break before the closing delimiter belongs to the delimiter (RFC 2046 §5.1.1),
        // so the part's body is the original exactly, whether or not it ends with one.
        out.extend_from_slice(raw);
    }
    out.extend_from_slice(tail.as_bytes());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn identity() -> Identity {
        Identity {
            address: "forwarder@example.com".into(),
            name_format: "{name} via {domain}".into(),
        }
    }

    fn hop() -> Hop<'static> {
        Hop {
            recipient: "info@example.com",
            envelope_sender: "bounce@sender.org",
            received: "2024-01-01T00:00:00.000Z",
            raw_url: "s3://mail/raw/m1",
            verdicts: "spf=PASS dkim=PASS dmarc=PASS",
            unverified: None,
        }
    }

    fn text(out: &[u8]) -> String {
        String::from_utf8_lossy(out).into_owned()
    }

    #[test]
    fn from_reply_to_and_dropped_fields() {
        let raw = b"Return-Path: <b@sender.org>\r\nDKIM-Signature: v=1; a=1\r\n\
            DKIM-Signature: v=1; a=2\r\nFrom: \"Jane Doe\" <jane@sender.org>\r\n\
            Sender: list@sender.org\r\nTo: info@example.com\r\nMessage-id: <X@Y>\r\n\
            Subject: hi\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody\r\n";
        let out = text(&rewrite(raw, &identity(), &hop()).unwrap());
        assert!(
            out.starts_with(
                "X-Mailroom-Forwarded: for <info@example.com>; by <forwarder@example.com>\r\n\
             X-Mailroom-Verdicts: spf=PASS dkim=PASS dmarc=PASS\r\n\
             From: \"Jane Doe via example.com\" <forwarder@example.com>\r\n\
             Reply-To: \"Jane Doe\" <jane@sender.org>\r\n"
            ),
            "{out}"
        );
        for gone in ["Return-Path", "DKIM", "Sender:", "Message-id"] {
            assert!(!out.contains(gone), "{gone} in {out}");
        }
        assert!(out.ends_with("\r\n\r\nbody\r\n"));
    }

    #[test]
    fn duplicates_keep_the_first_merge_ids_and_refuse_conflicting_mime() {
        let raw = b"From: a@x.org\nDelivered-To: one@example.com\nDelivered-To: two@example.com\n\
            References: <a@x>\nReferences: <b@x> <a@x>\nDate: x\n\nbody\n";
        let out = text(&rewrite(raw, &identity(), &hop()).unwrap());
        assert!(out.contains("Delivered-To: one@example.com\r\n"));
        assert!(!out.contains("two@example.com"));
        assert!(out.contains("References: <a@x> <b@x>\r\n"), "{out}");
        let raw = b"From: a@x.org\nContent-Type: text/plain\nContent-Type: text/html\n\nx\n";
        assert!(matches!(
            rewrite(raw, &identity(), &hop()),
            Err(Refusal::Conflicting { .. })
        ));
        let raw = b"From: a@x.org\nContent-Type: text/plain\ncontent-type:  text/plain\n\nx\n";
        assert!(rewrite(raw, &identity(), &hop()).is_ok());
    }

    #[test]
    fn eight_bit_fields_are_encoded() {
        let raw = "From: José <jose@x.org>\r\nTo: Zoë <info@example.com>\r\nSubject: café\r\n\
                   Received: from é\r\nDate: x\r\n\r\nbody\r\n";
        let out = rewrite(raw.as_bytes(), &identity(), &hop()).unwrap();
        let s = text(&out);
        assert!(s.is_ascii(), "{s}");
        assert!(!s.contains("Received"), "{s}");
        let back = MessageParser::new().parse(&out).unwrap();
        assert_eq!(back.subject(), Some("café"));
        assert_eq!(back.to().unwrap().first().unwrap().name(), Some("Zoë"));
        assert_eq!(
            back.from().unwrap().first().unwrap().name(),
            Some("José via example.com")
        );
    }

    #[test]
    fn signed_mail_is_refused_and_attached_byte_for_byte() {
        let raw = b"From: a@x.org\r\nDate: x\r\nSubject: s\r\nContent-Type: multipart/signed; \
            protocol=\"application/pkcs7-signature\"; boundary=b\r\n\r\n--b\r\n\r\nhi\r\n--b--\r\n";
        assert!(matches!(
            rewrite(raw, &identity(), &hop()),
            Err(Refusal::Protected(_))
        ));
        let out = attach(raw, &identity(), &hop(), "signed");
        assert_eq!(ses_rules::validate_for(&out, "example.com"), vec![]);
        assert!(contains(&out, raw));
        let back = MessageParser::new().parse(&out).unwrap();
        let nested = back.parts().find_map(|p| p.nested()).unwrap();
        assert_eq!(nested.raw(), &raw[..]);
        assert_eq!(back.subject(), Some("Fwd: s"));
    }

    #[test]
    fn an_original_without_a_final_line_break_is_attached_exactly() {
        let raw = b"From: a@x.org\r\nDate: x\r\nSubject: s\r\n\r\nno final break";
        let out = attach(raw, &identity(), &hop(), "test");
        let back = MessageParser::new().parse(&out).unwrap();
        let nested = back.parts().find_map(|p| p.nested()).unwrap();
        assert_eq!(nested.raw(), &raw[..]);
    }

    #[test]
    fn long_lines_travel_base64() {
        let mut raw = b"From: a@x.org\nDate: x\n\n".to_vec();
        raw.extend(std::iter::repeat_n(b'x', 2000));
        assert!(matches!(
            rewrite(&raw, &identity(), &hop()),
            Err(Refusal::Invalid(_))
        ));
        let out = attach(&raw, &identity(), &hop(), "long lines");
        assert_eq!(ses_rules::validate(&out), vec![]);
        let back = MessageParser::new().parse(&out).unwrap();
        let part = back
            .parts()
            .find(|p| p.is_content_type("message", "rfc822"))
            .unwrap();
        assert_eq!(part.decoded().as_ref(), &raw[..]);
    }

    /// Forwarding `raw` `rounds` times in `mode`, each output the next input, as a loop between
    /// two forwarders does; the hop count after each round.
    fn loop_counts(raw: &[u8], attach_mode: bool, rounds: usize) -> Vec<usize> {
        let mut msg = raw.to_vec();
        let mut counts = Vec::new();
        for _ in 0..rounds {
            msg = if attach_mode {
                attach(&msg, &identity(), &hop(), "test")
            } else {
                rewrite(&msg, &identity(), &hop()).unwrap()
            };
            counts.push(hops(&msg));
        }
        counts
    }

    #[test]
    fn the_hop_count_survives_the_attachment_mode() {
        let raw = b"From: a@x.org\r\nDate: x\r\nSubject: s\r\n\r\nhi\r\n";
        // Before, every attach-mode round counted 1, so a loop never stopped.
        assert_eq!(loop_counts(raw, true, 4), [1, 2, 3, 4]);
        assert_eq!(loop_counts(raw, false, 4), [1, 2, 3, 4]);
    }

    #[test]
    fn a_senders_ses_fields_and_verdicts_are_dropped() {
        let raw = b"From: a@x.org\r\nDate: x\r\nX-SES-CONFIGURATION-SET: theirs\r\n\
            X-SES-SOURCE-ARN: arn:aws:ses:us-east-1:1:identity/evil.org\r\nx-ses-message-tags: a=b\r\n\
            X-Mailroom-Verdicts: spf=PASS\r\nX-Other: kept\r\n\r\nhi\r\n";
        let out = text(&rewrite(raw, &identity(), &hop()).unwrap());
        assert!(!out.to_ascii_lowercase().contains("x-ses-"), "{out}");
        assert_eq!(out.matches("X-Mailroom-Verdicts").count(), 1, "{out}");
        assert!(out.contains("X-Mailroom-Verdicts: spf=PASS dkim=PASS dmarc=PASS\r\n"));
        assert!(out.contains("X-Other: kept\r\n"));
    }

    #[test]
    fn what_is_sent_has_crlf_only() {
        // A lone CR in a header: one reader sees a second From after it.
        let lone = b"From: a@x.org\r\nDate: x\r\nSubject: hi\rFrom: ceo@example.com\r\n\r\nhi\r\n";
        assert_eq!(rewrite(lone, &identity(), &hop()), Err(Refusal::LoneCr));
        let bare = b"From: a@x.org\nDate: x\nSubject: hi\n\nline one\nline two\n";
        for out in [
            rewrite(bare, &identity(), &hop()).unwrap(),
            attach(bare, &identity(), &hop(), "test"),
            attach(lone, &identity(), &hop(), "test"),
        ] {
            assert_eq!(ses_rules::validate(&out), vec![], "{}", text(&out));
        }
        let out = rewrite(bare, &identity(), &hop()).unwrap();
        assert!(text(&out).ends_with("\r\n\r\nline one\r\nline two\r\n"));
        // The attachment keeps the original's bytes exactly (base64).
        let out = attach(lone, &identity(), &hop(), "test");
        let back = MessageParser::new().parse(&out).unwrap();
        let part = back
            .parts()
            .find(|p| p.is_content_type("message", "rfc822"))
            .unwrap();
        assert_eq!(part.decoded().as_ref(), &lone[..]);
    }

    #[test]
    fn unverified_mail_is_attached_marked_and_not_under_its_senders_name() {
        let raw = b"From: \"PayPal\" <service@paypal.com>\r\nDate: x\r\nSubject: Your account\r\n\r\nhi\r\n";
        let mut h = hop();
        h.unverified = Some("SPF FAIL, DMARC FAIL, p=none");
        h.verdicts = "spf=FAIL dkim=PASS dmarc=FAIL (p=none)";
        assert!(matches!(
            rewrite(raw, &identity(), &h),
            Err(Refusal::Unverified(_))
        ));
        let out = attach(raw, &identity(), &h, "unverified");
        assert_eq!(ses_rules::validate_for(&out, "example.com"), vec![]);
        let back = MessageParser::new().parse(&out).unwrap();
        assert_eq!(
            back.subject(),
            Some("[unverified sender] Fwd: Your account")
        );
        let from = back.from().unwrap().first().unwrap();
        assert_eq!(
            from.name(),
            Some("unverified: service@paypal.com via example.com")
        );
        assert!(!text(&out).contains("\"PayPal via"), "{}", text(&out));
        assert!(
            text(&out).contains("X-Mailroom-Verdicts: spf=FAIL dkim=PASS dmarc=FAIL (p=none)\r\n")
        );
        assert!(text(&out).contains("WARNING: SES could not verify"));
    }

    #[test]
    fn no_sender_can_make_a_line_too_long() {
        let long_name = "A".repeat(2000);
        let words = "=?utf-8?q?a?=".repeat(160);
        let junk = "j".repeat(950);
        let cases = [
            format!("From: \"{long_name}\" <a@x.org>\r\nDate: x\r\n\r\nhi\r\n"),
            format!("From: a@x.org\r\nDate: x\r\nSubject: {words}\r\n\r\nhi\r\n"),
            format!("From: a@x.org\r\nDate: x\r\nSubject: {long_name}\r\n\r\nhi\r\n"),
            format!("From: a@x.org\r\nDate: x\r\n{junk}\r\n\r\nhi\r\n"),
        ];
        for raw in &cases {
            let out = match rewrite(raw.as_bytes(), &identity(), &hop()) {
                Ok(out) => out,
                Err(e) => attach(raw.as_bytes(), &identity(), &hop(), &e.to_string()),
            };
            assert_eq!(
                ses_rules::validate_for(&out, "example.com"),
                vec![],
                "{}",
                &raw[..80]
            );
            assert!(!text(&out).contains(&"A".repeat(100)), "the name is capped");
            let always = attach(raw.as_bytes(), &identity(), &hop(), &"r".repeat(2000));
            assert_eq!(ses_rules::validate_for(&always, "example.com"), vec![]);
        }
    }

    #[test]
    fn hops_are_counted() {
        let raw = b"X-Mailroom-Forwarded: a\nx-mailroom-forwarded: b\nFrom: a@x\n\nx";
        assert_eq!(hops(raw), 2);
        assert_eq!(hops(b"From: a@x\n\nx"), 0);
    }
}
