//! A Mailpit-compatible subset of the API, so that end-to-end tests written against Mailpit (its
//! `mailpit-api` client, or plain HTTP) run against mailroom unchanged: listing, search, one
//! message with its raw source, headers and parts, deletion, and the `/view` renderings, each
//! with `latest` for the newest message. Shapes follow Mailpit's API v1; fields mailroom has no
//! notion of (read status, tags) are constant. A transaction refused at RCPT is listed too, with
//! no content, as it is in the inspector's own list.

use crate::query::Query;
use crate::record::Record;
use crate::web::{ListParams, Shared, WebError, WebResult};
use axum::extract::{Path, Query as Params, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use mailroom::email::Address;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

fn address(a: &Address) -> Value {
    json!({ "Name": a.name.clone().unwrap_or_default(), "Address": a.address })
}

fn addresses(list: &[Address]) -> Vec<Value> {
    list.iter().map(address).collect()
}

fn list_item(r: &Record) -> Value {
    json!({
        "ID": r.id,
        "MessageID": r.message_id,
        "Read": true,
        "From": { "Name": r.from_name, "Address": r.from },
        "To": addresses(&r.to),
        "Cc": addresses(&r.cc),
        "Bcc": [],
        "ReplyTo": [],
        "Subject": r.subject,
        "Created": r.received_at,
        "Tags": [],
        "Size": r.size,
        "Attachments": r.attachments,
        "Snippet": r.snippet,
    })
}

fn listing(s: &Shared, query: &Query, p: &ListParams) -> WebResult<Response> {
    let page = s.inbox.list(query, p.start, p.limit())?;
    let messages: Vec<Value> = page.messages.iter().map(list_item).collect();
    Ok(axum::Json(json!({
        "total": page.total,
        "unread": 0,
        "count": messages.len(),
        "messages_count": page.matched,
        "messages_unread": 0,
        "start": page.start,
        "tags": [],
        "messages": messages,
    }))
    .into_response())
}

pub async fn messages(
    State(s): State<Shared>,
    Params(p): Params<ListParams>,
) -> WebResult<Response> {
    listing(&s, &Query::default(), &p)
}

pub async fn search(State(s): State<Shared>, Params(p): Params<ListParams>) -> WebResult<Response> {
    listing(&s, &Query::parse(&p.q)?, &p)
}

#[derive(Debug, Deserialize, Default)]
struct DeleteRequest {
    #[serde(default, rename = "IDs")]
    ids: Vec<String>,
}

/// `{"IDs": [...]}` deletes those; no body (or no IDs) deletes every message, as in Mailpit.
/// A browser page cannot send this cross-origin: DELETE is not a simple method, so it needs a
/// CORS preflight this server never grants.
pub async fn delete_messages(
    State(s): State<Shared>,
    body: axum::body::Bytes,
) -> WebResult<Response> {
    let request: DeleteRequest = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteRequest::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| WebError(StatusCode::BAD_REQUEST, format!("delete request: {e}")))?
    };
    s.inbox.delete(&request.ids)?;
    Ok("ok".into_response())
}

pub async fn delete_search(
    State(s): State<Shared>,
    Params(p): Params<ListParams>,
) -> WebResult<Response> {
    let ids = s.inbox.ids(&Query::parse(&p.q)?)?;
    if !ids.is_empty() {
        s.inbox.delete(&ids)?;
    }
    Ok("ok".into_response())
}

/// The record and its parsed message (none for a recipient refused at RCPT).
fn load(s: &Shared, id: &str) -> WebResult<(Record, Option<mailroom::Parsed>)> {
    let record = s.inbox.get(id)?;
    let parsed = s
        .inbox
        .message(&record.id)?
        .map(|m| mailroom::Email::parse(&m, &mailroom::Limits::default()));
    let parsed = match parsed {
        Some(Ok(p)) => Some(p),
        Some(Err(e)) => {
            return Err(WebError(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("message {} does not parse: {e}", record.id),
            ));
        }
        None => None,
    };
    Ok((record, parsed))
}

