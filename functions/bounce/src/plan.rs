//! The bounce function's logic: which recipients to bounce, whether bouncing is safe at all, and
//! the `SendBounce` request that says so with correct DSN fields (docs/ses.md §4.5).
//!
//! Everything here reads the SES event alone: the headers the backscatter guard needs are in
//! `mail.headers`, so no S3 read is needed and the function fits SES's 30 s RequestResponse budget.
//!
//! Backscatter: a bounce goes to the envelope sender, which for spam is usually forged; bouncing it
//! mails an innocent third party. [`backscatter_guard`] therefore refuses to bounce null senders,
//! mailer-daemons, auto-submitted or bulk mail (RFC 3834), delivery reports, mail whose headers SES
//! truncated (the guard cannot see them all), mail whose sender failed SPF or DMARC or that SES
//! judged spam or infected, and mail whose sender SPF or DMARC cannot authenticate (`GRAY`,
//! `PROCESSING_FAILED`). Such mail is dropped silently instead, with the reason logged.

use mailroom::automated;
use mailroom::config::{self, ConfigError, Env};
use mailroom::policy::{Action, Decision, FilterPolicy, Rule, bare_address};
pub use mailroom::policy::{Mailbox, Mailboxes};
use mailroom::ports::bouncer::{
    BounceRequest, BounceType, BouncedRecipient, DsnAction, MessageDsn, RecipientDsn,
};
use mailroom::ses::{Disposition, SesMessage, Verdict};

/// The variables [`BouncePolicy::from_env`] reads itself (it also reads the filter policy's,
/// [`mailroom::policy::ENV_VARS`], when `MAILROOM_BOUNCE_REJECTED` is on).
pub const ENV_VARS: &[&str] = &[
    "MAILROOM_MAILBOXES",
    "MAILROOM_BOUNCE_SENDER",
    "MAILROOM_BOUNCE_SENDER_ARN",
    "MAILROOM_REPORTING_MTA",
    "MAILROOM_BOUNCE_EXPLANATION",
    "MAILROOM_BOUNCE_REJECTED",
    "MAILROOM_BOUNCE_DISPOSITION",
];

/// Bounce configuration, read once (see the table in the bounce crate's docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BouncePolicy {
    pub mailboxes: Mailboxes,
    /// `BounceSender`: a verified SES identity, e.g. `mailer-daemon@example.com`.
    pub sender: String,
    pub sender_arn: Option<String>,
    /// `MessageDsn.ReportingMta`; derived from the region when unset.
    pub reporting_mta: Option<String>,
    /// The region used for the default reporting MTA when the event's function ARN has none.
    pub region: Option<String>,
    pub explanation: Option<String>,
    /// When set, mail the filter policy drops for a non-verdict reason (deny list) is bounced too.
    pub reject_policy: Option<FilterPolicy>,
    /// What the function returns once every recipient was handled here.
    pub stop_disposition: Disposition,
}

impl BouncePolicy {
    pub fn from_env(env: &(impl Env + ?Sized)) -> Result<BouncePolicy, ConfigError> {
        let entries = config::list(env, "MAILROOM_MAILBOXES");
        if entries.is_empty() {
            // An empty list would bounce every message: refuse to start rather than do that.
            return Err(ConfigError::Missing {
                name: "MAILROOM_MAILBOXES".to_string(),
            });
        }
        let mailboxes = Mailboxes::parse(&entries).map_err(|bad| ConfigError::Invalid {
            name: "MAILROOM_MAILBOXES".to_string(),
            value: bad,
            reason: "expected user@domain or @domain entries".to_string(),
        })?;
        let sender = config::required(env, "MAILROOM_BOUNCE_SENDER")?;
        if bare_address(&sender).is_none() {
            return Err(ConfigError::Invalid {
                name: "MAILROOM_BOUNCE_SENDER".to_string(),
                value: sender,
                reason: "expected an email address".to_string(),
            });
        }
        let reject_policy = if config::flag(env, "MAILROOM_BOUNCE_REJECTED", false)? {
            Some(FilterPolicy::from_env(env)?)
        } else {
            None
        };
        let stop_disposition = match config::choice(
            env,
            "MAILROOM_BOUNCE_DISPOSITION",
            &["stop_rule_set", "stop_rule"],
            "stop_rule_set",
        )?
        .as_str()
        {
            "stop_rule" => Disposition::StopRule,
            _ => Disposition::StopRuleSet,
        };
        Ok(BouncePolicy {
            mailboxes,
            sender,
            sender_arn: config::optional(env, "MAILROOM_BOUNCE_SENDER_ARN"),
            reporting_mta: config::optional(env, "MAILROOM_REPORTING_MTA"),
            region: config::optional(env, "AWS_REGION"),
            explanation: config::optional(env, "MAILROOM_BOUNCE_EXPLANATION"),
            reject_policy,
            stop_disposition,
        })
    }

