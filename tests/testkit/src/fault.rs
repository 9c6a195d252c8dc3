//! A fault-injecting HTTP reverse proxy on 127.0.0.1, put between the real AWS SDK adapters and
//! moto: it answers some requests itself with a 5xx or a throttling error in the service's own
//! wire format, holds some answers past the client's timeout, and drops some connections, either
//! before the request reaches moto or after (so the write happened but its answer is lost).
//!
//! The schedule is seeded: whether a request fails, and how, is a pure function of the seed and
//! the request's identity (service, operation, path) and how many times that identity was seen
//! before, so a retry of the same request gets a fresh draw and the same seed replays the same
//! schedule for the same requests whatever their interleaving.
//!
//! The small HTTP/1.1 reader and writer here are also what a test's own local endpoint speaks
//! (the AWS SDK and reqwest send `Content-Length` or chunked bodies; both are read).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How often each fault happens, in requests per thousand (the rest pass untouched).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    /// 500 `InternalError`.
    pub server_error: u32,
    /// Throttling: S3 503 `SlowDown`, SNS 400 `Throttling`, SQS 400 `ThrottlingException`,
    /// SES v2 429 `TooManyRequestsException`.
    pub throttle: u32,
    /// Forwarded, but the answer is held for [`Plan::slow`] (past the client's timeout).
    pub slow: u32,
    /// The connection is closed before the request is forwarded.
    pub reset_before: u32,
    /// Forwarded (moto applies it), then the connection is closed without an answer.
    pub reset_after: u32,
}

/// The whole schedule: rates, the seed, and how long a slow answer waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    pub seed: u64,
    pub rates: Rates,
    pub slow: Duration,
}

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    Pass,
    ServerError,
    Throttle,
    Slow,
    ResetBefore,
    ResetAfter,
}

impl Fault {
    /// Every fault the proxy injects (all but [`Fault::Pass`]).
    pub const INJECTED: [Fault; 5] = [
        Fault::ServerError,
        Fault::Throttle,
        Fault::Slow,
        Fault::ResetBefore,
        Fault::ResetAfter,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Pass => "pass",
            Fault::ServerError => "5xx",
            Fault::Throttle => "throttle",
            Fault::Slow => "slow",
            Fault::ResetBefore => "reset-before",
            Fault::ResetAfter => "reset-after",
        }
    }
}

/// A 64-bit mix (splitmix64's finaliser): stable across platforms and toolchains, unlike
/// `DefaultHasher`, so a seed means the same schedule everywhere.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A stable hash of `parts` under `seed` (FNV-1a over the bytes, then [`mix`]).
pub fn draw(seed: u64, parts: &[&str], n: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0xff]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    mix(h ^ mix(seed) ^ mix(n.wrapping_add(1)))
}

impl Plan {
    /// The fault for the `n`-th sighting (0-based) of a request identity.
    pub fn decide(&self, identity: &[&str], n: u64) -> Fault {
        let roll = u32::try_from(draw(self.seed, identity, n) % 1000).unwrap_or(0);
        let r = &self.rates;
        let table = [
            (r.server_error, Fault::ServerError),
            (r.throttle, Fault::Throttle),
            (r.slow, Fault::Slow),
            (r.reset_before, Fault::ResetBefore),
            (r.reset_after, Fault::ResetAfter),
        ];
        let mut upto = 0;
        for (rate, fault) in table {
            upto += rate;
            if roll < upto {
                return fault;
            }
        }
        Fault::Pass
    }
}

/// One HTTP/1.1 request as read off the wire (body de-chunked).
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Names lowercased, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Requests larger than this are refused (the proxy carries test mail, not archives).
const MAX_REQUEST: usize = 64 * 1024 * 1024;

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

/// Reads one request from a kept-alive connection; `Ok(None)` when the peer closed it between
/// requests. `buf` carries bytes read past this request into the next call.
pub async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Request>> {
    let (head_len, mut req) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(buf).map_err(|e| bad(e.to_string()))? {
            httparse::Status::Complete(n) => {
                let req = Request {
                    method: parsed.method.unwrap_or_default().to_string(),
                    path: parsed.path.unwrap_or_default().to_string(),
                    headers: parsed
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    body: Vec::new(),
                };
                break (n, req);
            }
            httparse::Status::Partial => {
                if buf.len() > 64 * 1024 {
                    return Err(bad("request head over 64 KiB"));
                }
                if fill(stream, buf).await? == 0 {
                    return if buf.is_empty() {
                        Ok(None)
                    } else {
                        Err(bad("connection closed inside a request head"))
                    };
                }
            }
        }
    };
    buf.drain(..head_len);
    if req
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    }
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        req.body = read_chunked(stream, buf).await?;
    } else {
        let len: usize = match req.header("content-length") {
            Some(v) => v.trim().parse().map_err(|_| bad("bad content-length"))?,
            None => 0,
        };
        if len > MAX_REQUEST {
            return Err(bad("request body too large"));
        }
        while buf.len() < len {
            if fill(stream, buf).await? == 0 {
                return Err(bad("connection closed inside a request body"));
            }
        }
        req.body = buf.drain(..len).collect();
    }
    Ok(Some(req))
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n)
}

