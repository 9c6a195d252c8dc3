//! Fault injection, counted: messages go through the project's `template.yaml` rule set with the
//! real function handlers in process and the real AWS SDK adapters talking to moto over the wire,
//! while faults are injected everywhere the functions touch the outside:
//!
//! - S3, SNS and SQS through the testkit's fault proxy (5xx, throttling, answers held past the SDK
//!   timeout, connections dropped before or after moto applied the request);
//! - SES v2 `SendEmail` through a proxy of its own with higher rates (5xx, 429
//!   `TooManyRequestsException`, held answers, dropped connections): the run's forward map sends
//!   the mail of one recipient on to two destinations with the real `SesV2Sender`;
//! - the webhook endpoint (hangs, 500, 429 with `Retry-After`, 410, and slow 200s the client has
//!   given up on), a few endpoints failing every attempt;
//! - function crashes mid-handler (right after a side effect) and stalls that run into Lambda's
//!   timeout.
//!
//! Lambda and SQS are modelled as AWS runs them, with the numbers read from `template.yaml`: an
//! `Event` invocation that fails is retried `MaximumRetryAttempts` times and then goes to its
//! on-failure destination (the emulator's executor does this); the retry queue's trigger hands the
//! api function `BatchSize` jobs, a failed or timed-out batch becomes visible again after the
//! queue's `VisibilityTimeout`, and moto redrives a job received `maxReceiveCount` times to the
//! DLQ. Every duration is the template's divided by [`SCALE`], so the run stays short while the
//! ratios between timeouts stay those of production.
//!
//! At the end every message is accounted for, per consumer (webhook per recipient, the stored
//! layout, the fanout summary, forward per destination as moto's SES sent it): delivered once,
//! delivered more than once, in a dead-letter queue with its raw mail still in S3, or lost. The
//! test asserts nothing is lost, and that every kind of fault it injects happened at least once:
//! a kind the seed or a change stopped injecting fails the run by name, since what it tests would
//! otherwise pass untested.
//!
//! `MAILROOM_FAULT_MESSAGES` sets the number of messages (default [`DEFAULT_MESSAGES`];
//! `scripts/test.d/fault` runs 500), `MAILROOM_FAULT_SEED` the seed.
#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use bytes::Bytes;
use mailroom::SesEvent;
use mailroom::ports::{
    BounceRequest, Bouncer, ObjectMeta, ObjectStore, PortError, Publication, Publisher, PutOutcome,
    Queue, Received, TransportError, WebhookRequest, WebhookResponse, WebhookSender,
};
use mailroom::webhook::delivery::{DeadLetter, Job};
use mailroom_api::{SqsEvent, SqsRecord};
use mailroom_emulator::error::FunctionError;
use mailroom_emulator::executor::{Deployed, LocalExecutor};
use mailroom_emulator::functions::{self, Function, LocalOverrides, Returned};
use mailroom_emulator::ports::Ports;
use mailroom_emulator::receipt::{self, Envelope, Inbound, Verdicts};
use mailroom_emulator::sink::WebhookSink;
use mailroom_emulator::template;
use mailroom_forward::sender::{MailSender, OutgoingMail, SendError, SesV2Sender};
use mailroom_testkit::fault::{self, Fault, FaultProxy, Plan, Rates, draw};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// Messages per run unless `MAILROOM_FAULT_MESSAGES` says otherwise.
const DEFAULT_MESSAGES: usize = 120;
const DEFAULT_SEED: u64 = 11;
/// Every duration from the template (function timeouts, the queue's visibility timeout) and the
/// webhook timeout is divided by this.
const SCALE: u32 = 30;
/// Per thousand function invocations: a crash right after one of its first side effects.
const CRASH_PER_MILLE: u64 = 50;
/// Per thousand function invocations: the handler stalls before one of its first port calls
/// until Lambda's timeout ends it (a handler's own timeouts never outlast Lambda's, so without
/// this the run would see no Lambda timeout at all).
const STALL_PER_MILLE: u64 = 15;
/// The run gives up (and fails) after this long.
const DEADLINE: Duration = Duration::from_secs(900);
/// The one recipient the run's forward map forwards, to two destinations: about two messages in
/// seven reach it (see [`recipients_of`]), a share that keeps the run's length about what it was.
const FORWARDED: &str = "user0@example.com";

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn template_path() -> PathBuf {
    mailroom_testkit::workspace_root().join("template.yaml")
}

/// What Lambda and SQS do, as `template.yaml` configures them (durations already scaled).
#[derive(Debug, Clone)]
struct Numbers {
    /// Function timeout by logical id.
    timeouts: BTreeMap<String, Duration>,
    retry_visibility_secs: i64,
    max_receive_count: i64,
    batch_size: usize,
}

fn scaled(secs: f64) -> Duration {
    Duration::from_secs_f64(secs / f64::from(SCALE))
}

