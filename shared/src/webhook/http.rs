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

/// A path segment that may be a credential: 16 characters or more of the URL-safe alphabet with
/// both letters and digits in it. Readable names (`inbound`, `mail-events`) and short ids
/// (`T0123ABCD`) stay, so a redacted URL still says which endpoint failed.
fn token_like(segment: &str) -> bool {
    segment.len() >= 16
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'%'))
        && segment.bytes().any(|b| b.is_ascii_digit())
        && segment.bytes().any(|b| b.is_ascii_alphabetic())
}

/// Why a webhook URL is unsafe to use, when it is: `http://` to anything but this machine sends
/// every payload (the mail itself), its signature and any bearer token or basic credentials in
/// clear text across networks. `None` for `https://` and for loopback `http://`.
pub fn plaintext_warning(url: &str) -> Option<String> {
    let rest = url
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .map(|_| &url[7..])?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| {
        format!(
            "{} is plain http:// to another host: the mail, its signature and any credentials \
             travel unencrypted; use https://",
            redact_url(url)
        )
    })
}

/// Put in place of what [`redact_url`] removes.
pub const REDACTED: &str = "<redacted>";

/// `url` without what may be a secret: its userinfo (`user:password@`), query (`?token=…`),
/// fragment, and any path segment that looks like a token (see `token_like`). Webhook URLs often
/// carry a token in one of those places (Slack's `/services/T…/B…/<secret>`, Discord's
/// `/api/webhooks/<id>/<token>`), and a transport error's message ends up in logs, retry jobs and
/// dead letters.
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = match authority.rsplit_once('@') {
        Some((_, host)) => format!("{REDACTED}@{host}"),
        None => authority.to_string(),
    };
    let (path, cut) = match tail.find(['?', '#']) {
        Some(i) => (&tail[..i], true),
        None => (tail, false),
    };
    let mut out = String::with_capacity(url.len());
    if let Some(scheme) = scheme {
        out.push_str(scheme);
        out.push_str("://");
    }
    out.push_str(&host);
    for (i, segment) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(if token_like(segment) {
            REDACTED
        } else {
            segment
        });
    }
    if cut {
        out.push('?');
        out.push_str(REDACTED);
    }
    out
}

/// The error and its causes on one line (reqwest's own message hides the cause), with the URL
/// redacted.
fn describe(e: reqwest::Error, url: &str) -> String {
    let had_url = e.url().is_some();
    let e = e.without_url();
    let mut s = e.to_string();
    if had_url {
        s.push_str(&format!(" ({})", redact_url(url)));
    }
    let mut src = std::error::Error::source(&e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    // Should a cause quote the URL after all, it goes too.
    let redacted = redact_url(url);
    if redacted != url {
        s = s.replace(url, &redacted);
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
        let err = |e: reqwest::Error| TransportError::new(kind_of(&e), describe(e, &req.url));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_userinfo_query_and_fragment() {
        for (url, want) in [
            (
                "https://user:pw@hooks.example.com/in?token=s3cr3t#x",
                "https://<redacted>@hooks.example.com/in?<redacted>",
            ),
            (
                "https://hooks.example.com?token=s3cr3t",
                "https://hooks.example.com?<redacted>",
            ),
            ("http://127.0.0.1:9/hook", "http://127.0.0.1:9/hook"),
            (
                "https://a@b@host/p#frag",
                "https://<redacted>@host/p?<redacted>",
            ),
            (
                "https://hooks.slack.com/services/T0123ABCD/B0123ABCD/XXsecretXX1234567890abcd",
                "https://hooks.slack.com/services/T0123ABCD/B0123ABCD/<redacted>",
            ),
            (
                "https://discord.com/api/webhooks/1234567890123456789/aB3dEf-GhIjK_lMn0pQrStUvWxYz",
                "https://discord.com/api/webhooks/1234567890123456789/<redacted>",
            ),
            (
                "https://api.example.com/v1/inbound-mail-events/9b2f6c1e-0d7a-4c8e-a1f3-5e6d7c8b9a0f",
                "https://api.example.com/v1/inbound-mail-events/<redacted>",
            ),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[tokio::test]
    async fn transport_errors_do_not_carry_the_secret_parts_of_the_url() {
        // Nothing listens on the port, so the connection is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let req = WebhookRequest {
            url: format!("http://user:pa55@127.0.0.1:{port}/hook?token=s3cr3t"),
            headers: Vec::new(),
            body: bytes::Bytes::new(),
            timeout: std::time::Duration::from_secs(5),
        };
        let err = ReqwestSender::new()
            .expect("client")
            .post(&req)
            .await
            .expect_err("refused");
        assert_eq!(err.kind, TransportErrorKind::Connect);
        assert!(
            !err.message.contains("s3cr3t") && !err.message.contains("pa55"),
            "{}",
            err.message
        );
        assert!(
            err.message.contains(&format!("127.0.0.1:{port}/hook")),
            "still says where: {}",
            err.message
        );
    }

    #[test]
    fn plain_http_is_flagged_unless_it_stays_on_this_machine() {
        for url in [
            "http://hooks.example.com/mail",
            "HTTP://10.0.0.5:8080/x",
            "http://user:pw@127.0.0.1.evil.org/x",
        ] {
            let w = plaintext_warning(url).unwrap_or_default();
            assert!(w.contains("unencrypted"), "{url}: {w}");
            assert!(!w.contains("pw"), "{w}");
        }
        for url in [
            "https://hooks.example.com/mail",
            "http://127.0.0.1:9000/hook",
            "http://localhost/x",
            "http://[::1]:8080/x",
        ] {
            assert_eq!(plaintext_warning(url), None, "{url}");
        }
    }
}
