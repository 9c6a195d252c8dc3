//! The SES receipt event as SES really sends it (see docs/ses.md §1 and §3).
//!
//! These types are our own rather than `aws_lambda_events`' because real payloads break the
//! stricter upstream ones: Bcc-only mail has no `commonHeaders.to`, `messageId` can be missing,
//! verdict strings grow new values, and the S3 action reports `objectKeyPrefix`. Every optional
//! field is `Option`, unknown verdicts deserialize to [`Verdict::Other`] and unknown fields are
//! ignored, so an odd event degrades instead of failing the invocation.

use serde::{Deserialize, Serialize};

/// The object SES writes to a bucket when a rule with an S3 action is created or updated.
pub const SETUP_NOTIFICATION: &str = "AMAZON_SES_SETUP_NOTIFICATION";

/// `{"Records":[{"eventSource":"aws:ses","ses":{"mail":…,"receipt":…}}]}`: the Lambda action event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SesEvent {
    #[serde(rename = "Records", default)]
    pub records: Vec<SesRecord>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SesRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_version: Option<String>,
    pub ses: SesMessage,
}

/// `mail` and `receipt`, shared by the Lambda event and the SNS notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SesMessage {
    pub mail: SesMail,
    pub receipt: SesReceipt,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SesMail {
    /// When SES received the message (ISO-8601 with milliseconds).
    #[serde(default)]
    pub timestamp: String,
    /// Envelope MAIL FROM, bare (no `<>`); empty for the null sender.
    #[serde(default)]
    pub source: String,
    /// SES's message id: also the S3 object key after the rule's prefix.
    pub message_id: String,
    /// Addresses from the To/Cc headers, not the envelope: route on `receipt.recipients`.
    #[serde(default)]
    pub destination: Vec<String>,
    #[serde(default)]
    pub headers_truncated: bool,
    #[serde(default)]
    pub headers: Vec<SesHeader>,
    #[serde(default)]
    pub common_headers: CommonHeaders,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SesHeader {
    pub name: String,
    pub value: String,
}

/// Only the keys whose headers exist in the mail are present; every one is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommonHeaders {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "reply-to")]
    pub reply_to: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bcc: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SesReceipt {
    #[serde(default)]
    pub timestamp: String,
    /// A JSON number in every real payload, although the docs say "String".
    #[serde(default, deserialize_with = "number_or_string")]
    pub processing_time_millis: u64,
    /// The envelope recipients that the rule running this action matched.
    #[serde(default)]
    pub recipients: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spam_verdict: Option<VerdictStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virus_verdict: Option<VerdictStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spf_verdict: Option<VerdictStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim_verdict: Option<VerdictStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmarc_verdict: Option<VerdictStatus>,
    /// Present only when DMARC failed; lowercase `none` | `quarantine` | `reject`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dmarc_policy: Option<DmarcPolicy>,
    #[serde(default)]
    pub action: ReceiptAction,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictStatus {
    pub status: Verdict,
}

/// A verdict status. Unknown values are kept rather than rejected: policy decides what they mean.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Verdict {
    Pass,
    Fail,
    Gray,
    ProcessingFailed,
    Disabled,
    Other(String),
}

impl Verdict {
    pub fn as_str(&self) -> &str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Gray => "GRAY",
            Verdict::ProcessingFailed => "PROCESSING_FAILED",
            Verdict::Disabled => "DISABLED",
            Verdict::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> Verdict {
        match s.trim().to_ascii_uppercase().as_str() {
            "PASS" => Verdict::Pass,
            "FAIL" => Verdict::Fail,
            "GRAY" | "GREY" => Verdict::Gray,
            "PROCESSING_FAILED" => Verdict::ProcessingFailed,
            "DISABLED" => Verdict::Disabled,
            _ => Verdict::Other(s.to_string()),
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Verdict {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Verdict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Verdict::parse(&s))
    }
}

/// The sender domain's DMARC policy, reported by SES only when DMARC failed.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
    Other(String),
}

impl DmarcPolicy {
    pub fn as_str(&self) -> &str {
        match self {
            DmarcPolicy::None => "none",
            DmarcPolicy::Quarantine => "quarantine",
            DmarcPolicy::Reject => "reject",
            DmarcPolicy::Other(s) => s,
        }
    }

    pub fn parse(s: &str) -> DmarcPolicy {
        match s.trim().to_ascii_lowercase().as_str() {
            "none" => DmarcPolicy::None,
            "quarantine" => DmarcPolicy::Quarantine,
            "reject" => DmarcPolicy::Reject,
            _ => DmarcPolicy::Other(s.to_string()),
        }
    }
}

impl Serialize for DmarcPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for DmarcPolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // AWS's own example reads `.status`; accept that shape too rather than failing the event.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Plain(String),
            Wrapped { status: String },
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Plain(s) | Raw::Wrapped { status: s } => DmarcPolicy::parse(&s),
        })
    }
}

/// `receipt.action`: a flat union over the action types (docs/ses.md §3.1).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptAction {
    #[serde(rename = "type", default)]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_key_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_reply_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization_arn: Option<String>,
}

/// The SNS notification body (the SNS `Message` string, parsed again): `content` only for the SNS action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SesNotification {
    #[serde(default)]
    pub notification_type: String,
    pub mail: SesMail,
    pub receipt: SesReceipt,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// What a RequestResponse function returns to steer the rule set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Disposition {
    Continue,
    StopRule,
    StopRuleSet,
}

