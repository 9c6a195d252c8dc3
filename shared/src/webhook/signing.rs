//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>), both ends.
//!
//! The signed content is `<webhook-id>.<webhook-timestamp>.<body>`; the signature is
//! `v1,<base64 HMAC-SHA256>` keyed with the secret's bytes. A secret is written `whsec_<base64>`.
//! Several secrets sign at once during a rotation, giving a space-separated list of `v1,…`
//! entries; a receiver accepts the message when any entry matches any secret it knows.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// The prefix Standard Webhooks secrets carry.
pub const SECRET_PREFIX: &str = "whsec_";
/// How far a timestamp may be from the verifier's clock (the spec's recommendation).
pub const DEFAULT_TOLERANCE_SECS: u64 = 5 * 60;

/// The secret lengths the Standard Webhooks spec allows, in bytes: a shorter key can be guessed,
/// and a 1-byte secret is a configuration mistake, not a key.
pub const MIN_SECRET_BYTES: usize = 24;
pub const MAX_SECRET_BYTES: usize = 64;

pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SigningError {
    #[error("webhook secret is empty")]
    EmptySecret,
    #[error("webhook secret is not base64 after the whsec_ prefix: {0}")]
    BadSecret(String),
    #[error(
        "webhook secret is {0} bytes; Standard Webhooks secrets are 24 to 64 random bytes \
         (generate one with `openssl rand -base64 32`)"
    )]
    SecretLength(usize),
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp {0:?} is not a Unix time in seconds")]
    BadTimestamp(String),
    #[error("webhook-timestamp is {skew} s away from now, over the {tolerance} s tolerance")]
    OutsideTolerance { skew: u64, tolerance: u64 },
    #[error("no signature matches")]
    NoMatch,
}

/// An HMAC key, kept as a keyed HMAC state ready to clone. `Debug` never shows the key.
#[derive(Clone)]
pub struct Secret {
    len: usize,
    keyed: HmacSha256,
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes)", self.len)
    }
}

impl Secret {
    /// Parses `whsec_<base64>` or bare base64 (as the reference libraries do).
    pub fn parse(text: &str) -> Result<Secret, SigningError> {
        let t = text.trim();
        let b64 = t.strip_prefix(SECRET_PREFIX).unwrap_or(t);
        if b64.is_empty() {
            return Err(SigningError::EmptySecret);
        }
        let bytes = B64
            .decode(b64)
            .map_err(|e| SigningError::BadSecret(e.to_string()))?;
        Secret::from_bytes(&bytes)
    }

    /// Several secrets separated by commas or whitespace (rotation: new first, then old).
    pub fn parse_list(text: &str) -> Result<Vec<Secret>, SigningError> {
        let list: Vec<Secret> = text
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(Secret::parse)
            .collect::<Result<_, _>>()?;
        if list.is_empty() {
            return Err(SigningError::EmptySecret);
        }
        Ok(list)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Secret, SigningError> {
        if bytes.is_empty() {
            return Err(SigningError::EmptySecret);
        }
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&bytes.len()) {
            return Err(SigningError::SecretLength(bytes.len()));
        }
        let keyed = HmacSha256::new_from_slice(bytes)
            .map_err(|e| SigningError::BadSecret(e.to_string()))?;
        Ok(Secret {
            len: bytes.len(),
            keyed,
        })
    }

    /// A fresh random 32-byte secret, written `whsec_…`.
    pub fn generate() -> String {
        let bytes: [u8; 32] = rand::random();
        format!("{SECRET_PREFIX}{}", B64.encode(bytes))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = self.keyed.clone();
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// `v1,<base64>` for this secret.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", B64.encode(tag))
    }

    fn matches(&self, id: &str, timestamp: i64, body: &[u8], signature_b64: &str) -> bool {
        match B64.decode(signature_b64) {
            // verify_slice compares in constant time.
            Ok(sig) => self.mac(id, timestamp, body).verify_slice(&sig).is_ok(),
            Err(_) => false,
        }
    }
}