async fn read_line(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<String> {
    loop {
        if let Some(pos) = buf.windows(2).position(|w| w == b"\r\n") {
            let line: Vec<u8> = buf.drain(..pos + 2).take(pos).collect();
            return Ok(String::from_utf8_lossy(&line).into_owned());
        }
        if buf.len() > 64 * 1024 {
            return Err(bad("chunk line too long"));
        }
        if fill(stream, buf).await? == 0 {
            return Err(bad("connection closed inside a chunked body"));
        }
    }
}

async fn read_chunked(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(stream, buf).await?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| bad("bad chunk size"))?;
        if body.len() + size > MAX_REQUEST {
            return Err(bad("request body too large"));
        }
        if size == 0 {
            // Trailers, up to the empty line.
            while !read_line(stream, buf).await?.is_empty() {}
            return Ok(body);
        }
        while buf.len() < size + 2 {
            if fill(stream, buf).await? == 0 {
                return Err(bad("connection closed inside a chunk"));
            }
        }
        body.extend(buf.drain(..size));
        buf.drain(..2);
    }
}

/// Writes a whole response with a `Content-Length` (or, for HEAD, the one given in `headers`).
pub async fn write_response(
    stream: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    head: bool,
) -> std::io::Result<()> {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Status");
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    let mut has_length = false;
    for (k, v) in headers {
        if head && k.eq_ignore_ascii_case("content-length") {
            has_length = true;
        } else if is_framing(k) {
            continue;
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    if !head || !has_length {
        out.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    stream.write_all(out.as_bytes()).await?;
    if !head {
        stream.write_all(body).await?;
    }
    stream.flush().await
}

/// Headers that describe one hop's framing, rewritten by whoever sends the next hop.
fn is_framing(name: &str) -> bool {
    [
        "host",
        "connection",
        "keep-alive",
        "content-length",
        "transfer-encoding",
        "expect",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

/// The service a request is signed for (`Credential=<key>/<date>/<region>/<service>/aws4_request`),
/// with SES API v2 told apart from v1 by its REST paths: both are signed for `ses`, but they fail
/// in different wire formats and a run counts their faults apart.
fn service_of(req: &Request) -> String {
    let signed = req
        .header("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unknown");
    if signed == "ses" && req.path.starts_with("/v2/") {
        return "sesv2".to_string();
    }
    signed.to_string()
}

/// The operation: SQS's JSON target, SNS's query `Action`, else the HTTP method (S3).
fn operation_of(req: &Request) -> String {
    if let Some(target) = req.header("x-amz-target") {
        return target.rsplit('.').next().unwrap_or(target).to_string();
    }
    let body = String::from_utf8_lossy(&req.body);
    body.split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .map_or_else(|| req.method.clone(), str::to_string)
}

/// The answer a service gives when it fails on its side or throttles, in its wire format:
/// status, headers, body.
fn error_response(service: &str, fault: Fault) -> (u16, Vec<(String, String)>, String) {
    let (status, content_type, body) = error_body(service, fault);
    let mut headers = vec![("content-type".to_string(), content_type.to_string())];
    if service == "sesv2" {
        // REST-JSON services name the error in a header; the SDK reads the code from there.
        let code = if fault == Fault::Throttle {
            "TooManyRequestsException"
        } else {
            "InternalFailure"
        };
        headers.push(("x-amzn-errortype".to_string(), code.to_string()));
    }
    (status, headers, body)
}

fn error_body(service: &str, fault: Fault) -> (u16, &'static str, String) {
    let throttle = fault == Fault::Throttle;
    match service {
        "sesv2" => {
            let status = if throttle { 429 } else { 500 };
            let body = "{\"message\":\"injected by the fault proxy\"}".to_string();
            (status, "application/json", body)
        }
        "s3" => {
            let (status, code) = if throttle {
                (503, "SlowDown")
            } else {
                (500, "InternalError")
            };
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the fault proxy</Message><RequestId>fault</RequestId></Error>"
            );
            (status, "application/xml", body)
        }
        "sqs" => {
            let (status, code) = if throttle {
                (400, "ThrottlingException")
            } else {
                (500, "InternalError")
            };
            let body = format!(
                "{{\"__type\":\"com.amazonaws.sqs#{code}\",\"message\":\"injected by the fault proxy\"}}"
            );
            (status, "application/x-amz-json-1.0", body)
        }
        _ => {
            let (status, kind, code) = if throttle {
                (400, "Sender", "Throttling")
            } else {
                (500, "Receiver", "InternalError")
            };
            let body = format!(
                "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code><Message>injected by the fault proxy</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
            );
            (status, "text/xml", body)
        }
    }
}

#[derive(Default)]
struct State {
    seen: BTreeMap<String, u64>,
    counts: BTreeMap<(String, Fault), u64>,
}

/// A running proxy. It stops when dropped.
pub struct FaultProxy {
    /// `http://127.0.0.1:<port>`: give it to the SDK as the endpoint.
    pub endpoint: String,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on 127.0.0.1 (a free port) and forwards to `upstream` (moto's endpoint).
    pub async fn start(upstream: &str, plan: Plan) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::new(Forwarder {
            upstream: upstream.trim_end_matches('/').to_string(),
            client,
            plan,
            state: state.clone(),
        });
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let f = shared.clone();
                tokio::spawn(async move { f.serve(stream).await });
            }
        });
        Ok(FaultProxy {
            endpoint,
            state,
            task,
        })
    }

    /// How many requests met each fault, by service (`pass` included).
    pub fn counts(&self) -> BTreeMap<(String, Fault), u64> {
        self.state
            .lock()
            .map(|s| s.counts.clone())
            .unwrap_or_default()
    }
}

struct Forwarder {
    upstream: String,
    client: reqwest::Client,
    plan: Plan,
    state: Arc<Mutex<State>>,
}

impl Forwarder {
    async fn serve(&self, mut stream: TcpStream) {
        let mut buf = Vec::new();
        while let Ok(Some(req)) = read_request(&mut stream, &mut buf).await {
            let service = service_of(&req);
            let fault = {
                let identity = [
                    service.as_str(),
                    &operation_of(&req),
                    req.path.split('?').next().unwrap_or(""),
                ];
                let Ok(mut st) = self.state.lock() else {
                    return;
                };
                let seen = st.seen.entry(identity.join(" ")).or_insert(0);
                let n = *seen;
                *seen += 1;
                let fault = self.plan.decide(&identity, n);
                *st.counts.entry((service.clone(), fault)).or_insert(0) += 1;
                fault
            };
            let head = req.method.eq_ignore_ascii_case("HEAD");
            let written = match fault {
                Fault::ResetBefore => return,
                Fault::ServerError | Fault::Throttle => {
                    let (status, headers, body) = error_response(&service, fault);
                    write_response(&mut stream, status, &headers, body.as_bytes(), head).await
                }
                Fault::Pass | Fault::Slow | Fault::ResetAfter => {
                    let Ok((status, headers, body)) = self.forward(&req).await else {
                        return;
                    };
                    if fault == Fault::ResetAfter {
                        return;
                    }
                    if fault == Fault::Slow {
                        tokio::time::sleep(self.plan.slow).await;
                    }
                    write_response(&mut stream, status, &headers, &body, head).await
                }
            };
            if written.is_err() {
                return;
            }
        }
    }

    async fn forward(
        &self,
        req: &Request,
    ) -> Result<(u16, Vec<(String, String)>, Vec<u8>), reqwest::Error> {
        let method =
            reqwest::Method::from_bytes(req.method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut builder = self
            .client
            .request(method, format!("{}{}", self.upstream, req.path))
            .body(req.body.clone());
        for (k, v) in req.headers.iter().filter(|(k, _)| !is_framing(k)) {
            builder = builder.header(k, v);
        }
        let resp = builder.send().await?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = resp.bytes().await?.to_vec();
        Ok((status, headers, body))
    }
}

/// The SDK's own timeouts and retries, as a test sets them (short, to keep the run quick).
#[derive(Debug, Clone, Copy)]
pub struct Sdk {
    /// Per attempt; a slow answer longer than this counts as a timeout.
    pub attempt_timeout: Duration,
    /// Attempts per operation, the first included (the SDK's default is 3).
    pub max_attempts: u32,
    pub initial_backoff: Duration,
}

/// SDK configuration pointed at `endpoint` (a [`FaultProxy`]) with the testkit's credentials,
/// the given timeouts and retries, and the SDK's default sleep (timeouts and backoff need one).
pub async fn sdk_config(endpoint: &str, sdk: Sdk) -> aws_config::SdkConfig {
    let creds = aws_credential_types::Credentials::new(
        "testing",
        "testing",
        None,
        None,
        "mailroom-testkit-fault",
    );
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(crate::REGION))
        .endpoint_url(endpoint)
        .credentials_provider(creds)
        .timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(sdk.attempt_timeout)
                .operation_attempt_timeout(sdk.attempt_timeout)
                .build(),
        )
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(sdk.max_attempts)
                .with_initial_backoff(sdk.initial_backoff),
        )
        .load()
        .await
}