    /// `dns; inbound-smtp.<region>.amazonaws.com`, the MTA SES itself reports, unless configured.
    fn reporting_mta_for(&self, msg: &SesMessage) -> Option<String> {
        if let Some(mta) = &self.reporting_mta {
            return Some(mta.clone());
        }
        let arn_region = msg
            .receipt
            .action
            .function_arn
            .as_deref()
            .and_then(|arn| arn.split(':').nth(3))
            .filter(|r| !r.is_empty())
            .map(str::to_string);
        arn_region
            .or_else(|| self.region.clone())
            .map(|r| format!("dns; inbound-smtp.{r}.amazonaws.com"))
    }
}

/// Why a message must not be bounced, or `None` when bouncing it is safe.
pub fn backscatter_guard(msg: &SesMessage) -> Option<String> {
    if let Some(why) = automated::sender(&msg.mail.source) {
        return Some(why);
    }
    let r = &msg.receipt;
    for (what, verdict) in [
        ("SPF", r.spf()),
        ("DMARC", r.dmarc()),
        ("spam", r.spam()),
        ("virus", r.virus()),
    ] {
        if verdict == Some(&Verdict::Fail) {
            return Some(format!("{what} verdict FAIL: the sender is likely forged"));
        }
    }
    // GRAY: the sender's domain publishes no SPF or DMARC policy, so nothing vouches for the
    // envelope sender a bounce would go to (docs/ses.md §1.3); PROCESSING_FAILED says as little.
    for (what, verdict) in [("SPF", r.spf()), ("DMARC", r.dmarc())] {
        if let Some(v @ (Verdict::Gray | Verdict::ProcessingFailed)) = verdict {
            return Some(format!(
                "{what} verdict {}: the sender cannot be authenticated",
                v.as_str()
            ));
        }
    }
    if msg.mail.headers_truncated {
        return Some("headers truncated by SES: cannot rule out auto-submitted mail".to_string());
    }
    if let Some(why) = automated::headers(&msg.mail.headers) {
        return Some(why);
    }
    // Mailing-list and bulk mail: bounces would go to the list, not to a person.
    msg.mail
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("precedence"))
        .map(|h| h.value.trim().to_ascii_lowercase())
        .find(|v| matches!(v.as_str(), "bulk" | "junk" | "list"))
        .map(|v| format!("Precedence: {v}"))
}

/// What the bounce function decided for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BouncePlan {
    pub known: Vec<String>,
    /// Recipients this function rejects, with the bounce type each gets.
    pub rejected: Vec<(String, BounceType)>,
    /// Set when the guard forbids bouncing: the rejected recipients are dropped silently.
    pub suppressed: Option<String>,
    /// Present when a bounce is to be sent.
    pub request: Option<BounceRequest>,
    /// `CONTINUE` while any recipient still wants the mail; the stop disposition otherwise.
    pub disposition: Disposition,
    /// Why recipients were rejected, for the log.
    pub reasons: Vec<String>,
}

/// Decides which recipients to bounce and builds the `SendBounce` request.
///
/// Mixed mail (some recipients known) returns `CONTINUE`: the receipt rule's later actions still
/// have to deliver to the known recipients. Only when every recipient is rejected does the plan
/// stop the rule set, so nothing is stored for nobody.
pub fn plan(msg: &SesMessage, policy: &BouncePolicy) -> BouncePlan {
    let recipients = &msg.receipt.recipients;
    let policy_drop: Option<Decision> = policy
        .reject_policy
        .as_ref()
        .map(|p| p.evaluate(msg))
        .filter(|d| d.action == Action::Drop);
    let mut known = Vec::new();
    let mut rejected = Vec::new();
    let mut reasons = Vec::new();
    for rcpt in recipients {
        if let Some(d) = &policy_drop {
            let bounce_type = if d.reasons.iter().any(|r| r.rule == Rule::Size) {
                BounceType::MessageTooLarge
            } else {
                BounceType::ContentRejected
            };
            rejected.push((rcpt.clone(), bounce_type));
        } else if policy.mailboxes.contains(rcpt) {
            known.push(rcpt.clone());
        } else {
            rejected.push((rcpt.clone(), BounceType::DoesNotExist));
        }
    }
    if let Some(d) = &policy_drop {
        reasons.push(format!("filter policy: {}", d.reasons_text()));
    }
    if rejected.iter().any(|(_, t)| *t == BounceType::DoesNotExist) {
        reasons.push("no such mailbox".to_string());
    }
    let disposition = if rejected.is_empty() || !known.is_empty() {
        Disposition::Continue
    } else {
        policy.stop_disposition
    };
    let suppressed = if rejected.is_empty() {
        None
    } else {
        backscatter_guard(msg)
    };
    let request = (!rejected.is_empty() && suppressed.is_none())
        .then(|| build_request(msg, policy, &rejected));
    BouncePlan {
        known,
        rejected,
        suppressed,
        request,
        disposition,
        reasons,
    }
}

