//! The set of ports handed to functions and rule actions, local or real AWS, and thin wrappers
//! that note every write so the trace can say where each action's outputs landed.

use crate::local::{
    LocalBouncer, LocalMailer, LocalObjectStore, LocalPublisher, LocalQueue, resource_name,
};
use crate::sink::{Routed, WebhookSink};
use async_trait::async_trait;
use bytes::Bytes;
use mailroom::ports::queue::{Queue, Received};
use mailroom::ports::{
    BounceRequest, Bouncer, DataKeys, LocalDataKeys, Object, ObjectMeta, ObjectStore, PortError,
    Publication, Publisher, PutOutcome, TransportError, WebhookRequest, WebhookResponse,
    WebhookSender,
};
use mailroom_forward::map::Parameters;
use mailroom_forward::metrics::Metrics;
use mailroom_forward::sender::{MailSender, OutgoingMail, SendError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
pub struct Ports {
    pub objects: Arc<dyn ObjectStore>,
    pub publisher: Arc<dyn Publisher>,
    pub bouncer: Arc<dyn Bouncer>,
    pub queue: Arc<dyn Queue>,
    pub http: Arc<dyn WebhookSender>,
    /// SES `SendEmail` (the forward function).
    pub mailer: Arc<dyn MailSender>,
    /// SSM parameters (a forward map kept in Parameter Store).
    pub parameters: Arc<dyn Parameters>,
    /// Counters a function emits (CloudWatch metrics in AWS).
    pub metrics: Arc<dyn Metrics>,
    /// KMS: the data keys the S3 action encrypts mail under when its `KmsKeyArn` is set, and
    /// the functions decrypt it with.
    pub data_keys: Arc<dyn DataKeys>,
    /// The local state folder, when the ports are the local ones (for naming output paths).
    pub state: Option<PathBuf>,
    /// The local SendBounce, which must be told about each received message.
    pub local_bouncer: Option<Arc<LocalBouncer>>,
    /// Where webhooks for reserved example hosts (or all, when forced) are delivered.
    pub sink: Arc<WebhookSink>,
}

impl Ports {
    /// Everything under `state`, except webhooks, which go to the configured URL for real
    /// unless `sink` takes them.
    pub fn local(state: &Path, sink: Arc<WebhookSink>) -> anyhow::Result<Ports> {
        let bouncer = Arc::new(LocalBouncer::new(state));
        Ok(Ports {
            objects: Arc::new(LocalObjectStore::new(state)),
            publisher: Arc::new(LocalPublisher::new(state)),
            bouncer: bouncer.clone(),
            local_bouncer: Some(bouncer),
            queue: Arc::new(LocalQueue::new(state)),
            http: routed_http(sink.clone())?,
            mailer: Arc::new(LocalMailer::new(state)),
            parameters: Arc::new(NoParameters),
            metrics: Arc::new(NoMetrics),
            data_keys: Arc::new(LocalDataKeys),
            state: Some(state.to_path_buf()),
            sink,
        })
    }

    /// The same ports, with every write noted in `log`.
    pub fn recording(&self, log: &Log) -> Ports {
        Ports {
            objects: Arc::new(Rec {
                inner: self.objects.clone(),
                log: log.clone(),
                state: self.state.clone(),
            }),
            publisher: Arc::new(Rec {
                inner: self.publisher.clone(),
                log: log.clone(),
                state: self.state.clone(),
            }),
            bouncer: Arc::new(Rec {
                inner: self.bouncer.clone(),
                log: log.clone(),
                state: self.state.clone(),
            }),
            queue: Arc::new(Rec {
                inner: self.queue.clone(),
                log: log.clone(),
                state: self.state.clone(),
            }),
            http: Arc::new(RecHttp {
                inner: self.http.clone(),
                log: log.clone(),
                sink: self.sink.clone(),
            }),
            mailer: Arc::new(Rec {
                inner: self.mailer.clone(),
                log: log.clone(),
                state: self.state.clone(),
            }),
            parameters: self.parameters.clone(),
            metrics: Arc::new(Rec {
                inner: self.metrics.clone(),
                log: log.clone(),
                state: self.state.clone(),
            }),
            data_keys: self.data_keys.clone(),
            state: self.state.clone(),
            local_bouncer: self.local_bouncer.clone(),
            sink: self.sink.clone(),
        }
    }
}

/// The real HTTP client, with the URLs the sink takes aimed at it.
pub fn routed_http(sink: Arc<WebhookSink>) -> anyhow::Result<Arc<dyn WebhookSender>> {
    let real = mailroom::webhook::http::ReqwestSender::new()
        .map_err(|e| anyhow::anyhow!("webhook HTTP client: {}", e.message))?;
    Ok(Arc::new(Routed {
        real: Arc::new(real),
        sink,
    }))
}

/// Where an action's writes went, in order.
#[derive(Debug, Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn push(&self, line: String) {
        if let Ok(mut v) = self.0.lock() {
            v.push(line);
        }
    }

    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default()
    }
}

struct Rec<T: ?Sized> {
    inner: Arc<T>,
    log: Log,
    state: Option<PathBuf>,
}

impl<T: ?Sized> Rec<T> {
    fn local(&self, parts: &[&str]) -> Option<String> {
        let mut p = self.state.clone()?;
        for part in parts {
            p.push(part);
        }
        Some(p.display().to_string())
    }
}

#[async_trait]
impl ObjectStore for Rec<dyn ObjectStore> {
    async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, PortError> {
        self.inner.get(bucket, key).await
    }

    async fn get_object(&self, bucket: &str, key: &str) -> Result<Object, PortError> {
        self.inner.get_object(bucket, key).await
    }