fn as_f64(v: &serde_json::Value) -> Option<f64> {
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn read_numbers(options: &template::Options) -> Numbers {
    let evaluated = template::show_file(&template_path(), options).unwrap();
    let resources = &evaluated["Resources"];
    let raw: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(template_path()).unwrap()).unwrap();
    let global_timeout = raw["Globals"]["Function"]["Timeout"]
        .as_f64()
        .unwrap_or(3.0);
    let mut timeouts = BTreeMap::new();
    let mut retry_queue = None;
    let mut batch_size = 10;
    for (id, r) in resources.as_object().unwrap() {
        let props = &r["Properties"];
        if r["Type"] == "AWS::Serverless::Function" {
            let secs = as_f64(&props["Timeout"]).unwrap_or(global_timeout);
            timeouts.insert(id.clone(), scaled(secs));
        }
        // The trigger is a mapping, not a SAM event (template.yaml, ApiRetryQueueMapping).
        let source = props["EventSourceArn"].as_str().unwrap_or_default();
        if r["Type"] == "AWS::Lambda::EventSourceMapping" && source.starts_with("arn:aws:sqs:") {
            retry_queue = Some(source.to_string());
            batch_size = as_f64(&props["BatchSize"]).unwrap_or(10.0) as usize;
        }
    }
    let retry_queue = retry_queue.expect("an SQS event source mapping");
    let queue_name = retry_queue.rsplit(':').next().unwrap();
    let queue = resources
        .as_object()
        .unwrap()
        .iter()
        .find(|(id, r)| r["Type"] == "AWS::SQS::Queue" && queue_name.ends_with(&format!("-{id}")))
        .map(|(_, r)| &r["Properties"])
        .expect("the trigger's queue in the template");
    let visibility = as_f64(&queue["VisibilityTimeout"]).unwrap_or(30.0);
    Numbers {
        timeouts,
        retry_visibility_secs: (visibility / f64::from(SCALE)).ceil().max(1.0) as i64,
        max_receive_count: as_f64(&queue["RedrivePolicy"]["maxReceiveCount"])
            .expect("the retry queue has a redrive policy") as i64,
        batch_size,
    }
}

// ------------------------------------------------------------------------------------------
// Crashes and stalls: ports that, at a chosen call, either let the call land and then never
// return while the invocation is abandoned as Lambda abandons a crashed one, or never make the
// call, so the invocation runs into Lambda's timeout.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Crash,
    Stall,
}

struct Crash {
    calls: AtomicUsize,
    at: Option<(usize, Stop)>,
    crashed: Notify,
    happened: AtomicBool,
}

impl Crash {
    /// Runs one port call; at the chosen one, the handler stops there.
    async fn around<T>(&self, call: impl Future<Output = T>) -> T {
        let i = self.calls.fetch_add(1, Ordering::SeqCst);
        if self.at == Some((i, Stop::Stall)) {
            std::future::pending::<()>().await;
        }
        let out = call.await;
        if self.at == Some((i, Stop::Crash)) {
            self.happened.store(true, Ordering::SeqCst);
            self.crashed.notify_one();
            std::future::pending::<()>().await;
        }
        out
    }
}

struct Crashing {
    inner: Ports,
    crash: Arc<Crash>,
}

#[async_trait]
impl ObjectStore for Crashing {
    async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, PortError> {
        self.crash.around(self.inner.objects.get(bucket, key)).await
    }
    async fn size(&self, bucket: &str, key: &str) -> Result<u64, PortError> {
        self.crash
            .around(self.inner.objects.size(bucket, key))
            .await
    }
    async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
    ) -> Result<PutOutcome, PortError> {
        let put = self.inner.objects.put_if_absent(bucket, key, body, meta);
        self.crash.around(put).await
    }
    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, PortError> {
        let presign = self.inner.objects.presign_get(bucket, key, expires_in);
        self.crash.around(presign).await
    }
}

#[async_trait]
impl Publisher for Crashing {
    async fn publish(&self, msg: &Publication) -> Result<String, PortError> {
        self.crash.around(self.inner.publisher.publish(msg)).await
    }
}

