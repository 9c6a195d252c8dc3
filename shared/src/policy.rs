//! The stop function's filter policy: which received mail the gate drops, tags or lets through.
//!
//! Pure and deterministic: the same event and configuration always give the same [`Decision`], so
//! a later action that wants the verdict of a "tag" rule recomputes it with
//! [`FilterPolicy::evaluate`] instead of relying on the gate to have changed the message (a Lambda
//! action cannot modify mail; docs/ses.md §1).
//!
//! Only a `FAIL` verdict triggers a verdict rule. `GRAY`, `PROCESSING_FAILED`, `DISABLED`, unknown
//! strings and missing verdicts never do, except for the optional
//! [`FilterPolicy::virus_unverified`] rule (a virus scan that ran but could not conclude).
//!
//! Precedence, decided once here and tested below:
//! - A virus `FAIL` drops or tags whatever the lists say.
//! - An *authenticated* allow-list match (envelope sender with SPF `PASS`, or the From address with
//!   DMARC `PASS`) bypasses every other rule, the deny list included. A sender that only *claims*
//!   to be on the allow list gains nothing, because From and MAIL FROM are trivially forged.
//! - Otherwise each matching rule contributes its configured action; the strongest wins
//!   (drop > tag > allow).
//!
//! Size: the SES Lambda event carries no message size and no body (docs/ses.md §1.1), so the size
//! rule applies only when the caller passes a known size to [`FilterPolicy::evaluate_with_size`]
//! (the stop function does when it is configured to read the raw object an earlier S3 action
//! wrote). With no size known the rule is skipped and the decision says so in
//! [`Decision::size`].

use crate::config::{self, ConfigError, Env};
use crate::ses::{Disposition, DmarcPolicy, SesMessage, Verdict};
use serde::Serialize;

/// What one rule does when it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// The rule is disabled.
    Off,
    /// Let the mail through, but record the verdict.
    Tag,
    /// Stop the rule set: later actions (storage, delivery) do not run.
    Drop,
}

impl RuleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            RuleAction::Off => "off",
            RuleAction::Tag => "tag",
            RuleAction::Drop => "drop",
        }
    }

    fn from_env(
        env: &(impl Env + ?Sized),
        name: &str,
        default: RuleAction,
    ) -> Result<RuleAction, ConfigError> {
        Ok(
            match config::choice(env, name, &["off", "tag", "drop"], default.as_str())?.as_str() {
                "drop" => RuleAction::Drop,
                "tag" => RuleAction::Tag,
                _ => RuleAction::Off,
            },
        )
    }
}

/// The outcome for the message as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    Tag,
    Drop,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Tag => "tag",
            Action::Drop => "drop",
        }
    }
}

/// Which rule matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Spam,
    Virus,
    VirusUnverified,
    Spf,
    Dkim,
    DmarcReject,
    DmarcQuarantine,
    DmarcNone,
    DenyList,
    Size,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Spam => "spam",
            Rule::Virus => "virus",
            Rule::VirusUnverified => "virus_unverified",
            Rule::Spf => "spf",
            Rule::Dkim => "dkim",
            Rule::DmarcReject => "dmarc_reject",
            Rule::DmarcQuarantine => "dmarc_quarantine",
            Rule::DmarcNone => "dmarc_none",
            Rule::DenyList => "deny_list",
            Rule::Size => "size",
        }
    }
}

/// One matching rule and why it matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    pub rule: Rule,
    pub action: RuleAction,
    pub detail: String,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={} ({})",
            self.rule.as_str(),
            self.action.as_str(),
            self.detail
        )
    }
}

/// Whether the size rule could be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "bytes")]
pub enum SizeCheck {
    /// No maximum configured.
    NotConfigured,
    /// A maximum is configured but the size of this message is not known.
    Unknown,
    Checked(u64),
}

