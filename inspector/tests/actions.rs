//! What a message's page does with a Lambda action, read in process over the repository's
//! template: a webhook's attempts on one timeline (its endpoint local, failing once), the queued
//! retry run from the page ("Run attempt 2 now") through the real api function, and the exact
//! event saved under `events/lambda/` for `sam local invoke`.

#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use mailroom_emulator::receipt::Envelope;
use mailroom_emulator::{Emulator, Settings};
use mailroom_inspector::web::{Inspector, Invoked, Run, Runner, router};
use mailroom_inspector::{Inbox, Record, Retention, Source};
use mailroom_testkit::http::{HttpServer, Reply};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tower::ServiceExt;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The emulator's own retry paths and an events folder, and nothing else: these tests only read
/// pages, retry and save.
struct Retrying(Arc<Emulator>, PathBuf);

#[async_trait::async_trait]
impl Runner for Retrying {
    async fn run(&self, _run: Run) -> Result<Record, String> {
        Err("not used by this test".into())
    }
    async fn invoke(
        &self,
        _record: &Record,
        _id: &str,
        _event: &serde_json::Value,
    ) -> Result<Invoked, String> {
        Err("not used by this test".into())
    }
    fn retries(&self, logical_id: &str) -> Option<mailroom_emulator::functions::Retries> {
        self.0.retries(logical_id)
    }
    fn events_dir(&self) -> Option<PathBuf> {
        Some(self.1.clone())
    }
    async fn retry_now(
        &self,
        _record: &Record,
        logical_id: &str,
        job: &Path,
    ) -> Result<Invoked, String> {
        let (answer, outputs) = self.0.retry_now(logical_id, job).await?;
        Ok(Invoked {
            logical_id: logical_id.into(),
            answer,
            outputs,
            duration_ms: 0,
        })
    }
}

