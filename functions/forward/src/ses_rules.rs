//! SES's rules for a raw message handed to `SendEmail` (docs/ses.md §9.2), checked on the bytes we
//! are about to send: every output of the rewrite and of the attachment mode goes through
//! [`validate`] before it is sent, and the forwarding corpus asserts zero violations.
//!
//! The check reads the header block itself, line by line, instead of reusing the parser the
//! rewrite is built on, so a mistake in one is not hidden by the same mistake in the other.

/// The fields SES accepts at most once in a message's header section (docs/ses.md §9.2), as SES
/// spells them; compared case-insensitively.
pub const SINGLE_OCCURRENCE: &[&str] = &[
    "Accept-Language",
    "acceptLanguage",
    "Archived-At",
    "Auto-Submitted",
    "Bounces-to",
    "Comments",
    "Content-Alternative",
    "Content-Base",
    "Content-Class",
    "Content-Description",
    "Content-Disposition",
    "Content-Duration",
    "Content-ID",
    "Content-Language",
    "Content-Length",
    "Content-Location",
    "Content-MD5",
    "Content-Transfer-Encoding",
    "Content-Type",
    "Date",
    "Delivered-To",
    "Disposition-Notification-Options",
    "Disposition-Notification-To",
    "DKIM-Signature",
    "DomainKey-Signature",
    "Errors-To",
    "From",
    "Importance",
    "In-Reply-To",
    "Keywords",
    "List-Archive",
    "List-Help",
    "List-Id",
    "List-Owner",
    "List-Post",
    "List-Subscribe",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Message-Context",
    "Message-ID",
    "MIME-Version",
    "Organization",
    "Original-From",
    "Original-Message-ID",
    "Original-Recipient",
    "Original-Subject",
    "Precedence",
    "Priority",
    "References",
    "Reply-To",
    "Return-Path",
    "Return-Receipt-To",
    "Sender",
    "Solicitation",
    "Sensitivity",
    "Subject",
    "Thread-Index",
    "Thread-Topic",
    "User-Agent",
    "VBR-Info",
];

/// The largest message `SendEmail` takes, counted as SES counts it: after base64 encoding, so
/// about 30 MB of raw mail (docs/ses.md §9.1). Decimal megabytes, the smaller reading.
pub const MAX_MESSAGE_BYTES: usize = 40_000_000;

/// The size SES counts for `raw`: its base64 encoding.
pub fn encoded_size(raw: usize) -> usize {
    raw.div_ceil(3).saturating_mul(4)
}

/// Attachment filename extensions SES refuses to send (SES Developer Guide, "Unsupported
/// attachment types"), lowercase, without the dot.
pub const BLOCKED_EXTENSIONS: &[&str] = &[
    "ade", "adp", "app", "asp", "bas", "bat", "cer", "chm", "cmd", "com", "cpl", "crt", "csh",
    "der", "exe", "fxp", "gadget", "hlp", "hta", "inf", "ins", "isp", "its", "js", "jse", "ksh",
    "lib", "lnk", "mad", "maf", "mag", "mam", "maq", "mar", "mas", "mat", "mau", "mav", "maw",
    "mda", "mdb", "mde", "mdt", "mdw", "mdz", "msc", "msh", "msh1", "msh2", "mshxml", "msh1xml",
    "msh2xml", "msi", "msp", "mst", "ops", "pcd", "pif", "plg", "prf", "prg", "reg", "scf", "scr",
    "sct", "shb", "shs", "sys", "ps1", "ps1xml", "ps2", "ps2xml", "psc1", "psc2", "tmp", "url",
    "vb", "vbe", "vbs", "vps", "vsmacros", "vss", "vst", "vsw", "vxd", "ws", "wsc", "wsf", "wsh",
    "xnk",
];

