//! A message's MIME structure for its page: every part in document order, multiparts with their
//! children, and a nested `message/rfc822` (or `message/global`) opened into its own parts.

use mail_parser::{MessageParser, MessagePart, PartKind};

/// Parts shown at most; a message with more says how many were left out.
pub const MAX_NODES: usize = 500;

/// One part.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    /// Its number in document order (a pre-order walk), used to download it.
    pub n: usize,
    /// `type/subtype`, `text/plain` when the part names none.
    pub content_type: String,
    pub charset: Option<String>,
    /// The Content-Transfer-Encoding as written.
    pub encoding: Option<String>,
    /// `attachment` or `inline`, as written.
    pub disposition: Option<String>,
    pub filename: Option<String>,
    /// Bytes of the body as it is in the message (before decoding).
    pub size: usize,
    /// A nested message's subject.
    pub subject: Option<String>,
    /// mail-parser repaired or could not decode something here.
    pub problems: bool,
    pub children: Vec<Node>,
}

impl Node {
    /// Every part but a multipart can be downloaded: a nested message as the message it holds.
    pub fn downloadable(&self) -> bool {
        !self.content_type.starts_with("multipart/")
    }
}

/// The structure of `raw`, and how many parts were left out past [`MAX_NODES`]; `None` when it
/// does not parse at all.
pub fn tree(raw: &[u8]) -> Option<(Node, usize)> {
    let message = MessageParser::default().parse(raw)?;
    let mut walk = Walk::default();
    let root = walk.node(message.root_part(), 0);
    Some((root, walk.left_out))
}

/// The decoded body of part `n` (numbered as [`tree`] numbers them), with its node.
pub fn part(raw: &[u8], n: usize) -> Option<(Node, Vec<u8>)> {
    let message = MessageParser::default().parse(raw)?;
    let mut walk = Walk {
        want: Some(n),
        ..Walk::default()
    };
    walk.node(message.root_part(), 0);
    walk.found
}

#[derive(Default)]
struct Walk {
    next: usize,
    left_out: usize,
    want: Option<usize>,
    found: Option<(Node, Vec<u8>)>,
}

/// Past this nesting the walk stops (mail-parser's own limit is lower; this guards the
/// recursion).
const MAX_DEPTH: usize = 64;

impl Walk {
    fn node(&mut self, part: MessagePart<'_>, depth: usize) -> Node {
        let n = self.next;
        self.next += 1;
        let ct = part.content_type();
        let content_type = ct.as_ref().map_or_else(
            || "text/plain".to_string(),
            |c| {
                format!(
                    "{}/{}",
                    c.ctype().to_ascii_lowercase(),
                    c.subtype().unwrap_or("").to_ascii_lowercase()
                )
            },
        );
        let mut node = Node {
            n,
            charset: ct
                .as_ref()
                .and_then(|c| c.attribute("charset"))
                .map(str::to_string),
            encoding: part.content_transfer_encoding().map(str::to_string),
            disposition: part
                .content_disposition()
                .map(|d| d.ctype().to_ascii_lowercase()),
            filename: part.attachment_name().map(str::to_string),
            size: part.raw_body().len(),
            problems: part.has_problems(),
            content_type,
            ..Node::default()
        };
        if self.want == Some(n) {
            self.found = Some((node.clone(), part.decoded().into_owned()));
        }
        if depth >= MAX_DEPTH || self.found.is_some() {
            return node;
        }
        match part.kind() {
            PartKind::Multipart => {
                for child in part.children() {
                    if self.next >= MAX_NODES {
                        self.left_out += 1;
                        continue;
                    }
                    node.children.push(self.node(child, depth + 1));
                }
            }
            PartKind::Message(nested) => {
                node.subject = Some(nested.subject().unwrap_or_default().to_string());
                if self.next >= MAX_NODES {
                    self.left_out += 1;
                } else {
                    node.children.push(self.node(nested.root_part(), depth + 1));
                }
            }
            _ => {}
        }
        node
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NESTED: &str = "From: a@example.org\r\nSubject: outer\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n\
--o\r\nContent-Type: multipart/alternative; boundary=\"a\"\r\n\r\n\
--a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n\
--a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>hello</p>\r\n--a--\r\n\
--o\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"fwd.eml\"\r\n\r\n\
From: b@example.org\r\nSubject: inner\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"i\"\r\n\r\n\
--i\r\nContent-Type: text/plain\r\n\r\ninner text\r\n\
--i\r\nContent-Type: application/pdf; name=\"doc.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"doc.pdf\"\r\n\r\nJVBERi0xLjQ=\r\n--i--\r\n\
--o--\r\n";

    #[test]
    fn a_nested_message_opens_into_its_own_parts() {
        let (root, left_out) = tree(NESTED.as_bytes()).unwrap();
        assert_eq!(left_out, 0);
        assert_eq!(root.content_type, "multipart/mixed");
        let [alternative, forwarded] = &root.children[..] else {
            panic!("{root:?}");
        };
        assert_eq!(alternative.content_type, "multipart/alternative");
        let types: Vec<&str> = alternative
            .children
            .iter()
            .map(|c| c.content_type.as_str())
            .collect();
        assert_eq!(types, ["text/plain", "text/html"]);
        assert_eq!(alternative.children[0].charset.as_deref(), Some("utf-8"));
        assert_eq!(forwarded.content_type, "message/rfc822");
        assert_eq!(forwarded.subject.as_deref(), Some("inner"));
        assert_eq!(forwarded.disposition.as_deref(), Some("attachment"));
        let inner = &forwarded.children[0];
        assert_eq!(inner.content_type, "multipart/mixed");
        let pdf = &inner.children[1];
        assert_eq!(pdf.filename.as_deref(), Some("doc.pdf"));
        assert_eq!(pdf.encoding.as_deref(), Some("base64"));
        assert!(pdf.downloadable() && forwarded.downloadable() && !inner.downloadable());

        let (node, bytes) = part(NESTED.as_bytes(), pdf.n).unwrap();
        assert_eq!(node.filename.as_deref(), Some("doc.pdf"));
        assert_eq!(bytes, b"%PDF-1.4", "decoded from base64");
        assert!(part(NESTED.as_bytes(), 999).is_none());
        let (_, nested) = part(NESTED.as_bytes(), forwarded.n).unwrap();
        assert!(nested.starts_with(b"From: b@example.org\r\nSubject: inner"));
    }

    #[test]
    fn a_message_of_many_parts_is_cut_and_says_so() {
        let mut raw =
            String::from("Subject: many\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n");
        for i in 0..(MAX_NODES + 20) {
            raw.push_str(&format!("--b\r\nContent-Type: text/plain\r\n\r\n{i}\r\n"));
        }
        raw.push_str("--b--\r\n");
        let (root, left_out) = tree(raw.as_bytes()).unwrap();
        let mut count = 0;
        let mut stack = vec![&root];
        while let Some(n) = stack.pop() {
            count += 1;
            stack.extend(n.children.iter());
        }
        assert_eq!(count, MAX_NODES);
        assert!(left_out > 0);
    }
}
