//! Evaluating a rule set for one received message, as SES does (docs/ses.md §5.1, §2):
//! every enabled rule that matches some recipient runs, in order; within a rule, actions run in
//! order; a Stop action or a `STOP_RULE_SET` disposition ends everything; `STOP_RULE` ends the
//! current rule only. Side effects go through an [`Executor`], so the semantics are testable
//! without any function, bucket or topic.
//!
//! Choices where SES is unconfirmed (each marked unconfirmed in docs/ses.md):
//! - `AddHeader` puts its header at the very top of the message; every later action of the
//!   evaluation, in this rule and in later rules, sees the message with it (S3 objects, SNS
//!   content, the `headers` list of Lambda events).
//! - An action that fails (including a RequestResponse function that errors) is recorded and
//!   evaluation goes on with the next action; SES would retry it for up to four hours.
//! - A rule with `TlsPolicy: Require` does not run for mail that did not arrive over TLS. SES
//!   bounces such mail; the SMTP front end refuses it at RCPT time instead.
//! - With `ScanEnabled: false` a rule's events carry `DISABLED` spam and virus verdicts.

use super::mail::{self, Envelope, Verdicts};
use super::model::{Action, InvocationType, Rule, RuleSet, TlsPolicy};
use crate::error::ActionError;
use async_trait::async_trait;
use mailroom::ses::{
    Disposition, SesEvent, SesHeader, SesMail, SesMessage, SesNotification, SesReceipt, SesRecord,
    Verdict, VerdictStatus,
};
use serde::Serialize;
use time::OffsetDateTime;

/// One received message, before SES touches it.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The message as the client sent it (after SMTP dot-unstuffing).
    pub raw: Vec<u8>,
    pub envelope: Envelope,
    pub verdicts: Verdicts,
    pub message_id: String,
    pub received_at: OffsetDateTime,
    /// The SES Region named in `Received` (`inbound-smtp.<region>.amazonaws.com`).
    pub region: String,
}

/// Everything an action needs: the action, the rule's matched recipients, and the message as
/// this action sees it.
#[derive(Debug, Clone)]
pub struct Step<'a> {
    pub rule: &'a Rule,
    pub action_index: usize,
    pub action: &'a Action,
    /// The full message: SES's headers, headers added so far, then the original message.
    pub message: &'a [u8],
    pub mail: &'a SesMail,
    /// `receipt` for this action: the rule's matched recipients and this action's object.
    pub receipt: &'a SesReceipt,
}

impl Step<'_> {
    /// The Lambda action event (docs/ses.md §1.4).
    pub fn event(&self) -> SesEvent {
        SesEvent {
            records: vec![SesRecord {
                event_source: Some("aws:ses".to_string()),
                event_version: Some("1.0".to_string()),
                ses: SesMessage {
                    mail: self.mail.clone(),
                    receipt: self.receipt.clone(),
                },
            }],
        }
    }

    /// The SNS notification body (docs/ses.md §3.1): `content` only for the SNS action itself.
    pub fn notification(&self, content: Option<String>) -> SesNotification {
        SesNotification {
            notification_type: "Received".to_string(),
            mail: self.mail.clone(),
            receipt: self.receipt.clone(),
            content,
        }
    }

    /// The S3 action's object key, for an S3 action.
    pub fn object_key(&self) -> Option<String> {
        self.action.object_key(&self.mail.message_id)
    }
}

/// What running one action produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Outcome {
    /// The `disposition` a function returned, verbatim (honoured only for RequestResponse).
    pub disposition: Option<String>,
    /// Where its outputs landed (files, URLs, object keys), for the trace.
    pub outputs: Vec<String>,
    /// A short human summary of what happened.
    pub summary: Option<String>,
}

/// Carries out the side effects of actions. `AddHeader` never reaches it (it only edits the
/// message); every other action does, including `Stop`, for its optional topic notification.
#[async_trait]
pub trait Executor: Send + Sync {
    async fn execute(&self, step: &Step<'_>) -> Result<Outcome, ActionError>;

    /// Which of our functions `function_arn` is: its binary's name and its logical id.
    fn function_of(&self, _function_arn: &str) -> Option<(String, String)> {
        None
    }
}

/// The record of one evaluation: what ran, what it returned, where things went.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Trace {
    pub message_id: String,
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub rule_set: String,
    /// What the template's IP address filters made of the connecting address, when it has any;
    /// a refused connection runs no rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip_filter: Option<super::FilterDecision>,
    /// Recipients no enabled rule matched: SES refuses them at RCPT time.
    pub rejected: Vec<String>,
    pub rules: Vec<RuleTrace>,
    /// Why evaluation ended early, if it did.
    pub stopped: Option<String>,
    /// The message with every header SES and AddHeader actions put in front of it.
    #[serde(skip)]
    pub final_message: Vec<u8>,
}

