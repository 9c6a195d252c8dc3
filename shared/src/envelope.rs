//! Mail that SES stored with "Encrypt message": the S3 encryption client's envelope format.
//!
//! SES writes the message AES-encrypted under a fresh data key and puts the data key, wrapped by
//! KMS, in the object's metadata (docs/ses.md §3.3, "Encrypt message"). [`Envelope`] reads that
//! metadata into a typed value; [`Envelope::open`] decrypts the body in place, so a 40 MB message
//! is never held twice; [`read_mail`] is what every function that reads raw mail calls.
//!
//! Nothing here hands out a byte of an object whose authentication failed: a tampered object,
//! a wrong key or a wrong context is an [`EnvelopeError`], and the raw object stays in S3.

use crate::ports::{DataKeys, EncryptionContext, Object, ObjectStore, PortError};
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use bytes::Bytes;
use cbc::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
use std::collections::HashMap;

/// The metadata names (without S3's `x-amz-meta-` prefix, as the SDKs hand them over).
pub const KEY_V2: &str = "x-amz-key-v2";
pub const IV: &str = "x-amz-iv";
pub const CEK_ALG: &str = "x-amz-cek-alg";
pub const WRAP_ALG: &str = "x-amz-wrap-alg";
pub const MATDESC: &str = "x-amz-matdesc";
pub const TAG_LEN: &str = "x-amz-tag-len";
pub const UNENCRYPTED_LENGTH: &str = "x-amz-unencrypted-content-length";
/// The v1 format's wrapped key; named so that such an object is refused by name.
pub const KEY_V1: &str = "x-amz-key";

/// The encryption context key `kms+context` adds to the material description.
pub const CONTEXT_CEK_ALG: &str = "aws:x-amz-cek-alg";
/// The key the material description names under the `kms` wrapping.
pub const MATDESC_KEY_ID: &str = "kms_cmk_id";

const GCM_TAG_BYTES: usize = 16;
const GCM_IV_BYTES: usize = 12;
const CBC_IV_BYTES: usize = 16;
const DATA_KEY_BYTES: usize = 32;

/// How the body is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentAlg {
    /// `AES/GCM/NoPadding`: what SES writes. The 16-byte tag follows the ciphertext.
    AesGcm,
    /// `AES/CBC/PKCS5Padding`: objects from the format's first version. Unauthenticated: only a
    /// padding error can show tampering, so most tampering goes unseen.
    AesCbc,
}

impl ContentAlg {
    pub fn name(self) -> &'static str {
        match self {
            ContentAlg::AesGcm => "AES/GCM/NoPadding",
            ContentAlg::AesCbc => "AES/CBC/PKCS5Padding",
        }
    }
}

/// How the data key is wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapAlg {
    /// `kms`: the encryption context is the material description.
    Kms,
    /// `kms+context`: the material description plus `aws:x-amz-cek-alg`, which must name the
    /// content algorithm (so the algorithm cannot be swapped without KMS noticing).
    KmsContext,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("encrypted object: metadata `{0}` is missing")]
    Missing(&'static str),
    #[error("encrypted object: metadata `{field}` is malformed: {reason}")]
    Malformed { field: &'static str, reason: String },
    #[error("encrypted object: `{field}` = {value:?} is not supported")]
    Unsupported { field: &'static str, value: String },
    #[error("encrypted object: no KMS key is configured to decrypt it (set KmsKeyArn)")]
    NoKeys,
    #[error("encrypted object: KMS did not unwrap its data key: {0}")]
    Kms(PortError),
    #[error(
        "encrypted object: authentication failed ({0}); the object was altered, or it was \
         encrypted under another key or context"
    )]
    Authentication(&'static str),
}

impl EnvelopeError {
    /// Only a KMS call that may succeed later is worth retrying; a refused key or a tampered
    /// object is refused the same way every time.
    pub fn is_retryable(&self) -> bool {
        matches!(self, EnvelopeError::Kms(e) if e.is_retryable())
    }
}

/// The encryption metadata of one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub wrapped_key: Vec<u8>,
    pub iv: Vec<u8>,
    pub content: ContentAlg,
    pub wrap: WrapAlg,
    /// `x-amz-matdesc`: for SES, the `aws:ses:*` names and `kms_cmk_id`.
    pub material: EncryptionContext,
    /// `x-amz-unencrypted-content-length`, when present.
    pub plaintext_len: Option<u64>,
}

