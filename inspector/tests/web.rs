//! The inspector's HTTP answers, called in process: the headers that keep mail HTML from running
//! or reaching the network, the Host check, the run token, and paths outside the state dir.

#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use mailroom_emulator::receipt::Envelope;
use mailroom_inspector::web::{Inspector, router};
use mailroom_inspector::{Inbox, Record, Retention, Source};
use std::sync::Arc;
use tower::ServiceExt;

const HOSTILE: &str = "From: <b>x</b> <x@example.org>\r\nTo: support@example.com\r\n\
Subject: <script>alert(1)</script>\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n\
<script>fetch('http://127.0.0.1:9/x')</script><img src=http://127.0.0.1:9/y onerror=alert(2)>\r\n";

fn inbox(dir: &std::path::Path) -> (Arc<Inbox>, String) {
    let inbox = Arc::new(Inbox::open(dir, Retention::default()).unwrap());
    let envelope = Envelope {
        mail_from: "x@example.org".into(),
        recipients: vec!["support@example.com".into()],
        helo: "h".into(),
        client_ip: "192.0.2.1".into(),
        tls: false,
    };
    let mut record =
        Record::without_message(Source::Inject, &envelope, "250 ok".into(), "accepted");
    record.subject = "<script>alert(1)</script>".into();
    inbox.add(&record, Some(HOSTILE.as_bytes())).unwrap();
    std::fs::write(dir.join("webhook-secret"), "whsec_secret").unwrap();
    (inbox, record.id)
}

async fn call(
    app: &axum::Router,
    method: &str,
    path: &str,
    host: &str,
    body: &str,
) -> (StatusCode, axum::http::HeaderMap, String) {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, host)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

