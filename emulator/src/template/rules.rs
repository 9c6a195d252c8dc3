//! The SES part of the template: the `AWS::SES::ReceiptRule` resources of one rule set, in the
//! order SES would hold them, and the `Environment.Variables` of the functions their Lambda
//! actions name, all read through the [`super::intrinsics`] evaluator.

use super::intrinsics::{Template, get, scalar_string};
use super::{FunctionDef, Loaded, TemplateError, err};
use crate::receipt::{
    Action, Cidr, InvocationType, IpFilter, Policy, Rule, RuleSet, SnsEncoding, TlsPolicy,
};
use serde_yaml_ng::Value;
use std::collections::{BTreeMap, HashMap};

impl Template<'_> {
    pub(super) fn load(&self) -> Result<Loaded, TemplateError> {
        let sets = self.resource_ids_of("AWS::SES::ReceiptRuleSet");
        let set_id = match (&self.options.rule_set, sets.as_slice()) {
            (_, []) => {
                return Err(err(
                    "Resources",
                    "no AWS::SES::ReceiptRuleSet resource: nothing to emulate",
                ));
            }
            (None, [one]) => (*one).to_string(),
            (None, many) => {
                return Err(err(
                    "Resources",
                    format!(
                        "several rule sets ({}): choose one with --rule-set",
                        many.join(", ")
                    ),
                ));
            }
            (Some(want), all) => {
                let mut found = None;
                for id in all {
                    if *id == want || self.ref_value(id, "")?.as_str() == Some(want.as_str()) {
                        found = Some((*id).to_string());
                    }
                }
                found.ok_or_else(|| {
                    err(
                        "--rule-set",
                        format!("no rule set {want:?} (have {})", all.join(", ")),
                    )
                })?
            }
        };
        let set_name = self.ref_value(&set_id, &format!("Resources.{set_id}"))?;
        let set_name = set_name.as_str().unwrap_or(&set_id).to_string();

        // (logical id, rule, After) for each rule of this set, in template order.
        let mut rules: Vec<(String, Rule, Option<String>)> = Vec::new();
        let mut functions = BTreeMap::new();
        for id in self.resource_ids_of("AWS::SES::ReceiptRule") {
            let at = format!("Resources.{id}.Properties");
            let props = self
                .resource(id)
                .and_then(|r| get(r, "Properties"))
                .ok_or_else(|| err(&at, "missing"))?;
            let set = self.resolve(
                get(props, "RuleSetName").ok_or_else(|| err(&at, "RuleSetName is required"))?,
                &format!("{at}.RuleSetName"),
            )?;
            if set.as_str() != Some(set_name.as_str()) {
                continue;
            }
            let after = match get(props, "After") {
                Some(v) => Some(
                    self.resolve(v, &format!("{at}.After"))?
                        .as_str()
                        .map(str::to_string)
                        .ok_or_else(|| err(&format!("{at}.After"), "must be a rule name"))?,
                ),
                None => None,
            };
            let rule_value = self.resolve(
                get(props, "Rule").ok_or_else(|| err(&at, "Rule is required"))?,
                &format!("{at}.Rule"),
            )?;
            let rule = parse_rule(&rule_value, &format!("{at}.Rule"))?;
            for action in &rule.actions {
                if let Action::Lambda { function_arn, .. } = action
                    && !functions.contains_key(function_arn)
                {
                    let def = self.function_for_arn(function_arn, &format!("{at}.Rule"))?;
                    functions.insert(function_arn.clone(), def);
                }
            }
            rules.push((id.to_string(), rule, after));
        }
        let rules = order_rules(rules)?;
        let rule_set = RuleSet {
            name: set_name,
            rules,
        };
        rule_set
            .validate()
            .map_err(|e| err(&format!("Resources.{set_id}"), e.to_string()))?;
        Ok(Loaded {
            rule_set,
            functions,
            region: self.options.region.clone(),
            filters: self.receipt_filters()?,
        })
    }

    /// The receipt filters this deployment would create: those without a `Condition` and those
    /// whose condition holds. They belong to the account, not to a rule set (docs/ses.md §5.5).
    fn receipt_filters(&self) -> Result<Vec<IpFilter>, TemplateError> {
        let mut filters = Vec::new();
        for id in self.resource_ids_of("AWS::SES::ReceiptFilter") {
            let res = self.resource(id).unwrap_or(&Value::Null);
            let at = format!("Resources.{id}");
            if let Some(cond) = get(res, "Condition") {
                let cond = scalar_string(cond).ok_or_else(|| err(&at, "bad Condition"))?;
                if !self.condition(&cond, &at, 0)? {
                    continue;
                }
            }
            let at = format!("{at}.Properties.Filter");
            let filter = self.resolve(
                get(res, "Properties")
                    .and_then(|p| get(p, "Filter"))
                    .ok_or_else(|| err(&at, "is required"))?,
                &at,
            )?;
            let ip = get(&filter, "IpFilter").unwrap_or(&Value::Null);
            let policy = required(ip, "Policy", &format!("{at}.IpFilter"))?;
            let cidr = required(ip, "Cidr", &format!("{at}.IpFilter"))?;
            filters.push(IpFilter {
                // CloudFormation makes a name up when there is none; the logical id stands in.
                name: str_field(&filter, "Name").unwrap_or_else(|| id.to_string()),
                policy: policy
                    .parse::<Policy>()
                    .map_err(|e| err(&format!("{at}.IpFilter.Policy"), e))?,
                cidr: cidr
                    .parse::<Cidr>()
                    .map_err(|e| err(&format!("{at}.IpFilter.Cidr"), e.to_string()))?,
            });
        }
        Ok(filters)
    }

    fn function_for_arn(&self, arn: &str, at: &str) -> Result<FunctionDef, TemplateError> {
        let found = self
            .resources
            .iter()
            .filter_map(|(k, _)| k.as_str())
            .filter(|id| {
                matches!(
                    self.resource_type(id),
                    "AWS::Serverless::Function" | "AWS::Lambda::Function"
                )
            })
            .find(|id| self.function_arn(id) == arn);
        let Some(id) = found else {
            return Err(err(
                at,
                format!(
                    "Lambda action calls {arn}, which is not a function of this template; the emulator runs only the template's own functions"
                ),
            ));
        };
        let res = self.resource(id).unwrap_or(&Value::Null);
        let props = get(res, "Properties").unwrap_or(&Value::Null);
        let binary = get(res, "Metadata")
            .and_then(|m| get(m, "BuildProperties"))
            .and_then(|b| get(b, "Binary"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| {
                get(props, "CodeUri")
                    .and_then(Value::as_str)
                    .and_then(|c| c.trim_end_matches('/').rsplit('/').next())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| id.trim_end_matches("Function").to_ascii_lowercase());
        let mut env = HashMap::new();
        let own = get(props, "Environment").and_then(|e| get(e, "Variables"));
        for (source, label) in [(self.globals_env, "Globals.Function"), (own, id)] {
            let Some(vars) = source else { continue };
            let at = format!("{label}.Environment.Variables");
            let resolved = self.resolve(vars, &at)?;
            for (k, v) in resolved.as_mapping().into_iter().flatten() {
                let (Some(k), Some(v)) = (k.as_str(), scalar_string(v)) else {
                    return Err(err(&at, "variables must be strings"));
                };
                env.insert(k.to_string(), v);
            }
        }
        let invoke = get(props, "EventInvokeConfig");
        let at = format!("{id}.Properties.EventInvokeConfig");
        let max_retries = match invoke.and_then(|i| get(i, "MaximumRetryAttempts")) {
            Some(v) => self
                .resolve_str(v, &at)?
                .parse::<u32>()
                .ok()
                .filter(|n| *n <= 2)
                .ok_or_else(|| err(&at, "MaximumRetryAttempts is 0, 1 or 2"))?,
            None => 2,
        };
        let on_failure = match invoke
            .and_then(|i| get(i, "DestinationConfig"))
            .and_then(|d| get(d, "OnFailure"))
            .and_then(|o| get(o, "Destination"))
        {
            Some(v) => Some(self.resolve_str(v, &at)?),
            None => None,
        };
        Ok(FunctionDef {
            logical_id: id.to_string(),
            binary,
            env,
            max_retries,
            on_failure,
        })
    }
}

fn bool_field(rule: &Value, key: &str, at: &str) -> Result<bool, TemplateError> {
    match get(rule, key) {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => match scalar_string(v).map(|s| s.to_ascii_lowercase()).as_deref() {
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            _ => Err(err(&format!("{at}.{key}"), "expected true or false")),
        },
    }
}

fn str_field(v: &Value, key: &str) -> Option<String> {
    get(v, key).and_then(scalar_string)
}

fn required(v: &Value, key: &str, at: &str) -> Result<String, TemplateError> {
    str_field(v, key).ok_or_else(|| err(&format!("{at}.{key}"), "is required"))
}

fn parse_rule(v: &Value, at: &str) -> Result<Rule, TemplateError> {
    let name = required(v, "Name", at)?;
    let tls_policy = match str_field(v, "TlsPolicy").as_deref() {
        None | Some("Optional") => TlsPolicy::Optional,
        Some("Require") => TlsPolicy::Require,
        Some(other) => {
            return Err(err(
                &format!("{at}.TlsPolicy"),
                format!("{other:?} is not Optional or Require"),
            ));
        }
    };
    let recipients = match get(v, "Recipients") {
        None => Vec::new(),
        Some(Value::Sequence(s)) => s.iter().filter_map(scalar_string).collect(),
        Some(other) => scalar_string(other).into_iter().collect(),
    };
    let mut actions = Vec::new();
    for (i, a) in get(v, "Actions")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .enumerate()
    {
        actions.push(parse_action(a, &format!("{at}.Actions[{i}]"))?);
    }
    Ok(Rule {
        enabled: bool_field(v, "Enabled", at)?,
        scan_enabled: bool_field(v, "ScanEnabled", at)?,
        name,
        tls_policy,
        recipients,
        actions,
    })
}

fn parse_action(v: &Value, at: &str) -> Result<Action, TemplateError> {
    let m = v
        .as_mapping()
        .filter(|m| m.len() == 1)
        .ok_or_else(|| err(at, "each action is a mapping with exactly one action key"))?;
    let Some((Value::String(kind), a)) = m.iter().next() else {
        return Err(err(
            at,
            "each action is a mapping with exactly one action key",
        ));
    };
    let at = format!("{at}.{kind}");
    let at = at.as_str();
    let topic = str_field(a, "TopicArn");
    Ok(match kind.as_str() {
        "S3Action" => Action::S3 {
            bucket: required(a, "BucketName", at)?,
            prefix: str_field(a, "ObjectKeyPrefix").unwrap_or_default(),
            topic_arn: topic,
            kms_key_arn: str_field(a, "KmsKeyArn"),
        },
        "LambdaAction" => Action::Lambda {
            function_arn: required(a, "FunctionArn", at)?,
            invocation_type: match str_field(a, "InvocationType").as_deref() {
                None | Some("Event") => InvocationType::Event,
                Some("RequestResponse") => InvocationType::RequestResponse,
                Some(other) => {
                    return Err(err(
                        at,
                        format!("InvocationType {other:?} is not Event or RequestResponse"),
                    ));
                }
            },
            topic_arn: topic,
        },
        "SNSAction" => Action::Sns {
            topic_arn: required(a, "TopicArn", at)?,
            encoding: match str_field(a, "Encoding").as_deref() {
                None | Some("UTF-8") => SnsEncoding::Utf8,
                Some("Base64") => SnsEncoding::Base64,
                Some(other) => {
                    return Err(err(
                        at,
                        format!("Encoding {other:?} is not UTF-8 or Base64"),
                    ));
                }
            },
        },
        "BounceAction" => Action::Bounce {
            smtp_reply_code: required(a, "SmtpReplyCode", at)?,
            status_code: str_field(a, "StatusCode"),
            message: required(a, "Message", at)?,
            sender: required(a, "Sender", at)?,
            topic_arn: topic,
        },
        "StopAction" => {
            let scope = required(a, "Scope", at)?;
            if scope != "RuleSet" {
                return Err(err(
                    at,
                    format!("Scope {scope:?}: RuleSet is the only scope"),
                ));
            }
            Action::Stop { topic_arn: topic }
        }
        "AddHeaderAction" => Action::AddHeader {
            name: required(a, "HeaderName", at)?,
            value: required(a, "HeaderValue", at)?,
        },
        "WorkmailAction" => Action::Workmail {
            organization_arn: required(a, "OrganizationArn", at)?,
            topic_arn: topic,
        },
        other => {
            return Err(err(
                at,
                format!("action {other} is not supported by the emulator"),
            ));
        }
    })
}

/// Orders rules as SES would after CloudFormation created them: `After: X` places a rule right
/// after rule `X`, ahead of any rule already placed after `X` (as SES's own `After` does); rules
/// without `After` come first, in template order (CloudFormation creates independent resources
/// in no fixed order, so a set that needs an order must say `After`).
fn order_rules(rules: Vec<(String, Rule, Option<String>)>) -> Result<Vec<Rule>, TemplateError> {
    let names: Vec<String> = rules.iter().map(|(_, r, _)| r.name.clone()).collect();
    let mut ordered: Vec<Rule> = Vec::new();
    let mut pending = rules;
    for (id, _, after) in &pending {
        if let Some(a) = after
            && !names.contains(a)
        {
            return Err(err(
                &format!("Resources.{id}.Properties.After"),
                format!("no rule named {a:?} in this rule set"),
            ));
        }
    }
    // Heads first, then repeatedly place the rules whose predecessor is placed.
    let mut heads = Vec::new();
    pending.retain(|(_, r, after)| {
        if after.is_none() {
            heads.push(r.clone());
            false
        } else {
            true
        }
    });
    ordered.extend(heads);
    while !pending.is_empty() {
        let before = pending.len();
        let mut i = 0;
        while i < pending.len() {
            let after = pending[i].2.clone().unwrap_or_default();
            if let Some(pos) = ordered.iter().position(|r| r.name == after) {
                let (_, rule, _) = pending.remove(i);
                // Right after the predecessor: a rule placed after it earlier moves down one.
                ordered.insert(pos + 1, rule);
            } else {
                i += 1;
            }
        }
        if pending.len() == before {
            let ids: Vec<&str> = pending.iter().map(|(id, _, _)| id.as_str()).collect();
            return Err(err(
                "Resources",
                format!("rules {} form an After cycle", ids.join(", ")),
            ));
        }
    }
    Ok(ordered)
}
