//! The durable record: one folder per SMTP transaction under `<state dir>/inbox/` (its
//! `record.json` and, when there was a message, `message.eml` as SES stored it), indexed in
//! SQLite (`inbox/index.sqlite`). The folders are the truth: an index that is missing or does
//! not open is rebuilt from them, so deleting it loses nothing.

use crate::query::{self, Query};
use mailroom_emulator::receipt::{Status, Trace};
use rusqlite::{Connection, OptionalExtension, params_from_iter};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use time::OffsetDateTime;

/// How much of a message's text the index keeps for free-text search.
const SEARCH_TEXT_BYTES: usize = 4096;
/// How much text a list row shows.
const SNIPPET_CHARS: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("the inbox index: {0}")]
    Index(#[from] rusqlite::Error),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("record {path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(transparent)]
    Query(#[from] query::QueryError),
    #[error("no message {0}")]
    NotFound(String),
}

/// Where a transaction came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// An SMTP client of `mailroom serve`.
    Smtp,
    /// `mailroom deliver`.
    Deliver,
    /// The inspector's inject form or API.
    Inject,
    /// A stored message run again.
    Replay,
}

/// One SMTP transaction as the client and the rule set saw it. Field names are the JSON API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub id: String,
    /// RFC 3339, UTC, milliseconds.
    pub received_at: String,
    pub source: Source,
    pub mail_from: String,
    pub recipients: Vec<String>,
    pub client_ip: String,
    pub helo: String,
    pub tls: bool,
    /// What the SMTP client read at the end of the transaction.
    pub reply: String,
    /// `accepted`, `bounced`, `stopped`, `refused` (at RCPT or by an IP filter) or `failed`.
    pub disposition: String,
    pub subject: String,
    /// The From header's first address, and its display name.
    pub from: String,
    #[serde(default)]
    pub from_name: String,
    /// The To and Cc headers' addresses.
    #[serde(default)]
    pub to: Vec<mailroom::email::Address>,
    #[serde(default)]
    pub cc: Vec<mailroom::email::Address>,
    /// The Message-ID header.
    #[serde(default)]
    pub message_id: String,
    pub size: u64,
    pub attachments: u32,
    pub snippet: String,
    /// `spam`, `virus`, `spf`, `dkim`, `dmarc` → `PASS`, `FAIL`, `GRAY`, ...
    pub verdicts: BTreeMap<String, String>,
    /// Rules that matched a recipient and ran.
    pub rules: Vec<String>,
    /// The api function's result: `delivered`, `retrying`, `failed`, `skipped`.
    pub webhook: Option<String>,
    /// The forward function's result: `sent`, `skipped`, `rejected`, `failed`.
    pub forward: Option<String>,
    /// Bytes SES (and AddHeader actions) put in front of the message as sent: the message as
    /// sent is `message.eml` from this offset.
    #[serde(default)]
    pub added_header_bytes: u64,
    /// The rule set's trace (absent when the recipient was refused at RCPT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<serde_json::Value>,
    /// The parameters the template was read with, for a replay to start from.
    #[serde(default)]
    pub params: Vec<(String, String)>,
    /// The template a replay was run through: its path and a digest of the file as read then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The start of the message's text, for free-text search: set by [`Record::from_trace`],
    /// which has the message parsed, so that [`Inbox::add`] does not parse it again. Not kept in
    /// `record.json`: a rebuild takes it from `message.eml`.
    #[serde(skip)]
    pub search_text: Option<String>,
}

