//! Raw MIME → [`Email`]: mail-parser does the MIME work, with our limits applied while it builds
//! its tree; this module maps that tree onto the JSON model and hands each attachment's decoded
//! bytes back, decoding every body exactly once.

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::{
    DecodeProblems, HeaderForm, HeaderName, MessageParser, MessagePart, MessageRef, PartFlags,
    PartKind,
};
use sha2::{Digest, Sha256};

use super::html::html_to_text_within;
use super::{
    Address, Attachment, Disposition, Email, Envelope, Header, Limits, ParseError, Parsed,
    REPLY_MAX_BODY, Reply, SCHEMA, reply,
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
    /// The top-level header block was ambiguous: a field name with blanks or other bytes RFC 5322
    /// forbids, a second From, Sender, Subject or Content-Type, or no blank line before the body.
    /// The model reads it as MTAs and DMARC do: the first field, strict names.
    pub const MALFORMED_HEADERS: &str = "malformed_headers";
    /// `text` was made from `html` (the message had no text part) and stops at
    /// [`crate::email::TEXT_FROM_HTML_MAX`]; `html` is whole.
    pub const TEXT_FROM_HTML_TRUNCATED: &str = "text_from_html_truncated";
}

/// Fields mail-parser would parse into structured values that the model does not use.
const UNREAD_FIELDS: [HeaderName<'static>; 21] = [
    HeaderName::Received,
    HeaderName::ReturnPath,
    HeaderName::Comments,
    HeaderName::Keywords,
    HeaderName::ContentDescription,
    HeaderName::ContentLanguage,
    HeaderName::ContentLocation,
    HeaderName::ResentTo,
    HeaderName::ResentFrom,
    HeaderName::ResentBcc,
    HeaderName::ResentCc,
    HeaderName::ResentSender,
    HeaderName::ResentDate,
    HeaderName::ResentMessageId,
    HeaderName::ListArchive,
    HeaderName::ListHelp,
    HeaderName::ListId,
    HeaderName::ListOwner,
    HeaderName::ListPost,
    HeaderName::ListSubscribe,
    HeaderName::ListUnsubscribe,
];

