//! The local webhook sink: where the api function's POSTs go when the webhook URL can never be
//! a real endpoint (the reserved names of RFC 2606 and RFC 6761: `example.com`, `example.net`,
//! `example.org` and their subdomains, `*.example`, `*.test`, `*.invalid`), or for any URL with
//! `--webhook-sink`.
//!
//! The request still leaves through the real HTTP client, over the loopback to a small HTTP/1.1
//! server started once on 127.0.0.1:0 (only the URL is rewritten, and `Host` keeps the original
//! host). The server writes each request to `<state>/webhooks/<webhook-id>.json` (method,
//! original URL, headers, body as JSON when it is JSON, and whether the Standard Webhooks
//! signature verifies with the secrets the api function was given) and answers 200, so a first
//! local run ends cleanly instead of with a DNS error and a queued retry.

use async_trait::async_trait;
use mailroom::ports::{
    TransportError, TransportErrorKind, WebhookRequest, WebhookResponse, WebhookSender,
};
use mailroom::webhook::http::{REDACTED, redact_url};
use mailroom::webhook::signing::{self, Secret};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::OnceCell;

/// Request line and headers; a webhook's are a few hundred bytes.
const MAX_HEAD: usize = 64 * 1024;
/// The largest body taken: a Postmark payload with the raw 40 MB message and inline
/// attachments, base64-encoded, stays below this.
const MAX_BODY: usize = 160 * 1024 * 1024;
/// A stalled client is dropped after this long.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// What the sink wrote for one request.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Recorded {
    pub webhook_id: String,
    pub url: String,
    pub file: PathBuf,
    pub signature_valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_error: Option<String>,
}

/// One POST the api function made, to the sink or to a real endpoint: its request, what came
/// back and how long it took. Kept a JSON line each in `<state>/webhook-attempts/<id>.jsonl` (beside
/// `<state>/webhooks/`, which holds only what the sink itself received),
/// so the first try, the retries and every redelivery of one webhook read as one timeline.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// When the request was sent (RFC 3339, milliseconds).
    pub at: String,
    /// The `x-mailroom-attempt` header: 1 for a first try, n for the nth on the schedule.
    #[serde(default)]
    pub attempt: Option<u32>,
    /// The URL as configured, without credentials.
    pub url: String,
    /// From sending the request to the end of the response (or the failure).
    pub latency_ms: u64,
    #[serde(default)]
    pub status: Option<u16>,
    /// Why there is no response (connect, timeout, TLS).
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub retry_after: Option<String>,
    /// The start of the response body.
    #[serde(default)]
    pub response: String,
    /// Sent to the local sink rather than the network.
    #[serde(default)]
    pub sink: bool,
    pub signature_valid: bool,
    #[serde(default)]
    pub signature_error: Option<String>,
    /// Request headers, credentials redacted.
    pub headers: BTreeMap<String, String>,
    pub body_bytes: usize,
    /// The body (as JSON when it is JSON), when at most [`ATTEMPT_BODY_MAX`] bytes.
    #[serde(default)]
    pub body: Option<serde_json::Value>,
}

/// The largest body an attempt keeps; a larger one is only counted (the sink's own file keeps the
/// latest whole).
pub const ATTEMPT_BODY_MAX: usize = 256 * 1024;

/// The folder of the attempts files, under the state dir.
pub const ATTEMPTS_DIR: &str = "webhook-attempts";

/// Where the attempts of the webhook `webhook_id` are kept, under the state dir `state`.
pub fn attempts_file(state: &Path, webhook_id: &str) -> PathBuf {
    state
        .join(ATTEMPTS_DIR)
        .join(format!("{}.jsonl", file_stem(webhook_id)))
}

/// The attempts of the webhook `webhook_id`, oldest first; lines that do not read are skipped.
pub fn read_attempts(state: &Path, webhook_id: &str) -> Vec<Attempt> {
    std::fs::read_to_string(attempts_file(state, webhook_id))
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    /// Where the attempts files go, and a lock that serialises appends to them.
    attempts: (PathBuf, Mutex<()>),
    secrets: Mutex<Vec<Secret>>,
    /// Original URL by webhook-id, set just before a request is sent to the sink.
    pending: Mutex<HashMap<String, String>>,
    recorded: Mutex<Vec<Recorded>>,
}

