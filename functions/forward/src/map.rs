//! The forward map: which outside inboxes each recipient of the domain forwards to.
//!
//! Keys, tried in this order for each envelope recipient (case-insensitive):
//! 1. the exact address (`info@example.com`), then the same without a `+tag`;
//! 2. a local part on any domain (`info@`), with then without the tag;
//! 3. a domain catch-all (`@example.com`).
//!
//! A value is one destination or several; with `"mode": "attach"` an entry forwards the original
//! as an attachment instead of rewriting it. Two notations, so the map fits an environment
//! variable as well as an SSM parameter:
//!
//! ```text
//! info@example.com=me@gmail.com,team@outlook.com; @example.com=me@gmail.com; billing@=attach:me@gmail.com
//! {"info@example.com": ["me@gmail.com", "team@outlook.com"], "billing@": {"to": "me@gmail.com", "mode": "attach"}}
//! ```
//!
//! [`TagPolicy`] decides what a `+tag` becomes: kept, it is added to every destination's local
//! part (`info+orders@` → `me+orders@gmail.com`), so filters at the destination still see it.

use mailroom::policy::bare_address;
use serde::Deserialize;
use std::collections::BTreeMap;

/// How an entry's mail is sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Rewrite the headers (From, Reply-To, …) and send the original body (the default); falls
    /// back to [`Mode::Attach`] when the rewrite cannot make an acceptable message.
    Rewrite,
    /// A new message with the original attached as `message/rfc822`, byte for byte.
    Attach,
    /// Not an entry's choice: when the whole message cannot go (over SES's size once
    /// base64-encoded, an attachment type SES refuses, a header block over the bound), a note
    /// listing what was left out and where the original is kept, with its text.
    Digest,
}

/// What happens to a `+tag` of a recipient that matched through its untagged form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagPolicy {
    Keep,
    Drop,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub destinations: Vec<String>,
    pub mode: Mode,
}

/// One destination a recipient forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The envelope recipient that matched.
    pub recipient: String,
    /// The map key that matched it.
    pub key: String,
    pub destination: String,
    pub mode: Mode,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardMap {
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("forward map: {0}")]
pub struct MapError(pub String);

