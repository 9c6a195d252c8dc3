//! A small, bounded HTML → plain-text conversion for mail that has only an HTML body.
//!
//! It is not a renderer: it drops tags, comments, `<head>`, `<style>` and `<script>`, decodes the
//! common entities, collapses whitespace as a browser would and starts a new line at block
//! elements. One linear pass over the input; the output is never longer than the input plus one
//! newline per tag, so a hostile document costs time and memory proportional to its size.

/// Elements that end a line (and start a new one) when opened or closed.
const BLOCK: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "br",
    "dd",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "li",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "table",
    "tr",
    "ul",
];

/// Elements whose content is never shown.
const HIDDEN: &[&str] = &["head", "script", "style", "template", "title"];

/// Converts HTML to readable plain text.
pub fn html_to_text(html: &str) -> String {
    html_to_text_within(html, usize::MAX).0
}

/// [`html_to_text`], stopping once the text reaches `max_bytes`; the flag says it stopped. A
/// text made up from the HTML is a convenience beside it, and a whole second copy of a 100 MB
/// body is what puts a function over its memory.
pub fn html_to_text_within(html: &str, max_bytes: usize) -> (String, bool) {
    let mut out = String::with_capacity((html.len() / 2).min(max_bytes.saturating_add(4)));
    // Pending whitespace is only written when more text follows, so output never ends in blanks.
    let mut pending_space = false;
    let mut pending_newlines = 0usize;
    let mut hidden_depth = 0usize;
    let mut rest = html;

    while let Some(c) = rest.chars().next() {
        if c == '<' {
            if let Some(after) = rest.strip_prefix("<!--") {
                rest = after.find("-->").map_or("", |end| &after[end + 3..]);
                continue;
            }
            let Some(end) = rest.find('>') else {
                // An unterminated tag: the remainder is not text anyone meant to show.
                break;
            };
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            let closing = tag.starts_with('/');
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .map(|c| c.to_ascii_lowercase())
                .collect();
            if HIDDEN.contains(&name.as_str()) {
                if closing {
                    hidden_depth = hidden_depth.saturating_sub(1);
                } else if !tag.ends_with('/') {
                    hidden_depth += 1;
                }
                continue;
            }
            if BLOCK.contains(&name.as_str()) {
                let wanted = if name == "br" || name == "li" || name == "tr" {
                    1
                } else {
                    2
                };
                pending_newlines = pending_newlines.max(wanted);
                pending_space = false;
            } else if name == "td" || name == "th" {
                pending_space = true;
            }
            continue;
        }

        let text_end = rest.find('<').unwrap_or(rest.len());
        let text = &rest[..text_end];
        rest = &rest[text_end..];
        if hidden_depth > 0 {
            continue;
        }
        let decoded = decode_entities(text);
        for c in decoded.chars() {
            if c.is_whitespace() && c != '\u{a0}' {
                pending_space = true;
                continue;
            }
            if !out.is_empty() {
                if pending_newlines > 0 {
                    for _ in 0..pending_newlines {
                        out.push('\n');
                    }
                } else if pending_space {
                    out.push(' ');
                }
            }
            pending_newlines = 0;
            pending_space = false;
            out.push(if c == '\u{a0}' { ' ' } else { c });
            if out.len() >= max_bytes {
                return (out, true);
            }
        }
    }
    (out, false)
}

/// Decodes `&name;`, `&#123;` and `&#x1F600;`; anything unknown is kept as written.
fn decode_entities(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('&') {
        return text.into();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        // Entities are short (the longest HTML5 name has 31 characters); a bounded look-ahead
        // keeps this linear.
        let semi = rest
            .char_indices()
            .take(34)
            .find(|&(_, c)| c == ';')
            .map(|(i, _)| i);
        let decoded = semi.and_then(|semi| entity(&rest[1..semi]).map(|c| (c, semi)));
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out.into()
}

fn entity(name: &str) -> Option<char> {
    if let Some(num) = name.strip_prefix('#') {
        let code = match num.strip_prefix(['x', 'X']) {
            Some(hex) => u32::from_str_radix(hex, 16).ok()?,
            None => num.parse().ok()?,
        };
        return Some(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER));
    }
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "copy" => '©',
        "reg" => '®',
        "trade" => '™',
        "hellip" => '…',
        "mdash" => '—',
        "ndash" => '–',
        "lsquo" => '‘',
        "rsquo" => '’',
        "ldquo" => '“',
        "rdquo" => '”',
        "laquo" => '«',
        "raquo" => '»',
        "bull" => '•',
        "middot" => '·',
        "euro" => '€',
        "pound" => '£',
        "yen" => '¥',
        "cent" => '¢',
        "deg" => '°',
        "times" => '×',
        "zwnj" => '\u{200c}',
        "zwj" => '\u{200d}',
        _ => return named_entity(name),
    })
}

/// Every other HTML5 named entity, through mail-parser's table (`&ouml;`, `&Auml;`, `&szlig;`).
fn named_entity(name: &str) -> Option<char> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let token = format!("&{name};");
    let mut decoded = String::new();
    mail_parser::add_html_token(&mut decoded, token.as_bytes(), false);
    let mut chars = decoded.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{html_to_text, html_to_text_within};

    #[test]
    fn blocks_break_lines_and_inline_runs_join() {
        let html = "<html><head><title>T</title><style>p{color:red}</style></head><body>\
                    <h1>Hello</h1><p>One <b>bold</b>\n  word.</p><div>Line<br>two</div>\
                    <ul><li>a</li><li>b</li></ul><script>alert(1)</script></body></html>";
        assert_eq!(
            html_to_text(html),
            "Hello\n\nOne bold word.\n\nLine\ntwo\n\na\nb"
        );
    }

    #[test]
    fn every_html5_named_entity_decodes() {
        assert_eq!(
            html_to_text("Gr&ouml;&szlig;e &Auml;rger &CounterClockwiseContourIntegral; &eacute;"),
            "Größe Ärger ∳ é"
        );
    }

    #[test]
    fn entities_decode_and_unknown_ones_stay() {
        assert_eq!(
            html_to_text("Fish &amp; chips &lt;3 &#233;t&#xE9; &bogus; a&b &nbsp;x"),
            "Fish & chips <3 été &bogus; a&b  x"
        );
    }

    #[test]
    fn comments_and_unterminated_tags_are_dropped() {
        assert_eq!(html_to_text("a<!-- hidden -->b<p unterminated"), "ab");
        assert_eq!(html_to_text("a<!-- never closed"), "a");
    }

    #[test]
    fn table_cells_are_separated() {
        assert_eq!(
            html_to_text("<table><tr><td>x</td><td>y</td></tr><tr><td>z</td></tr></table>"),
            "x y\nz"
        );
    }

    #[test]
    fn a_text_made_from_html_stops_at_its_bound() {
        let html = "<p>caf\u{e9} au lait</p>".repeat(1000);
        let (whole, cut) = html_to_text_within(&html, usize::MAX);
        assert!(!cut);
        assert_eq!(whole, html_to_text(&html));
        let (part, cut) = html_to_text_within(&html, 100);
        assert!(cut);
        assert!(part.len() >= 100 && part.len() < 110, "{}", part.len());
        assert!(whole.starts_with(&part));
    }
}
