//! End-to-end delivery against a real, scripted, misbehaving HTTP server on 127.0.0.1 and real
//! SQS/S3 on moto: attempts are counted at the server, retries are driven by receiving from the
//! moto queue and invoking the SQS handler as Lambda would, and every signature is checked with
//! the independent `standardwebhooks` Python package as well as our own verifier.

use mailroom::aws::{S3Store, SqsQueue};
use mailroom::envelope::Decrypting;
use mailroom::ports::{Queue, Received};
use mailroom::webhook::delivery::DeadLetter;
use mailroom::webhook::http::ReqwestSender;
use mailroom::webhook::signing::{self, Secret};
use mailroom_api::{ApiError, Config, Deps, SqsEvent, SqsRecord, handle, handle_sqs};
use mailroom_testkit::http::{HttpServer, Recorded, Reply};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MESSAGE_ID: &str = "k2f9e1m0q8o3v7b4r5t6y1u2i3o4p5a6s7d8f9g0";

// ---------------------------------------------------------------- the misbehaving endpoint

#[derive(Debug, Clone)]
enum Act {
    Status(u16),
    RetryAfter(u16, &'static str),
    /// Answer 200, but only after this long (beyond the client's timeout).
    Slow(Duration),
}

impl Act {
    fn reply(self) -> Reply {
        let (reply, status) = match self {
            Act::Status(s) => (Reply::status(s), s),
            Act::RetryAfter(s, after) => (Reply::status(s).header("Retry-After", after), s),
            Act::Slow(d) => (Reply::status(200).after(d), 200),
        };
        reply.body(format!("status {status}"))
    }
}

struct Endpoint {
    url: String,
    server: HttpServer,
}

impl Endpoint {
    /// Serves `script[n]` to the n-th request (the last act repeats).
    async fn start(script: Vec<Act>) -> Endpoint {
        let server = HttpServer::scripted(script.into_iter().map(Act::reply).collect()).await;
        Endpoint {
            url: server.url("/hooks/mail"),
            server,
        }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.server.requests()
    }
}

/// A URL where nothing listens (connection refused).
fn refused_url() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}/hook")
}

// ---------------------------------------------------------------- the world on moto

struct World {
    bucket: String,
    retry_url: String,
    dlq_url: String,
    secret: String,
    store: Decrypting<S3Store>,
    queue: SqsQueue,
    http: ReqwestSender,
}

impl World {
    async fn new() -> World {
        World::with_raw(mailroom_testkit::event_file("mail/attachments.eml")).await
    }

    /// A world whose raw mail at `raw/<MESSAGE_ID>` is `raw`.
    async fn with_raw(raw: Vec<u8>) -> World {
        let bucket = mailroom_testkit::bucket("api").await;
        mailroom_testkit::s3()
            .put_object()
            .bucket(&bucket)
            .key(format!("raw/{MESSAGE_ID}"))
            .body(raw.into())
            .send()
            .await
            .expect("put raw");
        let sqs = mailroom_testkit::sqs();
        let mut urls = Vec::new();
        for name in ["retry", "dlq"] {
            let out = sqs
                .create_queue()
                .queue_name(mailroom_testkit::unique(name))
                .send()
                .await
                .expect("create queue");
            urls.push(out.queue_url.expect("queue url"));
        }
        let dlq_url = urls.pop().expect("dlq");
        let retry_url = urls.pop().expect("retry");
        World {
            bucket,
            retry_url,
            dlq_url,
            secret: Secret::generate(),
            store: Decrypting::new(S3Store::new(mailroom_testkit::s3())),
            queue: SqsQueue::new(sqs),
            http: ReqwestSender::new().expect("client"),
        }
    }

    fn config(&self, url: &str, extra: &[(&str, &str)]) -> Config {
        let mut env: HashMap<String, String> = [
            ("MAILROOM_WEBHOOK_URL", url),
            ("MAILROOM_WEBHOOK_SECRET", self.secret.as_str()),
            ("MAILROOM_RETRY_QUEUE_URL", self.retry_url.as_str()),
            ("MAILROOM_DLQ_URL", self.dlq_url.as_str()),
            ("MAILROOM_RAW_BUCKET", self.bucket.as_str()),
            ("MAILROOM_RAW_PREFIX", "raw"),
            ("MAILROOM_RETRY_SCHEDULE", "0,0,0"),
            ("MAILROOM_RETRY_JITTER", "0"),
            ("MAILROOM_WEBHOOK_TIMEOUT_MS", "400"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        Config::from_env(&env).expect("config")
    }

    fn deps(&self) -> Deps<'_> {
        Deps {
            store: &self.store,
            queue: &self.queue,
            http: &self.http,
        }
    }

    async fn drain(&self, url: &str) -> Vec<Received> {
        let mut all = Vec::new();
        loop {
            let got = self
                .queue
                .receive(url, 10, Duration::from_secs(1))
                .await
                .expect("receive");
            if got.is_empty() {
                return all;
            }
            for m in &got {
                self.queue
                    .delete(url, &m.receipt_handle)
                    .await
                    .expect("delete");
            }
            all.extend(got);
        }
    }

    /// Plays Lambda's SQS trigger until the retry queue stays empty: each received batch goes to
    /// the handler; records it did not report failed are deleted. Returns the handler calls made.
    async fn run_retries(&self, config: &Config) -> usize {
        let mut calls = 0;
        let mut idle = 0;
        // Three empty one-second polls: longer than any delay these tests schedule.
        while idle < 3 {
            let got = self
                .queue
                .receive(&self.retry_url, 10, Duration::from_secs(1))
                .await
                .expect("receive");
            if got.is_empty() {
                idle += 1;
                continue;
            }
            idle = 0;
            let event = SqsEvent {
                records: got.iter().map(SqsRecord::from).collect(),
            };
            let resp = handle_sqs(&event, config, self.deps())
                .await
                .expect("sqs handler");
            calls += 1;
            for m in &got {
                let failed = resp
                    .batch_item_failures
                    .iter()
                    .any(|f| f.item_identifier == m.message_id);
                if !failed {
                    self.queue
                        .delete(&self.retry_url, &m.receipt_handle)
                        .await
                        .expect("delete");
                }
            }
            assert!(calls < 50, "retry loop does not end");
        }
        calls
    }

    /// Messages in the DLQ, visible or not (a replay leaves what it skipped invisible for a while).
    async fn dlq_depth(&self) -> u32 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let attrs = mailroom_testkit::sqs()
            .get_queue_attributes()
            .queue_url(&self.dlq_url)
            .attribute_names(A::All)
            .send()
            .await
            .expect("attributes");
        let count = |name: A| {
            attrs
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0)
        };
        count(A::ApproximateNumberOfMessages) + count(A::ApproximateNumberOfMessagesNotVisible)
    }

    /// Replay from this world's DLQ to its retry queue, with nothing else set.
    fn replay_options(&self) -> mailroom_api::replay::Options {
        mailroom_api::replay::Options {
            dlq_url: self.dlq_url.clone(),
            retry_queue_url: self.retry_url.clone(),
            dry_run: false,
            max: None,
            locations: None,
            per_recipient: false,
            mailboxes: None,
        }
    }

    async fn dead_letters(&self) -> Vec<DeadLetter> {
        self.drain(&self.dlq_url)
            .await
            .iter()
            .map(|m| serde_json::from_str(&m.body).expect("dead letter json"))
            .collect()
    }
}

fn ses_event() -> Value {
    serde_json::from_slice(&mailroom_testkit::event_file("lambda/api-event.json")).expect("event")
}

