//! The inspector's HTTP server: the web inbox (server-rendered pages, one small script for live
//! updates), its JSON API, and a Mailpit-compatible subset.
//!
//! Safety: every page carries a Content-Security-Policy that allows only this server's own
//! script and styles. A message's HTML is served on its own route with a policy of its own
//! (`sandbox`, no script, no network, no remote images unless asked) and shown in a sandboxed
//! frame. Requests must name a loopback host (a DNS-rebinding page cannot reach the API), and
//! the pages' state-changing actions are POSTs with a token made for this run.

use crate::mailpit;
use crate::query::Query;
use crate::record::{Inbox, Record, RecordError};
use crate::ui;
use axum::Router;
use axum::extract::{Path, Query as Params, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Runs a message through the rule set for the inspector: injected from its form, or a stored
/// message replayed, with the template's parameters changed. The implementation records the run
/// and answers its record.
#[async_trait::async_trait]
pub trait Runner: Send + Sync {
    async fn run(&self, run: Run) -> Result<Record, String>;

    /// Invokes one function (by logical id) once with the exact event a rule gave it: "redeliver
    /// now" for the api function, "invoke again" for any. Its answer and where its outputs went.
    /// `record` is the run the action belongs to: a replay's parameters apply again.
    async fn invoke(
        &self,
        record: &Record,
        logical_id: &str,
        event: &serde_json::Value,
    ) -> Result<Invoked, String>;

    /// How the function with this logical id retries, when it keeps a retry queue (api).
    fn retries(&self, _logical_id: &str) -> Option<mailroom_emulator::functions::Retries> {
        None
    }

    /// Hands a job waiting in the function's retry queue (`job`, a file under the state dir) to
    /// the function now, as the queue's trigger would once the job is due.
    async fn retry_now(
        &self,
        record: &Record,
        logical_id: &str,
        job: &std::path::Path,
    ) -> Result<Invoked, String>;

    /// Where a recorded Lambda event is saved for `sam local invoke -e` (the project's
    /// `events/lambda/`, beside the template).
    fn events_dir(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// The template file a replay reads, and whether it changed since the server read it.
    fn template(&self) -> Option<TemplateFile> {
        None
    }
}

/// The template a replay runs through: the file as it is on disk when the replay runs.
#[derive(Debug, Clone)]
pub struct TemplateFile {
    pub path: String,
    /// The file differs from what the server loaded at start (or cannot be read now).
    pub changed: bool,
}

impl TemplateFile {
    /// The first 12 hex digits of a file's SHA-256; `None` when it cannot be read.
    pub fn digest_of(path: &std::path::Path) -> Option<String> {
        use sha2::Digest;
        let bytes = std::fs::read(path).ok()?;
        Some(hex::encode(&sha2::Sha256::digest(&bytes)[..6]))
    }
}

/// What an invocation from the inspector did.
#[derive(Debug, Clone)]
pub struct Invoked {
    pub logical_id: String,
    pub answer: String,
    pub outputs: Vec<String>,
    pub duration_ms: u64,
}

/// One message to run.
#[derive(Debug, Clone)]
pub struct Run {
    /// The message as sent (no SES headers).
    pub raw: Vec<u8>,
    pub envelope: mailroom_emulator::receipt::Envelope,
    /// Template parameter overrides for this run only (replay); empty: the server's own.
    pub params: Vec<(String, String)>,
    pub source: crate::record::Source,
}

/// What the handlers share.
pub struct Inspector {
    pub inbox: Arc<Inbox>,
    /// Runs injected and replayed mail; `None` where there is no rule set to run (`inspect`).
    pub runner: Option<Arc<dyn Runner>>,
    /// The per-run token every state-changing form carries.
    pub token: String,
    /// The address the server answers on, shown in the pages.
    pub label: String,
    /// The non-loopback address it listens on, when asked to.
    pub exposed: Option<std::net::IpAddr>,
}

pub type Shared = Arc<Inspector>;

impl Inspector {
    /// The state dir the record is kept in (the inbox's parent).
    pub fn state_dir(&self) -> std::path::PathBuf {
        self.inbox
            .dir()
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default()
    }

    pub fn new(inbox: Arc<Inbox>, runner: Option<Arc<dyn Runner>>, label: String) -> Shared {
        Inspector::build(inbox, runner, label, None)
    }

    /// An inspector listening on `ip`, which is not loopback (asked for with
    /// `--ui-allow-remote`): requests may name it in Host, and any Host when it is the
    /// unspecified address (0.0.0.0, ::), since the machine's names are then all valid.
    pub fn exposed(
        inbox: Arc<Inbox>,
        runner: Option<Arc<dyn Runner>>,
        label: String,
        ip: std::net::IpAddr,
    ) -> Shared {
        Inspector::build(inbox, runner, label, Some(ip))
    }

    fn build(
        inbox: Arc<Inbox>,
        runner: Option<Arc<dyn Runner>>,
        label: String,
        exposed: Option<std::net::IpAddr>,
    ) -> Shared {
        Arc::new(Inspector {
            inbox,
            runner,
            token: mailroom_emulator::receipt::new_message_id(),
            label,
            exposed,
        })
    }
}

/// The pages' policy: this origin's script and styles, frames of this origin (the message's
/// HTML), nothing else.
const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// A message's HTML: no script, no plugin, no fetch, no form, inline styles and `data:`
/// images only; `sandbox` makes it an opaque origin even if opened outside the frame.
const MAIL_CSP: &str = "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
     font-src data:; form-action 'none'; base-uri 'none'; frame-ancestors 'self'";
/// The same, with remote images, once the reader asks for them.
const MAIL_CSP_IMAGES: &str = "sandbox; default-src 'none'; style-src 'unsafe-inline'; \
     img-src data: http: https:; font-src data:; form-action 'none'; base-uri 'none'; \
     frame-ancestors 'self'";

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(list_page))
        .route("/rows", get(rows_fragment))
        .route("/message/{id}", get(message_page))
        .route("/message/{id}/html", get(message_html))
        .route("/message/{id}/delete", post(delete_one))
        .route("/message/{id}/replay", post(replay))
        .route("/message/{id}/invoke", post(invoke_again))
        .route("/message/{id}/retry", post(retry_now))
        .route("/message/{id}/save-event", post(save_event))
        .route("/message/{id}/mime/{n}", get(mime_part))
        .route("/message/{id}/attempts/{webhook}", get(attempts_page))
        .route("/compare/{a}/{b}", get(compare))
        .route("/inject", get(inject_page).post(inject))
        .route("/state/{*path}", get(state_file))
        .route("/delete", post(delete_all))
        .route("/assets/style.css", get(style))
        .route("/assets/app.js", get(script))
        .route("/api/messages", get(api_list))
        .route("/api/message/{id}", get(api_message))
        .route("/api/message/{id}/webhooks", get(api_webhooks))
        .route("/api/message/{id}/mime", get(api_mime))
        .route("/api/wait", get(api_wait))
        .route("/api/events", get(api_events))
        .route(
            "/api/v1/messages",
            get(mailpit::messages).delete(mailpit::delete_messages),
        )
        .route(
            "/api/v1/search",
            get(mailpit::search).delete(mailpit::delete_search),
        )
        .route("/api/v1/message/{id}", get(mailpit::message))
        .route("/api/v1/message/{id}/raw", get(mailpit::raw))
        .route("/api/v1/message/{id}/headers", get(mailpit::headers))
        .route("/api/v1/message/{id}/part/{part}", get(mailpit::part))
        .route("/api/v1/info", get(mailpit::info))
        .route("/view/{file}", get(mailpit::view))
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Serves `router` on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, state: Shared) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}

