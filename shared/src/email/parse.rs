//! Raw MIME → [`Email`]: mail-parser does the MIME work; this module applies our limits, maps its
//! tree onto the JSON model and hands each attachment's decoded bytes back without copying them
//! twice.

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{
    Addr, Address as MpAddress, Encoding, HeaderName, HeaderValue, Message, MessageParser,
    MessagePart, MimeHeaders, PartType, parsers::MessageStream,
};
use sha2::{Digest, Sha256};

use super::html::html_to_text;
use super::{
    Address, Attachment, Disposition, Email, Envelope, Header, Limits, ParseError, Parsed, SCHEMA,
};
use crate::keys::safe_filename;

/// Flags written to [`Email::flags`] when a limit is hit or the input needed repair.
pub mod flags {
    /// More MIME parts than [`crate::Limits::max_parts`]: the rest were not walked.
    pub const MAX_PARTS_EXCEEDED: &str = "max_parts_exceeded";
    /// Nesting deeper than [`crate::Limits::max_depth`]: deeper parts were dropped.
    pub const MAX_DEPTH_EXCEEDED: &str = "max_depth_exceeded";
    /// A part's transfer encoding was broken; its raw bytes were kept instead.
    pub const ENCODING_PROBLEM: &str = "encoding_problem";
    /// A `multipart/*` part had no usable boundary and was read as text.
    pub const MISSING_BOUNDARY: &str = "missing_boundary";
    /// A `message/rfc822` part could not be parsed as a message; it is kept as an attachment.
    pub const UNPARSED_MESSAGE: &str = "unparsed_message";
}

impl Email {
    /// Parses raw MIME (as SES stored it) into the model plus each attachment's decoded bytes.
    ///
    /// Never panics: the input is checked against `limits` first, and a panic inside the MIME
    /// parser is caught and returned as [`ParseError::ParserPanicked`]. Limits that can be met by
    /// dropping parts ([`Limits::max_parts`], [`Limits::max_depth`]) produce an `Ok` with a flag.
    pub fn parse(raw: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
        precheck(raw, limits)?;
        let guarded = catch_unwind(AssertUnwindSafe(|| parse_unguarded(raw, limits)));
        match guarded {
            Ok(result) => result,
            Err(panic) => {
                let reason = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_string());
                Err(ParseError::ParserPanicked { reason })
            }
        }
    }
}

/// Cheap checks that reject input before any parsing work is spent on it.
fn precheck(raw: &[u8], limits: &Limits) -> Result<(), ParseError> {
    if raw.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ParseError::Empty);
    }
    if raw.len() > limits.max_size {
        return Err(ParseError::TooLarge {
            size: raw.len(),
            limit: limits.max_size,
        });
    }
    let header_len = header_block_len(raw, limits.max_header_bytes.saturating_add(4));
    if header_len > limits.max_header_bytes {
        return Err(ParseError::HeadersTooLarge {
            limit: limits.max_header_bytes,
        });
    }
    let start = raw
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    if !starts_with_header_field(&raw[start..]) {
        return Err(ParseError::NotMime {
            reason: "the first line is not a header field (`Name: value`)".into(),
        });
    }
    Ok(())
}

/// Length of the top-level header block (up to the first empty line), looking at most `cap` bytes.
fn header_block_len(raw: &[u8], cap: usize) -> usize {
    let window = &raw[..raw.len().min(cap)];
    let mut line_start = 0;
    for (i, &b) in window.iter().enumerate() {
        if b == b'\n' {
            let line = &window[line_start..i];
            if line.is_empty() || line == b"\r" {
                return line_start;
            }
            line_start = i + 1;
        }
    }
    if window.len() < raw.len() {
        // No blank line within the window: the block is at least this long.
        return cap;
    }
    raw.len()
}

/// RFC 5322 field name: printable ASCII except `:`, then `:`; mbox "From " lines are accepted too.
fn starts_with_header_field(data: &[u8]) -> bool {
    if data.starts_with(b"From ") {
        return true;
    }
    for (i, &b) in data.iter().take(998).enumerate() {
        match b {
            b':' => return i > 0,
            b'\t' | b' ' => {
                // Obsolete syntax allows blanks before the colon, not inside the name.
                return data[i..]
                    .iter()
                    .take(998)
                    .find(|&&c| c != b' ' && c != b'\t')
                    == Some(&b':')
                    && i > 0;
            }
            33..=126 => {}
            _ => return false,
        }
    }
    false
}