/// Whether SES refuses an attachment of this name.
pub fn blocked_name(name: &str) -> bool {
    name.trim()
        .trim_end_matches(['.', ' '])
        .rsplit_once('.')
        .is_some_and(|(_, ext)| BLOCKED_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

/// The names of the attachments in `raw`, at any depth (a forwarded message's own attachments
/// included: whether SES looks inside `message/rfc822` is not documented, so we assume it does),
/// that SES would refuse.
pub fn blocked_attachments(raw: &[u8]) -> Vec<String> {
    fn walk(msg: mail_parser::MessageRef<'_>, out: &mut Vec<String>, depth: usize) {
        for part in msg.parts() {
            if let Some(name) = part.attachment_name()
                && blocked_name(name)
                && !out.iter().any(|n| n == name)
            {
                out.push(name.to_string());
            }
            if depth < 5
                && let Some(nested) = part.nested()
            {
                walk(nested, out, depth + 1);
            }
        }
    }
    let mut out = Vec::new();
    if let Some(msg) = mail_parser::MessageParser::new().parse(raw) {
        walk(msg.root(), &mut out, 0);
    }
    out
}

/// The longest line, its CRLF included (RFC 5321, as SES states it: docs/ses.md §9.2).
pub const MAX_LINE_BYTES: usize = 1000;

/// Fields RFC 5322 requires in every message; a raw message must carry them (docs/ses.md §9.2).
pub const REQUIRED: &[&str] = &["From", "Date"];

/// Whether SES accepts `name` at most once.
pub fn is_single_occurrence(name: &str) -> bool {
    SINGLE_OCCURRENCE
        .iter()
        .any(|n| n.eq_ignore_ascii_case(name.trim()))
}

/// One broken rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// No empty line separates the header section from the body.
    NoBody,
    /// A line in the header section that is neither a field nor a continuation (SES: "Empty
    /// header names are illegal" for `: value`).
    BadField { line: usize, text: String },
    /// A field name with bytes outside printable ASCII.
    BadName { name: String },
    /// A single-occurrence field more than once (SES: `Duplicate header '<name>'`).
    Repeated { name: String, count: usize },
    /// Bytes outside 7-bit ASCII in a header value: they must be RFC 2047 encoded.
    NonAscii { name: String },
    /// A line longer than [`MAX_LINE_BYTES`] with its line break.
    LongLine { line: usize, bytes: usize },
    /// A required field is missing.
    Missing { name: &'static str },
    /// Over [`MAX_MESSAGE_BYTES`].
    TooLarge { bytes: usize },
    /// `From` is not an address at the identity SES may send from.
    UnverifiedFrom { from: String, identity: String },
    /// A line that does not end in CRLF (a bare LF, or a lone CR inside a line, which one
    /// reader takes for a line end and another does not).
    LineEnd { line: usize },
    /// An attachment whose extension SES refuses.
    BlockedAttachment { name: String },
}

impl Violation {
    /// Broken by the content itself, not by how we wrote it: the whole message cannot go, but a
    /// digest of it can.
    pub fn is_content_limit(&self) -> bool {
        matches!(
            self,
            Violation::TooLarge { .. } | Violation::BlockedAttachment { .. }
        )
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::NoBody => write!(f, "no empty line between header and body"),
            Violation::BadField { line, text } => {
                // Quoted in part: the line is the sender's and may be 1,000 bytes long.
                let text = crate::header::capped(text, 60);
                write!(f, "line {line} of the header is not a field: {text:?}")
            }
            Violation::BadName { name } => write!(f, "header name {name:?} is not printable ASCII"),
            Violation::Repeated { name, count } => {
                write!(f, "duplicate header {name:?} ({count} times)")
            }
            Violation::NonAscii { name } => write!(f, "unencoded 8-bit bytes in {name}"),
            Violation::LongLine { line, bytes } => {
                write!(f, "line {line} is {bytes} bytes, over {MAX_LINE_BYTES}")
            }
            Violation::Missing { name } => write!(f, "no {name} header"),
            Violation::TooLarge { bytes } => write!(
                f,
                "{bytes} bytes, {} once base64-encoded, over SES's {MAX_MESSAGE_BYTES}",
                encoded_size(*bytes)
            ),
            Violation::UnverifiedFrom { from, identity } => {
                write!(f, "From {from:?} is not at the sending identity {identity}")
            }
            Violation::LineEnd { line } => {
                write!(f, "line {line} does not end in CRLF")
            }
            Violation::BlockedAttachment { name } => {
                let name = crate::header::capped(name, 80);
                write!(f, "attachment {name:?} has a type SES does not send")
            }
        }
    }
}

/// One field of a header section: its name and its value with every line break kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field<'a> {
    pub name: &'a [u8],
    pub value: &'a [u8],
}

