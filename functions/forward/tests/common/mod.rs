//! In-memory ports and an SES event built from a raw message, for the forward function's tests
//! (the wire tests use moto instead).
#![allow(dead_code, clippy::unwrap_used)]

use async_trait::async_trait;
use bytes::Bytes;
use mailroom::ports::{ErrorKind, ObjectMeta, ObjectStore, PortError, PutOutcome};
use mailroom::ses::{SesEvent, SesHeader};
use mailroom_forward::map::{MapCache, Parameters};
use mailroom_forward::metrics::Metrics;
use mailroom_forward::sender::{MailSender, OutgoingMail, SendError};
use mailroom_forward::{Config, Deps};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

pub const BUCKET: &str = "mail";

#[derive(Default)]
pub struct Store(pub Mutex<BTreeMap<String, Bytes>>);

impl Store {
    pub fn with_raw(id: &str, raw: &[u8]) -> Store {
        let s = Store::default();
        s.0.lock()
            .unwrap()
            .insert(format!("raw/{id}"), Bytes::copy_from_slice(raw));
        s
    }
    pub fn keys(&self) -> Vec<String> {
        self.0.lock().unwrap().keys().cloned().collect()
    }
}

#[async_trait]
impl ObjectStore for Store {
    async fn get(&self, _bucket: &str, key: &str) -> Result<Bytes, PortError> {
        self.0
            .lock()
            .unwrap()
            .get(key)
            .cloned()
            .ok_or_else(|| PortError::new(ErrorKind::NotFound, "s3:GetObject", key.to_string()))
    }
    async fn put_if_absent(
        &self,
        _bucket: &str,
        key: &str,
        body: Bytes,
        _meta: &ObjectMeta,
    ) -> Result<PutOutcome, PortError> {
        let mut m = self.0.lock().unwrap();
        if m.contains_key(key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        m.insert(key.to_string(), body);
        Ok(PutOutcome::Created)
    }
    async fn presign_get(&self, _: &str, key: &str, _: Duration) -> Result<String, PortError> {
        Ok(key.to_string())
    }
}

/// Records what is sent; answers from `script` first (then success).
#[derive(Default)]
pub struct Outbox {
    pub sent: Mutex<Vec<OutgoingMail>>,
    pub script: Mutex<Vec<Result<(), SendError>>>,
}

impl Outbox {
    pub fn failing(first: Vec<Result<(), SendError>>) -> Outbox {
        Outbox {
            sent: Mutex::default(),
            script: Mutex::new(first),
        }
    }
    pub fn sent(&self) -> Vec<OutgoingMail> {
        self.sent.lock().unwrap().clone()
    }
}

#[async_trait]
impl MailSender for Outbox {
    async fn send(&self, mail: &OutgoingMail) -> Result<String, SendError> {
        let next = {
            let mut s = self.script.lock().unwrap();
            if s.is_empty() { Ok(()) } else { s.remove(0) }
        };
        next?;
        let mut sent = self.sent.lock().unwrap();
        sent.push(mail.clone());
        Ok(format!("ses-{}", sent.len()))
    }
}

pub struct NoParameters;

#[async_trait]
impl Parameters for NoParameters {
    async fn get(&self, arn: &str) -> Result<String, PortError> {
        Err(PortError::new(
            ErrorKind::Permanent,
            "ssm:GetParameter",
            arn.to_string(),
        ))
    }
}

#[derive(Default)]
pub struct Counts(pub Mutex<Vec<&'static str>>);

impl Metrics for Counts {
    fn count(&self, name: &'static str, _value: u64) {
        self.0.lock().unwrap().push(name);
    }
}

impl Counts {
    pub fn of(&self, name: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|n| **n == name)
            .count()
    }
}

pub fn config(map: &str, extra: &[(&str, &str)]) -> Config {
    let mut env = vec![
        ("MAILROOM_RAW_BUCKET", BUCKET),
        ("MAILROOM_RAW_PREFIX", "raw/"),
        ("MAILROOM_FORWARD_FROM", "forwarder@example.com"),
        ("MAILROOM_FORWARD_MAP", map),
    ];
    env.extend_from_slice(extra);
    Config::from_env(env.as_slice()).unwrap()
}

pub struct World {
    pub store: Store,
    pub outbox: Outbox,
    pub counts: Counts,
    pub maps: MapCache,
}

impl World {
    pub fn new(config: &Config, store: Store, outbox: Outbox) -> World {
        World {
            store,
            outbox,
            counts: Counts::default(),
            maps: config.map_cache(),
        }
    }
    pub fn deps(&self) -> Deps<'_> {
        Deps {
            store: &self.store,
            sender: &self.outbox,
            parameters: &NoParameters,
            maps: &self.maps,
            metrics: &self.counts,
        }
    }
}

/// The Lambda event SES would send for `raw`, received for `recipients`: its headers (SES lists
/// them all, decoded as text) and PASS verdicts unless `verdicts` says otherwise.
pub fn event(
    id: &str,
    raw: &[u8],
    source: &str,
    recipients: &[&str],
    verdicts: &[(&str, &str)],
) -> SesEvent {
    let (fields, _, _) = mailroom_forward::ses_rules::fields(raw);
    let headers: Vec<serde_json::Value> = fields
        .iter()
        .map(|f| {
            let h = SesHeader {
                name: String::from_utf8_lossy(f.name).into_owned(),
                value: String::from_utf8_lossy(f.value).trim().to_string(),
            };
            serde_json::json!({"name": h.name, "value": h.value})
        })
        .collect();
    let verdict = |k: &str| {
        let v = verdicts
            .iter()
            .find(|(n, _)| *n == k)
            .map_or("PASS", |(_, v)| *v);
        serde_json::json!({"status": v})
    };
    let mut receipt = serde_json::json!({
        "timestamp": "2025-01-15T10:00:02.028Z",
        "processingTimeMillis": 120,
        "recipients": recipients,
        "spamVerdict": verdict("spam"),
        "virusVerdict": verdict("virus"),
        "spfVerdict": verdict("spf"),
        "dkimVerdict": verdict("dkim"),
        "dmarcVerdict": verdict("dmarc"),
        "action": {"type": "Lambda", "invocationType": "Event",
                   "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:forward"},
    });
    if let Some((_, p)) = verdicts.iter().find(|(n, _)| *n == "dmarcPolicy") {
        receipt["dmarcPolicy"] = serde_json::json!(p);
    }
    let json = serde_json::json!({"Records": [{
        "eventSource": "aws:ses", "eventVersion": "1.0",
        "ses": {
            "mail": {
                "timestamp": "2025-01-15T10:00:02.028Z",
                "source": source,
                "messageId": id,
                "destination": recipients,
                "headersTruncated": false,
                "headers": headers,
                "commonHeaders": {"subject": "test"},
            },
            "receipt": receipt,
        }
    }]});
    serde_json::from_value(json).unwrap()
}