/// Refuses a Host the server is not reached by (a loopback name, unless exposed), and sets the
/// headers every answer carries.
async fn guard(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !host_allowed(&host, s.exposed) {
        return (
            StatusCode::FORBIDDEN,
            format!("Host {host:?} is not a loopback name: the inspector answers 127.0.0.1, [::1] and localhost only\n"),
        )
            .into_response();
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_CSP),
        );
    }
    resp
}

/// `127.0.0.1:8025`, `localhost`, `[::1]:8025`; and, for an inspector exposed on another
/// address, that address (or any name, when it listens on all of them).
pub fn host_allowed(host: &str, exposed: Option<std::net::IpAddr>) -> bool {
    if exposed.is_some_and(|ip| ip.is_unspecified()) {
        return true;
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(n, _)| n)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || Some(ip) == exposed)
}

/// A typed error as an HTTP answer.
pub struct WebError(pub StatusCode, pub String);

impl From<RecordError> for WebError {
    fn from(e: RecordError) -> Self {
        let status = match e {
            RecordError::NotFound(_) => StatusCode::NOT_FOUND,
            RecordError::Query(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        WebError(status, e.to_string())
    }
}

impl From<crate::query::QueryError> for WebError {
    fn from(e: crate::query::QueryError) -> Self {
        WebError(StatusCode::BAD_REQUEST, e.to_string())
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        (self.0, format!("{}\n", self.1)).into_response()
    }
}

pub type WebResult<T> = Result<T, WebError>;

#[derive(Debug, Deserialize, Default)]
pub struct ListParams {
    #[serde(default, alias = "query")]
    pub q: String,
    #[serde(default)]
    pub start: u64,
    pub limit: Option<u64>,
}

impl ListParams {
    pub fn limit(&self) -> u64 {
        self.limit.unwrap_or(50).clamp(1, 1000)
    }
}

async fn list_page(State(s): State<Shared>, Params(p): Params<ListParams>) -> WebResult<Response> {
    let query = Query::parse(&p.q);
    let (page, error) = match &query {
        Ok(q) => (s.inbox.list(q, p.start, p.limit())?, None),
        Err(e) => (s.inbox.list(&Query::default(), 0, 0)?, Some(e.to_string())),
    };
    Ok(html(ui::list_page(&s, &p, &page, error.as_deref())))
}

async fn rows_fragment(
    State(s): State<Shared>,
    Params(p): Params<ListParams>,
) -> WebResult<Response> {
    let page = s.inbox.list(&Query::parse(&p.q)?, p.start, p.limit())?;
    Ok(html(ui::rows(&page)))
}

async fn message_page(State(s): State<Shared>, Path(id): Path<String>) -> WebResult<Response> {
    let record = s.inbox.get(&id)?;
    let message = s.inbox.message(&record.id)?;
    let deliveries = deliveries(&s, &record);
    Ok(html(ui::message_page(
        &s,
        &record,
        message.as_deref(),
        &deliveries,
    )))
}

/// One part of a message's MIME structure, decoded, as a download that is never a page here.
async fn mime_part(
    State(s): State<Shared>,
    Path((id, n)): Path<(String, usize)>,
) -> WebResult<Response> {
    let not_found = || WebError(StatusCode::NOT_FOUND, format!("no part {n} in {id}"));
    let message = s.inbox.message(&id)?.ok_or_else(not_found)?;
    let (node, bytes) = crate::mime::part(&message, n)
        .filter(|(node, _)| node.downloadable())
        .ok_or_else(not_found)?;
    let name = mailroom::keys::safe_filename(node.filename.as_deref(), n, &node.content_type);
    let disposition =
        mailroom::served::content_disposition(mailroom::email::Disposition::Attachment, &name);
    Ok(download(
        bytes,
        "application/octet-stream",
        Some(&disposition),
    ))
}

/// Bytes from mail or the state dir, served so that whatever they claim to be they are never a
/// page of this origin (the `nosniff` every answer carries does the rest).
pub(crate) fn download(body: Vec<u8>, content_type: &str, disposition: Option<&str>) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    if let Some(Ok(v)) = disposition.map(HeaderValue::from_str) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'"),
    );
    resp
}

