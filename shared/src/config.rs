//! Typed configuration read once at cold start from environment variables.
//!
//! Every reader returns a [`ConfigError`] that names the variable and says what was wrong with
//! it, so a misconfigured function fails its first invocation with one clear line.

use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("missing required environment variable {name}")]
    Missing { name: String },
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: String,
    },
}

/// Where configuration values come from: the process environment, or a map in tests.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

impl Env for [(&str, &str)] {
    fn var(&self, name: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_string())
    }
}

impl<const N: usize> Env for [(&str, &str); N] {
    fn var(&self, name: &str) -> Option<String> {
        self.as_slice().var(name)
    }
}

/// A non-empty value, trimmed; blank counts as unset.
pub fn optional(env: &(impl Env + ?Sized), name: &str) -> Option<String> {
    env.var(name)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

pub fn required(env: &(impl Env + ?Sized), name: &str) -> Result<String, ConfigError> {
    optional(env, name).ok_or_else(|| ConfigError::Missing {
        name: name.to_string(),
    })
}

/// Parses a value with `FromStr`, falling back to `default` when unset.
pub fn parsed_or<T>(env: &(impl Env + ?Sized), name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match optional(env, name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
            name: name.to_string(),
            value: v.clone(),
            reason: e.to_string(),
        }),
    }
}

/// `true/false/1/0/yes/no/on/off`, case-insensitive.
pub fn flag(env: &(impl Env + ?Sized), name: &str, default: bool) -> Result<bool, ConfigError> {
    match optional(env, name) {
        None => Ok(default),
        Some(v) => match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::Invalid {
                name: name.to_string(),
                value: v,
                reason: "expected true or false".to_string(),
            }),
        },
    }
}

/// A comma- or whitespace-separated list, lowercased entries kept in order; empty when unset.
pub fn list(env: &(impl Env + ?Sized), name: &str) -> Vec<String> {
    optional(env, name)
        .map(|v| {
            v.split(|c: char| c == ',' || c.is_whitespace())
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A value restricted to a fixed set of choices (case-insensitive), returned lowercased.
pub fn choice(
    env: &(impl Env + ?Sized),
    name: &str,
    choices: &[&str],
    default: &str,
) -> Result<String, ConfigError> {
    let v = optional(env, name).unwrap_or_else(|| default.to_string());
    let lower = v.to_ascii_lowercase();
    if choices.iter().any(|c| c.eq_ignore_ascii_case(&lower)) {
        Ok(lower)
    } else {
        Err(ConfigError::Invalid {
            name: name.to_string(),
            value: v,
            reason: format!("expected one of {}", choices.join(", ")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_variable() {
        let env = [("SIZE", "ten"), ("FLAG", "maybe"), ("BLANK", "  ")];
        let e = parsed_or::<u64>(&env, "SIZE", 1).unwrap_err();
        assert!(e.to_string().contains("SIZE"), "{e}");
        let e = flag(&env, "FLAG", false).unwrap_err();
        assert!(e.to_string().contains("FLAG"), "{e}");
        let e = required(&env, "BLANK").unwrap_err();
        assert_eq!(
            e,
            ConfigError::Missing {
                name: "BLANK".into()
            }
        );
        assert_eq!(parsed_or::<u64>(&env, "UNSET", 7).unwrap(), 7);
    }

    #[test]
    fn lists_and_choices() {
        let env = [("L", "a@x.com, b.com  c.org,,"), ("C", "Postmark")];
        assert_eq!(list(&env, "L"), vec!["a@x.com", "b.com", "c.org"]);
        assert_eq!(
            choice(&env, "C", &["mailroom", "postmark"], "mailroom").unwrap(),
            "postmark"
        );
        assert!(choice(&env, "C", &["mailroom"], "mailroom").is_err());
    }
}
