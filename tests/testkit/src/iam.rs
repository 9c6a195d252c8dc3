//! IAM as AWS enforces it: a second moto server that authenticates every request and evaluates
//! the caller's policies, and SDK credentials carrying exactly one function's policy as
//! `template.yaml` grants it (`scripts/py/iam_policy.py` reads and resolves it; an IAM user with
//! that policy is created on the server over the wire).
//!
//! The server is separate from [`crate::moto`] because enforcement is server-wide: on it, the
//! static test keys every other test uses are refused. `scripts/test` starts it and exports
//! [`ENDPOINT_VAR`] and [`ADMIN_VAR`]; without them the first call to [`server`] starts a private
//! one. Setup and checks of side effects use the administrator ([`IamMoto::admin`]); the code
//! under test gets a [`Principal`].
//!
//! What moto enforces: the action of every call, on every service; the resource only for S3
//! (bucket and object ARNs) and SQS (queue ARNs). For other services the user is granted the
//! template's actions on `*` and the resources are reported as `widened`, so a test checks them
//! against the configuration it runs with ([`Report::widened_resources`]).

use crate::{REGION, workspace_root};
use serde_json::Value;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};

pub const ENDPOINT_VAR: &str = "MAILROOM_TEST_MOTO_IAM_ENDPOINT";
/// The administrator's `KEYID:SECRET` on that server.
pub const ADMIN_VAR: &str = "MAILROOM_TEST_MOTO_IAM_ADMIN";
/// moto's account: what the ARNs of resources created on it carry.
pub const ACCOUNT: &str = "123456789012";

/// A moto server with IAM enforced.
#[derive(Debug)]
pub struct IamMoto {
    pub endpoint: String,
    admin: (String, String),
    _supervisor: Option<Mutex<Child>>,
}

/// The IAM-enforcing server, started on first use if the test command did not start one.
pub fn server() -> &'static IamMoto {
    static SERVER: OnceLock<IamMoto> = OnceLock::new();
    SERVER.get_or_init(|| {
        let endpoint = std::env::var(ENDPOINT_VAR).unwrap_or_default();
        let admin = std::env::var(ADMIN_VAR).unwrap_or_default();
        if !endpoint.trim().is_empty() {
            return IamMoto {
                endpoint: endpoint.trim().trim_end_matches('/').to_string(),
                admin: split_keys(&admin).unwrap_or_else(|| {
                    panic!("{ENDPOINT_VAR} is set, so {ADMIN_VAR} must hold KEYID:SECRET")
                }),
                _supervisor: None,
            };
        }
        start_private()
    })
}

fn split_keys(s: &str) -> Option<(String, String)> {
    let (id, secret) = s.trim().split_once(':')?;
    (!id.is_empty() && !secret.is_empty()).then(|| (id.to_string(), secret.to_string()))
}

fn python() -> std::path::PathBuf {
    let python = workspace_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "moto is not installed: run scripts/setup-venv, or set {ENDPOINT_VAR} and {ADMIN_VAR}"
    );
    python
}

fn start_private() -> IamMoto {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1");
    // The launcher's supervisor stops moto when our end of its stdin closes (this process ends).
    let mut child = Command::new(python())
        .arg(workspace_root().join("scripts/py/moto_launcher.py"))
        .args(["supervise", &port.to_string(), "--iam"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting moto_launcher.py supervise --iam");
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    let mut words = line.split_whitespace();
    let (Some(endpoint), Some(admin)) = (words.next(), words.next().and_then(split_keys)) else {
        panic!("moto_launcher.py supervise --iam printed {line:?}, not '<endpoint> <keys>'");
    };
    IamMoto {
        endpoint: endpoint.to_string(),
        admin,
        _supervisor: Some(Mutex::new(child)),
    }
}

fn config(endpoint: &str, id: &str, secret: &str, name: &'static str) -> aws_config::SdkConfig {
    let creds = aws_credential_types::Credentials::new(id, secret, None, None, name);
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(creds))
        .build()
}

/// An S3 client for `conf` (path-style, as every client pointed at moto must be).
pub fn s3(conf: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(conf)
            .force_path_style(true)
            .build(),
    )
}