/// The policy's answer for one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    #[serde(serialize_with = "disposition_str")]
    pub disposition: Disposition,
    pub action: Action,
    /// Every rule that matched, in evaluation order (empty for a plain allow).
    pub reasons: Vec<Reason>,
    /// The allow-list entry (and the authenticated identity) that let the mail bypass the rules.
    pub allowed_by: Option<String>,
    pub size: SizeCheck,
}

impl Decision {
    /// `rule=action (detail)` joined by `; `, for one log field.
    pub fn reasons_text(&self) -> String {
        self.reasons
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn disposition_str<S: serde::Serializer>(d: &Disposition, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(d.as_str())
}

/// One allow/deny list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderPattern {
    /// `user@example.com` (also matches `user+label@example.com`).
    Address(String),
    /// `example.com` or `@example.com`: that domain exactly.
    Domain(String),
    /// `.example.com`: every subdomain of example.com, not example.com itself.
    Subdomains(String),
}

impl SenderPattern {
    pub fn parse(entry: &str) -> Option<SenderPattern> {
        let e = entry.trim().trim_matches(|c| c == '<' || c == '>');
        let e = e.to_ascii_lowercase();
        if e.is_empty() {
            return None;
        }
        if let Some(domain) = e.strip_prefix('@') {
            return (!domain.is_empty()).then(|| SenderPattern::Domain(domain.to_string()));
        }
        if let Some(domain) = e.strip_prefix('.') {
            return (!domain.is_empty()).then(|| SenderPattern::Subdomains(domain.to_string()));
        }
        if e.contains('@') {
            Some(SenderPattern::Address(e))
        } else {
            Some(SenderPattern::Domain(e))
        }
    }

    /// `addr` must already be bare and lowercase (see [`bare_address`]).
    pub fn matches(&self, addr: &str) -> bool {
        let Some((local, domain)) = addr.rsplit_once('@') else {
            return false;
        };
        match self {
            SenderPattern::Address(a) => {
                a == addr || format!("{}@{domain}", strip_label(local)) == *a
            }
            SenderPattern::Domain(d) => domain == d,
            SenderPattern::Subdomains(d) => domain
                .strip_suffix(d.as_str())
                .is_some_and(|rest| rest.ends_with('.')),
        }
    }

    fn text(&self) -> String {
        match self {
            SenderPattern::Address(a) => a.clone(),
            SenderPattern::Domain(d) => format!("@{d}"),
            SenderPattern::Subdomains(d) => format!(".{d}"),
        }
    }
}

/// `user+label` → `user`.
pub fn strip_label(local: &str) -> &str {
    local.split_once('+').map_or(local, |(base, _)| base)
}

/// The addr-spec of a header or envelope value, lowercased: `Jane <J@X.org>` → `j@x.org`.
/// `None` for the null sender and for values with no `@`.
pub fn bare_address(value: &str) -> Option<String> {
    let v = value.trim();
    let inner = match (v.rfind('<'), v.rfind('>')) {
        (Some(open), Some(close)) if close > open => &v[open + 1..close],
        _ => v,
    };
    let inner = inner.trim().trim_matches('"').to_ascii_lowercase();
    (inner.contains('@') && !inner.starts_with('@') && !inner.ends_with('@')).then_some(inner)
}

/// The variable that lists the mailboxes that exist: the bounce function bounces every other
/// recipient, and the api function delivers to none of them.
pub const MAILBOXES_VAR: &str = "MAILROOM_MAILBOXES";

/// One `MAILROOM_MAILBOXES` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mailbox {
    /// `user@example.com`; also receives `user+label@example.com`.
    Address { local: String, domain: String },
    /// `@example.com`: every address at that domain exists.
    Domain(String),
}

/// The recipients that exist. Matching is case-insensitive and ignores `+label`s.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mailboxes(Vec<Mailbox>);

