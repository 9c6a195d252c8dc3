//! The webhook body, in the format the user chose.
//!
//! - [`Format::Mailroom`]: a Standard Webhooks envelope `{"type":"email.received","timestamp",
//!   "data"}` whose `data` holds our JSON model (with SES envelope and verdicts filled in), where
//!   the raw message is in S3 (with a presigned URL), and each attachment's bytes or URL.
//! - [`Format::Postmark`]: Postmark's inbound webhook JSON, field for field, so existing Postmark
//!   inbound handlers accept it unchanged (checked against django-anymail's handler in the api
//!   function's tests). Attachments over the inline limit keep
//!   `ContentLength` but have an empty `Content` and carry `ContentUrl` (our addition) instead;
//!   `RawEmailLossy` and `RawEmailBase64` (our additions) say when `RawEmail`, a string, could
//!   not hold the message's bytes as they are.
//!
//! Which attachments go inline is decided by [`plan_attachments`] (per-attachment and total
//! limits) before the caller uploads and presigns the rest; [`build`] itself does no I/O.

use crate::email::body_reply;
use crate::email::{
    Address, Attachment, Email, Envelope, Header, Parsed, Reply, ReplyMethod, Verdicts,
};
use crate::served;
use crate::webhook::delivery::SesContext;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;
use serde_json::{Value, json};
use std::borrow::Cow;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Mailroom,
    Postmark,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mailroom" => Some(Format::Mailroom),
            "postmark" => Some(Format::Postmark),
            _ => None,
        }
    }
}

/// The `type` of the mailroom envelope.
pub const EVENT_TYPE: &str = "email.received";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Attachments up to this many bytes go inline (base64).
    pub inline_max_bytes: u64,
    /// Once inline attachments total this many bytes, the rest go by URL.
    pub inline_total_max_bytes: u64,
}

/// How each attachment travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Inline,
    Url {
        url: String,
        /// RFC 3339.
        expires_at: String,
    },
}

/// True at index `i` when attachment `i` goes inline. Attachments are taken in order so the
/// choice is stable across retries.
pub fn plan_attachments(parsed: &Parsed, limits: &Limits) -> Vec<bool> {
    let mut total = 0u64;
    parsed
        .email
        .attachments
        .iter()
        .map(|a| {
            let size = content(parsed, a.index).len() as u64;
            let fits = size <= limits.inline_max_bytes
                && total.saturating_add(size) <= limits.inline_total_max_bytes;
            if fits {
                total += size;
            }
            fits
        })
        .collect()
}

fn content(parsed: &Parsed, index: usize) -> &[u8] {
    parsed.contents.get(index).map_or(&[][..], Vec::as_slice)
}

/// Where the raw message is, and a URL to fetch it if one was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawLocation {
    pub bucket: String,
    pub key: String,
    pub url: Option<String>,
    pub url_expires_at: Option<String>,
}

/// Everything [`build`] needs.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub format: Format,
    pub webhook_id: &'a str,
    /// SES messageId.
    pub message_id: &'a str,
    pub parsed: &'a Parsed,
    pub ses: &'a SesContext,
    pub raw_location: &'a RawLocation,
    /// One entry per attachment, by index.
    pub attachments: &'a [Delivery],
    /// Postmark only: include `RawEmail` (the whole MIME message as text) and `RawEmailLossy`,
    /// with `RawEmailBase64` (the exact bytes) when the message is not UTF-8.
    pub raw_email: Option<&'a [u8]>,
}

/// The body to POST. Serialized straight from the parsed message: the bodies are borrowed, never
/// copied into a clone or a `serde_json::Value` first (each copy of a 120 MB decoded text is
/// 120 MB more in a 512 MB function).
pub fn build(input: &Input<'_>) -> Result<Vec<u8>, serde_json::Error> {
    match input.format {
        Format::Mailroom => serde_json::to_vec(&mailroom(input)),
        Format::Postmark => serde_json::to_vec(&postmark(input)),
    }
}