/// The store a function reads raw mail through (`mailroom::aws::mail_store`), with `conf`'s
/// credentials: decrypting under `kms_key`, writing SSE-KMS under it.
pub fn mail_store(
    conf: &aws_config::SdkConfig,
    kms_key: Option<&str>,
) -> mailroom::envelope::Decrypting<mailroom::aws::S3Store> {
    mailroom::aws::mail_store_over(mailroom::aws::S3Store::new(s3(conf)), conf, kms_key)
}

impl IamMoto {
    /// Every action on every resource: for setting up the world and reading what the code did.
    pub fn admin(&self) -> aws_config::SdkConfig {
        config(
            &self.endpoint,
            &self.admin.0,
            &self.admin.1,
            "mailroom-testkit-admin",
        )
    }

    /// A fresh bucket, made by the administrator.
    pub async fn bucket(&self, prefix: &str) -> String {
        let name = crate::unique(prefix);
        s3(&self.admin())
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
        name
    }

    /// A fresh bucket holding `body` at `key` (say, where a rule's S3 action wrote the raw mail).
    pub async fn bucket_with(&self, prefix: &str, key: &str, body: Vec<u8>) -> String {
        let name = self.bucket(prefix).await;
        s3(&self.admin())
            .put_object()
            .bucket(&name)
            .key(key)
            .body(body.into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("put s3://{name}/{key}: {e:?}"));
        name
    }

    /// A fresh bucket holding the raw mail `body` of `message_id` at `raw/<message_id>`, encrypted
    /// as SES's "Encrypt message" does for this account's `receive` rule under a new KMS key:
    /// (bucket, key ARN).
    pub async fn bucket_with_sealed(
        &self,
        prefix: &str,
        message_id: &str,
        mut body: Vec<u8>,
    ) -> (String, String) {
        use mailroom::ports::EncryptionContext;
        let admin = self.admin();
        let key_arn = crate::kms_key_on(&admin).await;
        let context = EncryptionContext::from([
            ("aws:ses:message-id".to_string(), message_id.to_string()),
            ("aws:ses:rule-name".to_string(), "receive".to_string()),
            ("aws:ses:source-account".to_string(), ACCOUNT.to_string()),
        ]);
        let keys = mailroom::aws::KmsDataKeys::from_conf(&admin);
        let metadata = mailroom::envelope::seal(&keys, &key_arn, &context, &mut body)
            .await
            .unwrap_or_else(|e| panic!("sealing raw/{message_id}: {e}"));
        let name = self.bucket(prefix).await;
        s3(&admin)
            .put_object()
            .bucket(&name)
            .key(format!("raw/{message_id}"))
            .set_metadata(Some(metadata))
            .body(body.into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("put s3://{name}/raw/{message_id}: {e:?}"));
        (name, key_arn)
    }

    /// A fresh queue, made by the administrator: (URL, ARN).
    pub async fn queue(&self, prefix: &str) -> (String, String) {
        let name = crate::unique(prefix);
        let url = aws_sdk_sqs::Client::new(&self.admin())
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create queue {name}: {e:?}"))
            .queue_url
            .unwrap_or_default();
        (url, format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"))
    }

    /// A fresh topic, made by the administrator: its ARN.
    pub async fn topic(&self, prefix: &str) -> String {
        let name = crate::unique(prefix);
        aws_sdk_sns::Client::new(&self.admin())
            .create_topic()
            .name(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create topic {name}: {e:?}"))
            .topic_arn
            .unwrap_or_default()
    }
}

/// What the template's intrinsics resolve to in the test's world: physical names of its
/// resources and values of its parameters.
#[derive(Debug, Clone, Default)]
pub struct World {
    resources: serde_json::Map<String, Value>,
    params: serde_json::Map<String, Value>,
}

impl World {
    pub fn new() -> Self {
        World::default()
    }

    /// An `AWS::S3::Bucket`: `!Ref` is its name, `.Arn` its ARN.
    pub fn bucket(mut self, logical: &str, name: &str) -> Self {
        self.resources.insert(
            logical.into(),
            serde_json::json!({"ref": name, "Arn": format!("arn:aws:s3:::{name}")}),
        );
        self
    }

    /// An `AWS::SQS::Queue`: `!Ref` is its URL.
    pub fn queue(mut self, logical: &str, url: &str, arn: &str) -> Self {
        let name = arn.rsplit(':').next().unwrap_or_default();
        self.resources.insert(
            logical.into(),
            serde_json::json!({"ref": url, "Arn": arn, "QueueName": name, "QueueUrl": url}),
        );
        self
    }

    /// An `AWS::SNS::Topic`: `!Ref` is its ARN.
    pub fn topic(mut self, logical: &str, arn: &str) -> Self {
        self.resources.insert(
            logical.into(),
            serde_json::json!({"ref": arn, "TopicArn": arn}),
        );
        self
    }

    /// Any other resource, by what `!Ref` gives (an SES configuration set's name, ...).
    pub fn resource(mut self, logical: &str, reference: &str) -> Self {
        self.resources
            .insert(logical.into(), serde_json::json!({"ref": reference}));
        self
    }

    /// A template parameter.
    pub fn param(mut self, name: &str, value: &str) -> Self {
        self.params.insert(name.into(), Value::String(value.into()));
        self
    }

    /// `KmsKeyArn` when the raw mail is encrypted under a key; left empty (no KMS grant) when not.
    pub fn kms_key(self, key: Option<&str>) -> Self {
        match key {
            Some(key) => self.param("KmsKeyArn", key),
            None => self,
        }
    }

    fn spec(&self) -> String {
        serde_json::json!({"resources": self.resources, "params": self.params}).to_string()
    }
}

/// One `(action, resource)` pair a policy allows.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    pub action: String,
    pub resource: String,
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} on {}", self.action, self.resource)
    }
}

