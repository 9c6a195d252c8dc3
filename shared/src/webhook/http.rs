//! [`WebhookSender`] over reqwest (rustls): one POST, no redirects, a hard timeout, and the first
//! few KiB of the response body kept for logs and the dead-letter queue.

use crate::ports::{
    TransportError, TransportErrorKind, WebhookRequest, WebhookResponse, WebhookSender,
};
use async_trait::async_trait;

/// How much of a response body is kept.
pub const EXCERPT_BYTES: usize = 2048;

#[derive(Debug, Clone)]
pub struct ReqwestSender {
    client: reqwest::Client,
}

impl ReqwestSender {
    /// One client per cold start: connections to the endpoint are pooled across invocations.
    pub fn new() -> Result<ReqwestSender, TransportError> {
        let client = reqwest::Client::builder()
            // A 301/302 turns a POST into a body-less GET; better to fail loudly.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mailroom-webhook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TransportError::new(TransportErrorKind::InvalidRequest, e.to_string()))?;
        Ok(ReqwestSender { client })
    }
}

fn kind_of(e: &reqwest::Error) -> TransportErrorKind {
    if e.is_timeout() {
        TransportErrorKind::Timeout
    } else if e.is_builder() {
        TransportErrorKind::InvalidRequest
    } else if e.is_connect() {
        TransportErrorKind::Connect
    } else {
        TransportErrorKind::Protocol
    }
}

/// The error and its causes on one line (reqwest's own message hides the cause).
fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

#[async_trait]
impl WebhookSender for ReqwestSender {
    async fn post(&self, req: &WebhookRequest) -> Result<WebhookResponse, TransportError> {
        let mut builder = self
            .client
            .post(&req.url)
            .timeout(req.timeout)
            .body(req.body.clone());
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        let err = |e: reqwest::Error| TransportError::new(kind_of(&e), describe(&e));
        let mut resp = builder.send().await.map_err(err)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut excerpt = Vec::new();
        // A body that stalls or breaks after the status line does not change the verdict.
        while excerpt.len() < EXCERPT_BYTES {
            match resp.chunk().await {
                Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        excerpt.truncate(EXCERPT_BYTES);
        Ok(WebhookResponse {
            status,
            retry_after,
            body_excerpt: String::from_utf8_lossy(&excerpt).into_owned(),
        })
    }
}