impl Mailboxes {
    /// Entries `user@domain` or `@domain`; `None` names the first entry that is neither.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Mailboxes, String> {
        entries
            .iter()
            .map(|e| {
                let e = e.as_ref().trim().to_ascii_lowercase();
                match e.rsplit_once('@') {
                    Some(("", domain)) if !domain.is_empty() => {
                        Ok(Mailbox::Domain(domain.to_string()))
                    }
                    Some((local, domain)) if !local.is_empty() && !domain.is_empty() => {
                        Ok(Mailbox::Address {
                            local: strip_label(local).to_string(),
                            domain: domain.to_string(),
                        })
                    }
                    _ => Err(e),
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Mailboxes)
    }

    /// `MAILROOM_MAILBOXES`, when set: every function that acts for recipients (api, fanout,
    /// forward) reads the same list the bounce function gates on.
    pub fn from_env(env: &(impl Env + ?Sized)) -> Result<Option<Mailboxes>, ConfigError> {
        let entries = config::list(env, MAILBOXES_VAR);
        if entries.is_empty() {
            return Ok(None);
        }
        Mailboxes::parse(&entries)
            .map(Some)
            .map_err(|bad| ConfigError::Invalid {
                name: MAILBOXES_VAR.to_string(),
                value: bad,
                reason: "expected user@domain or @domain entries".to_string(),
            })
    }

    /// The recipients of `all` that exist (all of them when there is no list).
    pub fn existing<'a>(list: Option<&Mailboxes>, all: &'a [String]) -> Vec<&'a String> {
        all.iter()
            .filter(|r| list.is_none_or(|m| m.contains(r)))
            .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, recipient: &str) -> bool {
        let Some(addr) = bare_address(recipient) else {
            return false;
        };
        let Some((local, domain)) = addr.rsplit_once('@') else {
            return false;
        };
        let local = strip_label(local);
        self.0.iter().any(|m| match m {
            Mailbox::Address {
                local: l,
                domain: d,
            } => l == local && d == domain,
            Mailbox::Domain(d) => d == domain,
        })
    }
}

/// The variables [`FilterPolicy::from_env`] reads.
pub const ENV_VARS: &[&str] = &[
    "MAILROOM_STOP_SPAM",
    "MAILROOM_STOP_VIRUS",
    "MAILROOM_STOP_VIRUS_UNVERIFIED",
    "MAILROOM_STOP_SPF",
    "MAILROOM_STOP_DKIM",
    "MAILROOM_DMARC_REJECT",
    "MAILROOM_DMARC_QUARANTINE",
    "MAILROOM_DMARC_NONE",
    "MAILROOM_ALLOW_SENDERS",
    "MAILROOM_DENY_SENDERS",
    "MAILROOM_STOP_DENIED",
    "MAILROOM_MAX_SIZE",
    "MAILROOM_STOP_OVERSIZE",
    "MAILROOM_STOP_DISPOSITION",
];

/// The filter policy, read once from the environment (see the table in the stop crate's docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterPolicy {
    pub spam: RuleAction,
    pub virus: RuleAction,
    /// Virus verdict `GRAY`, `PROCESSING_FAILED` or unknown: the scan ran and could not conclude.
    /// `DISABLED` and a missing verdict mean no scan ran and never trigger it.
    pub virus_unverified: RuleAction,
    pub spf: RuleAction,
    pub dkim: RuleAction,
    pub dmarc_reject: RuleAction,
    pub dmarc_quarantine: RuleAction,
    /// DMARC `FAIL` with policy `none`, or with no or an unknown policy reported.
    pub dmarc_none: RuleAction,
    pub allow: Vec<SenderPattern>,
    pub deny: Vec<SenderPattern>,
    pub deny_action: RuleAction,
    /// Bytes; `None` = no limit.
    pub max_size: Option<u64>,
    pub size_action: RuleAction,
    /// What a drop returns: `STOP_RULE_SET` (default) or `STOP_RULE`.
    pub drop_disposition: Disposition,
}