impl Record {
    /// A message the rule set ran (or an IP filter refused). `raw_len` is the size of the
    /// message as sent; the trace's final message has SES's headers in front of it.
    pub fn from_trace(
        trace: &Trace,
        source: Source,
        envelope: &mailroom_emulator::receipt::Envelope,
        message: &[u8],
        raw_len: usize,
        reply: String,
    ) -> Record {
        let parsed = mailroom::Email::parse(message, &mailroom::Limits::default());
        let mut record = Record::without_message(source, envelope, reply, disposition(trace));
        if !trace.message_id.is_empty() {
            record.id.clone_from(&trace.message_id);
        }
        record.size = raw_len as u64;
        record.added_header_bytes = message.len().saturating_sub(raw_len) as u64;
        record.rules = trace
            .rules
            .iter()
            .filter(|r| r.skipped.is_none())
            .map(|r| r.name.clone())
            .collect();
        record.webhook = function_result(trace, "api", webhook_status);
        record.forward = function_result(trace, "forward", forward_status);
        record.trace = serde_json::to_value(trace).ok();
        match parsed {
            Ok(p) => {
                let e = p.email;
                if let Some(first) = e.from.first() {
                    record.from.clone_from(&first.address);
                    record.from_name = first.name.clone().unwrap_or_default();
                }
                record.verdicts = verdicts(&e.headers);
                record.subject = e.subject.unwrap_or_default();
                record.message_id = e.message_id.unwrap_or_default();
                record.snippet = e.text.as_deref().map(snippet).unwrap_or_default();
                record.search_text = Some(search_text(e.text.as_deref()));
                record.attachments = u32::try_from(e.attachments.len()).unwrap_or(u32::MAX);
                record.to = e.to;
                record.cc = e.cc;
            }
            Err(_) if !message.is_empty() => {
                record.snippet = "(the message does not parse)".into();
            }
            Err(_) => {}
        }
        record
    }

    /// A recipient refused at RCPT: there is no message.
    pub fn refused(refusal: &mailroom_emulator::smtp::Refusal) -> Record {
        let envelope = mailroom_emulator::receipt::Envelope {
            mail_from: refusal.mail_from.clone(),
            recipients: vec![refusal.recipient.clone()],
            helo: refusal.helo.clone(),
            client_ip: refusal.client_ip.clone(),
            tls: refusal.tls,
        };
        Record::without_message(Source::Smtp, &envelope, refusal.reply.clone(), "refused")
    }

    /// A transaction that ended before the rule set ran: refused, or a message the emulator
    /// could not take (`failed`).
    pub fn without_message(
        source: Source,
        envelope: &mailroom_emulator::receipt::Envelope,
        reply: String,
        disposition: &str,
    ) -> Record {
        Record {
            // In the form of SES's message ids, for transactions that have none.
            id: mailroom_emulator::receipt::new_message_id(),
            received_at: now_rfc3339(),
            source,
            mail_from: envelope.mail_from.clone(),
            recipients: envelope.recipients.clone(),
            client_ip: envelope.client_ip.clone(),
            helo: envelope.helo.clone(),
            tls: envelope.tls,
            reply,
            disposition: disposition.into(),
            subject: String::new(),
            from: String::new(),
            from_name: String::new(),
            to: Vec::new(),
            cc: Vec::new(),
            message_id: String::new(),
            size: 0,
            attachments: 0,
            snippet: String::new(),
            verdicts: BTreeMap::new(),
            rules: Vec::new(),
            webhook: None,
            forward: None,
            added_header_bytes: 0,
            trace: None,
            params: Vec::new(),
            template: None,
            search_text: None,
        }
    }

    pub fn received_ms(&self) -> i64 {
        OffsetDateTime::parse(
            &self.received_at,
            &time::format_description::well_known::Rfc3339,
        )
        .map(|t| i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
        .unwrap_or(0)
    }

    /// The record without its trace: what a list row needs.
    pub fn summary(&self) -> Record {
        Record {
            trace: None,
            ..self.clone()
        }
    }
}

/// `accepted` unless something else ended the transaction.
fn disposition(trace: &Trace) -> &'static str {
    if trace.ip_filter.as_ref().is_some_and(|d| d.refused)
        || (trace.rules.is_empty() && !trace.rejected.is_empty())
    {
        return "refused";
    }
    let actions = || trace.rules.iter().flat_map(|r| &r.actions);
    let bounced = actions().any(|a| {
        a.status == Status::Ok
            && (a.kind == "Bounce"
                || (a.function.as_deref() == Some("bounce")
                    && a.disposition.as_deref() == Some("STOP_RULE_SET")))
    });
    if bounced {
        "bounced"
    } else if trace.stopped.is_some() {
        "stopped"
    } else if trace.failed() {
        "failed"
    } else {
        "accepted"
    }
}

