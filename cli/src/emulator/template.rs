//! Reads the receipt rule set and the functions it calls straight from `template.yaml`.
//!
//! Only what the emulator needs is resolved: the `AWS::SES::ReceiptRule` resources of one rule
//! set, and the `Environment.Variables` of the functions their Lambda actions name. Intrinsics
//! supported, short and long forms: `Ref` (parameters, pseudo parameters, resources), `GetAtt`,
//! `Sub` (both forms), `FindInMap`, `If` with `Conditions` (`Equals`, `Not`, `And`, `Or`,
//! `Condition`), `Join`, `Select`, `Split`. Anything else is an error that names where it is.
//!
//! Physical names are made up the way CloudFormation would, from the stack name and logical id
//! (`mailroom-RawMailBucket` lowercased for buckets), with a fixed fake account and Region.

use mailroom::receipt::{Action, InvocationType, Rule, RuleSet, SnsEncoding, TlsPolicy};
use serde_yaml::{Mapping, Value};
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
        source: serde_yaml::Error,
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
}

pub fn load_file(path: &Path, options: &Options) -> Result<Loaded, TemplateError> {
    let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
        path: path.display().to_string(),
        source,
    })?;
    load_str(&text, &path.display().to_string(), options)
}

pub fn load_str(text: &str, name: &str, options: &Options) -> Result<Loaded, TemplateError> {
    let root: Value = serde_yaml::from_str(text).map_err(|source| TemplateError::Yaml {
        path: name.to_string(),
        source,
    })?;
    let t = Template::new(&root, options)?;
    t.load()
}

struct Template<'a> {
    resources: &'a Mapping,
    parameters: HashMap<String, Value>,
    mappings: Option<&'a Mapping>,
    conditions: Option<&'a Mapping>,
    globals_env: Option<&'a Value>,
    options: &'a Options,
}

fn get<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    v.as_mapping().and_then(|m| m.get(key))
}

impl<'a> Template<'a> {
    fn new(root: &'a Value, options: &'a Options) -> Result<Self, TemplateError> {
        let resources = get(root, "Resources")
            .and_then(Value::as_mapping)
            .ok_or_else(|| err("Resources", "the template has no Resources mapping"))?;
        let mut parameters = HashMap::new();
        let declared = get(root, "Parameters").and_then(Value::as_mapping);
        for (k, v) in declared.into_iter().flatten() {
            let Some(name) = k.as_str() else { continue };
            let at = format!("Parameters.{name}");
            let given = options.params.get(name).cloned();
            let default = get(v, "Default").map(scalar_string);
            let value = match (given, default) {
                (Some(g), _) => g,
                (None, Some(Some(d))) => d,
                _ => {
                    return Err(err(
                        &at,
                        format!("has no default: pass --param {name}=VALUE"),
                    ));
                }
            };
            if let Some(allowed) = get(v, "AllowedValues").and_then(Value::as_sequence) {
                let allowed: Vec<String> = allowed.iter().filter_map(scalar_string).collect();
                if !allowed.contains(&value) {
                    return Err(err(
                        &at,
                        format!("{value:?} is not one of {}", allowed.join(", ")),
                    ));
                }
            }
            let ty = get(v, "Type").and_then(Value::as_str).unwrap_or("String");
            let resolved = if ty == "CommaDelimitedList" || ty.starts_with("List<") {
                Value::Sequence(
                    value
                        .split(',')
                        .map(|s| Value::String(s.trim().to_string()))
                        .filter(|s| s.as_str().is_some_and(|s| !s.is_empty()))
                        .collect(),
                )
            } else {
                Value::String(value)
            };
            parameters.insert(name.to_string(), resolved);
        }
        for name in options.params.keys() {
            if !parameters.contains_key(name) {
                return Err(err(
                    &format!("--param {name}"),
                    "the template declares no such parameter",
                ));
            }
        }
        Ok(Template {
            resources,
            parameters,
            mappings: get(root, "Mappings").and_then(Value::as_mapping),
            conditions: get(root, "Conditions").and_then(Value::as_mapping),
            globals_env: get(root, "Globals")
                .and_then(|g| get(g, "Function"))
                .and_then(|f| get(f, "Environment"))
                .and_then(|e| get(e, "Variables")),
            options,
        })
    }

