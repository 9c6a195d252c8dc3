//! A CloudFormation template evaluator, only as much as the emulator needs. Intrinsics
//! supported, short and long forms: `Ref` (parameters, pseudo parameters, resources), `GetAtt`,
//! `Sub` (both forms), `FindInMap`, `If` with `Conditions` (`Equals`, `Not`, `And`, `Or`,
//! `Condition`), `Join`, `Select`, `Split`. Anything else is an error that names where it is.

use super::{NO_VALUE, Options, TemplateError, err};
use serde_yaml_ng::{Mapping, Value};
use std::collections::HashMap;

pub(super) struct Template<'a> {
    pub(super) resources: &'a Mapping,
    pub(super) parameters: HashMap<String, Value>,
    pub(super) mappings: Option<&'a Mapping>,
    pub(super) conditions: Option<&'a Mapping>,
    pub(super) outputs: Option<&'a Mapping>,
    pub(super) globals_env: Option<&'a Value>,
    pub(super) options: &'a Options,
}

pub(super) fn get<'v>(v: &'v Value, key: &str) -> Option<&'v Value> {
    v.as_mapping().and_then(|m| m.get(key))
}

impl<'a> Template<'a> {
    pub(super) fn new(root: &'a Value, options: &'a Options) -> Result<Self, TemplateError> {
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
            let ty = get(v, "Type").and_then(Value::as_str).unwrap_or("String");
            // CloudFormation refuses a String value its pattern does not match as a whole: the
            // receipt filters' lists, for one, admit no more entries than there are slots.
            if let Some(pattern) = get(v, "AllowedPattern").and_then(Value::as_str)
                && ty == "String"
            {
                let re = regex_lite::Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| err(&at, format!("AllowedPattern {pattern:?}: {e}")))?;
                if !re.is_match(&value) {
                    return Err(err(
                        &at,
                        format!("{value:?} does not match its AllowedPattern {pattern}"),
                    ));
                }
            }
            if let Some(allowed) = get(v, "AllowedValues").and_then(Value::as_sequence) {
                let allowed: Vec<String> = allowed.iter().filter_map(scalar_string).collect();
                if !allowed.contains(&value) {
                    return Err(err(
                        &at,
                        format!("{value:?} is not one of {}", allowed.join(", ")),
                    ));
                }
            }
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
            outputs: get(root, "Outputs").and_then(Value::as_mapping),
            globals_env: get(root, "Globals")
                .and_then(|g| get(g, "Function"))
                .and_then(|f| get(f, "Environment"))
                .and_then(|e| get(e, "Variables")),
            options,
        })
    }

    pub(super) fn resource(&self, id: &str) -> Option<&'a Value> {
        self.resources.get(id)
    }

    pub(super) fn resource_type(&self, id: &str) -> &'a str {
        self.resource(id)
            .and_then(|r| get(r, "Type"))
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub(super) fn resource_ids_of(&self, ty: &str) -> Vec<&'a str> {
        self.resources
            .iter()
            .filter_map(|(k, v)| {
                (get(v, "Type").and_then(Value::as_str) == Some(ty))
                    .then(|| k.as_str())
                    .flatten()
            })
            .collect()
    }

    pub(super) fn physical_name(&self, id: &str) -> String {
        format!("{}-{id}", self.options.stack)
    }

    pub(super) fn function_arn(&self, id: &str) -> String {
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
    pub(super) fn ref_value(&self, id: &str, at: &str) -> Result<Value, TemplateError> {
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

    pub(super) fn get_att(&self, id: &str, attr: &str, at: &str) -> Result<Value, TemplateError> {
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
            // SES makes the Easy DKIM tokens up when it creates the identity; these stand in for
            // them, in the shape SES gives (`<token>._domainkey.<domain>`,
            // `<token>.dkim.amazonses.com`).
            ("AWS::SES::EmailIdentity", a) if a.starts_with("DkimDNSToken") => {
                let rest = &a["DkimDNSToken".len()..];
                let kind = rest.strip_suffix(['1', '2', '3']).unwrap_or(rest);
                let token = format!("local-dkim-token-{}", &rest[kind.len()..]);
                match kind {
                    "Name" if rest != kind => {
                        let props = self.resource(id).and_then(|r| get(r, "Properties"));
                        let domain = match props.and_then(|p| get(p, "EmailIdentity")) {
                            Some(d) => self.resolve_str(d, at)?,
                            None => return Err(err(at, format!("{id} has no EmailIdentity"))),
                        };
                        format!("{token}._domainkey.{domain}")
                    }
                    "Value" if rest != kind => format!("{token}.dkim.amazonses.com"),
                    _ => return Err(err(at, format!("{id} has no attribute {attr}"))),
                }
            }
            _ => {
                return Err(err(
                    at,
                    format!("GetAtt {id}.{attr} ({ty}) is not supported by the emulator"),
                ));
            }
        };
        Ok(Value::String(s))
    }

    pub(super) fn reference(&self, name: &str, at: &str) -> Result<Value, TemplateError> {
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
    pub(super) fn resolve(&self, v: &Value, at: &str) -> Result<Value, TemplateError> {
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

    pub(super) fn resolve_str(&self, v: &Value, at: &str) -> Result<String, TemplateError> {
        let r = self.resolve(v, at)?;
        scalar_string(&r).ok_or_else(|| err(at, "expected a string"))
    }

    pub(super) fn resolve_list(&self, v: &Value, at: &str) -> Result<Vec<Value>, TemplateError> {
        match self.resolve(v, at)? {
            Value::Sequence(s) => Ok(s),
            _ => Err(err(at, "expected a list")),
        }
    }

    pub(super) fn intrinsic(&self, f: &str, arg: &Value, at: &str) -> Result<Value, TemplateError> {
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

    pub(super) fn substitute(
        &self,
        text: &str,
        vars: &Mapping,
        at: &str,
    ) -> Result<String, TemplateError> {
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

    pub(super) fn condition(
        &self,
        name: &str,
        at: &str,
        depth: usize,
    ) -> Result<bool, TemplateError> {
        if depth > 32 {
            return Err(err(at, format!("condition {name} refers to itself")));
        }
        let def = self
            .conditions
            .and_then(|c| c.get(name))
            .ok_or_else(|| err(at, format!("no condition {name}")))?;
        self.eval_condition(def, &format!("Conditions.{name}"), depth + 1)
    }

    pub(super) fn eval_condition(
        &self,
        v: &Value,
        at: &str,
        depth: usize,
    ) -> Result<bool, TemplateError> {
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
pub(super) fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

impl Template<'_> {
    /// Whether a resource or output with this `Condition` (if any) is created.
    fn created(&self, item: &Value, at: &str) -> Result<bool, TemplateError> {
        match get(item, "Condition").map(scalar_string) {
            None => Ok(true),
            Some(Some(name)) => self.condition(&name, at, 0),
            Some(None) => Err(err(at, "bad Condition")),
        }
    }

    /// Every resource with its `Properties` evaluated, and the outputs the stack would show
    /// (see [`super::show_file`]).
    pub(super) fn evaluated(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for (id, resource) in self.resources {
            let Some(id) = id.as_str() else { continue };
            let mut entry = serde_json::Map::new();
            entry.insert("Type".into(), self.resource_type(id).into());
            if let Some(c) = get(resource, "Condition").and_then(scalar_string) {
                entry.insert("Condition".into(), c.into());
                match self.created(resource, &format!("Resources.{id}")) {
                    Ok(created) => entry.insert("Created".into(), created.into()),
                    Err(e) => entry.insert("Error".into(), e.to_string().into()),
                };
            }
            if let Some(props) = get(resource, "Properties") {
                let at = format!("Resources.{id}.Properties");
                match self.resolve(props, &at) {
                    Ok(v) => {
                        let json = serde_json::to_value(&v)
                            .unwrap_or_else(|e| serde_json::Value::String(e.to_string()));
                        entry.insert("Properties".into(), json);
                    }
                    Err(e) => {
                        entry.insert("Error".into(), e.to_string().into());
                    }
                }
            }
            out.insert(id.to_string(), entry.into());
        }
        let mut outputs = serde_json::Map::new();
        for (name, output) in self.outputs.into_iter().flatten() {
            let Some(name) = name.as_str() else { continue };
            let at = format!("Outputs.{name}");
            let value = self.created(output, &at).and_then(|created| {
                get(output, "Value")
                    .filter(|_| created)
                    .map(|v| self.resolve(v, &format!("{at}.Value")))
                    .transpose()
            });
            match value {
                Ok(Some(v)) => {
                    let json = serde_json::to_value(&v)
                        .unwrap_or_else(|e| serde_json::Value::String(e.to_string()));
                    outputs.insert(name.to_string(), json);
                }
                Ok(None) => {}
                Err(e) => {
                    outputs.insert(
                        name.to_string(),
                        serde_json::json!({ "Error": e.to_string() }),
                    );
                }
            }
        }
        serde_json::json!({ "Resources": out, "Outputs": outputs })
    }
}