/// Splits the header section into fields (continuation lines joined to their field) and returns
/// them with the offset where the body starts, or the first line that is not a field. `None` for
/// the offset when no empty line ends the section.
pub fn fields(raw: &[u8]) -> (Vec<Field<'_>>, Option<usize>, Vec<Violation>) {
    let mut out: Vec<Field<'_>> = Vec::new();
    let mut problems = Vec::new();
    let mut at = 0;
    let mut line_no = 0;
    while at < raw.len() {
        line_no += 1;
        let end = memchr_nl(&raw[at..]).map_or(raw.len(), |i| at + i + 1);
        let line = &raw[at..end];
        let content = trim_eol(line);
        if content.is_empty() {
            return (out, Some(end), problems);
        }
        if matches!(content[0], b' ' | b'\t') {
            match out.last_mut() {
                Some(last) => {
                    let start = last.value.as_ptr() as usize - raw.as_ptr() as usize;
                    last.value = &raw[start..end];
                }
                None => problems.push(Violation::BadField {
                    line: line_no,
                    text: String::from_utf8_lossy(content).into_owned(),
                }),
            }
        } else {
            match content.iter().position(|&b| b == b':') {
                Some(colon) if colon > 0 && !content[..colon].iter().all(|b| *b == b' ') => {
                    let name = trim_blank_end(&content[..colon]);
                    out.push(Field {
                        name,
                        value: &raw[at + colon + 1..end],
                    });
                }
                _ => problems.push(Violation::BadField {
                    line: line_no,
                    text: String::from_utf8_lossy(content).into_owned(),
                }),
            }
        }
        at = end;
    }
    (out, None, problems)
}

/// Every violation of SES's rules in `raw`; empty when SES would accept it.
pub fn validate(raw: &[u8]) -> Vec<Violation> {
    let mut v = content_limits(raw);
    v.extend(header_rules(raw));
    v
}

/// What the content itself breaks, however it is written: its size once base64-encoded, and
/// attachment types SES refuses (one MIME parse, skipped when the size already rules it out).
/// What a digest is for ([`Violation::is_content_limit`]).
pub fn content_limits(raw: &[u8]) -> Vec<Violation> {
    if encoded_size(raw.len()) > MAX_MESSAGE_BYTES {
        return vec![Violation::TooLarge { bytes: raw.len() }];
    }
    blocked_attachments(raw)
        .into_iter()
        .map(|name| Violation::BlockedAttachment { name })
        .collect()
}

/// The header and line rules: what the way a message is written breaks, and another way of
/// writing it (the attachment mode) can mend.
pub fn header_rules(raw: &[u8]) -> Vec<Violation> {
    let mut v = Vec::new();
    let (fields, body, problems) = fields(raw);
    v.extend(problems);
    if body.is_none() {
        v.push(Violation::NoBody);
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for f in &fields {
        let name = String::from_utf8_lossy(f.name).into_owned();
        if !f.name.iter().all(|b| (33..=126).contains(b)) {
            v.push(Violation::BadName { name: name.clone() });
        }
        if !f.value.is_ascii() {
            v.push(Violation::NonAscii { name: name.clone() });
        }
        match counts
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(&name))
        {
            Some((_, c)) => *c += 1,
            None => counts.push((name, 1)),
        }
    }
    for (name, count) in &counts {
        if *count > 1 && is_single_occurrence(name) {
            v.push(Violation::Repeated {
                name: name.clone(),
                count: *count,
            });
        }
    }
    for required in REQUIRED {
        if !counts.iter().any(|(n, _)| n.eq_ignore_ascii_case(required)) {
            v.push(Violation::Missing { name: required });
        }
    }
    let mut bad_end = None;
    for (i, line) in raw.split_inclusive(|&b| b == b'\n').enumerate() {
        let bytes = trim_eol(line).len() + 2;
        if bytes > MAX_LINE_BYTES {
            v.push(Violation::LongLine { line: i + 1, bytes });
        }
        let content = line.strip_suffix(b"\r\n").unwrap_or(line);
        if bad_end.is_none() && (content.contains(&b'\r') || content.ends_with(b"\n")) {
            bad_end = Some(i + 1);
        }
    }
    if let Some(line) = bad_end {
        v.push(Violation::LineEnd { line });
    }
    v
}

/// [`validate`], plus: the `From` address must be `identity` itself or at the domain `identity`
/// (SES sends only from verified identities).
pub fn validate_for(raw: &[u8], identity: &str) -> Vec<Violation> {
    let mut v = content_limits(raw);
    v.extend(header_rules_for(raw, identity));
    v
}