fn field<'a>(meta: &'a HashMap<String, String>, name: &'static str) -> Option<&'a str> {
    meta.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

fn required<'a>(
    meta: &'a HashMap<String, String>,
    name: &'static str,
) -> Result<&'a str, EnvelopeError> {
    field(meta, name).ok_or(EnvelopeError::Missing(name))
}

fn base64(meta: &HashMap<String, String>, name: &'static str) -> Result<Vec<u8>, EnvelopeError> {
    B64.decode(required(meta, name)?)
        .map_err(|e| EnvelopeError::Malformed {
            field: name,
            reason: e.to_string(),
        })
}

impl Envelope {
    /// The envelope in an object's user metadata; `None` when the object is not encrypted.
    pub fn from_metadata(
        meta: &HashMap<String, String>,
    ) -> Result<Option<Envelope>, EnvelopeError> {
        if field(meta, KEY_V2).is_none() {
            return match field(meta, KEY_V1) {
                Some(_) => Err(EnvelopeError::Unsupported {
                    field: KEY_V1,
                    value: "the v1 envelope (AES/CBC with x-amz-key)".into(),
                }),
                None => Ok(None),
            };
        }
        let content = match required(meta, CEK_ALG)? {
            "AES/GCM/NoPadding" => ContentAlg::AesGcm,
            "AES/CBC/PKCS5Padding" => ContentAlg::AesCbc,
            other => {
                return Err(EnvelopeError::Unsupported {
                    field: CEK_ALG,
                    value: other.into(),
                });
            }
        };
        let wrap = match required(meta, WRAP_ALG)? {
            "kms" => WrapAlg::Kms,
            "kms+context" => WrapAlg::KmsContext,
            other => {
                return Err(EnvelopeError::Unsupported {
                    field: WRAP_ALG,
                    value: other.into(),
                });
            }
        };
        let material: EncryptionContext = match field(meta, MATDESC) {
            None | Some("") => EncryptionContext::new(),
            Some(json) => serde_json::from_str(json).map_err(|e| EnvelopeError::Malformed {
                field: MATDESC,
                reason: format!("not a JSON object of strings: {e}"),
            })?,
        };
        if content == ContentAlg::AesGcm
            && let Some(bits) = field(meta, TAG_LEN)
            && bits != "128"
        {
            return Err(EnvelopeError::Unsupported {
                field: TAG_LEN,
                value: bits.into(),
            });
        }
        let iv = base64(meta, IV)?;
        let iv_len = match content {
            ContentAlg::AesGcm => GCM_IV_BYTES,
            ContentAlg::AesCbc => CBC_IV_BYTES,
        };
        if iv.len() != iv_len {
            return Err(EnvelopeError::Malformed {
                field: IV,
                reason: format!("{} bytes, {} wants {iv_len}", iv.len(), content.name()),
            });
        }
        let plaintext_len = field(meta, UNENCRYPTED_LENGTH)
            .map(|v| {
                v.parse::<u64>().map_err(|e| EnvelopeError::Malformed {
                    field: UNENCRYPTED_LENGTH,
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        Ok(Some(Envelope {
            wrapped_key: base64(meta, KEY_V2)?,
            iv,
            content,
            wrap,
            material,
            plaintext_len,
        }))
    }

    /// The encryption contexts to try with KMS `Decrypt`, in order.
    ///
    /// `kms+context`: exactly the material description, whose `aws:x-amz-cek-alg` must name the
    /// content algorithm. `kms`: the material description as stored; SES's also names
    /// `kms_cmk_id`, and whether SES wrapped with that name in the context is not documented,
    /// so without it is tried second rather than leaving such mail unreadable.
    pub fn contexts(&self) -> Result<Vec<EncryptionContext>, EnvelopeError> {
        match self.wrap {
            WrapAlg::KmsContext => match self.material.get(CONTEXT_CEK_ALG) {
                Some(alg) if alg == self.content.name() => Ok(vec![self.material.clone()]),
                Some(alg) => Err(EnvelopeError::Authentication(if alg.is_empty() {
                    "empty aws:x-amz-cek-alg"
                } else {
                    "aws:x-amz-cek-alg names another content algorithm"
                })),
                None => Err(EnvelopeError::Missing(CONTEXT_CEK_ALG)),
            },
            WrapAlg::Kms => {
                let mut contexts = vec![self.material.clone()];
                if self.material.contains_key(MATDESC_KEY_ID) {
                    let mut without = self.material.clone();
                    without.remove(MATDESC_KEY_ID);
                    contexts.push(without);
                }
                Ok(contexts)
            }
        }
    }

    /// Decrypts `body` in place with the unwrapped `data_key`, leaving the plaintext. On error
    /// `body` holds no plaintext worth reading and must be dropped.
    pub fn open(&self, data_key: &[u8], body: &mut Vec<u8>) -> Result<(), EnvelopeError> {
        if data_key.len() != DATA_KEY_BYTES {
            return Err(EnvelopeError::Unsupported {
                field: KEY_V2,
                value: format!("a {}-bit data key", data_key.len() * 8),
            });
        }
        match self.content {
            ContentAlg::AesGcm => {
                let Some(split) = body.len().checked_sub(GCM_TAG_BYTES) else {
                    return Err(EnvelopeError::Authentication("shorter than its tag"));
                };
                let tag = Tag::clone_from_slice(&body[split..]);
                let cipher = Aes256Gcm::new_from_slice(data_key)
                    .map_err(|_| EnvelopeError::Authentication("data key"))?;
                cipher
                    .decrypt_in_place_detached(
                        Nonce::from_slice(&self.iv),
                        b"",
                        &mut body[..split],
                        &tag,
                    )
                    .map_err(|_| EnvelopeError::Authentication("AES-GCM tag mismatch"))?;
                body.truncate(split);
            }
            ContentAlg::AesCbc => {
                let decryptor = cbc::Decryptor::<aes::Aes256>::new_from_slices(data_key, &self.iv)
                    .map_err(|_| EnvelopeError::Authentication("data key"))?;
                let len = decryptor
                    .decrypt_padded_mut::<Pkcs7>(body)
                    .map_err(|_| EnvelopeError::Authentication("AES-CBC padding invalid"))?
                    .len();
                body.truncate(len);
            }
        }
        if let Some(expected) = self.plaintext_len
            && expected != body.len() as u64
        {
            return Err(EnvelopeError::Authentication(
                "length differs from x-amz-unencrypted-content-length",
            ));
        }
        Ok(())
    }

    /// Unwraps the data key with KMS (`key_id`: the only key allowed) and decrypts `body`.
    pub async fn decrypt(
        &self,
        keys: &dyn DataKeys,
        key_id: Option<&str>,
        body: &mut Vec<u8>,
    ) -> Result<(), EnvelopeError> {
        let mut last = None;
        for context in self.contexts()? {
            match keys.decrypt(key_id, &self.wrapped_key, &context).await {
                Ok(data_key) => return self.open(&data_key, body),
                // Transient: the next context would meet the same outage; say so at once.
                Err(e) if e.is_retryable() => return Err(EnvelopeError::Kms(e)),
                Err(e) => last = Some(e),
            }
        }
        Err(EnvelopeError::Kms(last.unwrap_or_else(|| {
            PortError::new(
                crate::ports::ErrorKind::Permanent,
                "kms:Decrypt",
                "no encryption context to try",
            )
        })))
    }
}

/// Encrypts `plaintext` as SES does (AES-256-GCM, the `kms` wrapping, the context as material
/// description plus `kms_cmk_id`), in place; returns the metadata to store with the object.
/// The emulator and the tests use it; SES does this in AWS.
pub async fn seal(
    keys: &dyn DataKeys,
    key_id: &str,
    context: &EncryptionContext,
    body: &mut Vec<u8>,
) -> Result<HashMap<String, String>, EnvelopeError> {
    let mut material = context.clone();
    material.insert(MATDESC_KEY_ID.into(), key_id.into());
    let data_key = keys
        .generate(key_id, &material)
        .await
        .map_err(EnvelopeError::Kms)?;
    let iv: [u8; GCM_IV_BYTES] = rand::random();
    let plaintext_len = body.len();
    let cipher = Aes256Gcm::new_from_slice(&data_key.plaintext)
        .map_err(|_| EnvelopeError::Authentication("data key"))?;
    let tag = cipher
        .encrypt_in_place_detached(Nonce::from_slice(&iv), b"", body)
        .map_err(|_| EnvelopeError::Authentication("AES-GCM refused the message"))?;
    body.extend_from_slice(&tag);
    let material = serde_json::to_string(&material).unwrap_or_default();
    Ok(HashMap::from([
        (KEY_V2.into(), B64.encode(&data_key.wrapped)),
        (IV.into(), B64.encode(iv)),
        (CEK_ALG.into(), ContentAlg::AesGcm.name().into()),
        (WRAP_ALG.into(), "kms".into()),
        (MATDESC.into(), material),
        (TAG_LEN.into(), "128".into()),
        (UNENCRYPTED_LENGTH.into(), plaintext_len.to_string()),
    ]))
}

/// How a function reads raw mail could fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Object(#[from] PortError),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
}

impl ReadError {
    pub fn is_retryable(&self) -> bool {
        match self {
            ReadError::Object(e) => e.is_retryable(),
            ReadError::Envelope(e) => e.is_retryable(),
        }
    }
}

/// The KMS side of reading mail: the data key port and the one key it may use.
#[derive(Clone, Copy)]
pub struct Decryption<'a> {
    pub keys: &'a dyn DataKeys,
    pub key_id: Option<&'a str>,
}

/// The raw message at `bucket`/`key`, decrypted when SES encrypted it. A plain object is read as
/// it is (the stack may have been switched to encryption with mail already stored); an encrypted
/// one without `decryption` is refused rather than parsed as ciphertext.
pub async fn read_mail(
    store: &dyn ObjectStore,
    decryption: Option<Decryption<'_>>,
    bucket: &str,
    key: &str,
) -> Result<Bytes, ReadError> {
    Ok(read_object(store, decryption, bucket, key).await?.body)
}

/// [`read_mail`], with the object's metadata as stored: an envelope there (see [`is_encrypted`])
/// says the body was decrypted from it.
pub async fn read_object(
    store: &dyn ObjectStore,
    decryption: Option<Decryption<'_>>,
    bucket: &str,
    key: &str,
) -> Result<Object, ReadError> {
    let object = store.get_object(bucket, key).await?;
    let Some(envelope) = Envelope::from_metadata(&object.metadata)? else {
        return Ok(object);
    };
    let Some(decryption) = decryption else {
        return Err(EnvelopeError::NoKeys.into());
    };
    // Unshared bytes become a Vec without a copy, and decryption then happens in that buffer.
    let mut body = Vec::from(object.body);
    envelope
        .decrypt(decryption.keys, decryption.key_id, &mut body)
        .await?;
    Ok(Object {
        body: Bytes::from(body),
        metadata: object.metadata,
    })
}

/// Whether an object with this user metadata was written by an S3 encryption client (either
/// envelope version, readable or not): its stored bytes are ciphertext to whoever fetches them.
pub fn is_encrypted(meta: &HashMap<String, String>) -> bool {
    field(meta, KEY_V2).is_some() || field(meta, KEY_V1).is_some()
}

/// The variable that names the KMS key SES encrypts mail with (empty: mail is not encrypted).
pub const KMS_KEY_VAR: &str = "MAILROOM_KMS_KEY_ARN";

/// An [`ObjectStore`] whose reads decrypt what SES encrypted, so every function that reads raw
/// mail gets the message, never ciphertext. Writes, sizes and presigned URLs go to the inner
/// store unchanged. A refused object is a [`PortError`] naming the [`EnvelopeError`]: `Permanent`,
/// or the KMS call's own kind when KMS refused or failed.
#[derive(Clone)]
pub struct Decrypting<S> {
    inner: S,
    keys: Option<(std::sync::Arc<dyn DataKeys>, Option<String>)>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for Decrypting<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decrypting")
            .field("inner", &self.inner)
            .field("key_id", &self.keys.as_ref().map(|(_, id)| id))
            .finish()
    }
}

impl<S> Decrypting<S> {
    /// Reads through `inner`; an encrypted object is refused until [`Self::with_keys`].
    pub fn new(inner: S) -> Self {
        Decrypting { inner, keys: None }
    }

