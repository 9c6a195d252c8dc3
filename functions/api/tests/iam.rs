//! The api function with exactly the IAM policy template.yaml gives it, on a moto server that
//! enforces IAM: the signing secret read by ARN, the raw mail read, a large attachment uploaded
//! for its presigned URL, a failed delivery queued for retry, the retry received from the queue
//! as Lambda's poller receives it (with the function's role) and, its endpoint gone,
//! dead-lettered.
//! Each grant of the policy must be needed by that, and the whole policy must be enough. With
//! `KmsKeyArn` set the raw mail is encrypted as SES encrypts it, and without `kms:Decrypt` the job
//! is dead-lettered unsent.

use mailroom::aws::SqsQueue;
use mailroom::ports::Queue;
use mailroom::webhook::http::ReqwestSender;
use mailroom::webhook::signing::Secret;
use mailroom_api::{Config, Deps, SqsEvent, SqsRecord, handle, handle_sqs};
use mailroom_testkit::http::{HttpServer, Reply};
use mailroom_testkit::iam::{self, World};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::Duration;

const MESSAGE_ID: &str = "k2f9e1m0q8o3v7b4r5t6y1u2i3o4p5a6s7d8f9g0";

/// A webhook endpoint answering every request with the status it currently holds, and the
/// number of requests it has had.
async fn endpoint() -> (String, Arc<AtomicU16>, Arc<AtomicUsize>) {
    let status = Arc::new(AtomicU16::new(200));
    let hits = Arc::new(AtomicUsize::new(0));
    let (answer, count) = (status.clone(), hits.clone());
    let server = HttpServer::answering_with(move |_| {
        count.fetch_add(1, Ordering::SeqCst);
        Reply::status(answer.load(Ordering::SeqCst))
    })
    .await;
    (server.url("/hook"), status, hits)
}

/// One batch from `queue`, received as Lambda's SQS poller receives it, with `conf`'s
/// credentials: the queue's attributes, then its messages.
async fn poll(conf: &aws_config::SdkConfig, queue: &str) -> Result<SqsEvent, String> {
    aws_sdk_sqs::Client::new(conf)
        .get_queue_attributes()
        .queue_url(queue)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .map_err(|e| format!("the poller's GetQueueAttributes: {e:?}"))?;
    let got = SqsQueue::from_conf(conf)
        .receive(queue, 5, Duration::ZERO)
        .await
        .map_err(|e| format!("the poller's ReceiveMessage: {e}"))?;
    Ok(SqsEvent {
        records: got.iter().map(SqsRecord::from).collect(),
    })
}

struct Setup {
    bucket: String,
    retry: (String, String),
    dlq: (String, String),
    secret_arn: String,
    url: String,
    status: Arc<AtomicU16>,
    hits: Arc<AtomicUsize>,
    /// `KmsKeyArn`, under which the raw mail is encrypted.
    kms_key: Option<String>,
}

impl Setup {
    async fn new() -> Setup {
        Setup::with(false).await
    }

    async fn with(encrypted: bool) -> Setup {
        let srv = iam::server();
        let admin = srv.admin();
        let raw = mailroom_testkit::event_file("mail/attachments.eml");
        let (bucket, kms_key) = if encrypted {
            let (bucket, key) = srv.bucket_with_sealed("api-iam-kms", MESSAGE_ID, raw).await;
            (bucket, Some(key))
        } else {
            let bucket = srv
                .bucket_with("api-iam", &format!("raw/{MESSAGE_ID}"), raw)
                .await;
            (bucket, None)
        };
        let secret_arn = aws_sdk_secretsmanager::Client::new(&admin)
            .create_secret()
            .name(mailroom_testkit::unique("hook"))
            .secret_string(Secret::generate())
            .send()
            .await
            .expect("create secret")
            .arn
            .expect("secret arn");
        let (url, status, hits) = endpoint().await;
        Setup {
            bucket,
            retry: srv.queue("retry").await,
            dlq: srv.queue("dlq").await,
            secret_arn,
            url,
            status,
            hits,
            kms_key,
        }
    }

    fn world(&self) -> World {
        self.world_without_key().kms_key(self.kms_key.as_deref())
    }

    /// The template's world with `KmsKeyArn` left empty: its policy grants nothing on KMS.
    fn world_without_key(&self) -> World {
        World::new()
            .bucket("RawMailBucket", &self.bucket)
            .queue("WebhookRetryQueue", &self.retry.0, &self.retry.1)
            .queue("WebhookDeadLetterQueue", &self.dlq.0, &self.dlq.1)
            .param("WebhookSecretArn", &self.secret_arn)
    }

