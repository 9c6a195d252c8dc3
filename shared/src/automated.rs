//! Mail a machine sent: delivery reports, auto-replies, mail from a mailer-daemon. The bounce
//! function must not answer it (that is backscatter) and the forward function must not pass it
//! on (an auto-reply forwarded to an inbox that auto-replies starts a loop). Both read it from
//! the SES event alone: the envelope sender and `mail.headers` (docs/ses.md §1.2).

use crate::policy::{bare_address, strip_label};
use crate::ses::SesHeader;

/// Why the envelope sender is no person: the null sender or a mailer-daemon.
pub fn sender(source: &str) -> Option<String> {
    let source = source.trim();
    let Some(sender) = bare_address(source) else {
        return Some(format!("null or unusable envelope sender {source:?}"));
    };
    let local = sender.rsplit_once('@').map_or("", |(l, _)| strip_label(l));
    matches!(
        local,
        "mailer-daemon" | "mailer_daemon" | "mailerdaemon" | "postmaster"
    )
    .then(|| format!("envelope sender {sender} is a mailer-daemon"))
}

/// Why the header fields say a machine wrote the message: `Auto-Submitted` other than `no`
/// (RFC 3834), the de-facto auto-reply markers, or a delivery report.
pub fn headers(headers: &[SesHeader]) -> Option<String> {
    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |h| h.name.trim().eq_ignore_ascii_case(name))
            .map(|h| h.value.trim().to_ascii_lowercase())
    };
    if let Some(v) = values("auto-submitted").find(|v| {
        let kind = v.split(';').next().unwrap_or("").trim();
        kind != "no"
    }) {
        return Some(format!("Auto-Submitted: {v} (RFC 3834)"));
    }
    for marker in ["x-autoreply", "x-autorespond"] {
        if values(marker).next().is_some() {
            return Some(format!("{marker} is present: an auto-reply"));
        }
    }
    if let Some(v) = values("precedence").find(|v| v == "auto_reply") {
        return Some(format!("Precedence: {v}"));
    }
    if values("content-type").any(|v| v.starts_with("multipart/report")) {
        return Some("the message is a delivery report".to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(name: &str, value: &str) -> SesHeader {
        SesHeader {
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn machines_are_recognised() {
        assert!(sender("").is_some());
        assert!(sender("<>").is_some());
        assert!(sender("MAILER-DAEMON@mx.example.net").is_some());
        assert!(sender("postmaster+x@example.net").is_some());
        assert_eq!(sender("jane@example.net"), None);
        for hs in [
            vec![h("Auto-Submitted", "auto-replied")],
            vec![h("X-Autoreply", "yes")],
            vec![h("Precedence", "auto_reply")],
            vec![h(
                "Content-Type",
                "multipart/report; report-type=delivery-status",
            )],
        ] {
            assert!(headers(&hs).is_some(), "{hs:?}");
        }
        assert_eq!(
            headers(&[h("Auto-Submitted", "no"), h("Precedence", "list")]),
            None
        );
    }
}