#[derive(Deserialize)]
#[serde(untagged)]
enum JsonValue {
    One(String),
    Many(Vec<String>),
    Full {
        to: OneOrMany,
        #[serde(default)]
        mode: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl ForwardMap {
    /// Parses either notation (JSON when the text starts with `{`). Every key and destination is
    /// checked, so a typo fails the cold start with the entry named.
    pub fn parse(text: &str) -> Result<ForwardMap, MapError> {
        let text = text.trim();
        let mut map = ForwardMap::default();
        if text.is_empty() {
            return Ok(map);
        }
        if text.starts_with('{') {
            let raw: BTreeMap<String, JsonValue> =
                serde_json::from_str(text).map_err(|e| MapError(format!("not JSON: {e}")))?;
            for (key, value) in raw {
                let (to, mode) = match value {
                    JsonValue::One(s) => (vec![s], None),
                    JsonValue::Many(v) => (v, None),
                    JsonValue::Full { to, mode } => match to {
                        OneOrMany::One(s) => (vec![s], mode),
                        OneOrMany::Many(v) => (v, mode),
                    },
                };
                let mode = match mode.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    None | Some("rewrite") => Mode::Rewrite,
                    Some("attach") => Mode::Attach,
                    Some(other) => {
                        return Err(MapError(format!(
                            "{key}: mode {other:?} is neither rewrite nor attach"
                        )));
                    }
                };
                map.insert(&key, &to, mode)?;
            }
            return Ok(map);
        }
        for entry in text
            .split([';', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (key, value) = entry
                .split_once('=')
                .ok_or_else(|| MapError(format!("{entry:?}: expected key=destination")))?;
            let value = value.trim();
            let (mode, list) = match value.strip_prefix("attach:") {
                Some(rest) => (Mode::Attach, rest),
                None => (
                    Mode::Rewrite,
                    value.strip_prefix("rewrite:").unwrap_or(value),
                ),
            };
            let to: Vec<String> = list
                .split([',', ' '])
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            map.insert(key, &to, mode)?;
        }
        Ok(map)
    }

    fn insert(&mut self, key: &str, to: &[String], mode: Mode) -> Result<(), MapError> {
        let key = normalize_key(key)
            .ok_or_else(|| MapError(format!("{key:?}: expected user@domain, user@ or @domain")))?;
        if to.is_empty() {
            return Err(MapError(format!("{key}: no destination")));
        }
        let mut destinations = Vec::with_capacity(to.len());
        for d in to {
            let addr = bare_address(d)
                .filter(|a| !a.contains(char::is_whitespace) && a.rsplit_once('@').is_some())
                .ok_or_else(|| MapError(format!("{key}: destination {d:?} is not an address")))?;
            if !destinations.contains(&addr) {
                destinations.push(addr);
            }
        }
        if self.entries.contains_key(&key) {
            return Err(MapError(format!("{key}: listed twice")));
        }
        self.entries.insert(key, Entry { destinations, mode });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The entry for one recipient, and the key that matched.
    pub fn lookup(&self, recipient: &str) -> Option<(&str, &Entry, Option<String>)> {
        let addr = bare_address(recipient)?;
        let (local, domain) = addr.rsplit_once('@')?;
        let (base, tag) = match local.split_once('+') {
            Some((base, tag)) => (base, Some(tag.to_string())),
            None => (local, None),
        };
        let untagged = format!("{base}@{domain}");
        let candidates = [
            (addr.clone(), None),
            (untagged, tag.clone()),
            (format!("{local}@"), None),
            (format!("{base}@"), tag.clone()),
            (format!("@{domain}"), tag),
        ];
        candidates.into_iter().find_map(|(key, tag)| {
            self.entries
                .get_key_value(&key)
                .map(|(k, e)| (k.as_str(), e, tag))
        })
    }

    /// Every destination for these envelope recipients, each destination once (the first
    /// recipient that leads to it names the route).
    pub fn routes(&self, recipients: &[String], tags: TagPolicy) -> Vec<Route> {
        let mut out: Vec<Route> = Vec::new();
        for r in recipients {
            let Some((key, entry, tag)) = self.lookup(r) else {
                continue;
            };
            for d in &entry.destinations {
                let destination = match (&tag, tags) {
                    (Some(tag), TagPolicy::Keep) => with_tag(d, tag),
                    _ => d.clone(),
                };
                if !out.iter().any(|o| o.destination == destination) {
                    out.push(Route {
                        recipient: r.trim().to_ascii_lowercase(),
                        key: key.to_string(),
                        destination,
                        mode: entry.mode,
                    });
                }
            }
        }
        out
    }
}

/// `User@Example.com` → `user@example.com`; `user@` and `@domain` stay partial keys.
fn normalize_key(key: &str) -> Option<String> {
    let k = key.trim().trim_matches(['<', '>']).to_ascii_lowercase();
    let (local, domain) = k.split_once('@')?;
    let ok_part = |s: &str| !s.contains(['@', ' ', ',', ';', '=']);
    ((!local.is_empty() || !domain.is_empty()) && ok_part(local) && ok_part(domain)).then_some(k)
}

/// Whether a sender's `+tag` may be copied into a destination: letters, digits, `.`, `_` and `-`,
/// no leading, trailing or doubled dot, and short. Anything else (`%`, `!`, quotes, `@`, a
/// second `+`) is routing syntax or a way to make the address invalid, so it is dropped.
pub fn tag_is_safe(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 32
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !tag.starts_with('.')
        && !tag.ends_with('.')
        && !tag.contains("..")
}

/// `me@gmail.com` + `orders` → `me+orders@gmail.com`, unless the destination has a tag already,
/// the tag is not [safe](tag_is_safe), or the local part would pass RFC 5321's 64 octets.
fn with_tag(destination: &str, tag: &str) -> String {
    match destination.rsplit_once('@') {
        Some((local, domain))
            if !local.contains('+') && tag_is_safe(tag) && local.len() + 1 + tag.len() <= 64 =>
        {
            format!("{local}+{tag}@{domain}")
        }
        _ => destination.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn routes(map: &str, rcpt: &[&str], tags: TagPolicy) -> Vec<(String, String, Mode)> {
        let m = ForwardMap::parse(map).unwrap();
        let r: Vec<String> = rcpt.iter().map(|s| s.to_string()).collect();
        m.routes(&r, tags)
            .into_iter()
            .map(|r| (r.key, r.destination, r.mode))
            .collect()
    }

    #[test]
    fn precedence_exact_then_local_part_then_domain() {
        let map = "info@example.com=a@gmail.com; info@=b@gmail.com; @example.com=c@gmail.com";
        let keep = TagPolicy::Keep;
        assert_eq!(routes(map, &["Info@Example.com"], keep)[0].1, "a@gmail.com");
        assert_eq!(routes(map, &["info@other.org"], keep)[0].1, "b@gmail.com");
        assert_eq!(
            routes(map, &["sales@example.com"], keep)[0].1,
            "c@gmail.com"
        );
        assert!(routes(map, &["sales@other.org"], keep).is_empty());
    }

    #[test]
    fn plus_tags_match_the_untagged_entry_and_are_kept_or_dropped() {
        let map = "info@example.com=me@gmail.com,you+x@outlook.com";
        let kept = routes(map, &["info+orders@example.com"], TagPolicy::Keep);
        let dests: Vec<&str> = kept.iter().map(|r| r.1.as_str()).collect();
        assert_eq!(dests, ["me+orders@gmail.com", "you+x@outlook.com"]);
        let dropped = routes(map, &["info+orders@example.com"], TagPolicy::Drop);
        assert_eq!(dropped[0].1, "me@gmail.com");
        // An entry for the tagged address itself wins and passes no tag on.
        let map = "info+vip@example.com=vip@gmail.com; info@example.com=me@gmail.com";
        assert_eq!(
            routes(map, &["info+vip@example.com"], TagPolicy::Keep)[0].1,
            "vip@gmail.com"
        );
    }

    #[test]
    fn a_tag_is_kept_only_when_it_is_plain() {
        let map = "info@example.com=me@gmail.com";
        for (rcpt, expected) in [
            ("info+orders.2024@example.com", "me+orders.2024@gmail.com"),
            ("info+a%evil.org@example.com", "me@gmail.com"),
            ("info+x!y@example.com", "me@gmail.com"),
            ("info+\"q\"@example.com", "me@gmail.com"),
            ("info+a+b@example.com", "me@gmail.com"),
            ("info+..@example.com", "me@gmail.com"),
            (
                &format!("info+{}@example.com", "t".repeat(40)),
                "me@gmail.com",
            ),
        ] {
            assert_eq!(
                routes(map, &[rcpt], TagPolicy::Keep)[0].1,
                expected,
                "{rcpt}"
            );
        }
    }

    #[test]
    fn several_recipients_reach_each_destination_once() {
        let map = "a@example.com=me@gmail.com; b@example.com=me@gmail.com,x@y.org";
        let r = routes(map, &["a@example.com", "b@example.com"], TagPolicy::Drop);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, "a@example.com");
        assert_eq!(r[1].1, "x@y.org");
    }

    #[test]
    fn json_and_attach_mode() {
        let map = r#"{"billing@": {"to": ["m@gmail.com"], "mode": "attach"},
                      "@example.com": "all@gmail.com", "ops@example.com": ["a@b.c", "d@e.f"]}"#;
        let r = routes(map, &["billing@example.com"], TagPolicy::Drop);
        assert_eq!(r[0].2, Mode::Attach);
        assert_eq!(routes(map, &["ops@example.com"], TagPolicy::Drop).len(), 2);
        let r = routes(
            "x@example.com=attach:m@gmail.com",
            &["x@example.com"],
            TagPolicy::Drop,
        );
        assert_eq!(r[0].2, Mode::Attach);
    }

    #[test]
    fn bad_maps_name_the_entry() {
        for (text, needle) in [
            ("info@example.com", "key=destination"),
            ("info=me@gmail.com", "info"),
            ("info@example.com=not-an-address", "not-an-address"),
            ("a@b.c=x@y.z; A@B.C=q@r.s", "listed twice"),
            (r#"{"a@b.c": {"to": "x@y.z", "mode": "bounce"}}"#, "bounce"),
            ("{nope", "not JSON"),
            ("a@b.c=", "no destination"),
        ] {
            let e = ForwardMap::parse(text).unwrap_err();
            assert!(e.to_string().contains(needle), "{text}: {e}");
        }
        assert!(ForwardMap::parse("  ").unwrap().is_empty());
    }
}

/// Where the map comes from: the environment, or an SSM parameter read at cold start and again
/// once its copy is older than the TTL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapSpec {
    Inline(ForwardMap),
    /// The parameter's ARN (`arn:aws:ssm:<region>:<account>:parameter/<name>`).
    Parameter(String),
}

/// Reads a parameter's current value: SSM `GetParameter` in Lambda.
#[async_trait::async_trait]
pub trait Parameters: Send + Sync {
    async fn get(&self, arn: &str) -> Result<String, mailroom::ports::PortError>;
}

#[cfg(feature = "aws")]
/// SSM Parameter Store through the shared reader (the api function's secrets use it too).
pub struct SsmParameters(pub aws_config::SdkConfig);

#[cfg(feature = "aws")]
#[async_trait::async_trait]
impl Parameters for SsmParameters {
    async fn get(&self, arn: &str) -> Result<String, mailroom::ports::PortError> {
        mailroom::aws::secrets::fetch(&self.0, arn).await
    }
}

/// The map in use, reloaded from its parameter after `ttl`. A reload that fails keeps the copy
/// it has (logged); only a cold start without any copy fails the invocation.
pub struct MapCache {
    spec: MapSpec,
    ttl: std::time::Duration,
    current: tokio::sync::Mutex<Option<(std::time::Instant, std::sync::Arc<ForwardMap>)>>,
}

/// Why no map could be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("reading the forward map from {arn}: {source}")]
    Fetch {
        arn: String,
        source: mailroom::ports::PortError,
    },
    #[error("the forward map in {arn} is invalid: {source}")]
    Invalid { arn: String, source: MapError },
}

impl MapCache {
    pub fn new(spec: MapSpec, ttl: std::time::Duration) -> MapCache {
        MapCache {
            spec,
            ttl,
            current: tokio::sync::Mutex::new(None),
        }
    }

