//! What SES knows that the MIME does not: the SMTP envelope and the receipt verdicts.

use super::{Address, Email, Envelope, Verdicts};
use crate::ses::{SesMessage, SesReceipt, Verdict};

impl Email {
    /// Fills the envelope, verdicts and mailbox hash from the SES event that delivered the mail.
    pub fn with_ses(mut self, ses: &SesMessage) -> Email {
        self.apply_ses(ses);
        self
    }

    /// In-place form of [`Email::with_ses`].
    ///
    /// `envelope.mailFrom` is `mail.source` (an empty string for the null sender of bounces);
    /// `envelope.recipients` is `receipt.recipients`, the envelope recipients this rule matched.
    /// The mailbox hash comes from the first envelope recipient with a `+tag`, else from To.
    pub fn apply_ses(&mut self, ses: &SesMessage) {
        let receipt = &ses.receipt;
        self.envelope = Envelope {
            mail_from: Some(ses.mail.source.clone()),
            recipients: receipt.recipients.clone(),
        };
        self.verdicts = Some(Verdicts::from_receipt(receipt));
        self.mailbox_hash = mailbox_hash(receipt.recipients.iter().map(String::as_str))
            .or_else(|| header_mailbox_hash(&self.to, &self.cc, &self.bcc));
    }
}

impl Verdicts {
    /// SES's receipt verdicts in the model's shape: each status as SES spells it, absent when
    /// SES sent none. Every function that reports verdicts (the email model, api's webhook
    /// context, fanout's summary) goes through here so they cannot disagree.
    pub fn from_receipt(receipt: &SesReceipt) -> Verdicts {
        let s = |v: Option<&Verdict>| v.map(|v| v.as_str().to_string());
        Verdicts {
            spam: s(receipt.spam()),
            virus: s(receipt.virus()),
            spf: s(receipt.spf()),
            dkim: s(receipt.dkim()),
            dmarc: s(receipt.dmarc()),
            dmarc_policy: receipt
                .dmarc_policy
                .as_ref()
                .map(|p| p.as_str().to_string()),
        }
    }
}

/// Without an envelope: the first tagged address in To, then Cc, then Bcc (Bcc-only mail).
pub(crate) fn header_mailbox_hash(
    to: &[Address],
    cc: &[Address],
    bcc: &[Address],
) -> Option<String> {
    mailbox_hash(to.iter().chain(cc).chain(bcc).map(|a| a.address.as_str()))
}

/// The `+tag` of the first address that has a non-empty one (`inbox+orders@x` → `orders`).
pub fn mailbox_hash<'a>(addresses: impl IntoIterator<Item = &'a str>) -> Option<String> {
    addresses.into_iter().find_map(|address| {
        let local = address.rsplit_once('@').map_or(address, |(local, _)| local);
        let (_, tag) = local.split_once('+')?;
        (!tag.is_empty()).then(|| tag.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, SesEvent};

    #[test]
    fn mailbox_hash_takes_the_first_tag() {
        assert_eq!(mailbox_hash(["a@x", "b+t1@x", "c+t2@x"]), Some("t1".into()));
        assert_eq!(mailbox_hash(["a+@x", "plain@x"]), None);
        assert_eq!(mailbox_hash(["a+b+c@x"]), Some("b+c".into()));
    }

    #[test]
    fn ses_event_fills_envelope_verdicts_and_hash() {
        let event: SesEvent = match serde_json::from_str(
            r#"{"Records":[{"eventSource":"aws:ses","ses":{
                "mail":{"messageId":"m1","source":"bounce@sender.example","destination":["to+hdr@example.com"]},
                "receipt":{"recipients":["inbox+orders@example.com"],
                  "spamVerdict":{"status":"PASS"},"virusVerdict":{"status":"PASS"},
                  "spfVerdict":{"status":"FAIL"},"dkimVerdict":{"status":"GRAY"},
                  "dmarcVerdict":{"status":"FAIL"},"dmarcPolicy":"reject","action":{"type":"Lambda"}}}}]}"#,
        ) {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        };
        let raw = b"From: a@b.example\r\nTo: to+hdr@example.com\r\n\r\nhi\r\n";
        let parsed = match Email::parse(raw, &Limits::default()) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(parsed.email.mailbox_hash.as_deref(), Some("hdr"));
        let email = parsed.email.with_ses(&event.records[0].ses);
        assert_eq!(
            email.envelope.mail_from.as_deref(),
            Some("bounce@sender.example")
        );
        assert_eq!(email.envelope.recipients, vec!["inbox+orders@example.com"]);
        assert_eq!(email.mailbox_hash.as_deref(), Some("orders"));
        let v = email.verdicts.unwrap_or_default();
        assert_eq!(v.spf.as_deref(), Some("FAIL"));
        assert_eq!(v.dkim.as_deref(), Some("GRAY"));
        assert_eq!(v.dmarc_policy.as_deref(), Some("reject"));
    }
}