/// The status of the first answer of the last action that ran `function`, mapped by `status`.
fn function_result(
    trace: &Trace,
    function: &str,
    status: fn(&serde_json::Value) -> &'static str,
) -> Option<String> {
    let action = trace
        .rules
        .iter()
        .rev()
        .flat_map(|r| r.actions.iter().rev())
        .find(|a| a.function.as_deref() == Some(function))?;
    if matches!(action.status, Status::Failed { .. }) {
        return Some("failed".into());
    }
    // An asynchronous invocation's summary is the JSON answer, after a note of earlier failed
    // attempts when there were some.
    let summary = action.summary.as_deref().unwrap_or_default();
    let answer: serde_json::Value = summary
        .find('[')
        .and_then(|i| serde_json::from_str(&summary[i..]).ok())
        .unwrap_or_default();
    let first = answer.get(0).cloned().unwrap_or_default();
    Some(status(&first).to_string())
}

fn webhook_status(answer: &serde_json::Value) -> &'static str {
    match answer.get("status").and_then(|s| s.as_str()) {
        Some("delivered") => "delivered",
        Some("scheduled" | "deferred" | "postponed") => "retrying",
        Some("dead_lettered") => "failed",
        Some("skipped") => "skipped",
        _ => "unknown",
    }
}

fn forward_status(answer: &serde_json::Value) -> &'static str {
    match answer.get("status").and_then(|s| s.as_str()) {
        Some("forwarded") => {
            let deliveries = answer.get("deliveries").and_then(|d| d.as_array());
            let rejected = deliveries.is_some_and(|d| {
                d.iter()
                    .any(|d| d.get("status").and_then(|s| s.as_str()) == Some("rejected"))
            });
            if rejected { "rejected" } else { "sent" }
        }
        Some("skipped") => "skipped",
        Some("raw_missing") => "failed",
        _ => "unknown",
    }
}

