//! Where mail lives in S3: the raw object the rule's S3 action wrote, and the browsable layout the
//! store function writes beside it.
//!
//! ```text
//! <store prefix><YYYY-MM-DD>/<messageId>/message.json      the model (written last: "complete")
//!                                       /body.txt          text body, UTF-8
//!                                       /body.html         HTML body, UTF-8
//!                                       /attachments/<n>-<safe name>
//!                                       /raw.eml           the raw message decrypted, written by
//!                                                          the api function for its raw URL
//!                                                          only when SES encrypted the mail
//! ```
//!
//! The date is the day SES received the message (`mail.timestamp`, UTC), so every retry of an
//! invocation computes the same keys. Every key is built here, so store, fanout and api agree on
//! them, and every variable segment goes through [`segment`], so a hostile message id or filename
//! can never climb out of its message's folder.

use crate::config::{self, ConfigError, Env};
use crate::email::Attachment;

pub const RAW_BUCKET_VAR: &str = "MAILROOM_RAW_BUCKET";
pub const RAW_PREFIX_VAR: &str = "MAILROOM_RAW_PREFIX";
pub const STORE_BUCKET_VAR: &str = "MAILROOM_STORE_BUCKET";
pub const STORE_PREFIX_VAR: &str = "MAILROOM_STORE_PREFIX";
/// The variables [`Locations::from_env`] reads.
pub const ENV_VARS: &[&str] = &[
    crate::envelope::KMS_KEY_VAR,
    RAW_BUCKET_VAR,
    RAW_PREFIX_VAR,
    STORE_BUCKET_VAR,
    STORE_PREFIX_VAR,
];
pub const DEFAULT_STORE_PREFIX: &str = "messages/";

/// The file names inside a message's folder.
pub const MESSAGE_JSON: &str = "message.json";
pub const BODY_TEXT: &str = "body.txt";
pub const BODY_HTML: &str = "body.html";
pub const ATTACHMENTS_DIR: &str = "attachments";
pub const RAW_COPY: &str = "raw.eml";

/// Longest key segment we produce; S3 keys may be 1024 bytes in total.
const MAX_SEGMENT: usize = 200;

/// Where the raw mail is and where the browsable layout goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locations {
    /// The bucket of the receipt rule's S3 action.
    pub raw_bucket: String,
    /// The rule's `ObjectKeyPrefix` (raw key = [`crate::ses::raw_object_key`]).
    pub raw_prefix: String,
    pub store_bucket: String,
    /// Always empty or ending in `/`.
    pub store_prefix: String,
    /// The KMS key SES encrypts raw mail with ("Encrypt message"); `None`: it does not.
    pub kms_key: Option<String>,
}

impl Locations {
    pub fn new(
        raw_bucket: impl Into<String>,
        raw_prefix: impl Into<String>,
        store_bucket: Option<String>,
        store_prefix: Option<String>,
    ) -> Self {
        let raw_bucket = raw_bucket.into();
        Locations {
            store_bucket: store_bucket.unwrap_or_else(|| raw_bucket.clone()),
            raw_bucket,
            raw_prefix: raw_prefix.into(),
            store_prefix: normalize_prefix(store_prefix.as_deref().unwrap_or(DEFAULT_STORE_PREFIX)),
            kms_key: None,
        }
    }

    /// The same locations, raw mail encrypted under `kms_key`.
    pub fn with_kms_key(mut self, kms_key: Option<String>) -> Self {
        self.kms_key = kms_key;
        self
    }