impl Trace {
    /// True when some action failed.
    pub fn failed(&self) -> bool {
        self.rules
            .iter()
            .flat_map(|r| &r.actions)
            .any(|a| matches!(a.status, Status::Failed { .. }))
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleTrace {
    pub name: String,
    pub matched: Vec<String>,
    /// Why the rule did not run, when it did not.
    pub skipped: Option<String>,
    pub actions: Vec<ActionTrace>,
    /// `STOP_RULE`, `STOP_RULE_SET` or `Stop action`, when the rule ended early.
    pub ended_by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionTrace {
    pub index: usize,
    #[serde(rename = "type")]
    pub kind: String,
    pub description: String,
    pub status: Status,
    /// The disposition honoured after this action, if any.
    pub disposition: Option<String>,
    pub outputs: Vec<String>,
    pub summary: Option<String>,
    /// Which of our functions a Lambda action invoked (`store`, `api`, ...), when the executor
    /// knows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The function's logical id in the template (`StoreFunction`), for `sam local invoke`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logical_id: Option<String>,
    /// The exact event a Lambda action was invoked with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<serde_json::Value>,
    /// How long the action took, retries included.
    pub duration_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "camelCase")]
pub enum Status {
    Ok,
    Failed { error: String },
}

/// Runs `rule_set` for `inbound`, calling `executor` for each action's side effects.
pub async fn evaluate(rule_set: &RuleSet, inbound: &Inbound, executor: &dyn Executor) -> Trace {
    let env = &inbound.envelope;
    let rejected: Vec<String> = env
        .recipients
        .iter()
        .filter(|r| !rule_set.accepts(r))
        .cloned()
        .collect();
    let scanned = rule_set
        .rules
        .iter()
        .any(|r| r.enabled && r.scan_enabled && !r.matched(&env.recipients).is_empty());

    let (original_headers, _) = mail::split_headers(&inbound.raw);
    let from_domain = original_headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("From"))
        .and_then(|h| mail::split_address_list(&h.value).into_iter().next())
        .and_then(|a| super::recipients::domain_of(&mail::bare_address(&a)));
    let prepended = mail::prepended_headers(
        &inbound.message_id,
        env,
        &inbound.verdicts,
        scanned,
        from_domain.as_deref(),
        &inbound.region,
        inbound.received_at,
    );
    let mut headers: Vec<SesHeader> = prepended.clone();
    headers.extend(original_headers);
    let mut message = mail::render_headers(&prepended);
    message.extend_from_slice(&inbound.raw);

    let mut trace = Trace {
        message_id: inbound.message_id.clone(),
        mail_from: env.mail_from.clone(),
        recipients: env.recipients.clone(),
        rule_set: rule_set.name.clone(),
        ip_filter: None,
        rejected,
        rules: Vec::new(),
        stopped: None,
        final_message: Vec::new(),
    };

    'rules: for rule in &rule_set.rules {
        let matched: Vec<String> = rule.matched(&env.recipients).into_iter().cloned().collect();
        let mut rt = RuleTrace {
            name: rule.name.clone(),
            matched: matched.clone(),
            skipped: None,
            actions: Vec::new(),
            ended_by: None,
        };
        rt.skipped = skip_reason(rule, &matched, env.tls);
        if rt.skipped.is_some() {
            trace.rules.push(rt);
            continue;
        }

        let mut mail = mail::ses_mail(
            &inbound.message_id,
            &env.mail_from,
            &headers,
            inbound.received_at,
        );
        for (index, action) in rule.actions.iter().enumerate() {
            let mut at = ActionTrace {
                index,
                kind: action.kind().to_string(),
                description: action.describe(),
                status: Status::Ok,
                disposition: None,
                outputs: Vec::new(),
                summary: None,
                function: None,
                logical_id: None,
                event: None,
                duration_ms: 0,
            };
            if let Action::AddHeader { name, value } = action {
                let added = SesHeader {
                    name: name.clone(),
                    value: value.clone(),
                };
                let mut with = mail::render_headers(std::slice::from_ref(&added));
                with.extend_from_slice(&message);
                message = with;
                headers.insert(0, added);
                mail = mail::ses_mail(
                    &inbound.message_id,
                    &env.mail_from,
                    &headers,
                    inbound.received_at,
                );
                at.summary = Some("header added for the actions that follow".to_string());
                rt.actions.push(at);
                continue;
            }
            let receipt = receipt_for(rule, action, &matched, inbound);
            let step = Step {
                rule,
                action_index: index,
                action,
                message: &message,
                mail: &mail,
                receipt: &receipt,
            };
            if let Action::Lambda { function_arn, .. } = action {
                if let Some((binary, logical_id)) = executor.function_of(function_arn) {
                    at.function = Some(binary);
                    at.logical_id = Some(logical_id);
                }
                at.event = serde_json::to_value(step.event()).ok();
            }
            let started = std::time::Instant::now();
            let executed = executor.execute(&step).await;
            at.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            let disposition = match executed {
                Ok(outcome) => record_outcome(action, outcome, &mut at),
                Err(error) => {
                    at.status = Status::Failed {
                        error: error.to_string(),
                    };
                    Disposition::Continue
                }
            };
            rt.actions.push(at);
            if matches!(action, Action::Stop { .. }) {
                rt.ended_by = Some("Stop action".to_string());
                trace.stopped = Some(format!("rule {:?}: Stop action", rule.name));
                trace.rules.push(rt);
                break 'rules;
            }
            match disposition {
                Disposition::Continue => {}
                Disposition::StopRule => {
                    rt.ended_by = Some("STOP_RULE".to_string());
                    break;
                }
                Disposition::StopRuleSet => {
                    rt.ended_by = Some("STOP_RULE_SET".to_string());
                    trace.stopped = Some(format!(
                        "rule {:?} action {index}: STOP_RULE_SET",
                        rule.name
                    ));
                    trace.rules.push(rt);
                    break 'rules;
                }
            }
        }
        trace.rules.push(rt);
    }
    trace.final_message = message;
    trace
}