/// The model as the payload carries it: the parsed message's fields, borrowed, in the model's
/// order, with what only SES knows (envelope, verdicts, the recipient's `+tag`) filled in.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EmailView<'a> {
    schema: &'a str,
    envelope: Cow<'a, Envelope>,
    message_id: &'a Option<String>,
    date: &'a Option<String>,
    subject: &'a Option<String>,
    from: &'a [Address],
    sender: &'a Option<Address>,
    reply_to: &'a [Address],
    to: &'a [Address],
    cc: &'a [Address],
    bcc: &'a [Address],
    mailbox_hash: Option<Cow<'a, str>>,
    in_reply_to: &'a [String],
    references: &'a [String],
    headers: &'a [Header],
    text: &'a Option<String>,
    text_from_html: bool,
    html: &'a Option<String>,
    reply: &'a Option<Reply>,
    attachments: &'a [Attachment],
    verdicts: Option<Cow<'a, Verdicts>>,
    size: u64,
    flags: &'a [String],
}

/// Whether the SES context has anything to fill in.
fn ses_known(input: &Input<'_>) -> bool {
    !input.ses.timestamp.is_empty() || !input.ses.recipients.is_empty()
}

/// The first `+tag` among SES's envelope recipients, when SES's context is known.
fn ses_mailbox_hash(input: &Input<'_>) -> Option<String> {
    if !ses_known(input) {
        return None;
    }
    input.ses.recipients.iter().find_map(|r| mailbox_hash(r))
}

fn email_view<'a>(input: &Input<'a>) -> EmailView<'a> {
    let e = &input.parsed.email;
    let ses = input.ses;
    let known = ses_known(input);
    let envelope = if known {
        Cow::Owned(Envelope {
            mail_from: Some(ses.mail_from.clone()).filter(|s| !s.is_empty()),
            recipients: ses.recipients.clone(),
        })
    } else {
        Cow::Borrowed(&e.envelope)
    };
    let ses_hash = ses_mailbox_hash(input);
    EmailView {
        schema: &e.schema,
        envelope,
        message_id: &e.message_id,
        date: &e.date,
        subject: &e.subject,
        from: &e.from,
        sender: &e.sender,
        reply_to: &e.reply_to,
        to: &e.to,
        cc: &e.cc,
        bcc: &e.bcc,
        mailbox_hash: ses_hash
            .map(Cow::Owned)
            .or_else(|| e.mailbox_hash.as_deref().map(Cow::Borrowed)),
        in_reply_to: &e.in_reply_to,
        references: &e.references,
        headers: &e.headers,
        text: &e.text,
        text_from_html: e.text_from_html,
        html: &e.html,
        reply: &e.reply,
        attachments: &e.attachments,
        verdicts: if known {
            Some(Cow::Borrowed(&ses.verdicts))
        } else {
            e.verdicts.as_ref().map(Cow::Borrowed)
        },
        size: e.size,
        flags: &e.flags,
    }
}

/// The model with what only SES knows filled in, as an owned copy: what [`EmailView`] must
/// serialize to.
#[cfg(test)]
fn email_with_ses(input: &Input<'_>) -> Email {
    let mut email = input.parsed.email.clone();
    let ses = input.ses;
    if !ses.timestamp.is_empty() || !ses.recipients.is_empty() {
        email.envelope = Envelope {
            mail_from: Some(ses.mail_from.clone()).filter(|s| !s.is_empty()),
            recipients: ses.recipients.clone(),
        };
        email.verdicts = Some(ses.verdicts.clone());
        if let Some(hash) = ses.recipients.iter().find_map(|r| mailbox_hash(r)) {
            email.mailbox_hash = Some(hash);
        }
    }
    email
}

#[derive(Serialize)]
struct MailroomBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    timestamp: &'a str,
    data: MailroomData<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MailroomData<'a> {
    id: &'a str,
    message_id: &'a str,
    email: EmailView<'a>,
    raw: Value,
    attachments: Vec<Value>,
}