fn parse_unguarded(raw: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
    let message = MessageParser::default()
        .parse(raw)
        .ok_or_else(|| ParseError::NotMime {
            reason: "no header fields found".into(),
        })?;

    let mut walk = Walk {
        limits,
        parts_seen: 0,
        flags: Vec::new(),
    };
    let (mut email, attachment_parts) = walk.email(&message, 0);
    email.size = raw.len() as u64;
    email.flags = walk.flags;

    let contents = take_contents(message, &attachment_parts);
    Ok(Parsed { email, contents })
}

/// Moves each attachment's decoded bytes out of the parsed tree: owned buffers (base64 and
/// quoted-printable output) move without a copy; bytes borrowed from `raw` are copied once.
fn take_contents(message: Message<'_>, part_ids: &[usize]) -> Vec<Vec<u8>> {
    let raw = message.raw_message;
    let mut parts = message.parts;
    let mut contents = Vec::with_capacity(part_ids.len());
    for &id in part_ids {
        let bytes = match parts.get_mut(id) {
            Some(part) if part.is_text() => original_text_bytes(&raw, part).into_owned(),
            Some(part) => match std::mem::take(&mut part.body) {
                PartType::Text(text) | PartType::Html(text) => text.into_owned().into_bytes(),
                PartType::Binary(bin) | PartType::InlineBinary(bin) => bin.into_owned(),
                PartType::Message(nested) => {
                    let bytes = nested_raw(&nested).to_vec();
                    dismantle(nested);
                    bytes
                }
                PartType::Multipart(_) => Vec::new(),
            },
            None => Vec::new(),
        };
        contents.push(bytes);
    }
    drop(raw);
    for part in parts {
        if let PartType::Message(nested) = part.body {
            dismantle(nested);
        }
    }
    contents
}

/// A text part kept as an attachment, as the sender's bytes (transfer encoding removed, charset
/// untouched): mail-parser hands text parts over already converted to UTF-8, which is right for
/// bodies but would rewrite (or lossily replace) the bytes of a file.
fn original_text_bytes<'a>(raw: &'a [u8], part: &'a MessagePart<'_>) -> Cow<'a, [u8]> {
    let body = raw.get(part.offset_body as usize..part.offset_end as usize);
    let decoded = match (body, part.encoding) {
        (Some(body), Encoding::None) => Some(Cow::Borrowed(body)),
        (Some(body), Encoding::Base64) => base64_decode(body).map(Cow::Owned),
        (Some(body), Encoding::QuotedPrintable) => quoted_printable_decode(body).map(Cow::Owned),
        (None, _) => None,
    };
    decoded.unwrap_or_else(|| Cow::Borrowed(part.contents()))
}

/// Drops a nested-message tree without recursion: a hostile chain of thousands of
/// `message/rfc822` parts would otherwise overflow the stack in the recursive `Drop`.
fn dismantle(message: Message<'_>) {
    let mut stack = vec![message];
    while let Some(mut message) = stack.pop() {
        for part in &mut message.parts {
            if let PartType::Message(nested) = std::mem::take(&mut part.body) {
                stack.push(nested);
            }
        }
    }
}

/// The bytes of a nested message as it appeared in its parent.
fn nested_raw<'a>(nested: &'a Message<'_>) -> &'a [u8] {
    match nested.parts.first() {
        Some(root) => nested
            .raw_message
            .get(root.offset_header as usize..root.offset_end as usize)
            .unwrap_or_default(),
        None => &[],
    }
}

struct Walk<'l> {
    limits: &'l Limits,
    parts_seen: usize,
    flags: Vec<String>,
}