/// The sink: decides which URLs it takes, and runs its server on first use.
#[derive(Debug)]
pub struct WebhookSink {
    force: bool,
    shared: Arc<Shared>,
    addr: OnceCell<SocketAddr>,
}

impl WebhookSink {
    /// A sink writing under `<state>/webhooks/`; `force` sends every URL to it.
    pub fn new(state: &Path, force: bool) -> WebhookSink {
        WebhookSink {
            force,
            shared: Arc::new(Shared {
                dir: state.join("webhooks"),
                secrets: Mutex::new(Vec::new()),
                pending: Mutex::new(HashMap::new()),
                recorded: Mutex::new(Vec::new()),
                attempts: (state.join(ATTEMPTS_DIR), Mutex::new(())),
            }),
            addr: OnceCell::new(),
        }
    }

    /// Adds secrets the signatures are checked with (those an api function signs with).
    pub fn add_secrets(&self, secrets: &[Secret]) {
        if let Ok(mut s) = self.shared.secrets.lock() {
            s.extend_from_slice(secrets);
        }
    }

    /// Why a POST to `url` goes to the sink, or `None` when it goes to the network.
    pub fn reason(&self, url: &str) -> Option<&'static str> {
        match host_of(url).as_deref().and_then(reserved) {
            Some(why) => Some(why),
            None if self.force => Some("--webhook-sink"),
            None => None,
        }
    }

    /// Appends one attempt of a webhook to its attempts file. Best effort: the file is for
    /// looking at, and failing to write it must not fail the delivery.
    pub fn note_attempt(
        &self,
        req: &WebhookRequest,
        out: &Result<WebhookResponse, TransportError>,
        sent_at: time::OffsetDateTime,
        latency: Duration,
    ) {
        let Some(id) = header(&req.headers, signing::HEADER_ID).filter(|id| !id.is_empty()) else {
            return;
        };
        let get = |name: &str| header(&req.headers, name).unwrap_or_default();
        let verdict = verify(
            &self.shared,
            id,
            get(signing::HEADER_TIMESTAMP),
            get(signing::HEADER_SIGNATURE),
            &req.body,
            sent_at.unix_timestamp(),
        );
        let (status, error, retry_after, response) = match out {
            Ok(r) => (
                Some(r.status),
                None,
                r.retry_after.clone(),
                r.body_excerpt.clone(),
            ),
            Err(e) => (None, Some(e.message.clone()), None, String::new()),
        };
        let attempt = Attempt {
            at: crate::receipt::mail::iso_millis(sent_at),
            attempt: get("x-mailroom-attempt").parse().ok(),
            url: redact_url(&req.url),
            latency_ms: u64::try_from(latency.as_millis()).unwrap_or(u64::MAX),
            status,
            error,
            retry_after,
            response,
            sink: self.reason(&req.url).is_some(),
            signature_valid: verdict.is_ok(),
            signature_error: verdict.err(),
            headers: redacted(&req.headers)
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            body_bytes: req.body.len(),
            body: (req.body.len() <= ATTEMPT_BODY_MAX).then(|| body_value(&req.body)),
        };
        let Ok(line) = serde_json::to_string(&attempt) else {
            return;
        };
        let (dir, lock) = &self.shared.attempts;
        let path = dir.join(format!("{}.jsonl", file_stem(id)));
        let _guard = lock.lock();
        let written = std::fs::create_dir_all(dir).and_then(|()| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?;
            f.write_all(format!("{line}\n").as_bytes())
        });
        if let Err(e) = written {
            eprintln!(
                "mailroom: webhook attempt not recorded in {}: {e}",
                path.display()
            );
        }
    }

    /// What was recorded for `webhook_id` (the latest, when it was retried).
    pub fn record_of(&self, webhook_id: &str) -> Option<Recorded> {
        let recorded = self.shared.recorded.lock().ok()?;
        recorded
            .iter()
            .rev()
            .find(|r| r.webhook_id == webhook_id)
            .cloned()
    }

    /// Everything recorded so far, in order.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.shared
            .recorded
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// The server's address, starting it on the first call.
    async fn start(&self) -> std::io::Result<SocketAddr> {
        self.addr
            .get_or_try_init(|| async {
                let listener = TcpListener::bind("127.0.0.1:0").await?;
                let addr = listener.local_addr()?;
                let shared = self.shared.clone();
                tokio::spawn(async move {
                    loop {
                        let Ok((stream, _)) = listener.accept().await else {
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        };
                        let shared = shared.clone();
                        tokio::spawn(async move { serve(stream, &shared).await });
                    }
                });
                Ok(addr)
            })
            .await
            .copied()
    }
}