#[async_trait]
impl Queue for Crashing {
    async fn send(&self, url: &str, body: &str, delay: Duration) -> Result<String, PortError> {
        self.crash
            .around(self.inner.queue.send(url, body, delay))
            .await
    }
    async fn receive(
        &self,
        url: &str,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<Received>, PortError> {
        self.crash
            .around(self.inner.queue.receive(url, max, wait))
            .await
    }
    async fn delete(&self, url: &str, receipt_handle: &str) -> Result<(), PortError> {
        self.crash
            .around(self.inner.queue.delete(url, receipt_handle))
            .await
    }
}

#[async_trait]
impl WebhookSender for Crashing {
    async fn post(&self, req: &WebhookRequest) -> Result<WebhookResponse, TransportError> {
        self.crash.around(self.inner.http.post(req)).await
    }
}

#[async_trait]
impl Bouncer for Crashing {
    async fn send_bounce(&self, req: &BounceRequest) -> Result<String, PortError> {
        self.crash.around(self.inner.bouncer.send_bounce(req)).await
    }
}

#[async_trait]
impl MailSender for Crashing {
    async fn send(&self, mail: &OutgoingMail) -> Result<String, SendError> {
        self.crash.around(self.inner.mailer.send(mail)).await
    }
}

/// Decides crashes per invocation and counts what Lambda saw.
struct Lambda {
    seed: u64,
    sightings: Mutex<HashMap<String, u64>>,
    crashes: AtomicU64,
    timeouts: AtomicU64,
    errors: AtomicU64,
    invocations: AtomicU64,
}

impl Lambda {
    fn ports_for(&self, identity: &str, ports: &Ports) -> (Ports, Arc<Crash>) {
        let n = {
            let mut seen = self.sightings.lock().unwrap();
            let n = seen.entry(identity.to_string()).or_insert(0);
            *n += 1;
            *n - 1
        };
        let roll = draw(self.seed, &["crash", identity], n);
        let call = usize::try_from((roll >> 20) % 4).unwrap();
        let at = match roll % 1000 {
            r if r < CRASH_PER_MILLE => Some((call, Stop::Crash)),
            r if r < CRASH_PER_MILLE + STALL_PER_MILLE => Some((call, Stop::Stall)),
            _ => None,
        };
        let crash = Arc::new(Crash {
            calls: AtomicUsize::new(0),
            at,
            crashed: Notify::new(),
            happened: AtomicBool::new(false),
        });
        let c = Arc::new(Crashing {
            inner: ports.clone(),
            crash: crash.clone(),
        });
        let wrapped = Ports {
            objects: c.clone(),
            publisher: c.clone(),
            bouncer: c.clone(),
            queue: c.clone(),
            http: c.clone(),
            mailer: c,
            parameters: ports.parameters.clone(),
            metrics: ports.metrics.clone(),
            data_keys: ports.data_keys.clone(),
            state: None,
            local_bouncer: None,
            sink: ports.sink.clone(),
        };
        (wrapped, crash)
    }

    /// Runs a handler as Lambda does: abandoned at its timeout or when it crashes.
    async fn run<T>(
        &self,
        timeout: Duration,
        crash: &Crash,
        handler: impl Future<Output = Result<T, FunctionError>>,
    ) -> Result<T, FunctionError> {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        let out = tokio::select! {
            r = tokio::time::timeout(timeout, handler) => match r {
                Ok(r) => r,
                Err(_) => {
                    self.timeouts.fetch_add(1, Ordering::Relaxed);
                    Err(FunctionError::new(format!("Task timed out after {timeout:?}")))
                }
            },
            () = crash.crashed.notified() => {
                self.crashes.fetch_add(1, Ordering::Relaxed);
                Err(FunctionError::new("Runtime.ExitError: the function crashed"))
            }
        };
        if out.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        out
    }
}

/// An `Event` function as Lambda runs it: its handler over the fault-injected ports, crashing
/// and timing out; the executor around it retries and sends to the on-failure destination.
struct Faulty {
    logical_id: String,
    inner: Box<dyn Function>,
    ports: Ports,
    timeout: Duration,
    lambda: Arc<Lambda>,
}

#[async_trait]
impl Function for Faulty {
    async fn invoke(&self, event: &SesEvent, _direct: &Ports) -> Result<Returned, FunctionError> {
        let id = event
            .records
            .first()
            .map(|r| r.ses.mail.message_id.clone())
            .unwrap_or_default();
        let identity = format!("{} {id}", self.logical_id);
        let (ports, crash) = self.lambda.ports_for(&identity, &self.ports);
        self.lambda
            .run(self.timeout, &crash, self.inner.invoke(event, &ports))
            .await
    }
}

// ------------------------------------------------------------------------------------------
// The webhook endpoint: a local HTTP server that fails on a seeded schedule and counts what it
// accepted, per webhook-id.

#[derive(Default)]
struct Endpoint {
    sightings: HashMap<String, u64>,
    accepted: HashMap<String, u64>,
    answers: BTreeMap<&'static str, u64>,
}

/// Every answer [`webhook_answer`] gives; each must be given at least once in a run.
const ANSWERS: [&str; 7] = ["200", "500 always", "410", "500", "429", "hang", "slow 200"];

fn webhook_answer(seed: u64, id: &str, n: u64) -> &'static str {
    let per_id = draw(seed, &["endpoint", id], 0) % 1000;
    if per_id < 15 {
        return "500 always";
    }
    if per_id < 40 {
        return "410";
    }
    match draw(seed, &["answer", id], n) % 1000 {
        0..60 => "500",
        60..100 => "429",
        100..130 => "hang",
        130..160 => "slow 200",
        _ => "200",
    }
}

async fn start_endpoint(seed: u64, timeout: Duration) -> (String, Arc<Mutex<Endpoint>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let state = Arc::new(Mutex::new(Endpoint::default()));
    let shared = state.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let state = shared.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Ok(Some(req)) = fault::read_request(&mut stream, &mut buf).await {
                    let id = req.header("webhook-id").unwrap_or_default().to_string();
                    let answer = {
                        let mut st = state.lock().unwrap();
                        let seen = st.sightings.entry(id.clone()).or_insert(0);
                        let answer = webhook_answer(seed, &id, *seen);
                        *seen += 1;
                        *st.answers.entry(answer).or_insert(0) += 1;
                        if answer.ends_with("200") {
                            *st.accepted.entry(id.clone()).or_insert(0) += 1;
                        }
                        answer
                    };
                    let (status, headers): (u16, Vec<(String, String)>) = match answer {
                        "hang" => {
                            tokio::time::sleep(timeout * 3).await;
                            return;
                        }
                        "slow 200" => {
                            tokio::time::sleep(timeout + Duration::from_millis(100)).await;
                            (200, vec![])
                        }
                        "200" => (200, vec![]),
                        "410" => (410, vec![]),
                        "429" => (429, vec![("retry-after".into(), "1".into())]),
                        _ => (500, vec![]),
                    };
                    if fault::write_response(&mut stream, status, &headers, b"", false)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, state)
}