/// The webhook deliveries of a record's api actions, with the schedule when a rule set is loaded.
fn deliveries(s: &Inspector, record: &Record) -> crate::webhooks::Deliveries {
    let runner = s.runner.clone();
    crate::webhooks::of_record(record, &s.state_dir(), &|id| {
        runner.as_ref().and_then(|r| r.retries(id))
    })
}

/// After a delivery went on from the page, the record's webhook status follows its attempts.
fn follow_webhook(s: &Inspector, record: &Record) {
    if let Some(status) = crate::webhooks::status(&deliveries(s, record))
        && let Err(e) = s.inbox.set_webhook(&record.id, status)
    {
        eprintln!(
            "mailroom: inspector: webhook status of {} not updated: {e}",
            record.id
        );
    }
}

async fn attempts_page(
    State(s): State<Shared>,
    Path((id, webhook)): Path<(String, String)>,
) -> WebResult<Response> {
    let record = s.inbox.get(&id)?;
    let delivery = deliveries(&s, &record)
        .into_iter()
        .flat_map(|(_, d)| d)
        .find(|d| d.webhook_id == webhook)
        .ok_or_else(|| {
            WebError(
                StatusCode::NOT_FOUND,
                format!("{id} delivered no webhook {webhook}"),
            )
        })?;
    Ok(html(ui::attempts_page(&s, &record, &delivery)))
}

#[derive(Debug, Deserialize, Default)]
struct HtmlParams {
    #[serde(default)]
    images: Option<String>,
}

async fn message_html(
    State(s): State<Shared>,
    Path(id): Path<String>,
    Params(p): Params<HtmlParams>,
) -> WebResult<Response> {
    let html_body = s
        .inbox
        .message(&id)?
        .and_then(|m| mailroom::Email::parse(&m, &mailroom::Limits::default()).ok())
        .and_then(|p| p.email.html)
        .unwrap_or_default();
    Ok(mail_html(html_body, p.images.as_deref() == Some("remote")))
}