    pub async fn get(
        &self,
        parameters: &dyn Parameters,
    ) -> Result<std::sync::Arc<ForwardMap>, LoadError> {
        let arn = match &self.spec {
            MapSpec::Inline(map) => return Ok(std::sync::Arc::new(map.clone())),
            MapSpec::Parameter(arn) => arn,
        };
        let mut current = self.current.lock().await;
        if let Some((at, map)) = current.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(map.clone());
        }
        let loaded = match parameters.get(arn).await {
            Ok(text) => ForwardMap::parse(&text).map_err(|source| LoadError::Invalid {
                arn: arn.clone(),
                source,
            }),
            Err(source) => Err(LoadError::Fetch {
                arn: arn.clone(),
                source,
            }),
        };
        let in_use = current.as_ref().map(|(_, map)| map.clone());
        let map = match (loaded, in_use) {
            (Ok(map), _) => std::sync::Arc::new(map),
            (Err(e), Some(stale)) => {
                tracing::warn!(error = %e, "forward map reload failed: keeping the copy in use");
                stale
            }
            (Err(e), None) => return Err(e),
        };
        // A failed reload is tried again after another TTL, not on every message.
        *current = Some((std::time::Instant::now(), map.clone()));
        Ok(map)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod cache_tests {
    use super::*;
    use mailroom::ports::{ErrorKind, PortError};
    use std::sync::Mutex;

    struct Script(Mutex<Vec<Result<String, PortError>>>, Mutex<usize>);

    #[async_trait::async_trait]
    impl Parameters for Script {
        async fn get(&self, _arn: &str) -> Result<String, PortError> {
            *self.1.lock().unwrap() += 1;
            self.0.lock().unwrap().remove(0)
        }
    }

    #[tokio::test]
    async fn parameter_is_cached_for_the_ttl_and_a_failed_reload_keeps_the_copy() {
        let arn = "arn:aws:ssm:us-east-1:1:parameter/map".to_string();
        let fail = || {
            Err(PortError::new(
                ErrorKind::Transient,
                "ssm:GetParameter",
                "down",
            ))
        };
        let script = Script(
            Mutex::new(vec![
                fail(),
                Ok("a@example.com=x@y.org".into()),
                fail(),
                Ok("a@example.com=z@y.org".into()),
            ]),
            Mutex::new(0),
        );
        let cache = MapCache::new(MapSpec::Parameter(arn.clone()), std::time::Duration::ZERO);
        assert!(matches!(
            cache.get(&script).await,
            Err(LoadError::Fetch { .. })
        ));
        let first = cache.get(&script).await.unwrap();
        assert_eq!(first.len(), 1);
        // TTL zero: every call reloads; the failed one serves the copy in use.
        let kept = cache.get(&script).await.unwrap();
        assert_eq!(kept, first);
        let next = cache.get(&script).await.unwrap();
        assert_eq!(
            next.lookup("a@example.com").unwrap().1.destinations,
            ["z@y.org"]
        );
        let long = MapCache::new(MapSpec::Parameter(arn), std::time::Duration::from_secs(300));
        let script = Script(Mutex::new(vec![Ok("a@b.c=d@e.f".into())]), Mutex::new(0));
        long.get(&script).await.unwrap();
        long.get(&script).await.unwrap();
        assert_eq!(*script.1.lock().unwrap(), 1);
    }
}