    async fn size(&self, bucket: &str, key: &str) -> Result<u64, PortError> {
        self.inner.size(bucket, key).await
    }

    async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
    ) -> Result<PutOutcome, PortError> {
        let out = self.inner.put_if_absent(bucket, key, body, meta).await?;
        let place = self
            .local(&["s3", bucket, key])
            .unwrap_or_else(|| format!("s3://{bucket}/{key}"));
        let note = match out {
            PutOutcome::Created => "",
            PutOutcome::AlreadyExists => " (already there)",
        };
        self.log.push(format!("S3 {place}{note}"));
        Ok(out)
    }

    async fn presign_lifetime(&self, wanted: Duration) -> Duration {
        self.inner.presign_lifetime(wanted).await
    }

    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, PortError> {
        self.inner.presign_get(bucket, key, expires_in).await
    }
}

#[async_trait]
impl Publisher for Rec<dyn Publisher> {
    async fn publish(&self, msg: &Publication) -> Result<String, PortError> {
        let id = self.inner.publish(msg).await?;
        let topic = resource_name(&msg.topic_arn);
        let place = self
            .local(&["sns", &format!("{topic}.jsonl")])
            .unwrap_or_else(|| msg.topic_arn.clone());
        self.log.push(format!("SNS {place} (message {id})"));
        Ok(id)
    }
}

#[async_trait]
impl Bouncer for Rec<dyn Bouncer> {
    async fn send_bounce(&self, req: &BounceRequest) -> Result<String, PortError> {
        let id = self.inner.send_bounce(req).await?;
        let to: Vec<&str> = req
            .recipients
            .iter()
            .map(|r| r.recipient.as_str())
            .collect();
        self.log.push(format!(
            "SendBounce from {} for {} → {id}",
            req.bounce_sender,
            to.join(", ")
        ));
        Ok(id)
    }
}

#[async_trait]
impl Queue for Rec<dyn Queue> {
    async fn send(
        &self,
        queue_url: &str,
        body: &str,
        delay: Duration,
    ) -> Result<String, PortError> {
        let id = self.inner.send(queue_url, body, delay).await?;
        let name = resource_name(queue_url);
        let place = self
            .local(&["sqs", name])
            .unwrap_or_else(|| queue_url.to_string());
        self.log.push(format!(
            "SQS {place} (message {id}, visible in {}s)",
            delay.as_secs()
        ));
        Ok(id)
    }

    async fn receive(
        &self,
        queue_url: &str,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<Received>, PortError> {
        self.inner.receive(queue_url, max, wait).await
    }

    async fn delete(&self, queue_url: &str, receipt_handle: &str) -> Result<(), PortError> {
        self.inner.delete(queue_url, receipt_handle).await
    }
}

#[async_trait]
impl MailSender for Rec<dyn MailSender> {
    async fn send(&self, mail: &OutgoingMail) -> Result<String, SendError> {
        let out = self.inner.send(mail).await;
        match &out {
            Ok(place) => self.log.push(format!("deliver {} → {place}", mail.to)),
            Err(e) => self.log.push(format!("deliver {} → refused: {e}", mail.to)),
        }
        out
    }
}

impl Metrics for Rec<dyn Metrics> {
    fn count(&self, name: &'static str, value: u64) {
        self.inner.count(name, value);
        self.log.push(format!("metric {name} +{value}"));
    }
}

/// Without AWS there is no Parameter Store: a map kept there needs `--aws`.
pub struct NoParameters;

#[async_trait]
impl Parameters for NoParameters {
    async fn get(&self, arn: &str) -> Result<String, PortError> {
        Err(PortError::new(
            mailroom::ports::ErrorKind::Permanent,
            "ssm:GetParameter",
            format!(
                "{arn}: SSM parameters are read only with --aws; locally, set the map itself (ForwardMap)"
            ),
        ))
    }
}

/// Counts are shown in the trace (by the recording wrapper) and go nowhere else.
pub struct NoMetrics;

impl Metrics for NoMetrics {
    fn count(&self, _name: &'static str, _value: u64) {}
}

struct RecHttp {
    inner: Arc<dyn WebhookSender>,
    log: Log,
    sink: Arc<WebhookSink>,
}

#[async_trait]
impl WebhookSender for RecHttp {
    async fn post(&self, req: &WebhookRequest) -> Result<WebhookResponse, TransportError> {
        let sent_at = time::OffsetDateTime::now_utc();
        let started = std::time::Instant::now();
        let out = self.inner.post(req).await;
        let latency = started.elapsed();
        // The latency stays out of the trace's line, which reads the same on every run.
        self.sink.note_attempt(req, &out, sent_at, latency);
        let via = self
            .sink
            .reason(&req.url)
            .map(|why| format!(" ({why}: delivered to the local sink)"))
            .unwrap_or_default();
        match &out {
            Ok(r) => self
                .log
                .push(format!("POST {}{via} → HTTP {}", req.url, r.status)),
            Err(e) => self
                .log
                .push(format!("POST {}{via} → failed: {}", req.url, e.message)),
        }
        let id = req
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(mailroom::webhook::signing::HEADER_ID))
            .map(|(_, v)| v.as_str());
        if !via.is_empty()
            && out.is_ok()
            && let Some(r) = id.and_then(|id| self.sink.record_of(id))
        {
            let check = match &r.signature_error {
                None => "signature valid".to_string(),
                Some(e) => format!("signature INVALID: {e}"),
            };
            self.log
                .push(format!("webhook {} ({check})", r.file.display()));
        }
        out
    }
}