/// Checks every request's signature with our verifier and with the `standardwebhooks` package.
fn assert_signed(requests: &[Recorded], secret: &str) {
    let secrets = [Secret::parse(secret).expect("secret")];
    let now = mailroom_api::now_unix();
    let mut cases = Vec::new();
    for r in requests {
        let h = |n: &str| r.headers.get(n).cloned().unwrap_or_default();
        signing::verify(
            &secrets,
            &h("webhook-id"),
            &h("webhook-timestamp"),
            &h("webhook-signature"),
            &r.body,
            now,
            300,
        )
        .expect("our verifier accepts the signature");
        cases.push(serde_json::json!({
            "body": String::from_utf8(r.body.clone()).expect("utf-8 body"),
            "headers": {
                "webhook-id": h("webhook-id"),
                "webhook-timestamp": h("webhook-timestamp"),
                "webhook-signature": h("webhook-signature"),
            }
        }));
    }
    let script = "import json,sys\nfrom standardwebhooks import Webhook\n\
        d=json.load(sys.stdin)\nw=Webhook(d['secret'])\n\
        for c in d['cases']:\n    w.verify(c['body'], c['headers'])\n\
        bad=dict(d['cases'][0]['headers']); bad['webhook-id']='forged'\n\
        try:\n    w.verify(d['cases'][0]['body'], bad)\n    sys.exit('forged id verified')\n\
        except Exception:\n    pass\nprint('verified', len(d['cases']))\n";
    let python = mailroom_testkit::workspace_root().join(".venv/bin/python");
    let mut child = std::process::Command::new(&python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    {
        use std::io::Write;
        let input = serde_json::json!({"secret": secret, "cases": cases});
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.to_string().as_bytes())
            .expect("write");
    }
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "standardwebhooks rejected our signature: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("verified {}", requests.len())
    );
}

/// The body with the presigned URLs and their expiry times removed: what must not change between
/// attempts.
fn without_presigned_urls(body: &[u8]) -> Value {
    let mut v: Value = serde_json::from_slice(body).expect("json body");
    let strip = |o: &mut Value| {
        if let Some(o) = o.as_object_mut() {
            o.remove("url");
            o.remove("urlExpiresAt");
        }
    };
    strip(&mut v["data"]["raw"]);
    if let Some(atts) = v["data"]["attachments"].as_array_mut() {
        atts.iter_mut().for_each(strip);
    }
    v
}

fn ids(requests: &[Recorded]) -> Vec<String> {
    requests
        .iter()
        .map(|r| r.headers.get("webhook-id").cloned().unwrap_or_default())
        .collect()
}

// ---------------------------------------------------------------- the tests

#[tokio::test]
async fn server_errors_are_retried_until_delivered_with_one_webhook_id() {
    let w = World::new().await;
    let ep = Endpoint::start(vec![Act::Status(500), Act::Status(503), Act::Status(200)]).await;
    let config = w.config(&ep.url, &[]);
    let report = handle(ses_event(), &config, w.deps()).await.expect("ses");
    assert_eq!(report["steps"][0]["status"], "scheduled", "{report}");
    assert_eq!(report["steps"][0]["next_attempt"], 2);
    w.run_retries(&config).await;

    let reqs = ep.requests();
    assert_eq!(reqs.len(), 3, "500, 503, then 200");
    assert_eq!(ids(&reqs), vec![MESSAGE_ID; 3]);
    let attempts: Vec<_> = reqs
        .iter()
        .map(|r| r.headers["x-mailroom-attempt"].clone())
        .collect();
    assert_eq!(attempts, ["1", "2", "3"]);
    // Every attempt carries the same payload but for its presigned URLs, which are made afresh
    // so a late retry still hands out links valid for the whole expiry.
    let first = without_presigned_urls(&reqs[0].body);
    assert!(
        reqs.iter()
            .all(|r| without_presigned_urls(&r.body) == first)
    );
    assert!(first["data"]["raw"]["key"].is_string(), "{first}");
    assert_signed(&reqs, &w.secret);

    let body: Value = serde_json::from_slice(&reqs[0].body).expect("json");
    assert_eq!(body["type"], "email.received");
    assert_eq!(body["data"]["messageId"], MESSAGE_ID);
    assert_eq!(
        body["data"]["email"]["subject"],
        "Invoice and statement for January"
    );
    assert_eq!(
        body["data"]["email"]["envelope"]["recipients"][1],
        "billing@inbox.example.com"
    );
    assert_eq!(body["data"]["email"]["verdicts"]["dkim"], "GRAY");
    assert_eq!(body["data"]["raw"]["key"], format!("raw/{MESSAGE_ID}"));
    let atts = body["data"]["attachments"].as_array().expect("attachments");
    assert_eq!(atts.len(), 3);
    assert!(atts.iter().all(|a| a["content"].is_string()));
    assert_eq!(reqs[0].headers["content-type"], "application/json");

    assert!(w.dead_letters().await.is_empty(), "nothing dead-lettered");
    assert!(
        w.drain(&w.retry_url).await.is_empty(),
        "nothing left queued"
    );
}

#[tokio::test]
async fn slow_endpoint_times_out_every_time_and_lands_in_the_dlq() {
    let w = World::new().await;
    let ep = Endpoint::start(vec![Act::Slow(Duration::from_secs(3))]).await;
    let config = w.config(&ep.url, &[("MAILROOM_RETRY_SCHEDULE", "0,0")]);
    handle(ses_event(), &config, w.deps()).await.expect("ses");
    w.run_retries(&config).await;

    let reqs = ep.requests();
    assert_eq!(reqs.len(), 3, "three attempts with a two-step schedule");
    assert_eq!(ids(&reqs), vec![MESSAGE_ID; 3]);
    let dead = w.dead_letters().await;
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    assert_eq!(d.reason, "exhausted");
    assert_eq!(d.attempts, 3);
    assert!(d.detail.contains("timed out"), "{}", d.detail);
    let job = d.job.as_ref().expect("job");
    assert_eq!(job.webhook_id, MESSAGE_ID);
    assert_eq!(
        (job.bucket.as_str(), job.key.as_str()),
        (w.bucket.as_str(), format!("raw/{MESSAGE_ID}").as_str())
    );
    assert_eq!(job.ses.recipients.len(), 2);
    // The raw mail is still where SES put it.
    mailroom_testkit::s3()
        .head_object()
        .bucket(&w.bucket)
        .key(&job.key)
        .send()
        .await
        .expect("raw mail kept");
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let w = World::new().await;
    let ep = Endpoint::start(vec![Act::RetryAfter(429, "2"), Act::Status(202)]).await;
    let config = w.config(&ep.url, &[("MAILROOM_RETRY_SCHEDULE", "0")]);
    let report = handle(ses_event(), &config, w.deps()).await.expect("ses");
    assert_eq!(report["steps"][0]["status"], "scheduled");
    assert_eq!(
        report["steps"][0]["delay_secs"], 2,
        "Retry-After beats the 0 s schedule"
    );
    let started = std::time::Instant::now();
    w.run_retries(&config).await;
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "waited for Retry-After"
    );
    let reqs = ep.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(ids(&reqs), vec![MESSAGE_ID; 2]);
    assert!(w.dead_letters().await.is_empty());
}