/// A message's own HTML, under the policy that keeps it from running script or reaching the
/// network (remote images only when the reader asked for them).
pub(crate) fn mail_html(body: String, remote_images: bool) -> Response {
    let csp = if remote_images {
        MAIL_CSP_IMAGES
    } else {
        MAIL_CSP
    };
    let mut resp = html_string(body);
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    resp
}

#[derive(Debug, Deserialize)]
struct TokenForm {
    #[serde(default)]
    token: String,
}

fn check_token(s: &Inspector, token: &str) -> WebResult<()> {
    if token == s.token {
        Ok(())
    } else {
        Err(WebError(
            StatusCode::FORBIDDEN,
            "missing or stale form token: reload the page and try again".into(),
        ))
    }
}

async fn delete_one(
    State(s): State<Shared>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<TokenForm>,
) -> WebResult<Response> {
    check_token(&s, &form.token)?;
    s.inbox.delete(&[id])?;
    Ok(Redirect::to("/").into_response())
}

async fn delete_all(
    State(s): State<Shared>,
    axum::Form(form): axum::Form<TokenForm>,
) -> WebResult<Response> {
    check_token(&s, &form.token)?;
    s.inbox.delete(&[])?;
    Ok(Redirect::to("/").into_response())
}

fn runner(s: &Inspector) -> WebResult<Arc<dyn Runner>> {
    s.runner.clone().ok_or_else(|| {
        WebError(
            StatusCode::NOT_IMPLEMENTED,
            "this inspector has no rule set to run mail through: start it with `mailroom serve`"
                .into(),
        )
    })
}

#[derive(Debug, Deserialize)]
struct ReplayForm {
    #[serde(default)]
    token: String,
    /// `Key=Value` per line.
    #[serde(default)]
    params: String,
}

/// Runs a stored message again, as it was sent, with the parameters of the form, and shows
/// both traces side by side.
async fn replay(
    State(s): State<Shared>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<ReplayForm>,
) -> WebResult<Response> {
    check_token(&s, &form.token)?;
    let runner = runner(&s)?;
    let record = s.inbox.get(&id)?;
    let message = s.inbox.message(&record.id)?.ok_or_else(|| {
        WebError(
            StatusCode::CONFLICT,
            "refused at RCPT: there is no message to replay".into(),
        )
    })?;
    let skip = usize::try_from(record.added_header_bytes).unwrap_or(0);
    let raw = message.get(skip..).unwrap_or_default().to_vec();
    let params = parse_params(&form.params)?;
    let run = Run {
        raw,
        envelope: mailroom_emulator::receipt::Envelope {
            mail_from: record.mail_from.clone(),
            recipients: record.recipients.clone(),
            helo: record.helo.clone(),
            client_ip: record.client_ip.clone(),
            tls: record.tls,
        },
        params,
        source: crate::record::Source::Replay,
    };
    let again = runner
        .run(run)
        .await
        .map_err(|e| WebError(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    Ok(Redirect::to(&format!("/compare/{}/{}", record.id, again.id)).into_response())
}

/// Action `action` of rule `rule` in a record's trace, when it runs one of our functions.
fn lambda_action(record: &Record, rule: usize, action: usize) -> WebResult<serde_json::Value> {
    record
        .trace
        .as_ref()
        .and_then(|t| t.get("rules"))
        .and_then(|r| r.get(rule))
        .and_then(|r| r.get("actions"))
        .and_then(|a| a.get(action))
        .filter(|a| a.get("logicalId").is_some_and(serde_json::Value::is_string))
        .cloned()
        .ok_or_else(|| not_ours(record, rule, action))
}

fn not_ours(record: &Record, rule: usize, action: usize) -> WebError {
    WebError(
        StatusCode::NOT_FOUND,
        format!(
            "rule {rule} action {action} of {} is no Lambda action of ours",
            record.id
        ),
    )
}

#[derive(Debug, Deserialize)]
struct InvokeForm {
    #[serde(default)]
    token: String,
    rule: usize,
    action: usize,
    /// A retry job's file, relative to the state dir ("run attempt n now").
    #[serde(default)]
    job: Option<String>,
    /// The file name an event is saved as ("save under events/").
    #[serde(default)]
    name: Option<String>,
    /// Replace a saved event of that name.
    #[serde(default)]
    replace: Option<String>,
}

/// A file name for a saved event: letters, digits, `-`, `_` and `.`, not starting with a dot,
/// `.json` added when missing.
fn event_file_name(name: &str) -> WebResult<String> {
    let name = name.trim();
    let stem = name.strip_suffix(".json").unwrap_or(name);
    let plain = !stem.is_empty()
        && stem.len() <= 100
        && !stem.starts_with('.')
        && stem
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if plain {
        Ok(format!("{stem}.json"))
    } else {
        Err(WebError(
            StatusCode::BAD_REQUEST,
            format!(
                "{name:?}: a file name is letters, digits, '-', '_' and '.', and does not start with a dot"
            ),
        ))
    }
}

/// Saves the exact event of one Lambda action under the project's `events/lambda/`, for
/// `sam local invoke -e`.
async fn save_event(
    State(s): State<Shared>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<InvokeForm>,
) -> WebResult<Response> {
    let t = Target::of(&s, &id, &form)?;
    let event = t.event()?;
    let dir = t.runner.events_dir().ok_or_else(|| {
        WebError(
            StatusCode::CONFLICT,
            "no project folder to save events in".into(),
        )
    })?;
    let file = event_file_name(form.name.as_deref().unwrap_or_default())?;
    let path = dir.join(&file);
    let mut text = serde_json::to_string_pretty(event).unwrap_or_default();
    text.push('\n');
    let replace = form.replace.is_some();
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .create(replace)
            .create_new(!replace)
            .open(&path)?;
        f.write_all(text.as_bytes())
    });
    match written {
        Ok(()) => Ok(html(ui::saved_page(&s, &t.record, &t.logical_id, &path))),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(WebError(
            StatusCode::CONFLICT,
            format!(
                "{} exists: choose another name, or tick \"replace\"",
                path.display()
            ),
        )),
        Err(e) => Err(WebError(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("writing {}: {e}", path.display()),
        )),
    }
}