impl Walk<'_> {
    fn flag(&mut self, flag: &str) {
        if !self.flags.iter().any(|f| f == flag) {
            self.flags.push(flag.to_string());
        }
    }

    /// Builds the model for `message` (at nesting `depth`) and the part ids of its attachments.
    fn email(&mut self, message: &Message<'_>, depth: usize) -> (Email, Vec<usize>) {
        let raw: &[u8] = &message.raw_message;
        let part_depths = self.part_depths(message, depth);
        let usable = |id: u32| part_depths.get(id as usize).is_some_and(|d| d.is_some());

        let root_headers = message.parts.first().map(|p| p.headers.as_slice());
        let headers = root_headers
            .unwrap_or_default()
            .iter()
            .map(|h| Header {
                name: original_name(raw, h.offset_field, h.offset_start)
                    .unwrap_or_else(|| h.name.as_str().to_string()),
                value: decoded_value(raw, h.offset_start, h.offset_end),
            })
            .collect();

        let mut text_parts: Vec<&str> = Vec::new();
        for &id in message.text_body.iter().filter(|&&id| usable(id)) {
            if let Some(PartType::Text(text)) = message.parts.get(id as usize).map(|p| &p.body) {
                text_parts.push(text);
            }
        }
        let mut html_parts: Vec<&str> = Vec::new();
        for &id in message.html_body.iter().filter(|&&id| usable(id)) {
            if let Some(PartType::Html(html)) = message.parts.get(id as usize).map(|p| &p.body) {
                html_parts.push(html);
            }
        }
        let html = (!html_parts.is_empty()).then(|| join_lf(&html_parts));
        let (text, text_from_html) = if !text_parts.is_empty() {
            (Some(join_lf(&text_parts)), false)
        } else if let Some(html) = &html {
            (Some(html_to_text(html)), true)
        } else {
            (None, false)
        };

        for part in message.parts.iter().filter(|p| p.is_encoding_problem) {
            if !matches!(part.body, PartType::Message(_)) {
                self.flag(flags::ENCODING_PROBLEM);
            }
        }
        for part in &message.parts {
            if part.is_content_type_prefix("multipart") && !part.is_multipart() {
                self.flag(flags::MISSING_BOUNDARY);
            }
        }

        let mut attachments = Vec::new();
        let mut attachment_parts = Vec::new();
        for &id in &message.attachments {
            let Some(Some(part_depth)) = part_depths.get(id as usize).copied() else {
                continue;
            };
            let Some(part) = message.parts.get(id as usize) else {
                continue;
            };
            let index = attachments.len();
            attachments.push(self.attachment(raw, part, index, part_depth));
            attachment_parts.push(id as usize);
        }

        let date = rfc3339_date(message);
        let to = addresses(message.header_values(HeaderName::To));
        let cc = addresses(message.header_values(HeaderName::Cc));
        let bcc = addresses(message.header_values(HeaderName::Bcc));
        let email = Email {
            schema: SCHEMA.to_string(),
            envelope: Envelope::default(),
            message_id: message.message_id().map(|s| s.trim().to_string()),
            date,
            subject: message.subject().map(|s| s.to_string()),
            from: message.from().map(address_list).unwrap_or_default(),
            sender: message.sender().and_then(|a| a.iter().find_map(to_address)),
            reply_to: addresses(message.header_values(HeaderName::ReplyTo)),
            mailbox_hash: super::ses::header_mailbox_hash(&to, &cc, &bcc),
            to,
            cc,
            bcc,
            in_reply_to: ids(message.in_reply_to()),
            references: ids(message.references()),
            headers,
            text,
            text_from_html,
            html,
            attachments,
            verdicts: None,
            // The extent of this message within `raw` (a nested message shares its parent's buffer).
            size: nested_raw(message).len() as u64,
            flags: Vec::new(),
        };
        (email, attachment_parts)
    }

    /// Nesting depth of every part reachable from the root, `None` for parts dropped by limits.
    /// Iterative, so a hostile tree of thousands of nested multiparts costs no stack.
    fn part_depths(&mut self, message: &Message<'_>, depth: usize) -> Vec<Option<usize>> {
        let mut depths = vec![None; message.parts.len()];
        let mut stack = vec![(0u32, depth)];
        let mut cut = false;
        while let Some((id, d)) = stack.pop() {
            let Some(slot) = depths.get_mut(id as usize) else {
                continue;
            };
            if slot.is_some() {
                continue;
            }
            if d > self.limits.max_depth {
                self.flag(flags::MAX_DEPTH_EXCEEDED);
                cut = true;
                continue;
            }
            if self.parts_seen >= self.limits.max_parts {
                self.flag(flags::MAX_PARTS_EXCEEDED);
                return depths;
            }
            self.parts_seen += 1;
            *slot = Some(d);
            if let Some(PartType::Multipart(children)) =
                message.parts.get(id as usize).map(|p| &p.body)
            {
                // Reversed so that parts are visited (and counted) in document order.
                stack.extend(children.iter().rev().map(|&c| (c, d + 1)));
            }
        }
        // Parts that broken MIME left outside the tree are kept (one level down) rather than
        // silently lost, unless a depth cut may be why they were not reached.
        if !cut {
            for slot in depths.iter_mut().filter(|s| s.is_none()) {
                if self.parts_seen >= self.limits.max_parts {
                    self.flag(flags::MAX_PARTS_EXCEEDED);
                    break;
                }
                self.parts_seen += 1;
                *slot = Some(depth + 1);
            }
        }
        depths
    }

    fn attachment(
        &mut self,
        raw: &[u8],
        part: &MessagePart<'_>,
        index: usize,
        depth: usize,
    ) -> Attachment {
        let content_type = content_type(part);
        let filename = part
            .attachment_name()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty());
        let contents: Cow<'_, [u8]> = match &part.body {
            PartType::Message(nested) => Cow::Borrowed(nested_raw(nested)),
            PartType::Text(_) | PartType::Html(_) => original_text_bytes(raw, part),
            _ => Cow::Borrowed(part.contents()),
        };
        let disposition = match part.content_disposition() {
            Some(cd) if cd.is_inline() => Disposition::Inline,
            Some(cd) if cd.is_attachment() => Disposition::Attachment,
            _ if part.content_id().is_some() => Disposition::Inline,
            _ if matches!(part.body, PartType::InlineBinary(_)) => Disposition::Inline,
            _ => Disposition::Attachment,
        };
        let message = match &part.body {
            // The nested message's root sits one level below the part that holds it.
            PartType::Message(nested) if depth < self.limits.max_depth => {
                let (email, _) = self.email(nested, depth + 1);
                Some(Box::new(email))
            }
            PartType::Message(_) => {
                self.flag(flags::MAX_DEPTH_EXCEEDED);
                None
            }
            _ if content_type == "message/rfc822" || content_type == "message/global" => {
                self.flag(flags::UNPARSED_MESSAGE);
                None
            }
            _ => None,
        };
        Attachment {
            index,
            safe_filename: safe_filename(filename.as_deref(), index, &content_type),
            filename,
            size: contents.len() as u64,
            content_id: part
                .content_id()
                .map(|id| id.trim().trim_start_matches('<').trim_end_matches('>'))
                .filter(|id| !id.is_empty())
                .map(str::to_string),
            disposition,
            sha256: hex::encode(Sha256::digest(&contents)),
            message,
            content_type,
        }
    }
}