    fn resource(&self, id: &str) -> Option<&'a Value> {
        self.resources.get(id)
    }

    fn resource_type(&self, id: &str) -> &'a str {
        self.resource(id)
            .and_then(|r| get(r, "Type"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    fn resource_ids_of(&self, ty: &str) -> Vec<&'a str> {
        self.resources
            .iter()
            .filter_map(|(k, v)| {
                (get(v, "Type").and_then(Value::as_str) == Some(ty))
                    .then(|| k.as_str())
                    .flatten()
            })
            .collect()
    }

    fn load(&self) -> Result<Loaded, TemplateError> {
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
        })
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

    fn physical_name(&self, id: &str) -> String {
        format!("{}-{id}", self.options.stack)
    }

    fn function_arn(&self, id: &str) -> String {
        let name = self
            .ref_value(id, "")
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| self.physical_name(id));
        format!(
            "arn:aws:lambda:{}:{}:function:{name}",
            self.options.region, self.options.account
        )
    }

    /// What `Ref` returns for a resource.
    fn ref_value(&self, id: &str, at: &str) -> Result<Value, TemplateError> {
        let (region, account) = (&self.options.region, &self.options.account);
        let props = self
            .resource(id)
            .and_then(|r| get(r, "Properties"))
            .unwrap_or(&Value::Null);
        let named = |key: &str| -> Result<Option<String>, TemplateError> {
            match get(props, key) {
                Some(v) => Ok(self
                    .resolve(v, &format!("Resources.{id}.Properties.{key}"))?
                    .as_str()
                    .map(str::to_string)),
                None => Ok(None),
            }
        };
        let name = self.physical_name(id);
        let s = match self.resource_type(id) {
            "AWS::S3::Bucket" => named("BucketName")?.unwrap_or_else(|| name.to_ascii_lowercase()),
            "AWS::SNS::Topic" => {
                let topic = named("TopicName")?.unwrap_or(name);
                format!("arn:aws:sns:{region}:{account}:{topic}")
            }
            "AWS::SQS::Queue" => {
                let queue = named("QueueName")?.unwrap_or(name);
                format!("https://sqs.{region}.amazonaws.com/{account}/{queue}")
            }
            "AWS::SES::ReceiptRuleSet" => named("RuleSetName")?.unwrap_or(name),
            "AWS::SES::ReceiptRule" => {
                let rule = get(props, "Rule")
                    .and_then(|r| get(r, "Name"))
                    .ok_or_else(|| err(at, format!("rule {id} has no Rule.Name")))?;
                let rule = self.resolve(rule, &format!("Resources.{id}.Properties.Rule.Name"))?;
                rule.as_str().unwrap_or(&name).to_string()
            }
            "" => {
                return Err(err(
                    at,
                    format!("Ref to unknown resource or parameter {id}"),
                ));
            }
            _ => named("FunctionName")?.unwrap_or(name),
        };
        Ok(Value::String(s))
    }

    fn get_att(&self, id: &str, attr: &str, at: &str) -> Result<Value, TemplateError> {
        let (region, account) = (&self.options.region, &self.options.account);
        let ty = self.resource_type(id);
        let name = self.physical_name(id);
        let s = match (ty, attr) {
            ("", _) => return Err(err(at, format!("GetAtt of unknown resource {id}"))),
            ("AWS::Serverless::Function" | "AWS::Lambda::Function", "Arn") => self.function_arn(id),
            ("AWS::S3::Bucket", "Arn") => {
                let bucket = self.ref_value(id, at)?;
                format!("arn:aws:s3:::{}", bucket.as_str().unwrap_or(&name))
            }
            ("AWS::SQS::Queue", "Arn") => format!("arn:aws:sqs:{region}:{account}:{name}"),
            ("AWS::SQS::Queue", "QueueName") => name,
            ("AWS::SQS::Queue", "QueueUrl") => {
                format!("https://sqs.{region}.amazonaws.com/{account}/{name}")
            }
            ("AWS::SNS::Topic", "TopicArn") => self
                .ref_value(id, at)?
                .as_str()
                .unwrap_or_default()
                .to_string(),
            ("AWS::SNS::Topic", "TopicName") => name,
            _ => {
                return Err(err(
                    at,
                    format!("GetAtt {id}.{attr} ({ty}) is not supported by the emulator"),
                ));
            }
        };
        Ok(Value::String(s))
    }

    fn reference(&self, name: &str, at: &str) -> Result<Value, TemplateError> {
        let o = self.options;
        Ok(match name {
            "AWS::Region" => Value::String(o.region.clone()),
            "AWS::AccountId" => Value::String(o.account.clone()),
            "AWS::Partition" => Value::String("aws".into()),
            "AWS::URLSuffix" => Value::String("amazonaws.com".into()),
            "AWS::StackName" => Value::String(o.stack.clone()),
            "AWS::StackId" => Value::String(format!(
                "arn:aws:cloudformation:{}:{}:stack/{}/00000000-0000-0000-0000-000000000000",
                o.region, o.account, o.stack
            )),
            "AWS::NoValue" => Value::String(NO_VALUE.into()),
            _ => match self.parameters.get(name) {
                Some(v) => v.clone(),
                None => self.ref_value(name, at)?,
            },
        })
    }

    /// Resolves every intrinsic in `v`; `at` names the place for error messages.
    fn resolve(&self, v: &Value, at: &str) -> Result<Value, TemplateError> {
        match v {
            Value::Tagged(t) => {
                let tag = t.tag.to_string();
                let name = tag.trim_start_matches('!');
                let fname = if name == "Ref" || name == "Condition" {
                    name.to_string()
                } else {
                    format!("Fn::{name}")
                };
                self.intrinsic(&fname, &t.value, at)
            }
            Value::Mapping(m) => {
                if m.len() == 1
                    && let Some((Value::String(k), arg)) = m.iter().next()
                    && (k == "Ref" || k.starts_with("Fn::"))
                {
                    return self.intrinsic(k, arg, at);
                }
                let mut out = Mapping::new();
                for (k, val) in m {
                    let key = k.as_str().unwrap_or("?");
                    let r = self.resolve(val, &format!("{at}.{key}"))?;
                    if r.as_str() != Some(NO_VALUE) {
                        out.insert(k.clone(), r);
                    }
                }
                Ok(Value::Mapping(out))
            }
            Value::Sequence(s) => {
                let mut out = Vec::with_capacity(s.len());
                for (i, item) in s.iter().enumerate() {
                    let r = self.resolve(item, &format!("{at}[{i}]"))?;
                    if r.as_str() != Some(NO_VALUE) {
                        out.push(r);
                    }
                }
                Ok(Value::Sequence(out))
            }
            other => Ok(other.clone()),
        }
    }

    fn resolve_str(&self, v: &Value, at: &str) -> Result<String, TemplateError> {
        let r = self.resolve(v, at)?;
        scalar_string(&r).ok_or_else(|| err(at, "expected a string"))
    }

    fn resolve_list(&self, v: &Value, at: &str) -> Result<Vec<Value>, TemplateError> {
        match self.resolve(v, at)? {
            Value::Sequence(s) => Ok(s),
            _ => Err(err(at, "expected a list")),
        }
    }

    fn intrinsic(&self, f: &str, arg: &Value, at: &str) -> Result<Value, TemplateError> {
        let at_f = format!("{at} ({f})");
        let at = at_f.as_str();
        match f {
            "Ref" => {
                let name = self.resolve_str(arg, at)?;
                self.reference(&name, at)
            }
            "Fn::GetAtt" => {
                let (id, attr) = match arg {
                    Value::String(s) => s
                        .split_once('.')
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .ok_or_else(|| err(at, "expected Resource.Attribute"))?,
                    other => {
                        let parts = self.resolve_list(other, at)?;
                        match parts.as_slice() {
                            [a, b] => (
                                scalar_string(a).unwrap_or_default(),
                                scalar_string(b).unwrap_or_default(),
                            ),
                            _ => return Err(err(at, "expected [Resource, Attribute]")),
                        }
                    }
                };
                self.get_att(&id, &attr, at)
            }
            "Fn::Sub" => {
                let (text, vars) = match arg {
                    Value::Sequence(s) if s.len() == 2 => {
                        let text = self.resolve_str(&s[0], at)?;
                        let vars = self.resolve(&s[1], at)?;
                        (text, vars.as_mapping().cloned().unwrap_or_default())
                    }
                    other => (self.resolve_str(other, at)?, Mapping::new()),
                };
                self.substitute(&text, &vars, at).map(Value::String)
            }
            "Fn::FindInMap" => {
                let parts = self.resolve_list(arg, at)?;
                let keys: Vec<String> = parts.iter().filter_map(scalar_string).collect();
                let [map, top, second] = keys.as_slice() else {
                    return Err(err(at, "expected [MapName, TopKey, SecondKey]"));
                };
                self.mappings
                    .and_then(|m| m.get(map.as_str()))
                    .and_then(|m| get(m, top))
                    .and_then(|m| get(m, second))
                    .cloned()
                    .ok_or_else(|| err(at, format!("no mapping {map}.{top}.{second}")))
            }
            "Fn::If" => {
                let Value::Sequence(s) = arg else {
                    return Err(err(at, "expected [Condition, IfTrue, IfFalse]"));
                };
                let [cond, yes, no] = s.as_slice() else {
                    return Err(err(at, "expected [Condition, IfTrue, IfFalse]"));
                };
                let cond = scalar_string(cond).ok_or_else(|| err(at, "bad condition name"))?;
                if self.condition(&cond, at, 0)? {
                    self.resolve(yes, at)
                } else {
                    self.resolve(no, at)
                }
            }
            "Fn::Join" => {
                let Value::Sequence(s) = arg else {
                    return Err(err(at, "expected [Delimiter, [Values]]"));
                };
                let [delim, items] = s.as_slice() else {
                    return Err(err(at, "expected [Delimiter, [Values]]"));
                };
                let delim = self.resolve_str(delim, at)?;
                let items = self.resolve_list(items, at)?;
                let parts: Option<Vec<String>> = items.iter().map(scalar_string).collect();
                parts
                    .map(|p| Value::String(p.join(&delim)))
                    .ok_or_else(|| err(at, "Join items must be strings"))
            }
            "Fn::Split" => {
                let Value::Sequence(s) = arg else {
                    return Err(err(at, "expected [Delimiter, String]"));
                };
                let [delim, text] = s.as_slice() else {
                    return Err(err(at, "expected [Delimiter, String]"));
                };
                let delim = self.resolve_str(delim, at)?;
                let text = self.resolve_str(text, at)?;
                Ok(Value::Sequence(
                    text.split(delim.as_str())
                        .map(|p| Value::String(p.to_string()))
                        .collect(),
                ))
            }
            "Fn::Select" => {
                let Value::Sequence(s) = arg else {
                    return Err(err(at, "expected [Index, [Values]]"));
                };
                let [index, items] = s.as_slice() else {
                    return Err(err(at, "expected [Index, [Values]]"));
                };
                let index: usize = self
                    .resolve_str(index, at)?
                    .parse()
                    .map_err(|_| err(at, "index must be a number"))?;
                self.resolve_list(items, at)?
                    .get(index)
                    .cloned()
                    .ok_or_else(|| err(at, "index out of range"))
            }
            other => Err(err(
                at,
                format!("intrinsic {other} is not supported by the emulator"),
            )),
        }
    }

    fn substitute(&self, text: &str, vars: &Mapping, at: &str) -> Result<String, TemplateError> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            // `${!Literal}` writes `${Literal}`.
            if let Some(lit) = after.strip_prefix('!') {
                out.push_str("${");
                rest = lit;
                continue;
            }
            let end = after
                .find('}')
                .ok_or_else(|| err(at, "unclosed ${ in Sub"))?;
            let name = &after[..end];
            let value = if let Some(v) = vars.get(name) {
                scalar_string(v)
                    .ok_or_else(|| err(at, format!("Sub variable {name} is not a string")))?
            } else if let Some((id, attr)) = name.split_once('.')
                && !name.starts_with("AWS::")
            {
                scalar_string(&self.get_att(id, attr, at)?).unwrap_or_default()
            } else {
                match self.reference(name, at)? {
                    Value::Sequence(_) => {
                        return Err(err(at, format!("Sub of list parameter {name}")));
                    }
                    v => scalar_string(&v).unwrap_or_default(),
                }
            };
            out.push_str(&value);
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }

    fn condition(&self, name: &str, at: &str, depth: usize) -> Result<bool, TemplateError> {
        if depth > 32 {
            return Err(err(at, format!("condition {name} refers to itself")));
        }
        let def = self
            .conditions
            .and_then(|c| c.get(name))
            .ok_or_else(|| err(at, format!("no condition {name}")))?;
        self.eval_condition(def, &format!("Conditions.{name}"), depth + 1)
    }

    fn eval_condition(&self, v: &Value, at: &str, depth: usize) -> Result<bool, TemplateError> {
        let (f, arg) = match v {
            Value::Tagged(t) => (
                t.tag.to_string().trim_start_matches('!').to_string(),
                &t.value,
            ),
            Value::Mapping(m) if m.len() == 1 => match m.iter().next() {
                Some((Value::String(k), arg)) => (k.trim_start_matches("Fn::").to_string(), arg),
                _ => return Err(err(at, "expected a condition function")),
            },
            Value::Bool(b) => return Ok(*b),
            _ => return Err(err(at, "expected a condition function")),
        };
        let items = |arg: &Value| -> Result<Vec<Value>, TemplateError> {
            arg.as_sequence()
                .cloned()
                .ok_or_else(|| err(at, format!("{f} expects a list")))
        };
        match f.as_str() {
            "Equals" => {
                let parts = items(arg)?;
                let [a, b] = parts.as_slice() else {
                    return Err(err(at, "Equals expects two values"));
                };
                Ok(self.resolve(a, at)? == self.resolve(b, at)?
                    || scalar_string(&self.resolve(a, at)?) == scalar_string(&self.resolve(b, at)?))
            }
            "Not" => {
                let parts = items(arg)?;
                let [a] = parts.as_slice() else {
                    return Err(err(at, "Not expects one condition"));
                };
                Ok(!self.eval_condition(a, at, depth + 1)?)
            }
            "And" => {
                for c in items(arg)? {
                    if !self.eval_condition(&c, at, depth + 1)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            "Or" => {
                for c in items(arg)? {
                    if self.eval_condition(&c, at, depth + 1)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            "Condition" => {
                let name = scalar_string(arg).ok_or_else(|| err(at, "bad condition name"))?;
                self.condition(&name, at, depth + 1)
            }
            other => Err(err(
                at,
                format!("condition function {other} is not supported"),
            )),
        }
    }
}

/// A YAML scalar as text (`true`, `30`, `abc`); `None` for lists, maps and null.
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
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
/// after rule `X`; rules without `After` come first, in template order (CloudFormation creates
/// independent resources in no fixed order, so a set that needs an order must say `After`).
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
                // Insert after the predecessor and any rules already chained after it.
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
        let binaries: Vec<&str> = t.functions.values().map(|f| f.binary.as_str()).collect();
        assert_eq!(binaries.len(), 5);
        for b in ["stop", "bounce", "store", "fanout", "api"] {
            assert!(binaries.contains(&b), "{b}");
        }
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
