//! Header values as the model shows them, and the reading of a header block that MTAs and mail
//! clients may read differently.

use std::borrow::Cow;

use mail_parser::{HeaderForm, HeaderName, MessagePart, MessageRef};

use crate::email::Address;

/// The value unfolded, with RFC 2047 encoded words decoded to UTF-8 and all else kept as
/// written (blanks between two adjacent encoded words are dropped, as RFC 2047 says).
pub(super) fn decoded_value(raw_value: &[u8]) -> String {
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
pub(super) fn rfc3339_date(message: MessageRef<'_>) -> Option<String> {
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

/// Group members are flattened: the model has no groups, and an empty group adds nothing.
pub(super) fn address_list(list: &mail_parser::AddressList<'_>) -> Vec<Address> {
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

pub(super) fn ids(list: Option<mail_parser::TextList<'_>>) -> Vec<String> {
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

/// Whether the top-level header block is one that MTAs and mail clients may read differently.
pub(super) fn ambiguous_headers(message: MessageRef<'_>) -> bool {
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

/// Body lines that a header block without its blank line swallowed: from the first line that is
/// neither a field nor a continuation to the end of the block (what Python's `email` and MTAs
/// show as the body).
pub(super) fn stray_body<'m>(root: MessagePart<'m>) -> Option<Cow<'m, str>> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