/// An S3 client for [`sdk_config`]: path-style, as any endpoint that is not AWS needs.
pub fn s3_client(config: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(config)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(rates: Rates) -> Plan {
        Plan {
            seed: 7,
            rates,
            slow: Duration::from_millis(1),
        }
    }

    #[test]
    fn the_schedule_is_a_function_of_seed_identity_and_sighting() {
        let p = plan(Rates {
            server_error: 100,
            throttle: 100,
            slow: 100,
            reset_before: 100,
            reset_after: 100,
        });
        let a: Vec<Fault> = (0..200)
            .map(|n| p.decide(&["s3", "PUT", "/b/k"], n))
            .collect();
        let b: Vec<Fault> = (0..200)
            .map(|n| p.decide(&["s3", "PUT", "/b/k"], n))
            .collect();
        assert_eq!(a, b);
        let other: Vec<Fault> = (0..200)
            .map(|n| p.decide(&["s3", "PUT", "/b/j"], n))
            .collect();
        assert_ne!(a, other);
        let passes = a.iter().filter(|f| **f == Fault::Pass).count();
        assert!((60..=140).contains(&passes), "about half pass: {passes}");
        for f in Fault::INJECTED {
            assert!(a.contains(&f), "{f:?} never drawn");
        }
    }

    #[test]
    fn zero_rates_never_fault() {
        let p = plan(Rates {
            server_error: 0,
            throttle: 0,
            slow: 0,
            reset_before: 0,
            reset_after: 0,
        });
        assert!((0..1000).all(|n| p.decide(&["sqs", "SendMessage", "/"], n) == Fault::Pass));
    }

    #[test]
    fn services_and_operations_are_read_from_the_request() {
        let req = Request {
            method: "POST".into(),
            path: "/".into(),
            headers: vec![
                (
                    "authorization".into(),
                    "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/sqs/aws4_request, SignedHeaders=host".into(),
                ),
                ("x-amz-target".into(), "AmazonSQS.SendMessage".into()),
            ],
            body: Vec::new(),
        };
        assert_eq!(service_of(&req), "sqs");
        assert_eq!(operation_of(&req), "SendMessage");
        let sns = Request {
            method: "POST".into(),
            body: b"Action=Publish&TopicArn=x".to_vec(),
            ..Request::default()
        };
        assert_eq!(operation_of(&sns), "Publish");
        assert_eq!(service_of(&sns), "unknown");
        let signed_for_ses = |path: &str| Request {
            method: "POST".into(),
            path: path.into(),
            headers: vec![(
                "authorization".into(),
                "AWS4-HMAC-SHA256 Credential=testing/20250101/us-east-1/ses/aws4_request".into(),
            )],
            body: Vec::new(),
        };
        assert_eq!(
            service_of(&signed_for_ses("/v2/email/outbound-emails")),
            "sesv2"
        );
        assert_eq!(service_of(&signed_for_ses("/")), "ses");
    }

    #[test]
    fn sesv2_throttles_with_a_429_named_in_a_header() {
        let (status, headers, body) = error_response("sesv2", Fault::Throttle);
        assert_eq!(status, 429);
        assert!(headers.contains(&(
            "x-amzn-errortype".to_string(),
            "TooManyRequestsException".to_string()
        )));
        assert!(body.starts_with('{'), "{body}");
        let (status, headers, _) = error_response("sqs", Fault::ServerError);
        assert_eq!(status, 500);
        assert_eq!(headers.len(), 1);
    }
}