/// The webhook sender the emulator hands to the api function: `real` for ordinary URLs, `real`
/// aimed at the sink for the ones [`WebhookSink::reason`] takes.
pub struct Routed {
    pub real: Arc<dyn WebhookSender>,
    pub sink: Arc<WebhookSink>,
}

#[async_trait]
impl WebhookSender for Routed {
    async fn post(&self, req: &WebhookRequest) -> Result<WebhookResponse, TransportError> {
        if self.sink.reason(&req.url).is_none() {
            return self.real.post(req).await;
        }
        let addr = self.sink.start().await.map_err(|e| {
            TransportError::new(
                TransportErrorKind::Connect,
                format!("starting the local webhook sink: {e}"),
            )
        })?;
        let (authority, path) = split_url(&req.url);
        let mut local = req.clone();
        local.url = format!("http://{addr}{path}");
        if !authority.is_empty()
            && !req
                .headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("host"))
        {
            local.headers.push(("host".to_string(), authority));
        }
        if let Some(id) = header(&req.headers, signing::HEADER_ID)
            && let Ok(mut p) = self.sink.shared.pending.lock()
        {
            p.insert(id.to_string(), req.url.clone());
        }
        self.real.post(&local).await
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `scheme://[user@]authority/path?query#fragment` → (authority without user, `/path?query`).
fn split_url(url: &str) -> (String, String) {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split('#').next().unwrap_or_default();
    let cut = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(cut);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let path = if path.is_empty() {
        "/".to_string()
    } else if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    (authority.to_string(), path)
}

/// The URL's host, lower case, without port, brackets or a trailing dot.
fn host_of(url: &str) -> Option<String> {
    let (authority, _) = split_url(url);
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (!host.is_empty()).then_some(host)
}

/// Why `host` can never be a real endpoint (RFC 2606, RFC 6761), if it is such a name.
fn reserved(host: &str) -> Option<&'static str> {
    let under = |domain: &str| host == domain || host.ends_with(&format!(".{domain}"));
    if ["example.com", "example.net", "example.org", "example"]
        .iter()
        .any(|d| under(d))
    {
        Some("reserved example domain")
    } else if under("test") {
        Some("reserved test domain")
    } else if under("invalid") {
        Some("reserved invalid domain")
    } else {
        None
    }
}

struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

enum Refusal {
    Status(u16, &'static str, &'static str),
    Gone,
}

async fn serve(mut stream: TcpStream, shared: &Shared) {
    let request = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
        Ok(Ok(r)) => r,
        Ok(Err(Refusal::Status(code, reason, why))) => {
            let _ = respond(&mut stream, code, reason, why).await;
            return;
        }
        Ok(Err(Refusal::Gone)) | Err(_) => return,
    };
    match record(shared, &request) {
        Ok(r) => {
            let body =
                serde_json::json!({ "recorded": r.file, "signatureValid": r.signature_valid })
                    .to_string();
            let _ = respond(&mut stream, 200, "OK", &body).await;
        }
        Err(e) => {
            // Not 200: the api function then keeps the delivery for a retry, as with any endpoint.
            let body = serde_json::json!({ "error": e.to_string() }).to_string();
            let _ = respond(&mut stream, 500, "Internal Server Error", &body).await;
        }
    }
}