/// What running a function from a message's page needs: the token checked, the runner, the
/// record, and the Lambda action the form names.
struct Target {
    runner: Arc<dyn Runner>,
    record: Record,
    logical_id: String,
    action: serde_json::Value,
}

impl Target {
    fn of(s: &Inspector, id: &str, form: &InvokeForm) -> WebResult<Target> {
        check_token(s, &form.token)?;
        let runner = runner(s)?;
        let record = s.inbox.get(id)?;
        let action = lambda_action(&record, form.rule, form.action)?;
        Ok(Target {
            runner,
            logical_id: action["logicalId"].as_str().unwrap_or_default().to_string(),
            record,
            action,
        })
    }

    /// The exact event the rule gave the function.
    fn event(&self) -> WebResult<&serde_json::Value> {
        self.action
            .get("event")
            .ok_or_else(|| WebError(StatusCode::NOT_FOUND, "no event was recorded".into()))
    }
}

/// Runs the function of one Lambda action of a message's trace again, with its event.
async fn invoke_again(
    State(s): State<Shared>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<InvokeForm>,
) -> WebResult<Response> {
    let t = Target::of(&s, &id, &form)?;
    let invoked = t.runner.invoke(&t.record, &t.logical_id, t.event()?).await;
    follow_webhook(&s, &t.record);
    Ok(html(ui::invoked_page(
        &s,
        &t.record,
        &t.logical_id,
        false,
        &invoked,
    )))
}

/// "Run attempt n now": the retry job of one of the record's api actions, handed to the function
/// before it is due.
async fn retry_now(
    State(s): State<Shared>,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<InvokeForm>,
) -> WebResult<Response> {
    let t = Target::of(&s, &id, &form)?;
    let job = form.job.as_deref().unwrap_or_default();
    // Only a plain relative path inside the state dir; the emulator checks it names a job of
    // this function's retry queue.
    let relative = std::path::Path::new(job);
    if job.is_empty()
        || relative.is_absolute()
        || relative
            .components()
            .any(|c| !matches!(c, std::path::Component::Normal(_)))
    {
        return Err(WebError(
            StatusCode::BAD_REQUEST,
            format!("{job:?} is not a file in the state dir"),
        ));
    }
    let job = s.state_dir().join(relative);
    let invoked = t.runner.retry_now(&t.record, &t.logical_id, &job).await;
    follow_webhook(&s, &t.record);
    Ok(html(ui::invoked_page(
        &s,
        &t.record,
        &t.logical_id,
        true,
        &invoked,
    )))
}

/// `Key=Value` lines (blank lines and `#` comments ignored).
fn parse_params(text: &str) -> WebResult<Vec<(String, String)>> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    WebError(
                        StatusCode::BAD_REQUEST,
                        format!("parameter {l:?}: expected Key=Value"),
                    )
                })
        })
        .collect()
}

