//! What SES does to a message before any rule runs: assign a messageId, prepend its own
//! headers, and describe the mail as the `ses.mail` object every action event carries
//! (docs/ses.md §1.2).

use mailroom::ses::{CommonHeaders, DmarcPolicy, SesHeader, SesMail, Verdict};
use rand::Rng;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};

/// SES truncates the `headers` list of notifications above 10 KB (docs/ses.md §7.1).
pub const HEADERS_LIMIT: usize = 10 * 1024;

/// A new SES-style messageId: 40 lowercase alphanumerics, as in current captures.
pub fn new_message_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..40)
        .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
        .collect()
}

/// The verdicts SES would compute. Locally they are inputs: PASS unless a run says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdicts {
    pub spam: Verdict,
    pub virus: Verdict,
    pub spf: Verdict,
    pub dkim: Verdict,
    pub dmarc: Verdict,
    /// Reported only when DMARC fails, as SES does.
    pub dmarc_policy: Option<DmarcPolicy>,
}

impl Default for Verdicts {
    fn default() -> Self {
        Verdicts {
            spam: Verdict::Pass,
            virus: Verdict::Pass,
            spf: Verdict::Pass,
            dkim: Verdict::Pass,
            dmarc: Verdict::Pass,
            dmarc_policy: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad verdict {item:?}: {reason}")]
pub struct VerdictError {
    pub item: String,
    pub reason: String,
}

impl Verdicts {
    /// Applies `spam=FAIL, dmarc=FAIL dmarc-policy=reject` style settings (comma or space separated).
    pub fn apply(&mut self, spec: &str) -> Result<(), VerdictError> {
        for item in spec
            .split(|c: char| c == ',' || c == ';' || c.is_whitespace())
            .filter(|s| !s.is_empty())
        {
            let err = |reason: &str| VerdictError {
                item: item.to_string(),
                reason: reason.to_string(),
            };
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| err("expected name=VALUE"))?;
            let key = key.trim().to_ascii_lowercase().replace('_', "-");
            let value = value.trim();
            if key == "dmarc-policy" {
                self.dmarc_policy = match DmarcPolicy::parse(value) {
                    DmarcPolicy::Other(_) => {
                        return Err(err("dmarc-policy is none, quarantine or reject"));
                    }
                    p => Some(p),
                };
                continue;
            }
            let verdict = match Verdict::parse(value) {
                Verdict::Other(_) => {
                    return Err(err(
                        "verdicts are PASS, FAIL, GRAY, PROCESSING_FAILED or DISABLED",
                    ));
                }
                v => v,
            };
            match key.as_str() {
                "spam" => self.spam = verdict,
                "virus" => self.virus = verdict,
                "spf" => self.spf = verdict,
                "dkim" => self.dkim = verdict,
                "dmarc" => self.dmarc = verdict,
                _ => {
                    return Err(err(
                        "names are spam, virus, spf, dkim, dmarc and dmarc-policy",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The policy as SES reports it: only next to a failed DMARC verdict.
    pub fn reported_dmarc_policy(&self) -> Option<DmarcPolicy> {
        if self.dmarc == Verdict::Fail {
            Some(self.dmarc_policy.clone().unwrap_or(DmarcPolicy::None))
        } else {
            None
        }
    }
}

/// The SMTP facts about one received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// MAIL FROM without `<>`; empty for the null sender.
    pub mail_from: String,
    /// RCPT TO addresses in the order given.
    pub recipients: Vec<String>,
    /// The client's HELO/EHLO name.
    pub helo: String,
    /// The client's IP address.
    pub client_ip: String,
    /// Whether the message came over TLS (STARTTLS).
    pub tls: bool,
}

/// `2025-01-15T10:00:02.028Z`, the form of every SES timestamp.
pub fn iso_millis(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t
        .replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .unwrap_or(t);
    let s = t.format(&Rfc3339).unwrap_or_default();
    // Rfc3339 drops a zero fraction; SES always prints three digits.
    if s.contains('.') {
        s
    } else {
        s.replacen('Z', ".000Z", 1)
    }
}

/// `text` with every control character (CR, LF, NUL, ESC, DEL, C1) replaced by `?`: safe in a
/// header field, a reply line or on a terminal.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The headers SES prepends, in SES's order (docs/ses.md §1.2). `X-SES-DKIM-SIGNATURE` is left
/// out: it is SES's own signature, which nothing local can produce.
pub fn prepended_headers(
    message_id: &str,
    envelope: &Envelope,
    verdicts: &Verdicts,
    scanned: bool,
    header_from_domain: Option<&str>,
    region: &str,
    received_at: OffsetDateTime,
) -> Vec<SesHeader> {
    let h = |name: &str, value: String| SesHeader {
        name: name.to_string(),
        value,
    };
    // The envelope comes from the client: a CR or LF in it would start a header of its own.
    let from = &printable(&envelope.mail_from);
    let helo = if envelope.helo.is_empty() {
        "unknown".to_string()
    } else {
        printable(&envelope.helo)
    };
    let helo = helo.as_str();
    let ip = &printable(&envelope.client_ip);
    let first_rcpt = &printable(envelope.recipients.first().map_or("", String::as_str));
    let date = received_at
        .to_offset(time::UtcOffset::UTC)
        .format(&Rfc2822)
        .unwrap_or_default();
    let (spam, virus) = if scanned {
        (verdicts.spam.clone(), verdicts.virus.clone())
    } else {
        (Verdict::Disabled, Verdict::Disabled)
    };
    let sender_domain = super::recipients::domain_of(from).unwrap_or_else(|| helo.to_string());
    let spf = verdicts.spf.as_str().to_ascii_lowercase();
    let spf_text = format!(
        "{spf} (spfCheck: domain of {sender_domain} checked locally by mailroom) client-ip={ip}; envelope-from={from}; helo={helo};"
    );
    let dmarc_from = &printable(header_from_domain.unwrap_or(&sender_domain));
    let receipt = serde_json::json!({
        "emulator": "mailroom",
        "messageId": message_id,
        "receivedAt": iso_millis(received_at),
    });
    vec![
        h("Return-Path", format!("<{from}>")),
        h(
            "Received",
            format!(
                "from {helo} ({helo} [{ip}]) by inbound-smtp.{region}.amazonaws.com with SMTP id {message_id} for {first_rcpt}; {date}"
            ),
        ),
        h("X-SES-Spam-Verdict", spam.to_string()),
        h("X-SES-Virus-Verdict", virus.to_string()),
        h("Received-SPF", spf_text.clone()),
        h(
            "Authentication-Results",
            format!(
                "amazonses.com; spf={spf_text} dkim={} header.i=@{dmarc_from}; dmarc={} header.from={dmarc_from};",
                verdicts.dkim.as_str().to_ascii_lowercase(),
                verdicts.dmarc.as_str().to_ascii_lowercase(),
            ),
        ),
        h(
            "X-SES-RECEIPT",
            base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                receipt.to_string(),
            ),
        ),
    ]
}

/// Splits raw MIME into its header fields (unfolded) and the offset where the body starts.
///
/// Tolerates LF-only line ends and a message with no body. A line in the header block that is
/// neither a field nor a continuation ends the header block, as mail parsers do.
pub fn split_headers(raw: &[u8]) -> (Vec<SesHeader>, usize) {
    let mut headers: Vec<SesHeader> = Vec::new();
    let mut pos = 0;
    while pos < raw.len() {
        let end = raw[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |i| pos + i + 1);
        let line = &raw[pos..end];
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            return (headers, end);
        }
        if text.starts_with([' ', '\t']) {
            match headers.last_mut() {
                Some(last) => {
                    // Unfolding removes the line break and keeps the whitespace (RFC 5322 §2.2.3).
                    last.value.push_str(text);
                }
                None => return (headers, pos),
            }
        } else if let Some((name, value)) = text.split_once(':') {
            if name.is_empty() || name.contains([' ', '\t']) {
                return (headers, pos);
            }
            headers.push(SesHeader {
                name: name.to_string(),
                value: value.trim_start().to_string(),
            });
        } else {
            return (headers, pos);
        }
        pos = end;
    }
    (headers, raw.len())
}

/// Renders header fields as a header block (CRLF line ends) to put in front of a message.
pub fn render_headers(headers: &[SesHeader]) -> Vec<u8> {
    let mut out = Vec::new();
    for h in headers {
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Splits an address-list header value at top-level commas (not inside quotes, `<>` or comments).
pub fn split_address_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let (mut quoted, mut angle, mut comment, mut escaped) = (false, 0u32, 0u32, false);
    for c in value.chars() {
        if escaped {
            escaped = false;
            current.push(c);
            continue;
        }
        match c {
            '\\' if quoted || comment > 0 => escaped = true,
            '"' if comment == 0 => quoted = !quoted,
            '<' if !quoted && comment == 0 => angle += 1,
            '>' if !quoted && comment == 0 => angle = angle.saturating_sub(1),
            '(' if !quoted => comment += 1,
            ')' if !quoted => comment = comment.saturating_sub(1),
            ',' if !quoted && angle == 0 && comment == 0 => {
                let item = current.trim();
                if !item.is_empty() {
                    out.push(item.to_string());
                }
                current.clear();
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    let item = current.trim();
    if !item.is_empty() {
        out.push(item.to_string());
    }
    out
}

/// The bare address of a mailbox (`Name <a@b>` → `a@b`).
pub fn bare_address(mailbox: &str) -> String {
    let m = mailbox.trim();
    match (m.rfind('<'), m.rfind('>')) {
        (Some(start), Some(end)) if start < end => m[start + 1..end].trim().to_string(),
        _ => m.trim_matches(['<', '>']).trim().to_string(),
    }
}

/// `ses.mail` for a message whose headers (SES's prepended ones first) are `headers`.
pub fn ses_mail(
    message_id: &str,
    mail_from: &str,
    headers: &[SesHeader],
    received_at: OffsetDateTime,
) -> SesMail {
    let mut common = CommonHeaders::default();
    let mut destination = Vec::new();
    let first = |name: &str| {
        headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.trim().to_string())
    };
    let list = |name: &str| {
        let all: Vec<String> = headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| split_address_list(&h.value))
            .collect();
        (!all.is_empty()).then_some(all)
    };
    common.return_path = first("Return-Path").map(|v| bare_address(&v));
    common.from = list("From");
    common.sender = list("Sender");
    common.reply_to = list("Reply-To");
    common.date = first("Date");
    common.to = list("To");
    common.cc = list("Cc");
    common.bcc = list("Bcc");
    common.message_id = first("Message-ID");
    common.subject = first("Subject");
    for addr in common.to.iter().flatten().chain(common.cc.iter().flatten()) {
        let bare = bare_address(addr);
        if !bare.is_empty() && !destination.contains(&bare) {
            destination.push(bare);
        }
    }
    let (headers, truncated) = truncate_headers(headers);
    SesMail {
        timestamp: iso_millis(received_at),
        source: mail_from.to_string(),
        message_id: message_id.to_string(),
        destination,
        headers_truncated: truncated,
        headers,
        common_headers: common,
    }
}

/// Keeps whole headers, in order, while they fit in [`HEADERS_LIMIT`]; flags the cut.
fn truncate_headers(headers: &[SesHeader]) -> (Vec<SesHeader>, bool) {
    let mut size = 0;
    let mut kept = Vec::new();
    for h in headers {
        size += h.name.len() + h.value.len() + 4;
        if size > HEADERS_LIMIT {
            return (kept, true);
        }
        kept.push(h.clone());
    }
    (kept, false)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_look_like_ses() {
        let a = new_message_id();
        assert_eq!(a.len(), 40);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
        assert_ne!(a, new_message_id());
    }

    #[test]
    fn a_message_at_the_ses_limit_still_parses_once_ses_headers_are_prepended() {
        // Every part of the prepended headers the sender controls, as long as SMTP allows.
        let long = format!("{}@{}.example.com", "l".repeat(64), "d".repeat(180));
        let envelope = Envelope {
            mail_from: long.clone(),
            recipients: vec![long.clone(); 50],
            helo: "h".repeat(255),
            client_ip: "203.0.113.7".into(),
            tls: true,
        };
        let prepended = prepended_headers(
            &new_message_id(),
            &envelope,
            &Verdicts::default(),
            true,
            Some("d".repeat(253).as_str()),
            "us-east-1",
            OffsetDateTime::now_utc(),
        );
        let stored = render_headers(&prepended).len() + crate::MAX_MESSAGE_BYTES;
        assert!(
            stored <= mailroom::Limits::default().max_size,
            "{stored} bytes in S3 would be refused by the functions' default limit"
        );
    }

    #[test]
    fn verdict_specs() {
        let mut v = Verdicts::default();
        v.apply("spam=FAIL, dmarc=fail dmarc-policy=reject;virus=gray")
            .unwrap();
        assert_eq!(v.spam, Verdict::Fail);
        assert_eq!(v.virus, Verdict::Gray);
        assert_eq!(v.spf, Verdict::Pass);
        assert_eq!(v.reported_dmarc_policy(), Some(DmarcPolicy::Reject));
        assert!(v.apply("spam").is_err());
        assert!(v.apply("ham=PASS").is_err());
        assert!(v.apply("spam=MAYBE").is_err());
        assert!(v.apply("dmarc-policy=strict").is_err());
        let mut p = Verdicts::default();
        p.apply("dmarc-policy=reject").unwrap();
        assert_eq!(p.reported_dmarc_policy(), None, "only reported on FAIL");
    }

    #[test]
    fn headers_unfold_and_stop_at_the_body() {
        let raw = b"From: A <a@x.org>\r\nSubject: one\r\n two\r\nTo: b@y.com,\r\n\t\"C, D\" <c@y.com>\r\n\r\nBody: not a header\r\n";
        let (h, body) = split_headers(raw);
        assert_eq!(h.len(), 3);
        assert_eq!(h[1].value, "one two");
        assert_eq!(h[2].value, "b@y.com,\t\"C, D\" <c@y.com>");
        assert_eq!(&raw[body..], b"Body: not a header\r\n");
        let (h, body) = split_headers(b"Subject: lf only\n\nbody");
        assert_eq!(h[0].value, "lf only");
        assert_eq!(body, 18);
    }

    #[test]
    fn address_lists_split_at_top_level_commas() {
        assert_eq!(
            split_address_list("\"Doe, J\" <j@x.org>, b@y.com (Bob, jr), <c@z.net>"),
            vec!["\"Doe, J\" <j@x.org>", "b@y.com (Bob, jr)", "<c@z.net>"]
        );
        assert_eq!(bare_address("\"Doe, J\" <j@x.org>"), "j@x.org");
        assert_eq!(bare_address("b@y.com"), "b@y.com");
    }

    #[test]
    fn ses_mail_has_only_present_common_headers() {
        let t = time::macros::datetime!(2025-01-15 10:00:02.028 UTC);
        let (headers, _) = split_headers(
            b"Return-Path: <s@x.org>\r\nFrom: S <s@x.org>\r\nTo: a@y.com, B <b@y.com>\r\nCc: c@y.com\r\nSubject: Hi\r\n\r\n",
        );
        let mail = ses_mail("m1", "s@x.org", &headers, t);
        assert_eq!(mail.timestamp, "2025-01-15T10:00:02.028Z");
        assert_eq!(mail.destination, vec!["a@y.com", "b@y.com", "c@y.com"]);
        let json = serde_json::to_value(&mail.common_headers).unwrap();
        let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
        assert_eq!(keys, vec!["cc", "from", "returnPath", "subject", "to"]);
        assert_eq!(json["returnPath"], "s@x.org");
        assert!(!mail.headers_truncated);
    }

    #[test]
    fn long_header_blocks_are_truncated_and_flagged() {
        let headers: Vec<SesHeader> = (0..200)
            .map(|i| SesHeader {
                name: format!("X-Filler-{i}"),
                value: "v".repeat(100),
            })
            .collect();
        let mail = ses_mail("m", "", &headers, OffsetDateTime::UNIX_EPOCH);
        assert!(mail.headers_truncated);
        assert!(!mail.headers.is_empty() && mail.headers.len() < 200);
    }

    #[test]
    fn timestamps_always_have_three_fraction_digits() {
        assert_eq!(
            iso_millis(time::macros::datetime!(2025-01-15 10:00:02 UTC)),
            "2025-01-15T10:00:02.000Z"
        );
        assert_eq!(
            iso_millis(time::macros::datetime!(2025-01-15 10:00:02.123456 UTC)),
            "2025-01-15T10:00:02.123Z"
        );
    }

    /// What SES prepends for a message with this envelope, unscanned, at the epoch.
    fn prepended_for(
        from: &str,
        to: &str,
        helo: &str,
        from_domain: Option<&str>,
    ) -> Vec<SesHeader> {
        let env = Envelope {
            mail_from: from.into(),
            recipients: vec![to.into()],
            helo: helo.into(),
            client_ip: "127.0.0.1".into(),
            tls: false,
        };
        prepended_headers(
            "mid",
            &env,
            &Verdicts::default(),
            false,
            from_domain,
            "us-east-1",
            OffsetDateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn prepended_headers_in_ses_order() {
        let h = prepended_for("s@x.org", "a@y.com", "mx.x.org", Some("x.org"));
        let names: Vec<&str> = h.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "Return-Path",
                "Received",
                "X-SES-Spam-Verdict",
                "X-SES-Virus-Verdict",
                "Received-SPF",
                "Authentication-Results",
                "X-SES-RECEIPT"
            ]
        );
        assert_eq!(h[0].value, "<s@x.org>");
        assert!(
            h[1].value
                .contains("by inbound-smtp.us-east-1.amazonaws.com with SMTP id mid for a@y.com;")
        );
        assert_eq!(h[2].value, "DISABLED", "scan off");
        assert!(h[5].value.contains("dmarc=pass header.from=x.org;"));
    }

    #[test]
    fn no_envelope_value_starts_a_header_of_its_own() {
        let h = prepended_for(
            "s\x1b[31m@x.org",
            "a\0@y.com",
            "mx\rInjected: yes\nX: \u{85}",
            None,
        );
        for field in &h {
            assert!(
                !field.value.chars().any(char::is_control),
                "{}: {:?}",
                field.name,
                field.value
            );
        }
        assert!(
            h[1].value
                .starts_with("from mx?Injected: yes?X: ? (mx?Injected")
        );
        assert_eq!(h[0].value, "<s?[31m@x.org>");
    }
}