fn csp(h: &axum::http::HeaderMap) -> String {
    h.get(header::CONTENT_SECURITY_POLICY)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn mail_html_is_sandboxed_and_pages_run_only_their_own_script() {
    let dir = tempfile::tempdir().unwrap();
    let (inbox, id) = inbox(dir.path());
    let app = router(Inspector::new(inbox, None, "test".into()));
    let host = "127.0.0.1:8025";

    // The page: its own script only, and the subject as text.
    let (status, h, body) = call(&app, "GET", &format!("/message/{id}"), host, "").await;
    assert_eq!(status, StatusCode::OK);
    let page = csp(&h);
    assert!(
        page.contains("default-src 'none'") && page.contains("script-src 'self'"),
        "{page}"
    );
    assert!(!page.contains("script-src 'self' 'unsafe"), "{page}");
    assert!(
        !body.contains("<script>alert(1)"),
        "the subject must be escaped"
    );
    assert!(body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(body.contains(r#"sandbox="""#), "the frame is sandboxed");
    assert_eq!(h.get(header::X_CONTENT_TYPE_OPTIONS).unwrap(), "nosniff");

    // The mail's HTML: served as it is, under a policy that forbids script and the network.
    for path in [
        format!("/message/{id}/html"),
        format!("/view/{id}.html"),
        "/view/latest.html".into(),
    ] {
        let (status, h, body) = call(&app, "GET", &path, host, "").await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(
            body.contains("<script>fetch("),
            "{path}: the HTML itself is not rewritten"
        );
        let policy = csp(&h);
        assert!(policy.starts_with("sandbox;"), "{path}: {policy}");
        for must in ["default-src 'none'", "img-src data:;", "form-action 'none'"] {
            assert!(policy.contains(must), "{path}: {policy} lacks {must}");
        }
        assert!(!policy.contains("script-src"), "{path}: {policy}");
    }
    let (_, h, _) = call(
        &app,
        "GET",
        &format!("/message/{id}/html?images=remote"),
        host,
        "",
    )
    .await;
    let remote = csp(&h);
    assert!(
        remote.contains("img-src data: http: https:") && !remote.contains("script-src"),
        "{remote}"
    );
}

#[tokio::test]
async fn hosts_tokens_and_paths_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (inbox, id) = inbox(dir.path());
    let state = Inspector::new(inbox.clone(), None, "test".into());
    let token = state.token.clone();
    let app = router(state);

    for host in [
        "attacker.example",
        "attacker.example:8025",
        "192.0.2.1:8025",
        "127.0.0.1.nip.io",
    ] {
        let (status, _, _) = call(&app, "GET", "/api/messages", host, "").await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{host}");
    }
    for host in ["localhost:8025", "[::1]:8025", "127.0.0.1"] {
        let (status, _, _) = call(&app, "GET", "/api/messages", host, "").await;
        assert_eq!(status, StatusCode::OK, "{host}");
    }

    let host = "127.0.0.1:8025";
    for body in ["", "token=", "token=guess"] {
        let (status, _, _) = call(&app, "POST", "/delete", host, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body:?}");
        let (status, _, _) = call(&app, "POST", &format!("/message/{id}/delete"), host, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body:?}");
    }
    assert_eq!(
        inbox.count().unwrap(),
        1,
        "nothing was deleted without the token"
    );

    for path in [
        "/state/webhook-secret",
        "/state/%2e%2e/%2e%2e/etc/passwd",
        "/state/..%2F..%2Fetc%2Fhostname",
        "/state/inbox/..%2F..%2F..%2Fetc%2Fhostname",
        "/state//etc/hostname",
    ] {
        let (status, _, body) = call(&app, "GET", path, host, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(!body.contains("whsec_secret"), "{path}");
    }
    let (status, _, _) = call(
        &app,
        "GET",
        &format!("/state/inbox/{id}/record.json"),
        host,
        "",
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a file inside the state dir is served"
    );

    // No rule set to run (`mailroom inspect`): inject and replay say so rather than pretend.
    let form = format!("token={token}&from=a%40example.org&to=support%40example.com");
    let (status, _, body) = call(&app, "POST", "/inject", host, &form).await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{body}");
    let (status, _, _) = call(
        &app,
        "POST",
        &format!("/message/{id}/replay"),
        host,
        &format!("token={token}"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED);
}

#[tokio::test]
async fn the_mime_structure_opens_nested_messages_and_serves_leaf_parts_as_downloads() {
    let dir = tempfile::tempdir().unwrap();
    let inbox = Arc::new(Inbox::open(dir.path(), Retention::default()).unwrap());
    let raw = "From: a@example.org\r\nSubject: outer\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"o\"\r\n\r\n\
--o\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n\
--o\r\nContent-Type: message/rfc822\r\n\r\n\
From: b@example.org\r\nSubject: <b>inner</b>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"i\"\r\n\r\n\
--i\r\nContent-Type: text/html\r\n\r\n<script>alert(1)</script>\r\n\
--i\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"doc.pdf\"\r\n\r\nJVBERi0xLjQ=\r\n--i--\r\n--o--\r\n";
    let envelope = Envelope {
        mail_from: "a@example.org".into(),
        recipients: vec!["support@example.com".into()],
        helo: "h".into(),
        client_ip: "192.0.2.1".into(),
        tls: false,
    };
    let record = Record::without_message(Source::Inject, &envelope, "250 ok".into(), "accepted");
    inbox.add(&record, Some(raw.as_bytes())).unwrap();
    let app = router(Inspector::new(inbox, None, "127.0.0.1:8025".into()));
    let (status, _, page) = call(
        &app,
        "GET",
        &format!("/message/{}", record.id),
        "127.0.0.1:8025",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let tree = &page[page.find("<ul class=\"mime\">").unwrap()..];
    let tree = &tree[..tree.find("</section>").unwrap()];
    for needle in [
        "multipart/mixed",
        "message/rfc822",
        "<q>&lt;b&gt;inner&lt;/b&gt;</q>",
        "text/html",
        "application/pdf",
        "download doc.pdf",
    ] {
        assert!(tree.contains(needle), "{needle} in {tree}");
    }
    assert!(!tree.contains("<b>inner"), "a nested subject is text");
    // Parts in document order: 0 mixed, 1 text, 2 rfc822, 3 inner mixed, 4 html, 5 pdf.
    let (status, headers, body) = call(
        &app,
        "GET",
        &format!("/message/{}/mime/5", record.id),
        "127.0.0.1:8025",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "%PDF-1.4");
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
    assert_eq!(
        headers[header::CONTENT_DISPOSITION],
        "attachment; filename=\"doc.pdf\"; filename*=UTF-8''doc.pdf"
    );
    let (status, headers, body) = call(
        &app,
        "GET",
        &format!("/message/{}/mime/4", record.id),
        "127.0.0.1:8025",
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the nested HTML, as a download");
    assert!(body.contains("<script>"));
    assert!(
        csp(&headers).starts_with("sandbox"),
        "never a page of this origin"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    let (status, headers, body) = call(
        &app,
        "GET",
        &format!("/message/{}/mime/2", record.id),
        "127.0.0.1:8025",
        "",
    )
    .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the nested message, as the message it holds"
    );
    assert!(body.starts_with("From: b@example.org"), "{body}");
    assert!(
        headers[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .ends_with(".eml")
    );
    let (_, _, json) = call(
        &app,
        "GET",
        &format!("/api/message/{}/mime", record.id),
        "127.0.0.1:8025",
        "",
    )
    .await;
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let nested = &json["root"]["children"][1];
    assert_eq!(nested["contentType"], "message/rfc822");
    assert_eq!(nested["subject"], "<b>inner</b>");
    assert_eq!(nested["children"][0]["children"][1]["filename"], "doc.pdf");
    assert_eq!(nested["children"][0]["children"][1]["n"], 5);
    for container in [0, 3, 99] {
        let (status, _, _) = call(
            &app,
            "GET",
            &format!("/message/{}/mime/{container}", record.id),
            "127.0.0.1:8025",
            "",
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "part {container}");
    }
}
