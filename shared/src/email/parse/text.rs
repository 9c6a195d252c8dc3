//! Body text: parts joined with LF line endings, a text body mail-parser read as a file, and
//! the reply found in a body.

use std::borrow::Cow;

use mail_parser::{HeaderForm, HeaderName, MessagePart};

use crate::email::{Address, REPLY_MAX_BODY, Reply, reply};

/// Joins body parts with `\n` and turns CRLF into LF, one part at a time.
///
/// Bodies use `\n` line endings whatever the message used, so LF and CRLF copies of one message
/// give the same text. The first part's own buffer becomes the result when the charset decoder
/// already allocated one (legacy charsets, transfer encodings): its line endings are rewritten in
/// place, so a 40 MB windows-1252 body is never held twice. Later parts are appended and dropped
/// one by one.
#[derive(Default)]
pub(super) struct LfJoin {
    out: Option<String>,
}

impl LfJoin {
    pub(super) fn push(&mut self, part: Cow<'_, str>) {
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

    pub(super) fn finish(self) -> Option<String> {
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

/// The body of a single-part message whose first Content-Type says text (a bare `text`, or a
/// second Content-Type that mail-parser preferred) while mail-parser read it as a file.
pub(super) fn first_type_text<'m>(root: MessagePart<'m>) -> Option<Cow<'m, str>> {
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
}