/// Nesting beyond this is never walked, whatever [`Limits::max_depth`] says: the model is a
/// tree of nested [`Email`]s, and walking or serializing it recurses once per level.
const DEPTH_CEILING: usize = 64;

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
/// The length of the header block of `raw` (up to its blank line), looking at most `cap` bytes
/// (a longer block reads as `cap`): cheap enough to run before deciding whether to parse.
pub fn header_block_len(raw: &[u8], cap: usize) -> usize {
    let window = &raw[..raw.len().min(cap)];
    let mut line_start = 0;
    // Line by line with memchr: every message's header block passes through here.
    for i in memchr::memchr_iter(b'\n', window) {
        let line = &window[line_start..i];
        if line.is_empty() || line == b"\r" {
            return line_start;
        }
        line_start = i + 1;
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

/// The parser's header table, built once: configuring it (a name lookup per field below) cost
/// a visible share of parsing a typical small message.
fn parser() -> &'static MessageParser {
    static PARSER: std::sync::OnceLock<MessageParser> = std::sync::OnceLock::new();
    PARSER.get_or_init(|| {
        // Fields the model never reads in their structured form are kept raw: parsing every
        // Received, List-* and Resent-* field was most of the parser's work on real mail. The
        // `headers` list decodes every value from its raw bytes either way.
        UNREAD_FIELDS
            .into_iter()
            .fold(MessageParser::new(), |p, name| {
                p.header(name, HeaderForm::Raw)
            })
    })
}

fn parse_unguarded(raw: &[u8], limits: &Limits) -> Result<Parsed, ParseError> {
    let max_depth = limits.max_depth.min(DEPTH_CEILING);
    // mail-parser counts the root message as one level of nesting, we do not. Its limits are
    // applied while it builds the tree, so a flood of parts or levels costs no more than the
    // limit: what lies beyond stays unparsed inside the part where the limit was reached. It
    // may parse one part more than we keep: that last part holds the unparsed rest, which is
    // no one's body or attachment.
    let message = parser()
        .clone()
        .max_depth(max_depth.saturating_add(1))
        .max_parts(limits.max_parts.saturating_add(1))
        .parse(raw)
        .ok_or_else(|| ParseError::NotMime {
            reason: "no header fields found".into(),
        })?;

    let mut walk = Walk {
        max_depth,
        max_parts: limits.max_parts,
        flags: Vec::new(),
        contents: Some(Vec::new()),
    };
    if message.parts().len() > limits.max_parts {
        walk.flag(flags::MAX_PARTS_EXCEEDED);
    }
    let mut email = walk.email(message.root(), 0);
    email.size = raw.len() as u64;
    email.flags = walk.flags;
    let contents = walk.contents.unwrap_or_default();
    Ok(Parsed { email, contents })
}

struct Walk {
    max_depth: usize,
    /// Parts are numbered in document order across nested messages; ids from here on are
    /// past [`Limits::max_parts`].
    max_parts: usize,
    flags: Vec<String>,
    /// The decoded bytes of the top-level message's attachments; `None` while walking a nested
    /// message, whose attachments are described but not kept.
    contents: Option<Vec<Vec<u8>>>,
}

impl Walk {
    fn flag(&mut self, flag: &str) {
        if !self.flags.iter().any(|f| f == flag) {
            self.flags.push(flag.to_string());
        }
    }

    /// Builds the model for `message` (at nesting `depth`).
    fn email(&mut self, message: MessageRef<'_>, depth: usize) -> Email {
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
            let (made, cut) = html_to_text_within(h, super::TEXT_FROM_HTML_MAX);
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
        let attachment = Attachment {
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
        };
        if let Some(kept) = self.contents.as_mut() {
            kept.push(contents.into_owned());
        }
        attachment
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

/// The reply in a body no larger than [`REPLY_MAX_BODY`].
pub(crate) fn body_reply(
    text: Option<&str>,
    html: Option<&str>,
    from: Option<&Address>,
    subject: Option<&str>,
) -> Option<Reply> {
    let size = text.map_or(0, str::len).max(html.map_or(0, str::len));
    if size > REPLY_MAX_BODY {
        return None;
    }
    // The sender's name and mailbox: a signature may be only the name.
    let sender = from.map_or(String::new(), |a| {
        format!("{} {}", a.name.as_deref().unwrap_or(""), a.address)
    });
    let cx = reply::Context {
        sender: &sender,
        subject: subject.unwrap_or(""),
    };
    reply::reply(text, html, cx)
}

/// Body lines that a header block without its blank line swallowed: from the first line that is
/// neither a field nor a continuation to the end of the block (what Python's `email` and MTAs
/// show as the body).
fn stray_body<'m>(root: MessagePart<'m>) -> Option<Cow<'m, str>> {
    if !root.raw_body().iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let block = root.raw_headers();
    let mut at = 0;
    for line in block.split_inclusive(|&b| b == b'\n') {
        let continuation = line.first().is_some_and(|&b| b == b' ' || b == b'\t');
        if !continuation && !is_field_line(line) {
            let rest = block.get(at..)?;
            let rest = rest.strip_suffix(b"\n").unwrap_or(rest);
            let rest = rest.strip_suffix(b"\r").unwrap_or(rest);
            return (!rest.iter().all(u8::is_ascii_whitespace))
                .then(|| String::from_utf8_lossy(rest));
        }
        at += line.len();
    }
    None
}

/// `Name:` with a strict RFC 5322 field name (printable ASCII, no blanks, no colon).
fn is_field_line(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        Some(0) | None => false,
        Some(colon) => line[..colon].iter().all(|&b| (33..=126).contains(&b)),
    }
}

/// The body of a single-part message whose first Content-Type says text (a bare `text`, or a
/// second Content-Type that mail-parser preferred) while mail-parser read it as a file.
fn first_type_text<'m>(root: MessagePart<'m>) -> Option<Cow<'m, str>> {
    if root
        .content_disposition()
        .is_some_and(|cd| cd.is_attachment())
        || root.attachment_name().is_some()
    {
        return None;
    }
    let header = root.headers().all(HeaderName::ContentType).next()?;
    let parsed = HeaderForm::ContentType.parse(header.raw_value());
    let value = parsed.value();
    let ct = value.as_content_type()?;
    let is_text = ct.ctype().eq_ignore_ascii_case("text")
        && ct.subtype().is_none_or(|s| s.eq_ignore_ascii_case("plain"));
    if !is_text {
        return None;
    }
    let charset = ct
        .attribute("charset")
        .and_then(|label| mail_parser::Charset::from_label(label.as_bytes()))
        .unwrap_or_default();
    Some(Cow::Owned(charset.decode(&root.decoded()).into_owned()))
}