impl Disposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Disposition::Continue => "CONTINUE",
            Disposition::StopRule => "STOP_RULE",
            Disposition::StopRuleSet => "STOP_RULE_SET",
        }
    }

    /// SES treats anything it does not recognise (or nothing) as CONTINUE; case is ignored.
    pub fn parse_lenient(s: Option<&str>) -> Disposition {
        match s.map(|s| s.trim().to_ascii_uppercase()) {
            Some(s) if s == "STOP_RULE" => Disposition::StopRule,
            Some(s) if s == "STOP_RULE_SET" => Disposition::StopRuleSet,
            _ => Disposition::Continue,
        }
    }
}

/// `{"disposition":"STOP_RULE_SET"}`: always emitted uppercase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispositionResponse {
    pub disposition: String,
}

impl From<Disposition> for DispositionResponse {
    fn from(d: Disposition) -> Self {
        DispositionResponse {
            disposition: d.as_str().to_string(),
        }
    }
}

impl SesReceipt {
    pub fn spam(&self) -> Option<&Verdict> {
        self.spam_verdict.as_ref().map(|v| &v.status)
    }
    pub fn virus(&self) -> Option<&Verdict> {
        self.virus_verdict.as_ref().map(|v| &v.status)
    }
    pub fn spf(&self) -> Option<&Verdict> {
        self.spf_verdict.as_ref().map(|v| &v.status)
    }
    pub fn dkim(&self) -> Option<&Verdict> {
        self.dkim_verdict.as_ref().map(|v| &v.status)
    }
    pub fn dmarc(&self) -> Option<&Verdict> {
        self.dmarc_verdict.as_ref().map(|v| &v.status)
    }
}

/// Where the rule's S3 action stored the raw message: `prefix + messageId`.
///
/// docs/ses.md §3.3: whether SES inserts a `/` after a prefix without one is unconfirmed; the
/// observed capture (prefix `a/b`, key `a/b/<id>`) says it does, so we follow that reading.
pub fn raw_object_key(prefix: &str, message_id: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        message_id.to_string()
    } else {
        format!("{prefix}/{message_id}")
    }
}

/// True for the probe object/notification SES sends when a rule is created.
pub fn is_setup_notification(message_id_or_key: &str) -> bool {
    message_id_or_key.ends_with(SETUP_NOTIFICATION)
}

fn number_or_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        F(f64),
        S(String),
        Null,
    }
    Ok(match Raw::deserialize(d)? {
        Raw::N(n) => n,
        Raw::F(f) if f.is_finite() && f >= 0.0 => f as u64,
        Raw::S(s) => s.trim().parse().unwrap_or(0),
        _ => 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bcc_only_mail_without_to_deserializes() {
        let json = r#"{"Records":[{"eventSource":"aws:ses","eventVersion":"1.0","ses":{
            "mail":{"timestamp":"2025-01-15T10:00:02.028Z","source":"a@example.net","messageId":"m1",
                    "destination":[],"headersTruncated":false,"headers":[],
                    "commonHeaders":{"from":["a@example.net"],"subject":"x"}},
            "receipt":{"timestamp":"2025-01-15T10:00:02.028Z","processingTimeMillis":"12",
                    "recipients":["b@example.com"],"spamVerdict":{"status":"PASS"},
                    "virusVerdict":{"status":"SOMETHING_NEW"},"dmarcVerdict":{"status":"FAIL"},
                    "dmarcPolicy":"reject","action":{"type":"Lambda","invocationType":"Event"}}}}]}"#;
        let ev: SesEvent = serde_json::from_str(json).expect("tolerant parse");
        let r = &ev.records[0].ses;
        assert_eq!(r.mail.common_headers.to, None);
        assert_eq!(r.receipt.processing_time_millis, 12);
        assert_eq!(
            r.receipt.virus(),
            Some(&Verdict::Other("SOMETHING_NEW".into()))
        );
        assert_eq!(r.receipt.spf(), None);
        assert_eq!(r.receipt.dmarc_policy, Some(DmarcPolicy::Reject));
    }

    #[test]
    fn disposition_is_case_insensitive_and_defaults_to_continue() {
        assert_eq!(
            Disposition::parse_lenient(Some("stop_rule_set")),
            Disposition::StopRuleSet
        );
        assert_eq!(
            Disposition::parse_lenient(Some("Stop_Rule")),
            Disposition::StopRule
        );
        assert_eq!(
            Disposition::parse_lenient(Some("bogus")),
            Disposition::Continue
        );
        assert_eq!(Disposition::parse_lenient(None), Disposition::Continue);
        let out =
            serde_json::to_string(&DispositionResponse::from(Disposition::StopRuleSet)).unwrap();
        assert_eq!(out, r#"{"disposition":"STOP_RULE_SET"}"#);
    }

    #[test]
    fn raw_key_follows_prefix_rules() {
        assert_eq!(raw_object_key("", "abc"), "abc");
        assert_eq!(raw_object_key("raw", "abc"), "raw/abc");
        assert_eq!(raw_object_key("raw/", "abc"), "raw/abc");
        assert!(is_setup_notification("raw/AMAZON_SES_SETUP_NOTIFICATION"));
    }
}