// ------------------------------------------------------------------------------------------
// The mail.

fn message_id(seed: u64, i: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..40u64)
        .map(|k| {
            let d = draw(seed, &["message-id", &i.to_string()], k) % ALPHABET.len() as u64;
            char::from(ALPHABET[usize::try_from(d).unwrap()])
        })
        .collect()
}

fn recipients_of(seed: u64, i: usize) -> Vec<String> {
    let n = 1 + draw(seed, &["recipients", &i.to_string()], 0) % 3;
    (0..n)
        .map(|k| format!("user{}@example.com", (i as u64 + k) % 7))
        .collect()
}

const SUBJECT: &str = "fault run ";

/// Which of the run's messages a forwarded one is, by the subject the rewrite keeps.
fn index_in_subject(raw: &str) -> Option<usize> {
    raw.lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix("Subject: ")?.strip_prefix(SUBJECT))
        .and_then(|n| n.trim().parse().ok())
}

fn raw_message(i: usize, to: &[String]) -> Vec<u8> {
    format!(
        "From: Sender {i} <sender{i}@sender.example.net>\r\nTo: {}\r\nSubject: {SUBJECT}{i}\r\n\
         Message-ID: <fault-{i}@sender.example.net>\r\nDate: Mon, 1 Dec 2025 10:00:00 +0000\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Message {i} of the fault-injection run.\r\n",
        to.join(", ")
    )
    .into_bytes()
}

// ------------------------------------------------------------------------------------------
// Queues in moto, read directly (the harness is AWS itself, not the functions).

async fn create_queue(sqs: &aws_sdk_sqs::Client, name: &str) -> String {
    sqs.create_queue()
        .queue_name(name)
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap()
}

/// Every message in a queue, each once (received with a long visibility timeout).
async fn drain(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut empty = 0;
    while empty < 2 {
        let got = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(3600)
            .send()
            .await
            .unwrap();
        let msgs = got.messages();
        if msgs.is_empty() {
            empty += 1;
            continue;
        }
        bodies.extend(msgs.iter().filter_map(|m| m.body().map(str::to_string)));
    }
    bodies
}

async fn queue_depth(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let attrs = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    attrs.values().filter_map(|v| v.parse::<u64>().ok()).sum()
}

async fn keys_under(s3: &aws_sdk_s3::Client, bucket: &str, prefix: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .unwrap();
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_string)),
        );
        token = out.next_continuation_token().map(str::to_string);
        if token.is_none() {
            return keys;
        }
    }
}