    /// `MAILROOM_RAW_BUCKET` (required), `MAILROOM_RAW_PREFIX` (default empty),
    /// `MAILROOM_STORE_BUCKET` (default: the raw bucket), `MAILROOM_STORE_PREFIX` (default `messages/`),
    /// `MAILROOM_KMS_KEY_ARN` (default: raw mail is not encrypted).
    pub fn from_env(env: &(impl Env + ?Sized)) -> Result<Self, ConfigError> {
        let raw_bucket = config::required(env, RAW_BUCKET_VAR)?;
        // Blank means "no prefix", which `optional` already reports as unset.
        let raw_prefix = config::optional(env, RAW_PREFIX_VAR).unwrap_or_default();
        let store_prefix = match env.var(STORE_PREFIX_VAR) {
            // Set but blank: the layout goes at the bucket root, a deliberate choice.
            Some(v) if v.trim().is_empty() => Some(String::new()),
            Some(v) => Some(v.trim().to_string()),
            None => None,
        };
        if let Some(p) = &store_prefix
            && (p.starts_with('/') || p.split('/').any(|s| s == ".." || s == "."))
        {
            return Err(ConfigError::Invalid {
                name: STORE_PREFIX_VAR.to_string(),
                value: p.clone(),
                reason: "must be a relative key prefix without . or .. segments".to_string(),
            });
        }
        Ok(Locations::new(
            raw_bucket,
            raw_prefix,
            config::optional(env, STORE_BUCKET_VAR),
            store_prefix,
        )
        .with_kms_key(config::optional(env, crate::envelope::KMS_KEY_VAR)))
    }

    /// The raw object's key for a message.
    pub fn raw_key(&self, message_id: &str) -> String {
        crate::ses::raw_object_key(&self.raw_prefix, message_id)
    }

    /// `s3://bucket/key` of the raw message, for log lines that must say where the mail is.
    pub fn raw_url(&self, message_id: &str) -> String {
        format!("s3://{}/{}", self.raw_bucket, self.raw_key(message_id))
    }

    /// Reads a message's raw object. `Ok(None)` when it is not there, after one log line saying
    /// where it was looked for: S3 is strongly consistent and the rule's S3 action runs before
    /// any function, so a missing object will not appear later and retrying would only repeat it.
    pub async fn read_raw(
        &self,
        store: &dyn crate::ports::ObjectStore,
        message_id: &str,
    ) -> Result<Option<bytes::Bytes>, crate::ports::PortError> {
        match store.get(&self.raw_bucket, &self.raw_key(message_id)).await {
            Ok(raw) => Ok(Some(raw)),
            Err(e) if e.kind == crate::ports::ErrorKind::NotFound => {
                tracing::error!(message_id, raw = %self.raw_url(message_id), error = %e,
                    "raw message not found: check MAILROOM_RAW_BUCKET/MAILROOM_RAW_PREFIX against the rule's S3 action");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// The keys of one message's layout.
    pub fn message(&self, date: &str, message_id: &str) -> MessageLayout {
        MessageLayout {
            bucket: self.store_bucket.clone(),
            prefix: message_prefix(&self.store_prefix, date, message_id),
        }
    }
}

/// The keys of one stored message, all under [`MessageLayout::prefix`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageLayout {
    pub bucket: String,
    /// `<store prefix><date>/<messageId>/`.
    pub prefix: String,
}

impl MessageLayout {
    pub fn message_json(&self) -> String {
        format!("{}{MESSAGE_JSON}", self.prefix)
    }

    pub fn body_text(&self) -> String {
        format!("{}{BODY_TEXT}", self.prefix)
    }

    pub fn body_html(&self) -> String {
        format!("{}{BODY_HTML}", self.prefix)
    }

    /// The raw message as a webhook consumer can read it: SES's object may be ciphertext.
    pub fn raw_copy(&self) -> String {
        format!("{}{RAW_COPY}", self.prefix)
    }

    /// `attachments/<index>-<safe name>`: the index keeps names unique within the message.
    pub fn attachment(&self, index: usize, safe_name: &str) -> String {
        format!(
            "{}{ATTACHMENTS_DIR}/{index}-{}",
            self.prefix,
            segment(safe_name)
        )
    }

    pub fn attachment_of(&self, attachment: &Attachment) -> String {
        self.attachment(attachment.index, &attachment.safe_filename)
    }
}

/// `<store prefix><date>/<messageId>/`, each variable part made a safe single segment.
pub fn message_prefix(store_prefix: &str, date: &str, message_id: &str) -> String {
    format!(
        "{}{}/{}/",
        normalize_prefix(store_prefix),
        segment(date),
        segment(message_id)
    )
}

/// The UTC calendar date (`YYYY-MM-DD`) of an SES timestamp, or `undated` when it has none.
///
/// SES sends ISO-8601 in UTC (`2025-01-15T10:00:02.028Z`); offsets are converted to UTC so the
/// same instant always lands on the same day.
pub fn date_of(timestamp: &str) -> String {
    use time::format_description::well_known::Rfc3339;
    let ts = timestamp.trim();
    if let Ok(t) = time::OffsetDateTime::parse(ts, &Rfc3339) {
        let d = t.to_offset(time::UtcOffset::UTC).date();
        return format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day());
    }
    // A bare date, or a timestamp RFC 3339 rejects: take a leading YYYY-MM-DD if it is one.
    let head = ts.get(..10).unwrap_or("");
    let b = head.as_bytes();
    let is_date = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if is_date {
        head.to_string()
    } else {
        "undated".to_string()
    }
}

/// Makes `s` one safe key segment: no separators, no control characters, no `.`/`..`, bounded.
///
/// Callers usually pass values that are already safe (SES message ids, `keys::safe_filename`
/// output); this is the last line that guarantees a key stays inside its folder whatever the
/// input.
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len().min(MAX_SEGMENT));
    for c in s.chars() {
        let c = if c.is_control() || matches!(c, '/' | '\\') || c == '\u{FFFD}' {
            '_'
        } else {
            c
        };
        if out.len() + c.len_utf8() > MAX_SEGMENT {
            break;
        }
        out.push(c);
    }
    // Never starts with a dot, so never `.` or `..`, whatever whitespace hides between dots.
    let trimmed = out
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end();
    if trimmed.is_empty() {
        "_".to_string()
    } else {
        trimmed.to_string()
    }
}

