//! The fanout summary (schema `mailroom.summary/1`) and the SNS publication that carries it.
//!
//! Subscribers filter on the message attributes (recipient, sender domain, verdicts,
//! has-attachments, size, subject) with SNS filter policies, and read the JSON summary for the
//! rest. Bodies ride along only while the whole publication stays under SNS's 256 KB limit;
//! otherwise the summary points at the stored copies in S3 instead. Everything here is pure, so
//! the size rules are tested without SNS.
//!
//! A summary (the SNS `Message`), abridged:
//!
//! ```json
//! {
//!   "schema": "mailroom.summary/1",
//!   "messageId": "o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1",
//!   "timestamp": "2025-01-15T10:00:02.028Z",
//!   "envelope": {"mailFrom": "bounce+abc=sender@example.net", "recipients": ["support@example.com"]},
//!   "from": [{"name": "Jane Sender", "address": "sender@example.net"}],
//!   "to": [{"name": "Support", "address": "support@example.com"}], "cc": [],
//!   "subject": "Quarterly report", "headerMessageId": "abc@example.net", "date": "2025-01-15T10:00:00Z",
//!   "verdicts": {"spam": "PASS", "virus": "PASS", "spf": "PASS", "dkim": "PASS", "dmarc": "PASS", "dmarcPolicy": null},
//!   "hasAttachments": true, "attachmentCount": 1,
//!   "attachments": [{"index": 0, "filename": "Q4 report.pdf", "contentType": "application/pdf", "size": 45,
//!                    "disposition": "attachment", "key": "messages/2025-01-15/o3vr…/attachments/0-Q4_report.pdf"}],
//!   "size": 1220,
//!   "raw": {"bucket": "mailroom-mail", "key": "raw/o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1"},
//!   "stored": {"bucket": "mailroom-mail", "prefix": "messages/2025-01-15/o3vr…/",  // parsed mail only
//!              "messageJson": "…/message.json", "bodyText": "…/body.txt", "bodyHtml": "…/body.html"},
//!   "bodies": "inline", "text": "Hello, …", "html": "<p>Hello, …</p>",
//!   "reply": {"text": "Hello, …", "signature": null, "method": "none"},
//!   "flags": []
//! }
//! ```
//!
//! Message attributes: `recipient` (String.Array of envelope recipients, lowercased),
//! `sender_domain` (From domain, else MAIL FROM domain), `spam`/`virus`/`spf`/`dkim`/`dmarc`
//! (verdict strings), `has_attachments` (`"true"`/`"false"`), `size` (Number, raw bytes), `subject`
//! (first 256 characters). Absent values are left out.

use mailroom::email::{Address, Disposition, Email, Envelope, Reply, Verdicts};
use mailroom::layout::{Locations, MessageLayout};
use mailroom::ports::{Attribute, Publication};
use mailroom::ses::{SesMail, SesReceipt, Verdict};
use serde::Serialize;
use std::collections::BTreeMap;

pub const SCHEMA: &str = "mailroom.summary/1";

/// SNS's limit for one message, body and attributes together.
pub const SNS_MAX_BYTES: usize = 262_144;
/// Room left for what SNS counts that we do not (attribute framing, encoding slack).
pub const SAFETY_MARGIN: usize = 8 * 1024;
/// The `subject` attribute is cut to this many characters (filter policies match prefixes).
pub const SUBJECT_ATTRIBUTE_CHARS: usize = 256;
/// SNS `Subject` (shown by email subscriptions): printable ASCII, "less than 100 characters".
const SNS_SUBJECT_CHARS: usize = 99;
/// `MessageGroupId` and `MessageDeduplicationId`: at most 128 characters.
const FIFO_ID_CHARS: usize = 128;

/// Attribute names, part of the contract with subscribers' filter policies.
pub mod attr {
    pub const RECIPIENT: &str = "recipient";
    pub const SENDER_DOMAIN: &str = "sender_domain";
    pub const SPAM: &str = "spam";
    pub const VIRUS: &str = "virus";
    pub const SPF: &str = "spf";
    pub const DKIM: &str = "dkim";
    pub const DMARC: &str = "dmarc";
    pub const HAS_ATTACHMENTS: &str = "has_attachments";
    pub const SIZE: &str = "size";
    pub const SUBJECT: &str = "subject";
}

