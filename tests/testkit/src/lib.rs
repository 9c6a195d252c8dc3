//! Test support shared by every crate's tests, in one place: a real moto server on 127.0.0.1
//! and AWS SDK clients pointed at it, the sample events and mail fixtures, in-memory fakes of
//! the ports ([`fakes`]), log capture ([`logs`]) and a recording HTTP server ([`http`]).
//!
//! `scripts/test` starts one moto server for the whole run and exports its address in
//! `MAILROOM_TEST_MOTO_ENDPOINT`. When a test runs without it (`cargo test -p …` by hand), the
//! first call to [`moto`] starts a private server from the project's `.venv` instead; it stops
//! when the test process exits, because its supervisor watches our stdin pipe.

pub mod fakes;
pub mod fault;
pub mod http;
pub mod iam;
pub mod logs;
pub mod reply_corpus;

pub use fakes::{MemoryStore, RecordingBouncer, RecordingPublisher};
pub use http::{HttpServer, Reply};
pub use logs::LogCapture;

use mailroom::config::Env;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub const ENDPOINT_VAR: &str = "MAILROOM_TEST_MOTO_ENDPOINT";
pub const REGION: &str = "us-east-1";

/// A running moto server.
#[derive(Debug)]
pub struct Moto {
    pub endpoint: String,
    _supervisor: Option<std::sync::Mutex<Child>>,
}

/// The workspace root (where Cargo.lock and .venv live).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .find(|p| p.join("Cargo.lock").exists() || p.join(".git").exists())
        .unwrap_or(here)
        .to_path_buf()
}

/// The shared moto server, started on first use if the test command did not start one.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        if let Ok(endpoint) = std::env::var(ENDPOINT_VAR)
            && !endpoint.trim().is_empty()
        {
            let endpoint = endpoint.trim().trim_end_matches('/').to_string();
            wait_ready(&endpoint, Duration::from_secs(30));
            return Moto {
                endpoint,
                _supervisor: None,
            };
        }
        start_private()
    })
}

fn start_private() -> Moto {
    let python = workspace_root().join(".venv/bin/python");
    assert!(
        python.exists(),
        "moto is not installed: run scripts/setup-venv (scripts/test does it for you), \
         or set {ENDPOINT_VAR} to a running moto server"
    );
    let port = free_port();
    // The one moto launcher is scripts/py/moto_launcher.py; its `supervise` mode exits (and
    // stops moto) when our end of its stdin closes, i.e. when the test process ends, so no
    // server outlives the tests.
    let launcher = workspace_root().join("scripts/py/moto_launcher.py");
    let child = Command::new(&python)
        .arg(&launcher)
        .args(["supervise", &port.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting moto with {}: {e}", launcher.display()));
    let endpoint = format!("http://127.0.0.1:{port}");
    wait_ready(&endpoint, Duration::from_secs(60));
    Moto {
        endpoint,
        _supervisor: Some(std::sync::Mutex::new(child)),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

fn wait_ready(endpoint: &str, timeout: Duration) {
    let addr: SocketAddr = endpoint
        .trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|e| panic!("{ENDPOINT_VAR}={endpoint}: not host:port ({e})"));
    let start = Instant::now();
    loop {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let req = "GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
            let mut buf = [0u8; 12];
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_exact(&mut buf).is_ok()
                && buf.starts_with(b"HTTP/1.")
            {
                return;
            }
        }
        assert!(
            start.elapsed() < timeout,
            "moto at {endpoint} did not answer within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// SDK configuration pointed at moto with static test credentials.
pub fn sdk_config() -> aws_config::SdkConfig {
    let creds = aws_credential_types::Credentials::new(
        "testing",
        "testing",
        None,
        None,
        "mailroom-testkit",
    );
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(&moto().endpoint)
        .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(creds))
        .build()
}

pub fn s3() -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&sdk_config())
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

pub fn sns() -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(&sdk_config())
}

pub fn sqs() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&sdk_config())
}

pub fn ses() -> aws_sdk_ses::Client {
    aws_sdk_ses::Client::new(&sdk_config())
}

pub fn kms() -> aws_sdk_kms::Client {
    aws_sdk_kms::Client::new(&sdk_config())
}

/// A new symmetric KMS key in moto; its ARN.
pub async fn kms_key() -> String {
    kms_key_on(&sdk_config()).await
}

