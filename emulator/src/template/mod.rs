//! The template reader: what the emulator takes from `template.yaml`, in two stages.
//!
//! - `intrinsics`: a CloudFormation evaluator (parameters, pseudo parameters, conditions and
//!   the intrinsic functions), knowing nothing about SES;
//! - `rules`: the SES part, the `AWS::SES::ReceiptRule` resources of one rule set and the
//!   functions their Lambda actions name, read through the evaluator.
//!
//! Physical names are made up the way CloudFormation would, from the stack name and logical id
//! (`mailroom-RawMailBucket` lowercased for buckets), with a fixed fake account and Region.

mod intrinsics;
mod rules;

use crate::receipt::{IpFilter, RuleSet};
use intrinsics::Template;
use serde_yaml_ng::Value;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub const DEFAULT_REGION: &str = "us-east-1";
pub const DEFAULT_ACCOUNT: &str = "123456789012";
pub const DEFAULT_STACK: &str = "mailroom";
/// Placeholder for `AWS::NoValue`: dropped from the enclosing list or mapping.
const NO_VALUE: &str = "\u{0}AWS::NoValue";

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not valid YAML: {source}")]
    Yaml {
        path: String,
        source: serde_yaml_ng::Error,
    },
    #[error("template {at}: {reason}")]
    At { at: String, reason: String },
}

fn err(at: &str, reason: impl Into<String>) -> TemplateError {
    TemplateError::At {
        at: at.to_string(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    /// `--param Key=Value` overrides of template parameters.
    pub params: HashMap<String, String>,
    /// Which `AWS::SES::ReceiptRuleSet` (logical id or name) when the template has several.
    pub rule_set: Option<String>,
    pub region: String,
    pub account: String,
    pub stack: String,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            params: HashMap::new(),
            rule_set: None,
            region: DEFAULT_REGION.to_string(),
            account: DEFAULT_ACCOUNT.to_string(),
            stack: DEFAULT_STACK.to_string(),
        }
    }
}

/// A function a Lambda action invokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionDef {
    pub logical_id: String,
    /// Which of our functions: the cargo-lambda binary (`stop`, `bounce`, `store`, …).
    pub binary: String,
    /// Its environment: `Globals.Function` variables overlaid with its own, resolved.
    pub env: HashMap<String, String>,
    /// `EventInvokeConfig.MaximumRetryAttempts` (Lambda's default for async invocations: 2).
    pub max_retries: u32,
    /// `EventInvokeConfig.DestinationConfig.OnFailure.Destination`: an SQS queue or SNS topic ARN.
    pub on_failure: Option<String>,
}

/// What the emulator takes from a template.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub rule_set: RuleSet,
    /// By function ARN, as the Lambda actions name them.
    pub functions: BTreeMap<String, FunctionDef>,
    pub region: String,
    /// The `AWS::SES::ReceiptFilter`s the template creates with these parameters.
    pub filters: Vec<IpFilter>,
}

pub fn load_file(path: &Path, options: &Options) -> Result<Loaded, TemplateError> {
    let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load_str(&text, &path.display().to_string(), options)
}

pub fn load_str(text: &str, name: &str, options: &Options) -> Result<Loaded, TemplateError> {
    let root: Value = serde_yaml_ng::from_str(text).map_err(|source| TemplateError::Yaml {
        path: name.to_string(),
        source,
    })?;
    let t = Template::new(&root, options)?;
    t.load()
}

/// The whole template with every resource's `Properties` evaluated (parameters, conditions and
/// intrinsics resolved, `AWS::NoValue` dropped), as JSON: `{"Resources": {id: {"Type": …,
/// "Condition": …, "Created": …, "Properties": …}}, "Outputs": {name: value}}`, outputs whose
/// condition fails left out. A resource or output that cannot be evaluated carries `"Error"`
/// instead, so one unsupported intrinsic does not hide the rest.
pub fn show_file(path: &Path, options: &Options) -> Result<serde_json::Value, TemplateError> {
    let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let root: Value = serde_yaml_ng::from_str(&text).map_err(|source| TemplateError::Yaml {
        path: path.display().to_string(),
        source,
    })?;
    Ok(Template::new(&root, options)?.evaluated())
}