/// `s3://` coordinates of an object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct S3Pointer {
    pub bucket: String,
    pub key: String,
}

/// Where the store function puts this message's layout (it may still be writing it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredPointers {
    pub bucket: String,
    pub prefix: String,
    pub message_json: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_html: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttachmentSummary<'a> {
    pub index: usize,
    pub filename: Option<&'a str>,
    pub content_type: &'a str,
    pub size: u64,
    pub disposition: Disposition,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_id: Option<&'a str>,
    /// The stored attachment's key in [`StoredPointers::bucket`].
    pub key: String,
}

/// The JSON published to SNS.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary<'a> {
    pub schema: &'static str,
    /// SES's message id: the dedupe key for subscribers (stable across retries).
    pub message_id: &'a str,
    /// When SES received the message.
    pub timestamp: &'a str,
    pub envelope: Envelope,
    pub from: Vec<Address>,
    pub to: Vec<Address>,
    pub cc: Vec<Address>,
    pub subject: Option<&'a str>,
    /// The `Message-ID` header.
    pub header_message_id: Option<&'a str>,
    pub date: Option<&'a str>,
    pub verdicts: Verdicts,
    pub has_attachments: bool,
    pub attachment_count: usize,
    pub attachments: Vec<AttachmentSummary<'a>>,
    pub size: u64,
    pub raw: S3Pointer,
    /// Where store writes the layout; absent when the message did not parse, because store
    /// parses it the same way and then writes nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored: Option<StoredPointers>,
    /// `inline` when `text`/`html` below are the whole bodies, `s3` when they are left out
    /// (read `stored.bodyText` / `stored.bodyHtml`), `partial` when only the text body fits,
    /// `none` when the message has no body.
    pub bodies: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<&'a str>,
    /// The new text of a reply and its signature (the model's `reply`); it travels with `text`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply: Option<&'a Reply>,
    /// Parse flags, plus `attachments_omitted` / `addresses_omitted` when the summary was cut.
    pub flags: Vec<String>,
    /// Set when the raw message could not be parsed: the summary then comes from SES's headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
}

/// What [`publication`] needs: the SES record, the parsed message if parsing worked, and where
/// things are.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub mail: &'a SesMail,
    pub receipt: &'a SesReceipt,
    pub email: Option<&'a Email>,
    pub parse_error: Option<&'a str>,
    pub locations: &'a Locations,
    pub topic_arn: &'a str,
    /// FIFO `MessageGroupId`; defaults to the first recipient's domain.
    pub group_id: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("even a minimal summary is {size} bytes, over SNS's budget of {budget} bytes")]
pub struct TooLarge {
    pub size: usize,
    pub budget: usize,
}

/// The publication for one message, the richest that fits SNS's size limit.
///
/// Order of giving things up: the HTML body, then the text body, then the attachment list, then
/// the To/Cc lists. Pointers to S3 always stay, so nothing is lost by leaving content out.
pub fn publication(input: &Input<'_>) -> Result<Built, TooLarge> {
    publication_within(input, SNS_MAX_BYTES - SAFETY_MARGIN)
}

/// A publication and how its bodies travel (the summary's `bodies`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub publication: Publication,
    /// `inline`, `partial`, `s3` or `none`.
    pub bodies: &'static str,
}