async fn compare(
    State(s): State<Shared>,
    Path((a, b)): Path<(String, String)>,
) -> WebResult<Response> {
    let before = s.inbox.get(&a)?;
    let after = s.inbox.get(&b)?;
    Ok(html(ui::compare_page(&s, &before, &after)))
}

async fn inject_page(State(s): State<Shared>) -> WebResult<Response> {
    Ok(html(ui::inject_page(&s, s.runner.is_some())))
}

#[derive(Debug, Deserialize)]
struct InjectForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    raw: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    mail_from: String,
    #[serde(default)]
    rcpt_to: String,
    #[serde(default)]
    client_ip: String,
    #[serde(default)]
    tls: Option<String>,
    #[serde(default)]
    spam: String,
    #[serde(default)]
    virus: String,
    #[serde(default)]
    spf: String,
    #[serde(default)]
    dkim: String,
    #[serde(default)]
    dmarc: String,
}

/// An .eml pasted, or one composed from the form's fields, with the envelope, verdicts and TLS
/// that `mailroom deliver` takes.
async fn inject(
    State(s): State<Shared>,
    axum::Form(form): axum::Form<InjectForm>,
) -> WebResult<Response> {
    check_token(&s, &form.token)?;
    let runner = runner(&s)?;
    let bad = |m: &str| WebError(StatusCode::BAD_REQUEST, m.to_string());
    let mut message = if form.raw.trim().is_empty() {
        if form.from.trim().is_empty() || form.to.trim().is_empty() {
            return Err(bad("paste a message, or give at least From and To"));
        }
        format!(
            "From: {}\r\nTo: {}\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: <{}@inspector.mailroom.local>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{}\r\n",
            one_line(&form.from),
            one_line(&form.to),
            one_line(&form.subject),
            rfc2822_now(),
            mailroom_emulator::receipt::new_message_id(),
            form.body.replace("\r\n", "\n").replace('\n', "\r\n"),
        )
    } else {
        form.raw.replace("\r\n", "\n").replace('\n', "\r\n")
    };
    let verdicts: Vec<String> = [
        ("spam", &form.spam),
        ("virus", &form.virus),
        ("spf", &form.spf),
        ("dkim", &form.dkim),
        ("dmarc", &form.dmarc),
    ]
    .iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k}={}", one_line(v)))
    .collect();
    if !verdicts.is_empty() {
        message = format!(
            "{}: {}\r\n{message}",
            mailroom_emulator::VERDICTS_HEADER,
            verdicts.join(" ")
        );
    }
    let header_address = |name: &str| {
        mailroom_emulator::receipt::mail::split_headers(message.as_bytes())
            .0
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| {
                mailroom_emulator::receipt::mail::split_address_list(&h.value)
                    .into_iter()
                    .next()
            })
            .map(|a| mailroom_emulator::receipt::mail::bare_address(&a))
            .unwrap_or_default()
    };
    let mail_from = match form.mail_from.trim() {
        "" => header_address("From"),
        f => f.to_string(),
    };
    let recipients: Vec<String> = match form.rcpt_to.trim() {
        "" => vec![header_address("To")],
        r => r
            .split([',', ' ', '\n'])
            .map(str::trim)
            .filter(|r| !r.is_empty())
            .map(str::to_string)
            .collect(),
    };
    if recipients.iter().all(String::is_empty) {
        return Err(bad("no recipient: give RCPT TO, or a To header"));
    }
    let client_ip = match form.client_ip.trim() {
        "" => "127.0.0.1".to_string(),
        ip => ip
            .parse::<std::net::IpAddr>()
            .map_err(|_| bad("client IP: not an IP address"))?
            .to_string(),
    };
    let run = Run {
        raw: message.into_bytes(),
        envelope: mailroom_emulator::receipt::Envelope {
            mail_from,
            recipients,
            helo: "inspector".into(),
            client_ip,
            tls: form.tls.is_some(),
        },
        params: Vec::new(),
        source: crate::record::Source::Inject,
    };
    let record = runner
        .run(run)
        .await
        .map_err(|e| WebError(StatusCode::UNPROCESSABLE_ENTITY, e))?;
    Ok(Redirect::to(&format!("/message/{}", record.id)).into_response())
}

/// A header value from a form field: no line breaks, so no header can be added through it.
fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ").trim().to_string()
}

fn rfc2822_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default()
}