pub async fn message(State(s): State<Shared>, Path(id): Path<String>) -> WebResult<Response> {
    use sha2::Digest;
    let (r, parsed) = load(&s, &id)?;
    let (mut attachments, mut inline) = (Vec::new(), Vec::new());
    let mut text = String::new();
    let mut html = String::new();
    let mut date = r.received_at.clone();
    let mut reply_to = Vec::new();
    let mut bcc = Vec::new();
    let mut return_path = r.mail_from.clone();
    if let Some(p) = &parsed {
        let e = &p.email;
        text = e.text.clone().unwrap_or_default();
        html = e.html.clone().unwrap_or_default();
        if let Some(d) = &e.date {
            date.clone_from(d);
        }
        reply_to = addresses(&e.reply_to);
        bcc = addresses(&e.bcc);
        if let Some(rp) = e
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("Return-Path"))
        {
            return_path = rp.value.trim().trim_matches(['<', '>']).to_string();
        }
        for a in &e.attachments {
            let content = p.contents.get(a.index).map_or(&[][..], |c| c);
            let item = json!({
                "PartID": a.index.to_string(),
                "FileName": a.filename.clone().unwrap_or_default(),
                "ContentType": a.content_type,
                "ContentID": a.content_id.clone().unwrap_or_default(),
                "Size": a.size,
                "Checksums": { "SHA256": hex::encode(sha2::Sha256::digest(content)) },
            });
            if a.disposition == mailroom::email::Disposition::Inline && a.content_id.is_some() {
                inline.push(item);
            } else {
                attachments.push(item);
            }
        }
    }
    Ok(axum::Json(json!({
        "ID": r.id,
        "MessageID": r.message_id,
        "From": { "Name": r.from_name, "Address": r.from },
        "To": addresses(&r.to),
        "Cc": addresses(&r.cc),
        "Bcc": bcc,
        "ReplyTo": reply_to,
        "ReturnPath": return_path,
        "Subject": r.subject,
        "ListUnsubscribe": { "Header": "", "Links": [], "Errors": "", "HeaderPost": "" },
        "Date": date,
        "Tags": [],
        "Text": text,
        "HTML": html,
        "Size": r.size,
        "Inline": inline,
        "Attachments": attachments,
    }))
    .into_response())
}

pub async fn raw(State(s): State<Shared>, Path(id): Path<String>) -> WebResult<Response> {
    let message = s.inbox.message(&id)?.unwrap_or_default();
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response())
}

pub async fn headers(State(s): State<Shared>, Path(id): Path<String>) -> WebResult<Response> {
    let (_, parsed) = load(&s, &id)?;
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(p) = parsed {
        for h in p.email.headers {
            map.entry(h.name).or_default().push(h.value);
        }
    }
    Ok(axum::Json(map).into_response())
}

pub async fn part(
    State(s): State<Shared>,
    Path((id, part)): Path<(String, String)>,
) -> WebResult<Response> {
    let (_, parsed) = load(&s, &id)?;
    let not_found = || WebError(StatusCode::NOT_FOUND, format!("no part {part} in {id}"));
    let p = parsed.ok_or_else(not_found)?;
    let index: usize = part.parse().map_err(|_| not_found())?;
    let a = p.email.attachments.get(index).ok_or_else(not_found)?;
    let meta = mailroom::served::attachment_meta(a);
    let body = p.contents.get(a.index).cloned().unwrap_or_default();
    Ok(crate::web::download(
        body,
        &meta.content_type,
        meta.content_disposition.as_deref(),
    ))
}

pub async fn info(State(s): State<Shared>) -> WebResult<Response> {
    let n = s.inbox.count()?;
    Ok(axum::Json(json!({
        "Version": concat!("mailroom ", env!("CARGO_PKG_VERSION")),
        "LatestVersion": "",
        "Database": s.inbox.dir().join("index.sqlite").display().to_string(),
        "DatabaseSize": 0,
        "Messages": n,
        "Unread": 0,
        "Tags": {},
        "RuntimeStats": {},
    }))
    .into_response())
}

/// `/view/{ID}.html` and `/view/{ID}.txt` (`latest` for the newest).
pub async fn view(State(s): State<Shared>, Path(file): Path<String>) -> WebResult<Response> {
    let (id, html) = if let Some(id) = file.strip_suffix(".html") {
        (id, true)
    } else if let Some(id) = file.strip_suffix(".txt") {
        (id, false)
    } else {
        return Err(WebError(
            StatusCode::NOT_FOUND,
            format!("{file}: expected ID.html or ID.txt"),
        ));
    };
    let (_, parsed) = load(&s, id)?;
    let email = parsed.map(|p| p.email);
    if html {
        let body = email.and_then(|e| e.html).unwrap_or_default();
        Ok(crate::web::mail_html(body, false))
    } else {
        let body = email.and_then(|e| e.text).unwrap_or_default();
        Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
    }
}