/// [`publication`] with an explicit byte budget (tests use small ones).
pub fn publication_within(input: &Input<'_>, budget: usize) -> Result<Built, TooLarge> {
    let attributes = attributes(input);
    let mut base = Publication {
        topic_arn: input.topic_arn.to_string(),
        subject: sns_subject(subject_of(input)),
        message: String::new(),
        attributes,
        group_id: None,
        dedup_id: None,
    };
    if base.is_fifo() {
        base.group_id = Some(fifo_id(input.group_id.map(str::to_string).unwrap_or_else(
            || {
                input
                    .receipt
                    .recipients
                    .first()
                    .and_then(|r| domain_of(r))
                    .unwrap_or_else(|| "mailroom".to_string())
            },
        )));
        base.dedup_id = Some(fifo_id(input.mail.message_id.clone()));
    }

    let full = summary(input);
    let text = full.text;
    let html = full.html;
    let mut candidates = Vec::new();
    // Both bodies, then text alone (the one most consumers read), then none.
    if text.is_some() || html.is_some() {
        candidates.push((text, html, "inline"));
    }
    if text.is_some() && html.is_some() {
        candidates.push((text, None, "partial"));
    }
    // Unparsed mail may well have bodies: they are in the raw object.
    let has_bodies = text.is_some() || html.is_some() || input.email.is_none();
    candidates.push((None, None, if has_bodies { "s3" } else { "none" }));

    let mut smallest = usize::MAX;
    let mut try_fit = |s: &Summary<'_>| -> Option<Built> {
        let mut p = base.clone();
        p.message = serde_json::to_string(s).ok()?;
        let size = publication_size(&p);
        smallest = smallest.min(size);
        (size <= budget).then_some(Built {
            publication: p,
            bodies: s.bodies,
        })
    };
    for (t, h, mode) in candidates {
        let mut s = full.clone();
        s.reply = if t.is_some() { full.reply } else { None };
        s.text = t;
        s.html = h;
        s.bodies = mode;
        if let Some(p) = try_fit(&s) {
            return Ok(p);
        }
    }
    let mut s = full;
    s.text = None;
    s.html = None;
    s.reply = None;
    s.bodies = if has_bodies { "s3" } else { "none" };
    s.attachments.clear();
    s.flags.push("attachments_omitted".to_string());
    if let Some(p) = try_fit(&s) {
        return Ok(p);
    }
    s.to.clear();
    s.cc.clear();
    s.flags.push("addresses_omitted".to_string());
    if let Some(p) = try_fit(&s) {
        return Ok(p);
    }
    // Last, every free-text field is cut to a fixed length and From to a few addresses: the
    // summary then has a size bound whatever the mail says (a 600 KB Subject, 40,000 From
    // addresses), so subscribers always hear of the message.
    cut_to_bound(&mut s);
    if let Some(p) = try_fit(&s) {
        return Ok(p);
    }
    Err(TooLarge {
        size: smallest,
        budget,
    })
}

/// The most characters any one text field keeps in the last resort of [`publication_within`].
pub const FIELD_CHARS: usize = 256;
/// The most From addresses kept in the last resort.
pub const LISTED_ADDRESSES: usize = 10;

/// Cuts what the mail controls to a bounded size, flagging what was cut (`subject_truncated`,
/// `from_truncated`, `fields_truncated`). Envelope recipients are kept in full (SES accepts at
/// most 50, docs/ses.md §7); each address is cut like any other field.
fn cut_to_bound(s: &mut Summary<'_>) {
    if let Some(subject) = s.subject
        && subject.chars().nth(FIELD_CHARS).is_some()
    {
        s.subject = Some(truncate_chars(subject, FIELD_CHARS));
        s.flags.push("subject_truncated".to_string());
    }
    if s.from.len() > LISTED_ADDRESSES {
        s.from.truncate(LISTED_ADDRESSES);
        s.flags.push("from_truncated".to_string());
    }
    let mut fields_cut = false;
    for a in &mut s.from {
        fields_cut |= cut_string(&mut a.address);
        if let Some(name) = &mut a.name {
            fields_cut |= cut_string(name);
        }
    }
    if let Some(from) = &mut s.envelope.mail_from {
        fields_cut |= cut_string(from);
    }
    for r in &mut s.envelope.recipients {
        fields_cut |= cut_string(r);
    }
    if let Some(e) = &mut s.parse_error {
        fields_cut |= cut_string(e);
    }
    for field in [&mut s.header_message_id, &mut s.date] {
        if let Some(v) = *field
            && v.chars().nth(FIELD_CHARS).is_some()
        {
            *field = Some(truncate_chars(v, FIELD_CHARS));
            fields_cut = true;
        }
    }
    if s.flags.len() > LISTED_FLAGS {
        s.flags.truncate(LISTED_FLAGS);
        fields_cut = true;
    }
    if fields_cut {
        s.flags.push("fields_truncated".to_string());
    }
}

/// The most parse flags kept in the last resort.
const LISTED_FLAGS: usize = 64;

