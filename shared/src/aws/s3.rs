//! [`ObjectStore`] over Amazon S3.

use super::classify;
use crate::envelope::UNENCRYPTED_LENGTH;
use crate::ports::{ErrorKind, Object, ObjectMeta, ObjectStore, PortError, PutOutcome};
use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use std::time::Duration;

/// The longest a presigned URL is trusted to work when it is signed with temporary credentials
/// whose expiry the SDK does not know (Lambda hands its role's credentials over in environment
/// variables, without one). See docs/webhooks.md, "Presigned URLs".
pub const UNKNOWN_EXPIRY_LIFETIME: Duration = Duration::from_secs(3600);

/// Credentials are taken to expire this much before they say, so a URL signed just before a
/// refresh is not promised to the last second.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(300);

/// How long a URL signed with credentials expiring at `expiry` (`None`: unknown) works when
/// `wanted` was asked for; `temporary` says whether the credentials carry a session token.
pub fn presign_lifetime_for(
    wanted: Duration,
    expiry: Option<std::time::SystemTime>,
    temporary: bool,
    now: std::time::SystemTime,
) -> Duration {
    let cap = match expiry {
        Some(at) => at
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
            .saturating_sub(EXPIRY_MARGIN),
        None if temporary => UNKNOWN_EXPIRY_LIFETIME,
        None => wanted,
    };
    // A link must last at least a second to be signed at all; one that short tells the receiver
    // to fetch at once or use `raw.bucket`/`raw.key`.
    wanted.min(cap).max(Duration::from_secs(1))
}

#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    /// The credentials the client signs with, to know how long a presigned URL can work (the
    /// client itself no longer tells).
    credentials: Option<SharedCredentialsProvider>,
    /// Writes are SSE-KMS under this key (with an S3 bucket key) instead of the bucket default.
    sse_kms_key: Option<String>,
}

impl S3Store {
    /// A store over `client`; presigned URLs are then trusted for as long as asked, unless
    /// [`S3Store::with_credentials`] names what the client signs with.
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Store {
            client,
            credentials: None,
            sse_kms_key: None,
        }
    }

    /// Every object this store writes is encrypted by S3 under `key` (SSE-KMS).
    pub fn with_sse_kms(mut self, key: Option<String>) -> Self {
        self.sse_kms_key = key;
        self
    }

    /// The credentials `client` signs with.
    pub fn with_credentials(mut self, credentials: Option<SharedCredentialsProvider>) -> Self {
        self.credentials = credentials;
        self
    }

    /// A client from the shared config; path-style addressing when pointed at a custom endpoint.
    pub fn from_conf(config: &aws_config::SdkConfig) -> Self {
        let conf = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(super::custom_endpoint())
            .build();
        S3Store::new(aws_sdk_s3::Client::from_conf(conf))
            .with_credentials(config.credentials_provider())
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, PortError> {
        Ok(self.get_object(bucket, key).await?.body)
    }

    async fn get_object(&self, bucket: &str, key: &str) -> Result<Object, PortError> {
        let mut out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify("s3:GetObject", &e))?;
        let metadata = out.metadata.take().unwrap_or_default();
        let body = out.body.collect().await.map_err(|e| {
            PortError::new(
                ErrorKind::Transient,
                "s3:GetObject",
                format!("reading body: {e}"),
            )
        })?;
        Ok(Object {
            body: body.into_bytes(),
            metadata,
        })
    }

    async fn size(&self, bucket: &str, key: &str) -> Result<u64, PortError> {
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify("s3:HeadObject", &e))?;
        // An encrypted message is its ciphertext plus a 16-byte tag; the limit is on the mail.
        let plaintext = out
            .metadata()
            .and_then(|m| m.get(UNENCRYPTED_LENGTH))
            .and_then(|v| v.trim().parse::<u64>().ok());
        Ok(plaintext.unwrap_or_else(|| out.content_length().unwrap_or(0).max(0) as u64))
    }

    async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        meta: &ObjectMeta,
    ) -> Result<PutOutcome, PortError> {
        let mut req = self
            .client
            .put_object()
            .bucket(bucket)
            .key(key)
            .if_none_match("*")
            .content_type(&meta.content_type)
            .body(ByteStream::from(body));
        if let Some(d) = &meta.content_disposition {
            req = req.content_disposition(d);
        }
        if !meta.metadata.is_empty() {
            req = req.set_metadata(Some(meta.metadata.clone()));
        }
        if let Some(key) = &self.sse_kms_key {
            req = req
                .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::AwsKms)
                .ssekms_key_id(key)
                .bucket_key_enabled(true);
        }
        match req.send().await {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) => {
                let err = classify("s3:PutObject", &e);
                // 412: something is already there. A 409 ConditionalRequestConflict (another
                // writer of the key in flight) is `Transient`: that writer may still fail.
                if err.kind == ErrorKind::AlreadyExists {
                    Ok(PutOutcome::AlreadyExists)
                } else {
                    Err(err)
                }
            }
        }
    }

    async fn presign_lifetime(&self, wanted: Duration) -> Duration {
        let Some(provider) = &self.credentials else {
            return wanted;
        };
        match provider.provide_credentials().await {
            Ok(creds) => presign_lifetime_for(
                wanted,
                creds.expiry(),
                creds.session_token().is_some(),
                std::time::SystemTime::now(),
            ),
            // Signing will fail the same way and say why.
            Err(_) => wanted,
        }
    }

    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: Duration,
    ) -> Result<String, PortError> {
        let cfg = PresigningConfig::expires_in(expires_in).map_err(|e| {
            PortError::new(ErrorKind::Permanent, "s3:PresignGetObject", e.to_string())
        })?;
        let req = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .presigned(cfg)
            .await
            .map_err(|e| classify("s3:PresignGetObject", &e))?;
        Ok(req.uri().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn presigned_links_last_no_longer_than_their_credentials() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let week = Duration::from_secs(7 * 86400);
        let hours = |h: u64| Duration::from_secs(h * 3600);
        // Long-term keys: what was asked.
        assert_eq!(presign_lifetime_for(week, None, false, now), week);
        // Temporary with a known expiry: until then, less the margin.
        assert_eq!(
            presign_lifetime_for(week, Some(now + hours(6)), true, now),
            hours(6) - EXPIRY_MARGIN
        );
        assert_eq!(
            presign_lifetime_for(hours(1), Some(now + hours(6)), true, now),
            hours(1)
        );
        // Temporary, expiry unknown: the conservative cap.
        assert_eq!(
            presign_lifetime_for(week, None, true, now),
            UNKNOWN_EXPIRY_LIFETIME
        );
        // Expired or about to: the shortest link that can be signed.
        assert_eq!(
            presign_lifetime_for(week, Some(now), true, now),
            Duration::from_secs(1)
        );
    }
}
