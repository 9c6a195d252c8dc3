//! Would an SNS subscription with this filter policy receive this publication? Attribute-based
//! filter policies (`FilterPolicyScope: MessageAttributes`, the default), as SNS documents them:
//! the policy's keys are ANDed, each key's conditions ORed, `$or` splits a policy into
//! alternatives. Conditions: exact strings and numbers, `prefix`, `suffix`,
//! `equals-ignore-case`, `anything-but` (a value, a list, or a `prefix`/`suffix`), `numeric`
//! (`=`, `<`, `<=`, `>`, `>=`, up to two bounds), `exists`. A `String.Array` attribute matches
//! when one of its elements does. What this does not know (`cidr`, payload-based nesting) is an
//! error, never a guess.

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    #[error("the filter policy is not JSON: {0}")]
    NotJson(String),
    #[error("the filter policy must be a JSON object of attribute names")]
    NotObject,
    #[error("{key}: expected an array of conditions")]
    NotArray { key: String },
    #[error("{key}: {why}")]
    Condition { key: String, why: String },
}

/// The decision, with one line per key saying why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub delivered: bool,
    pub reasons: Vec<String>,
}

/// `attributes`: the publication's message attributes as SNS takes them
/// (`{"name": {"Type": "String", "Value": "x"}}`; a `String.Array` value may be the JSON text of
/// an array or an array).
pub fn evaluate(policy: &str, attributes: &Value) -> Result<Decision, PolicyError> {
    let policy: Value =
        serde_json::from_str(policy).map_err(|e| PolicyError::NotJson(e.to_string()))?;
    let mut reasons = Vec::new();
    let delivered = matches_policy(&policy, attributes, &mut reasons)?;
    Ok(Decision { delivered, reasons })
}

fn matches_policy(
    policy: &Value,
    attributes: &Value,
    reasons: &mut Vec<String>,
) -> Result<bool, PolicyError> {
    let object = policy.as_object().ok_or(PolicyError::NotObject)?;
    let mut all = true;
    for (key, conditions) in object {
        if key == "$or" {
            let branches = conditions
                .as_array()
                .ok_or_else(|| PolicyError::NotArray { key: key.clone() })?;
            let mut any = false;
            for (i, branch) in branches.iter().enumerate() {
                let mut inner = Vec::new();
                let ok = matches_policy(branch, attributes, &mut inner)?;
                reasons.extend(inner.into_iter().map(|r| format!("$or[{i}] {r}")));
                any |= ok;
            }
            all &= any;
            continue;
        }
        let conditions = conditions
            .as_array()
            .ok_or_else(|| PolicyError::NotArray { key: key.clone() })?;
        let attribute = attributes.get(key);
        let mut matched = None;
        for c in conditions {
            if condition(key, c, attribute)? {
                matched = Some(c);
                break;
            }
        }
        match (matched, attribute) {
            (Some(c), _) => reasons.push(format!("{key}: matches {c}")),
            (None, None) => reasons.push(format!("{key}: no such attribute")),
            (None, Some(a)) => reasons.push(format!(
                "{key}: {} matches none of {}",
                a.get("Value").cloned().unwrap_or_default(),
                Value::Array(conditions.clone())
            )),
        }
        all &= matched.is_some();
    }
    Ok(all)
}

