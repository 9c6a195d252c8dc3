//! A recording HTTP/1.1 server on 127.0.0.1, for tests whose far side is a plain HTTP endpoint:
//! a webhook receiver, CloudFormation's response URL, an AWS API moto does not implement.
//!
//! Each request is read whole (with [`crate::fault::read_request`], so chunked bodies and
//! `Expect: 100-continue` work), recorded with the moment it arrived, and answered with the reply
//! the test chose. Every answer closes its connection: each attempt a client makes arrives on a
//! connection of its own, as the hand-written servers this replaces behaved.

use crate::fault::read_request;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// One answer: a status, headers and a body, sent after `delay`.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// How long to wait before answering (past a client's timeout, to test it).
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            ..Reply::default()
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Reply {
        self.body = body.into();
        self
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// The request target as sent: path and query.
    pub path: String,
    /// Names lowercased; a header sent twice keeps its last value.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

type Answer = dyn Fn(&Recorded) -> Reply + Send + Sync;

/// The server: its address and the requests it has read so far. It runs until the runtime it was
/// started on ends.
#[derive(Clone)]
pub struct HttpServer {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl HttpServer {
    /// Answers the n-th request with `script[n]`; the last reply repeats (200 for an empty script).
    pub async fn scripted(script: Vec<Reply>) -> HttpServer {
        let answered = Mutex::new(0usize);
        HttpServer::answering_with(move |_| {
            let mut n = answered.lock().expect("lock");
            let reply = script
                .get(*n)
                .or(script.last())
                .cloned()
                .unwrap_or_else(|| Reply::status(200));
            *n += 1;
            reply
        })
        .await
    }

    /// Answers every request with `reply`.
    pub async fn always(reply: Reply) -> HttpServer {
        HttpServer::scripted(vec![reply]).await
    }

    /// Answers each request with what `answer` makes of it (a test that changes its answer as it
    /// goes reads its own state here).
    pub async fn answering_with(
        answer: impl Fn(&Recorded) -> Reply + Send + Sync + 'static,
    ) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let server = HttpServer {
            addr,
            requests: requests.clone(),
        };
        let answer: Arc<Answer> = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, answer.clone(), requests.clone()));
            }
        });
        server
    }

    /// [`HttpServer::scripted`] for a test without a runtime: the server gets a thread and a
    /// runtime of its own, which live as long as the test process.
    pub fn scripted_on_thread(script: Vec<Reply>) -> HttpServer {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let _ = tx.send(HttpServer::scripted(script).await);
                std::future::pending::<()>().await;
            });
        });
        rx.recv().expect("the server thread started")
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Every request read so far, in the order they were read.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }
}

async fn serve(mut stream: TcpStream, answer: Arc<Answer>, requests: Arc<Mutex<Vec<Recorded>>>) {
    let mut buf = Vec::new();
    let Ok(Some(req)) = read_request(&mut stream, &mut buf).await else {
        return;
    };
    let req = Recorded {
        method: req.method,
        path: req.path,
        headers: req.headers.into_iter().collect(),
        body: req.body,
        at: Instant::now(),
    };
    let reply = answer(&req);
    requests.lock().expect("lock").push(req);
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let reason = reqwest::StatusCode::from_u16(reply.status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Status");
    let mut head = format!("HTTP/1.1 {} {reason}\r\n", reply.status);
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        reply.body.len()
    ));
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(&reply.body).await;
    let _ = stream.shutdown().await;
}
