//! Raw MIME → [`Email`]: mail-parser does the MIME work, with our limits applied while it builds
//! its tree; this module maps that tree onto the JSON model and hands each attachment's decoded
//! bytes back, decoding every body exactly once.
//!
//! # Layout
//! - `precheck`: what rejects input before any parsing (size, header block, first line).
//! - `walk`: the walk over mail-parser's tree that builds the model, attachments included.
//! - `headers`: header values (encoded words, folding, dates, addresses) and what an ambiguous
//!   header block hides.
//! - `text`: body text (line endings, a charset mail-parser passed over) and the reply in it.

mod headers;
mod precheck;
mod text;
mod walk;

use std::panic::{AssertUnwindSafe, catch_unwind};

use mail_parser::{HeaderForm, HeaderName, MessageParser};

use super::{Email, Limits, ParseError, Parsed};
use precheck::precheck;
use walk::Walk;

pub use precheck::header_block_len;
pub(crate) use text::body_reply;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::SCHEMA;
    use sha2::{Digest, Sha256};

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
}
