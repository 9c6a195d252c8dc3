//! The `Content-Type` and `Content-Disposition` an attachment is stored with, and so served with
//! to whoever follows a presigned URL. Both come from the mail, so both are hostile: every writer
//! of an attachment (store, and api for the ones too large to go inline) takes them from here,
//! and they must agree, because whichever writes a key first is the one a conditional put keeps.
//!
//! Two rules. A header value is clean 7-bit text or it is not used: S3 refuses a request whose
//! headers carry 8-bit bytes, which would fail the whole write (a dead-lettered delivery, a
//! retried store) over one part's label. And anything a browser would run or render as a page is
//! served as a download: a presigned URL is on the bucket's S3 origin, where script from a
//! stranger's mail must never run.

use crate::email::{Attachment, Disposition};
use crate::layout;
use crate::ports::ObjectMeta;

/// What an attachment whose own type is unusable is stored as.
pub const FALLBACK_TYPE: &str = "application/octet-stream";

/// Types a browser runs, renders as a document, or treats as an archive of documents, beyond
/// what [`is_active`]'s substring rules already catch (`html`, `xml`, `svg`, `script`).
///
/// `application/pdf` is not here: browsers show PDFs in a viewer kept apart from the page's
/// origin, and a download only hands the file to a desktop reader that runs more of its active
/// content, not less. `text/vtt` is not either: a browser shows cues as text.
const ACTIVE_TYPES: &[&str] = &[
    // XSLT stylesheets turn a document into HTML.
    "text/xsl",
    // The legacy JavaScript types of the MIME Sniffing Standard the substring rules miss.
    "text/ecmascript",
    "application/ecmascript",
    "application/x-ecmascript",
    "text/x-ecmascript",
    "text/livescript",
    // Flash, where a plugin still plays it.
    "application/x-shockwave-flash",
    "application/futuresplash",
    "application/vnd.adobe.flash.movie",
];

/// True when a browser given `essence` (`type/subtype`, lowercase) inline could run it or show
/// it as a page. Overreaching costs a download instead of a preview; missing one costs script on
/// the bucket's origin, so the rules are broad: any subtype naming html, xml (every `+xml`
/// suffix: SVG, XHTML, RSS, Atom, XSLT, MathML), svg or script, every `multipart/*` (server push
/// with `x-mixed-replace`, MHTML with `related`) and `message/*` (MHTML), and the few types
/// `ACTIVE_TYPES` lists.
pub fn is_active(essence: &str) -> bool {
    let (kind, subtype) = essence.split_once('/').unwrap_or((essence, ""));
    kind == "multipart"
        || kind == "message"
        || ["html", "xml", "svg", "script"]
            .iter()
            .any(|word| subtype.contains(word))
        || ACTIVE_TYPES.contains(&essence)
}

/// RFC 2045 `token`: printable ASCII but space and the tspecials.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&b))
}

/// A parameter value: a token, or a quoted string of printable ASCII without `"` or `\` inside.
fn is_value(s: &str) -> bool {
    is_token(s)
        || s.strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .is_some_and(|inner| {
                inner
                    .bytes()
                    .all(|b| (b == b' ' || b.is_ascii_graphic()) && b != b'"' && b != b'\\')
            })
}

/// `type/subtype` (lowercased) with its parameters, when every part is a clean 7-bit token (or
/// a quoted parameter value); `None` for anything else: 8-bit bytes, control characters, a type
/// without a subtype, a parameter that is not `name=value`.
pub fn clean_content_type(raw: &str) -> Option<String> {
    let mut parts = raw.split(';');
    let (kind, subtype) = parts.next()?.trim().split_once('/')?;
    if !is_token(kind) || !is_token(subtype) {
        return None;
    }
    let mut out = format!("{kind}/{subtype}").to_ascii_lowercase();
    for param in parts {
        let param = param.trim();
        // `text/plain;` with nothing after the separator is harmless.
        if param.is_empty() {
            continue;
        }
        let (name, value) = param.split_once('=')?;
        let (name, value) = (name.trim(), value.trim());
        if !is_token(name) || !is_value(value) {
            return None;
        }
        out.push_str("; ");
        out.push_str(name);
        out.push('=');
        out.push_str(value);
    }
    Some(out)
}

/// The headers an attachment is stored and served with: its own type when that is clean (else
/// [`FALLBACK_TYPE`]), and the sender's disposition unless the content is active or of unknown
/// type, which is always a download.
pub fn attachment_meta(a: &Attachment) -> ObjectMeta {
    let (content_type, disposition) = match clean_content_type(&a.content_type) {
        Some(t) => {
            let essence = t.split(';').next().unwrap_or_default().to_string();
            let d = if is_active(&essence) {
                Disposition::Attachment
            } else {
                a.disposition
            };
            (t, d)
        }
        None => (FALLBACK_TYPE.to_string(), Disposition::Attachment),
    };
    ObjectMeta::new(content_type).with_disposition(content_disposition(
        disposition,
        &layout::segment(&a.safe_filename),
    ))
}