/// [`header_rules`] and the `From` rule of [`validate_for`].
pub fn header_rules_for(raw: &[u8], identity: &str) -> Vec<Violation> {
    let mut v = header_rules(raw);
    let (fields, _, _) = fields(raw);
    let identity = identity.trim().to_ascii_lowercase();
    if let Some(from) = fields.iter().find(|f| f.name.eq_ignore_ascii_case(b"From")) {
        let text = String::from_utf8_lossy(from.value);
        let addr = angle_address(&text).to_ascii_lowercase();
        let ok = if identity.contains('@') {
            addr == identity
        } else {
            addr.rsplit_once('@').is_some_and(|(_, d)| d == identity)
        };
        if !ok {
            v.push(Violation::UnverifiedFrom {
                from: addr,
                identity,
            });
        }
    }
    v
}

/// The address in `... <addr>`, or the whole trimmed value.
fn angle_address(value: &str) -> String {
    let unfolded: String = value.split(['\r', '\n']).collect::<Vec<_>>().join("");
    match (unfolded.rfind('<'), unfolded.rfind('>')) {
        (Some(a), Some(b)) if b > a => unfolded[a + 1..b].trim().to_string(),
        _ => unfolded.trim().to_string(),
    }
}

fn memchr_nl(s: &[u8]) -> Option<usize> {
    s.iter().position(|&b| b == b'\n')
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_blank_end(s: &[u8]) -> &[u8] {
    let mut end = s.len();
    while end > 0 && matches!(s[end - 1], b' ' | b'\t') {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const OK: &[u8] = b"From: a@example.com\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\n\
                        Subject: hi\r\n  folded\r\n\r\nbody\r\n";

    #[test]
    fn sixty_single_occurrence_fields() {
        assert_eq!(SINGLE_OCCURRENCE.len(), 60);
        assert!(is_single_occurrence("dkim-signature"));
        assert!(is_single_occurrence(" Delivered-To"));
        assert!(!is_single_occurrence("Received"));
    }

    #[test]
    fn a_plain_message_passes() {
        assert_eq!(validate(OK), vec![]);
        assert_eq!(validate_for(OK, "example.com"), vec![]);
        assert_eq!(validate_for(OK, "a@example.com"), vec![]);
    }

    #[test]
    fn each_rule_is_caught() {
        let dup = b"From: a@x.com\r\nDate: x\r\nDKIM-Signature: a\r\ndkim-signature: b\r\n\r\n";
        assert_eq!(
            validate(dup),
            vec![Violation::Repeated {
                name: "DKIM-Signature".into(),
                count: 2
            }]
        );
        let empty_name = b"From: a@x.com\r\nDate: x\r\n: value\r\n\r\n";
        assert!(matches!(
            validate(empty_name)[0],
            Violation::BadField { line: 3, .. }
        ));
        let eight_bit = "From: a@x.com\r\nDate: x\r\nSubject: café\r\n\r\n";
        assert_eq!(
            validate(eight_bit.as_bytes()),
            vec![Violation::NonAscii {
                name: "Subject".into()
            }]
        );
        let no_body = b"From: a@x.com\r\nDate: x\r\n";
        assert_eq!(validate(no_body), vec![Violation::NoBody]);
        let missing = b"Subject: x\r\n\r\n";
        assert_eq!(validate(missing).len(), 2);
        let mut long = b"From: a@x.com\r\nDate: x\r\n\r\n".to_vec();
        long.extend(std::iter::repeat_n(b'a', 999));
        long.extend(b"\r\n");
        assert_eq!(
            validate(&long),
            vec![Violation::LongLine {
                line: 4,
                bytes: 1001
            }]
        );
        let v = validate_for(OK, "other.org");
        assert!(matches!(v[0], Violation::UnverifiedFrom { .. }), "{v:?}");
        let v = validate_for(b"From: \"Eve\" <eve@x.com>\r\nDate: x\r\n\r\n", "x.com");
        assert_eq!(v, vec![]);
        for bad in [
            &b"From: a@x.com\r\nDate: x\n\r\n"[..],
            b"From: a@x.com\rFrom: b\r\nDate: x\r\n\r\n",
        ] {
            assert!(
                validate(bad)
                    .iter()
                    .any(|v| matches!(v, Violation::LineEnd { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn fields_join_continuations_and_find_the_body() {
        let (f, body, problems) = fields(OK);
        assert_eq!(f.len(), 3);
        assert_eq!(f[2].value, b" hi\r\n  folded\r\n");
        assert_eq!(&OK[body.unwrap()..], b"body\r\n");
        assert!(problems.is_empty());
        let (_, body, problems) = fields(b"  leading continuation\n\n");
        assert!(body.is_some());
        assert_eq!(problems.len(), 1);
    }
}