/// Cuts `v` to [`FIELD_CHARS`] characters; true when it was longer.
fn cut_string(v: &mut String) -> bool {
    let keep = truncate_chars(v, FIELD_CHARS).len();
    let cut = keep < v.len();
    v.truncate(keep);
    cut
}

/// The bytes SNS counts against its limit: the message, the subject and every attribute's name,
/// type and value.
pub fn publication_size(p: &Publication) -> usize {
    p.message.len()
        + p.subject.as_deref().map_or(0, str::len)
        + p.attributes
            .iter()
            .map(|(name, a)| name.len() + a.data_type().len() + a.string_value().len())
            .sum::<usize>()
}

/// The full summary, bodies included.
pub fn summary<'a>(input: &Input<'a>) -> Summary<'a> {
    let mail = input.mail;
    let receipt = input.receipt;
    let layout = input.locations.message(
        &mailroom::layout::date_of(&mail.timestamp),
        &mail.message_id,
    );
    let raw = S3Pointer {
        bucket: input.locations.raw_bucket.clone(),
        key: input.locations.raw_key(&mail.message_id),
    };
    let envelope = ses_envelope(mail, receipt);
    let verdicts = Verdicts::from_receipt(receipt);
    match input.email {
        Some(email) => {
            let attachments: Vec<_> = email
                .attachments
                .iter()
                .map(|a| AttachmentSummary {
                    index: a.index,
                    filename: a.filename.as_deref(),
                    content_type: &a.content_type,
                    size: a.size,
                    disposition: a.disposition,
                    content_id: a.content_id.as_deref(),
                    key: layout.attachment_of(a),
                })
                .collect();
            Summary {
                schema: SCHEMA,
                message_id: &mail.message_id,
                timestamp: &mail.timestamp,
                envelope,
                from: email.from.clone(),
                to: email.to.clone(),
                cc: email.cc.clone(),
                subject: email.subject.as_deref(),
                header_message_id: email.message_id.as_deref(),
                date: email.date.as_deref(),
                verdicts,
                has_attachments: !attachments.is_empty(),
                attachment_count: attachments.len(),
                attachments,
                size: email.size,
                raw,
                stored: Some(stored(&layout, email.text.is_some(), email.html.is_some())),
                bodies: "inline",
                text: email.text.as_deref(),
                html: email.html.as_deref(),
                reply: email.reply.as_ref(),
                flags: email.flags.clone(),
                parse_error: None,
            }
        }
        None => {
            let h = &mail.common_headers;
            let addresses = |v: &Option<Vec<String>>| {
                v.iter()
                    .flatten()
                    .map(|s| header_address(s))
                    .collect::<Vec<_>>()
            };
            Summary {
                schema: SCHEMA,
                message_id: &mail.message_id,
                timestamp: &mail.timestamp,
                envelope,
                from: addresses(&h.from),
                to: addresses(&h.to),
                cc: addresses(&h.cc),
                subject: h.subject.as_deref(),
                header_message_id: h
                    .message_id
                    .as_deref()
                    .map(|s| s.trim().trim_start_matches('<').trim_end_matches('>')),
                date: h.date.as_deref(),
                verdicts,
                has_attachments: false,
                attachment_count: 0,
                attachments: Vec::new(),
                size: 0,
                raw,
                stored: None,
                bodies: "s3",
                text: None,
                html: None,
                reply: None,
                flags: vec!["unparsed".to_string()],
                parse_error: Some(input.parse_error.unwrap_or("not parsed").to_string()),
            }
        }
    }
}

fn stored(layout: &MessageLayout, text: bool, html: bool) -> StoredPointers {
    StoredPointers {
        bucket: layout.bucket.clone(),
        prefix: layout.prefix.clone(),
        message_json: layout.message_json(),
        body_text: text.then(|| layout.body_text()),
        body_html: html.then(|| layout.body_html()),
    }
}

