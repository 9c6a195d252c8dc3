//! Cheap checks on raw input, run before any parsing work is spent on it.

use crate::email::{Limits, ParseError};

/// Cheap checks that reject input before any parsing work is spent on it.
pub(super) fn precheck(raw: &[u8], limits: &Limits) -> Result<(), ParseError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::email::Email;

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
    fn header_block_length_stops_at_the_blank_line() {
        assert_eq!(header_block_len(b"A: b\r\nC: d\r\n\r\nbody", 100), 12);
        assert_eq!(header_block_len(b"A: b\n\nbody", 100), 5);
        assert_eq!(header_block_len(b"A: b", 100), 4);
        assert_eq!(header_block_len(&[b'x'; 50], 10), 10);
    }
}