fn mailroom<'a>(input: &Input<'a>) -> MailroomBody<'a> {
    let email = &input.parsed.email;
    let attachments: Vec<Value> = email
        .attachments
        .iter()
        .map(|a| {
            let mut v = json!({
                "index": a.index,
                "filename": a.filename,
                "contentType": a.content_type,
                "size": a.size,
                "contentId": a.content_id,
                "sha256": a.sha256,
            });
            match input.attachments.get(a.index) {
                Some(Delivery::Url { url, expires_at }) => {
                    v["url"] = json!(url);
                    v["urlExpiresAt"] = json!(expires_at);
                }
                _ => v["content"] = json!(B64.encode(content(input.parsed, a.index))),
            }
            v
        })
        .collect();
    let raw = input.raw_location;
    MailroomBody {
        kind: EVENT_TYPE,
        timestamp: &input.ses.timestamp,
        data: MailroomData {
            id: input.webhook_id,
            message_id: input.message_id,
            email: email_view(input),
            raw: json!({
                "bucket": raw.bucket,
                "key": raw.key,
                "url": raw.url,
                "urlExpiresAt": raw.url_expires_at,
            }),
            attachments,
        },
    }
}

/// `"Name" <a@b>` or `a@b`, as Postmark writes its `To`/`Cc`/`Bcc` strings.
fn display(a: &Address) -> String {
    match a.name.as_deref().filter(|n| !n.is_empty()) {
        Some(n) => format!("\"{}\" <{}>", n.replace('"', "'"), a.address),
        None => a.address.clone(),
    }
}

fn full(a: &Address) -> Value {
    json!({
        "Email": a.address,
        "Name": a.name.clone().unwrap_or_default(),
        "MailboxHash": mailbox_hash(&a.address).unwrap_or_default(),
    })
}

/// The `+tag` of `local+tag@domain`.
pub fn mailbox_hash(address: &str) -> Option<String> {
    let local = address.rsplit_once('@').map_or(address, |(l, _)| l);
    local
        .split_once('+')
        .map(|(_, h)| h.to_string())
        .filter(|h| !h.is_empty())
}

fn header<'e>(email: &'e Email, name: &str) -> Option<&'e str> {
    email
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

/// Headers Postmark leaves out of `Headers` because a field carries them (or, for the MIME
/// structure headers, because the JSON has no MIME structure).
const POSTMARK_FIELD_HEADERS: [&str; 10] = [
    "Return-Path",
    "From",
    "To",
    "Cc",
    "Bcc",
    "Subject",
    "Date",
    "Reply-To",
    "Content-Type",
    "Content-Transfer-Encoding",
];

/// Postmark's inbound JSON. The bodies and the raw message are borrowed (see [`build`]).
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PostmarkBody<'a> {
    from_name: String,
    message_stream: &'static str,
    from: String,
    from_full: Value,
    to: String,
    to_full: Vec<Value>,
    cc: String,
    cc_full: Vec<Value>,
    bcc: String,
    bcc_full: Vec<Value>,
    original_recipient: String,
    subject: &'a str,
    #[serde(rename = "MessageID")]
    message_id: &'a str,
    reply_to: String,
    mailbox_hash: String,
    date: String,
    text_body: &'a str,
    html_body: &'a str,
    stripped_text_reply: String,
    tag: &'static str,
    headers: Vec<Value>,
    attachments: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_email: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_email_lossy: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    raw_email_base64: Option<String>,
}