#[tokio::test]
async fn gone_stops_at_once_and_other_4xx_is_permanent() {
    for (status, reason) in [(410, "gone"), (400, "permanent"), (401, "permanent")] {
        let w = World::new().await;
        let ep = Endpoint::start(vec![Act::Status(status), Act::Status(200)]).await;
        let config = w.config(&ep.url, &[]);
        let report = handle(ses_event(), &config, w.deps()).await.expect("ses");
        assert_eq!(report["steps"][0]["status"], "dead_lettered", "{status}");
        w.run_retries(&config).await;
        assert_eq!(ep.requests().len(), 1, "{status}: no retry");
        let dead = w.dead_letters().await;
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].reason, reason);
        assert_eq!(dead[0].attempts, 1);
        assert_eq!(
            dead[0].job.as_ref().and_then(|j| j.last_status),
            Some(status)
        );
    }
}

#[tokio::test]
async fn connection_refused_is_retried_then_dead_lettered() {
    let w = World::new().await;
    let config = w.config(&refused_url(), &[("MAILROOM_RETRY_SCHEDULE", "0")]);
    handle(ses_event(), &config, w.deps()).await.expect("ses");
    w.run_retries(&config).await;
    let dead = w.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "exhausted");
    assert_eq!(dead[0].attempts, 2);
    assert!(
        dead[0].detail.contains("could not connect"),
        "{}",
        dead[0].detail
    );
}

#[tokio::test]
async fn a_retry_that_cannot_be_queued_fails_the_invocation() {
    let w = World::new().await;
    let ep = Endpoint::start(vec![Act::Status(500)]).await;
    let mut config = w.config(&ep.url, &[]);
    config.retry_queue_url = format!("{}-missing", w.retry_url);
    let err = handle(ses_event(), &config, w.deps())
        .await
        .expect_err("must fail so Lambda retries the event");
    assert!(matches!(err, ApiError::Enqueue { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("s3://{}/raw/{MESSAGE_ID}", w.bucket))
    );
}

#[tokio::test]
async fn per_recipient_fan_out_uses_indexed_ids_and_postmark_format() {
    let w = World::new().await;
    let ep = Endpoint::start(vec![Act::Status(200)]).await;
    let config = w.config(
        &ep.url,
        &[
            ("MAILROOM_WEBHOOK_PER_RECIPIENT", "true"),
            ("MAILROOM_WEBHOOK_FORMAT", "postmark"),
            ("MAILROOM_INLINE_ATTACHMENT_MAX_BYTES", "64"),
            ("MAILROOM_WEBHOOK_INCLUDE_RAW", "true"),
            ("MAILROOM_WEBHOOK_BEARER", "t0ken"),
        ],
    );
    handle(ses_event(), &config, w.deps()).await.expect("ses");
    let reqs = ep.requests();
    let mut got = ids(&reqs);
    got.sort();
    assert_eq!(got, [format!("{MESSAGE_ID}-0"), format!("{MESSAGE_ID}-1")]);
    assert_signed(&reqs, &w.secret);
    assert!(
        reqs.iter()
            .all(|r| r.headers["authorization"] == "Bearer t0ken")
    );

    let first = reqs
        .iter()
        .find(|r| r.headers["webhook-id"].ends_with("-0"))
        .expect("recipient 0");
    let pm: Value = serde_json::from_slice(&first.body).expect("json");
    assert_eq!(pm["OriginalRecipient"], "invoices+acme@inbox.example.com");
    assert_eq!(pm["MailboxHash"], "acme");
    assert_eq!(pm["FromFull"]["Email"], "carla@example.org");
    assert_eq!(pm["FromName"], "Carla Mendes");
    assert_eq!(pm["Date"], "Thu, 16 Jan 2025 09:12:45 -0300");
    assert!(
        pm["RawEmail"]
            .as_str()
            .expect("raw")
            .contains("Subject: Invoice")
    );
    let atts = pm["Attachments"].as_array().expect("attachments");
    assert_eq!(atts.len(), 3);
    // lines.csv (46 bytes) fits under 64 bytes; the PDF does not and travels by URL.
    let csv = atts.iter().find(|a| a["Name"] == "lines.csv").expect("csv");
    assert!(!csv["Content"].as_str().expect("content").is_empty());
    let pdf = atts
        .iter()
        .find(|a| a["Name"] == "invoice-2025-01.pdf")
        .expect("pdf");
    assert_eq!(pdf["Content"], "");
    let url = pdf["ContentUrl"].as_str().expect("presigned url");
    let fetched = reqwest_get(url).await;
    assert_eq!(
        fetched.len() as u64,
        pdf["ContentLength"].as_u64().expect("len")
    );
    assert!(fetched.starts_with(b"%PDF"));
}

async fn reqwest_get(url: &str) -> Vec<u8> {
    // A bare HTTP/1.0 GET keeps the test free of another client dependency.
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').expect("path");
    let mut sock = TcpStream::connect(host).await.expect("connect");
    let req = format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    sock.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    sock.read_to_end(&mut buf).await.expect("read");
    let p = buf.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    assert!(
        buf.starts_with(b"HTTP/1.0 200") || buf.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf[..p])
    );
    buf[p..].to_vec()
}

#[tokio::test]
async fn early_jobs_are_deferred_and_junk_is_dead_lettered() {
    let w = World::new().await;
    let ep = Endpoint::start(vec![Act::Status(200)]).await;
    let config = w.config(&ep.url, &[]);
    let fixture: Value =
        serde_json::from_slice(&mailroom_testkit::event_file("sqs/api-retry-job.json"))
            .expect("fixture");
    let mut job: Value =
        serde_json::from_str(fixture["Records"][0]["body"].as_str().expect("body")).expect("job");
    job["bucket"] = Value::from(w.bucket.clone());
    job["key"] = Value::from(format!("raw/{MESSAGE_ID}"));
    job["notBefore"] = Value::from(mailroom_api::now_unix() + 3600);
    let event = SqsEvent {
        records: vec![
            SqsRecord {
                message_id: "a".into(),
                body: job.to_string(),
                ..SqsRecord::default()
            },
            SqsRecord {
                message_id: "b".into(),
                body: "{not a job".into(),
                ..SqsRecord::default()
            },
        ],
    };
    let resp = handle_sqs(&event, &config, w.deps()).await.expect("sqs");
    assert!(resp.batch_item_failures.is_empty());
    assert!(ep.requests().is_empty(), "not due: no attempt");
    let requeued = w.drain(&w.retry_url).await;
    assert_eq!(
        requeued.len(),
        0,
        "deferred by the maximum SQS delay, so not visible yet"
    );
    let dead = w.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].reason, "invalid-job");
    assert_eq!(dead[0].body.as_deref(), Some("{not a job"));

    // A due job from the fixture is attempted once, as attempt 3.
    job["notBefore"] = Value::from(0);
    let event = SqsEvent {
        records: vec![SqsRecord {
            message_id: "c".into(),
            body: job.to_string(),
            ..SqsRecord::default()
        }],
    };
    handle_sqs(&event, &config, w.deps()).await.expect("sqs");
    let reqs = ep.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].headers["x-mailroom-attempt"], "3");
}

#[tokio::test]
async fn missing_raw_mail_is_dead_lettered_not_retried() {
    let w = World::new().await;
    let ep = Endpoint::start(vec![Act::Status(200)]).await;
    let config = w.config(&ep.url, &[("MAILROOM_RAW_PREFIX", "elsewhere")]);
    let report = handle(ses_event(), &config, w.deps()).await.expect("ses");
    assert_eq!(report["steps"][0]["status"], "dead_lettered");
    assert!(ep.requests().is_empty());
    let dead = w.dead_letters().await;
    assert_eq!(dead[0].reason, "unreadable");
    assert!(dead[0].detail.contains("not found"), "{}", dead[0].detail);
}