impl Default for FilterPolicy {
    fn default() -> Self {
        FilterPolicy {
            spam: RuleAction::Drop,
            virus: RuleAction::Drop,
            virus_unverified: RuleAction::Off,
            spf: RuleAction::Tag,
            dkim: RuleAction::Off,
            dmarc_reject: RuleAction::Drop,
            dmarc_quarantine: RuleAction::Tag,
            dmarc_none: RuleAction::Off,
            allow: Vec::new(),
            deny: Vec::new(),
            deny_action: RuleAction::Drop,
            max_size: None,
            size_action: RuleAction::Drop,
            drop_disposition: Disposition::StopRuleSet,
        }
    }
}

impl FilterPolicy {
    /// Reads every `MAILROOM_STOP_*`, `MAILROOM_DMARC_*`, `MAILROOM_ALLOW_SENDERS`,
    /// `MAILROOM_DENY_SENDERS` and `MAILROOM_MAX_SIZE` variable; unset ones take the defaults of
    /// [`FilterPolicy::default`].
    pub fn from_env(env: &(impl Env + ?Sized)) -> Result<FilterPolicy, ConfigError> {
        let d = FilterPolicy::default();
        let patterns = |name: &str| -> Result<Vec<SenderPattern>, ConfigError> {
            config::list(env, name)
                .iter()
                .map(|e| {
                    SenderPattern::parse(e).ok_or_else(|| ConfigError::Invalid {
                        name: name.to_string(),
                        value: e.clone(),
                        reason: "expected user@domain, domain, @domain or .domain".to_string(),
                    })
                })
                .collect()
        };
        let max_size = match config::optional(env, "MAILROOM_MAX_SIZE") {
            None => None,
            Some(v) => Some(parse_size(&v).ok_or_else(|| ConfigError::Invalid {
                name: "MAILROOM_MAX_SIZE".to_string(),
                value: v.clone(),
                reason: "expected a byte count such as 10485760, 10MB or 512KB".to_string(),
            })?),
        };
        let drop_disposition = match config::choice(
            env,
            "MAILROOM_STOP_DISPOSITION",
            &["stop_rule_set", "stop_rule"],
            "stop_rule_set",
        )?
        .as_str()
        {
            "stop_rule" => Disposition::StopRule,
            _ => Disposition::StopRuleSet,
        };
        Ok(FilterPolicy {
            spam: RuleAction::from_env(env, "MAILROOM_STOP_SPAM", d.spam)?,
            virus: RuleAction::from_env(env, "MAILROOM_STOP_VIRUS", d.virus)?,
            virus_unverified: RuleAction::from_env(
                env,
                "MAILROOM_STOP_VIRUS_UNVERIFIED",
                d.virus_unverified,
            )?,
            spf: RuleAction::from_env(env, "MAILROOM_STOP_SPF", d.spf)?,
            dkim: RuleAction::from_env(env, "MAILROOM_STOP_DKIM", d.dkim)?,
            dmarc_reject: RuleAction::from_env(env, "MAILROOM_DMARC_REJECT", d.dmarc_reject)?,
            dmarc_quarantine: RuleAction::from_env(
                env,
                "MAILROOM_DMARC_QUARANTINE",
                d.dmarc_quarantine,
            )?,
            dmarc_none: RuleAction::from_env(env, "MAILROOM_DMARC_NONE", d.dmarc_none)?,
            allow: patterns("MAILROOM_ALLOW_SENDERS")?,
            deny: patterns("MAILROOM_DENY_SENDERS")?,
            deny_action: RuleAction::from_env(env, "MAILROOM_STOP_DENIED", d.deny_action)?,
            max_size,
            size_action: RuleAction::from_env(env, "MAILROOM_STOP_OVERSIZE", d.size_action)?,
            drop_disposition,
        })
    }

    /// [`FilterPolicy::evaluate_with_size`] without a known size.
    pub fn evaluate(&self, msg: &SesMessage) -> Decision {
        self.evaluate_with_size(msg, None)
    }