/// Status, SMTP code and text per bounce type (RFC 3463 enhanced codes).
fn dsn_codes(t: BounceType) -> (&'static str, &'static str, &'static str) {
    match t {
        BounceType::DoesNotExist => ("5.1.1", "550", "mailbox does not exist"),
        BounceType::MessageTooLarge => ("5.3.4", "552", "message too big for recipient"),
        BounceType::ContentRejected => ("5.7.1", "550", "message rejected by recipient policy"),
        BounceType::ExceededQuota => ("5.2.2", "552", "mailbox full"),
        BounceType::TemporaryFailure => ("4.0.0", "450", "temporary failure"),
        BounceType::Undefined => ("5.0.0", "550", "delivery failed"),
    }
}

fn build_request(
    msg: &SesMessage,
    policy: &BouncePolicy,
    rejected: &[(String, BounceType)],
) -> BounceRequest {
    let recipients = rejected
        .iter()
        .map(|(rcpt, t)| {
            // As SES reported it (case kept: it names the envelope recipient), minus any `<>`.
            let addr = rcpt
                .trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_string();
            let (status, code, text) = dsn_codes(*t);
            BouncedRecipient {
                recipient: addr.clone(),
                recipient_arn: None,
                bounce_type: Some(*t),
                dsn: Some(RecipientDsn {
                    // SES adds the `rfc822;` type itself (docs/ses.md §4.5).
                    final_recipient: Some(addr.clone()),
                    action: DsnAction::Failed,
                    remote_mta: None,
                    status: status.to_string(),
                    diagnostic_code: Some(format!("smtp; {code} {status} <{addr}>: {text}")),
                    last_attempt_date: None,
                    extension_fields: Vec::new(),
                }),
            }
        })
        .collect();
    let arrival = msg.mail.timestamp.trim();
    BounceRequest {
        original_message_id: msg.mail.message_id.clone(),
        bounce_sender: policy.sender.clone(),
        bounce_sender_arn: policy.sender_arn.clone(),
        explanation: policy.explanation.clone(),
        message_dsn: policy.reporting_mta_for(msg).map(|mta| MessageDsn {
            reporting_mta: mta,
            arrival_date: (!arrival.is_empty()).then(|| arrival.to_string()),
            extension_fields: Vec::new(),
        }),
        recipients,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailroom::ses::{SesEvent, SesHeader, VerdictStatus};

    fn msg(recipients: &[&str]) -> SesMessage {
        let json = r#"{"Records":[{"eventSource":"aws:ses","eventVersion":"1.0","ses":{
            "mail":{"timestamp":"2025-01-15T10:00:02.028Z","source":"bounce+abc=sender@example.net",
                    "messageId":"o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1","destination":[],
                    "headersTruncated":false,
                    "headers":[{"name":"From","value":"Jane <sender@example.net>"},
                               {"name":"Content-Type","value":"text/plain"}],
                    "commonHeaders":{"from":["Jane <sender@example.net>"]}},
            "receipt":{"timestamp":"2025-01-15T10:00:02.028Z","processingTimeMillis":512,
                    "recipients":[],
                    "spamVerdict":{"status":"PASS"},"virusVerdict":{"status":"PASS"},
                    "spfVerdict":{"status":"PASS"},"dkimVerdict":{"status":"PASS"},
                    "dmarcVerdict":{"status":"PASS"},
                    "action":{"type":"Lambda","invocationType":"RequestResponse",
                      "functionArn":"arn:aws:lambda:eu-west-1:123456789012:function:bounce"}}}}]}"#;
        let ev: SesEvent = serde_json::from_str(json).expect("fixture parses");
        let mut m = ev.records.into_iter().next().expect("one record").ses;
        m.receipt.recipients = recipients.iter().map(|s| s.to_string()).collect();
        m
    }

    fn policy(extra: &[(&str, &str)]) -> BouncePolicy {
        let mut env = vec![
            (
                "MAILROOM_MAILBOXES",
                "support@example.com, @team.example.com",
            ),
            ("MAILROOM_BOUNCE_SENDER", "mailer-daemon@example.com"),
        ];
        env.extend_from_slice(extra);
        BouncePolicy::from_env(env.as_slice()).expect("valid policy")
    }

    #[test]
    fn mailboxes_match_case_insensitively_with_labels_and_domains() {
        let p = policy(&[]);
        for known in [
            "support@example.com",
            "Support+Billing@EXAMPLE.com",
            "anyone@team.example.com",
            "<support@example.com>",
        ] {
            assert!(p.mailboxes.contains(known), "{known}");
        }
        for unknown in [
            "sales@example.com",
            "support@sub.example.com",
            "x@example.org",
            "",
        ] {
            assert!(!p.mailboxes.contains(unknown), "{unknown}");
        }
    }

    #[test]
    fn all_known_continues_without_a_bounce() {
        let plan = plan(&msg(&["support@example.com"]), &policy(&[]));
        assert_eq!(plan.disposition, Disposition::Continue);
        assert!(plan.request.is_none() && plan.rejected.is_empty());
    }

    #[test]
    fn unknown_recipients_get_a_5_1_1_dsn_and_stop_the_rule_set() {
        let plan = plan(&msg(&["nobody@example.com"]), &policy(&[]));
        assert_eq!(plan.disposition, Disposition::StopRuleSet);
        let req = plan.request.expect("bounce");
        assert_eq!(
            req.original_message_id,
            "o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1"
        );
        assert_eq!(req.bounce_sender, "mailer-daemon@example.com");
        let dsn = req.message_dsn.expect("message dsn");
        assert_eq!(
            dsn.reporting_mta,
            "dns; inbound-smtp.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            dsn.arrival_date.as_deref(),
            Some("2025-01-15T10:00:02.028Z")
        );
        let r = &req.recipients[0];
        assert_eq!(r.recipient, "nobody@example.com");
        assert_eq!(r.bounce_type, Some(BounceType::DoesNotExist));
        let f = r.dsn.as_ref().expect("dsn fields");
        assert_eq!(f.final_recipient.as_deref(), Some("nobody@example.com"));
        assert_eq!(f.action, DsnAction::Failed);
        assert_eq!(f.status, "5.1.1");
        assert_eq!(
            f.diagnostic_code.as_deref(),
            Some("smtp; 550 5.1.1 <nobody@example.com>: mailbox does not exist")
        );
    }

    #[test]
    fn mixed_recipients_bounce_only_the_unknown_and_continue() {
        let plan = plan(
            &msg(&[
                "support@example.com",
                "Ghost@Example.com",
                "a@team.example.com",
            ]),
            &policy(&[]),
        );
        assert_eq!(plan.disposition, Disposition::Continue);
        assert_eq!(plan.known.len(), 2);
        let req = plan.request.expect("bounce");
        let bounced: Vec<_> = req
            .recipients
            .iter()
            .map(|r| r.recipient.as_str())
            .collect();
        assert_eq!(bounced, ["Ghost@Example.com"]);
    }

    #[test]
    fn configured_mta_and_disposition_win() {
        let p = policy(&[
            ("MAILROOM_REPORTING_MTA", "dns; mx.example.com"),
            ("MAILROOM_BOUNCE_DISPOSITION", "stop_rule"),
        ]);
        let plan = plan(&msg(&["x@example.com"]), &p);
        assert_eq!(plan.disposition, Disposition::StopRule);
        let mta = plan
            .request
            .and_then(|r| r.message_dsn)
            .map(|d| d.reporting_mta);
        assert_eq!(mta.as_deref(), Some("dns; mx.example.com"));
    }

    #[test]
    fn guard_refuses_backscatter() {
        type Mutate = Box<dyn Fn(&mut SesMessage)>;
        let cases: Vec<(&str, Mutate)> = vec![
            ("null", Box::new(|m| m.mail.source = String::new())),
            ("null <>", Box::new(|m| m.mail.source = "<>".into())),
            (
                "daemon",
                Box::new(|m| m.mail.source = "MAILER-DAEMON@mx.example.net".into()),
            ),
            (
                "postmaster",
                Box::new(|m| m.mail.source = "postmaster@example.net".into()),
            ),
            (
                "spf",
                Box::new(|m| {
                    m.receipt.spf_verdict = Some(VerdictStatus {
                        status: Verdict::Fail,
                    })
                }),
            ),
            (
                "dmarc",
                Box::new(|m| {
                    m.receipt.dmarc_verdict = Some(VerdictStatus {
                        status: Verdict::Fail,
                    })
                }),
            ),
            (
                "spam",
                Box::new(|m| {
                    m.receipt.spam_verdict = Some(VerdictStatus {
                        status: Verdict::Fail,
                    })
                }),
            ),
            ("truncated", Box::new(|m| m.mail.headers_truncated = true)),
            (
                "auto",
                Box::new(|m| {
                    m.mail.headers.push(SesHeader {
                        name: "auto-submitted".into(),
                        value: "auto-replied".into(),
                    })
                }),
            ),
            (
                "bulk",
                Box::new(|m| {
                    m.mail.headers.push(SesHeader {
                        name: "Precedence".into(),
                        value: "Bulk".into(),
                    })
                }),
            ),
            (
                "report",
                Box::new(|m| {
                    m.mail.headers[1].value = "multipart/report; report-type=delivery-status".into()
                }),
            ),
        ];
        for (name, mutate) in cases {
            let mut m = msg(&["ghost@example.com"]);
            mutate(&mut m);
            let plan = plan(&m, &policy(&[]));
            assert!(plan.suppressed.is_some(), "{name}");
            assert!(plan.request.is_none(), "{name}");
            // Still nobody to deliver to: the mail stops here, silently.
            assert_eq!(plan.disposition, Disposition::StopRuleSet, "{name}");
        }
        let mut m = msg(&["ghost@example.com"]);
        m.mail.headers.push(SesHeader {
            name: "Auto-Submitted".into(),
            value: "no".into(),
        });
        m.receipt.dkim_verdict = Some(VerdictStatus {
            status: Verdict::Gray,
        });
        assert_eq!(backscatter_guard(&m), None);
    }

    #[test]
    fn unauthenticated_senders_are_never_bounced() {
        for (what, status) in [
            ("spf", Verdict::Gray),
            ("dmarc", Verdict::Gray),
            ("spf", Verdict::ProcessingFailed),
            ("dmarc", Verdict::ProcessingFailed),
        ] {
            let mut m = msg(&["ghost@example.com"]);
            let v = Some(VerdictStatus {
                status: status.clone(),
            });
            if what == "spf" {
                m.receipt.spf_verdict = v;
            } else {
                m.receipt.dmarc_verdict = v;
            }
            let why = backscatter_guard(&m).unwrap_or_default();
            assert!(why.contains(status.as_str()), "{what} {status:?}: {why:?}");
            assert!(
                plan(&m, &policy(&[])).request.is_none(),
                "{what} {status:?}"
            );
        }
    }

    #[test]
    fn policy_rejections_bounce_as_content_rejected_when_enabled() {
        let m = msg(&["support@example.com"]);
        let off = policy(&[("MAILROOM_DENY_SENDERS", "example.net")]);
        assert!(plan(&m, &off).request.is_none());
        let on = policy(&[
            ("MAILROOM_DENY_SENDERS", "example.net"),
            ("MAILROOM_BOUNCE_REJECTED", "true"),
        ]);
        let p = plan(&m, &on);
        assert_eq!(p.disposition, Disposition::StopRuleSet);
        let req = p.request.expect("bounce");
        assert_eq!(
            req.recipients[0].bounce_type,
            Some(BounceType::ContentRejected)
        );
        assert_eq!(
            req.recipients[0].dsn.as_ref().map(|d| d.status.as_str()),
            Some("5.7.1")
        );
    }

    #[test]
    fn config_is_required_and_validated() {
        let e = BouncePolicy::from_env(&[("MAILROOM_BOUNCE_SENDER", "a@b.c")])
            .expect_err("no mailboxes");
        assert!(e.to_string().contains("MAILROOM_MAILBOXES"));
        let e = BouncePolicy::from_env(&[("MAILROOM_MAILBOXES", "a@b.c")]).expect_err("no sender");
        assert!(e.to_string().contains("MAILROOM_BOUNCE_SENDER"));
        let e = BouncePolicy::from_env(&[
            ("MAILROOM_MAILBOXES", "a@b.c, nonsense"),
            ("MAILROOM_BOUNCE_SENDER", "a@b.c"),
        ])
        .expect_err("bad entry");
        assert!(e.to_string().contains("nonsense"), "{e}");
    }
}