/// The project template's functions, read from the YAML as written: `Binary` by logical id, and
/// the functions that back a custom resource (its `ServiceToken`) rather than a Lambda action.
/// The tests compare the emulator's lists with these, so a function added to the template needs no
/// test edited.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn project_functions() -> (BTreeMap<String, String>, Vec<String>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let root: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let resources = root["Resources"].as_mapping().unwrap();
    let mut binaries = BTreeMap::new();
    let mut service_tokens = Vec::new();
    for (id, res) in resources {
        let id = id.as_str().unwrap().to_string();
        let kind = res["Type"].as_str().unwrap_or_default();
        if kind == "AWS::Serverless::Function" {
            let binary = res["Metadata"]["BuildProperties"]["Binary"].as_str();
            binaries.insert(id, binary.expect("every function has a Binary").to_string());
        } else if kind.starts_with("Custom::")
            && let Value::Tagged(token) = &res["Properties"]["ServiceToken"]
            && let Some(target) = token.value.as_str()
        {
            service_tokens.push(target.split('.').next().unwrap().to_string());
        }
    }
    (binaries, service_tokens)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::receipt::Action;

    fn project_template() -> Loaded {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
        load_file(&path, &Options::default()).unwrap()
    }

    #[test]
    fn loads_the_project_template() {
        let t = project_template();
        let names: Vec<&str> = t.rule_set.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["gate", "receive"]);
        assert_eq!(t.rule_set.name, "mailroom");
        let receive = &t.rule_set.rules[1];
        assert!(receive.enabled && receive.scan_enabled);
        assert_eq!(receive.recipients, vec!["example.com"]);
        assert_eq!(
            receive.actions[0],
            Action::S3 {
                bucket: "mailroom-rawmailbucket".into(),
                prefix: "raw/".into(),
                topic_arn: None,
                kms_key_arn: None
            }
        );
        // Every function of the template is run by a Lambda action, but for those that only
        // back a custom resource (activate-ruleset): the emulator loads exactly the former.
        let (all, service_tokens) = project_functions();
        assert!(!service_tokens.is_empty());
        let mut loaded: Vec<(&str, &str)> = t
            .functions
            .values()
            .map(|f| (f.logical_id.as_str(), f.binary.as_str()))
            .collect();
        loaded.sort_unstable();
        let want: Vec<(&str, &str)> = all
            .iter()
            .filter(|(id, _)| !service_tokens.contains(id))
            .map(|(id, b)| (id.as_str(), b.as_str()))
            .collect();
        assert_eq!(loaded, want);
        let bounce = t.functions.values().find(|f| f.binary == "bounce").unwrap();
        assert_eq!(
            bounce.env["MAILROOM_BOUNCE_SENDER"],
            "mailer-daemon@example.com"
        );
        assert_eq!(bounce.env["RUST_LOG"], "info", "Globals apply");
        let api = t.functions.values().find(|f| f.binary == "api").unwrap();
        assert_eq!(api.max_retries, 2);
        assert_eq!(
            api.on_failure.as_deref(),
            Some("arn:aws:sqs:us-east-1:123456789012:mailroom-InvocationDeadLetterQueue")
        );
        assert_eq!(
            api.env["MAILROOM_RETRY_QUEUE_URL"],
            "https://sqs.us-east-1.amazonaws.com/123456789012/mailroom-WebhookRetryQueue"
        );
    }

    #[test]
    fn parameters_override_and_are_checked() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
        let mut o = Options::default();
        o.params
            .insert("Recipients".into(), "a@x.org, .x.org".into());
        o.params.insert("DomainName".into(), "x.org".into());
        let t = load_file(&path, &o).unwrap();
        assert_eq!(t.rule_set.rules[0].recipients, vec!["a@x.org", ".x.org"]);
        o.params.insert("TlsPolicy".into(), "Sometimes".into());
        let e = load_file(&path, &o).unwrap_err().to_string();
        assert!(e.contains("Parameters.TlsPolicy"), "{e}");
        let mut o = Options::default();
        o.params.insert("Nope".into(), "1".into());
        assert!(
            load_file(&path, &o)
                .unwrap_err()
                .to_string()
                .contains("Nope")
        );
    }

    #[test]
    fn receipt_filters_follow_their_parameters_and_conditions() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
        assert!(project_template().filters.is_empty(), "none by default");
        let mut o = Options::default();
        o.params
            .insert("BlockedCidrs".into(), "0.0.0.0/0,2001:db8::/32".into());
        o.params.insert("AllowedCidrs".into(), "192.0.2.7".into());
        let t = load_file(&path, &o).unwrap();
        let got: Vec<String> = t.filters.iter().map(ToString::to_string).collect();
        assert_eq!(
            got,
            [
                "BlockFilter0 (Block 0.0.0.0/0)",
                "BlockFilter1 (Block 2001:db8::/32)",
                "AllowFilter0 (Allow 192.0.2.7/32)",
            ]
        );
        // Every entry the parameter admits gets its own filter.
        let ten: Vec<String> = (0..10).map(|i| format!("10.{i}.0.0/16")).collect();
        o.params.insert("BlockedCidrs".into(), ten.join(","));
        let t = load_file(&path, &o).unwrap();
        let blocks = t
            .filters
            .iter()
            .filter(|f| f.policy == crate::receipt::Policy::Block);
        assert_eq!(blocks.count(), 10);
        let eleven = format!("{},10.10.0.0/16", ten.join(","));
        o.params.insert("BlockedCidrs".into(), eleven);
        let e = load_file(&path, &o).unwrap_err().to_string();
        assert!(
            e.contains("Parameters.BlockedCidrs") && e.contains("AllowedPattern"),
            "an eleventh entry has no slot: refused, as CloudFormation does: {e}"
        );
        o.params
            .insert("BlockedCidrs".into(), "192.0.2.0/33".into());
        let e = load_file(&path, &o).unwrap_err().to_string();
        assert!(
            e.contains("BlockFilter0") && e.contains("/33 is longer than the 32 bits"),
            "{e}"
        );
    }

    /// The zone-file lines of the Route 53 records the project template creates with `params`,
    /// and those of its `DnsRecords` output (comments left out), sorted.
    fn zone_lines(params: &[(&str, &str)]) -> (Vec<String>, Vec<String>) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
        let mut o = Options::default();
        for (k, v) in params {
            o.params.insert((*k).into(), (*v).into());
        }
        let shown = show_file(&path, &o).unwrap();
        let mut records = Vec::new();
        for r in shown["Resources"].as_object().unwrap().values() {
            if r["Type"] != "AWS::Route53::RecordSet" || r["Created"] == false {
                continue;
            }
            let p = &r["Properties"];
            let kind = p["Type"].as_str().unwrap();
            for v in p["ResourceRecords"].as_array().unwrap() {
                let v = v.as_str().unwrap();
                // Host names in MX and CNAME data are absolute in a zone file.
                let v = if kind == "TXT" {
                    v.to_string()
                } else {
                    format!("{v}.")
                };
                records.push(format!(
                    "{}. {} IN {kind} {v}",
                    p["Name"].as_str().unwrap(),
                    p["TTL"].as_str().unwrap()
                ));
            }
        }
        let output = shown["Outputs"]["DnsRecords"].as_str().unwrap();
        let mut lines: Vec<String> = output
            .lines()
            .filter(|l| !l.starts_with(';'))
            .map(str::to_string)
            .collect();
        records.sort();
        lines.sort();
        (records, lines)
    }

    #[test]
    fn the_dns_records_output_lists_exactly_the_records_a_zone_gets() {
        let zone = ("HostedZoneId", "Z0123456789ABC");
        let (records, lines) = zone_lines(&[zone]);
        assert_eq!(records, lines);
        assert_eq!(
            records.len(),
            6,
            "MX, three DKIM, MAIL FROM MX and SPF: {records:#?}"
        );
        assert!(lines.contains(
            &"example.com. 300 IN MX 10 inbound-smtp.us-east-1.amazonaws.com.".to_string()
        ));
        let dmarc = [
            zone,
            ("DmarcPolicy", "quarantine"),
            ("DmarcReportTo", "dmarc@example.com"),
        ];
        let (records, lines) = zone_lines(&dmarc);
        assert_eq!(records, lines);
        assert!(lines.contains(
            &r#"_dmarc.example.com. 300 IN TXT "v=DMARC1; p=quarantine; rua=mailto:dmarc@example.com""#.to_string()
        ));
        // With the identity made elsewhere, its DKIM records are not the stack's to publish.
        let (records, lines) = zone_lines(&[zone, ("CreateIdentity", "false")]);
        assert_eq!(records, lines);
        assert!(
            !lines.iter().any(|l| l.contains("_domainkey")),
            "{lines:#?}"
        );
        // Without a zone nothing is created, and the output still lists every record.
        let (records, lines) = zone_lines(&[]);
        assert!(records.is_empty());
        assert_eq!(lines.len(), 6);
    }

    #[test]
    fn dkim_tokens_stand_in_and_other_attributes_are_refused() {
        let text = "Resources:\n  Id:\n    Type: AWS::SES::EmailIdentity\n    Properties: { EmailIdentity: example.org }\n";
        let root: Value = serde_yaml_ng::from_str(text).unwrap();
        let o = Options::default();
        let t = Template::new(&root, &o).unwrap();
        let att = |a: &str| {
            t.get_att("Id", a, "test")
                .map(|v| v.as_str().unwrap().to_string())
        };
        assert_eq!(
            att("DkimDNSTokenName2").unwrap(),
            "local-dkim-token-2._domainkey.example.org"
        );
        assert_eq!(
            att("DkimDNSTokenValue3").unwrap(),
            "local-dkim-token-3.dkim.amazonses.com"
        );
        for bad in [
            "DkimDNSTokenName4",
            "DkimDNSTokenName",
            "DkimDNSTokenNamé1",
            "DkimDNSTokenValueX",
        ] {
            let e = att(bad).unwrap_err().to_string();
            assert!(e.contains("no attribute"), "{bad}: {e}");
        }
    }

    const SMALL: &str = r#"