    pub fn evaluate_with_size(&self, msg: &SesMessage, size: Option<u64>) -> Decision {
        let r = &msg.receipt;
        let envelope = bare_address(&msg.mail.source);
        let from = header_from(msg);
        let mut reasons = Vec::new();
        let mut push = |rule: Rule, action: RuleAction, detail: String| {
            if action != RuleAction::Off {
                reasons.push(Reason {
                    rule,
                    action,
                    detail,
                });
            }
        };

        if r.virus() == Some(&Verdict::Fail) {
            push(Rule::Virus, self.virus, "virus verdict FAIL".to_string());
        }
        if let Some(v @ (Verdict::Gray | Verdict::ProcessingFailed | Verdict::Other(_))) = r.virus()
        {
            push(
                Rule::VirusUnverified,
                self.virus_unverified,
                format!("virus verdict {v}"),
            );
        }

        let allowed_by = self.allowed_by(msg, envelope.as_deref(), from.as_deref());
        let size_check = match (self.max_size, size) {
            (None, _) => SizeCheck::NotConfigured,
            (Some(_), None) => SizeCheck::Unknown,
            (Some(_), Some(n)) => SizeCheck::Checked(n),
        };

        if allowed_by.is_none() {
            if r.spam() == Some(&Verdict::Fail) {
                push(Rule::Spam, self.spam, "spam verdict FAIL".to_string());
            }
            if r.spf() == Some(&Verdict::Fail) {
                push(
                    Rule::Spf,
                    self.spf,
                    format!(
                        "SPF FAIL for envelope sender {}",
                        envelope.as_deref().unwrap_or("<>")
                    ),
                );
            }
            if r.dkim() == Some(&Verdict::Fail) {
                push(Rule::Dkim, self.dkim, "DKIM verdict FAIL".to_string());
            }
            if r.dmarc() == Some(&Verdict::Fail) {
                let (rule, action) = match &r.dmarc_policy {
                    Some(DmarcPolicy::Reject) => (Rule::DmarcReject, self.dmarc_reject),
                    Some(DmarcPolicy::Quarantine) => (Rule::DmarcQuarantine, self.dmarc_quarantine),
                    // No or an unrecognised policy: the sender asked for nothing stronger than none.
                    _ => (Rule::DmarcNone, self.dmarc_none),
                };
                push(
                    rule,
                    action,
                    format!(
                        "DMARC FAIL, sender policy {}",
                        r.dmarc_policy
                            .as_ref()
                            .map_or("(none given)", |p| p.as_str())
                    ),
                );
            }
            let denied = [("envelope sender", &envelope), ("From", &from)]
                .into_iter()
                .find_map(|(what, addr)| {
                    let addr = addr.as_deref()?;
                    self.deny
                        .iter()
                        .find(|p| p.matches(addr))
                        .map(|p| format!("{what} {addr} matches deny entry {}", p.text()))
                });
            if let Some(detail) = denied {
                push(Rule::DenyList, self.deny_action, detail);
            }
            if let (Some(max), Some(n)) = (self.max_size, size)
                && n > max
            {
                push(
                    Rule::Size,
                    self.size_action,
                    format!("{n} bytes exceeds the maximum of {max}"),
                );
            }
        }

        let action = if reasons.iter().any(|r| r.action == RuleAction::Drop) {
            Action::Drop
        } else if reasons.iter().any(|r| r.action == RuleAction::Tag) {
            Action::Tag
        } else {
            Action::Allow
        };
        Decision {
            disposition: if action == Action::Drop {
                self.drop_disposition
            } else {
                Disposition::Continue
            },
            action,
            reasons,
            allowed_by,
            size: size_check,
        }
    }