fn postmark<'a>(input: &Input<'a>) -> PostmarkBody<'a> {
    let email = &input.parsed.email;
    let join = |list: &[Address]| list.iter().map(display).collect::<Vec<_>>().join(", ");
    let fulls = |list: &[Address]| list.iter().map(full).collect::<Vec<_>>();
    let from = email.from.first();
    let attachments: Vec<Value> = email
        .attachments
        .iter()
        .map(|a| {
            let bytes = content(input.parsed, a.index);
            let mut v = json!({
                "Name": a.filename.clone().unwrap_or_else(|| a.safe_filename.clone()),
                "Content": "",
                // Handlers pass this on as a response header when they serve the file, as they
                // do Postmark's: only a clean type goes, as the stored copies are served.
                "ContentType": served::clean_content_type(&a.content_type)
                    .unwrap_or_else(|| served::FALLBACK_TYPE.to_string()),
                "ContentLength": bytes.len(),
            });
            // Only inline parts have one. An empty `ContentID` would make handlers such as
            // django-anymail's treat every attachment as an inline image.
            if let Some(cid) = a.content_id.as_deref().filter(|c| !c.is_empty()) {
                v["ContentID"] = json!(cid);
            }
            match input.attachments.get(a.index) {
                Some(Delivery::Url { url, expires_at }) => {
                    v["ContentUrl"] = json!(url);
                    v["ContentUrlExpiresAt"] = json!(expires_at);
                }
                _ => v["Content"] = json!(B64.encode(bytes)),
            }
            v
        })
        .collect();
    // As Postmark does: the envelope sender first as `Return-Path`, then the headers that have
    // no field of their own (handlers rebuild a message from both and would double them).
    let mail_from = Some(input.ses.mail_from.as_str())
        .filter(|s| !s.is_empty())
        .map(|s| format!("<{s}>"))
        .or_else(|| header(email, "Return-Path").map(str::to_string));
    let headers: Vec<Value> = mail_from
        .map(|v| json!({"Name": "Return-Path", "Value": v}))
        .into_iter()
        .chain(
            email
                .headers
                .iter()
                .filter(|h| {
                    !POSTMARK_FIELD_HEADERS
                        .iter()
                        .any(|n| h.name.eq_ignore_ascii_case(n))
                })
                .map(|h| json!({"Name": h.name, "Value": h.value})),
        )
        .collect();
    let original_recipient = input
        .ses
        .recipients
        .first()
        .cloned()
        .or_else(|| email.to.first().map(|a| a.address.clone()))
        .unwrap_or_default();
    let mailbox_hash = mailbox_hash(&original_recipient)
        .or_else(|| ses_mailbox_hash(input))
        .or_else(|| email.mailbox_hash.clone())
        .unwrap_or_default();
    let mut body = PostmarkBody {
        from_name: from.and_then(|a| a.name.clone()).unwrap_or_default(),
        message_stream: "inbound",
        from: from.map(|a| a.address.clone()).unwrap_or_default(),
        from_full: from.map_or_else(|| json!({"Email": "", "Name": "", "MailboxHash": ""}), full),
        to: join(&email.to),
        to_full: fulls(&email.to),
        cc: join(&email.cc),
        cc_full: fulls(&email.cc),
        bcc: join(&email.bcc),
        bcc_full: fulls(&email.bcc),
        original_recipient,
        subject: email.subject.as_deref().unwrap_or_default(),
        message_id: input.message_id,
        reply_to: email
            .reply_to
            .iter()
            .map(|a| a.address.clone())
            .collect::<Vec<_>>()
            .join(", "),
        mailbox_hash,
        date: header(email, "Date")
            .map(str::to_string)
            .or(email.date.clone())
            .unwrap_or_default(),
        text_body: email.text.as_deref().unwrap_or_default(),
        html_body: email.html.as_deref().unwrap_or_default(),
        stripped_text_reply: stripped_text_reply(email),
        tag: "",
        headers,
        attachments,
        raw_email: None,
        raw_email_lossy: None,
        raw_email_base64: None,
    };
    if let Some(raw) = input.raw_email {
        // Postmark's RawEmail is a string, and handlers read it as one. Mail is bytes, often not
        // UTF-8 (8-bit headers and bodies in legacy charsets), so when the string had to replace
        // some, the payload says so and carries the exact bytes beside it.
        match std::str::from_utf8(raw) {
            Ok(text) => {
                body.raw_email = Some(Cow::Borrowed(text));
                body.raw_email_lossy = Some(false);
            }
            Err(_) => {
                body.raw_email = Some(String::from_utf8_lossy(raw));
                body.raw_email_lossy = Some(true);
                body.raw_email_base64 = Some(B64.encode(raw));
            }
        }
    }
    body
}