/// Whether the top-level header block is one that MTAs and mail clients may read differently.
fn ambiguous_headers(message: MessageRef<'_>) -> bool {
    let headers = message.headers();
    let bad_name = headers.iter().any(|h| {
        let name = h.raw_name().trim_end();
        name.is_empty() || !name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
    });
    let repeated = [
        HeaderName::From,
        HeaderName::Sender,
        HeaderName::Subject,
        HeaderName::ContentType,
    ]
    .into_iter()
    .any(|name| headers.all(name).count() > 1);
    let root = message.root_part();
    bad_name || repeated || (!root.is_multipart() && stray_body(root).is_some())
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

/// The value unfolded, with RFC 2047 encoded words decoded to UTF-8 and all else kept as
/// written (blanks between two adjacent encoded words are dropped, as RFC 2047 says).
fn decoded_value(raw_value: &[u8]) -> String {
    // Values without encoded words need no decoding, only mail-parser's unfolding, done here
    // the same way: this skips the parser's per-value setup, a measurable share of the model's
    // cost on real mail, where most fields are plain and Received fields are folded. The scans
    // use memchr: byte-by-byte they were a visible share of the whole parse.
    let value = raw_value.trim_ascii();
    let encoded = memchr::memchr_iter(b'?', value).any(|at| at > 0 && value[at - 1] == b'=');
    if !encoded && let Ok(text) = std::str::from_utf8(value) {
        if memchr::memchr2(b'\r', b'\n', value).is_none() {
            return text.trim().to_string();
        }
        let unfolded = unfold(text);
        let trimmed = unfolded.trim();
        return if trimmed.len() == unfolded.len() {
            unfolded
        } else {
            trimmed.to_string()
        };
    }
    let parsed = HeaderForm::Text.parse(raw_value);
    match parsed.value().as_text() {
        Some(text) => text.trim().to_string(),
        None => String::from_utf8_lossy(raw_value).trim().to_string(),
    }
}

/// RFC 5322 unfolding as mail-parser does it for a text value: each line break, with the blanks
/// around it, becomes one space.
fn unfold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(['\r', '\n']) {
        let (line, tail) = rest.split_at(at);
        out.push_str(line.trim_end_matches([' ', '\t']));
        out.push(' ');
        rest = tail.trim_start_matches([' ', '\t', '\r', '\n']);
    }
    out.push_str(rest);
    out
}

