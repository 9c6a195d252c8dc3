//! Writing header fields: RFC 2047 encoded words for text outside ASCII, quoted display names,
//! address lists rebuilt from mail-parser's reading of them, and folding under 78 columns, so
//! what the forward function writes is 7-bit and within SES's line limit whatever it read.

use base64::Engine;
use mail_parser::{Address, AddressList};

/// The line break a message uses: new fields are written with the original's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eol {
    Crlf,
    Lf,
}

impl Eol {
    /// CRLF when the message's first line ends with one (as SMTP delivers it), else LF.
    pub fn of(raw: &[u8]) -> Eol {
        match raw.iter().position(|&b| b == b'\n') {
            Some(i) if i > 0 && raw[i - 1] == b'\r' => Eol::Crlf,
            Some(_) => Eol::Lf,
            None => Eol::Crlf,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Eol::Crlf => "\r\n",
            Eol::Lf => "\n",
        }
    }
}

/// Folds before this column where a blank allows it (RFC 5322 §2.1.1).
const FOLD_AT: usize = 78;
/// UTF-8 bytes per encoded word: 45 bytes are 60 base64 characters, 72 with `=?UTF-8?B?…?=`.
const WORD_BYTES: usize = 45;

/// The longest run without a blank written as is: [`field`] folds only at blanks, so a longer
/// run (a 2,000-character Subject with no space) is written as encoded words, which fold.
const MAX_RUN: usize = 64;

/// Whether `text` can be written as is: printable ASCII, nothing an encoded word could be
/// mistaken for, and no run too long to fold.
fn plain(text: &str) -> bool {
    text.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !text.contains("=?")
        && text.split(' ').all(|w| w.len() <= MAX_RUN)
}

/// `text` as one or more `=?UTF-8?B?…?=` words separated by folding blanks, or as is when it is
/// `plain`.
pub fn encode_text(text: &str, eol: Eol) -> String {
    if plain(text) {
        return text.to_string();
    }
    encoded_words(text, eol)
}

/// `text` cut to at most `max` characters, an ellipsis marking the cut: what a sender controls
/// (a display name, a line we quote) never grows what we write without bound.
pub fn capped(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// `text` broken at blanks into lines of at most `width` columns (a longer word stays whole:
/// a URL is worth more unbroken, and no word we quote is near SES's line limit).
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn encoded_words(text: &str, eol: Eol) -> String {
    let mut words = Vec::new();
    let mut chunk = String::new();
    for c in text.chars() {
        let c = if c.is_control() { ' ' } else { c };
        if chunk.len() + c.len_utf8() > WORD_BYTES {
            words.push(std::mem::take(&mut chunk));
        }
        chunk.push(c);
    }
    if !chunk.is_empty() || words.is_empty() {
        words.push(chunk);
    }
    words
        .iter()
        .map(|w| {
            format!(
                "=?UTF-8?B?{}?=",
                base64::engine::general_purpose::STANDARD.encode(w.as_bytes())
            )
        })
        .collect::<Vec<_>>()
        .join(&format!("{} ", eol.as_str()))
}

/// A display name as a phrase: a quoted string when short `plain` ASCII, encoded words
/// otherwise (they fold; a long quoted string would be one line).
pub fn phrase(name: &str, eol: Eol) -> String {
    let name = name.trim();
    if plain(name) && name.len() <= MAX_RUN {
        let mut q = String::with_capacity(name.len() + 2);
        q.push('"');
        for c in name.chars() {
            if c == '"' || c == '\\' {
                q.push('\\');
            }
            q.push(c);
        }
        q.push('"');
        q
    } else {
        encoded_words(name, eol)
    }
}

/// `phrase <address>`, or the bare address without a name. `None` when the address itself is
/// not ASCII (an internationalized address cannot be written in a 7-bit header).
pub fn mailbox(name: Option<&str>, address: &str, eol: Eol) -> Option<String> {
    let address = address.trim();
    if address.is_empty() || !address.is_ascii() || address.contains(['\r', '\n', '<', '>']) {
        return None;
    }
    Some(match name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(n) => format!("{} <{address}>", phrase(n, eol)),
        None => format!("<{address}>"),
    })
}

/// An address list with its groups, rebuilt from mail-parser's reading; `None` when a mailbox
/// cannot be written in 7 bits.
pub fn address_list(list: &AddressList<'_>, eol: Eol) -> Option<String> {
    let mut items = Vec::new();
    for a in list.iter() {
        match a {
            Address::Mailbox(m) => items.push(mailbox(m.name(), m.address()?, eol)?),
            Address::Group(g) => {
                let members = g
                    .mailboxes()
                    .map(|m| mailbox(m.name(), m.address()?, eol))
                    .collect::<Option<Vec<_>>>()?;
                let name = phrase(g.name().unwrap_or("undisclosed-recipients"), eol);
                items.push(format!("{name}: {};", members.join(", ")));
            }
        }
    }
    Some(items.join(", "))
}

