//! Delivering the custom resource response: an HTTP PUT to CloudFormation's pre-signed S3 URL.

use crate::CfnResponse;
use async_trait::async_trait;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RespondError {
    #[error("encoding the response: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("PUT to the ResponseURL failed: {0}")]
    Http(String),
    #[error("the ResponseURL answered HTTP {status}: {body}")]
    Status { status: u16, body: String },
}

/// Sends the response document to the request's `ResponseURL`.
#[async_trait]
pub trait Responder: Send + Sync {
    async fn respond(&self, url: &str, response: &CfnResponse) -> Result<(), RespondError>;
}

/// The real responder over reqwest (rustls).
#[derive(Debug, Clone)]
pub struct HttpResponder {
    client: reqwest::Client,
}

impl HttpResponder {
    pub fn new() -> Result<Self, RespondError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .map_err(|e| RespondError::Http(e.to_string()))?;
        Ok(HttpResponder { client })
    }
}

#[async_trait]
impl Responder for HttpResponder {
    async fn respond(&self, url: &str, response: &CfnResponse) -> Result<(), RespondError> {
        let body = serde_json::to_vec(response)?;
        // The URL is signed without a content type; CloudFormation's own helpers send an empty one.
        let res = self
            .client
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, "")
            .body(body)
            .send()
            .await
            .map_err(|e| RespondError::Http(e.without_url().to_string()))?;
        let status = res.status();
        if status.is_success() {
            return Ok(());
        }
        let text = res.text().await.unwrap_or_default();
        Err(RespondError::Status {
            status: status.as_u16(),
            body: text.chars().take(512).collect(),
        })
    }
}