async fn respond(
    stream: &mut TcpStream,
    code: u16,
    reason: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

async fn read_request(stream: &mut TcpStream) -> Result<Request, Refusal> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(Refusal::Status(
                431,
                "Request Header Fields Too Large",
                r#"{"error":"header over 64 KiB"}"#,
            ));
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(Refusal::Gone),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let bad = || Refusal::Status(400, "Bad Request", r#"{"error":"not an HTTP/1.1 request"}"#);
    let head = std::str::from_utf8(&buf[..head_end - 4]).map_err(|_| bad())?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (Some(method), Some(target), Some(_version)) = (first.next(), first.next(), first.next())
    else {
        return Err(bad());
    };
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line.split_once(':').ok_or_else(bad)?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    if header(&headers, "transfer-encoding").is_some() {
        return Err(Refusal::Status(
            411,
            "Length Required",
            r#"{"error":"send a Content-Length"}"#,
        ));
    }
    let length: usize = match header(&headers, "content-length") {
        Some(v) => v.parse().map_err(|_| bad())?,
        None => 0,
    };
    if length > MAX_BODY {
        return Err(Refusal::Status(
            413,
            "Content Too Large",
            r#"{"error":"body over 160 MiB"}"#,
        ));
    }
    let (method, target) = (method.to_string(), target.to_string());
    let mut body = buf.split_off(head_end);
    if body.len() > length {
        body.truncate(length);
    }
    while body.len() < length {
        let want = (length - body.len()).min(chunk.len());
        match stream.read(&mut chunk[..want]).await {
            Ok(0) | Err(_) => return Err(Refusal::Gone),
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(Request {
        method,
        target,
        headers,
        body,
    })
}

/// A file name from a webhook-id: the id when it is plain, otherwise its safe characters.
fn file_stem(id: &str) -> String {
    let stem: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(200)
        .collect();
    if stem.is_empty() {
        format!(
            "no-webhook-id-{}",
            time::OffsetDateTime::now_utc().unix_timestamp_nanos()
        )
    } else {
        stem
    }
}

/// One request as written to its file (fields in this order, the short ones first).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Document<'a> {
    method: &'a str,
    url: &'a str,
    received_at: String,
    signature_valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature_error: Option<&'a String>,
    headers: BTreeMap<&'a str, String>,
    body: serde_json::Value,
}

/// Headers written to disk as [`REDACTED`].
const SECRET_HEADERS: &[&str] = &["authorization", "proxy-authorization", "cookie"];

/// Why a request could not be written down; the sender is answered 500 with this message.
#[derive(Debug, thiserror::Error)]
enum RecordError {
    #[error("{0}")]
    Encode(#[from] serde_json::Error),
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Whether the Standard Webhooks signature verifies with the secrets the api functions sign with.
fn verify(
    shared: &Shared,
    id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
) -> Result<(), String> {
    let secrets = shared.secrets.lock().map(|s| s.clone()).unwrap_or_default();
    if secrets.is_empty() {
        return Err("no secret to check it with".to_string());
    }
    signing::verify(
        &secrets,
        id,
        timestamp,
        signature,
        body,
        now,
        signing::DEFAULT_TOLERANCE_SECS,
    )
    .map_err(|e| e.to_string())
}

/// Headers as written to disk: repeated names joined, credentials [`REDACTED`].
fn redacted(headers: &[(String, String)]) -> BTreeMap<&str, String> {
    let mut out: BTreeMap<&str, String> = BTreeMap::new();
    for (k, v) in headers {
        let v: &str = if SECRET_HEADERS.iter().any(|s| k.eq_ignore_ascii_case(s)) {
            REDACTED
        } else {
            v
        };
        out.entry(k.as_str())
            .and_modify(|old| {
                old.push_str(", ");
                old.push_str(v);
            })
            .or_insert_with(|| v.to_string());
    }
    out
}

/// A body as JSON when it is JSON, else as text.
fn body_value(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice::<serde_json::Value>(body)
        .unwrap_or_else(|_| String::from_utf8_lossy(body).into_owned().into())
}

fn record(shared: &Shared, req: &Request) -> Result<Recorded, RecordError> {
    let get = |name: &str| header(&req.headers, name).unwrap_or_default();
    let id = get(signing::HEADER_ID).to_string();
    let now = time::OffsetDateTime::now_utc();
    let verdict = verify(
        shared,
        &id,
        get(signing::HEADER_TIMESTAMP),
        get(signing::HEADER_SIGNATURE),
        &req.body,
        now.unix_timestamp(),
    );
    let url = shared
        .pending
        .lock()
        .ok()
        .and_then(|mut p| p.remove(&id))
        .unwrap_or_else(|| format!("http://{}{}", get("host"), req.target));
    // The file is for looking at, so nothing in it may be a credential: the endpoint's
    // `Authorization` and whatever the URL carries in its userinfo or query.
    let url = redact_url(&url);
    let headers = redacted(&req.headers);
    let body = body_value(&req.body);
    let doc = Document {
        method: &req.method,
        url: &url,
        received_at: crate::receipt::mail::iso_millis(now),
        signature_valid: verdict.is_ok(),
        signature_error: verdict.as_ref().err(),
        headers,
        body,
    };
    let file = shared.dir.join(format!("{}.json", file_stem(&id)));
    let text = serde_json::to_string_pretty(&doc)?;
    std::fs::create_dir_all(&shared.dir)
        .and_then(|()| std::fs::write(&file, text))
        .map_err(|source| RecordError::Write {
            path: file.clone(),
            source,
        })?;
    let recorded = Recorded {
        webhook_id: id,
        url,
        file,
        signature_valid: verdict.is_ok(),
        signature_error: verdict.err(),
    };
    if let Ok(mut r) = shared.recorded.lock() {
        r.push(recorded.clone());
    }
    Ok(recorded)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn signed(secret: &Secret, id: &str, body: &[u8], signed_body: &[u8]) -> Request {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let headers = [
            ("host", "hooks.example.com".to_string()),
            ("webhook-id", id.to_string()),
            ("webhook-timestamp", now.to_string()),
            ("webhook-signature", secret.sign(id, now, signed_body)),
        ];
        Request {
            method: "POST".to_string(),
            target: "/mail".to_string(),
            headers: headers
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn records_say_whether_the_signature_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let secret = Secret::parse(&Secret::generate()).unwrap();
        let sink = WebhookSink::new(dir.path(), false);
        sink.add_secrets(std::slice::from_ref(&secret));
        let body = br#"{"data":{"messageId":"m1"}}"#;

        let good = record(&sink.shared, &signed(&secret, "msg_1", body, body)).unwrap();
        assert!(good.signature_valid);
        assert_eq!(good.file, dir.path().join("webhooks/msg_1.json"));
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&good.file).unwrap()).unwrap();
        assert_eq!(doc["body"]["data"]["messageId"], "m1");
        assert_eq!(doc["url"], "http://hooks.example.com/mail");
        assert_eq!(doc["signatureValid"], true);

        let tampered = record(
            &sink.shared,
            &signed(&secret, "msg_2", b"not json", b"something else"),
        )
        .unwrap();
        assert!(!tampered.signature_valid);
        assert_eq!(
            tampered.signature_error.as_deref(),
            Some("no signature matches")
        );
        let doc: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&tampered.file).unwrap()).unwrap();
        assert_eq!(doc["body"], "not json");
        assert_eq!(doc["signatureValid"], false);
        assert_eq!(sink.recorded().len(), 2);
        assert_eq!(sink.record_of("msg_2").unwrap().file, tampered.file);

        let unknown = WebhookSink::new(dir.path(), false);
        let r = record(&unknown.shared, &signed(&secret, "msg_3", body, body)).unwrap();
        assert!(!r.signature_valid, "no secret registered, nothing verifies");
    }

    #[test]
    fn every_attempt_of_a_webhook_is_kept_in_order_with_its_outcome() {
        let dir = tempfile::tempdir().unwrap();
        let secret = Secret::parse(&Secret::generate()).unwrap();
        let sink = WebhookSink::new(dir.path(), false);
        sink.add_secrets(std::slice::from_ref(&secret));
        let request = |attempt: u32, body: &[u8], signed_body: &[u8]| {
            let r = signed(&secret, "msg_9", body, signed_body);
            let mut headers = r.headers;
            headers.push(("x-mailroom-attempt".into(), attempt.to_string()));
            headers.push(("Authorization".into(), "Bearer s3cr3t".into()));
            WebhookRequest {
                url: "https://user:pw@hooks.internal/mail?token=t0k".into(),
                headers,
                body: bytes::Bytes::copy_from_slice(body),
                timeout: Duration::from_secs(5),
            }
        };
        let now = time::OffsetDateTime::now_utc();
        let refused = Err(TransportError::new(
            TransportErrorKind::Connect,
            "connection refused",
        ));
        sink.note_attempt(
            &request(1, b"{}", b"{}"),
            &refused,
            now,
            Duration::from_millis(3),
        );
        let answered = Ok(WebhookResponse {
            status: 503,
            retry_after: Some("120".into()),
            body_excerpt: "busy".into(),
        });
        sink.note_attempt(
            &request(2, b"{}", b"other"),
            &answered,
            now,
            Duration::from_millis(41),
        );

        let attempts = read_attempts(dir.path(), "msg_9");
        assert_eq!(attempts.len(), 2);
        let (first, second) = (&attempts[0], &attempts[1]);
        assert_eq!(
            (first.attempt, first.status, first.latency_ms),
            (Some(1), None, 3)
        );
        assert_eq!(first.error.as_deref(), Some("connection refused"));
        assert!(first.signature_valid);
        assert_eq!(
            (second.attempt, second.status, second.latency_ms),
            (Some(2), Some(503), 41)
        );
        assert_eq!(second.retry_after.as_deref(), Some("120"));
        assert_eq!(second.response, "busy");
        assert!(!second.signature_valid, "the body was not the one signed");
        assert_eq!(second.body, Some(serde_json::json!({})));
        let text = std::fs::read_to_string(attempts_file(dir.path(), "msg_9")).unwrap();
        for secret in ["s3cr3t", "pw@", "t0k"] {
            assert!(!text.contains(secret), "{secret} reached the disk: {text}");
        }
        assert!(read_attempts(dir.path(), "msg_unknown").is_empty());
    }

    #[test]
    fn credentials_never_reach_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let secret = Secret::parse(&Secret::generate()).unwrap();
        let sink = WebhookSink::new(dir.path(), false);
        let body = br#"{"data":{"messageId":"m1"}}"#;
        let mut req = signed(&secret, "msg_a", body, body);
        req.headers
            .push(("authorization".into(), "Bearer t0ken-xyz".into()));
        req.target = "/mail?token=s3cr3t".into();
        let rec = record(&sink.shared, &req).unwrap();
        let text = std::fs::read_to_string(&rec.file).unwrap();
        assert!(
            !text.contains("t0ken-xyz") && !text.contains("s3cr3t"),
            "{text}"
        );
        let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["headers"]["authorization"], REDACTED);
        assert_eq!(doc["url"], "http://hooks.example.com/mail?<redacted>");
    }

    #[test]
    fn reserved_names_are_the_rfc_2606_and_6761_ones() {
        for (url, why) in [
            ("https://hooks.example.com/mail", "example"),
            ("https://example.com", "example"),
            ("http://EXAMPLE.NET:8080/x", "example"),
            ("https://a.b.example.org./hook?x=1", "example"),
            ("https://user:pw@api.example/hook", "example"),
            ("https://mail.test/in", "test"),
            ("https://nowhere.invalid", "invalid"),
        ] {
            let got = host_of(url).as_deref().and_then(reserved);
            assert!(got.is_some_and(|g| g.contains(why)), "{url}: {got:?}");
        }
        for url in [
            "https://hooks.mycompany.com/mail",
            "https://notexample.com/x",
            "https://example.com.evil.net/x",
            "http://127.0.0.1:9/hook",
            "http://[::1]:8080/hook",
            "https://testing.dev/x",
            "https://localhost/x",
        ] {
            assert_eq!(host_of(url).as_deref().and_then(reserved), None, "{url}");
        }
    }

    #[test]
    fn urls_split_into_authority_and_target() {
        assert_eq!(
            split_url("https://u@hooks.example.com:8443/a/b?c=d#frag"),
            ("hooks.example.com:8443".to_string(), "/a/b?c=d".to_string())
        );
        assert_eq!(
            split_url("https://hooks.example.com"),
            ("hooks.example.com".to_string(), "/".to_string())
        );
        assert_eq!(
            split_url("https://hooks.example.com?x=1"),
            ("hooks.example.com".to_string(), "/?x=1".to_string())
        );
        assert_eq!(host_of("http://[::1]:80/x").as_deref(), Some("::1"));
    }

    #[test]
    fn forcing_takes_every_url() {
        let dir = std::env::temp_dir();
        let sink = WebhookSink::new(&dir, true);
        assert_eq!(
            sink.reason("http://127.0.0.1:9/hook"),
            Some("--webhook-sink")
        );
        assert_eq!(
            sink.reason("https://hooks.example.com/mail"),
            Some("reserved example domain")
        );
        let sink = WebhookSink::new(&dir, false);
        assert_eq!(sink.reason("http://127.0.0.1:9/hook"), None);
    }

    #[test]
    fn file_names_keep_only_safe_characters() {
        assert_eq!(file_stem("msg_2abc-DEF"), "msg_2abc-DEF");
        assert_eq!(file_stem("../../etc/passwd"), "______etc_passwd");
        assert!(file_stem("").starts_with("no-webhook-id-"));
    }
}
