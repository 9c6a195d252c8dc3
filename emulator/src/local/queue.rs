//! SQS as a folder per queue: `sqs/<queue name>/<visible-at ms>-<id>.json`.

use super::{io_error, new_id, now_millis, resource_name, safe_relative};
use async_trait::async_trait;
use mailroom::ports::PortError;
use mailroom::ports::queue::{MAX_DELAY, Queue, Received};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long a received local SQS message stays invisible before it can be received again.
const VISIBILITY: Duration = Duration::from_secs(30);

/// SQS as a folder per queue; the file name carries when the message becomes visible.
#[derive(Debug, Clone)]
pub struct LocalQueue {
    root: PathBuf,
}

impl LocalQueue {
    pub fn new(state: &Path) -> Self {
        LocalQueue {
            root: state.to_path_buf(),
        }
    }

    pub fn dir_of(&self, queue_url: &str) -> Result<PathBuf, PortError> {
        Ok(self
            .root
            .join("sqs")
            .join(safe_relative("SQS", resource_name(queue_url))?))
    }
}

/// A message waiting in a local queue, as its file holds it, without receiving it.
#[derive(Debug, Clone)]
pub struct Pending {
    pub file: PathBuf,
    /// When it becomes visible, Unix milliseconds.
    pub visible_at_ms: u128,
    /// The message as a receive would return it; the receipt handle is the file's name, so a
    /// delete with it removes this message.
    pub message: Received,
}

impl LocalQueue {
    /// Every message in the queue, in the order they become visible, received or not; files
    /// that are not messages are skipped.
    pub fn pending(&self, queue_url: &str) -> Result<Vec<Pending>, PortError> {
        let dir = self.dir_of(queue_url)?;
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("ReceiveMessage", &dir, &e)),
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        names.sort();
        Ok(names
            .into_iter()
            .filter_map(|name| read_pending(&dir.join(&name), &name))
            .collect())
    }

    /// The message in `file`, when it is one of this queue's.
    pub fn pending_at(&self, queue_url: &str, file: &Path) -> Result<Pending, PortError> {
        let dir = self.dir_of(queue_url)?;
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|_| file.parent() == Some(dir.as_path()));
        name.and_then(|name| read_pending(file, name))
            .ok_or_else(|| {
                PortError::new(
                    mailroom::ports::ErrorKind::NotFound,
                    "ReceiveMessage",
                    format!("not a message of the queue in {}", dir.display()),
                )
            })
    }
}

fn read_pending(path: &Path, name: &str) -> Option<Pending> {
    let (visible_at_ms, id) = parse_queue_file(name)?;
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    Some(Pending {
        file: path.to_path_buf(),
        visible_at_ms,
        message: Received {
            message_id: id.to_string(),
            receipt_handle: name.to_string(),
            body: json["body"].as_str()?.to_string(),
            receive_count: json["receiveCount"]
                .as_u64()
                .and_then(|c| u32::try_from(c).ok()),
        },
    })
}

/// `<visible-at ms>-<id>.json` → (visible-at, id).
fn parse_queue_file(name: &str) -> Option<(u128, &str)> {
    let stem = name.strip_suffix(".json")?;
    let (at, id) = stem.split_once('-')?;
    Some((at.parse().ok()?, id))
}

#[async_trait]
impl Queue for LocalQueue {
    async fn send(
        &self,
        queue_url: &str,
        body: &str,
        delay: Duration,
    ) -> Result<String, PortError> {
        let dir = self.dir_of(queue_url)?;
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| io_error("SendMessage", &dir, &e))?;
        let id = new_id();
        let visible = now_millis() + delay.min(MAX_DELAY).as_millis();
        let path = dir.join(format!("{visible:015}-{id}.json"));
        let json = serde_json::json!({ "id": id, "receiveCount": 0, "body": body });
        tokio::fs::write(&path, json.to_string())
            .await
            .map_err(|e| io_error("SendMessage", &path, &e))?;
        Ok(id)
    }

    async fn receive(
        &self,
        queue_url: &str,
        max: u32,
        _wait: Duration,
    ) -> Result<Vec<Received>, PortError> {
        let dir = self.dir_of(queue_url)?;
        let mut names = Vec::new();
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("ReceiveMessage", &dir, &e)),
        };
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| io_error("ReceiveMessage", &dir, &e))?
        {
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
        names.sort();
        let now = now_millis();
        let mut out = Vec::new();
        for name in names {
            if out.len() >= max.clamp(1, 10) as usize {
                break;
            }
            let Some((visible, id)) = parse_queue_file(&name) else {
                continue;
            };
            if visible > now {
                continue;
            }
            let path = dir.join(&name);
            let Ok(text) = tokio::fs::read_to_string(&path).await else {
                continue;
            };
            let Ok(mut json) = serde_json::from_str::<serde_json::Value>(&text) else {
                continue;
            };
            let count = json["receiveCount"].as_u64().unwrap_or(0) + 1;
            json["receiveCount"] = count.into();
            let handle = format!("{:015}-{id}.json", now + VISIBILITY.as_millis());
            let moved = dir.join(&handle);
            // The rename is the claim: a concurrent receiver that loses it skips the message.
            if tokio::fs::rename(&path, &moved).await.is_err() {
                continue;
            }
            tokio::fs::write(&moved, json.to_string())
                .await
                .map_err(|e| io_error("ReceiveMessage", &moved, &e))?;
            out.push(Received {
                message_id: id.to_string(),
                receipt_handle: handle,
                body: json["body"].as_str().unwrap_or_default().to_string(),
                receive_count: u32::try_from(count).ok(),
            });
        }
        Ok(out)
    }

    async fn delete(&self, queue_url: &str, receipt_handle: &str) -> Result<(), PortError> {
        let dir = self.dir_of(queue_url)?;
        let path = dir.join(safe_relative("DeleteMessage", receipt_handle)?);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            // SQS accepts deleting an already-deleted message.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error("DeleteMessage", &path, &e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_delays_receives_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let q = LocalQueue::new(dir.path());
        let url = "https://sqs.us-east-1.amazonaws.com/123456789012/retry";
        q.send(url, "now", Duration::ZERO).await.unwrap();
        q.send(url, "later", Duration::from_secs(600))
            .await
            .unwrap();
        let got = q.receive(url, 10, Duration::ZERO).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "now");
        assert_eq!(got[0].receive_count, Some(1));
        assert!(
            q.receive(url, 10, Duration::ZERO).await.unwrap().is_empty(),
            "in flight and delayed messages are invisible"
        );
        q.delete(url, &got[0].receipt_handle).await.unwrap();
        q.delete(url, &got[0].receipt_handle).await.unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("sqs/retry"))
                .unwrap()
                .count(),
            1
        );
    }
}