/// The SNS message attributes: at most 10, as SNS allows. Absent values are left out rather
/// than sent empty (SNS rejects empty strings).
pub fn attributes(input: &Input<'_>) -> BTreeMap<String, Attribute> {
    let mut out = BTreeMap::new();
    let r = input.receipt;
    if !r.recipients.is_empty() {
        out.insert(
            attr::RECIPIENT.to_string(),
            Attribute::StringArray(
                r.recipients
                    .iter()
                    .map(|s| attribute_text(&s.to_ascii_lowercase()))
                    .collect(),
            ),
        );
    }
    if let Some(d) = sender_domain(input) {
        // A domain is at most 253 characters; a longer one is junk, kept bounded.
        let d = truncate_chars(&d, FIELD_CHARS).to_string();
        out.insert(attr::SENDER_DOMAIN.to_string(), Attribute::String(d));
    }
    for (name, v) in [
        (attr::SPAM, r.spam()),
        (attr::VIRUS, r.virus()),
        (attr::SPF, r.spf()),
        (attr::DKIM, r.dkim()),
        (attr::DMARC, r.dmarc()),
    ] {
        if let Some(v) = v.map(Verdict::as_str).map(attribute_text)
            && !v.is_empty()
        {
            out.insert(name.to_string(), Attribute::String(v));
        }
    }
    let (has_attachments, size) = match input.email {
        Some(e) => (!e.attachments.is_empty(), Some(e.size)),
        None => (false, None),
    };
    out.insert(
        attr::HAS_ATTACHMENTS.to_string(),
        Attribute::String(has_attachments.to_string()),
    );
    if let Some(size) = size {
        out.insert(attr::SIZE.to_string(), Attribute::number(size));
    }
    if let Some(s) = subject_of(input) {
        let s = truncate_chars(&attribute_text(s), SUBJECT_ATTRIBUTE_CHARS)
            .trim()
            .to_string();
        if !s.is_empty() {
            out.insert(attr::SUBJECT.to_string(), Attribute::String(s));
        }
    }
    out
}

/// The domain of the From address (what a person filters on), else of the envelope sender.
fn sender_domain(input: &Input<'_>) -> Option<String> {
    let from_header = match input.email {
        Some(e) => e.from.first().map(|a| a.address.clone()),
        None => input
            .mail
            .common_headers
            .from
            .as_ref()
            .and_then(|v| v.first())
            .map(|s| header_address(s).address),
    };
    from_header
        .and_then(|a| domain_of(&a))
        .or_else(|| domain_of(&input.mail.source))
        .map(|d| attribute_text(&d))
        .filter(|d| !d.is_empty())
}

fn subject_of<'a>(input: &Input<'a>) -> Option<&'a str> {
    match input.email {
        Some(e) => e.subject.as_deref(),
        None => input.mail.common_headers.subject.as_deref(),
    }
}

/// Lowercased domain of an address, if it has one.
fn domain_of(address: &str) -> Option<String> {
    let (_, d) = address.trim().rsplit_once('@')?;
    let d = d.trim().trim_end_matches('>').trim().to_ascii_lowercase();
    (!d.is_empty()).then_some(d)
}

/// `Jane <jane@example.net>` → name and address; a bare address stays as it is.
fn header_address(s: &str) -> Address {
    let s = s.trim();
    match (s.rfind('<'), s.rfind('>')) {
        (Some(open), Some(close)) if open < close => {
            let name = s[..open].trim().trim_matches('"').trim();
            Address {
                name: (!name.is_empty()).then(|| name.to_string()),
                address: s[open + 1..close].trim().to_string(),
            }
        }
        _ => Address {
            name: None,
            address: s.to_string(),
        },
    }
}

/// The envelope as SES saw it, as `Email::apply_ses` fills it: MAIL FROM (empty for the null
/// sender) and the recipients this rule matched.
fn ses_envelope(mail: &SesMail, receipt: &SesReceipt) -> Envelope {
    Envelope {
        mail_from: Some(mail.source.clone()),
        recipients: receipt.recipients.clone(),
    }
}

/// Characters SNS accepts in attribute values (the XML character range), others become spaces.
fn attribute_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => ' ',
            c if c.is_control() => ' ',
            '\u{FFFE}' | '\u{FFFF}' => ' ',
            c => c,
        })
        .collect()
}