/// A new symmetric KMS key where `conf` points (the IAM-enforcing server's administrator); its ARN.
pub async fn kms_key_on(conf: &aws_config::SdkConfig) -> String {
    let out = aws_sdk_kms::Client::new(conf)
        .create_key()
        .description("mailroom test key")
        .send()
        .await
        .expect("CreateKey");
    out.key_metadata
        .and_then(|m| m.arn)
        .expect("CreateKey answers with the key's ARN")
}

/// A domain verified in moto's SES (v1 and v2 share moto's identities): SES sends only from a
/// verified identity.
pub async fn verified_domain(prefix: &str) -> String {
    let domain = format!("{}.example.com", unique(prefix));
    ses()
        .verify_domain_identity()
        .domain(&domain)
        .send()
        .await
        .unwrap_or_else(|e| panic!("verify domain {domain}: {e:?}"));
    domain
}

/// One message moto's SES accepted (`SendRawEmail`, or SES v2 `SendEmail` with raw content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentMail {
    /// The message id SES answered with.
    pub id: String,
    /// The envelope destinations, then (moto adds them) the addresses of the message's own
    /// `To` and `Cc`.
    pub destinations: Vec<String>,
    pub raw: String,
}

/// moto's model dump (`/moto-api/data.json`). moto builds it by walking every backend while other
/// tests on the same server change them, and then answers 500 now and then: asked again, up to
/// ten times, before the test fails with what moto said.
fn model_dump() -> serde_json::Value {
    let endpoint = &moto().endpoint;
    let addr = endpoint.trim_start_matches("http://");
    let mut last = String::new();
    for _ in 0..10 {
        let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("moto at {addr}: {e}"));
        write!(
            s,
            "GET /moto-api/data.json HTTP/1.0\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .and_then(|()| s.flush())
        .unwrap_or_else(|e| panic!("asking moto for its model dump: {e}"));
        let mut body = Vec::new();
        s.read_to_end(&mut body)
            .unwrap_or_else(|e| panic!("reading moto's model dump: {e}"));
        let at = body
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(body.len(), |p| p + 4);
        match serde_json::from_slice(&body[at..]) {
            Ok(v) => return v,
            Err(e) => {
                let head = String::from_utf8_lossy(&body[..body.len().min(300)]);
                last = format!("{e}; moto answered: {head}");
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
        }
    }
    panic!("moto's model dump is not JSON, ten times over: {last}")
}

/// Every raw message moto's SES has accepted since it started, read from its model dump (SES
/// keeps no API to list sent mail). Other tests on the same moto send too: filter by destination.
pub fn ses_sent() -> Vec<SentMail> {
    let v = model_dump();
    let text = |m: &serde_json::Value, k: &str| m[k].as_str().unwrap_or_default().to_string();
    v["ses"]["RawMessage"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|m| SentMail {
            id: text(m, "id"),
            destinations: m["destinations"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect(),
            raw: text(m, "raw_data"),
        })
        .collect()
}

/// A name no other test in this run uses (buckets, topics and queues share one moto).
pub fn unique(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh bucket on moto.
pub async fn bucket(prefix: &str) -> String {
    let name = unique(prefix);
    s3().create_bucket()
        .bucket(&name)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
    name
}

/// The `events/` folder: sample SES events and .eml fixtures.
pub fn events_dir() -> PathBuf {
    workspace_root().join("events")
}

/// Reads a file under `events/`.
pub fn event_file(rel: &str) -> Vec<u8> {
    let p = events_dir().join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// The `.eml` fixtures of `events/mail/` (the sample mail with its golden JSON), sorted.
pub fn mail_fixtures() -> Vec<PathBuf> {
    emls(&events_dir().join("mail"))
}

/// The `.eml` fixtures of `events/mail/defects/`: one per parsing defect found on real mail.
pub fn defect_fixtures() -> Vec<PathBuf> {
    emls(&events_dir().join("mail/defects"))
}

fn emls(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    files.sort();
    files
}

/// A fresh bucket on moto holding `events/mail/<eml>` at `raw/<message_id>`, where the rule's
/// S3 action would have written it, and the S3 adapter pointed at it.
pub async fn bucket_with_raw(
    prefix: &str,
    message_id: &str,
    eml: &str,
) -> (String, mailroom::aws::S3Store) {
    use mailroom::ports::{ObjectMeta, ObjectStore};
    let bucket = bucket(prefix).await;
    let store = mailroom::aws::S3Store::new(s3());
    store
        .put_if_absent(
            &bucket,
            &format!("raw/{message_id}"),
            event_file(&format!("mail/{eml}")).into(),
            &ObjectMeta::new("message/rfc822"),
        )
        .await
        .unwrap_or_else(|e| panic!("putting raw/{message_id} into {bucket}: {e}"));
    (bucket, store)
}

/// How [`bucket_with_sealed_raw`] leaves the encrypted object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// As SES writes it.
    Intact,
    /// One bit of the AES-GCM tag flipped.
    FlippedTag,
    /// Encrypted under another KMS key than the one the store may use.
    OtherKey,
}

/// Like [`bucket_with_raw`], with the raw object encrypted as SES's "Encrypt message" writes it
/// (moto's KMS, the SES encryption context), and a store that decrypts with a new moto key.
pub async fn bucket_with_sealed_raw(
    prefix: &str,
    message_id: &str,
    eml: &str,
    how: Sealed,
) -> (
    String,
    mailroom::envelope::Decrypting<mailroom::aws::S3Store>,
) {
    use mailroom::aws::KmsDataKeys;
    use mailroom::ports::EncryptionContext;
    let bucket = bucket(prefix).await;
    let key_arn = kms_key().await;
    let seal_with = match how {
        Sealed::OtherKey => kms_key().await,
        _ => key_arn.clone(),
    };
    let keys = std::sync::Arc::new(KmsDataKeys::new(kms()));
    let context = EncryptionContext::from([
        ("aws:ses:message-id".to_string(), message_id.to_string()),
        (
            "aws:ses:rule-name".to_string(),
            "mailroom-store".to_string(),
        ),
        (
            "aws:ses:source-account".to_string(),
            "123456789012".to_string(),
        ),
    ]);
    let mut body = event_file(&format!("mail/{eml}"));
    let metadata = mailroom::envelope::seal(keys.as_ref(), &seal_with, &context, &mut body)
        .await
        .unwrap_or_else(|e| panic!("sealing {eml}: {e}"));
    if how == Sealed::FlippedTag
        && let Some(last) = body.last_mut()
    {
        *last ^= 0x01;
    }
    s3().put_object()
        .bucket(&bucket)
        .key(format!("raw/{message_id}"))
        .set_metadata(Some(metadata))
        .body(body.into())
        .send()
        .await
        .unwrap_or_else(|e| panic!("putting raw/{message_id} into {bucket}: {e:?}"));
    let store = mailroom::envelope::Decrypting::new(mailroom::aws::S3Store::new(s3()))
        .with_keys(keys, Some(key_arn));
    (bucket, store)
}

/// An environment that notes every variable asked for, so a crate's `ENV_VARS` list is checked
/// against what its `Config::from_env` really reads (the template check trusts that list).
pub struct RecordingEnv<'a> {
    values: &'a [(&'a str, &'a str)],
    asked: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl<'a> RecordingEnv<'a> {
    pub fn new(values: &'a [(&'a str, &'a str)]) -> Self {
        RecordingEnv {
            values,
            asked: std::sync::Mutex::default(),
        }
    }

    /// The `MAILROOM_*` names asked for so far, sorted.
    pub fn asked(&self) -> Vec<String> {
        self.asked
            .lock()
            .map(|a| {
                a.iter()
                    .filter(|n| n.starts_with("MAILROOM_"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Env for RecordingEnv<'_> {
    fn var(&self, name: &str) -> Option<String> {
        if let Ok(mut asked) = self.asked.lock() {
            asked.insert(name.to_string());
        }
        self.values.var(name)
    }
}

/// Asserts that `listed` (a crate's `ENV_VARS`) names exactly the `MAILROOM_*` variables `env`
/// was asked for.
pub fn assert_lists_reads(listed: &[&str], env: &RecordingEnv<'_>) {
    let mut listed: Vec<String> = listed.iter().map(|s| s.to_string()).collect();
    listed.sort();
    listed.dedup();
    assert_eq!(
        listed,
        env.asked(),
        "ENV_VARS differs from what from_env reads"
    );
}