/// Credentials of an IAM user holding a function's template policy (possibly minus one grant).
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: String,
    /// The grant left out of this user's policy, if any.
    pub without: Option<Grant>,
    config: aws_config::SdkConfig,
}

impl Principal {
    /// SDK configuration that signs as this user, pointed at the IAM-enforcing server.
    pub fn config(&self) -> aws_config::SdkConfig {
        self.config.clone()
    }
}

/// A function's template policy, resolved, and users holding it.
#[derive(Debug)]
pub struct Policy {
    pub function: String,
    /// The policy document exactly as the template grants it.
    pub document: Value,
    pub grants: Vec<Grant>,
    /// Grants whose resource moto does not check (see the module docs).
    pub widened: Vec<Grant>,
    /// The first holds the whole policy; then one per grant, without it (a grant whose resource
    /// moto cannot check, of an action granted on several resources, gets none; instead one
    /// principal lacks the action on all of them, its `without` resource being `*`).
    pub principals: Vec<Principal>,
}

fn grant(v: &Value) -> Grant {
    Grant {
        action: v["action"].as_str().unwrap_or_default().to_string(),
        resource: v["resource"].as_str().unwrap_or_default().to_string(),
    }
}

/// Reads `function`'s policy out of template.yaml with `world`'s names and creates its users.
pub fn policy(function: &str, world: &World) -> Policy {
    let srv = server();
    let out = Command::new(python())
        .arg(workspace_root().join("scripts/py/iam_policy.py"))
        .args(["users", &srv.endpoint, function, &world.spec()])
        .env(ADMIN_VAR, format!("{}:{}", srv.admin.0, srv.admin.1))
        .stderr(Stdio::inherit())
        .output()
        .expect("running scripts/py/iam_policy.py");
    assert!(
        out.status.success(),
        "iam_policy.py users {function} failed"
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("iam_policy.py prints JSON");
    let users = v["users"].as_array().cloned().unwrap_or_default();
    let principals = users
        .iter()
        .map(|u| Principal {
            user: u["user"].as_str().unwrap_or_default().to_string(),
            without: u["without"].is_object().then(|| grant(&u["without"])),
            config: config(
                &srv.endpoint,
                u["access_key_id"].as_str().unwrap_or_default(),
                u["secret_access_key"].as_str().unwrap_or_default(),
                "mailroom-testkit-function",
            ),
        })
        .collect();
    let widened = users
        .first()
        .and_then(|u| u["widened"].as_array())
        .map(|w| w.iter().map(grant).collect())
        .unwrap_or_default();
    Policy {
        function: function.to_string(),
        document: v["policy"].clone(),
        grants: v["grants"]
            .as_array()
            .map(|g| g.iter().map(grant).collect())
            .unwrap_or_default(),
        widened,
        principals,
    }
}

/// What [`least_privilege`] found.
#[derive(Debug)]
pub struct Report {
    pub function: String,
    /// Grants whose removal made the scenario fail, with how it failed.
    pub needed: Vec<(Grant, String)>,
    /// Grants the scenario succeeded without.
    pub unexercised: Vec<Grant>,
    pub widened: Vec<Grant>,
}

impl Report {
    /// The resources the template grants `action` on, where moto cannot check them.
    pub fn widened_resources(&self, action: &str) -> Vec<String> {
        self.widened
            .iter()
            .filter(|g| g.action == action)
            .map(|g| g.resource.clone())
            .collect()
    }

    /// [`Self::assert_exercised_except`] for a function that reads mail SES encrypted under `key`
    /// (none: mail is not encrypted, and the policy has no KMS grant) and writes SSE-KMS under it:
    /// its KMS grants go unexercised as well, and name exactly `key`.
    /// moto evaluates no IAM condition, so the two kms:Decrypt statements (SES's context, and
    /// SSE-KMS via S3) are one grant to it, and its S3 writes SSE-KMS without asking KMS; which
    /// context each statement allows is held by check-template instead.
    pub fn assert_exercised_except_kms(&self, key: Option<&str>, allowed: &[(&str, &str, &str)]) {
        let Some(key) = key else {
            self.assert_exercised_except(allowed);
            assert!(self.widened_resources("kms:Decrypt").is_empty());
            return;
        };
        let overlapping = "moto ignores the conditions that tell the two kms:Decrypt grants apart";
        let mut all = vec![
            ("kms:Decrypt", key, overlapping),
            ("kms:Decrypt", key, overlapping),
            (
                "kms:GenerateDataKey",
                key,
                "moto's S3 writes SSE-KMS objects without calling KMS",
            ),
        ];
        all.extend_from_slice(allowed);
        self.assert_exercised_except(&all);
        // moto checks no KMS resource: the template must name exactly the configured key.
        assert_eq!(
            self.widened_resources("kms:Decrypt"),
            vec![key.to_string(); 2]
        );
        assert_eq!(
            self.widened_resources("kms:GenerateDataKey"),
            vec![key.to_string()]
        );
    }

    /// Fails unless exactly `allowed` (grant, why moto cannot exercise it) went unexercised.
    pub fn assert_exercised_except(&self, allowed: &[(&str, &str, &str)]) {
        let mut allowed: Vec<Grant> = allowed
            .iter()
            .map(|(a, r, _why)| Grant {
                action: a.to_string(),
                resource: r.to_string(),
            })
            .collect();
        allowed.sort();
        let mut got = self.unexercised.clone();
        got.sort();
        assert_eq!(
            got, allowed,
            "{}: template grants the scenario succeeded without (remove them, or exercise them)",
            self.function
        );
    }
}

/// Runs `scenario` as `function` with its whole template policy (it must succeed: a failure is a
/// missing permission), then once per grant with that grant removed (a success means the test
/// never needs it). `scenario` sets up what it needs as the administrator, runs the code under
/// test with the principal's configuration, checks the effects as the administrator, and
/// returns `Err` describing what went wrong.
pub async fn least_privilege<F, Fut>(function: &str, world: &World, scenario: F) -> Report
where
    F: Fn(aws_config::SdkConfig) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let policy = policy(function, world);
    let mut principals = policy.principals.iter();
    let full = principals.next().expect("the full policy's user");
    if let Err(e) = scenario(full.config()).await {
        panic!(
            "{function} fails with exactly its template policy (a permission is missing?): {e}\n\
             policy: {}",
            policy.document
        );
    }
    let mut report = Report {
        function: function.to_string(),
        needed: Vec::new(),
        unexercised: Vec::new(),
        widened: policy.widened.clone(),
    };
    for p in principals {
        let Some(g) = p.without.clone() else { continue };
        match scenario(p.config()).await {
            Ok(()) => report.unexercised.push(g),
            Err(e) => report.needed.push((g, e)),
        }
    }
    eprintln!("{function}: IAM enforced by moto, one run per grant removed");
    for (g, e) in &report.needed {
        let e: String = e.chars().take(160).collect();
        eprintln!("  needed      {g}  (without it: {e})");
    }
    for g in &report.unexercised {
        eprintln!("  UNEXERCISED {g}");
    }
    for g in &report.widened {
        eprintln!("  resource not checked by moto: {g}");
    }
    report
}
