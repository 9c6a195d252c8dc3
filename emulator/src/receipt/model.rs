//! The receipt rule set as SES stores it (docs/ses.md §5.2, §6.1): rules in order, each with its
//! recipient conditions and its ordered actions. Built from `template.yaml` by the emulator, but
//! nothing here knows about templates.

use mailroom::ses::ReceiptAction;
use serde::Serialize;

/// SES's quota: at most 100 recipient conditions per rule (docs/ses.md §5.3).
pub const MAX_RECIPIENTS_PER_RULE: usize = 100;
/// SES's quota: at most 10 actions per rule (docs/ses.md §7.1).
pub const MAX_ACTIONS_PER_RULE: usize = 10;
/// SES's quota: at most 200 rules per rule set (docs/ses.md §7.1).
pub const MAX_RULES_PER_SET: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleSet {
    pub name: String,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub name: String,
    /// SES defaults this to `false`: a rule nobody enabled silently does nothing.
    pub enabled: bool,
    /// SES defaults this to `false`: without it spam and virus verdicts are `DISABLED`.
    pub scan_enabled: bool,
    pub tls_policy: TlsPolicy,
    /// Addresses, domains and leading-dot domains; empty matches every recipient.
    pub recipients: Vec<String>,
    pub actions: Vec<Action>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum TlsPolicy {
    #[default]
    Optional,
    Require,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum InvocationType {
    /// SES's default: fire and forget; the function's answer is ignored.
    #[default]
    Event,
    /// The function decides mail flow through its disposition (30 s limit).
    RequestResponse,
}

impl InvocationType {
    pub fn as_str(self) -> &'static str {
        match self {
            InvocationType::Event => "Event",
            InvocationType::RequestResponse => "RequestResponse",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub enum SnsEncoding {
    #[default]
    Utf8,
    Base64,
}

/// One receipt action. Exactly one per element of a rule's `Actions`, as in CloudFormation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type")]
pub enum Action {
    S3 {
        bucket: String,
        prefix: String,
        topic_arn: Option<String>,
        kms_key_arn: Option<String>,
    },
    Lambda {
        function_arn: String,
        invocation_type: InvocationType,
        topic_arn: Option<String>,
    },
    Sns {
        topic_arn: String,
        encoding: SnsEncoding,
    },
    Bounce {
        smtp_reply_code: String,
        status_code: Option<String>,
        message: String,
        sender: String,
        topic_arn: Option<String>,
    },
    Stop {
        topic_arn: Option<String>,
    },
    AddHeader {
        name: String,
        value: String,
    },
    Workmail {
        organization_arn: String,
        topic_arn: Option<String>,
    },
}

impl Action {
    /// The name SES uses for the action type in `receipt.action.type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::S3 { .. } => "S3",
            Action::Lambda { .. } => "Lambda",
            Action::Sns { .. } => "SNS",
            Action::Bounce { .. } => "Bounce",
            Action::Stop { .. } => "Stop",
            Action::AddHeader { .. } => "AddHeader",
            Action::Workmail { .. } => "WorkMail",
        }
    }

    /// The object key the S3 action writes for a message: `prefix + messageId`.
    pub fn object_key(&self, message_id: &str) -> Option<String> {
        match self {
            Action::S3 { prefix, .. } => Some(mailroom::ses::raw_object_key(prefix, message_id)),
            _ => None,
        }
    }

    /// `receipt.action` as SES reports it for this action (docs/ses.md §3.1).
    pub fn receipt_action(&self, message_id: &str) -> ReceiptAction {
        let mut a = ReceiptAction {
            kind: self.kind().to_string(),
            ..ReceiptAction::default()
        };
        match self {
            Action::S3 {
                bucket,
                prefix,
                topic_arn,
                ..
            } => {
                a.topic_arn = topic_arn.clone();
                a.bucket_name = Some(bucket.clone());
                a.object_key_prefix = Some(prefix.clone());
                a.object_key = self.object_key(message_id);
            }
            Action::Lambda {
                function_arn,
                invocation_type,
                topic_arn,
            } => {
                a.topic_arn = topic_arn.clone();
                a.function_arn = Some(function_arn.clone());
                a.invocation_type = Some(invocation_type.as_str().to_string());
            }
            Action::Sns {
                topic_arn,
                encoding,
            } => {
                a.topic_arn = Some(topic_arn.clone());
                // The notification spells it differently from the configuration (docs/ses.md §3.1).
                a.encoding = Some(
                    match encoding {
                        SnsEncoding::Utf8 => "UTF8",
                        SnsEncoding::Base64 => "BASE64",
                    }
                    .to_string(),
                );
            }
            Action::Bounce {
                smtp_reply_code,
                status_code,
                message,
                sender,
                topic_arn,
            } => {
                a.topic_arn = topic_arn.clone();
                a.smtp_reply_code = Some(smtp_reply_code.clone());
                a.status_code = status_code.clone();
                a.message = Some(message.clone());
                a.sender = Some(sender.clone());
            }
            Action::Stop { topic_arn } => a.topic_arn = topic_arn.clone(),
            Action::AddHeader { .. } => {}
            Action::Workmail {
                organization_arn,
                topic_arn,
            } => {
                a.topic_arn = topic_arn.clone();
                a.organization_arn = Some(organization_arn.clone());
            }
        }
        a
    }

    /// A one-line description for traces.
    pub fn describe(&self) -> String {
        match self {
            Action::S3 { bucket, prefix, .. } => format!("S3 s3://{bucket}/{prefix}"),
            Action::Lambda {
                function_arn,
                invocation_type,
                ..
            } => {
                let name = function_arn.rsplit(':').next().unwrap_or(function_arn);
                format!("Lambda {name} ({})", invocation_type.as_str())
            }
            Action::Sns { topic_arn, .. } => format!("SNS {topic_arn}"),
            Action::Bounce {
                smtp_reply_code,
                status_code,
                ..
            } => format!(
                "Bounce {smtp_reply_code} {}",
                status_code.as_deref().unwrap_or("")
            )
            .trim_end()
            .to_string(),
            Action::Stop { .. } => "Stop (RuleSet)".to_string(),
            Action::AddHeader { name, value } => format!("AddHeader {name}: {value}"),
            Action::Workmail {
                organization_arn, ..
            } => format!("WorkMail {organization_arn}"),
        }
    }
}

/// A rule set SES would refuse to store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleSetError {
    #[error("rule set has {0} rules, over SES's limit of {MAX_RULES_PER_SET}")]
    TooManyRules(usize),
    #[error("rule {rule:?}: {reason}")]
    BadRule { rule: String, reason: String },
}

impl RuleSet {
    /// Checks the constraints SES enforces when a rule is created (docs/ses.md §4, §5.2, §7.1).
    pub fn validate(&self) -> Result<(), RuleSetError> {
        if self.rules.len() > MAX_RULES_PER_SET {
            return Err(RuleSetError::TooManyRules(self.rules.len()));
        }
        let mut seen = std::collections::HashSet::new();
        for rule in &self.rules {
            let bad = |reason: String| RuleSetError::BadRule {
                rule: rule.name.clone(),
                reason,
            };
            if !valid_rule_name(&rule.name) {
                return Err(bad(
                    "names are 1-64 ASCII letters, digits, '_', '-' or '.', starting and ending alphanumeric"
                        .into(),
                ));
            }
            if !seen.insert(rule.name.as_str()) {
                return Err(bad("two rules have this name".into()));
            }
            if rule.recipients.len() > MAX_RECIPIENTS_PER_RULE {
                return Err(bad(format!(
                    "{} recipients, over SES's limit of {MAX_RECIPIENTS_PER_RULE}",
                    rule.recipients.len()
                )));
            }
            if rule.actions.len() > MAX_ACTIONS_PER_RULE {
                return Err(bad(format!(
                    "{} actions, over SES's limit of {MAX_ACTIONS_PER_RULE}",
                    rule.actions.len()
                )));
            }
            for action in &rule.actions {
                if let Action::AddHeader { name, value } = action {
                    let name_ok = (1..=50).contains(&name.len())
                        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                    if !name_ok {
                        return Err(bad(format!(
                            "AddHeader name {name:?} must be 1-50 of [A-Za-z0-9-]"
                        )));
                    }
                    if value.len() > 2048 || value.contains(['\r', '\n']) {
                        return Err(bad(format!(
                            "AddHeader {name} value must be at most 2048 characters without CR or LF"
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// True when some enabled rule would take mail for `recipient` (SES's RCPT-time check).
    pub fn accepts(&self, recipient: &str) -> bool {
        self.rules.iter().any(|r| r.enabled && r.matches(recipient))
    }

    /// True when every enabled rule taking `recipient` requires TLS (mail without it is refused).
    pub fn requires_tls(&self, recipient: &str) -> bool {
        let mut matching = self
            .rules
            .iter()
            .filter(|r| r.enabled && r.matches(recipient))
            .peekable();
        matching.peek().is_some() && matching.all(|r| r.tls_policy == TlsPolicy::Require)
    }
}

impl Rule {
    /// Whether this rule's recipient conditions take `recipient` (empty conditions take all).
    pub fn matches(&self, recipient: &str) -> bool {
        self.recipients.is_empty()
            || self
                .recipients
                .iter()
                .any(|c| super::recipients::matches(c, recipient))
    }

    /// The envelope recipients this rule matched, in envelope order.
    pub fn matched<'a>(&self, recipients: &'a [String]) -> Vec<&'a String> {
        recipients.iter().filter(|r| self.matches(r)).collect()
    }
}

fn valid_rule_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=64).contains(&b.len())
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}