/// Postmark's `StrippedTextReply`: the reply without its quote, signature included, from the
/// model's [`Email::reply`] (worked out here for a model deserialized without one). `""` when no
/// quote was found, as Postmark leaves it for mail that is not a reply.
pub fn stripped_text_reply(email: &Email) -> String {
    let computed;
    let found = match &email.reply {
        Some(r) => Some(r),
        None => {
            computed = body_reply(
                email.text.as_deref(),
                email.html.as_deref(),
                email.from.first(),
                email.subject.as_deref(),
            );
            computed.as_ref()
        }
    };
    found
        .filter(|r| r.method != ReplyMethod::None)
        .map(Reply::unquoted)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::{Attachment, Disposition, Header, SCHEMA, Verdicts};

    fn addr(name: Option<&str>, a: &str) -> Address {
        Address {
            name: name.map(str::to_string),
            address: a.to_string(),
        }
    }

    fn sample() -> Parsed {
        let att = |index: usize, name: &str, size: usize| Attachment {
            index,
            filename: Some(name.to_string()),
            safe_filename: name.to_string(),
            content_type: "application/octet-stream".into(),
            size: size as u64,
            content_id: (index == 0).then(|| "img@x".to_string()),
            disposition: Disposition::Attachment,
            sha256: "00".into(),
            message: None,
        };
        Parsed {
            email: Email {
                schema: SCHEMA.into(),
                envelope: Envelope::default(),
                message_id: Some("abc@example.net".into()),
                date: Some("2025-01-15T10:00:00Z".into()),
                subject: Some("Hello".into()),
                from: vec![addr(Some("Jane Sender"), "jane@example.net")],
                sender: None,
                reply_to: vec![addr(None, "reply@example.net")],
                to: vec![
                    addr(Some("Support \"Desk\""), "support+t42@example.com"),
                    addr(None, "x@example.com"),
                ],
                cc: vec![addr(None, "cc@example.com")],
                bcc: vec![],
                mailbox_hash: None,
                in_reply_to: vec![],
                references: vec![],
                headers: vec![
                    Header {
                        name: "Date".into(),
                        value: "Wed, 15 Jan 2025 10:00:00 +0000".into(),
                    },
                    Header {
                        name: "Subject".into(),
                        value: "Hello".into(),
                    },
                    Header {
                        name: "X-Mailer".into(),
                        value: "m".into(),
                    },
                ],
                text: Some("Thanks!\n\nOn Tue, Jan 14, 2025 Bob wrote:\n> old".into()),
                text_from_html: false,
                html: Some("<p>Thanks!</p>".into()),
                reply: None,
                attachments: vec![att(0, "small.png", 3), att(1, "big.bin", 10)],
                verdicts: None,
                size: 1234,
                flags: vec![],
            },
            contents: vec![b"abc".to_vec(), vec![7u8; 10]],
        }
    }

    fn ses() -> SesContext {
        SesContext {
            timestamp: "2025-01-15T10:00:02.028Z".into(),
            mail_from: "bounce@example.net".into(),
            recipients: vec!["support+t42@example.com".into()],
            verdicts: Verdicts {
                spam: Some("PASS".into()),
                ..Verdicts::default()
            },
        }
    }

    #[test]
    fn the_borrowed_model_is_the_model_with_ses_filled_in() {
        let parsed = sample();
        let raw = RawLocation {
            bucket: "b".into(),
            key: "raw/m1".into(),
            url: None,
            url_expires_at: None,
        };
        for ses in [ses(), SesContext::default()] {
            let input = Input {
                format: Format::Mailroom,
                webhook_id: "m1",
                message_id: "m1",
                parsed: &parsed,
                ses: &ses,
                raw_location: &raw,
                attachments: &[],
                raw_email: None,
            };
            assert_eq!(
                serde_json::to_value(email_view(&input)).expect("view"),
                serde_json::to_value(email_with_ses(&input)).expect("model"),
            );
        }
    }

    fn body(format: Format, deliveries: &[Delivery]) -> Value {
        body_with_raw(format, deliveries, b"Subject: Hello\r\n\r\nhi")
    }

    fn body_with_raw(format: Format, deliveries: &[Delivery], raw_email: &[u8]) -> Value {
        body_of(&sample(), format, deliveries, Some(raw_email))
    }

    fn body_of(
        parsed: &Parsed,
        format: Format,
        deliveries: &[Delivery],
        raw_email: Option<&[u8]>,
    ) -> Value {
        let ses = ses();
        let raw = RawLocation {
            bucket: "b".into(),
            key: "raw/m1".into(),
            url: Some("https://s3/raw".into()),
            url_expires_at: Some("2025-01-22T10:00:00Z".into()),
        };
        let input = Input {
            format,
            webhook_id: "m1",
            message_id: "m1",
            parsed,
            ses: &ses,
            raw_location: &raw,
            attachments: deliveries,
            raw_email,
        };
        serde_json::from_slice(&build(&input).expect("test value")).expect("test value")
    }

    #[test]
    fn postmark_attachment_types_are_the_clean_ones_a_server_may_send() {
        let mut parsed = sample();
        parsed.email.attachments[0].content_type = "text/html\r\nSet-Cookie: session=stolen".into();
        parsed.email.attachments[1].content_type = "Image/PNG; name=\"a b.png\"".into();
        let v = body_of(
            &parsed,
            Format::Postmark,
            &[Delivery::Inline, Delivery::Inline],
            None,
        );
        assert_eq!(
            v["Attachments"][0]["ContentType"],
            "application/octet-stream"
        );
        assert_eq!(
            v["Attachments"][1]["ContentType"],
            "image/png; name=\"a b.png\""
        );
    }

    #[test]
    fn plan_respects_per_item_and_total_limits() {
        let p = sample();
        let lim = |each, total| Limits {
            inline_max_bytes: each,
            inline_total_max_bytes: total,
        };
        assert_eq!(plan_attachments(&p, &lim(100, 100)), vec![true, true]);
        assert_eq!(plan_attachments(&p, &lim(5, 100)), vec![true, false]);
        assert_eq!(plan_attachments(&p, &lim(100, 12)), vec![true, false]);
        assert_eq!(plan_attachments(&p, &lim(0, 0)), vec![false, false]);
    }

    #[test]
    fn postmark_fields_match_postmark() {
        let url = Delivery::Url {
            url: "https://s3/big".into(),
            expires_at: "2025-01-22T10:00:00Z".into(),
        };
        let v = body(Format::Postmark, &[Delivery::Inline, url]);
        assert_eq!(v["From"], "jane@example.net");
        assert_eq!(v["FromName"], "Jane Sender");
        assert_eq!(
            v["FromFull"],
            json!({"Email":"jane@example.net","Name":"Jane Sender","MailboxHash":""})
        );
        assert_eq!(
            v["To"],
            "\"Support 'Desk'\" <support+t42@example.com>, x@example.com"
        );
        assert_eq!(v["ToFull"][0]["MailboxHash"], "t42");
        assert_eq!(v["ToFull"][1]["Name"], "");
        assert_eq!(v["CcFull"][0]["Email"], "cc@example.com");
        assert_eq!(v["Bcc"], "");
        assert_eq!(v["BccFull"], json!([]));
        assert_eq!(v["OriginalRecipient"], "support+t42@example.com");
        assert_eq!(v["MailboxHash"], "t42");
        assert_eq!(v["MessageID"], "m1");
        assert_eq!(v["ReplyTo"], "reply@example.net");
        assert_eq!(v["Date"], "Wed, 15 Jan 2025 10:00:00 +0000");
        assert_eq!(v["StrippedTextReply"], "Thanks!");
        assert_eq!(v["HtmlBody"], "<p>Thanks!</p>");
        assert_eq!(v["Tag"], "");
        assert_eq!(v["MessageStream"], "inbound");
        assert_eq!(
            v["Headers"],
            json!([{"Name":"Return-Path","Value":"<bounce@example.net>"},
                   {"Name":"X-Mailer","Value":"m"}])
        );
        assert_eq!(
            v["Attachments"][0],
            json!({"Name":"small.png","Content":"YWJj","ContentType":"application/octet-stream",
                   "ContentLength":3,"ContentID":"img@x"})
        );
        assert_eq!(v["Attachments"][1]["Content"], "");
        assert!(v["Attachments"][1].get("ContentID").is_none());
        assert_eq!(v["Attachments"][1]["ContentLength"], 10);
        assert_eq!(v["Attachments"][1]["ContentUrl"], "https://s3/big");
        assert_eq!(v["RawEmail"], "Subject: Hello\r\n\r\nhi");
    }

    #[test]
    fn raw_email_that_is_not_utf8_says_so_and_keeps_its_bytes() {
        // Latin-1, as 8-bit mail in a legacy charset arrives: "Olá" and "café".
        let raw = b"Subject: Ol\xe1\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\
            Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9\r\n";
        let v = body_with_raw(Format::Postmark, &[Delivery::Inline, Delivery::Inline], raw);
        let text = v["RawEmail"].as_str().expect("RawEmail stays a string");
        assert!(text.starts_with("Subject: Ol\u{fffd}\r\n"), "{text:?}");
        assert_eq!(v["RawEmailLossy"], true);
        let exact = B64
            .decode(v["RawEmailBase64"].as_str().expect("the exact bytes"))
            .expect("base64");
        assert_eq!(exact, raw);

        let utf8 = "Subject: Olá\r\n\r\ncafé\r\n".as_bytes();
        let v = body_with_raw(
            Format::Postmark,
            &[Delivery::Inline, Delivery::Inline],
            utf8,
        );
        assert_eq!(v["RawEmail"], "Subject: Olá\r\n\r\ncafé\r\n");
        assert_eq!(v["RawEmailLossy"], false);
        assert!(
            v.get("RawEmailBase64").is_none(),
            "no second copy of UTF-8 mail"
        );
    }

    #[test]
    fn mailroom_envelope_carries_model_ses_and_locations() {
        let v = body(Format::Mailroom, &[Delivery::Inline, Delivery::Inline]);
        assert_eq!(v["type"], EVENT_TYPE);
        assert_eq!(v["timestamp"], "2025-01-15T10:00:02.028Z");
        let d = &v["data"];
        assert_eq!(d["id"], "m1");
        assert_eq!(d["email"]["schema"], SCHEMA);
        assert_eq!(d["email"]["envelope"]["mailFrom"], "bounce@example.net");
        assert_eq!(d["email"]["verdicts"]["spam"], "PASS");
        assert_eq!(d["email"]["mailboxHash"], "t42");
        assert_eq!(d["raw"]["key"], "raw/m1");
        assert_eq!(d["raw"]["url"], "https://s3/raw");
        assert_eq!(d["attachments"][1]["content"], B64.encode([7u8; 10]));
        assert!(d["attachments"][1].get("url").is_none());
    }

    #[test]
    fn reply_stripping() {
        let stripped = |text: &str| {
            let mut email = sample().email;
            email.text = Some(text.to_string());
            email.html = None;
            stripped_text_reply(&email)
        };
        assert_eq!(stripped("Just a note"), "");
        assert_eq!(
            stripped("Yes.\n\n-----Original Message-----\nFrom: a"),
            "Yes."
        );
        assert_eq!(
            stripped("Sure\nOn Mon, 1 Jan 2024 at 10:00, Bob <b@x>\nwrote:\n> hi"),
            "Sure"
        );
        assert_eq!(stripped("Ok\n\nFrom: Bob\nSent: Monday\nTo: me"), "Ok");
        // The signature stays in Postmark's field.
        assert_eq!(
            stripped("Ok\n\nSent from my iPhone\n\n> hi"),
            "Ok\n\nSent from my iPhone"
        );
        assert_eq!(mailbox_hash("a+b+c@x.com").as_deref(), Some("b+c"));
        assert_eq!(mailbox_hash("a@x.com"), None);
        assert_eq!(mailbox_hash("a+@x.com"), None);
    }
}