/// True when `id` can be used verbatim in keys: what SES message ids look like.
pub fn is_plain_message_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+' | b'='))
}

fn normalize_prefix(p: &str) -> String {
    let p = p.trim().trim_start_matches('/');
    if p.is_empty() || p.ends_with('/') {
        p.to_string()
    } else {
        format!("{p}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_days_of_the_ses_timestamp() {
        assert_eq!(date_of("2025-01-15T10:00:02.028Z"), "2025-01-15");
        assert_eq!(date_of("2025-01-15T23:30:00-02:00"), "2025-01-16");
        assert_eq!(date_of("2025-01-15"), "2025-01-15");
        assert_eq!(date_of(""), "undated");
        assert_eq!(date_of("yesterday at noon"), "undated");
        assert_eq!(date_of("2025-01-1x"), "undated");
    }

    #[test]
    fn layout_keys() {
        let loc = Locations::new("raw-bkt", "inbox", None, None);
        assert_eq!(loc.store_bucket, "raw-bkt");
        assert_eq!(loc.raw_key("abc"), "inbox/abc");
        assert_eq!(loc.raw_url("abc"), "s3://raw-bkt/inbox/abc");
        let m = loc.message("2025-01-15", "abc");
        assert_eq!(m.message_json(), "messages/2025-01-15/abc/message.json");
        assert_eq!(m.body_text(), "messages/2025-01-15/abc/body.txt");
        assert_eq!(m.body_html(), "messages/2025-01-15/abc/body.html");
        assert_eq!(m.raw_copy(), "messages/2025-01-15/abc/raw.eml");
        assert_eq!(
            m.attachment(2, "report.pdf"),
            "messages/2025-01-15/abc/attachments/2-report.pdf"
        );
        let root = Locations::new("b", "", Some("out".into()), Some(String::new()));
        assert_eq!(root.store_bucket, "out");
        assert_eq!(root.message("d", "m").prefix, "d/m/");
        let nested = Locations::new("b", "", None, Some("/mail/store".into()));
        assert_eq!(nested.message("d", "m").prefix, "mail/store/d/m/");
    }

    #[test]
    fn hostile_segments_stay_inside_their_folder() {
        let m = Locations::new("b", "", None, None).message("2025-01-15", "../../x");
        assert!(m.prefix.starts_with("messages/2025-01-15/"), "{}", m.prefix);
        assert_eq!(m.prefix.matches('/').count(), 3, "{}", m.prefix);
        for name in [
            "../../etc/passwd",
            "..\\..\\boot.ini",
            "..",
            ".",
            "",
            "a\u{0}b\r\nc",
            ". .",
            " .. ",
            "/abs",
        ] {
            let key = m.attachment(0, name);
            let rest = key
                .strip_prefix(&format!("{}attachments/", m.prefix))
                .unwrap_or_else(|| panic!("{key}"));
            assert!(!rest.contains('/') && !rest.contains('\\'), "{key}");
            assert!(!rest.chars().any(char::is_control), "{key:?}");
            assert!(!key.split('/').any(|s| s == ".." || s == "."), "{key}");
        }
        assert!(segment(&"é".repeat(500)).len() <= MAX_SEGMENT);
        for id in [". .", " .. ", "..", "\u{2003}..", "./."] {
            let p = Locations::new("b", "", None, None).message(id, id).prefix;
            assert!(
                !p.split('/').any(|s| s.trim() == ".." || s.trim() == "."),
                "{p:?}"
            );
            assert_eq!(p.matches('/').count(), 3, "{p:?}");
        }
    }

    #[test]
    fn env_config() {
        let env = [
            ("MAILROOM_RAW_BUCKET", "mail"),
            ("MAILROOM_RAW_PREFIX", "raw/"),
        ];
        let loc = Locations::from_env(&env).expect("valid env");
        assert_eq!(loc.raw_key("id1"), "raw/id1");
        assert_eq!(loc.store_bucket, "mail");
        assert_eq!(loc.store_prefix, "messages/");
        let e = Locations::from_env(&[("MAILROOM_RAW_PREFIX", "x")]).expect_err("invalid env");
        assert!(e.to_string().contains("MAILROOM_RAW_BUCKET"), "{e}");
        let e = Locations::from_env(&[
            ("MAILROOM_RAW_BUCKET", "mail"),
            ("MAILROOM_STORE_PREFIX", "a/../b"),
        ])
        .expect_err("invalid env");
        assert!(e.to_string().contains("MAILROOM_STORE_PREFIX"), "{e}");
    }

    proptest::proptest! {
        #[test]
        fn any_name_or_id_stays_one_segment(id in "\\PC{0,40}", name in "\\PC{0,300}", raw in proptest::collection::vec(proptest::prelude::any::<char>(), 0..50)) {
            let raw: String = raw.into_iter().collect();
            for (id, name) in [(id.as_str(), name.as_str()), (raw.as_str(), raw.as_str())] {
                let m = Locations::new("b", "", None, None).message("2025-01-15", id);
                let key = m.attachment(7, name);
                let rest = key.strip_prefix("messages/2025-01-15/").unwrap_or("");
                let parts: Vec<&str> = rest.split('/').collect();
                proptest::prop_assert_eq!(parts.len(), 3, "{:?}", key);
                proptest::prop_assert_eq!(parts[1], "attachments");
                for p in [parts[0], parts[2]] {
                    proptest::prop_assert!(!p.is_empty() && p != "." && p != "..", "{:?}", key);
                    proptest::prop_assert!(!p.contains('\\') && !p.chars().any(char::is_control), "{:?}", key);
                }
                proptest::prop_assert!(key.len() <= 1024);
            }
        }
    }

    #[test]
    fn plain_ids() {
        assert!(is_plain_message_id(
            "o3vrnil0e2ic28trm7dfhrc2v0cnbeccl4nbp0g1"
        ));
        assert!(!is_plain_message_id("../x"));
        assert!(!is_plain_message_id(""));
        assert!(!is_plain_message_id("a b"));
    }
}
