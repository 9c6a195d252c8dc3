//! Data keys (KMS): the per-message AES key SES wraps under a KMS key, unwrapped again with the
//! encryption context it was wrapped under.

use super::{ErrorKind, PortError};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// KMS's encryption context: name/value pairs bound to a wrapped key. Ordered, so two equal
/// contexts always serialise the same way.
pub type EncryptionContext = BTreeMap<String, String>;

/// A fresh data key: the plaintext to encrypt with, and the same key wrapped by KMS.
#[derive(Clone, PartialEq, Eq)]
pub struct DataKey {
    pub plaintext: Vec<u8>,
    pub wrapped: Vec<u8>,
}

impl std::fmt::Debug for DataKey {
    // A data key must not reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey")
            .field("wrapped_len", &self.wrapped.len())
            .finish_non_exhaustive()
    }
}

#[async_trait]
pub trait DataKeys: Send + Sync {
    /// Unwraps `wrapped` (KMS `Decrypt`). `key_id`, when given, is the only key KMS may use:
    /// a key wrapped under any other is refused. A context other than the one the key was
    /// wrapped with is refused too (`Permanent` or `AccessDenied`).
    async fn decrypt(
        &self,
        key_id: Option<&str>,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>, PortError>;

    /// A new 256-bit data key wrapped under `key_id` (KMS `GenerateDataKey`), as SES makes one
    /// per message.
    async fn generate(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<DataKey, PortError>;
}

/// Data keys wrapped locally, for the emulator: AES-256-GCM under a key derived from the key
/// ARN, with the encryption context as associated data, so a wrong key or a wrong context is
/// refused as KMS refuses it. It protects nothing (anyone with the ARN can unwrap); it only
/// makes the local path decrypt what it reads the way the functions do in AWS.
#[derive(Debug, Clone, Default)]
pub struct LocalDataKeys;

const LOCAL_NONCE_LEN: usize = 12;

impl LocalDataKeys {
    fn cipher(key_id: &str) -> Aes256Gcm {
        let secret = Sha256::new()
            .chain_update(b"mailroom local data key wrapping\0")
            .chain_update(key_id.as_bytes())
            .finalize();
        // A SHA-256 digest is exactly an AES-256 key: no length to check.
        let key: [u8; 32] = secret.into();
        Aes256Gcm::new(&key.into())
    }

    fn aad(key_id: &str, context: &EncryptionContext) -> Vec<u8> {
        // The key id travels in the wrapped blob the way KMS's ciphertext names its key.
        serde_json::to_vec(&(key_id, context)).unwrap_or_default()
    }
}

#[async_trait]
impl DataKeys for LocalDataKeys {
    async fn decrypt(
        &self,
        key_id: Option<&str>,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<Vec<u8>, PortError> {
        let refused = |why: &str| PortError::new(ErrorKind::Permanent, "kms:Decrypt", why);
        let (len, rest) = wrapped
            .split_first()
            .ok_or_else(|| refused("InvalidCiphertextException: empty ciphertext"))?;
        let len = usize::from(*len);
        if rest.len() < len + LOCAL_NONCE_LEN {
            return Err(refused("InvalidCiphertextException: truncated ciphertext"));
        }
        let (id, rest) = rest.split_at(len);
        let id = std::str::from_utf8(id)
            .map_err(|_| refused("InvalidCiphertextException: key id is not UTF-8"))?;
        if key_id.is_some_and(|wanted| wanted != id) {
            return Err(refused(
                "IncorrectKeyException: the data key was wrapped under another key",
            ));
        }
        let (nonce, sealed) = rest.split_at(LOCAL_NONCE_LEN);
        Self::cipher(id)
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &Self::aad(id, context),
                },
            )
            .map_err(|_| {
                refused("InvalidCiphertextException: wrong encryption context or ciphertext")
            })
    }

    async fn generate(
        &self,
        key_id: &str,
        context: &EncryptionContext,
    ) -> Result<DataKey, PortError> {
        let id = key_id.as_bytes();
        let id_len = u8::try_from(id.len()).map_err(|_| {
            PortError::new(
                ErrorKind::Permanent,
                "kms:GenerateDataKey",
                "key id too long",
            )
        })?;
        let plaintext: [u8; 32] = rand::random();
        let nonce: [u8; LOCAL_NONCE_LEN] = rand::random();
        let sealed = Self::cipher(key_id)
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: &Self::aad(key_id, context),
                },
            )
            .map_err(|_| {
                PortError::new(
                    ErrorKind::Permanent,
                    "kms:GenerateDataKey",
                    "wrapping failed",
                )
            })?;
        let mut wrapped = Vec::with_capacity(1 + id.len() + nonce.len() + sealed.len());
        wrapped.push(id_len);
        wrapped.extend_from_slice(id);
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&sealed);
        Ok(DataKey {
            plaintext: plaintext.to_vec(),
            wrapped,
        })
    }
}
