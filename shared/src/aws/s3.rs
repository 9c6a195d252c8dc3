//! [`ObjectStore`] over Amazon S3.

use super::classify;
use crate::ports::{ErrorKind, ObjectMeta, ObjectStore, PortError, PutOutcome};
use async_trait::async_trait;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
}

impl S3Store {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        S3Store { client }
    }

    /// A client from the shared config; path-style addressing when pointed at a custom endpoint.
    pub fn from_conf(config: &aws_config::SdkConfig) -> Self {
        let conf = aws_sdk_s3::config::Builder::from(config)
            .force_path_style(super::custom_endpoint())
            .build();
        S3Store::new(aws_sdk_s3::Client::from_conf(conf))
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, PortError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| classify("s3:GetObject", &e))?;
        let body = out.body.collect().await.map_err(|e| {
            PortError::new(
                ErrorKind::Transient,
                "s3:GetObject",
                format!("reading body: {e}"),
            )
        })?;
        Ok(body.into_bytes())
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
        Ok(out.content_length().unwrap_or(0).max(0) as u64)
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
        match req.send().await {
            Ok(_) => Ok(PutOutcome::Created),
            Err(e) => {
                let err = classify("s3:PutObject", &e);
                // 412: something is already there. 409 ConditionalRequestConflict: a concurrent
                // writer of the same key is in flight; either way the content is the same.
                if err.kind == ErrorKind::AlreadyExists
                    || err.message.contains("ConditionalRequestConflict")
                {
                    Ok(PutOutcome::AlreadyExists)
                } else {
                    Err(err)
                }
            }
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
