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

use crate::header::{Eol, address_list, encode_text, field, mailbox};
use crate::ses_rules;
use mail_parser::{HeaderForm, MessageParser, MessageRef};
use sha2::{Digest, Sha256};

/// The header this function adds to everything it sends; loop protection counts them.
pub const HOP_HEADER: &str = "X-Mailroom-Forwarded";

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
        self.name_format
            .replace("{name}", name)
            .replace("{address}", sender_address)
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
];

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

/// How many times mail this function sent has already been forwarded.
pub fn hops(raw: &[u8]) -> usize {
    parse(raw).map_or(0, |m| m.headers().all(HOP_HEADER).count())
}

fn hop_field(identity: &Identity, hop: &Hop<'_>, eol: Eol) -> String {
    field(
        HOP_HEADER,
        &format!("for <{}>; by <{}>", hop.recipient, identity.address),
        eol,
    )
}

fn from_field(identity: &Identity, name: Option<&str>, address: &str, eol: Eol) -> String {
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
    if let Some(kind) = protected(raw) {
        return Err(Refusal::Protected(kind));
    }
    let (_, _, problems) = ses_rules::fields(raw);
    if let Some(first) = problems.first() {
        return Err(Refusal::Malformed(first.to_string()));
    }
    let parsed = parse(raw).ok_or(Refusal::Unparseable)?;
    let msg = parsed.root();
    let eol = Eol::of(raw);
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
        if DROPPED.contains(&lower.as_str()) {
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
    head.push_str(&hop_field(identity, hop, eol));
    head.push_str(&from_field(
        identity,
        sender_name.as_deref(),
        &sender_address,
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
    out.extend_from_slice(body);
    let violations = ses_rules::validate_for(&out, &identity.address);
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
/// 2046 allows nothing else for `message/rfc822`); only an original with a line SES would refuse
/// is base64-encoded.
fn transfer_encoding(raw: &[u8]) -> &'static str {
    let long = raw
        .split(|&b| b == b'\n')
        .any(|l| l.len() + 1 > ses_rules::MAX_LINE_BYTES);
    if long || raw.contains(&0) {
        "base64"
    } else if raw.is_ascii() {
        "7bit"
    } else {
        "8bit"
    }
}

/// A new message from the forwarding identity with the original attached unchanged.
pub fn attach(raw: &[u8], identity: &Identity, hop: &Hop<'_>, reason: &str) -> Vec<u8> {
    let parsed = parse(raw);
    let msg = parsed.as_ref().map(|p| p.root());
    let eol = Eol::of(raw);
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
    head.push_str(&hop_field(identity, hop, eol));
    head.push_str(&from_field(
        identity,
        sender_name.as_deref(),
        &sender_address,
        eol,
    ));
    if let Some(r) = reply {
        head.push_str(&r);
    }
    head.push_str(&field("To", &format!("<{}>", hop.recipient), eol));
    let subject = if subject.is_empty() {
        "Fwd: (no subject)".to_string()
    } else {
        format!("Fwd: {subject}")
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
        sender_address.clone()
    };
    let note = format!(
        "Forwarded by mailroom: mail from {from_text} to {}, received {}.{e}\
         The original is attached unchanged ({reason}).{e}\
         It is also kept at {}.{e}",
        hop.recipient, hop.received, hop.raw_url
    );
    let note = note.replace(|c: char| !c.is_ascii(), "?");
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
        assert!(out.contains("Delivered-To: one@example.com\n"));
        assert!(!out.contains("two@example.com"));
        assert!(out.contains("References: <a@x> <b@x>\n"), "{out}");
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

    #[test]
    fn hops_are_counted() {
        let raw = b"X-Mailroom-Forwarded: a\nx-mailroom-forwarded: b\nFrom: a@x\n\nx";
        assert_eq!(hops(raw), 2);
        assert_eq!(hops(b"From: a@x\n\nx"), 0);
    }
}
