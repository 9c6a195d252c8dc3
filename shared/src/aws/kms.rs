//! [`DataKeys`] over AWS KMS.

use super::classify;
use crate::ports::{DataKey, DataKeys, EncryptionContext, ErrorKind, PortError};
use async_trait::async_trait;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct KmsDataKeys {
    client: aws_sdk_kms::Client,
}

fn context_map(context: &EncryptionContext) -> HashMap<String, String> {
    context
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

impl KmsDataKeys {
    pub fn new(client: aws_sdk_kms::Client) -> Self {
        KmsDataKeys { client }
    }

    pub fn from_conf(config: &aws_config::SdkConfig) -> Self {
        KmsDataKeys::new(aws_sdk_kms::Client::new(config))
    }
}

#[async_trait]
impl DataKeys for KmsDataKeys {
    async fn decrypt(
        &self,
        key_id: Option<&str>,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>, PortError> {
        let out = self
            .client
            .decrypt()
            .set_key_id(key_id.map(str::to_string))
            .ciphertext_blob(Blob::new(wrapped))
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(|e| classify("kms:Decrypt", &e))?;
        out.plaintext
            .map(Blob::into_inner)
            .ok_or_else(|| PortError::new(ErrorKind::Transient, "kms:Decrypt", "no plaintext"))
    }

    async fn generate(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<DataKey, PortError> {
        let out = self
            .client
            .generate_data_key()
            .key_id(key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context_map(context)))
            .send()
            .await
            .map_err(|e| classify("kms:GenerateDataKey", &e))?;
        match (out.plaintext, out.ciphertext_blob) {
            (Some(plaintext), Some(wrapped)) => Ok(DataKey {
                plaintext: plaintext.into_inner(),
                wrapped: wrapped.into_inner(),
            }),
            _ => Err(PortError::new(
                ErrorKind::Transient,
                "kms:GenerateDataKey",
                "no data key in the answer",
            )),
        }
    }
}