    /// The allow entry that matches an authenticated sender identity, described for the log.
    fn allowed_by(
        &self,
        msg: &SesMessage,
        envelope: Option<&str>,
        from: Option<&str>,
    ) -> Option<String> {
        let r = &msg.receipt;
        let candidates = [
            (
                r.spf() == Some(&Verdict::Pass),
                "envelope sender (SPF PASS)",
                envelope,
            ),
            (r.dmarc() == Some(&Verdict::Pass), "From (DMARC PASS)", from),
        ];
        candidates
            .into_iter()
            .find_map(|(authenticated, what, addr)| {
                let addr = addr.filter(|_| authenticated)?;
                self.allow
                    .iter()
                    .find(|p| p.matches(addr))
                    .map(|p| format!("{what} {addr} matches allow entry {}", p.text()))
            })
    }
}

/// The first From address: `commonHeaders.from`, else the raw `From` header.
pub fn header_from(msg: &SesMessage) -> Option<String> {
    msg.mail
        .common_headers
        .from
        .as_ref()
        .and_then(|v| v.iter().find_map(|f| bare_address(f)))
        .or_else(|| {
            msg.mail
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("from"))
                .and_then(|h| bare_address(&h.value))
        })
}

/// `1048576`, `512KB`, `10MB`, `1GB` (binary multiples, case-insensitive, optional `iB`/`B`).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(digits_end);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ses::{SesEvent, VerdictStatus};

    fn msg() -> SesMessage {
        let json = r#"{"Records":[{"eventSource":"aws:ses","eventVersion":"1.0","ses":{
            "mail":{"timestamp":"2025-01-15T10:00:02.028Z","source":"bounce+abc=sender@example.net",
                    "messageId":"m1","destination":["support@example.com"],"headersTruncated":false,
                    "headers":[{"name":"From","value":"Jane Sender <sender@example.net>"}],
                    "commonHeaders":{"from":["Jane Sender <Sender@Example.net>"],"subject":"x"}},
            "receipt":{"timestamp":"2025-01-15T10:00:02.028Z","processingTimeMillis":512,
                    "recipients":["support@example.com"],
                    "spamVerdict":{"status":"PASS"},"virusVerdict":{"status":"PASS"},
                    "spfVerdict":{"status":"PASS"},"dkimVerdict":{"status":"PASS"},
                    "dmarcVerdict":{"status":"PASS"},
                    "action":{"type":"Lambda","invocationType":"RequestResponse"}}}}]}"#;
        let ev: SesEvent = serde_json::from_str(json).expect("fixture parses");
        ev.records.into_iter().next().expect("one record").ses
    }

    fn set(v: &mut Option<VerdictStatus>, s: &str) {
        *v = Some(VerdictStatus {
            status: Verdict::parse(s),
        });
    }

    fn policy(env: &[(&str, &str)]) -> FilterPolicy {
        FilterPolicy::from_env(env).expect("valid policy")
    }

    #[test]
    fn clean_mail_is_allowed_with_no_reasons() {
        let d = policy(&[]).evaluate(&msg());
        assert_eq!(d.action, Action::Allow);
        assert_eq!(d.disposition, Disposition::Continue);
        assert!(d.reasons.is_empty());
        assert_eq!(d.size, SizeCheck::NotConfigured);
    }

    #[test]
    fn spam_fail_drops_with_stop_rule_set_by_default() {
        let mut m = msg();
        set(&mut m.receipt.spam_verdict, "FAIL");
        let d = policy(&[]).evaluate(&m);
        assert_eq!(d.action, Action::Drop);
        assert_eq!(d.disposition, Disposition::StopRuleSet);
        assert_eq!(d.reasons[0].rule, Rule::Spam);
        let d = policy(&[("MAILROOM_STOP_DISPOSITION", "STOP_RULE")]).evaluate(&m);
        assert_eq!(d.disposition, Disposition::StopRule);
    }

    #[test]
    fn tag_mode_continues_and_keeps_the_reason() {
        let mut m = msg();
        set(&mut m.receipt.spam_verdict, "FAIL");
        let d = policy(&[("MAILROOM_STOP_SPAM", "tag")]).evaluate(&m);
        assert_eq!(d.action, Action::Tag);
        assert_eq!(d.disposition, Disposition::Continue);
        assert_eq!(d.reasons_text(), "spam=tag (spam verdict FAIL)");
        let d = policy(&[("MAILROOM_STOP_SPAM", "off")]).evaluate(&m);
        assert_eq!(d.action, Action::Allow);
    }

    #[test]
    fn odd_verdicts_never_trigger_verdict_rules() {
        for odd in ["GRAY", "PROCESSING_FAILED", "DISABLED", "BRAND_NEW"] {
            let mut m = msg();
            for v in [
                &mut m.receipt.spam_verdict,
                &mut m.receipt.spf_verdict,
                &mut m.receipt.dkim_verdict,
                &mut m.receipt.dmarc_verdict,
            ] {
                set(v, odd);
            }
            m.receipt.virus_verdict = None;
            let strict = policy(&[
                ("MAILROOM_STOP_SPF", "drop"),
                ("MAILROOM_STOP_DKIM", "drop"),
                ("MAILROOM_DMARC_NONE", "drop"),
            ]);
            assert_eq!(strict.evaluate(&m).action, Action::Allow, "{odd}");
        }
    }

    #[test]
    fn unverified_virus_scan_is_its_own_rule_and_disabled_never_counts() {
        let p = policy(&[("MAILROOM_STOP_VIRUS_UNVERIFIED", "drop")]);
        let mut m = msg();
        set(&mut m.receipt.virus_verdict, "PROCESSING_FAILED");
        assert_eq!(p.evaluate(&m).reasons[0].rule, Rule::VirusUnverified);
        set(&mut m.receipt.virus_verdict, "DISABLED");
        assert_eq!(p.evaluate(&m).action, Action::Allow);
        m.receipt.virus_verdict = None;
        assert_eq!(p.evaluate(&m).action, Action::Allow);
    }

    #[test]
    fn dmarc_policy_selects_the_rule() {
        let p = policy(&[]);
        let mut m = msg();
        set(&mut m.receipt.dmarc_verdict, "FAIL");
        m.receipt.dmarc_policy = Some(DmarcPolicy::Reject);
        let d = p.evaluate(&m);
        assert_eq!(
            (d.action, d.reasons[0].rule),
            (Action::Drop, Rule::DmarcReject)
        );
        m.receipt.dmarc_policy = Some(DmarcPolicy::Quarantine);
        let d = p.evaluate(&m);
        assert_eq!(
            (d.action, d.reasons[0].rule),
            (Action::Tag, Rule::DmarcQuarantine)
        );
        m.receipt.dmarc_policy = Some(DmarcPolicy::None);
        assert_eq!(p.evaluate(&m).action, Action::Allow);
        m.receipt.dmarc_policy = None;
        let d = policy(&[("MAILROOM_DMARC_NONE", "tag")]).evaluate(&m);
        assert_eq!(d.reasons[0].rule, Rule::DmarcNone);
        let d = policy(&[("MAILROOM_DMARC_REJECT", "off")]).evaluate(&{
            let mut m = m.clone();
            m.receipt.dmarc_policy = Some(DmarcPolicy::Reject);
            m
        });
        assert_eq!(d.action, Action::Allow);
    }

    #[test]
    fn deny_list_matches_envelope_or_from_by_address_domain_or_subdomain() {
        let m = msg();
        for entry in [
            "sender@example.net",
            "example.net",
            "@EXAMPLE.net",
            "bounce@example.net",
        ] {
            let d = policy(&[("MAILROOM_DENY_SENDERS", entry)]).evaluate(&m);
            assert_eq!(d.action, Action::Drop, "{entry}");
            assert_eq!(d.reasons[0].rule, Rule::DenyList);
        }
        for entry in [".example.net", "other@example.net", "example.org"] {
            let d = policy(&[("MAILROOM_DENY_SENDERS", entry)]).evaluate(&m);
            assert_eq!(d.action, Action::Allow, "{entry}");
        }
        let mut sub = msg();
        sub.mail.source = "x@mail.example.net".into();
        let d = policy(&[("MAILROOM_DENY_SENDERS", ".example.net")]).evaluate(&sub);
        assert_eq!(d.action, Action::Drop);
    }

    #[test]
    fn authenticated_allow_bypasses_spam_and_deny_but_never_virus() {
        let env = [
            ("MAILROOM_ALLOW_SENDERS", "example.net"),
            ("MAILROOM_DENY_SENDERS", "example.net"),
        ];
        let mut m = msg();
        set(&mut m.receipt.spam_verdict, "FAIL");
        let d = policy(&env).evaluate(&m);
        assert_eq!(d.action, Action::Allow);
        assert!(d.allowed_by.as_deref().unwrap_or("").contains("SPF PASS"));

        set(&mut m.receipt.virus_verdict, "FAIL");
        let d = policy(&env).evaluate(&m);
        assert_eq!(d.action, Action::Drop);
        assert_eq!(d.reasons.len(), 1);
        assert_eq!(d.reasons[0].rule, Rule::Virus);
    }

    #[test]
    fn unauthenticated_allow_match_gains_nothing() {
        let mut m = msg();
        set(&mut m.receipt.spam_verdict, "FAIL");
        set(&mut m.receipt.spf_verdict, "FAIL");
        set(&mut m.receipt.dmarc_verdict, "GRAY");
        let d = policy(&[("MAILROOM_ALLOW_SENDERS", "example.net")]).evaluate(&m);
        assert_eq!(d.allowed_by, None);
        assert_eq!(d.action, Action::Drop);
        // DMARC PASS on the From domain is enough on its own.
        set(&mut m.receipt.dmarc_verdict, "PASS");
        let d = policy(&[("MAILROOM_ALLOW_SENDERS", "sender@example.net")]).evaluate(&m);
        assert!(d.allowed_by.as_deref().unwrap_or("").contains("DMARC PASS"));
        assert_eq!(d.action, Action::Allow);
    }

    #[test]
    fn size_rule_applies_only_when_the_size_is_known() {
        let p = policy(&[("MAILROOM_MAX_SIZE", "1KB")]);
        assert_eq!(p.evaluate(&msg()).size, SizeCheck::Unknown);
        assert_eq!(p.evaluate(&msg()).action, Action::Allow);
        let d = p.evaluate_with_size(&msg(), Some(1025));
        assert_eq!((d.action, d.size), (Action::Drop, SizeCheck::Checked(1025)));
        assert_eq!(
            p.evaluate_with_size(&msg(), Some(1024)).action,
            Action::Allow
        );
    }

    #[test]
    fn config_errors_name_the_variable() {
        for (k, v) in [
            ("MAILROOM_STOP_SPAM", "maybe"),
            ("MAILROOM_MAX_SIZE", "ten"),
            ("MAILROOM_DENY_SENDERS", "@"),
            ("MAILROOM_STOP_DISPOSITION", "continue"),
        ] {
            let e = FilterPolicy::from_env(&[(k, v)]).expect_err(k);
            assert!(e.to_string().contains(k), "{e}");
        }
    }

    #[test]
    fn addresses_and_sizes_parse() {
        assert_eq!(
            bare_address("\"Jane\" <Jane@Example.NET>").as_deref(),
            Some("jane@example.net")
        );
        assert_eq!(bare_address("<>"), None);
        assert_eq!(bare_address(""), None);
        assert_eq!(parse_size("10MB"), Some(10 << 20));
        assert_eq!(parse_size("512 kib"), Some(512 << 10));
        assert_eq!(parse_size("7"), Some(7));
        assert_eq!(parse_size("7 parsecs"), None);
        assert_eq!(parse_size("99999999999999999999GB"), None);
    }
}