#[tokio::test]
async fn dead_letters_replay_through_the_queue_directly_or_dry() {
    use mailroom_api::replay::{Options, replay};
    let w = World::new().await;
    let ep = Endpoint::start(vec![
        Act::Status(410),
        Act::Status(200),
        Act::Status(410),
        Act::Status(200),
        Act::Status(410),
    ])
    .await;
    let config = w.config(&ep.url, &[]);
    let opts = Options {
        dlq_url: w.dlq_url.clone(),
        retry_queue_url: w.retry_url.clone(),
        dry_run: false,
        max: None,
        locations: None,
        per_recipient: false,
        mailboxes: None,
    };

    // Through the retry queue.
    handle(ses_event(), &config, w.deps()).await.expect("ses");
    let items = replay(&w.queue, &opts, None).await.expect("replay");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].action, "requeued");
    assert_eq!(items[0].reason, "gone");
    w.run_retries(&config).await;
    assert_eq!(ep.requests().len(), 2);

    // Directly.
    handle(ses_event(), &config, w.deps()).await.expect("ses");
    let items = replay(&w.queue, &opts, Some((&config, w.deps())))
        .await
        .expect("replay");
    assert_eq!(items[0].action, "delivered");
    assert_eq!(ep.requests().len(), 4);

    // Dry: reported, nothing moved.
    handle(ses_event(), &config, w.deps()).await.expect("ses");
    let dry = Options {
        dry_run: true,
        ..opts.clone()
    };
    let items = replay(&w.queue, &dry, None).await.expect("replay");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].action, "would-requeue");
    assert!(w.drain(&w.retry_url).await.is_empty());
    assert_eq!(
        w.dlq_depth().await,
        1,
        "the dry run left the letter in the DLQ"
    );

    let reqs = ep.requests();
    assert_eq!(reqs.len(), 5);
    assert_eq!(ids(&reqs), vec![MESSAGE_ID; 5]);
}