/// Why SES would not run `rule` for this message, if it would not.
fn skip_reason(rule: &Rule, matched: &[String], tls: bool) -> Option<String> {
    if !rule.enabled {
        Some("disabled (Enabled is false)".to_string())
    } else if matched.is_empty() {
        Some("no recipient matched".to_string())
    } else if rule.tls_policy == TlsPolicy::Require && !tls {
        Some(
            "TlsPolicy Require and the message did not arrive over TLS (SES bounces it)"
                .to_string(),
        )
    } else {
        None
    }
}

/// Notes a successful action's outcome in its trace and returns the disposition SES honours:
/// only a `RequestResponse` Lambda's answer steers the evaluation (docs/ses.md §2).
fn record_outcome(action: &Action, outcome: Outcome, at: &mut ActionTrace) -> Disposition {
    at.outputs = outcome.outputs;
    at.summary = outcome.summary;
    let Action::Lambda {
        invocation_type, ..
    } = action
    else {
        return Disposition::Continue;
    };
    match invocation_type {
        InvocationType::RequestResponse => {
            let disposition = Disposition::parse_lenient(outcome.disposition.as_deref());
            at.disposition = Some(disposition.as_str().to_string());
            disposition
        }
        InvocationType::Event => {
            if let Some(d) = outcome.disposition {
                let note = format!("returned disposition {d:?}, ignored for an Event invocation");
                at.summary = Some(match at.summary.take() {
                    Some(s) => format!("{s}; {note}"),
                    None => note,
                });
            }
            Disposition::Continue
        }
    }
}

fn receipt_for(rule: &Rule, action: &Action, matched: &[String], inbound: &Inbound) -> SesReceipt {
    let v = &inbound.verdicts;
    let status = |v: &Verdict| Some(VerdictStatus { status: v.clone() });
    let (spam, virus) = if rule.scan_enabled {
        (status(&v.spam), status(&v.virus))
    } else {
        (status(&Verdict::Disabled), status(&Verdict::Disabled))
    };
    let now = OffsetDateTime::now_utc();
    let elapsed = (now - inbound.received_at).whole_milliseconds().max(0);
    SesReceipt {
        timestamp: mail::iso_millis(now),
        processing_time_millis: u64::try_from(elapsed).unwrap_or(u64::MAX),
        recipients: matched.to_vec(),
        spam_verdict: spam,
        virus_verdict: virus,
        spf_verdict: status(&v.spf),
        dkim_verdict: status(&v.dkim),
        dmarc_verdict: status(&v.dmarc),
        dmarc_policy: v.reported_dmarc_policy(),
        action: action.receipt_action(&inbound.message_id),
    }
}