/// The attribute's values: one, or each element of a `String.Array`.
fn values(attribute: &Value) -> (String, Vec<Value>) {
    let kind = attribute
        .get("Type")
        .and_then(Value::as_str)
        .unwrap_or("String")
        .to_string();
    let value = attribute.get("Value").cloned().unwrap_or_default();
    let list = if kind == "String.Array" {
        match value {
            Value::Array(a) => a,
            Value::String(s) => serde_json::from_str::<Vec<Value>>(&s).unwrap_or_default(),
            other => vec![other],
        }
    } else {
        vec![value]
    };
    (kind, list)
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn condition(key: &str, c: &Value, attribute: Option<&Value>) -> Result<bool, PolicyError> {
    let bad = |why: &str| PolicyError::Condition {
        key: key.to_string(),
        why: why.to_string(),
    };
    if let Some(exists) = c.get("exists") {
        let want = exists
            .as_bool()
            .ok_or_else(|| bad("exists takes true or false"))?;
        return Ok(attribute.is_some() == want);
    }
    let Some(attribute) = attribute else {
        // A condition this tester cannot read is an error even when there is nothing to match.
        condition(
            key,
            c,
            Some(&serde_json::json!({"Type": "String", "Value": ""})),
        )?;
        return Ok(false);
    };
    let (kind, vals) = values(attribute);
    let numeric = kind == "Number";
    let any = |f: &dyn Fn(&Value) -> bool| vals.iter().any(f);
    Ok(match c {
        Value::String(s) => !numeric && any(&|v| v.as_str() == Some(s)),
        Value::Number(n) => {
            let n = n.as_f64().unwrap_or(f64::NAN);
            any(&|v| as_number(v) == Some(n))
        }
        Value::Object(o) if o.len() == 1 => {
            let (op, arg) = o.iter().next().ok_or_else(|| bad("empty condition"))?;
            match op.as_str() {
                "prefix" | "suffix" | "equals-ignore-case" => {
                    let a = arg
                        .as_str()
                        .ok_or_else(|| bad(&format!("{op} takes a string")))?;
                    !numeric && any(&|v| string_op(op, a, v))
                }
                "anything-but" => anything_but(arg, numeric, &vals).map_err(|w| bad(&w))?,
                "numeric" => {
                    let bounds = numeric_bounds(arg).map_err(|w| bad(&w))?;
                    any(&|v| {
                        as_number(v).is_some_and(|x| bounds.iter().all(|(op, b)| cmp(op, x, *b)))
                    })
                }
                other => return Err(bad(&format!("{other}: not a condition this tester knows"))),
            }
        }
        other => return Err(bad(&format!("{other}: not a condition"))),
    })
}

fn string_op(op: &str, arg: &str, v: &Value) -> bool {
    let Some(s) = v.as_str() else { return false };
    match op {
        "prefix" => s.starts_with(arg),
        "suffix" => s.ends_with(arg),
        _ => s.eq_ignore_ascii_case(arg),
    }
}

/// True when no value is one of the excluded.
fn anything_but(arg: &Value, numeric: bool, vals: &[Value]) -> Result<bool, String> {
    let excluded = |v: &Value| -> Result<bool, String> {
        Ok(match arg {
            Value::Array(list) => list.iter().any(|x| same(x, v, numeric)),
            Value::Object(o) if o.len() == 1 => {
                let (op, a) = o.iter().next().ok_or("empty anything-but")?;
                let a = a.as_str().ok_or("anything-but's operand takes a string")?;
                match op.as_str() {
                    "prefix" | "suffix" | "equals-ignore-case" => string_op(op, a, v),
                    other => return Err(format!("anything-but {other}: not known")),
                }
            }
            x => same(x, v, numeric),
        })
    };
    let mut all_ok = !vals.is_empty();
    for v in vals {
        if excluded(v)? {
            all_ok = false;
        }
    }
    Ok(all_ok)
}

fn same(x: &Value, v: &Value, numeric: bool) -> bool {
    match x {
        Value::Number(n) => as_number(v) == n.as_f64(),
        Value::String(s) => !numeric && v.as_str() == Some(s),
        _ => false,
    }
}

fn numeric_bounds(arg: &Value) -> Result<Vec<(String, f64)>, String> {
    let list = arg.as_array().ok_or("numeric takes [op, number, ...]")?;
    if list.is_empty() || list.len() % 2 != 0 || list.len() > 4 {
        return Err("numeric takes one or two [op, number] pairs".into());
    }
    list.chunks(2)
        .map(|pair| {
            let op = pair[0].as_str().ok_or("numeric: an operator is a string")?;
            if !["=", "<", "<=", ">", ">="].contains(&op) {
                return Err(format!("numeric: {op} is not an operator"));
            }
            let n = pair[1].as_f64().ok_or("numeric: a bound is a number")?;
            Ok((op.to_string(), n))
        })
        .collect()
}

fn cmp(op: &str, x: f64, b: f64) -> bool {
    match op {
        "=" => x == b,
        "<" => x < b,
        "<=" => x <= b,
        ">" => x > b,
        _ => x >= b,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Attributes as fanout publishes them.
    fn attrs() -> Value {
        json!({
            "spam": {"Type": "String", "Value": "PASS"},
            "sender_domain": {"Type": "String", "Value": "example.org"},
            "size": {"Type": "Number", "Value": "1971"},
            "recipient": {"Type": "String.Array", "Value": ["support@example.com", "billing@example.com"]},
            "has_attachments": {"Type": "String", "Value": "true"}
        })
    }

    fn delivered(policy: &str) -> bool {
        evaluate(policy, &attrs()).unwrap().delivered
    }

    #[test]
    fn keys_are_anded_conditions_ored_and_arrays_match_by_element() {
        assert!(delivered(
            r#"{"spam": ["FAIL", "PASS"], "recipient": ["support@example.com"]}"#
        ));
        assert!(!delivered(
            r#"{"spam": ["PASS"], "has_attachments": ["false"]}"#
        ));
        assert!(
            !delivered(r#"{"size": ["1971"]}"#),
            "a string never equals a Number"
        );
    }

    #[test]
    fn each_key_says_why() {
        let d = evaluate(
            r#"{"spam": ["FAIL"], "size": [{"numeric": [">", 0]}]}"#,
            &attrs(),
        )
        .unwrap();
        assert!(!d.delivered);
        assert_eq!(d.reasons.len(), 2);
        assert!(
            d.reasons
                .iter()
                .any(|r| r.starts_with("spam: \"PASS\" matches none of")),
            "{:?}",
            d.reasons
        );
        assert!(
            d.reasons.iter().any(|r| r.starts_with("size: matches")),
            "{:?}",
            d.reasons
        );
    }

    #[test]
    fn what_it_cannot_read_is_an_error() {
        assert!(matches!(
            evaluate("{", &attrs()),
            Err(PolicyError::NotJson(_))
        ));
        assert_eq!(evaluate("[1]", &attrs()), Err(PolicyError::NotObject));
        assert_eq!(
            evaluate(r#"{"spam": "PASS"}"#, &attrs()),
            Err(PolicyError::NotArray { key: "spam".into() })
        );
        for p in [
            r#"{"ip": [{"cidr": "10.0.0.0/8"}]}"#,
            r#"{"size": [{"numeric": ["~", 1]}]}"#,
            r#"{"size": [{"numeric": [">"]}]}"#,
            r#"{"spam": [{"exists": "yes"}]}"#,
        ] {
            assert!(
                matches!(evaluate(p, &attrs()), Err(PolicyError::Condition { .. })),
                "{p}"
            );
        }
    }
}