    /// Decrypts with `keys`, allowing only `key_id` when given.
    pub fn with_keys(mut self, keys: std::sync::Arc<dyn DataKeys>, key_id: Option<String>) -> Self {
        self.keys = Some((keys, key_id));
        self
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }
}

impl From<ReadError> for PortError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::Object(e) => e,
            // KMS's own kind: an outage is retried, a missing grant reads as access denied.
            ReadError::Envelope(EnvelopeError::Kms(e)) => PortError::new(
                e.kind,
                e.operation,
                format!(
                    "encrypted object: KMS did not unwrap its data key: {}",
                    e.message
                ),
            ),
            ReadError::Envelope(e) => {
                PortError::new(crate::ports::ErrorKind::Permanent, "decrypt", e.to_string())
            }
        }
    }
}

#[async_trait::async_trait]
impl<S: ObjectStore> ObjectStore for Decrypting<S> {
    async fn get(&self, bucket: &str, key: &str) -> Result<Bytes, PortError> {
        Ok(self.get_object(bucket, key).await?.body)
    }

    /// The decrypted body with the metadata as stored, so a caller can tell mail that was
    /// encrypted at rest ([`is_encrypted`]) from mail that was not.
    async fn get_object(&self, bucket: &str, key: &str) -> Result<Object, PortError> {
        let decryption = self.keys.as_ref().map(|(keys, key_id)| Decryption {
            keys: keys.as_ref(),
            key_id: key_id.as_deref(),
        });
        Ok(read_object(&self.inner, decryption, bucket, key).await?)
    }