/// How the api function's decrypted copy of a raw message ([`layout::RAW_COPY`]) is served: as
/// the message it is, and, `message/*` being active, as a download.
pub fn raw_copy_meta() -> ObjectMeta {
    ObjectMeta::new("message/rfc822").with_disposition(content_disposition(
        Disposition::Attachment,
        layout::RAW_COPY,
    ))
}

/// `attachment; filename="ascii fallback"; filename*=UTF-8''percent-encoded` (RFC 6266, RFC
/// 8187): agents that read `filename*` get the name exactly, older ones a printable-ASCII copy.
pub fn content_disposition(disposition: Disposition, name: &str) -> String {
    let kind = match disposition {
        Disposition::Inline => "inline",
        Disposition::Attachment => "attachment",
    };
    // RFC 6266 §4.3: `%` in `filename` may be percent-decoded by some agents, and `\` and `"`
    // would end or escape the quoted string.
    let fallback: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '%')) || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        // RFC 8187 attr-char.
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(b as char);
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment(name: &str, content_type: &str, disposition: Disposition) -> Attachment {
        Attachment {
            index: 0,
            filename: Some(name.to_string()),
            safe_filename: name.to_string(),
            content_type: content_type.to_string(),
            size: 1,
            content_id: None,
            disposition,
            sha256: String::new(),
            message: None,
        }
    }

    fn served(content_type: &str, disposition: Disposition) -> (String, String) {
        let m = attachment_meta(&attachment("f", content_type, disposition));
        (m.content_type, m.content_disposition.unwrap_or_default())
    }

    #[test]
    fn dispositions_are_header_safe() {
        assert_eq!(
            content_disposition(Disposition::Attachment, "résumé \"v2\" 100%.pdf"),
            "attachment; filename=\"r_sum_ _v2_ 100_.pdf\"; \
             filename*=UTF-8''r%C3%A9sum%C3%A9%20%22v2%22%20100%25.pdf"
        );
        let m = attachment_meta(&attachment("a\r\nb.png", "image/png", Disposition::Inline));
        assert_eq!(m.content_type, "image/png");
        let d = m.content_disposition.expect("disposition");
        assert!(d.starts_with("inline; "), "{d}");
        assert!(d.bytes().all(|b| (0x20..0x7f).contains(&b)), "{d:?}");
    }

    #[test]
    fn active_content_is_never_inline() {
        for t in [
            "text/html",
            "application/xhtml+xml",
            "image/svg+xml",
            "application/xml",
            "text/xml",
            "application/rss+xml",
            "application/atom+xml",
            "application/xslt+xml",
            "text/xsl",
            "application/mathml+xml",
            "application/xml-dtd",
            "application/vnd.wap.xhtml+xml",
            "text/x-html",
            "application/javascript",
            "text/javascript",
            "application/x-javascript",
            "application/ecmascript",
            "text/ecmascript",
            "text/jscript",
            "text/livescript",
            "application/x-shockwave-flash",
            "application/futuresplash",
            "multipart/x-mixed-replace",
            "multipart/related",
            "message/rfc822",
            "TEXT/HTML",
            "text/html; charset=utf-8",
        ] {
            let (_, d) = served(t, Disposition::Inline);
            assert!(d.starts_with("attachment;"), "{t} served as {d}");
        }
        for t in [
            "image/png",
            "application/pdf",
            "text/plain",
            "video/mp4",
            "text/vtt",
        ] {
            let (ct, d) = served(t, Disposition::Inline);
            assert_eq!(ct, t);
            assert!(d.starts_with("inline;"), "{t} served as {d}");
        }
    }

    #[test]
    fn unclean_types_fall_back_to_a_download() {
        for t in [
            "tëxt/plain",
            "image/p\u{fffd}ng",
            "garbage",
            "",
            "text/",
            "/plain",
            "text/pl ain",
            "text/plain\r\nX-Injected: 1",
            "text/plain\0",
            "text/plain; charset=ütf-8",
            "text/plain; junk",
            "text/plain; a=\"b\\\"c\"",
            "text/plain; =x",
        ] {
            let (ct, d) = served(t, Disposition::Inline);
            assert_eq!(ct, FALLBACK_TYPE, "{t:?}");
            assert!(d.starts_with("attachment;"), "{t:?} served as {d}");
        }
        assert_eq!(
            clean_content_type(" Text/Plain ;charset=\"utf-8\"; format=flowed;").as_deref(),
            Some("text/plain; charset=\"utf-8\"; format=flowed")
        );
    }
}