/// What the functions wrote under the state dir (S3 objects and their metadata, SNS
/// publications, webhook requests as the sink received them, outbox messages), linked from the
/// trace. Only paths inside the state dir, and never the webhook signing secret.
async fn state_file(
    State(s): State<Shared>,
    Path(path): Path<String>,
    Params(p): Params<FileParams>,
) -> WebResult<Response> {
    let not_found = || {
        WebError(
            StatusCode::NOT_FOUND,
            format!("no file {path} in the state dir"),
        )
    };
    let root = s.state_dir().canonicalize().map_err(|_| not_found())?;
    let relative = std::path::Path::new(&path);
    let plain = relative
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if !plain || relative.starts_with("webhook-secret") {
        return Err(not_found());
    }
    let full = root
        .join(relative)
        .canonicalize()
        .map_err(|_| not_found())?;
    if !full.starts_with(&root) {
        return Err(not_found());
    }
    // A queue is a folder of messages: with the message id an SQS line names, its file.
    if full.is_dir()
        && let Some(id) = p.find.as_deref().filter(|f| !f.is_empty())
    {
        let named = std::fs::read_dir(&full)
            .map_err(|_| not_found())?
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .find(|n| {
                n.contains(id)
                    && n.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            })
            .ok_or_else(not_found)?;
        let base = path.trim_end_matches('/');
        return Ok(Redirect::to(&format!("/state/{base}/{named}")).into_response());
    }
    if !full.is_file() {
        return Err(not_found());
    }
    if p.raw.is_some() {
        let bytes = tokio::fs::read(&full).await.map_err(|_| not_found())?;
        return Ok(download(
            bytes,
            "application/octet-stream",
            Some("attachment"),
        ));
    }
    let size = tokio::fs::metadata(&full)
        .await
        .map_err(|_| not_found())?
        .len();
    let mut head = Vec::new();
    {
        use tokio::io::AsyncReadExt;
        let file = tokio::fs::File::open(&full)
            .await
            .map_err(|_| not_found())?;
        file.take(FILE_PREVIEW_BYTES)
            .read_to_end(&mut head)
            .await
            .map_err(|_| not_found())?;
    }
    // An S3 object's metadata is kept beside it, as the local S3 adapter stores it.
    let meta = relative
        .strip_prefix("s3")
        .ok()
        .map(|key| root.join("s3-meta").join(format!("{}.json", key.display())))
        .and_then(|m| std::fs::read_to_string(m).ok());
    let mail = if relative.starts_with("outbox") && path.ends_with(".eml") {
        outbox_mail(
            &s,
            &full,
            path.ends_with("-forward.eml"),
            p.message.as_deref(),
        )
        .await
    } else {
        None
    };
    Ok(html(ui::file_page(
        &s,
        &ui::FileView {
            path: &path,
            size,
            head: &head,
            meta: meta.as_deref(),
            find: p.find.as_deref(),
            policy: p.policy.as_deref(),
            mail: mail.as_ref(),
        },
    )))
}

/// An outbox message parsed; for a forward, SES's rules checked on its bytes; with the record
/// it came from, that message's headers.
async fn outbox_mail(
    s: &Inspector,
    full: &std::path::Path,
    forward: bool,
    record: Option<&str>,
) -> Option<ui::OutboxMail> {
    let bytes = tokio::fs::read(full).await.ok()?;
    let email = mailroom::Email::parse(&bytes, &mailroom::Limits::default())
        .ok()?
        .email;
    let violations = forward.then(|| {
        mailroom_forward::ses_rules::validate(&bytes)
            .iter()
            // The sending identity is checked by the forward function, which knows it.
            .filter(|v| {
                !matches!(
                    v,
                    mailroom_forward::ses_rules::Violation::UnverifiedFrom { .. }
                )
            })
            .map(ToString::to_string)
            .collect()
    });
    let original = record
        .filter(|_| forward)
        .and_then(|id| s.inbox.message(id).ok().flatten())
        .and_then(|m| mailroom::Email::parse(&m, &mailroom::Limits::default()).ok())
        .map(|p| p.email.headers);
    Some(ui::OutboxMail {
        email,
        violations,
        original,
    })
}

/// How much of a file its page shows; the rest is in the download.
const FILE_PREVIEW_BYTES: u64 = 256 * 1024;

#[derive(Debug, Deserialize, Default)]
struct FileParams {
    raw: Option<String>,
    /// In a JSON-lines file, only the lines containing this (an SNS message id).
    find: Option<String>,
    /// An SNS subscription filter policy to try on the publication.
    policy: Option<String>,
    /// For an outbox message: the record it came from.
    message: Option<String>,
}

async fn style() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("assets/style.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("assets/app.js"),
    )
        .into_response()
}