/// The Date header as RFC 3339: mail-parser's reading, else `time`'s RFC 2822 parser (which
/// accepts forms mail-parser misses, such as a missing weekday or seconds).
fn rfc3339_date(message: MessageRef<'_>) -> Option<String> {
    if let Some(d) = message.date().filter(|d| d.is_valid() && real_date(d)) {
        return Some(d.to_rfc3339());
    }
    let header = message.headers().get(HeaderName::Date)?;
    let raw = String::from_utf8_lossy(header.raw_value());
    let unfolded: String = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    let parsed =
        time::OffsetDateTime::parse(&unfolded, &time::format_description::well_known::Rfc2822)
            .ok()?;
    parsed
        .format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// Joins body parts with `\n` and turns CRLF into LF, one part at a time.
///
/// Bodies use `\n` line endings whatever the message used, so LF and CRLF copies of one message
/// give the same text. The first part's own buffer becomes the result when the charset decoder
/// already allocated one (legacy charsets, transfer encodings): its line endings are rewritten in
/// place, so a 40 MB windows-1252 body is never held twice. Later parts are appended and dropped
/// one by one.
#[derive(Default)]
struct LfJoin {
    out: Option<String>,
}

impl LfJoin {
    fn push(&mut self, part: Cow<'_, str>) {
        match &mut self.out {
            Some(out) => {
                out.push('\n');
                push_lf(out, &part);
            }
            None => {
                self.out = Some(match part {
                    Cow::Owned(owned) => crlf_to_lf_in_place(owned),
                    Cow::Borrowed(borrowed) => {
                        let mut out = String::with_capacity(borrowed.len());
                        push_lf(&mut out, borrowed);
                        out
                    }
                });
            }
        }
    }

    fn finish(self) -> Option<String> {
        self.out
    }
}

/// Appends `text` with every CRLF turned into LF.
fn push_lf(out: &mut String, text: &str) {
    let mut from = 0;
    let mut searched = 0;
    while let Some(cr) = text[searched..].find('\r') {
        let at = searched + cr;
        searched = at + 1;
        if text.as_bytes().get(at + 1) == Some(&b'\n') {
            out.push_str(&text[from..at]);
            out.push('\n');
            from = at + 2;
            searched = from;
        }
    }
    out.push_str(&text[from..]);
}

/// Every CRLF turned into LF within the string's own buffer.
fn crlf_to_lf_in_place(text: String) -> String {
    let mut bytes = text.into_bytes();
    let mut write = 0;
    let mut read = 0;
    while let Some(at) = find_crlf(&bytes[read..]) {
        bytes.copy_within(read..read + at, write);
        write += at;
        bytes[write] = b'\n';
        write += 1;
        read += at + 2;
    }
    bytes.copy_within(read.., write);
    write += bytes.len() - read;
    bytes.truncate(write);
    // Removing ASCII CR bytes keeps UTF-8 valid, so the lossy branch never runs.
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(cr) = bytes[from..].iter().position(|&b| b == b'\r') {
        let at = from + cr;
        if bytes.get(at + 1) == Some(&b'\n') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Group members are flattened: the model has no groups, and an empty group adds nothing.
fn address_list(list: &mail_parser::AddressList<'_>) -> Vec<Address> {
    list.mailboxes().filter_map(to_address).collect()
}

fn to_address(mailbox: mail_parser::Mailbox<'_>) -> Option<Address> {
    let address = mailbox.address()?.trim();
    if address.is_empty() {
        return None;
    }
    let name = mailbox
        .name()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    Some(Address {
        name,
        address: address.to_string(),
    })
}

fn ids(list: Option<mail_parser::TextList<'_>>) -> Vec<String> {
    list.map(|l| l.iter().map(|id| id.trim().to_string()).collect())
        .unwrap_or_default()
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
    fn lf_join_joins_and_normalises_line_endings() {
        let join = |parts: Vec<Cow<'_, str>>| {
            let mut j = LfJoin::default();
            for p in parts {
                j.push(p);
            }
            j.finish()
        };
        for first in [Cow::Borrowed("a\r\nb\r\n"), Cow::Owned("a\r\nb\r\n".into())] {
            let joined = join(vec![first, Cow::Borrowed("c\rd")]);
            assert_eq!(joined.as_deref(), Some("a\nb\n\nc\rd"));
        }
        assert_eq!(
            join(vec![Cow::Owned("\r\n\r\n".into())]).as_deref(),
            Some("\n\n")
        );
        assert_eq!(
            join(vec![Cow::Owned("\r\r\n\r".into())]).as_deref(),
            Some("\r\n\r")
        );
        assert_eq!(
            join(vec![Cow::Owned("ü\r\n€".into())]).as_deref(),
            Some("ü\n€")
        );
        assert_eq!(join(Vec::new()), None);
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
        assert!(p.email.flags.is_empty());
    }

    #[test]
    fn text_made_from_a_huge_html_body_stops_at_its_bound() {
        let body = "<p>Gr\u{fc}\u{df}e aus K\u{f6}ln</p>\n".repeat(250_000);
        let p = parse(&format!(
            "From: a@b.c\nContent-Type: text/html; charset=utf-8\n\n{body}"
        ));
        let text = p.email.text.as_deref().unwrap_or_default();
        assert!(
            text.len() >= crate::email::TEXT_FROM_HTML_MAX,
            "{}",
            text.len()
        );
        assert!(text.len() < crate::email::TEXT_FROM_HTML_MAX + 8);
        assert_eq!(p.email.html.as_deref().map(str::len), Some(body.len()));
        assert_eq!(p.email.flags, [flags::TEXT_FROM_HTML_TRUNCATED]);
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
    fn decoded_values_match_mail_parsers_text_form() {
        for raw in [
            &b" plain value\r\n"[..],
            b" folded\r\n\tvalue  \r\n   again\r\n",
            b"\tx\n y\r\n",
            b" a \x0c\r\n b\r\n",
            b" =?utf-8?q?caf=C3=A9?= =?utf-8?q?_bar?=\r\n",
            b" caf\xe9\r\n",
            b"  \r\n",
            b" a = b =\r\n ?c\r\n",
        ] {
            let parsed = HeaderForm::Text.parse(raw);
            let reference = match parsed.value().as_text() {
                Some(text) => text.trim().to_string(),
                None => String::from_utf8_lossy(raw).trim().to_string(),
            };
            assert_eq!(decoded_value(raw), reference, "{raw:?}");
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