/// The `webhook-signature` header value: one `v1,…` per secret, space-separated.
pub fn signature_header(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The three Standard Webhooks headers for one send.
pub fn headers(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    vec![
        (HEADER_ID.to_string(), id.to_string()),
        (HEADER_TIMESTAMP.to_string(), timestamp.to_string()),
        (
            HEADER_SIGNATURE.to_string(),
            signature_header(secrets, id, timestamp, body),
        ),
    ]
}

/// Checks a received message: the timestamp is within `tolerance_secs` of `now` and some `v1`
/// entry of `signature` matches some secret. Entries of other versions are ignored.
pub fn verify(
    secrets: &[Secret],
    id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
    tolerance_secs: u64,
) -> Result<(), SigningError> {
    if id.is_empty() {
        return Err(SigningError::MissingHeader(HEADER_ID));
    }
    if signature.trim().is_empty() {
        return Err(SigningError::MissingHeader(HEADER_SIGNATURE));
    }
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SigningError::BadTimestamp(timestamp.to_string()))?;
    let skew = now.abs_diff(ts);
    if skew > tolerance_secs {
        return Err(SigningError::OutsideTolerance {
            skew,
            tolerance: tolerance_secs,
        });
    }
    let entries = signature
        .split_whitespace()
        .filter_map(|e| e.split_once(','));
    for (version, sig) in entries {
        if version == "v1" && secrets.iter().any(|s| s.matches(id, ts, body, sig)) {
            return Ok(());
        }
    }
    Err(SigningError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example from the Standard Webhooks reference libraries' test suites.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &str = r#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_reference_vector() {
        let s = Secret::parse(SECRET).expect("test value");
        assert_eq!(s.sign(ID, TS, BODY.as_bytes()), EXPECTED);
        verify(&[s], ID, "1614265330", EXPECTED, BODY.as_bytes(), TS, 300).expect("test value");
    }

    #[test]
    fn rotation_signs_with_every_secret_and_verifies_with_any() {
        let old = Secret::parse(SECRET).expect("test value");
        let new = Secret::parse(&Secret::generate()).expect("test value");
        let header = signature_header(&[new.clone(), old.clone()], ID, TS, BODY.as_bytes());
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.ends_with(EXPECTED));
        verify(&[old], ID, "1614265330", &header, BODY.as_bytes(), TS, 300).expect("test value");
        verify(&[new], ID, "1614265330", &header, BODY.as_bytes(), TS, 300).expect("test value");
    }

    #[test]
    fn rejects_tampering_skew_and_junk() {
        let s = Secret::parse(SECRET).expect("test value");
        let ok = |id: &str, ts: &str, sig: &str, body: &str, now: i64| {
            verify(
                std::slice::from_ref(&s),
                id,
                ts,
                sig,
                body.as_bytes(),
                now,
                300,
            )
        };
        assert_eq!(
            ok(ID, "1614265330", EXPECTED, "{}", TS),
            Err(SigningError::NoMatch)
        );
        assert_eq!(
            ok("other", "1614265330", EXPECTED, BODY, TS),
            Err(SigningError::NoMatch)
        );
        assert!(matches!(
            ok(ID, "1614265330", EXPECTED, BODY, TS + 301),
            Err(SigningError::OutsideTolerance { skew: 301, .. })
        ));
        assert!(matches!(
            ok(ID, "yesterday", EXPECTED, BODY, TS),
            Err(SigningError::BadTimestamp(_))
        ));
        let v2 = EXPECTED.replace("v1,", "v2,");
        assert_eq!(
            ok(ID, "1614265330", &v2, BODY, TS),
            Err(SigningError::NoMatch)
        );
        assert_eq!(
            ok(ID, "1614265330", "v1,not-base64!", BODY, TS),
            Err(SigningError::NoMatch)
        );
        assert_eq!(
            ok(ID, "1614265330", "", BODY, TS),
            Err(SigningError::MissingHeader(HEADER_SIGNATURE))
        );
    }

    #[test]
    fn secrets_parse_strictly_and_hide_in_debug() {
        assert!(Secret::parse("whsec_").is_err());
        assert!(Secret::parse("whsec_%%%").is_err());
        let list =
            Secret::parse_list(&format!("{SECRET}, {}", Secret::generate())).expect("test value");
        assert_eq!(list.len(), 2);
        assert_eq!(format!("{:?}", list[0]), "Secret(24 bytes)");
        assert!(Secret::parse_list(" , ").is_err());
    }

    #[test]
    fn secrets_are_24_to_64_bytes() {
        for (len, ok) in [
            (1, false),
            (16, false),
            (23, false),
            (24, true),
            (64, true),
            (65, false),
        ] {
            let text = format!("{SECRET_PREFIX}{}", B64.encode(vec![7u8; len]));
            assert_eq!(Secret::parse(&text).is_ok(), ok, "{len} bytes");
        }
        let e = Secret::parse(&format!("{SECRET_PREFIX}{}", B64.encode([1u8]))).expect_err("short");
        assert_eq!(e, SigningError::SecretLength(1));
    }
}