async fn api_list(State(s): State<Shared>, Params(p): Params<ListParams>) -> WebResult<Response> {
    let page = s.inbox.list(&Query::parse(&p.q)?, p.start, p.limit())?;
    Ok(axum::Json(page).into_response())
}

async fn api_message(State(s): State<Shared>, Path(id): Path<String>) -> WebResult<Response> {
    Ok(axum::Json(s.inbox.get(&id)?).into_response())
}

/// Every webhook of a record's api actions: attempts, schedule, queued retry, dead letter.
async fn api_webhooks(State(s): State<Shared>, Path(id): Path<String>) -> WebResult<Response> {
    let record = s.inbox.get(&id)?;
    Ok(axum::Json(crate::webhooks::to_json(&deliveries(&s, &record))).into_response())
}

/// A message's MIME structure; `null` when there is no message (refused at RCPT).
async fn api_mime(State(s): State<Shared>, Path(id): Path<String>) -> WebResult<Response> {
    let record = s.inbox.get(&id)?;
    let tree = s
        .inbox
        .message(&record.id)?
        .and_then(|m| crate::mime::tree(&m));
    Ok(axum::Json(
        tree.map(|(root, left_out)| serde_json::json!({ "root": root, "leftOut": left_out })),
    )
    .into_response())
}

#[derive(Debug, Deserialize)]
struct WaitParams {
    #[serde(default, alias = "query")]
    q: String,
    /// Seconds; at most 300.
    timeout: Option<u64>,
}

/// Answers with the newest message matching the query as soon as there is one: at once when
/// one is already recorded, else when it arrives; 408 after the timeout (default 30 s).
async fn api_wait(State(s): State<Shared>, Params(p): Params<WaitParams>) -> WebResult<Response> {
    let query = Query::parse(&p.q)?;
    // Subscribe before looking, so a message recorded in between is not missed.
    let mut news = s.inbox.subscribe();
    let found = |s: &Inspector| -> WebResult<Option<Record>> {
        Ok(s.inbox.list(&query, 0, 1)?.messages.into_iter().next())
    };
    if let Some(r) = found(&s)? {
        return Ok(axum::Json(s.inbox.get(&r.id)?).into_response());
    }
    let timeout = Duration::from_secs(p.timeout.unwrap_or(30).min(300));
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, news.recv()).await {
            Err(_) => {
                return Err(WebError(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "no message matching {:?} within {}s",
                        p.q,
                        timeout.as_secs()
                    ),
                ));
            }
            // Lagged or new: either way, ask the index (it is the truth).
            Ok(_) => {
                if let Some(r) = found(&s)? {
                    return Ok(axum::Json(s.inbox.get(&r.id)?).into_response());
                }
            }
        }
    }
}

/// Server-sent events: one `message` event per new record (its summary as JSON).
async fn api_events(State(s): State<Shared>) -> Response {
    use tokio_stream::StreamExt;
    let stream = tokio_stream::wrappers::BroadcastStream::new(s.inbox.subscribe()).map(|r| {
        let event = match r {
            Ok(record) => Event::default()
                .event("message")
                .json_data(&record)
                .unwrap_or_default(),
            // Missed some: the page reloads its rows either way.
            Err(_) => Event::default().event("message").data("{}"),
        };
        Ok::<_, std::convert::Infallible>(event)
    });
    // Firefox opens an EventSource on the first bytes of the body, not on the headers: without
    // a comment at once, a page in Firefox would not know it is live until the first keep-alive.
    let ready = tokio_stream::once(Ok(Event::default().comment("live")));
    Sse::new(ready.chain(stream))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

pub fn html(markup: maud::Markup) -> Response {
    html_string(markup.into_string())
}

fn html_string(body: String) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    (headers, body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_are_served() {
        for ok in [
            "127.0.0.1:8025",
            "localhost:8025",
            "LOCALHOST",
            "[::1]:8025",
            "127.0.0.1",
        ] {
            assert!(host_allowed(ok, None), "{ok}");
        }
        for no in [
            "evil.example:8025",
            "192.0.2.1:8025",
            "",
            "127.0.0.1.evil.example",
            "[2001:db8::1]:80",
        ] {
            assert!(!host_allowed(no, None), "{no}");
        }
        let lan: std::net::IpAddr = "192.0.2.1"
            .parse()
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        assert!(host_allowed("192.0.2.1:8025", Some(lan)));
        assert!(!host_allowed("evil.example", Some(lan)));
        let all: std::net::IpAddr = std::net::Ipv4Addr::UNSPECIFIED.into();
        assert!(host_allowed("my-laptop.lan:8025", Some(all)));
    }
}
