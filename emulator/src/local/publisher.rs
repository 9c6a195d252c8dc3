//! SNS as JSON lines: `sns/<topic name>.jsonl`, one publication per line.

use super::{append_line, new_id, resource_name, safe_relative};
use async_trait::async_trait;
use mailroom::ports::{PortError, Publication, Publisher};
use std::path::{Path, PathBuf};

/// SNS as JSON lines, one file per topic.
#[derive(Debug, Clone)]
pub struct LocalPublisher {
    root: PathBuf,
}

impl LocalPublisher {
    pub fn new(state: &Path) -> Self {
        LocalPublisher {
            root: state.to_path_buf(),
        }
    }

    pub fn path_of(&self, topic_arn: &str) -> Result<PathBuf, PortError> {
        let name = safe_relative("Publish", resource_name(topic_arn))?;
        let mut p = self.root.join("sns").join(name).into_os_string();
        p.push(".jsonl");
        Ok(PathBuf::from(p))
    }
}

#[async_trait]
impl Publisher for LocalPublisher {
    async fn publish(&self, msg: &Publication) -> Result<String, PortError> {
        let id = new_id();
        let path = self.path_of(&msg.topic_arn)?;
        let line = serde_json::json!({
            "messageId": id,
            "publishedAt": crate::receipt::mail::iso_millis(time::OffsetDateTime::now_utc()),
            "publication": msg,
        });
        append_line(&path, &line.to_string(), "Publish").await?;
        Ok(id)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn publisher_appends_json_lines_per_topic() {
        let dir = tempfile::tempdir().unwrap();
        let p = LocalPublisher::new(dir.path());
        let msg = Publication {
            topic_arn: "arn:aws:sns:us-east-1:123456789012:mail".into(),
            message: "{}".into(),
            ..Publication::default()
        };
        p.publish(&msg).await.unwrap();
        p.publish(&msg).await.unwrap();
        let text = std::fs::read_to_string(dir.path().join("sns/mail.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 2);
        let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(line["publication"]["topic_arn"], msg.topic_arn);
    }
}