#[tokio::test]
async fn secret_by_arn_from_secrets_manager_and_ssm() {
    let w = World::new().await;
    let sdk = mailroom_testkit::sdk_config();
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let value = format!(r#"{{"secret":"{} {}"}}"#, Secret::generate(), w.secret);
    let arn = sm
        .create_secret()
        .name(mailroom_testkit::unique("hook"))
        .secret_string(value)
        .send()
        .await
        .expect("create secret")
        .arn
        .expect("arn");
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let name = format!("/mailroom/{}", mailroom_testkit::unique("hook"));
    ssm.put_parameter()
        .name(&name)
        .value(&w.secret)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .expect("put parameter");
    let param_arn = format!("arn:aws:ssm:us-east-1:123456789012:parameter{name}");

    for arn in [arn, param_arn] {
        let ep = Endpoint::start(vec![Act::Status(200)]).await;
        let mut env: HashMap<String, String> = HashMap::new();
        for (k, v) in [
            ("MAILROOM_WEBHOOK_URL", ep.url.as_str()),
            ("MAILROOM_WEBHOOK_SECRET_ARN", arn.as_str()),
            ("MAILROOM_RETRY_QUEUE_URL", w.retry_url.as_str()),
            ("MAILROOM_DLQ_URL", w.dlq_url.as_str()),
            ("MAILROOM_RAW_BUCKET", w.bucket.as_str()),
            ("MAILROOM_RAW_PREFIX", "raw"),
        ] {
            env.insert(k.into(), v.into());
        }
        let config = Config::from_env(&env).expect("config");
        let unresolved = handle(ses_event(), &config, w.deps()).await;
        assert!(matches!(unresolved, Err(ApiError::SecretNotLoaded(_))));
        let config = mailroom_api::secrets::resolve(config, &sdk)
            .await
            .unwrap_or_else(|e| panic!("{arn}: {e}"));
        handle(ses_event(), &config, w.deps()).await.expect("ses");
        assert_signed(&ep.requests(), &w.secret);
    }
}

#[tokio::test]
async fn events_of_other_shapes_are_refused_by_name() {
    let w = World::new().await;
    let config = w.config("http://127.0.0.1:9/never", &[]);
    let err = handle(
        serde_json::json!({"detail-type": "Scheduled Event"}),
        &config,
        w.deps(),
    )
    .await
    .expect_err("unknown event");
    assert!(matches!(err, ApiError::UnknownEvent(_)), "{err}");
    let err = handle(
        serde_json::json!({"Records": [{"eventSource": "aws:sqs", "body": 7}]}),
        &config,
        w.deps(),
    )
    .await
    .expect_err("bad sqs event");
    assert!(
        matches!(err, ApiError::BadEvent { kind: "SQS", .. }),
        "{err}"
    );
    // The setup notification is acknowledged without a delivery.
    let mut ev = ses_event();
    ev["Records"][0]["ses"]["mail"]["messageId"] = "AMAZON_SES_SETUP_NOTIFICATION".into();
    let report = handle(ev, &config, w.deps()).await.expect("setup");
    assert_eq!(report["steps"][0]["status"], "skipped");
}

/// What django-anymail's Postmark inbound handler made of a body (see anymail_postmark.py).
fn anymail_parse(body: &[u8]) -> Value {
    let root = mailroom_testkit::workspace_root();
    let mut child = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("functions/api/tests/anymail_postmark.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(body)
            .expect("write");
    }
    let out = child.wait_with_output().expect("python");
    assert!(
        out.status.success(),
        "django-anymail rejected the payload: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("anymail json")
}

#[tokio::test]
async fn postmark_payload_is_accepted_by_django_anymail() {
    for include_raw in ["false", "true"] {
        let w = World::new().await;
        let ep = Endpoint::start(vec![Act::Status(200)]).await;
        let config = w.config(
            &ep.url,
            &[
                ("MAILROOM_WEBHOOK_FORMAT", "postmark"),
                ("MAILROOM_WEBHOOK_INCLUDE_RAW", include_raw),
            ],
        );
        handle(ses_event(), &config, w.deps()).await.expect("ses");
        let reqs = ep.requests();
        assert_eq!(reqs.len(), 1);
        let m = anymail_parse(&reqs[0].body);
        assert_eq!(m["event_id"], MESSAGE_ID, "raw={include_raw}");
        assert_eq!(m["from"], "Carla Mendes <carla@example.org>");
        assert_eq!(m["to"], serde_json::json!(["invoices@inbox.example.com"]));
        assert_eq!(m["subject"], "Invoice and statement for January");
        assert_eq!(m["date"], "Thu, 16 Jan 2025 09:12:45 -0300");
        assert_eq!(m["message_id"], "<inv-2025-01@example.org>");
        assert_eq!(m["from_headers"], 1, "From is not doubled");
        assert_eq!(m["subject_headers"], 1, "Subject is not doubled");
        assert_eq!(m["envelope_sender"], "carla@example.org");
        assert_eq!(m["envelope_recipient"], "invoices+acme@inbox.example.com");
        assert!(
            m["text"]
                .as_str()
                .expect("text")
                .contains("Please find the invoice"),
            "{m}"
        );
        let atts = m["attachments"].as_array().expect("attachments");
        let names: Vec<_> = atts
            .iter()
            .map(|a| a["name"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(
            names,
            ["invoice-2025-01.pdf", "lines.csv", "Résumé notes.txt"],
            "raw={include_raw}"
        );
        assert_eq!(atts[0]["type"], "application/pdf");
        assert_eq!(atts[0]["size"], 77);
    }
}

#[tokio::test]
async fn lambda_on_failure_records_in_the_dlq_are_replayed_as_jobs() {
    use mailroom_api::replay::{Options, replay};
    let w = World::new().await;
    let ep = Endpoint::start(vec![Act::Status(200)]).await;
    let config = w.config(&ep.url, &[("MAILROOM_WEBHOOK_PER_RECIPIENT", "true")]);
    // What Lambda puts in an on-failure destination when every async retry of the SES event failed.
    let record = serde_json::json!({
        "version": "1.0",
        "timestamp": "2025-01-16T12:15:47.311Z",
        "requestContext": {"requestId": "r1", "condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": ses_event(),
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "responsePayload": {"errorType": "Api.Retryable.Enqueue", "errorMessage": "…"}
    });
    w.queue
        .send(&w.dlq_url, &record.to_string(), Duration::ZERO)
        .await
        .expect("send");
    let mut opts = Options {
        dlq_url: w.dlq_url.clone(),
        retry_queue_url: w.retry_url.clone(),
        dry_run: false,
        max: None,
        locations: None,
        per_recipient: true,
        mailboxes: None,
    };
    // Without knowing where raw mail is, the record is reported and left in place.
    let items = replay(&w.queue, &opts, None).await.expect("replay");
    assert_eq!(items[0].action, "skipped");
    assert!(
        items[0].detail.contains("MAILROOM_RAW_BUCKET"),
        "{}",
        items[0].detail
    );

    // The skipped record becomes visible again after the DLQ's visibility timeout; send a fresh
    // copy rather than wait.
    w.queue
        .send(&w.dlq_url, &record.to_string(), Duration::ZERO)
        .await
        .expect("send");
    opts.locations = Some(config.locations.clone());
    let items = replay(&w.queue, &opts, None).await.expect("replay");
    let requeued: Vec<_> = items.iter().filter(|i| i.action == "requeued").collect();
    assert_eq!(requeued.len(), 2, "{items:?}");
    assert!(requeued.iter().all(|i| i.reason == "lambda-on-failure"));
    w.run_retries(&config).await;
    let mut got = ids(&ep.requests());
    got.sort();
    assert_eq!(got, [format!("{MESSAGE_ID}-0"), format!("{MESSAGE_ID}-1")]);
}

/// Records the events it is asked to run; fails while `fail` is set.
struct Rerun {
    events: std::sync::Mutex<Vec<String>>,
    fail: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl mailroom_api::replay::Reinvoke for Rerun {
    fn function(&self) -> &'static str {
        "forward"
    }
    async fn reinvoke(&self, event: &mailroom::SesEvent) -> Result<String, String> {
        if self.fail.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("SendEmail throttled".into());
        }
        let id = event.records[0].ses.mail.message_id.clone();
        self.events.lock().expect("lock").push(id.clone());
        Ok(format!("forwarded {id}"))
    }
}

#[tokio::test]
async fn the_forward_functions_dead_lettered_events_are_run_again() {
    use mailroom_api::replay::{replay, replay_with};
    let w = World::new().await;
    let record = serde_json::json!({
        "requestContext": {"requestId": "r2", "functionArn":
            "arn:aws:lambda:us-east-1:123456789012:function:mailroom-ForwardFunction-AbC:$LATEST",
            "condition": "RetriesExhausted", "approximateInvokeCount": 3},
        "requestPayload": ses_event(),
        "responsePayload": {"errorType": "Forward.Retryable.Send", "errorMessage": "…"}
    });
    let opts = w.replay_options();
    let send = || async {
        w.queue
            .send(&w.dlq_url, &record.to_string(), Duration::ZERO)
            .await
            .expect("send");
    };
    // Without a way to run forward, it is named (no longer "an unknown function") and kept.
    send().await;
    let items = replay(&w.queue, &opts, None).await.expect("replay");
    assert_eq!(items[0].action, "skipped");
    assert!(
        items[0].detail.contains("forward function"),
        "{}",
        items[0].detail
    );

    // A failing run leaves it in the queue; a working one runs the SES event and deletes it.
    let rerun = Rerun {
        events: Default::default(),
        fail: std::sync::atomic::AtomicBool::new(true),
    };
    send().await;
    let items = replay_with(&w.queue, &opts, None, &[&rerun])
        .await
        .expect("replay");
    assert_eq!(items[0].action, "skipped", "{items:?}");
    assert!(items[0].detail.contains("throttled"));
    rerun.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    send().await;
    let items = replay_with(&w.queue, &opts, None, &[&rerun])
        .await
        .expect("replay");
    assert_eq!(items[0].action, "reinvoked", "{items:?}");
    assert_eq!(rerun.events.lock().expect("lock").as_slice(), [MESSAGE_ID]);
    // Nothing that would become a webhook job was queued for it.
    assert!(
        w.queue
            .receive(&w.retry_url, 10, Duration::ZERO)
            .await
            .expect("receive")
            .is_empty()
    );
}

// ---------------------------------------------------------------- batches within their deadline

/// Sends `n` copies of the fixture's first-attempt job to the retry queue and receives them as
/// Lambda's poller would, with a one-second visibility timeout so a redelivery shows quickly.
async fn received_batch(w: &World, config: &Config, n: usize) -> SqsEvent {
    let event: mailroom::SesEvent = serde_json::from_value(ses_event()).expect("ses event");
    let job = mailroom_api::jobs_for(&event.records[0], config, mailroom_api::now_unix())
        .pop()
        .expect("job");
    for _ in 0..n {
        w.queue
            .send(
                &w.retry_url,
                &serde_json::to_string(&job).expect("job"),
                Duration::ZERO,
            )
            .await
            .expect("send");
    }
    let got = mailroom_testkit::sqs()
        .receive_message()
        .queue_url(&w.retry_url)
        .max_number_of_messages(10)
        .visibility_timeout(1)
        .send()
        .await
        .expect("receive");
    let records: Vec<SqsRecord> = got
        .messages()
        .iter()
        .map(|m| SqsRecord {
            message_id: m.message_id().unwrap_or_default().to_string(),
            receipt_handle: m.receipt_handle().unwrap_or_default().to_string(),
            body: m.body().unwrap_or_default().to_string(),
            event_source: Some("aws:sqs".into()),
        })
        .collect();
    assert_eq!(records.len(), n, "the whole batch received at once");
    SqsEvent { records }
}

/// The attempt numbers of the jobs in the retry queue once every invisible one is back.
async fn queued_attempts(w: &World) -> Vec<u32> {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut attempts: Vec<u32> = w
        .drain(&w.retry_url)
        .await
        .iter()
        .map(|m| {
            serde_json::from_str::<mailroom::webhook::delivery::Job>(&m.body)
                .expect("job")
                .attempt
        })
        .collect();
    attempts.sort_unstable();
    attempts
}

#[tokio::test]
async fn a_finished_record_is_deleted_at_once_so_a_killed_batch_never_queues_twice() {
    let w = World::new().await;
    let ep = Endpoint::start(vec![Act::Status(500)]).await;
    let config = w.config(&ep.url, &[]);
    let event = received_batch(&w, &config, 2).await;
    let resp = handle_sqs(&event, &config, w.deps()).await.expect("sqs");
    assert!(resp.batch_item_failures.is_empty());
    // Lambda never gets to acknowledge the batch (the invocation is killed): only what the
    // handler itself deleted is gone when the visibility timeout ends.
    assert_eq!(
        queued_attempts(&w).await,
        [2, 2],
        "each record's next attempt once, and no original redelivered"
    );
}

#[tokio::test]
async fn a_batch_starts_no_job_it_cannot_finish_and_reports_the_rest() {
    let w = World::new().await;
    // Each attempt takes the whole webhook timeout.
    let ep = Endpoint::start(vec![Act::Slow(Duration::from_secs(5))]).await;
    let mut config = w.config(&ep.url, &[("MAILROOM_WEBHOOK_TIMEOUT_MS", "500")]);
    config.aws_budget = Duration::from_secs(2);
    let need = config.job_budget() + mailroom_api::FINISH_MARGIN;
    let event = received_batch(&w, &config, 3).await;
    // Room for one job and a bit: after the first (at least the webhook timeout) no other fits.
    let deadline = mailroom_api::Deadline::after(need + Duration::from_millis(300));
    let started = std::time::Instant::now();
    let resp = mailroom_api::handle_sqs_until(&event, &config, w.deps(), deadline)
        .await
        .expect("sqs");
    assert!(
        started.elapsed() < need + Duration::from_millis(300),
        "answered before the deadline: {:?}",
        started.elapsed()
    );
    assert_eq!(ep.requests().len(), 1, "one job started");
    let failed: Vec<_> = resp
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.clone())
        .collect();
    let unstarted: Vec<_> = event.records[1..]
        .iter()
        .map(|r| r.message_id.clone())
        .collect();
    assert_eq!(failed, unstarted, "the unstarted records go back to SQS");
    assert_eq!(
        queued_attempts(&w).await,
        [1, 1, 2],
        "two redelivered unstarted, one next attempt"
    );
}

#[tokio::test]
async fn an_ses_invocation_out_of_time_queues_its_jobs_unattempted() {
    let w = World::new().await;
    let ep = Endpoint::start(vec![Act::Status(200)]).await;
    let config = w.config(&ep.url, &[("MAILROOM_WEBHOOK_PER_RECIPIENT", "true")]);
    let event = serde_json::from_value(ses_event()).expect("ses event");
    let deadline = mailroom_api::Deadline::after(Duration::from_secs(1));
    let report = mailroom_api::handle_ses_until(&event, &config, w.deps(), deadline)
        .await
        .expect("ses");
    assert!(ep.requests().is_empty(), "no attempt started");
    assert!(
        report
            .steps
            .iter()
            .all(|s| matches!(s, mailroom_api::Step::Postponed { .. })),
        "{report:?}"
    );
    w.run_retries(&config).await;
    let mut got = ids(&ep.requests());
    got.sort();
    assert_eq!(got, [format!("{MESSAGE_ID}-0"), format!("{MESSAGE_ID}-1")]);
}

#[tokio::test]
async fn jobs_the_retry_queue_redrove_to_the_dlq_are_replayed() {
    use mailroom_api::replay::replay;
    let w = World::new().await;
    let ep = Endpoint::start(vec![Act::Status(200)]).await;
    let config = w.config(&ep.url, &[]);
    let event: mailroom::SesEvent = serde_json::from_value(ses_event()).expect("ses event");
    let mut job = mailroom_api::jobs_for(&event.records[0], &config, mailroom_api::now_unix())
        .pop()
        .expect("job");
    job.attempt = 4;
    // What SQS's redrive moves to the DLQ after maxReceiveCount: the retry queue's body as is.
    w.queue
        .send(
            &w.dlq_url,
            &serde_json::to_string(&job).expect("job"),
            Duration::ZERO,
        )
        .await
        .expect("send");
    let items = replay(&w.queue, &w.replay_options(), None)
        .await
        .expect("replay");
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(
        (items[0].action.as_str(), items[0].reason.as_str()),
        ("requeued", "redriven")
    );
    w.run_retries(&config).await;
    let reqs = ep.requests();
    assert_eq!(ids(&reqs), [MESSAGE_ID]);
    assert_eq!(
        reqs[0].headers["x-mailroom-attempt"], "1",
        "a fresh schedule"
    );
    assert!(w.dead_letters().await.is_empty(), "the letter left the DLQ");
}

// ---------------------------------------------------------------- presigned links tell the truth

/// `X-Amz-Date` + `X-Amz-Expires` of a presigned URL, in Unix seconds.
fn url_expiry(url: &str) -> i64 {
    let query = url.split_once('?').expect("query").1;
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
            .expect(name)
            .to_string()
    };
    let format = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    let signed = time::PrimitiveDateTime::parse(&param("X-Amz-Date"), format)
        .expect("X-Amz-Date")
        .assume_utc()
        .unix_timestamp();
    signed
        + param("X-Amz-Expires")
            .parse::<i64>()
            .expect("X-Amz-Expires")
}

#[tokio::test]
async fn presigned_links_promise_no_more_than_the_signing_credentials_last() {
    let mut w = World::new().await;
    // Temporary credentials, as a Lambda role has, that expire in two hours.
    let expiry = std::time::SystemTime::now() + Duration::from_secs(2 * 3600);
    let creds = aws_credential_types::Credentials::new(
        "testing",
        "testing",
        Some("session-token".into()),
        Some(expiry),
        "test",
    );
    let creds = aws_credential_types::provider::SharedCredentialsProvider::new(creds);
    let conf = aws_sdk_s3::config::Builder::from(&mailroom_testkit::sdk_config())
        .credentials_provider(creds.clone())
        .force_path_style(true)
        .build();
    w.store = Decrypting::new(
        S3Store::new(aws_sdk_s3::Client::from_conf(conf)).with_credentials(Some(creds)),
    );
    let ep = Endpoint::start(vec![Act::Status(200)]).await;
    let config = w.config(&ep.url, &[("MAILROOM_INLINE_ATTACHMENT_MAX_BYTES", "0")]);
    assert_eq!(config.presign_expiry, Duration::from_secs(7 * 86400));
    handle(ses_event(), &config, w.deps()).await.expect("ses");

    let body: Value = serde_json::from_slice(&ep.requests()[0].body).expect("json");
    let mut links = vec![body["data"]["raw"].clone()];
    links.extend(
        body["data"]["attachments"]
            .as_array()
            .expect("attachments")
            .clone(),
    );
    assert_eq!(
        links.len(),
        4,
        "the raw message and three attachments by URL"
    );
    let expiry_unix = expiry
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs() as i64;
    for link in &links {
        let url = link["url"].as_str().expect("url");
        let promised = time::OffsetDateTime::parse(
            link["urlExpiresAt"].as_str().expect("urlExpiresAt"),
            &time::format_description::well_known::Rfc3339,
        )
        .expect("rfc3339")
        .unix_timestamp();
        assert!(
            promised <= expiry_unix,
            "promised until {promised}, the credentials end at {expiry_unix}"
        );
        assert!(
            promised >= expiry_unix - 3600,
            "still as long as the credentials allow: {promised} vs {expiry_unix}"
        );
        assert!(
            (url_expiry(url) - promised).abs() <= 2,
            "the URL itself says what the payload says: {url}"
        );
    }
}

// ---------------------------------------------------------------- mixed recipients

#[tokio::test]
async fn a_recipient_the_gate_bounced_is_never_delivered_to() {
    let w = World::new().await;
    let ep = Endpoint::start(vec![Act::Status(200)]).await;
    // The event's recipients are invoices+acme@ and billing@inbox.example.com; only the first
    // exists, so the bounce function sent a "does not exist" DSN for billing@.
    let mailboxes = [("MAILROOM_MAILBOXES", "invoices@inbox.example.com")];
    let config = w.config(&ep.url, &mailboxes);
    handle(ses_event(), &config, w.deps()).await.expect("ses");
    let reqs = ep.requests();
    assert_eq!(reqs.len(), 1);
    let body: Value = serde_json::from_slice(&reqs[0].body).expect("json");
    assert_eq!(
        body["data"]["email"]["envelope"]["recipients"],
        serde_json::json!(["invoices+acme@inbox.example.com"]),
        "the envelope names only who the mail is delivered to"
    );

    let per = w.config(
        &ep.url,
        &[mailboxes[0], ("MAILROOM_WEBHOOK_PER_RECIPIENT", "true")],
    );
    handle(ses_event(), &per, w.deps()).await.expect("ses");
    let reqs = ep.requests();
    assert_eq!(ids(&reqs[1..]), [format!("{MESSAGE_ID}-0")]);

    // Nobody left: nothing is delivered, and nothing is retried.
    let none = w.config(&ep.url, &[("MAILROOM_MAILBOXES", "someone@else.example")]);
    let report = handle(ses_event(), &none, w.deps()).await.expect("ses");
    assert_eq!(report["steps"][0]["status"], "skipped", "{report}");
    assert_eq!(ep.requests().len(), 2);
    assert!(w.drain(&w.retry_url).await.is_empty());
}

#[tokio::test]
async fn on_failure_records_of_other_functions_are_left_in_the_queue_not_sent_as_webhooks() {
    use mailroom_api::replay::{Options, replay};
    let w = World::new().await;
    let ep = Endpoint::start(vec![Act::Status(200)]).await;
    let config = w.config(&ep.url, &[]);
    let record = |function: &str, error_type: &str| {
        serde_json::json!({
            "version": "1.0",
            "requestContext": {
                "requestId": "r1",
                "functionArn": format!("arn:aws:lambda:us-east-1:123456789012:function:mailroom-{function}-AbC123:$LATEST"),
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3
            },
            "requestPayload": ses_event(),
            "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
            "responsePayload": {"errorType": error_type, "errorMessage": "…"}
        })
        .to_string()
    };
    // The shared invocation DLQ: a store failure, a fanout one that timed out (no error type of
    // ours), and an api failure.
    for body in [
        record("StoreFunction", "Store.Retryable.ReadRaw"),
        record("FanoutFunction", "Sandbox.Timedout"),
        record("ApiFunction", "Api.Retryable.Enqueue"),
    ] {
        w.queue
            .send(&w.dlq_url, &body, Duration::ZERO)
            .await
            .expect("send");
    }
    let opts = Options {
        locations: Some(config.locations.clone()),
        ..w.replay_options()
    };
    let items = replay(&w.queue, &opts, None).await.expect("replay");
    let actions: Vec<_> = items.iter().map(|i| i.action.as_str()).collect();
    assert_eq!(actions, ["skipped", "skipped", "requeued"], "{items:?}");
    assert!(items[0].detail.contains("store function"), "{items:?}");
    assert!(items[1].detail.contains("fanout function"), "{items:?}");

    w.run_retries(&config).await;
    assert_eq!(
        ids(&ep.requests()),
        [MESSAGE_ID],
        "one webhook, from the api record"
    );
    // The two skipped letters are still in the DLQ (invisible for its visibility timeout).
    assert_eq!(w.dlq_depth().await, 2);
}

// ---------------------------------------------------------------- secrets in the webhook URL

#[tokio::test]
async fn a_token_in_the_webhook_url_reaches_neither_retry_jobs_nor_dead_letters() {
    let w = World::new().await;
    let url = refused_url().replace("http://", "http://user:pa55word@") + "?token=s3cr3t";
    let config = w.config(&url, &[("MAILROOM_RETRY_SCHEDULE", "0")]);
    let report = handle(ses_event(), &config, w.deps()).await.expect("ses");
    assert!(
        !report.to_string().contains("s3cr3t") && !report.to_string().contains("pa55word"),
        "{report}"
    );
    let queued = w.drain(&w.retry_url).await;
    assert_eq!(queued.len(), 1);
    let job = &queued[0].body;
    assert!(job.contains("could not connect"), "{job}");
    assert!(
        !job.contains("s3cr3t") && !job.contains("pa55word"),
        "{job}"
    );
    // The last attempt, straight from the job.
    let event = SqsEvent {
        records: vec![SqsRecord {
            message_id: "a".into(),
            body: job.clone(),
            ..SqsRecord::default()
        }],
    };
    handle_sqs(&event, &config, w.deps()).await.expect("sqs");
    let dead = w.drain(&w.dlq_url).await;
    assert_eq!(dead.len(), 1);
    assert!(dead[0].body.contains("<redacted>"), "{}", dead[0].body);
    assert!(
        !dead[0].body.contains("s3cr3t") && !dead[0].body.contains("pa55word"),
        "{}",
        dead[0].body
    );
}

#[tokio::test]
async fn a_job_naming_other_objects_is_dead_lettered_unread() {
    let w = World::new().await;
    let ep = Endpoint::start(vec![Act::Status(200)]).await;
    let config = w.config(&ep.url, &[]);
    let event: mailroom::SesEvent = serde_json::from_value(ses_event()).expect("ses event");
    let good = mailroom_api::jobs_for(&event.records[0], &config, mailroom_api::now_unix())
        .pop()
        .expect("job");
    // Anyone who can send to the retry queue could ask for any object the role can read, and
    // have a presigned link to it posted out.
    let mut other_bucket = good.clone();
    other_bucket.bucket = mailroom_testkit::bucket("elsewhere").await;
    let mut other_key = good.clone();
    other_key.key = "messages/2025-01-16/secret/message.json".into();
    let mut other_id = good.clone();
    other_id.message_id = "../other".into();
    let records = [other_bucket, other_key, other_id]
        .iter()
        .enumerate()
        .map(|(i, job)| SqsRecord {
            message_id: i.to_string(),
            body: serde_json::to_string(job).expect("job"),
            ..SqsRecord::default()
        })
        .collect();
    let resp = handle_sqs(&SqsEvent { records }, &config, w.deps())
        .await
        .expect("sqs");
    assert!(resp.batch_item_failures.is_empty());
    assert!(ep.requests().is_empty(), "nothing delivered");
    let dead = w.dead_letters().await;
    assert_eq!(dead.len(), 3);
    assert!(dead.iter().all(|d| d.reason == "invalid-job"), "{dead:?}");
}

// ---------------------------------------------------------------- large attachments' headers

/// What S3 serves an uploaded attachment with.
async fn served_headers(bucket: &str, key: &str) -> (String, String) {
    let head = mailroom_testkit::s3()
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("head {key}: {e:?}"));
    (
        head.content_type().unwrap_or_default().to_string(),
        head.content_disposition().unwrap_or_default().to_string(),
    )
}

#[tokio::test]
async fn large_attachments_are_uploaded_with_safe_headers_whatever_the_mail_says() {
    // Latin-1 bytes in a Content-Type, and active content the sender marks inline.
    let mut raw = b"From: a@example.org\r\nTo: support@inbox.example.com\r\nSubject: parts\r\n\
        MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n\
        --b\r\nContent-Type: text/plain\r\n\r\nhi\r\n\
        --b\r\nContent-Type: image/p"
        .to_vec();
    raw.push(0xe9);
    raw.extend_from_slice(
        b"ng\r\nContent-Disposition: attachment; filename=\"photo.png\"\r\n\
        Content-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n\
        --b\r\nContent-Type: image/svg+xml\r\nContent-Disposition: inline; filename=\"logo.svg\"\r\n\r\n\
        <svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>\r\n\
        --b\r\nContent-Type: application/rss+xml\r\nContent-Disposition: inline; filename=\"feed.rss\"\r\n\r\n\
        <rss/>\r\n--b--\r\n",
    );
    let w = World::with_raw(raw).await;
    let ep = Endpoint::start(vec![Act::Status(200)]).await;
    let config = w.config(&ep.url, &[("MAILROOM_INLINE_ATTACHMENT_MAX_BYTES", "0")]);
    let report = handle(ses_event(), &config, w.deps()).await.expect("ses");
    assert_eq!(report["steps"][0]["status"], "delivered", "{report}");
    assert!(w.dead_letters().await.is_empty(), "nothing dead-lettered");

    let body: Value = serde_json::from_slice(&ep.requests()[0].body).expect("json");
    let atts = body["data"]["attachments"].as_array().expect("attachments");
    assert_eq!(atts.len(), 3, "{body}");
    // The key each presigned URL names (path-style on moto).
    let key = |i: usize| {
        let url = atts[i]["url"].as_str().expect("url");
        let path = url.split('?').next().expect("path");
        let (_, key) = path
            .split_once(&format!("/{}/", w.bucket))
            .expect("bucket in the path");
        key.to_string()
    };
    let (ct, cd) = served_headers(&w.bucket, &key(0)).await;
    assert_eq!(
        ct, "application/octet-stream",
        "an 8-bit type is not a type"
    );
    assert!(cd.starts_with("attachment;"), "{cd}");
    for i in [1, 2] {
        let (ct, cd) = served_headers(&w.bucket, &key(i)).await;
        assert!(ct.ends_with("+xml"), "{ct}");
        assert!(cd.starts_with("attachment;"), "{ct} served as {cd:?}");
    }
}

#[tokio::test]
async fn mail_ses_encrypted_is_delivered_and_tampered_mail_dead_lettered_unsent() {
    use mailroom_testkit::Sealed;
    for how in [Sealed::Intact, Sealed::FlippedTag, Sealed::OtherKey] {
        let mut w = World::new().await;
        (w.bucket, w.store) =
            mailroom_testkit::bucket_with_sealed_raw("api-kms", MESSAGE_ID, "attachments.eml", how)
                .await;
        let ep = Endpoint::start(vec![Act::Status(200)]).await;
        let config = w.config(&ep.url, &[]);
        let report = handle(ses_event(), &config, w.deps()).await.expect("ses");
        if how == Sealed::Intact {
            let reqs = ep.requests();
            assert_eq!(reqs.len(), 1, "{report}");
            let body: Value = serde_json::from_slice(&reqs[0].body).expect("json");
            assert_eq!(
                body["data"]["email"]["subject"],
                "Invoice and statement for January"
            );
            assert!(w.dead_letters().await.is_empty());
        } else {
            assert_eq!(
                report["steps"][0]["status"], "dead_lettered",
                "{how:?}: {report}"
            );
            assert!(
                ep.requests().is_empty(),
                "{how:?}: no webhook for a refused object"
            );
            let dead = w.dead_letters().await;
            assert!(
                dead[0].detail.contains("encrypted object"),
                "{how:?}: {}",
                dead[0].detail
            );
        }
    }
}

/// The KMS key a sealed raw object names in its material description.
async fn sealed_under(bucket: &str, key: &str) -> String {
    let head = mailroom_testkit::s3()
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .expect("head raw");
    let matdesc = head
        .metadata()
        .and_then(|m| m.get(mailroom::envelope::MATDESC))
        .expect("an envelope");
    let matdesc: HashMap<String, String> = serde_json::from_str(matdesc).expect("matdesc");
    matdesc[mailroom::envelope::MATDESC_KEY_ID].clone()
}

/// The webhook's `raw` object, delivered once for `w`'s raw mail.
async fn delivered_raw(w: &World, extra: &[(&str, &str)]) -> Value {
    let ep = Endpoint::start(vec![Act::Status(200)]).await;
    let config = w.config(&ep.url, extra);
    let report = handle(ses_event(), &config, w.deps()).await.expect("ses");
    assert_eq!(report["steps"][0]["status"], "delivered", "{report}");
    let body: Value = serde_json::from_slice(&ep.requests()[0].body).expect("json");
    body["data"]["raw"].clone()
}

#[tokio::test]
async fn the_raw_url_of_encrypted_mail_serves_a_decrypted_copy_and_of_plain_mail_the_object() {
    use mailroom::aws::KmsDataKeys;
    use std::sync::Arc;
    let original = mailroom_testkit::event_file("mail/attachments.eml");
    let raw_key = format!("raw/{MESSAGE_ID}");

    let mut w = World::new().await;
    (w.bucket, _) = mailroom_testkit::bucket_with_sealed_raw(
        "api-rawcopy",
        MESSAGE_ID,
        "attachments.eml",
        mailroom_testkit::Sealed::Intact,
    )
    .await;
    let kms_key = sealed_under(&w.bucket, &raw_key).await;
    // As the function's main builds it (mailroom::aws::mail_store), path-style for moto.
    w.store =
        Decrypting::new(S3Store::new(mailroom_testkit::s3()).with_sse_kms(Some(kms_key.clone())))
            .with_keys(
                Arc::new(KmsDataKeys::new(mailroom_testkit::kms())),
                Some(kms_key.clone()),
            );
    let kms_env = [("MAILROOM_KMS_KEY_ARN", kms_key.as_str())];
    let raw = delivered_raw(&w, &kms_env).await;
    assert_eq!(raw["key"], raw_key, "the payload still names SES's object");
    let url = raw["url"].as_str().expect("a raw url");
    let copy = format!("/{MESSAGE_ID}/raw.eml");
    assert!(
        url.split('?').next().expect("path").ends_with(&copy),
        "{url}"
    );
    let fetched = reqwest_get(url).await;
    assert!(
        fetched == original,
        "the URL serves the message, not ciphertext"
    );
    eprintln!(
        "encrypted raw mail: raw.url serves {} bytes equal to the original",
        fetched.len()
    );

    let copy_key = url
        .split('?')
        .next()
        .and_then(|p| p.split_once(&format!("/{}/", w.bucket)))
        .map(|(_, k)| k.to_string())
        .expect("bucket in the path");
    let head = mailroom_testkit::s3()
        .head_object()
        .bucket(&w.bucket)
        .key(&copy_key)
        .send()
        .await
        .expect("head copy");
    assert_eq!(head.content_type(), Some("message/rfc822"));
    assert!(
        head.content_disposition()
            .is_some_and(|d| d.starts_with("attachment;")),
        "{:?}",
        head.content_disposition()
    );
    assert_eq!(
        head.server_side_encryption(),
        Some(&aws_sdk_s3::types::ServerSideEncryption::AwsKms),
        "the copy is encrypted at rest under the same key"
    );
    assert_eq!(head.ssekms_key_id(), Some(kms_key.as_str()));
    // A second delivery of the same message finds the copy and links it again.
    let again = delivered_raw(&w, &kms_env).await;
    assert_eq!(
        reqwest_get(again["url"].as_str().expect("url")).await,
        original
    );

    // Plain mail with a key configured (stored before the key was set): its own object.
    let w = World::new().await;
    let raw = delivered_raw(&w, &kms_env).await;
    let url = raw["url"].as_str().expect("a raw url");
    assert!(
        url.split('?').next().expect("path").ends_with(&raw_key),
        "{url}"
    );
    assert!(reqwest_get(url).await == original);
    let listed = mailroom_testkit::s3()
        .list_objects_v2()
        .bucket(&w.bucket)
        .prefix("messages/")
        .send()
        .await
        .expect("list");
    assert!(
        listed
            .contents()
            .iter()
            .all(|o| !o.key().unwrap_or_default().ends_with("/raw.eml")),
        "no copy of plain mail"
    );
}