    async fn size(&self, bucket: &str, key: &str) -> Result<u64, PortError> {
        self.inner.size(bucket, key).await
    }

    async fn put_if_absent(
        &self,
        bucket: &str,
        key: &str,
        body: Bytes,
        meta: &crate::ports::ObjectMeta,
    ) -> Result<crate::ports::PutOutcome, PortError> {
        self.inner.put_if_absent(bucket, key, body, meta).await
    }

    async fn presign_lifetime(&self, wanted: std::time::Duration) -> std::time::Duration {
        self.inner.presign_lifetime(wanted).await
    }

    async fn presign_get(
        &self,
        bucket: &str,
        key: &str,
        expires_in: std::time::Duration,
    ) -> Result<String, PortError> {
        self.inner.presign_get(bucket, key, expires_in).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::LocalDataKeys;
    use cbc::cipher::BlockEncryptMut;

    const KEY: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    const MAIL: &[u8] = b"From: a@example.org\r\nSubject: hi\r\n\r\nbody\r\n";

    fn ses_context() -> EncryptionContext {
        EncryptionContext::from([
            ("aws:ses:message-id".into(), "m1".into()),
            ("aws:ses:rule-name".into(), "store".into()),
            ("aws:ses:source-account".into(), "111122223333".into()),
        ])
    }

    async fn sealed() -> (Vec<u8>, HashMap<String, String>) {
        let mut body = MAIL.to_vec();
        let meta = seal(&LocalDataKeys, KEY, &ses_context(), &mut body)
            .await
            .expect("seal");
        (body, meta)
    }

    async fn open(body: &[u8], meta: &HashMap<String, String>) -> Result<Vec<u8>, EnvelopeError> {
        let envelope = Envelope::from_metadata(meta)?.expect("encrypted");
        let mut body = body.to_vec();
        envelope
            .decrypt(&LocalDataKeys, Some(KEY), &mut body)
            .await
            .map(|()| body)
    }

    #[tokio::test]
    async fn sealed_mail_opens_to_the_same_bytes() {
        let (body, meta) = sealed().await;
        assert_eq!(body.len(), MAIL.len() + GCM_TAG_BYTES);
        assert_ne!(&body[..MAIL.len()], MAIL);
        assert_eq!(meta[UNENCRYPTED_LENGTH], MAIL.len().to_string());
        assert_eq!(open(&body, &meta).await.expect("open"), MAIL);
    }

    #[tokio::test]
    async fn a_flipped_tag_bit_or_body_bit_is_refused() {
        let (body, meta) = sealed().await;
        for at in [body.len() - 1, 0] {
            let mut tampered = body.clone();
            tampered[at] ^= 0x01;
            assert!(matches!(
                open(&tampered, &meta).await,
                Err(EnvelopeError::Authentication(_))
            ));
        }
        let mut truncated = body.clone();
        truncated.truncate(10);
        assert!(matches!(
            open(&truncated, &meta).await,
            Err(EnvelopeError::Authentication("shorter than its tag"))
        ));
    }

    #[tokio::test]
    async fn a_wrong_context_or_key_is_refused_by_the_key_service() {
        let (body, mut meta) = sealed().await;
        let mut material: EncryptionContext =
            serde_json::from_str(&meta[MATDESC]).expect("matdesc");
        material.insert("aws:ses:rule-name".into(), "another".into());
        meta.insert(
            MATDESC.into(),
            serde_json::to_string(&material).expect("json"),
        );
        assert!(matches!(
            open(&body, &meta).await,
            Err(EnvelopeError::Kms(_))
        ));

        let (body, meta) = sealed().await;
        let envelope = Envelope::from_metadata(&meta).expect("meta").expect("some");
        let mut buf = body.clone();
        let err = envelope
            .decrypt(
                &LocalDataKeys,
                Some("arn:aws:kms:eu-west-1:1:key/other"),
                &mut buf,
            )
            .await
            .expect_err("wrong key");
        assert!(!err.is_retryable(), "{err}");
        assert!(err.to_string().contains("IncorrectKey"), "{err}");
    }

    #[tokio::test]
    async fn kms_context_binds_the_content_algorithm() {
        let (body, mut meta) = sealed().await;
        meta.insert(WRAP_ALG.into(), "kms+context".into());
        // The matdesc lacks aws:x-amz-cek-alg: refused before any KMS call.
        assert_eq!(
            open(&body, &meta).await,
            Err(EnvelopeError::Missing(CONTEXT_CEK_ALG))
        );
        let mut material: EncryptionContext =
            serde_json::from_str(&meta[MATDESC]).expect("matdesc");
        material.insert(CONTEXT_CEK_ALG.into(), "AES/CBC/PKCS5Padding".into());
        meta.insert(
            MATDESC.into(),
            serde_json::to_string(&material).expect("json"),
        );
        assert!(matches!(
            open(&body, &meta).await,
            Err(EnvelopeError::Authentication(_))
        ));
    }

    async fn cbc_object(plaintext: &[u8]) -> (Vec<u8>, HashMap<String, String>) {
        let material = ses_context();
        let data_key = LocalDataKeys.generate(KEY, &material).await.expect("key");
        let iv: [u8; CBC_IV_BYTES] = rand::random();
        let body = cbc::Encryptor::<aes::Aes256>::new_from_slices(&data_key.plaintext, &iv)
            .expect("sizes")
            .encrypt_padded_vec_mut::<Pkcs7>(plaintext);
        let meta = HashMap::from([
            (KEY_V2.to_string(), B64.encode(&data_key.wrapped)),
            (IV.to_string(), B64.encode(iv)),
            (CEK_ALG.to_string(), "AES/CBC/PKCS5Padding".to_string()),
            (WRAP_ALG.to_string(), "kms".to_string()),
            (
                MATDESC.to_string(),
                serde_json::to_string(&material).expect("json"),
            ),
        ]);
        (body, meta)
    }

    #[tokio::test]
    async fn cbc_objects_open_and_bad_padding_is_refused() {
        let (body, meta) = cbc_object(MAIL).await;
        assert_eq!(open(&body, &meta).await.expect("open"), MAIL);
        // The last block decrypts to garbage when the one before it is altered at its end.
        let mut tampered = body.clone();
        let n = tampered.len();
        tampered[n - 17] ^= 0xff;
        assert_eq!(
            open(&tampered, &meta).await,
            Err(EnvelopeError::Authentication("AES-CBC padding invalid"))
        );
    }

    #[test]
    fn metadata_errors_are_typed() {
        assert_eq!(Envelope::from_metadata(&HashMap::new()), Ok(None));
        let base = HashMap::from([
            (KEY_V2.to_string(), B64.encode([1u8; 8])),
            (IV.to_string(), B64.encode([0u8; 12])),
            (CEK_ALG.to_string(), "AES/GCM/NoPadding".to_string()),
            (WRAP_ALG.to_string(), "kms".to_string()),
            (MATDESC.to_string(), "{}".to_string()),
        ]);
        assert!(Envelope::from_metadata(&base).expect("ok").is_some());
        let with = |k: &str, v: &str| {
            let mut m = base.clone();
            m.insert(k.to_string(), v.to_string());
            Envelope::from_metadata(&m)
        };
        let without = |k: &str| {
            let mut m = base.clone();
            m.remove(k);
            Envelope::from_metadata(&m)
        };
        assert_eq!(without(IV), Err(EnvelopeError::Missing(IV)));
        assert_eq!(without(CEK_ALG), Err(EnvelopeError::Missing(CEK_ALG)));
        assert!(matches!(
            with(IV, "%%"),
            Err(EnvelopeError::Malformed { field: IV, .. })
        ));
        assert!(matches!(
            with(IV, &B64.encode([0u8; 16])),
            Err(EnvelopeError::Malformed { field: IV, .. })
        ));
        assert!(matches!(
            with(CEK_ALG, "AES/CTR/NoPadding"),
            Err(EnvelopeError::Unsupported { field: CEK_ALG, .. })
        ));
        assert!(matches!(
            with(WRAP_ALG, "RSA-OAEP-SHA1"),
            Err(EnvelopeError::Unsupported {
                field: WRAP_ALG,
                ..
            })
        ));
        assert!(matches!(
            with(TAG_LEN, "96"),
            Err(EnvelopeError::Unsupported { field: TAG_LEN, .. })
        ));
        assert!(matches!(
            with(MATDESC, "[1]"),
            Err(EnvelopeError::Malformed { field: MATDESC, .. })
        ));
        assert!(matches!(
            with(UNENCRYPTED_LENGTH, "-1"),
            Err(EnvelopeError::Malformed {
                field: UNENCRYPTED_LENGTH,
                ..
            })
        ));
        let v1 = HashMap::from([(KEY_V1.to_string(), "x".to_string())]);
        assert!(matches!(
            Envelope::from_metadata(&v1),
            Err(EnvelopeError::Unsupported { field: KEY_V1, .. })
        ));
    }

    #[test]
    fn kms_wrapping_tries_the_material_with_then_without_the_key_name() {
        let mut material = ses_context();
        material.insert(MATDESC_KEY_ID.into(), KEY.into());
        let envelope = Envelope {
            wrapped_key: vec![],
            iv: vec![0; 12],
            content: ContentAlg::AesGcm,
            wrap: WrapAlg::Kms,
            material: material.clone(),
            plaintext_len: None,
        };
        assert_eq!(
            envelope.contexts().expect("contexts"),
            vec![material, ses_context()]
        );
    }
}