/// `Name: value` with its line break, folded at blanks before `FOLD_AT` (78) columns where it can
/// be (a run without blanks, such as one encoded word, stays whole: it is shorter than the
/// line limit by construction).
pub fn field(name: &str, value: &str, eol: Eol) -> String {
    let mut out = String::with_capacity(name.len() + value.len() + 8);
    out.push_str(name);
    out.push(':');
    let mut col = out.len();
    // Existing folds (from encoded words) are kept; everything else is refolded.
    for (i, segment) in value.split(eol.as_str()).enumerate() {
        let segment = if i == 0 {
            segment
        } else {
            segment.trim_start()
        };
        for word in segment.split(' ').filter(|w| !w.is_empty()) {
            if col + 1 + word.len() > FOLD_AT && col > name.len() + 1 {
                out.push_str(eol.as_str());
                col = 0;
            }
            out.push(' ');
            out.push_str(word);
            col += 1 + word.len();
        }
    }
    out.push_str(eol.as_str());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use mail_parser::HeaderForm;

    #[test]
    fn encoded_words_round_trip_and_stay_short() {
        let text = "Grüße aus Köln — ".repeat(8);
        let enc = encode_text(&text, Eol::Crlf);
        assert!(enc.is_ascii());
        assert!(enc.split("\r\n").all(|l| l.len() < 78), "{enc}");
        let line = format!(" {enc}\r\n");
        let parsed = HeaderForm::Text.parse(line.as_bytes());
        assert_eq!(parsed.value().as_text().map(str::trim), Some(text.trim()));
        assert_eq!(encode_text("plain", Eol::Lf), "plain");
        assert!(encode_text("looks =?like?= a word", Eol::Lf).starts_with("=?UTF-8?B?"));
    }

    #[test]
    fn phrases_quote_or_encode() {
        assert_eq!(phrase("Doe, \"J\"", Eol::Lf), r#""Doe, \"J\"""#);
        assert!(phrase("José", Eol::Lf).starts_with("=?UTF-8?B?"));
        assert_eq!(mailbox(None, "a@b.c", Eol::Lf).unwrap(), "<a@b.c>");
        assert_eq!(mailbox(Some("José"), "jö@b.c", Eol::Lf), None);
    }

    #[test]
    fn address_lists_keep_groups() {
        let parsed = HeaderForm::Addresses.parse(b" Team: a@x.org, \"B\" <b@x.org>;, c@y.org\r\n");
        let list = parsed.value().as_address().unwrap();
        assert_eq!(
            address_list(&list, Eol::Lf).unwrap(),
            r#""Team": <a@x.org>, "B" <b@x.org>;, <c@y.org>"#
        );
    }

    #[test]
    fn fields_fold_at_blanks() {
        let value = (0..30)
            .map(|i| format!("<a{i}@example.com>"))
            .collect::<Vec<_>>();
        let f = field("References", &value.join(" "), Eol::Crlf);
        assert!(f.ends_with("\r\n"));
        assert!(f.split("\r\n").all(|l| l.len() <= 78), "{f}");
        let unfolded: String = f.replace("\r\n", "");
        assert_eq!(unfolded, format!("References: {}", value.join(" ")));
    }

    #[test]
    fn long_text_and_names_fold_whatever_the_sender_wrote() {
        // A 2,000-character run without a blank, and a long quoted name: both used to be one
        // line of over 1,000 bytes.
        for text in ["x".repeat(2000), "Jane ".repeat(400)] {
            for value in [encode_text(&text, Eol::Crlf), phrase(&text, Eol::Crlf)] {
                let f = field("Subject", &value, Eol::Crlf);
                assert!(f.split("\r\n").all(|l| l.len() <= 100), "{f}");
                let parsed = HeaderForm::Text.parse(&f.as_bytes()["Subject:".len()..]);
                let back = parsed.value().as_text().unwrap_or_default().to_string();
                assert_eq!(
                    back.split_whitespace().collect::<String>(),
                    text.split_whitespace().collect::<String>()
                );
            }
        }
        assert_eq!(capped("abcdef", 3), "abc…");
        assert_eq!(capped("abc", 3), "abc");
        let lines = wrap(&"word ".repeat(100), 76);
        assert!(lines.iter().all(|l| l.len() <= 76) && lines.len() > 5);
    }
}