    /// The template's environment for the api function, in this world. Every attachment is
    /// above the inline limit, so each is uploaded and linked.
    fn config(&self) -> Config {
        let env: HashMap<String, String> = [
            ("MAILROOM_RAW_BUCKET", self.bucket.as_str()),
            ("MAILROOM_RAW_PREFIX", "raw/"),
            ("MAILROOM_STORE_BUCKET", self.bucket.as_str()),
            ("MAILROOM_STORE_PREFIX", "messages/"),
            ("MAILROOM_WEBHOOK_URL", self.url.as_str()),
            ("MAILROOM_WEBHOOK_SECRET_ARN", self.secret_arn.as_str()),
            ("MAILROOM_RETRY_QUEUE_URL", self.retry.0.as_str()),
            ("MAILROOM_DLQ_URL", self.dlq.0.as_str()),
            ("MAILROOM_INLINE_ATTACHMENT_MAX_BYTES", "1"),
            ("MAILROOM_WEBHOOK_TIMEOUT_MS", "2000"),
            // Retries due at once, so the queued job can be received and counted.
            ("MAILROOM_RETRY_SCHEDULE", "0,0,0"),
            ("MAILROOM_RETRY_JITTER", "0"),
            (
                "MAILROOM_KMS_KEY_ARN",
                self.kms_key.as_deref().unwrap_or(""),
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Config::from_env(&env).expect("config")
    }

    /// Takes every message off a queue, as the administrator.
    async fn drain(&self, url: &str) -> Result<usize, String> {
        let sqs = aws_sdk_sqs::Client::new(&iam::server().admin());
        let mut n = 0;
        loop {
            let got = sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .send()
                .await
                .map_err(|e| format!("receive: {e:?}"))?;
            if got.messages().is_empty() {
                return Ok(n);
            }
            for m in got.messages() {
                n += 1;
                sqs.delete_message()
                    .queue_url(url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .map_err(|e| format!("delete: {e:?}"))?;
            }
        }
    }

    /// What the api does with `conf`'s credentials, checked as the administrator: a delivery
    /// the endpoint fails is queued for retry, one it calls gone is dead-lettered, and the
    /// attachments were uploaded for their links.
    async fn scenario(&self, conf: aws_config::SdkConfig) -> Result<(), String> {
        // What an earlier run left behind must not count for this one.
        self.drain(&self.retry.0).await?;
        self.drain(&self.dlq.0).await?;
        self.clear_messages().await?;
        let config = mailroom_api::secrets::resolve(self.config(), &conf)
            .await
            .map_err(|e| e.to_string())?;
        let store = iam::mail_store(&conf, self.kms_key.as_deref());
        let queue = SqsQueue::from_conf(&conf);
        let http = ReqwestSender::new().map_err(|e| e.to_string())?;
        let deps = || Deps {
            store: &store,
            queue: &queue,
            http: &http,
        };
        let event: Value =
            serde_json::from_slice(&mailroom_testkit::event_file("lambda/api-event.json"))
                .map_err(|e| e.to_string())?;

        self.status.store(500, Ordering::SeqCst);
        let report = handle(event, &config, deps())
            .await
            .map_err(|e| e.to_string())?;
        if report["steps"][0]["status"] != "scheduled" {
            return Err(format!("a 500 was not scheduled for retry: {report}"));
        }

        // The retry, as Lambda's poller runs it: with the function's role, which is all the
        // access the poller has (the template grants it the retry queue, nothing wider).
        self.status.store(410, Ordering::SeqCst);
        let batch = poll(&conf, &self.retry.0).await?;
        if batch.records.len() != 1 {
            return Err(format!("no retry job queued: {report}"));
        }
        let response = handle_sqs(&batch, &config, deps())
            .await
            .map_err(|e| e.to_string())?;
        for record in &batch.records {
            if !response
                .batch_item_failures
                .iter()
                .any(|f| f.item_identifier == record.message_id)
            {
                queue
                    .delete(&self.retry.0, &record.receipt_handle)
                    .await
                    .map_err(|e| format!("the poller's DeleteMessage: {e}"))?;
            }
        }
        if self.drain(&self.dlq.0).await? != 1 {
            return Err(format!(
                "a 410 on the retry was not dead-lettered: {response:?}"
            ));
        }

        // With encrypted mail, the decrypted copy the raw URL links is uploaded too.
        let expected = 3 + usize::from(self.kms_key.is_some());
        let uploaded = self.uploaded().await?;
        if uploaded.len() != expected
            || self.kms_key.is_some() != uploaded.iter().any(|k| k.ends_with("/raw.eml"))
        {
            return Err(format!(
                "expected the 3 attachments under messages/ (and raw.eml for encrypted mail), \
                 found {uploaded:?}"
            ));
        }
        Ok(())
    }

    /// One delivery of the sample event, with `conf`'s credentials and the endpoint answering
    /// 200: the report, after the queues were checked (dead letters, retries) and emptied.
    async fn deliver_as(&self, conf: &aws_config::SdkConfig) -> (Value, usize, usize) {
        let config = mailroom_api::secrets::resolve(self.config(), conf)
            .await
            .expect("secret");
        let store = iam::mail_store(conf, self.kms_key.as_deref());
        let queue = SqsQueue::from_conf(conf);
        let http = ReqwestSender::new().expect("client");
        let event: Value =
            serde_json::from_slice(&mailroom_testkit::event_file("lambda/api-event.json"))
                .expect("event");
        let report = handle(
            event,
            &config,
            Deps {
                store: &store,
                queue: &queue,
                http: &http,
            },
        )
        .await
        .expect("handled");
        let dead = self.drain(&self.dlq.0).await.expect("dlq");
        let retries = self.drain(&self.retry.0).await.expect("retry");
        (report, dead, retries)
    }

    /// The keys under messages/, as the administrator sees them.
    async fn uploaded(&self) -> Result<Vec<String>, String> {
        let listed = iam::s3(&iam::server().admin())
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix("messages/")
            .send()
            .await
            .map_err(|e| format!("list: {e:?}"))?;
        Ok(listed
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect())
    }

    /// Removes every uploaded attachment, as the administrator.
    async fn clear_messages(&self) -> Result<(), String> {
        let s3 = iam::s3(&iam::server().admin());
        for key in self.uploaded().await? {
            s3.delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| format!("delete: {e:?}"))?;
        }
        Ok(())
    }
}

#[tokio::test]
async fn api_needs_exactly_its_template_policy() {
    needs_exactly_its_template_policy(false).await;
}

/// With `KmsKeyArn` set, the api reads encrypted mail, uploads the decrypted copy its raw URL
/// links, and queues and dead-letters with exactly its template policy, whose KMS grants name
/// exactly the configured key.
#[tokio::test]
async fn api_decrypts_with_exactly_its_template_policy() {
    needs_exactly_its_template_policy(true).await;
}

async fn needs_exactly_its_template_policy(encrypted: bool) {
    let s = Setup::with(encrypted).await;
    let report = iam::least_privilege("ApiFunction", &s.world(), |conf| s.scenario(conf)).await;
    let bucket = &s.bucket;
    report.assert_exercised_except_kms(
        s.kms_key.as_deref(),
        &[
            (
                "s3:ListBucket",
                &format!("arn:aws:s3:::{bucket}"),
                "lets a missing raw object read as 404 rather than 403; moto answers 404 either way",
            ),
            (
                "s3:GetObject",
                &format!("arn:aws:s3:::{bucket}/messages/*"),
                "used by whoever follows a presigned attachment URL; moto cannot check presigned GETs",
            ),
        ],
    );
    // moto checks neither resource: the template must name exactly the secret configured.
    assert_eq!(
        report.widened_resources("secretsmanager:GetSecretValue"),
        vec![s.secret_arn.clone()]
    );
}

#[tokio::test]
async fn access_denied_on_an_upload_dead_letters_at_once() {
    let s = Setup::new().await;
    let policy = iam::policy("ApiFunction", &s.world());
    let without_put = policy
        .principals
        .iter()
        .find(|p| {
            p.without
                .as_ref()
                .is_some_and(|g| g.action == "s3:PutObject")
        })
        .expect("the template lets the api upload attachments (s3:PutObject)");
    let (report, dead, retries) = s.deliver_as(&without_put.config()).await;
    let step = &report["steps"][0];
    assert_eq!(
        step["status"], "dead_lettered",
        "a denied upload will be denied on every retry: {report}"
    );
    let reason = step.to_string();
    assert!(
        reason.contains("AccessDenied") || reason.contains("access denied"),
        "{report}"
    );
    assert_eq!((dead, retries), (1, 0));
}

/// Encrypted mail and the template's policy without its KMS grants (what it grants with
/// `KmsKeyArn` empty; moto cannot take away one of the two kms:Decrypt grants and see the other
/// refuse): KMS's AccessDenied dead-letters the job at once, and the endpoint hears nothing.
#[tokio::test]
async fn without_kms_decrypt_encrypted_mail_is_dead_lettered_unsent() {
    let s = Setup::with(true).await;
    let policy = iam::policy("ApiFunction", &s.world_without_key());
    let full = policy.principals.first().expect("the full policy's user");
    assert!(
        policy.grants.iter().all(|g| !g.action.starts_with("kms:")),
        "{:?}",
        policy.grants
    );
    let (report, dead, retries) = s.deliver_as(&full.config()).await;
    let step = &report["steps"][0];
    assert_eq!(step["status"], "dead_lettered", "{report}");
    let reason = step.to_string();
    assert!(
        reason.contains("KMS")
            && (reason.contains("AccessDenied") || reason.contains("access denied")),
        "{report}"
    );
    eprintln!("without kms:Decrypt: {step}");
    assert_eq!(s.hits.load(Ordering::SeqCst), 0, "nothing was posted");
    assert_eq!((dead, retries), (1, 0));
    assert!(
        s.uploaded().await.expect("list").is_empty(),
        "nothing uploaded"
    );
}