/// The retry queue's trigger: batches of `batch_size` to the api function, partial batch
/// responses honoured, nothing deleted when the invocation fails (the batch reappears after the
/// visibility timeout).
#[allow(clippy::too_many_arguments)]
async fn poll(
    sqs: aws_sdk_sqs::Client,
    url: String,
    numbers: Numbers,
    api_timeout: Duration,
    config: Arc<mailroom_api::Config>,
    ports: Ports,
    lambda: Arc<Lambda>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        let got = sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(i32::try_from(numbers.batch_size).unwrap())
            .wait_time_seconds(1)
            .send()
            .await;
        let msgs = got
            .map(|g| g.messages.unwrap_or_default())
            .unwrap_or_default();
        if !msgs.is_empty() {
            let event = SqsEvent {
                records: msgs
                    .iter()
                    .map(|m| SqsRecord {
                        message_id: m.message_id().unwrap_or_default().to_string(),
                        receipt_handle: m.receipt_handle().unwrap_or_default().to_string(),
                        body: m.body().unwrap_or_default().to_string(),
                        event_source: Some("aws:sqs".into()),
                    })
                    .collect(),
            };
            let identity = format!("sqs {}", event.records[0].message_id);
            let (wrapped, crash) = lambda.ports_for(&identity, &ports);
            let deps = mailroom_api::Deps {
                store: wrapped.objects.as_ref(),
                queue: wrapped.queue.as_ref(),
                http: wrapped.http.as_ref(),
            };
            let handler = async {
                mailroom_api::handle_sqs(&event, &config, deps)
                    .await
                    .map_err(FunctionError::new)
            };
            if let Ok(resp) = lambda.run(api_timeout, &crash, handler).await {
                let failed: BTreeSet<&str> = resp
                    .batch_item_failures
                    .iter()
                    .map(|f| f.item_identifier.as_str())
                    .collect();
                for r in event
                    .records
                    .iter()
                    .filter(|r| !failed.contains(r.message_id.as_str()))
                {
                    let _ = sqs
                        .delete_message()
                        .queue_url(&url)
                        .receipt_handle(&r.receipt_handle)
                        .send()
                        .await;
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// The count.

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Row {
    sent: u64,
    once: u64,
    more_than_once: u64,
    /// Extra deliveries beyond the first, summed.
    duplicates: u64,
    dlq_raw_kept: u64,
    lost: u64,
}

impl Row {
    fn delivered(&mut self, times: u64, in_dlq: bool, raw_kept: bool) -> bool {
        self.sent += 1;
        match times {
            0 if in_dlq && raw_kept => self.dlq_raw_kept += 1,
            0 => {
                self.lost += 1;
                return false;
            }
            1 => self.once += 1,
            n => {
                self.more_than_once += 1;
                self.duplicates += n - 1;
            }
        }
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_mail_is_lost_under_injected_faults() {
    let started = Instant::now();
    let messages: usize = env_or("MAILROOM_FAULT_MESSAGES", DEFAULT_MESSAGES);
    let seed: u64 = env_or("MAILROOM_FAULT_SEED", DEFAULT_SEED);
    let moto = mailroom_testkit::moto();

    // The template, evaluated for a stack of our own (its physical names are unique in moto).
    let stack = mailroom_testkit::unique("flt");
    let webhook_timeout = scaled(15.0);
    let (webhook_url, endpoint) = start_endpoint(seed, webhook_timeout).await;
    let forward_domain = mailroom_testkit::verified_domain("flt").await;
    let destinations: Vec<String> = ["a", "b"]
        .iter()
        .map(|d| format!("{stack}-{d}@outside.example.org"))
        .collect();
    let options = template::Options {
        params: HashMap::from([
            ("WebhookUrl".to_string(), webhook_url),
            (
                "ForwardMap".to_string(),
                format!("{FORWARDED}={}", destinations.join(",")),
            ),
            (
                "ForwardFrom".to_string(),
                format!("forwarder@{forward_domain}"),
            ),
        ]),
        stack: stack.clone(),
        ..template::Options::default()
    };
    let numbers = read_numbers(&options);
    let loaded = template::load_file(&template_path(), &options).unwrap();
    let def_of = |binary: &str| {
        loaded
            .functions
            .values()
            .find(|d| d.binary == binary)
            .unwrap_or_else(|| panic!("no {binary} function in the template"))
    };
    let api_def = def_of("api");
    let env = |name: &str| api_def.env[name].clone();
    let bucket = env("MAILROOM_RAW_BUCKET");
    let last = |s: &str| s.rsplit(['/', ':']).next().unwrap().to_string();

    // AWS as the template declares it, in moto.
    let s3 = mailroom_testkit::s3();
    let sqs = mailroom_testkit::sqs();
    let sns = mailroom_testkit::sns();
    s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let webhook_dlq = create_queue(&sqs, &last(&env("MAILROOM_DLQ_URL"))).await;
    let invocation_dlq_arn = api_def
        .on_failure
        .clone()
        .expect("api on-failure destination");
    let invocation_dlq = create_queue(&sqs, &last(&invocation_dlq_arn)).await;
    let retry_name = last(&env("MAILROOM_RETRY_QUEUE_URL"));
    let redrive = serde_json::json!({
        "deadLetterTargetArn": format!("arn:aws:sqs:{}:{}:{}", mailroom_testkit::REGION,
            template::DEFAULT_ACCOUNT, last(&env("MAILROOM_DLQ_URL"))),
        "maxReceiveCount": numbers.max_receive_count,
    });
    let retry_queue = sqs
        .create_queue()
        .queue_name(&retry_name)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout,
            numbers.retry_visibility_secs.to_string(),
        )
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            redrive.to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let topic_arn = def_of("fanout").env["MAILROOM_TOPIC_ARN"].clone();
    let created = sns
        .create_topic()
        .name(last(&topic_arn))
        .send()
        .await
        .unwrap();
    assert_eq!(created.topic_arn(), Some(topic_arn.as_str()));
    let watch = create_queue(&sqs, &format!("{stack}-watch")).await;
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(format!(
            "arn:aws:sqs:{}:{}:{stack}-watch",
            mailroom_testkit::REGION,
            template::DEFAULT_ACCOUNT
        ))
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .unwrap();

    // The functions' view of AWS: through the fault proxy, with short SDK timeouts.
    let sdk = fault::Sdk {
        attempt_timeout: Duration::from_millis(300),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(30),
    };
    let proxy = FaultProxy::start(
        &moto.endpoint,
        Plan {
            seed,
            rates: Rates {
                server_error: 25,
                throttle: 25,
                slow: 15,
                reset_before: 15,
                reset_after: 15,
            },
            slow: sdk.attempt_timeout + Duration::from_millis(100),
        },
    )
    .await
    .unwrap();
    let conf = fault::sdk_config(&proxy.endpoint, sdk).await;
    // SES v2 gets a proxy of its own with higher rates: it sees a few requests per forwarded
    // message where S3 sees dozens, and every kind must still happen in a short run.
    let ses_proxy = FaultProxy::start(
        &moto.endpoint,
        Plan {
            seed,
            rates: Rates {
                server_error: 60,
                throttle: 80,
                slow: 50,
                reset_before: 50,
                reset_after: 50,
            },
            slow: sdk.attempt_timeout + Duration::from_millis(100),
        },
    )
    .await
    .unwrap();
    let ses_conf = fault::sdk_config(&ses_proxy.endpoint, sdk).await;
    let state = tempfile::tempdir().unwrap();
    let sink = Arc::new(WebhookSink::new(state.path(), false));
    let local = Ports::local(state.path(), sink.clone()).unwrap();
    let faulty_ports = Ports {
        objects: Arc::new(mailroom::aws::S3Store::new(fault::s3_client(&conf))),
        publisher: Arc::new(mailroom::aws::SnsPublisher::from_conf(&conf)),
        bouncer: Arc::new(mailroom::aws::SesBouncer::from_conf(&conf)),
        queue: Arc::new(mailroom::aws::SqsQueue::from_conf(&conf)),
        http: Arc::new(mailroom::webhook::http::ReqwestSender::new().unwrap()),
        mailer: Arc::new(SesV2Sender::from_conf(&ses_conf)),
        parameters: local.parameters.clone(),
        metrics: local.metrics.clone(),
        data_keys: local.data_keys.clone(),
        state: None,
        local_bouncer: None,
        sink: sink.clone(),
    };
    // What SES and Lambda themselves do (the S3 action, on-failure records) goes to moto directly.
    let direct = Ports {
        objects: Arc::new(mailroom::aws::S3Store::new(s3.clone())),
        publisher: Arc::new(mailroom::aws::SnsPublisher::new(sns.clone())),
        queue: Arc::new(mailroom::aws::SqsQueue::new(sqs.clone())),
        ..faulty_ports.clone()
    };

    // Every function from its crate's one constructor; the api one with short retries.
    let secret = mailroom::webhook::signing::Secret::generate();
    let overrides = LocalOverrides {
        webhook_secret: secret.clone(),
        sink: None,
    };
    let api_env = {
        let mut e = api_def.env.clone();
        let attempts = mailroom_api::Config::from_env(&{
            let mut with_secret = e.clone();
            with_secret.insert(mailroom_api::SECRET_VAR.into(), secret.clone());
            with_secret
        })
        .unwrap()
        .policy
        .max_attempts();
        let schedule = vec!["1s"; usize::try_from(attempts - 1).unwrap()].join(",");
        e.insert(mailroom_api::SCHEDULE_VAR.into(), schedule);
        e.insert(mailroom_api::JITTER_VAR.into(), "0".into());
        e.insert(
            mailroom_api::TIMEOUT_VAR.into(),
            webhook_timeout.as_millis().to_string(),
        );
        e.insert(mailroom_api::PER_RECIPIENT_VAR.into(), "true".into());
        e
    };
    let lambda = Arc::new(Lambda {
        seed,
        sightings: Mutex::default(),
        crashes: AtomicU64::new(0),
        timeouts: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        invocations: AtomicU64::new(0),
    });
    let mut deployed = BTreeMap::new();
    for (arn, def) in &loaded.functions {
        let env = if def.binary == "api" {
            &api_env
        } else {
            &def.env
        };
        let function = functions::build(&def.logical_id, &def.binary, env, &overrides).unwrap();
        let function: Box<dyn Function> =
            if ["store", "fanout", "api", "forward"].contains(&def.binary.as_str()) {
                Box::new(Faulty {
                    logical_id: def.logical_id.clone(),
                    inner: function,
                    ports: faulty_ports.clone(),
                    timeout: numbers.timeouts[&def.logical_id],
                    lambda: lambda.clone(),
                })
            } else {
                function
            };
        deployed.insert(
            arn.clone(),
            Deployed {
                function,
                binary: def.binary.clone(),
                logical_id: def.logical_id.clone(),
                max_retries: def.max_retries,
                on_failure: def.on_failure.clone(),
            },
        );
    }
    let executor = Arc::new(LocalExecutor {
        ports: direct,
        functions: deployed,
        region: loaded.region.clone(),
    });
    let rule_set = Arc::new(loaded.rule_set.clone());

    // The retry queue's trigger runs throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let api_config = {
        let mut e = api_env.clone();
        e.insert(mailroom_api::SECRET_VAR.into(), secret.clone());
        Arc::new(mailroom_api::Config::from_env(&e).unwrap())
    };
    let mut pollers = Vec::new();
    for _ in 0..3 {
        pollers.push(tokio::spawn(poll(
            sqs.clone(),
            retry_queue.clone(),
            numbers.clone(),
            numbers.timeouts[&api_def.logical_id],
            api_config.clone(),
            faulty_ports.clone(),
            lambda.clone(),
            stop.clone(),
        )));
    }

    // SES receives the mail, eight messages at a time.
    let mut sent = Vec::new();
    let gate = Arc::new(tokio::sync::Semaphore::new(8));
    let mut receiving = tokio::task::JoinSet::new();
    for i in 0..messages {
        let id = message_id(seed, i);
        let to = recipients_of(seed, i);
        sent.push((id.clone(), to.clone()));
        let inbound = Inbound {
            raw: raw_message(i, &to),
            envelope: Envelope {
                mail_from: format!("sender{i}@sender.example.net"),
                recipients: to,
                helo: "mta.sender.example.net".into(),
                client_ip: "192.0.2.1".into(),
                tls: true,
            },
            verdicts: Verdicts::default(),
            message_id: id,
            received_at: time::OffsetDateTime::now_utc(),
            region: loaded.region.clone(),
        };
        let (executor, rule_set, gate) = (executor.clone(), rule_set.clone(), gate.clone());
        receiving.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            receipt::evaluate(&rule_set, &inbound, executor.as_ref()).await
        });
    }
    while let Some(trace) = receiving.join_next().await {
        let trace = trace.unwrap();
        assert!(trace.rejected.is_empty(), "{:?}", trace.rejected);
    }
    let received_in = started.elapsed();

    // Until the retry queue is empty and no batch is in flight, twice in a row.
    let mut quiet = 0;
    while quiet < 2 {
        assert!(
            started.elapsed() < DEADLINE,
            "the retry queue never drained ({} left)",
            queue_depth(&sqs, &retry_queue).await
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        // A batch being handled is counted as not visible until it is deleted, and a crashed or
        // timed-out one stays so until it reappears: an empty queue means nothing is pending.
        quiet = if queue_depth(&sqs, &retry_queue).await == 0 {
            quiet + 1
        } else {
            0
        };
    }
    stop.store(true, Ordering::SeqCst);
    for p in pollers {
        p.await.unwrap();
    }

    // The count.
    let raw_kept: BTreeSet<String> = keys_under(&s3, &bucket, "raw/")
        .await
        .into_iter()
        .map(|k| last(&k))
        .collect();
    let stored: BTreeSet<String> = keys_under(&s3, &bucket, "messages/")
        .await
        .into_iter()
        .filter(|k| k.ends_with("/message.json"))
        .filter_map(|k| k.rsplit('/').nth(1).map(str::to_string))
        .collect();
    let mut summaries: HashMap<String, u64> = HashMap::new();
    for body in drain(&sqs, &watch).await {
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        *summaries
            .entry(v["messageId"].as_str().unwrap_or_default().to_string())
            .or_insert(0) += 1;
    }
    let binary_of: HashMap<&str, &str> = loaded
        .functions
        .iter()
        .map(|(arn, d)| (arn.as_str(), d.binary.as_str()))
        .collect();
    let mut invocation_letters: BTreeSet<(String, String)> = BTreeSet::new();
    for body in drain(&sqs, &invocation_dlq).await {
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        let arn = v["requestContext"]["functionArn"]
            .as_str()
            .unwrap_or_default();
        let binary = binary_of
            .get(arn.trim_end_matches(":$LATEST"))
            .copied()
            .unwrap_or("?");
        let event: SesEvent = serde_json::from_value(v["requestPayload"].clone()).unwrap();
        for r in event.records {
            invocation_letters.insert((binary.to_string(), r.ses.mail.message_id));
        }
    }
    let mut webhook_letters: BTreeSet<String> = BTreeSet::new();
    let mut bare_jobs = 0;
    let mut letter_reasons: BTreeMap<String, u64> = BTreeMap::new();
    for body in drain(&sqs, &webhook_dlq).await {
        if let Ok(letter) = serde_json::from_str::<DeadLetter>(&body)
            && let Some(job) = letter.job
        {
            *letter_reasons.entry(letter.reason).or_insert(0) += 1;
            webhook_letters.insert(job.webhook_id);
        } else if let Ok(job) = serde_json::from_str::<Job>(&body) {
            // Redriven by SQS after maxReceiveCount receives: the bare job, not a dead letter.
            bare_jobs += 1;
            *letter_reasons.entry("redriven job".into()).or_insert(0) += 1;
            webhook_letters.insert(job.webhook_id);
        } else {
            panic!("an unreadable body in the webhook DLQ: {body}");
        }
    }

    // What moto's SES sent for this run (the destinations are the run's own), per message and
    // destination.
    let mut forwarded: HashMap<(String, String), u64> = HashMap::new();
    for m in mailroom_testkit::ses_sent() {
        let Some(dest) = destinations.iter().find(|d| m.destinations.contains(d)) else {
            continue;
        };
        let i = index_in_subject(&m.raw)
            .filter(|i| *i < sent.len())
            .unwrap_or_else(|| panic!("a forward that is none of the run's messages: {}", m.raw));
        *forwarded
            .entry((sent[i].0.clone(), dest.clone()))
            .or_insert(0) += 1;
    }

    let accepted = endpoint.lock().unwrap().accepted.clone();
    let (mut webhook, mut store, mut fanout) = (Row::default(), Row::default(), Row::default());
    let mut forward = Row::default();
    let mut lost = Vec::new();
    for (id, recipients) in &sent {
        let kept = raw_kept.contains(id);
        let letter = |binary: &str| invocation_letters.contains(&(binary.to_string(), id.clone()));
        if !store.delivered(u64::from(stored.contains(id)), letter("store"), kept) {
            lost.push(format!("store {id}"));
        }
        let times = summaries.get(id).copied().unwrap_or(0);
        if !fanout.delivered(times, letter("fanout"), kept) {
            lost.push(format!("fanout {id}"));
        }
        for i in 0..recipients.len() {
            let wid = format!("{id}-{i}");
            let times = accepted.get(&wid).copied().unwrap_or(0);
            let in_dlq = webhook_letters.contains(&wid) || letter("api");
            if !webhook.delivered(times, in_dlq, kept) {
                lost.push(format!("webhook {wid}"));
            }
        }
        if recipients.iter().any(|r| r == FORWARDED) {
            for dest in &destinations {
                let times = forwarded
                    .get(&(id.clone(), dest.clone()))
                    .copied()
                    .unwrap_or(0);
                if !forward.delivered(times, letter("forward"), kept) {
                    lost.push(format!("forward {id} to {dest}"));
                }
            }
        }
    }

    let mut faults = proxy.counts();
    faults.extend(ses_proxy.counts());
    let answers = endpoint.lock().unwrap().answers.clone();
    println!("fault injection: {messages} messages, seed {seed}, time scale 1/{SCALE}");
    println!(
        "  template: timeouts {:?}, retry queue visibility {} s (scaled), maxReceiveCount {}, batch {}",
        numbers.timeouts,
        numbers.retry_visibility_secs,
        numbers.max_receive_count,
        numbers.batch_size
    );
    let mut by_fault: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_service: BTreeMap<String, String> = BTreeMap::new();
    for ((service, f), n) in &faults {
        *by_fault.entry(f.name()).or_insert(0) += n;
        by_service
            .entry(service.clone())
            .or_default()
            .push_str(&format!(" {}={n}", f.name()));
    }
    for (service, line) in &by_service {
        println!("  AWS requests, {service}:{line}");
    }
    println!("  webhook answers: {answers:?}");
    println!(
        "  Lambda: {} invocations, {} failed ({} crashes, {} timeouts)",
        lambda.invocations.load(Ordering::Relaxed),
        lambda.errors.load(Ordering::Relaxed),
        lambda.crashes.load(Ordering::Relaxed),
        lambda.timeouts.load(Ordering::Relaxed)
    );
    println!(
        "  DLQs: {} invocation records, webhook letters {letter_reasons:?}",
        invocation_letters.len()
    );
    println!();
    println!(
        "  {:<25} {:>6} {:>15} {:>10} {:>10} {:>16} {:>5}",
        "", "sent", "delivered once", "more once", "duplicates", "DLQ, raw kept", "lost"
    );
    for (name, r) in [
        ("webhook (per recipient)", webhook),
        ("store (message.json)", store),
        ("fanout (SNS summary)", fanout),
        ("forward (per destination)", forward),
    ] {
        println!(
            "  {:<25} {:>6} {:>15} {:>10} {:>10} {:>16} {:>5}",
            name, r.sent, r.once, r.more_than_once, r.duplicates, r.dlq_raw_kept, r.lost
        );
    }
    println!();
    println!(
        "  received in {:.1} s, drained in {:.1} s",
        received_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    if bare_jobs > 0 {
        println!(
            "  note: {bare_jobs} job(s) reached the webhook DLQ by SQS redrive (a batch failed \
             {} times), as bare jobs rather than dead letters",
            numbers.max_receive_count
        );
    }

    // Every kind of fault the run injects, counted: a kind that never happened is a gate that
    // was not tested, so the run fails naming it.
    let mut kinds: Vec<(String, u64)> = Vec::new();
    let count_of = |service: Option<&str>, f: Fault| -> u64 {
        faults
            .iter()
            .filter(|((s, g), _)| *g == f && service.is_none_or(|want| s == want))
            .map(|(_, n)| n)
            .sum()
    };
    for f in Fault::INJECTED {
        kinds.push((format!("AWS {}", f.name()), count_of(None, f)));
    }
    for f in Fault::INJECTED {
        kinds.push((format!("SES v2 {}", f.name()), count_of(Some("sesv2"), f)));
    }
    for a in ANSWERS {
        let n = answers.get(a).copied().unwrap_or(0);
        kinds.push((format!("webhook {a}"), n));
    }
    kinds.push((
        "Lambda crash".into(),
        lambda.crashes.load(Ordering::Relaxed),
    ));
    kinds.push((
        "Lambda timeout".into(),
        lambda.timeouts.load(Ordering::Relaxed),
    ));
    println!("  fault kinds:");
    for (kind, n) in &kinds {
        println!("    {kind:<22} {n:>6}");
    }
    if forward.duplicates > 0 {
        println!(
            "  note: {} forward(s) sent more than once ({} extra): SES's answer was lost after it \
             sent, or the function stopped before its marker",
            forward.more_than_once, forward.duplicates
        );
    }

    assert!(lost.is_empty(), "lost: {lost:#?}");
    let missing: Vec<&str> = kinds
        .iter()
        .filter(|(_, n)| *n == 0)
        .map(|(k, _)| k.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "these injected fault kinds never happened: {}; the seed or a change stopped injecting \
         them, and what they test went untested (AWS requests: {faults:?})",
        missing.join(", ")
    );
    assert!(
        by_fault.get("pass").copied().unwrap_or(0) > 0,
        "no AWS request passed: {faults:?}"
    );
    assert!(forward.sent > 0, "nothing was routed to forward");
    assert_eq!(
        webhook.sent,
        sent.iter().map(|(_, to)| to.len() as u64).sum::<u64>()
    );
    assert_eq!(store.sent, messages as u64);
}
