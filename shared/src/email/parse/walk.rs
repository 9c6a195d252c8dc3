//! The walk over mail-parser's tree that builds the model: bodies, attachments with their
//! decoded bytes, nested messages, and the flags for what was repaired or dropped.

use std::borrow::Cow;

use mail_parser::{DecodeProblems, HeaderName, MessagePart, MessageRef, PartFlags, PartKind};
use sha2::{Digest, Sha256};

use super::flags;
use super::headers::{
    address_list, ambiguous_headers, decoded_value, ids, rfc3339_date, stray_body,
};
use super::text::{LfJoin, body_reply, first_type_text};
use crate::email::html::html_to_text_within;
use crate::email::{Address, Attachment, Disposition, Email, Envelope, Header, SCHEMA};
use crate::keys::safe_filename;

pub(super) struct Walk {
    pub(super) max_depth: usize,
    /// Parts are numbered in document order across nested messages; ids from here on are
    /// past [`Limits::max_parts`].
    pub(super) max_parts: usize,
    pub(super) flags: Vec<String>,
    /// The decoded bytes of the top-level message's attachments; `None` while walking a nested
    /// message, whose attachments are described but not kept.
    pub(super) contents: Option<Vec<Vec<u8>>>,
}

impl Walk {
    pub(super) fn flag(&mut self, flag: &str) {
        if !self.flags.iter().any(|f| f == flag) {
            self.flags.push(flag.to_string());
        }
    }