trait ContentTypePrefix {
    fn is_content_type_prefix(&self, ctype: &str) -> bool;
}

impl ContentTypePrefix for MessagePart<'_> {
    fn is_content_type_prefix(&self, ctype: &str) -> bool {
        self.content_type()
            .is_some_and(|ct| ct.ctype().eq_ignore_ascii_case(ctype))
    }
}

/// `type/subtype`, lowercased; mail-parser's defaults when the header is missing.
fn content_type(part: &MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => match part.body {
            PartType::Message(_) => "message/rfc822".to_string(),
            PartType::Html(_) => "text/html".to_string(),
            PartType::Text(_) => "text/plain".to_string(),
            _ => "application/octet-stream".to_string(),
        },
    }
}

/// The field name as written (mail-parser canonicalises the case of names it knows).
fn original_name(raw: &[u8], field: u32, value_start: u32) -> Option<String> {
    let bytes = raw.get(field as usize..value_start as usize)?;
    let name = std::str::from_utf8(bytes).ok()?;
    let name = name.trim_end().strip_suffix(':')?.trim_end();
    (!name.is_empty()).then(|| name.to_string())
}

/// The value unfolded, with RFC 2047 encoded words decoded to UTF-8 and all else kept as
/// written (blanks between two adjacent encoded words are dropped, as RFC 2047 says).
fn decoded_value(raw: &[u8], start: u32, end: u32) -> String {
    let Some(bytes) = raw.get(start as usize..end as usize) else {
        return String::new();
    };
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut blanks: Vec<u8> = Vec::new();
    let mut after_encoded_word = false;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'\r' | b'\n' => i += 1,
            b' ' | b'\t' => {
                blanks.push(b);
                i += 1;
            }
            b'=' if bytes.get(i + 1) == Some(&b'?') => {
                let mut stream = MessageStream::new(&bytes[i + 1..]);
                match stream.decode_rfc2047() {
                    Some(word) => {
                        if !after_encoded_word {
                            out.append(&mut blanks);
                        }
                        blanks.clear();
                        out.extend_from_slice(word.as_bytes());
                        after_encoded_word = true;
                        i += 1 + stream.offset();
                    }
                    None => {
                        out.append(&mut blanks);
                        out.push(b);
                        after_encoded_word = false;
                        i += 1;
                    }
                }
            }
            _ => {
                out.append(&mut blanks);
                out.push(b);
                after_encoded_word = false;
                i += 1;
            }
        }
    }
    match String::from_utf8(out) {
        Ok(s) => s.trim().to_string(),
        Err(e) => String::from_utf8_lossy(e.as_bytes()).trim().to_string(),
    }
}