Parameters:
  Dom: { Type: String, Default: example.com }
Resources:
  Set: { Type: AWS::SES::ReceiptRuleSet }
  Fn:
    Type: AWS::Lambda::Function
    Properties:
      FunctionName: !Sub "${AWS::StackName}-fn"
      Environment: { Variables: { WHERE: !Sub "${AWS::Region}/${Dom}", N: 3 } }
  Second:
    Type: AWS::SES::ReceiptRule
    Properties:
      RuleSetName: !Ref Set
      After: first
      Rule:
        Name: second
        Enabled: "true"
        Recipients: [!Sub "info@${Dom}"]
        Actions:
          - AddHeaderAction: { HeaderName: X-Seen, HeaderValue: "yes" }
          - StopAction: { Scope: RuleSet }
  First:
    Type: AWS::SES::ReceiptRule
    Properties:
      RuleSetName: { Ref: Set }
      Rule:
        Name: first
        Enabled: true
        Actions:
          - LambdaAction: { FunctionArn: { "Fn::GetAtt": [Fn, Arn] }, InvocationType: RequestResponse }
          - BounceAction: { SmtpReplyCode: "550", StatusCode: 5.1.1, Message: gone, Sender: !Sub "md@${Dom}" }
"#;

    #[test]
    fn small_template_with_after_and_long_forms() {
        let t = load_str(SMALL, "small", &Options::default()).unwrap();
        let names: Vec<&str> = t.rule_set.rules.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["first", "second"]);
        assert!(!t.rule_set.rules[0].scan_enabled, "SES default is false");
        assert_eq!(t.rule_set.rules[1].recipients, vec!["info@example.com"]);
        let f = t.functions.values().next().unwrap();
        assert_eq!(f.env["WHERE"], "us-east-1/example.com");
        assert_eq!(f.env["N"], "3");
        assert_eq!(f.binary, "fn");
        assert!(
            t.functions
                .keys()
                .next()
                .unwrap()
                .ends_with(":function:mailroom-fn")
        );
    }

    #[test]
    fn unsupported_things_are_named() {
        let bad = SMALL.replace("!Sub \"md@${Dom}\"", "!ImportValue shared-sender");
        let e = load_str(&bad, "t", &Options::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ImportValue") && e.contains("BounceAction"),
            "{e}"
        );
        let bad = SMALL.replace("After: first", "After: nothing");
        let e = load_str(&bad, "t", &Options::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("nothing"), "{e}");
        let bad = SMALL.replace("StopAction: { Scope: RuleSet }", "ConnectAction: {}");
        let e = load_str(&bad, "t", &Options::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("ConnectAction"), "{e}");
    }
}