/// At most `n` characters, cut on a character boundary.
pub fn truncate_chars(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Printable ASCII, starting with a non-space, under 100 characters, or none.
fn sns_subject(subject: Option<&str>) -> Option<String> {
    let cleaned: String = subject?
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .collect::<String>()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let s = truncate_chars(&cleaned, SNS_SUBJECT_CHARS).trim_end();
    (!s.is_empty()).then(|| s.to_string())
}

/// FIFO ids: alphanumerics and punctuation only, at most 128 characters, never empty.
fn fifo_id(s: String) -> String {
    let id: String = s
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(FIFO_ID_CHARS)
        .collect();
    if id.is_empty() { "_".to_string() } else { id }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailroom::email::Attachment;
    use mailroom::ses::SesEvent;

    fn event() -> SesEvent {
        let json = r#"{"Records":[{"eventSource":"aws:ses","eventVersion":"1.0","ses":{
            "mail":{"timestamp":"2025-01-15T10:00:02.028Z","source":"bounce@lists.example.net",
                    "messageId":"o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1",
                    "destination":["support@example.com"],"headersTruncated":false,"headers":[],
                    "commonHeaders":{"from":["Jane Sender <Jane@Example.NET>"],"to":["support@example.com"],
                                     "subject":"Hello\u0007 there","messageId":"<abc@example.net>"}},
            "receipt":{"timestamp":"2025-01-15T10:00:02.028Z","processingTimeMillis":512,
                    "recipients":["Support@Example.com","sales@example.com"],
                    "spamVerdict":{"status":"PASS"},"virusVerdict":{"status":"PASS"},
                    "spfVerdict":{"status":"PASS"},"dkimVerdict":{"status":"GRAY"},
                    "dmarcVerdict":{"status":"FAIL"},"dmarcPolicy":"reject",
                    "action":{"type":"Lambda","invocationType":"Event"}}}}]}"#;
        serde_json::from_str(json).expect("event")
    }

    fn email(text: &str, html: &str, attachments: usize) -> Email {
        Email {
            schema: mailroom::email::SCHEMA.to_string(),
            envelope: Envelope::default(),
            message_id: Some("abc@example.net".into()),
            date: Some("2025-01-15T10:00:00Z".into()),
            subject: Some("ünïcode ".repeat(100)),
            from: vec![Address {
                name: Some("Jane".into()),
                address: "jane@Example.NET".into(),
            }],
            sender: None,
            reply_to: vec![],
            to: vec![Address {
                name: None,
                address: "support@example.com".into(),
            }],
            cc: vec![],
            bcc: vec![],
            mailbox_hash: None,
            in_reply_to: vec![],
            references: vec![],
            headers: vec![],
            text: Some(text.to_string()),
            text_from_html: false,
            html: Some(html.to_string()),
            reply: None,
            attachments: (0..attachments)
                .map(|i| Attachment {
                    index: i,
                    filename: Some(format!("file-{i}.pdf")),
                    safe_filename: format!("file-{i}.pdf"),
                    content_type: "application/pdf".into(),
                    size: 10,
                    content_id: None,
                    disposition: Disposition::Attachment,
                    sha256: "00".repeat(32),
                    message: None,
                })
                .collect(),
            verdicts: None,
            size: 12_345,
            flags: vec![],
        }
    }

    fn input<'a>(ev: &'a SesEvent, email: Option<&'a Email>, loc: &'a Locations) -> Input<'a> {
        let r = &ev.records[0].ses;
        Input {
            mail: &r.mail,
            receipt: &r.receipt,
            email,
            parse_error: email.is_none().then_some("not MIME"),
            locations: loc,
            topic_arn: "arn:aws:sns:us-east-1:123456789012:mail",
            group_id: None,
        }
    }

    fn message(p: &Publication) -> serde_json::Value {
        serde_json::from_str(&p.message).expect("summary JSON")
    }

    #[test]
    fn attributes_are_filterable_and_at_most_ten() {
        let ev = event();
        let loc = Locations::new("raw", "raw/", None, None);
        let e = email("hi", "<p>hi</p>", 1);
        let p = publication(&input(&ev, Some(&e), &loc))
            .expect("fits")
            .publication;
        let a = &p.attributes;
        assert!(a.len() <= 10, "{a:?}");
        assert_eq!(
            a[attr::RECIPIENT],
            Attribute::StringArray(vec![
                "support@example.com".into(),
                "sales@example.com".into()
            ])
        );
        assert_eq!(
            a[attr::RECIPIENT].string_value(),
            r#"["support@example.com","sales@example.com"]"#
        );
        assert_eq!(
            a[attr::SENDER_DOMAIN],
            Attribute::String("example.net".into())
        );
        assert_eq!(a[attr::DKIM], Attribute::String("GRAY".into()));
        assert_eq!(a[attr::DMARC], Attribute::String("FAIL".into()));
        assert_eq!(a[attr::HAS_ATTACHMENTS], Attribute::String("true".into()));
        assert_eq!(a[attr::SIZE], Attribute::Number("12345".into()));
        match &a[attr::SUBJECT] {
            Attribute::String(s) => assert_eq!(s.chars().count(), SUBJECT_ATTRIBUTE_CHARS - 1),
            other => panic!("{other:?}"),
        }
        assert!(p.group_id.is_none() && p.dedup_id.is_none());
        let subject = p.subject.expect("SNS subject");
        assert!(subject.len() < 100 && subject.is_ascii(), "{subject}");
    }

    #[test]
    fn summary_points_at_raw_and_stored_layout() {
        let ev = event();
        let loc = Locations::new("raw", "raw/", Some("store".into()), None);
        let e = email("hi", "<p>hi</p>", 2);
        let p = publication(&input(&ev, Some(&e), &loc))
            .expect("fits")
            .publication;
        let m = message(&p);
        assert_eq!(m["schema"], SCHEMA);
        assert_eq!(m["messageId"], "o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1");
        assert_eq!(m["raw"]["bucket"], "raw");
        assert_eq!(
            m["raw"]["key"],
            "raw/o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1"
        );
        let prefix = "messages/2025-01-15/o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1/";
        assert_eq!(m["stored"]["bucket"], "store");
        assert_eq!(m["stored"]["messageJson"], format!("{prefix}message.json"));
        assert_eq!(
            m["attachments"][1]["key"],
            format!("{prefix}attachments/1-file-1.pdf")
        );
        assert_eq!(m["bodies"], "inline");
        assert_eq!(m["text"], "hi");
        assert_eq!(m["html"], "<p>hi</p>");
        assert_eq!(m["verdicts"]["dmarcPolicy"], "reject");
        assert_eq!(m["envelope"]["mailFrom"], "bounce@lists.example.net");
    }

    #[test]
    fn large_bodies_become_pointers_and_stay_under_the_limit() {
        let ev = event();
        let loc = Locations::new("raw", "", None, None);
        // Text fits on its own, text + html do not.
        let e = email(&"t".repeat(100_000), &"h".repeat(200_000), 0);
        let p = publication(&input(&ev, Some(&e), &loc))
            .expect("fits")
            .publication;
        assert!(publication_size(&p) <= SNS_MAX_BYTES - SAFETY_MARGIN);
        let m = message(&p);
        assert_eq!(m["bodies"], "partial");
        assert!(m.get("html").is_none());
        assert_eq!(m["text"].as_str().map(str::len), Some(100_000));
        assert!(m["stored"]["bodyHtml"].is_string());

        let e = email(&"t".repeat(300_000), &"h".repeat(300_000), 0);
        let p = publication(&input(&ev, Some(&e), &loc))
            .expect("fits")
            .publication;
        assert!(publication_size(&p) <= SNS_MAX_BYTES - SAFETY_MARGIN);
        let m = message(&p);
        assert_eq!(m["bodies"], "s3");
        assert!(m.get("text").is_none() && m.get("html").is_none());
        assert!(m["stored"]["bodyText"].is_string());
    }

    #[test]
    fn many_attachments_are_cut_from_the_list_not_from_the_count() {
        let ev = event();
        let loc = Locations::new("raw", "", None, None);
        let e = email("x", "y", 3000);
        let p = publication(&input(&ev, Some(&e), &loc))
            .expect("fits")
            .publication;
        let m = message(&p);
        assert_eq!(m["attachmentCount"], 3000);
        assert_eq!(m["attachments"].as_array().map(Vec::len), Some(0));
        assert!(
            m["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f == "attachments_omitted"))
        );
        assert!(publication_size(&p) <= SNS_MAX_BYTES - SAFETY_MARGIN);

        let err = publication_within(&input(&ev, Some(&e), &loc), 100).expect_err("tiny budget");
        assert!(err.size > 100);
    }

    #[test]
    fn a_huge_subject_and_sender_list_are_cut_so_the_summary_always_fits() {
        let ev = event();
        let loc = Locations::new("raw", "", None, None);
        let mut e = email("x", "y", 0);
        e.subject = Some("S".repeat(600 * 1024));
        e.from = (0..40_000)
            .map(|i| Address {
                name: Some(format!("Sender {i}")),
                address: format!("sender-{i}@example.net"),
            })
            .collect();
        e.message_id = Some("m".repeat(100_000));
        let p = publication(&input(&ev, Some(&e), &loc))
            .expect("fits")
            .publication;
        assert!(publication_size(&p) <= SNS_MAX_BYTES - SAFETY_MARGIN);
        let m = message(&p);
        let flags: Vec<_> = m["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .filter_map(|f| f.as_str())
            .collect();
        for flag in ["subject_truncated", "from_truncated", "fields_truncated"] {
            assert!(flags.contains(&flag), "{flag} in {flags:?}");
        }
        assert_eq!(m["subject"].as_str().map(str::len), Some(FIELD_CHARS));
        assert_eq!(m["from"].as_array().map(Vec::len), Some(LISTED_ADDRESSES));
        assert_eq!(m["from"][0]["address"], "sender-0@example.net");
        // What the summary always says in full: which message, for whom, and where it is.
        assert_eq!(m["messageId"], "o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1");
        assert_eq!(m["envelope"]["recipients"][1], "sales@example.com");
        assert!(m["raw"]["key"].is_string());

        // The same from SES's headers alone, when the mail did not parse.
        let mut ev = event();
        let h = &mut ev.records[0].ses.mail.common_headers;
        h.subject = Some("S".repeat(600 * 1024));
        h.from = Some((0..40_000).map(|i| format!("s{i}@example.net")).collect());
        let p = publication(&input(&ev, None, &loc))
            .expect("fits")
            .publication;
        assert!(publication_size(&p) <= SNS_MAX_BYTES - SAFETY_MARGIN);
    }

    #[test]
    fn unparsed_mail_is_summarised_from_ses_headers() {
        let ev = event();
        let loc = Locations::new("raw", "", None, None);
        let p = publication(&input(&ev, None, &loc))
            .expect("fits")
            .publication;
        let m = message(&p);
        assert_eq!(m["parseError"], "not MIME");
        assert!(
            m.get("stored").is_none(),
            "store writes nothing for mail that does not parse: no pointers to it"
        );
        assert_eq!(m["from"][0]["address"], "Jane@Example.NET");
        assert_eq!(m["from"][0]["name"], "Jane Sender");
        assert_eq!(m["headerMessageId"], "abc@example.net");
        assert_eq!(m["bodies"], "s3");
        assert_eq!(
            p.attributes[attr::SENDER_DOMAIN],
            Attribute::String("example.net".into())
        );
        assert_eq!(
            p.attributes[attr::SUBJECT],
            Attribute::String("Hello  there".into())
        );
        assert!(!p.attributes.contains_key(attr::SIZE));
    }

    #[test]
    fn fifo_topics_get_group_and_dedup_ids() {
        let ev = event();
        let loc = Locations::new("raw", "", None, None);
        let mut i = input(&ev, None, &loc);
        i.topic_arn = "arn:aws:sns:us-east-1:123456789012:mail.fifo";
        let p = publication(&i).expect("fits").publication;
        assert_eq!(p.group_id.as_deref(), Some("example.com"));
        assert_eq!(
            p.dedup_id.as_deref(),
            Some("o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1")
        );
        i.group_id = Some("all mail");
        let p = publication(&i).expect("fits").publication;
        assert_eq!(p.group_id.as_deref(), Some("all_mail"));
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate_chars("héllo", 2), "hé");
        assert_eq!(truncate_chars("hi", 5), "hi");
        assert_eq!(
            sns_subject(Some("  \u{7}Ünïcode\r\nsubject ")),
            Some("n code subject".into())
        );
        assert_eq!(sns_subject(Some("\u{1F600}")), None);
    }
}