async fn call(app: &axum::Router, method: &str, path: &str, body: String) -> (StatusCode, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "127.0.0.1:8025")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 4 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// The value of the hidden field `name` in the form posting to `action`.
fn field(page: &str, action: &str, name: &str) -> String {
    let form = &page[page.find(&format!("action=\"{action}\"")).unwrap()..];
    let form = &form[..form.find("</form>").unwrap()];
    let at = form.find(&format!("name=\"{name}\" value=\"")).unwrap() + name.len() + 15;
    form[at..at + form[at..].find('"').unwrap()].replace("&amp;", "&")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The template's rule set over `state`, its webhook at `webhook`, with one message received and
/// recorded: the inspector's router, and the record.
async fn received(state: &Path, webhook: &str) -> (axum::Router, Record) {
    let mut settings = Settings::new(root().join("template.yaml"));
    settings.state_dir = state.to_path_buf();
    settings.params = vec![("WebhookUrl".into(), webhook.into())];
    let emulator = Arc::new(Emulator::new(&settings).await.unwrap());
    let inbox = Arc::new(Inbox::open(state, Retention::default()).unwrap());
    let envelope = Envelope {
        mail_from: "carla@example.org".into(),
        recipients: vec!["dana@example.com".into()],
        helo: "client.test".into(),
        client_ip: "192.0.2.7".into(),
        tls: false,
    };
    let raw = std::fs::read(root().join("events/mail/attachments.eml")).unwrap();
    let size = raw.len();
    let mut trace = emulator.receive(raw, envelope.clone()).await.unwrap();
    let message = std::mem::take(&mut trace.final_message);
    let record = Record::from_trace(
        &trace,
        Source::Smtp,
        &envelope,
        &message,
        size,
        "250".into(),
    );
    inbox.add(&record, Some(&message)).unwrap();
    let runner: Arc<dyn Runner> = Arc::new(Retrying(emulator, state.join("project/events/lambda")));
    let app = router(Inspector::new(inbox, Some(runner), "127.0.0.1:8025".into()));
    (app, record)
}

#[tokio::test]
async fn every_attempt_shows_on_one_timeline_and_a_queued_retry_runs_from_the_page() {
    let endpoint = HttpServer::scripted(vec![
        Reply::status(503).body("busy"),
        Reply::status(200).body("ok"),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (app, record) = received(dir.path(), &endpoint.url("/hook")).await;
    let page_of = format!("/message/{}", record.id);

    let (status, page) = call(&app, "GET", &page_of, String::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(": 1 attempt</h4>"), "{page}");
    assert!(page.contains("HTTP 503"));
    assert!(
        page.contains("Retry schedule: 10 attempts"),
        "the default schedule"
    );
    assert!(page.contains("<li class=\"failed\"><span class=\"n\">1</span>"));
    assert!(page.contains("<li class=\"queued\"><span class=\"n\">2</span> 1 min later"));
    assert!(page.contains("Run attempt 2 now"));
    let (_, listed) = call(&app, "GET", "/api/messages", String::new()).await;
    assert!(listed.contains("\"webhook\":\"retrying\""), "{listed}");
    let retry = format!("/message/{}/retry", record.id);
    let job = field(&page, &retry, "job");
    assert!(dir.path().join(&job).is_file(), "{job} is the queued job");

    // A path out of the state dir, or a file that is not in the retry queue, runs nothing.
    let form = |job: &str| {
        format!(
            "token={}&rule={}&action={}&job={}",
            field(&page, &retry, "token"),
            field(&page, &retry, "rule"),
            field(&page, &retry, "action"),
            enc(job)
        )
    };
    let (status, _) = call(&app, "POST", &retry, form("../../etc/passwd")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, refused) = call(&app, "POST", &retry, form("webhook-secret")).await;
    assert!(refused.contains("is not a job in ApiFunction"), "{refused}");
    assert_eq!(endpoint.requests().len(), 1, "nothing was sent for either");

    let (status, ran) = call(&app, "POST", &retry, form(&job)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ran.contains("retry job run now"), "{ran}");
    assert!(ran.contains("HTTP 200"), "{ran}");
    let requests = endpoint.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].header("x-mailroom-attempt"), Some("2"));
    assert!(
        !dir.path().join(&job).exists(),
        "the delivered job left the queue"
    );

    let (_, page) = call(&app, "GET", &page_of, String::new()).await;
    assert!(page.contains(": 2 attempts</h4>"), "{page}");
    let (_, listed) = call(&app, "GET", "/api/messages", String::new()).await;
    assert!(
        listed.contains("\"webhook\":\"delivered\""),
        "the list follows: {listed}"
    );
    assert!(page.contains("<li class=\"delivered\"><span class=\"n\">2</span>"));
    assert!(!page.contains("Run attempt"), "nothing is queued any more");

    let (status, json) = call(
        &app,
        "GET",
        &format!("/api/message/{}/webhooks", record.id),
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let statuses: Vec<_> = json[0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["attempt"].as_u64(), a["status"].as_u64()))
        .collect();
    assert_eq!(
        statuses,
        [(Some(1), Some(503)), (Some(2), Some(200))],
        "{json}"
    );
    assert_eq!(json[0]["schedule"]["attempts"], 10);
    assert_eq!(json[0]["schedule"]["delaysSecs"][0], 60);
    assert_eq!(json[0]["queued"], serde_json::json!([]));

    let webhook_id = &record.id;
    let (status, detail) = call(
        &app,
        "GET",
        &format!("/message/{}/attempts/{webhook_id}", record.id),
        String::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for needle in [
        "id=\"attempt-1\"",
        "id=\"attempt-2\"",
        "HTTP 503",
        "HTTP 200",
        "x-mailroom-attempt: 2",
        "busy",
    ] {
        assert!(detail.contains(needle), "{needle} in {detail}");
    }
    assert_eq!(
        detail.matches("badge good\">valid").count(),
        2,
        "both signatures check"
    );
}

#[tokio::test]
async fn a_lambda_event_is_saved_under_events_for_sam_local_invoke() {
    let dir = tempfile::tempdir().unwrap();
    let (app, record) = received(dir.path(), "https://hooks.example.com/mail").await;
    let (_, page) = call(
        &app,
        "GET",
        &format!("/message/{}", record.id),
        String::new(),
    )
    .await;
    let save = format!("/message/{}/save-event", record.id);
    // The first such form on the page is the gate's stop function.
    let form = |name: &str, replace: bool| {
        format!(
            "token={}&rule={}&action={}&name={}{}",
            field(&page, &save, "token"),
            field(&page, &save, "rule"),
            field(&page, &save, "action"),
            enc(name),
            if replace { "&replace=1" } else { "" }
        )
    };
    let (status, saved) = call(&app, "POST", &save, form("stop-my-case", false)).await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    assert!(
        saved.contains("sam local invoke StopFunction -e events/lambda/stop-my-case.json"),
        "{saved}"
    );
    let file = dir.path().join("project/events/lambda/stop-my-case.json");
    let event: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let recorded = &record.trace.as_ref().unwrap()["rules"][0]["actions"][0]["event"];
    assert_eq!(
        &event, recorded,
        "the exact event the rule gave the function"
    );
    assert_eq!(
        event["Records"][0]["ses"]["mail"]["messageId"],
        record.id.as_str()
    );

    let (status, again) = call(&app, "POST", &save, form("stop-my-case.json", false)).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "an existing file is kept: {again}"
    );
    std::fs::write(&file, "{}").unwrap();
    let (status, _) = call(&app, "POST", &save, form("stop-my-case", true)).await;
    assert_eq!(status, StatusCode::OK);
    assert_ne!(std::fs::read(&file).unwrap(), b"{}", "replaced when asked");
    for bad in ["../escape", ".hidden", "a/b", "", "x y"] {
        let (status, _) = call(&app, "POST", &save, form(bad, false)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
    }
    let written: Vec<_> = std::fs::read_dir(file.parent().unwrap()).unwrap().collect();
    assert_eq!(written.len(), 1, "nothing else was written");
}