/// The Date header as RFC 3339: mail-parser's reading, else `time`'s RFC 2822 parser (which
/// accepts forms mail-parser misses, such as a missing weekday or seconds).
fn rfc3339_date(message: &Message<'_>) -> Option<String> {
    if let Some(d) = message.date().filter(|d| d.is_valid() && real_date(d)) {
        return Some(d.to_rfc3339());
    }
    let raw = message.header_raw(HeaderName::Date)?;
    let unfolded: String = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let parsed =
        time::OffsetDateTime::parse(&unfolded, &time::format_description::well_known::Rfc2822)
            .ok()?;
    parsed
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Joins body parts with `\n` and turns CRLF into LF in one pass into one exactly-sized buffer.
///
/// Bodies use `\n` line endings whatever the message used, so LF and CRLF copies of one message
/// give the same text. A join followed by a replace would hold two extra copies of a 20 MB body
/// at once, which is what a 128 MB function cannot afford.
fn join_lf(parts: &[&str]) -> String {
    let len = parts.iter().map(|p| p.len()).sum::<usize>() + parts.len().saturating_sub(1);
    let mut out = String::with_capacity(len);
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let mut rest = *part;
        while let Some(at) = rest.find("\r\n") {
            out.push_str(&rest[..at]);
            out.push('\n');
            rest = &rest[at + 2..];
        }
        out.push_str(rest);
    }
    out
}

/// Every address of every occurrence of a header (obsolete syntax allows repeated To/Cc).
fn addresses<'a, 'x: 'a>(values: impl Iterator<Item = &'a HeaderValue<'x>>) -> Vec<Address> {
    values
        .filter_map(HeaderValue::as_address)
        .flat_map(address_list)
        .collect()
}

/// Group members are flattened: the model has no groups, and an empty group adds nothing.
fn address_list(address: &MpAddress<'_>) -> Vec<Address> {
    match address {
        MpAddress::List(list) => list.iter().filter_map(to_address).collect(),
        MpAddress::Group(groups) => groups
            .iter()
            .flat_map(|g| g.addresses.iter())
            .filter_map(to_address)
            .collect(),
    }
}

fn to_address(addr: &Addr<'_>) -> Option<Address> {
    let address = addr.address.as_deref()?.trim();
    if address.is_empty() {
        return None;
    }
    let name = addr
        .name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    Some(Address {
        name,
        address: address.to_string(),
    })
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    let clean = |s: &Cow<'_, str>| s.trim().to_string();
    match value {
        HeaderValue::Text(id) => vec![clean(id)],
        HeaderValue::TextList(list) => list.iter().map(clean).collect(),
        _ => Vec::new(),
    }
}