    /// Builds the model for `message` (at nesting `depth`).
    pub(super) fn email(&mut self, message: MessageRef<'_>, depth: usize) -> Email {
        let max_parts = self.max_parts;
        let kept = move |part: &MessagePart<'_>| (part.id() as usize) < max_parts;
        let mut headers = Vec::with_capacity(message.headers().len());
        headers.extend(message.headers().iter().map(|h| Header {
            name: h.raw_name().trim_end().to_string(),
            value: decoded_value(h.raw_value()),
        }));

        // Each body part is decoded and appended before the next is decoded, and text is joined
        // before html is decoded: a large legacy-charset body then exists once beside the raw
        // message, not once per step.
        let mut body_ids = Vec::new();
        let mut text = LfJoin::default();
        for part in message.text_body().filter(kept) {
            if matches!(part.kind(), PartKind::Text) {
                text.push(self.body_text(part));
                body_ids.push(part.id());
            }
        }
        let mut text = text.finish();
        let mut html = LfJoin::default();
        for part in message.html_body().filter(kept) {
            if matches!(part.kind(), PartKind::Html) {
                html.push(self.body_text(part));
                body_ids.push(part.id());
            }
        }
        let html = html.finish();
        let root = message.root_part();
        let no_text = text.as_deref().is_none_or(|t| t.trim().is_empty());
        if no_text
            && html.is_none()
            && !root.is_multipart()
            && let Some(stray) = stray_body(root).or_else(|| first_type_text(root))
        {
            let mut join = LfJoin::default();
            join.push(stray);
            text = join.finish();
            body_ids.push(root.id());
        }
        let text_from_html = text.is_none() && html.is_some();
        if text_from_html && let Some(h) = html.as_deref() {
            let (made, cut) = html_to_text_within(h, crate::email::TEXT_FROM_HTML_MAX);
            text = Some(made);
            if cut {
                self.flag(flags::TEXT_FROM_HTML_TRUNCATED);
            }
        }

        let mut attachments = Vec::new();
        for part in message.parts().filter(kept) {
            self.structure_flags(part);
            if part.is_multipart() || body_ids.contains(&part.id()) {
                continue;
            }
            let index = attachments.len();
            attachments.push(self.attachment(part, index, depth));
        }

        let headers_view = message.headers();
        if depth == 0 && ambiguous_headers(message) {
            self.flag(flags::MALFORMED_HEADERS);
        }
        let first_addresses = |name: HeaderName<'static>| {
            headers_view
                .all(name)
                .next()
                .and_then(|h| h.value().as_address())
                .map(|list| address_list(&list))
                .unwrap_or_default()
        };
        let every_address = |name: HeaderName<'static>| -> Vec<Address> {
            headers_view
                .all(name)
                .filter_map(|h| h.value().as_address())
                .flat_map(|list| address_list(&list))
                .collect()
        };
        // The first From is the one MTAs and DMARC judge.
        let from = first_addresses(HeaderName::From);
        let subject = headers_view
            .all(HeaderName::Subject)
            .next()
            .map(|h| decoded_value(h.raw_value()));
        let reply = body_reply(
            text.as_deref(),
            html.as_deref(),
            from.first(),
            subject.as_deref(),
        );
        let to = every_address(HeaderName::To);
        let cc = every_address(HeaderName::Cc);
        let bcc = every_address(HeaderName::Bcc);
        Email {
            schema: SCHEMA.to_string(),
            envelope: Envelope::default(),
            message_id: message.message_id().map(|s| s.trim().to_string()),
            date: rfc3339_date(message),
            // The first Subject, decoded exactly as its entry in `headers`.
            subject,
            from,
            sender: first_addresses(HeaderName::Sender).into_iter().next(),
            reply_to: every_address(HeaderName::ReplyTo),
            mailbox_hash: crate::email::ses::header_mailbox_hash(&to, &cc, &bcc),
            to,
            cc,
            bcc,
            in_reply_to: ids(message.in_reply_to()),
            references: ids(message.references()),
            headers,
            text,
            text_from_html,
            html,
            reply,
            attachments,
            verdicts: None,
            // The extent of this message within its source buffer.
            size: message.raw().len() as u64,
            flags: Vec::new(),
        }
    }

    /// Text of a body part, flagging a broken transfer encoding.
    fn body_text<'m>(&mut self, part: MessagePart<'m>) -> Cow<'m, str> {
        match part.text_checked() {
            Some((text, problems)) => {
                if problems.contains(DecodeProblems::MALFORMED_TRANSFER_ENCODING) {
                    self.flag(flags::ENCODING_PROBLEM);
                }
                text
            }
            None => Cow::Borrowed(""),
        }
    }

    /// Flags for what mail-parser had to repair or stop at in this part's structure.
    fn structure_flags(&mut self, part: MessagePart<'_>) {
        let f = part.flags();
        if f.contains(PartFlags::LIMIT_REACHED)
            && (part.is_multipart()
                || part.is_content_type("message", "rfc822")
                || part.is_content_type("message", "global")
                || part
                    .content_type()
                    .is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("multipart")))
            && !self.flags.iter().any(|x| x == flags::MAX_PARTS_EXCEEDED)
        {
            self.flag(flags::MAX_DEPTH_EXCEEDED);
        }
        let declared_multipart = part
            .content_type()
            .is_some_and(|ct| ct.ctype().eq_ignore_ascii_case("multipart"));
        if (declared_multipart && !part.is_multipart() && !f.contains(PartFlags::LIMIT_REACHED))
            || f.intersects(PartFlags::MISSING_DELIMITER | PartFlags::UNTERMINATED)
        {
            self.flag(flags::MISSING_BOUNDARY);
        }
    }

    fn attachment(&mut self, part: MessagePart<'_>, index: usize, depth: usize) -> Attachment {
        let content_type = content_type(part);
        let filename = part
            .attachment_name()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty());
        // Transfer encoding removed, charset untouched: a text file keeps the sender's bytes.
        let (contents, problems) = match uudecode(part) {
            Some(bytes) => (Cow::Owned(bytes), DecodeProblems::default()),
            None => part.decoded_checked(),
        };
        if problems.contains(DecodeProblems::MALFORMED_TRANSFER_ENCODING) {
            self.flag(flags::ENCODING_PROBLEM);
        }
        let disposition = match part.content_disposition() {
            Some(cd) if cd.is_inline() => Disposition::Inline,
            Some(cd) if cd.is_attachment() => Disposition::Attachment,
            _ if part.content_id().is_some() => Disposition::Inline,
            _ if matches!(part.kind(), PartKind::InlineBinary) => Disposition::Inline,
            _ => Disposition::Attachment,
        };
        let size = contents.len() as u64;
        let sha256 = hex::encode(Sha256::digest(&contents));
        // Kept, or let go, before a nested message is walked: the walk decodes the levels below,
        // and this level's copy held meanwhile would be one more copy of every level at once
        // (message/rfc822 three deep in base64: 201 MiB for 42 MB, now 156).
        if let Some(kept) = self.contents.as_mut() {
            kept.push(contents.into_owned());
        } else {
            drop(contents);
        }
        let message = match part.kind() {
            // The nested message's root sits one level below the part that holds it.
            PartKind::Message(nested) if depth < self.max_depth => {
                let kept = self.contents.take();
                let email = self.email(nested, depth + 1);
                self.contents = kept;
                Some(Box::new(email))
            }
            PartKind::Message(_) => {
                self.flag(flags::MAX_DEPTH_EXCEEDED);
                None
            }
            _ if content_type == "message/rfc822" || content_type == "message/global" => {
                if part.flags().contains(PartFlags::LIMIT_REACHED) {
                    self.flag(flags::MAX_DEPTH_EXCEEDED);
                } else {
                    self.flag(flags::UNPARSED_MESSAGE);
                }
                None
            }
            _ => None,
        };
        Attachment {
            index,
            safe_filename: safe_filename(filename.as_deref(), index, &content_type),
            filename,
            size,
            content_id: part
                .content_id()
                .map(|id| id.trim().trim_start_matches('<').trim_end_matches('>'))
                .filter(|id| !id.is_empty())
                .map(str::to_string),
            disposition,
            sha256,
            message,
            content_type,
        }
    }
}