/// The verdicts SES wrote into the message's headers: `X-SES-Spam-Verdict`,
/// `X-SES-Virus-Verdict`, and `Authentication-Results`' spf, dkim and dmarc. The topmost of each
/// wins: SES's own are in front of any a sender (or an earlier hop) put in the message.
fn verdicts(headers: &[mailroom::email::Header]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for h in headers {
        let name = h.name.to_ascii_lowercase();
        let value = h.value.trim();
        match name.as_str() {
            "x-ses-spam-verdict" => {
                out.entry("spam".to_string())
                    .or_insert_with(|| value.to_ascii_uppercase());
            }
            "x-ses-virus-verdict" => {
                out.entry("virus".to_string())
                    .or_insert_with(|| value.to_ascii_uppercase());
            }
            "authentication-results" if value.starts_with("amazonses.com") => {
                for part in value.split([';', ' ']) {
                    if let Some((k, v)) = part.trim().split_once('=')
                        && matches!(k, "spf" | "dkim" | "dmarc")
                    {
                        out.entry(k.to_string())
                            .or_insert_with(|| v.to_ascii_uppercase());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn snippet(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut s = String::new();
    for w in words {
        if s.chars().count() + w.chars().count() > SNIPPET_CHARS {
            break;
        }
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(w);
    }
    s
}

fn now_rfc3339() -> String {
    let now = OffsetDateTime::now_utc();
    let t = now
        .replace_nanosecond(now.millisecond() as u32 * 1_000_000)
        .unwrap_or(now);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// How much is kept: the newest `max_messages`, none older than `max_age`.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// 0 keeps every message.
    pub max_messages: usize,
    pub max_age: Option<std::time::Duration>,
}

impl Default for Retention {
    /// Mailpit's default: the newest 500.
    fn default() -> Self {
        Retention {
            max_messages: 500,
            max_age: None,
        }
    }
}

/// One page of a listing.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    /// Messages in the inbox.
    pub total: u64,
    /// Messages that match the query.
    pub matched: u64,
    pub start: u64,
    pub messages: Vec<Record>,
}

/// The inbox: records on disk, their index, and a channel that announces each new one.
pub struct Inbox {
    dir: PathBuf,
    db: Mutex<Connection>,
    retention: Retention,
    news: tokio::sync::broadcast::Sender<Record>,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").field("dir", &self.dir).finish()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    mail_from TEXT NOT NULL,
    recipients TEXT NOT NULL,
    subject TEXT NOT NULL,
    from_addr TEXT NOT NULL,
    attachments INTEGER NOT NULL,
    disposition TEXT NOT NULL,
    verdicts TEXT NOT NULL,
    rules TEXT NOT NULL,
    webhook TEXT NOT NULL,
    forward TEXT NOT NULL,
    search TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (received_ms DESC, id DESC);
";

impl Inbox {
    /// Opens (or creates) the inbox under `state_dir`, rebuilding the index from the records
    /// when it is missing or does not open.
    pub fn open(state_dir: &Path, retention: Retention) -> Result<Inbox, RecordError> {
        let dir = state_dir.join("inbox");
        std::fs::create_dir_all(&dir).map_err(|source| RecordError::Io {
            what: "creating",
            path: dir.clone(),
            source,
        })?;
        let index = dir.join("index.sqlite");
        let existed = index.exists();
        let db = match open_index(&index) {
            Ok(db) => db,
            Err(_) if existed => {
                // A damaged index is only a cache of the folders: start it again.
                let aside = dir.join("index.sqlite.damaged");
                let _ = std::fs::rename(&index, &aside);
                open_index(&index)?
            }
            Err(e) => return Err(e.into()),
        };
        let (news, _) = tokio::sync::broadcast::channel(256);
        let inbox = Inbox {
            dir,
            db: Mutex::new(db),
            retention,
            news,
        };
        if !existed || inbox.count()? == 0 {
            inbox.rebuild()?;
        }
        inbox.prune()?;
        Ok(inbox)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// New records as they are added.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Record> {
        self.news.subscribe()
    }

    fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves a connection that is still consistent (every
        // write is one statement or one transaction), so a poisoned lock is taken over.
        self.db
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Re-reads every record folder into the index.
    pub fn rebuild(&self) -> Result<usize, RecordError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| RecordError::Io {
            what: "reading",
            path: self.dir.clone(),
            source,
        })?;
        let mut records = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path().join("record.json");
            if let Ok(text) = std::fs::read(&path) {
                match serde_json::from_slice::<Record>(&text) {
                    Ok(r) => records.push((r, self.search_text(&entry.path()))),
                    Err(e) => eprintln!("mailroom: skipping {}: {e}", path.display()),
                }
            }
        }
        let mut db = self.db();
        let tx = db.transaction()?;
        for (r, text) in &records {
            insert(&tx, r, text)?;
        }
        tx.commit()?;
        Ok(records.len())
    }

    /// The search text of a stored message, read back from its folder.
    fn search_text(&self, folder: &Path) -> String {
        std::fs::read(folder.join("message.eml"))
            .map(|m| text_of(&m))
            .unwrap_or_default()
    }

    /// Stores a transaction (and its message, when it had one) and announces it.
    pub fn add(&self, record: &Record, message: Option<&[u8]>) -> Result<(), RecordError> {
        let folder = self.folder(&record.id)?;
        std::fs::create_dir_all(&folder).map_err(|source| RecordError::Io {
            what: "creating",
            path: folder.clone(),
            source,
        })?;
        let mut text = String::new();
        if let Some(message) = message {
            write(&folder.join("message.eml"), message)?;
            text = match &record.search_text {
                Some(t) => t.clone(),
                None => text_of(message),
            };
        }
        // The record is written last: a folder without one is an unfinished write that the
        // rebuild ignores.
        write_record(&folder, record)?;
        insert(&self.db(), record, &text)?;
        self.prune()?;
        let _ = self.news.send(record.summary());
        Ok(())
    }

    /// Sets a record's webhook status, after its delivery went on from the page (a retry run
    /// now, a redelivery), and announces it so the list shows it.
    pub fn set_webhook(&self, id: &str, status: &str) -> Result<(), RecordError> {
        let mut record = self.get(id)?;
        if record.webhook.as_deref() == Some(status) {
            return Ok(());
        }
        record.webhook = Some(status.to_string());
        write_record(&self.folder(&record.id)?, &record)?;
        let summary = record.summary();
        self.db().execute(
            "UPDATE messages SET webhook = ?1, summary = ?2 WHERE id = ?3",
            rusqlite::params![
                status,
                serde_json::to_string(&summary).unwrap_or_default(),
                record.id
            ],
        )?;
        let _ = self.news.send(summary);
        Ok(())
    }

    /// The folder of a record, refusing ids that are not one (a path, `..`).
    fn folder(&self, id: &str) -> Result<PathBuf, RecordError> {
        let plain = !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if plain {
            Ok(self.dir.join(id))
        } else {
            Err(RecordError::NotFound(id.to_string()))
        }
    }

    pub fn count(&self) -> Result<u64, RecordError> {
        let n: i64 = self
            .db()
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Newest first, `limit` from `start`, those that match `query`.
    pub fn list(&self, query: &Query, start: u64, limit: u64) -> Result<Page, RecordError> {
        let (clause, args) = query.to_sql();
        let db = self.db();
        let total: i64 = db.query_row("SELECT count(*) FROM messages", [], |r| r.get(0))?;
        let matched: i64 = db.query_row(
            &format!("SELECT count(*) FROM messages WHERE {clause}"),
            params_from_iter(args.iter()),
            |r| r.get(0),
        )?;
        let mut stmt = db.prepare(&format!(
            "SELECT summary FROM messages WHERE {clause} \
             ORDER BY received_ms DESC, id DESC LIMIT {limit} OFFSET {start}"
        ))?;
        let rows = stmt.query_map(params_from_iter(args.iter()), |r| r.get::<_, String>(0))?;
        let mut messages = Vec::new();
        for row in rows {
            if let Ok(r) = serde_json::from_str::<Record>(&row?) {
                messages.push(r);
            }
        }
        Ok(Page {
            total: u64::try_from(total).unwrap_or(0),
            matched: u64::try_from(matched).unwrap_or(0),
            start,
            messages,
        })
    }

    /// The newest record's id (`latest` in Mailpit's routes).
    pub fn latest(&self) -> Result<Option<String>, RecordError> {
        Ok(self
            .db()
            .query_row(
                "SELECT id FROM messages ORDER BY received_ms DESC, id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// One record, with its trace. `latest` is the newest.
    pub fn get(&self, id: &str) -> Result<Record, RecordError> {
        let id = self.resolve(id)?;
        let path = self.folder(&id)?.join("record.json");
        let text = std::fs::read(&path).map_err(|_| RecordError::NotFound(id.clone()))?;
        serde_json::from_slice(&text).map_err(|source| RecordError::Json { path, source })
    }

    fn resolve(&self, id: &str) -> Result<String, RecordError> {
        if id == "latest" {
            self.latest()?
                .ok_or_else(|| RecordError::NotFound("latest".into()))
        } else {
            Ok(id.to_string())
        }
    }

    /// The message as SES stored it (SES's headers in front); `None` for a refused recipient.
    pub fn message(&self, id: &str) -> Result<Option<Vec<u8>>, RecordError> {
        let id = self.resolve(id)?;
        let path = self.folder(&id)?.join("message.eml");
        match std::fs::read(&path) {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if self.folder(&id)?.join("record.json").exists() {
                    Ok(None)
                } else {
                    Err(RecordError::NotFound(id))
                }
            }
            Err(source) => Err(RecordError::Io {
                what: "reading",
                path,
                source,
            }),
        }
    }

    /// Deletes these records; all of them when `ids` is empty. Returns how many went.
    pub fn delete(&self, ids: &[String]) -> Result<usize, RecordError> {
        let ids: Vec<String> = if ids.is_empty() {
            let db = self.db();
            let mut stmt = db.prepare("SELECT id FROM messages")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        } else {
            ids.to_vec()
        };
        let mut gone = 0;
        for id in &ids {
            let Ok(folder) = self.folder(id) else {
                continue;
            };
            if self
                .db()
                .execute("DELETE FROM messages WHERE id = ?1", [id])?
                > 0
            {
                gone += 1;
            }
            let _ = std::fs::remove_dir_all(folder);
        }
        Ok(gone)
    }

    /// Ids matching `query`.
    pub fn ids(&self, query: &Query) -> Result<Vec<String>, RecordError> {
        let (clause, args) = query.to_sql();
        let db = self.db();
        let mut stmt = db.prepare(&format!("SELECT id FROM messages WHERE {clause}"))?;
        let ids = stmt
            .query_map(params_from_iter(args.iter()), |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(ids)
    }

    /// Drops what the retention no longer keeps.
    fn prune(&self) -> Result<(), RecordError> {
        let mut doomed: Vec<String> = Vec::new();
        {
            let db = self.db();
            if self.retention.max_messages > 0 {
                let mut stmt = db.prepare(
                    "SELECT id FROM messages ORDER BY received_ms DESC, id DESC LIMIT -1 OFFSET ?1",
                )?;
                let keep = i64::try_from(self.retention.max_messages).unwrap_or(i64::MAX);
                doomed.extend(
                    stmt.query_map([keep], |r| r.get::<_, String>(0))?
                        .collect::<Result<Vec<_>, _>>()?,
                );
            }
            if let Some(age) = self.retention.max_age {
                let now = OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
                let cutoff = i64::try_from(now - age.as_millis() as i128).unwrap_or(0);
                let mut stmt = db.prepare("SELECT id FROM messages WHERE received_ms < ?1")?;
                doomed.extend(
                    stmt.query_map([cutoff], |r| r.get::<_, String>(0))?
                        .collect::<Result<Vec<_>, _>>()?,
                );
            }
        }
        if !doomed.is_empty() {
            doomed.sort();
            doomed.dedup();
            self.delete(&doomed)?;
        }
        Ok(())
    }
}

fn open_index(path: &Path) -> Result<Connection, rusqlite::Error> {
    let db = Connection::open(path)?;
    // WAL: the web server reads while SMTP sessions write.
    db.pragma_update(None, "journal_mode", "WAL")?;
    db.pragma_update(None, "synchronous", "NORMAL")?;
    db.execute_batch(SCHEMA)?;
    // A file that is not a database fails here rather than on the first query.
    db.query_row("SELECT count(*) FROM messages", [], |r| r.get::<_, i64>(0))?;
    Ok(db)
}

fn insert(db: &Connection, r: &Record, text: &str) -> Result<(), rusqlite::Error> {
    let verdicts: Vec<String> = r.verdicts.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let search = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        r.subject,
        r.from,
        r.mail_from,
        r.recipients.join(" "),
        r.snippet,
        text
    )
    .to_lowercase();
    let summary = serde_json::to_string(&r.summary()).unwrap_or_default();
    db.execute(
        "INSERT OR REPLACE INTO messages (id, received_ms, mail_from, recipients, subject, \
         from_addr, attachments, disposition, verdicts, rules, webhook, forward, search, summary) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        rusqlite::params![
            r.id,
            r.received_ms(),
            r.mail_from.to_lowercase(),
            r.recipients.join("\n").to_lowercase(),
            r.subject.to_lowercase(),
            r.from.to_lowercase(),
            r.attachments,
            r.disposition,
            format!(" {} ", verdicts.join(" ")).to_lowercase(),
            format!("\n{}\n", r.rules.join("\n")).to_lowercase(),
            r.webhook.clone().unwrap_or_default(),
            r.forward.clone().unwrap_or_default(),
            search,
            summary,
        ],
    )?;
    Ok(())
}

/// The start of a text, as much as free-text search keeps.
fn search_text(text: Option<&str>) -> String {
    text.map(|t| truncate(t, SEARCH_TEXT_BYTES).to_string())
        .unwrap_or_default()
}

/// The search text of a raw message.
fn text_of(message: &[u8]) -> String {
    let parsed = mailroom::Email::parse(message, &mailroom::Limits::default()).ok();
    search_text(parsed.as_ref().and_then(|p| p.email.text.as_deref()))
}

/// `record.json` in a record's folder.
fn write_record(folder: &Path, record: &Record) -> Result<(), RecordError> {
    let json = serde_json::to_vec_pretty(record).map_err(|source| RecordError::Json {
        path: folder.to_path_buf(),
        source,
    })?;
    write(&folder.join("record.json"), &json)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), RecordError> {
    std::fs::write(path, bytes).map_err(|source| RecordError::Io {
        what: "writing",
        path: path.to_path_buf(),
        source,
    })
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