/// mail-parser's own check allows 31 February; `time` knows the calendar.
fn real_date(d: &mail_parser::DateTime) -> bool {
    time::Month::try_from(d.month)
        .ok()
        .and_then(|m| time::Date::from_calendar_date(i32::from(d.year), m, d.day).ok())
        .is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_lf_joins_and_normalises_line_endings() {
        assert_eq!(join_lf(&["a\r\nb\r\n", "c\rd"]), "a\nb\n\nc\rd");
        assert_eq!(join_lf(&["\r\n\r\n"]), "\n\n");
        assert_eq!(join_lf(&[]), "");
    }

    fn parse(raw: &str) -> Parsed {
        match Email::parse(raw.as_bytes(), &Limits::default()) {
            Ok(p) => p,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    #[test]
    fn simple_message_maps_every_field() {
        let p = parse(
            "From: \"Doe, Jane\" <jane@example.com>\r\nTo: a+orders@example.org, b@example.org\r\n\
             Cc: =?UTF-8?Q?Jos=C3=A9?= <jose@example.net>\r\nSubject: =?ISO-8859-1?Q?caf=E9?=\r\n\
             Date: Tue, 1 Oct 2024 10:00:00 +0200\r\nMessage-ID: <abc@example.com>\r\n\
             In-Reply-To: <x@y>\r\nReferences: <w@y> <x@y>\r\n\r\nHello\r\n",
        );
        let e = &p.email;
        assert_eq!(e.schema, SCHEMA);
        assert_eq!(e.subject.as_deref(), Some("café"));
        assert_eq!(e.from[0].name.as_deref(), Some("Doe, Jane"));
        assert_eq!(e.to.len(), 2);
        assert_eq!(e.cc[0].name.as_deref(), Some("José"));
        assert_eq!(e.mailbox_hash.as_deref(), Some("orders"));
        assert_eq!(e.date.as_deref(), Some("2024-10-01T10:00:00+02:00"));
        assert_eq!(e.message_id.as_deref(), Some("abc@example.com"));
        assert_eq!(e.references, vec!["w@y", "x@y"]);
        assert_eq!(e.text.as_deref(), Some("Hello\n"));
        assert!(!e.text_from_html);
        assert_eq!(e.headers[3].name, "Subject");
        assert_eq!(e.headers[3].value, "café");
    }

    #[test]
    fn html_only_message_gets_synthesized_text() {
        let p = parse("From: a@b.c\nContent-Type: text/html\n\n<p>Hi&amp;bye</p><p>two</p>\n");
        assert_eq!(p.email.text.as_deref(), Some("Hi&bye\n\ntwo"));
        assert!(p.email.text_from_html);
        assert!(p.email.html.is_some());
    }

    #[test]
    fn prechecks_give_typed_errors() {
        let l = Limits::default();
        assert_eq!(Email::parse(b"", &l), Err(ParseError::Empty));
        assert_eq!(Email::parse(b" \r\n", &l), Err(ParseError::Empty));
        assert!(matches!(
            Email::parse(b"\x00\x01garbage", &l),
            Err(ParseError::NotMime { .. })
        ));
        let small = Limits {
            max_size: 10,
            ..Limits::default()
        };
        assert_eq!(
            Email::parse(b"Subject: too long\n\nbody", &small),
            Err(ParseError::TooLarge {
                size: 23,
                limit: 10
            })
        );
    }

    #[test]
    fn text_attachments_keep_the_senders_bytes() {
        let mut raw = b"From: a@b.c\nContent-Type: multipart/mixed; boundary=x\n\n--x\n\
                        Content-Type: text/plain\n\nbody\n--x\n\
                        Content-Type: text/csv; charset=iso-8859-1\n\
                        Content-Disposition: attachment; filename=a.csv\n\n"
            .to_vec();
        raw.extend_from_slice(b"caf\xe9;1\n\xff\xfe\n--x\n");
        raw.extend_from_slice(
            b"Content-Type: text/plain; charset=utf-8\nContent-Disposition: attachment\n\
              Content-Transfer-Encoding: base64\n\n/wBh\n--x\n\
              Content-Type: text/plain\nContent-Disposition: attachment\n\
              Content-Transfer-Encoding: quoted-printable\n\na=E9=\nb\n--x--\n",
        );
        let p = match Email::parse(&raw, &Limits::default()) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(p.contents.len(), 3);
        assert_eq!(p.contents[0], b"caf\xe9;1\n\xff\xfe");
        assert_eq!(p.contents[1], b"\xff\x00a");
        assert_eq!(p.contents[2], b"a\xe9b");
        for (a, c) in p.email.attachments.iter().zip(&p.contents) {
            assert_eq!(a.size, c.len() as u64);
            assert_eq!(a.sha256, hex::encode(Sha256::digest(c)));
        }
    }

    #[test]
    fn header_block_length_stops_at_the_blank_line() {
        assert_eq!(header_block_len(b"A: b\r\nC: d\r\n\r\nbody", 100), 12);
        assert_eq!(header_block_len(b"A: b\n\nbody", 100), 5);
        assert_eq!(header_block_len(b"A: b", 100), 4);
        assert_eq!(header_block_len(&[b'x'; 50], 10), 10);
    }
}