/// `type/subtype`, lowercased; the RFC 2045 defaults when the header is missing.
fn content_type(part: MessagePart<'_>) -> String {
    match part.content_type() {
        Some(ct) => match ct.subtype() {
            Some(sub) => format!("{}/{}", ct.ctype(), sub).to_ascii_lowercase(),
            None => ct.ctype().to_ascii_lowercase(),
        },
        None => match part.kind() {
            PartKind::Message(_) => "message/rfc822".to_string(),
            PartKind::Html => "text/html".to_string(),
            PartKind::Text => "text/plain".to_string(),
            _ => "application/octet-stream".to_string(),
        },
    }
}

/// The body of a part declared `Content-Transfer-Encoding: x-uuencode` (or `uuencode`, `x-uue`),
/// decoded; `None` for other parts or when no `begin` line is found.
fn uudecode(part: MessagePart<'_>) -> Option<Vec<u8>> {
    let cte = part
        .content_transfer_encoding()?
        .trim()
        .to_ascii_lowercase();
    if !matches!(cte.as_str(), "x-uuencode" | "uuencode" | "x-uue" | "uue") {
        return None;
    }
    let body = part.raw_body();
    let mut lines = body
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    lines.by_ref().find(|l| l.starts_with(b"begin "))?;
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for line in lines {
        if line == b"end" || line.is_empty() {
            break;
        }
        let sextet = |c: u8| c.wrapping_sub(b' ') & 0x3f;
        let len = usize::from(sextet(line[0]));
        let data = &line[1..];
        let mut decoded = Vec::with_capacity(len + 2);
        for chunk in data.chunks(4) {
            let c = |i: usize| chunk.get(i).map_or(0, |&b| sextet(b));
            decoded.push((c(0) << 2) | (c(1) >> 4));
            decoded.push((c(1) << 4) | (c(2) >> 2));
            decoded.push((c(2) << 6) | c(3));
        }
        decoded.truncate(len);
        out.extend_from_slice(&decoded);
    }
    Some(out)
}
