//! The pages, rendered on the server (maud escapes every value; markup from mail never reaches
//! a page, only the sandboxed frame of its own route).

use crate::record::{Page, Record};
use crate::web::{Inspector, ListParams};
use crate::webhooks::{Deliveries, Delivery, human};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value;

fn layout(title: &str, s: &Inspector, q: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · mailroom inspector" }
                link rel="stylesheet" href="/assets/style.css";
                script src="/assets/app.js" defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "mailroom" span { "inspector" } }
                    form.search method="get" action="/" role="search" {
                        label.visually-hidden for="q" { "Search messages" }
                        input #q type="search" name="q" value=(q) placeholder="from:carla subject:invoice rule:receive verdict:spam=FAIL";
                        button type="submit" { "Search" }
                    }
                    a.inject href="/inject" { "Inject" }
                    span.where { (s.label) }
                }
                main { (body) }
            }
        }
    }
}

pub fn list_page(s: &Inspector, p: &ListParams, page: &Page, error: Option<&str>) -> Markup {
    layout(
        "Inbox",
        s,
        &p.q,
        html! {
            div.bar {
                h1 { "Inbox" }
                span #live .live hidden title="New mail appears as it arrives" { "live" }
                p.count #count {
                    @if p.q.is_empty() {
                        (page.total) " transactions"
                    } @else {
                        (page.matched) " of " (page.total) " match " code { (p.q) }
                        " · " a href="/" { "clear" }
                    }
                }
                form method="post" action="/delete" {
                    input type="hidden" name="token" value=(s.token);
                    button.danger type="submit" { "Delete all" }
                }
            }
            @if let Some(e) = error {
                p.error role="alert" { "Search: " (e) }
            }
            table.messages {
                caption.visually-hidden { "Transactions, newest first" }
                thead {
                    tr {
                        th scope="col" { "Received" }
                        th scope="col" { "Envelope" }
                        th scope="col" { "Subject" }
                        th scope="col" { "Verdicts" }
                        th scope="col" { "Disposition" }
                        th scope="col" { "Rules" }
                        th scope="col" { "Webhook" }
                        th scope="col" { "Forward" }
                    }
                }
                tbody #rows data-q=(p.q) data-start=(page.start) {
                    (rows(page))
                }
            }
            @if page.matched > page.start + page.messages.len() as u64 {
                p.more {
                    a href={ "/?q=" (urlencode(&p.q)) "&start=" (page.start + page.messages.len() as u64) } { "Older →" }
                }
            }
        },
    )
}

pub fn rows(page: &Page) -> Markup {
    html! {
        @if page.messages.is_empty() {
            tr.empty { td colspan="8" { "No mail yet. Send some to the SMTP port, or run " code { "mailroom deliver" } "." } }
        }
        @for r in &page.messages {
            tr {
                td.time { time datetime=(r.received_at) { (short_time(&r.received_at)) } }
                td.envelope {
                    a href={ "/message/" (r.id) } {
                        span.from { (if r.mail_from.is_empty() { "<>" } else { &r.mail_from }) }
                        " → "
                        span.to { (r.recipients.join(", ")) }
                    }
                }
                td.subject {
                    a href={ "/message/" (r.id) } {
                        @if r.subject.is_empty() { span.muted { "(no subject)" } } @else { (r.subject) }
                    }
                    @if r.source != crate::record::Source::Smtp { " " span.badge.neutral title=(r.source_label()) { (r.source_tag()) } }
                    @if r.attachments > 0 { " " span.badge.neutral { (r.attachments) @if r.attachments == 1 { " attachment" } @else { " attachments" } } }
                }
                td { (verdicts(r)) }
                td { (badge(&r.disposition)) }
                td.rules { (r.rules.join(", ")) }
                td { @if let Some(w) = &r.webhook { (badge(w)) } }
                td { @if let Some(f) = &r.forward { (badge(f)) } }
            }
        }
    }
}

fn verdicts(r: &Record) -> Markup {
    html! {
        @for (k, v) in &r.verdicts {
            @if v != "PASS" {
                span.badge.(tone(v)) title={ (k) " verdict" } { (k) " " (v) }
                " "
            }
        }
        @if !r.verdicts.is_empty() && r.verdicts.values().all(|v| v == "PASS") {
            span.badge.good title="every verdict PASS" { "all pass" }
        }
    }
}

fn tone(v: &str) -> &'static str {
    match v {
        "PASS" | "accepted" | "delivered" | "sent" | "ok" => "good",
        "FAIL" | "failed" | "refused" | "rejected" | "bounced" => "bad",
        "GRAY" | "PROCESSING_FAILED" | "retrying" | "stopped" => "warn",
        _ => "neutral",
    }
}

fn badge(v: &str) -> Markup {
    html! { span.badge.(tone(v)) { (v) } }
}

fn short_time(rfc3339: &str) -> String {
    // 2026-12-06T20:01:02.123Z → 2026-12-06 20:01:02
    rfc3339.get(..19).unwrap_or(rfc3339).replace('T', " ")
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub fn message_page(
    s: &Inspector,
    r: &Record,
    message: Option<&[u8]>,
    deliveries: &Deliveries,
) -> Markup {
    let parsed = message.and_then(|m| mailroom::Email::parse(m, &mailroom::Limits::default()).ok());
    let email = parsed.as_ref().map(|p| &p.email);
    let title = if r.subject.is_empty() {
        "(no subject)"
    } else {
        &r.subject
    };
    layout(
        title,
        s,
        "",
        html! {
            p.back { a href="/" { "← Inbox" } }
            div.bar {
                h1 { (title) }
                form method="post" action={ "/message/" (r.id) "/delete" } {
                    input type="hidden" name="token" value=(s.token);
                    button.danger type="submit" { "Delete" }
                }
            }
            dl.facts {
                dt { "Disposition" } dd { (badge(&r.disposition)) }
                dt { "Reply to the client" } dd { code { (r.reply) } }
                dt { "MAIL FROM" } dd { (if r.mail_from.is_empty() { "<>" } else { &r.mail_from }) }
                dt { "RCPT TO" } dd { (r.recipients.join(", ")) }
                dt { "Client" } dd { (r.client_ip) " · HELO " (r.helo) " · " (if r.tls { "TLS" } else { "no TLS" }) }
                dt { "Received" } dd { time datetime=(r.received_at) { (r.received_at) } " · " (r.source_label()) }
                dt { "Verdicts" } dd { @if r.verdicts.is_empty() { "—" } @else { @for (k, v) in &r.verdicts { span.badge.(tone(v)) { (k) " " (v) } " " } } }
                @if let Some(w) = &r.webhook { dt { "Webhook" } dd { (badge(w)) } }
                @if let Some(f) = &r.forward { dt { "Forward" } dd { (badge(f)) } }
                dt { "Size" } dd { (r.size) " bytes" }
                dt { "Message id" } dd { code { (r.id) } }
            }
            @if s.runner.is_some() && message.is_some() {
                details.replay {
                    summary { "Replay with other parameters, or after editing the template" }
                    @if let Some(t) = s.runner.as_ref().and_then(|run| run.template()) {
                        p.muted {
                            "Reads " code { (t.path) } " from disk when it runs, so an edit to the rules shows in the comparison"
                            @if t.changed { " · " span.badge.warn { "changed since serve started" } } @else { " · unchanged since serve started" }
                            "."
                        }
                    }
                    form method="post" action={ "/message/" (r.id) "/replay" } {
                        input type="hidden" name="token" value=(s.token);
                        label for="params" { "Template parameters, one " code { "Key=Value" } " per line (the server's own for the rest)" }
                        textarea #params name="params" rows="4" placeholder="Recipients=example.com\nWebhookUrl=http://127.0.0.1:8080/hook" {
                            @for (k, v) in &r.params { (k) "=" (v) "\n" }
                        }
                        button type="submit" { "Run it again and compare" }
                    }
                }
            }
            nav.tabs aria-label="Sections" {
                a href="#trace" { "Rule trace" }
                @if email.is_some() {
                    a href="#body" { "Message" }
                    a href="#headers" { "Headers" }
                    a href="#attachments" { "Attachments" }
                    a href="#structure" { "MIME structure" }
                    a href="#raw" { "Raw" }
                }
            }
            section #trace {
                h2 { "Rule trace" }
                (trace(r, &s.state_dir().display().to_string(), s.runner.as_ref().map(|_| s.token.as_str()), deliveries))
            }
            @if let Some(e) = email {
                section #body {
                    h2 { "Message" }
                    @if let Some(h) = &e.html {
                        div.frame-bar {
                            span { "HTML, sandboxed: no script, no network." }
                            a href={ "/message/" (r.id) "/html?images=remote" } target="mailframe" { "Load remote images" }
                        }
                        iframe name="mailframe" title="The message's HTML" sandbox="" src={ "/message/" (r.id) "/html" } {}
                        @if h.is_empty() {}
                    }
                    @if let Some(t) = &e.text {
                        h3 { "Text" @if e.text_from_html { " (from the HTML)" } }
                        pre.text { (t) }
                    }
                }
                section #headers {
                    h2 { "Headers" }
                    table.headers {
                        @for h in &e.headers {
                            tr { th scope="row" { (h.name) } td { (h.value) } }
                        }
                    }
                }
                section #attachments {
                    h2 { "Attachments" }
                    @if e.attachments.is_empty() { p.muted { "None." } }
                    ul.attachments {
                        @for a in &e.attachments {
                            li {
                                a href={ "/api/v1/message/" (r.id) "/part/" (a.index) } download=(a.safe_filename) { (a.safe_filename) }
                                " · " (a.content_type) " · " (a.size) " bytes"
                                @if let Some(m) = &a.message { " · message: " (m.subject.clone().unwrap_or_default()) }
                            }
                        }
                    }
                }
                @if let Some((root, left_out)) = message.and_then(crate::mime::tree) {
                    section #structure {
                        h2 { "MIME structure" }
                        ul.mime { (mime_node(&r.id, &root)) }
                        @if left_out > 0 { p.warn { (left_out) " more parts are not shown (over " (crate::mime::MAX_NODES) ")." } }
                    }
                }
                section #raw {
                    h2 { "Raw" }
                    p { a href={ "/api/v1/message/" (r.id) "/raw" } { "Download the message as SES stored it" } }
                    details {
                        summary { "Show source" }
                        pre.raw { (String::from_utf8_lossy(message.unwrap_or_default())) }
                    }
                }
            }
        },
    )
}

impl Record {
    fn source_tag(&self) -> &'static str {
        match self.source {
            crate::record::Source::Smtp => "smtp",
            crate::record::Source::Deliver => "deliver",
            crate::record::Source::Inject => "injected",
            crate::record::Source::Replay => "replay",
        }
    }

    fn source_label(&self) -> &'static str {
        match self.source {
            crate::record::Source::Smtp => "over SMTP",
            crate::record::Source::Deliver => "by mailroom deliver",
            crate::record::Source::Inject => "injected",
            crate::record::Source::Replay => "replayed",
        }
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// The rule set's trace as a timeline: each rule, matched or why not, each action with its
/// status, time, disposition, outputs, and a Lambda action's event and answer.
fn trace(r: &Record, state: &str, token: Option<&str>, deliveries: &Deliveries) -> Markup {
    let Some(t) = &r.trace else {
        return html! { p { "Refused at RCPT: no message, no rule ran. The client read " code { (r.reply) } "." } };
    };
    let rules = t
        .get("rules")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    html! {
        @if let Some(f) = t.get("ipFilter").filter(|f| !f.is_null()) {
            p.filter { "IP address filter: " (describe_filter(f)) }
        }
        @if let Some(rej) = t.get("rejected").and_then(Value::as_array).filter(|a| !a.is_empty()) {
            p.warn { "Refused at RCPT: " @for (i, a) in rej.iter().enumerate() { @if i > 0 { ", " } (a.as_str().unwrap_or_default()) } }
        }
        ol.timeline {
            @for (ri, rule) in rules.iter().enumerate() {
                li.rule {
                    div.rule-head {
                        strong { "rule " (s(rule, "name")) }
                        @if let Some(why) = rule.get("skipped").and_then(Value::as_str) {
                            " " span.badge.neutral { "not run" } " " span.muted { (why) }
                        } @else {
                            " " span.badge.good { "matched" } " "
                            span.muted { @for (i, m) in rule.get("matched").and_then(Value::as_array).into_iter().flatten().enumerate() { @if i > 0 { ", " } (m.as_str().unwrap_or_default()) } }
                        }
                        @if let Some(e) = rule.get("endedBy").and_then(Value::as_str) { " " span.badge.warn { (e) } }
                    }
                    ol.actions {
                        @for (ai, a) in rule.get("actions").and_then(Value::as_array).into_iter().flatten().enumerate() {
                            @let webhooks = deliveries.iter().find(|(at, _)| *at == (ri, ai)).map_or(&[][..], |(_, d)| d.as_slice());
                            (action(a, state, &At { record: &r.id, rule: ri, action: ai, token, webhooks }))
                        }
                    }
                }
            }
        }
        @if let Some(stopped) = t.get("stopped").and_then(Value::as_str) {
            p.warn { "Evaluation ended: " (stopped) }
        }
    }
}

fn describe_filter(f: &Value) -> String {
    let verdict = if f.get("refused").and_then(Value::as_bool) == Some(true) {
        "refused"
    } else {
        "accepted"
    };
    let by = f
        .get("filter")
        .and_then(|x| x.get("name"))
        .and_then(Value::as_str)
        .map_or("no filter matches".to_string(), |n| format!("by {n}"));
    format!("{} {verdict} {by}", s(f, "clientIp"))
}

/// An output line, its path under the state dir made a link to what was written there (for a
/// forwarded message, with the record it came from, to compare the two).
fn output(line: &str, state: &str, record: &str) -> Markup {
    let prefix = format!("{state}/");
    let Some(at) = line.find(&prefix).filter(|_| !state.is_empty()) else {
        return html! { (line) };
    };
    let rest = &line[at + prefix.len()..];
    let end = rest.find(' ').unwrap_or(rest.len());
    let (path, after) = rest.split_at(end);
    // An SNS or SQS line names its message: the link shows that publication, or that queued
    // message, only.
    let find = after.split_once("(message ").map(|(_, m)| {
        m.split([')', ',', ' '])
            .next()
            .unwrap_or_default()
            .to_string()
    });
    let query = match find {
        Some(f) => format!("?find={}", urlencode(&f)),
        None if path.starts_with("outbox/") && path.ends_with("-forward.eml") => {
            format!("?message={}", urlencode(record))
        }
        None => String::new(),
    };
    let href = format!(
        "/state/{}{query}",
        path.split('/').map(urlencode).collect::<Vec<_>>().join("/"),
    );
    html! { (&line[..at]) a href=(href) { (path) } (after) }
}

/// Where an action sits in the trace, and whether it can be run again from the page.
struct At<'a> {
    record: &'a str,
    rule: usize,
    action: usize,
    /// The run's token, when the inspector can run functions.
    token: Option<&'a str>,
    /// The webhooks the action delivered (api), with their attempts.
    webhooks: &'a [Delivery],
}

fn action(a: &Value, state: &str, at: &At<'_>) -> Markup {
    let status = a
        .get("status")
        .and_then(|x| x.get("status"))
        .and_then(Value::as_str)
        .unwrap_or("ok");
    let error = a
        .get("status")
        .and_then(|x| x.get("error"))
        .and_then(Value::as_str);
    let summary = a.get("summary").and_then(Value::as_str);
    html! {
        li.action.(if status == "failed" { "failed" } else { "ok" }) {
            div.action-head {
                span.kind { (s(a, "description")) }
                " " (badge(if status == "failed" { "failed" } else { "ok" }))
                @if let Some(d) = a.get("disposition").and_then(Value::as_str) { " " span.badge.warn { "→ " (d) } }
                " " span.muted.duration { (a.get("durationMs").and_then(Value::as_u64).unwrap_or(0)) " ms" }
            }
            @if let Some(e) = error { pre.error { (e) } }
            @if let Some(sm) = summary { pre.answer { (pretty(sm)) } }
            @let outputs = a.get("outputs").and_then(Value::as_array).cloned().unwrap_or_default();
            @if !outputs.is_empty() {
                ul.outputs { @for o in &outputs { li { (output(o.as_str().unwrap_or_default(), state, at.record)) } } }
            }
            @for d in at.webhooks { (delivery(d, at)) }
            @if let (Some(token), Some(id)) = (at.token, a.get("logicalId").and_then(Value::as_str)) {
                form.again method="post" action={ "/message/" (at.record) "/invoke" } {
                    input type="hidden" name="token" value=(token);
                    input type="hidden" name="rule" value=(at.rule);
                    input type="hidden" name="action" value=(at.action);
                    button type="submit" {
                        @if a.get("function").and_then(Value::as_str) == Some("api") { "Redeliver now" } @else { "Invoke " (id) " again" }
                    }
                }
            }
            @if let Some(ev) = a.get("event") {
                details.event {
                    summary { "Lambda event" @if let Some(id) = a.get("logicalId").and_then(Value::as_str) { " for " code { (id) } } }
                    @if let Some(id) = a.get("logicalId").and_then(Value::as_str) {
                        @if let Some(token) = at.token {
                            @let field = format!("event-name-{}-{}", at.rule, at.action);
                            @let suggested = format!("{}-{}", s(a, "function"), at.record.get(..8).unwrap_or(at.record));
                            form.save-event method="post" action={ "/message/" (at.record) "/save-event" } {
                                input type="hidden" name="token" value=(token);
                                input type="hidden" name="rule" value=(at.rule);
                                input type="hidden" name="action" value=(at.action);
                                label for=(field) { "Save it as " code { "events/lambda/" } }
                                input id=(field) type="text" name="name" value=(suggested) required pattern="[A-Za-z0-9_\\-][A-Za-z0-9_.\\-]*";
                                code { ".json" }
                                label.inline { input type="checkbox" name="replace" value="1"; " replace" }
                                button type="submit" { "Save event" }
                            }
                            p.muted { "then " code { "sam local invoke " (id) " -e events/lambda/" (suggested) ".json" } }
                        } @else {
                            p.muted { "Replay it: save it as " code { "events/lambda/my-case.json" } ", then " code { "sam local invoke " (id) " -e events/lambda/my-case.json" } }
                        }
                    }
                    pre { (serde_json::to_string_pretty(ev).unwrap_or_default()) }
                }
            }
        }
    }
}

/// One attempt's outcome as a badge: the status, or why there was none.
fn attempt_result(a: &mailroom_emulator::sink::Attempt) -> Markup {
    match (a.status, &a.error) {
        (Some(st), _) => {
            let tone = match st {
                200..=299 => "good",
                400..=499 if st != 408 && st != 429 => "bad",
                _ => "warn",
            };
            html! { span.badge.(tone) { "HTTP " (st) } }
        }
        (None, Some(e)) => html! { span.badge.bad { "no answer" } " " span.muted { (e) } },
        (None, None) => html! { span.badge.neutral { "unknown" } },
    }
}

/// `in 55 s`, `2 min ago`: when a job is due, from now.
fn due(due_ms: u128) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    let due = i128::try_from(due_ms).unwrap_or(i128::MAX);
    let secs = u64::try_from((due - now).unsigned_abs() / 1000).unwrap_or(u64::MAX);
    let span = human(std::time::Duration::from_secs(secs));
    if due >= now {
        format!("due in {span}")
    } else {
        format!("due {span} ago")
    }
}

/// A webhook's deliveries: every attempt on one timeline, the retry schedule with where the
/// delivery stands on it, the job waiting in the retry queue (and a button to run it now) or
/// the dead letter it ended in.
fn delivery(d: &Delivery, at: &At<'_>) -> Markup {
    let done = d
        .attempts
        .iter()
        .filter_map(|a| a.attempt)
        .max()
        .unwrap_or(0);
    let delivered = d
        .attempts
        .last()
        .is_some_and(|a| a.status.is_some_and(|s| (200..300).contains(&s)));
    let next = d.queued.first().map(|j| j.attempt);
    html! {
        div.delivery {
            h4 { "Webhook " code { (d.webhook_id) } ": " (d.attempts.len()) @if d.attempts.len() == 1 { " attempt" } @else { " attempts" } }
            @if d.attempts.is_empty() {
                p.muted { "No attempt recorded (the record is older than attempt tracking, or the POST was never sent)." }
            } @else {
                table.attempts {
                    caption.visually-hidden { "Attempts of webhook " (d.webhook_id) }
                    thead { tr { th scope="col" { "Attempt" } th scope="col" { "Sent" } th scope="col" { "Latency" } th scope="col" { "Answer" } th scope="col" { "Signature" } } }
                    tbody {
                        @for (i, a) in d.attempts.iter().enumerate() {
                            tr {
                                td { a href={ "/message/" (at.record) "/attempts/" (urlencode(&d.webhook_id)) "#attempt-" (i + 1) } { "#" (a.attempt.map_or("?".to_string(), |n| n.to_string())) } @if a.sink { " " span.muted { "sink" } } }
                                td { time datetime=(a.at) { (short_time(&a.at)) } }
                                td.num { (a.latency_ms) " ms" }
                                td { (attempt_result(a)) }
                                td { @if a.signature_valid { span.badge.good { "valid" } } @else { span.badge.bad { "invalid" } " " span.muted { (a.signature_error.as_deref().unwrap_or_default()) } } }
                            }
                        }
                    }
                }
            }
            @if let Some(policy) = &d.policy {
                @let total = policy.max_attempts();
                p.schedule-head { "Retry schedule: " (total) " attempts, each wait ±" (format!("{:.0}", policy.jitter * 100.0)) "%, a " code { "Retry-After" } " up to " (human(policy.max_retry_after)) " honoured; then the dead-letter queue." }
                ol.schedule {
                    @for (n, wait) in (1..=total).zip(std::iter::once(std::time::Duration::ZERO).chain(policy.delays.iter().copied())) {
                        @let state = if delivered && n == done { "delivered" } else if n <= done { "failed" } else if Some(n) == next { "queued" } else { "pending" };
                        li.(state) { span.n { (n) } " " (if n == 1 { "first try".to_string() } else { format!("{} later", human(wait)) }) " " span.visually-hidden { "(" (state) ")" } }
                    }
                    li.dlq { "dead-letter queue" }
                }
            }
            @for j in &d.queued {
                div.queued {
                    p {
                        "Attempt " (j.attempt) " waits in the retry queue, "
                        @if let Some(ms) = j.due_ms { (due(ms)) } @else { "due when the queue makes it visible" }
                        " ("
                        a href={ "/state/" (j.file.split('/').map(urlencode).collect::<Vec<_>>().join("/")) } { "the job" }
                        "). Locally no trigger reads that queue: run it yourself."
                    }
                    @if !j.reason.is_empty() { p.muted { "Last error: " (j.reason) } }
                    @if let Some(token) = at.token {
                        form.again method="post" action={ "/message/" (at.record) "/retry" } {
                            input type="hidden" name="token" value=(token);
                            input type="hidden" name="rule" value=(at.rule);
                            input type="hidden" name="action" value=(at.action);
                            input type="hidden" name="job" value=(j.file);
                            button type="submit" { "Run attempt " (j.attempt) " now" }
                        }
                    }
                }
            }
            @for j in &d.dead {
                p.warn {
                    "Dead-lettered after " (j.attempts_label()) ": " (j.reason) " ("
                    a href={ "/state/" (j.file.split('/').map(urlencode).collect::<Vec<_>>().join("/")) } { "the dead letter" }
                    "). Re-drive it with " code { "mailroom replay" } "."
                }
            }
        }
    }
}

/// Every attempt of one webhook in full: request headers and body, the answer, the signature.
pub fn attempts_page(s: &Inspector, r: &Record, d: &Delivery) -> Markup {
    layout(
        "Webhook attempts",
        s,
        "",
        html! {
            p.back { a href={ "/message/" (r.id) "#trace" } { "← " (if r.subject.is_empty() { "(no subject)" } else { &r.subject }) } }
            h1 { "Webhook " code { (d.webhook_id) } }
            p.muted { (d.attempts.len()) " attempts, oldest first. Each rebuilds the payload from the stored mail and signs it afresh." }
            @for (i, a) in d.attempts.iter().enumerate() {
                section.attempt id={ "attempt-" (i + 1) } {
                    h2 { "Attempt " (a.attempt.map_or("?".to_string(), |n| n.to_string())) " " span.muted { "· " (a.at) } }
                    dl.facts {
                        dt { "URL" } dd { code { (a.url) } @if a.sink { " " span.muted { "(delivered to the local sink)" } } }
                        dt { "Answer" } dd { (attempt_result(a)) }
                        dt { "Latency" } dd { (a.latency_ms) " ms" }
                        @if let Some(ra) = &a.retry_after { dt { "Retry-After" } dd { code { (ra) } } }
                        dt { "Signature" } dd { @if a.signature_valid { span.badge.good { "valid" } } @else { span.badge.bad { "invalid" } " " (a.signature_error.as_deref().unwrap_or_default()) } }
                        dt { "Body" } dd { (a.body_bytes) " bytes" }
                    }
                    details {
                        summary { "Request headers" }
                        pre { @for (k, v) in &a.headers { (k) ": " (v) "\n" } }
                    }
                    @if let Some(body) = &a.body {
                        details {
                            summary { "Request body" }
                            pre { (serde_json::to_string_pretty(body).unwrap_or_default()) }
                        }
                    } @else {
                        p.muted { "The body was larger than the attempt log keeps; the sink's file has the latest." }
                    }
                    @if !a.response.is_empty() {
                        details { summary { "Response body (start)" } pre { (a.response) } }
                    }
                }
            }
        },
    )
}

/// One part of the MIME structure and, nested under it, its children (a nested message's own
/// parts under it).
fn mime_node(record: &str, n: &crate::mime::Node) -> Markup {
    html! {
        li {
            span.ctype { (n.content_type) }
            @if let Some(c) = &n.charset { " " span.muted { "charset " (c) } }
            @if let Some(e) = &n.encoding { " " span.muted { (e) } }
            @if let Some(d) = &n.disposition { " " span.badge.neutral { (d) } }
            @if let Some(subject) = &n.subject { " " span.badge.warn { "message" } " " q { (subject) } }
            " " span.muted { (n.size) " bytes" }
            @if n.problems { " " span.badge.warn { "repaired" } }
            @if n.downloadable() {
                " " a href={ "/message/" (record) "/mime/" (n.n) } download {
                    "download" @if let Some(f) = &n.filename { " " (f) } @else { span.visually-hidden { " part " (n.n) } }
                }
            }
            @if !n.children.is_empty() {
                ul { @for c in &n.children { (mime_node(record, c)) } }
            }
        }
    }
}

/// A function's JSON answer pretty-printed; anything else as it is.
fn pretty(summary: &str) -> String {
    let (note, json) = match summary.find(['[', '{']) {
        Some(i) => summary.split_at(i),
        None => return summary.to_string(),
    };
    match serde_json::from_str::<Value>(json) {
        Ok(v) => format!(
            "{note}{}",
            serde_json::to_string_pretty(&v).unwrap_or_default()
        ),
        Err(_) => summary.to_string(),
    }
}

pub fn inject_page(s: &Inspector, can_run: bool) -> Markup {
    layout(
        "Inject",
        s,
        "",
        html! {
            h1 { "Inject a message" }
            @if !can_run {
                p.warn { "This inspector only browses a record. Start " code { "mailroom serve" } " to run mail through the rule set." }
            }
            form.inject method="post" action="/inject" {
                input type="hidden" name="token" value=(s.token);
                fieldset {
                    legend { "The message" }
                    label for="raw" { "Paste a raw message (.eml)…" }
                    textarea #raw name="raw" rows="8" {}
                    p.muted { "…or compose one:" }
                    div.grid {
                        label for="from" { "From" } input #from name="from" placeholder="Carla <carla@example.org>";
                        label for="to" { "To" } input #to name="to" placeholder="support@example.com";
                        label for="subject" { "Subject" } input #subject name="subject";
                    }
                    label for="body" { "Body" }
                    textarea #body name="body" rows="5" {}
                }
                fieldset {
                    legend { "Envelope and connection" }
                    div.grid {
                        label for="mail_from" { "MAIL FROM" } input #mail_from name="mail_from" placeholder="the From address";
                        label for="rcpt_to" { "RCPT TO" } input #rcpt_to name="rcpt_to" placeholder="the To address; several: comma-separated";
                        label for="client_ip" { "Client IP" } input #client_ip name="client_ip" placeholder="127.0.0.1";
                        label for="tls" { "Over TLS" } input #tls type="checkbox" name="tls" value="on";
                    }
                }
                fieldset {
                    legend { "Verdicts SES reports" }
                    div.grid {
                        @for (name, label) in [("spam", "Spam"), ("virus", "Virus"), ("spf", "SPF"), ("dkim", "DKIM"), ("dmarc", "DMARC")] {
                            label for=(name) { (label) }
                            select id=(name) name=(name) {
                                option value="" { "PASS (default)" }
                                option value="FAIL" { "FAIL" }
                                option value="GRAY" { "GRAY" }
                                option value="PROCESSING_FAILED" { "PROCESSING_FAILED" }
                            }
                        }
                    }
                }
                button.primary type="submit" disabled[!can_run] { "Run through the rule set" }
            }
        },
    )
}

/// One line per rule and per action, keyed so that the two runs line up.
fn trace_lines(r: &Record) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(t) = &r.trace else {
        out.push(("transaction".to_string(), format!("refused: {}", r.reply)));
        return out;
    };
    out.push(("disposition".to_string(), r.disposition.clone()));
    for rule in t
        .get("rules")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = s(rule, "name");
        let state = match rule.get("skipped").and_then(Value::as_str) {
            Some(why) => format!("not run: {why}"),
            None => format!(
                "matched{}",
                rule.get("endedBy")
                    .and_then(Value::as_str)
                    .map(|e| format!(", ended by {e}"))
                    .unwrap_or_default()
            ),
        };
        out.push((format!("rule {name}"), state));
        for a in rule
            .get("actions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let status = a
                .get("status")
                .and_then(|x| {
                    x.get("error")
                        .and_then(Value::as_str)
                        .map(|e| format!("failed: {e}"))
                })
                .unwrap_or_else(|| "ok".to_string());
            let mut line = status;
            if let Some(d) = a.get("disposition").and_then(Value::as_str) {
                line.push_str(&format!(" → {d}"));
            }
            if let Some(sm) = a.get("summary").and_then(Value::as_str) {
                line.push_str(&format!("\n{sm}"));
            }
            let key = format!(
                "rule {name} · {}. {}",
                a.get("index").and_then(Value::as_u64).unwrap_or(0) + 1,
                s(a, "description")
            );
            out.push((key, line.replace(&r.id, "‹message id›")));
        }
    }
    out
}

pub fn compare_page(s: &Inspector, before: &Record, after: &Record) -> Markup {
    let a = trace_lines(before);
    let b = trace_lines(after);
    let mut keys: Vec<&String> = a.iter().map(|(k, _)| k).collect();
    for (k, _) in &b {
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let find = |lines: &[(String, String)], k: &str| {
        lines
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let changed = keys.iter().filter(|k| find(&a, k) != find(&b, k)).count();
    layout(
        "Replay",
        s,
        "",
        html! {
            p.back { a href={ "/message/" (before.id) } { "← The first run" } }
            h1 { "Replay: " (if before.subject.is_empty() { "(no subject)" } else { &before.subject }) }
            p.count {
                (changed) @if changed == 1 { " line differs" } @else { " lines differ" }
                @if !after.params.is_empty() {
                    " · parameters: "
                    @for (k, v) in &after.params { code { (k) "=" (v) } " " }
                }
                @if let Some(t) = &after.template { " · template: " code { (t) } }
            }
            table.compare {
                caption.visually-hidden { "The two runs' traces, line by line" }
                thead {
                    tr {
                        th scope="col" { "Step" }
                        th scope="col" { a href={ "/message/" (before.id) } { "Before" } }
                        th scope="col" { a href={ "/message/" (after.id) } { "After" } }
                    }
                }
                tbody {
                    @for k in &keys {
                        @let x = find(&a, k);
                        @let y = find(&b, k);
                        tr.changed[x != y] {
                            th scope="row" { (k) @if x != y { " " span.badge.warn { "changed" } } }
                            td { pre { (x.unwrap_or_else(|| "—".into())) } }
                            td { pre { (y.unwrap_or_else(|| "—".into())) } }
                        }
                    }
                }
            }
        },
    )
}

/// A file under the state dir, as its page shows it.
pub struct FileView<'a> {
    pub path: &'a str,
    pub size: u64,
    /// Its first bytes (the page shows at most these).
    pub head: &'a [u8],
    /// An S3 object's stored metadata (JSON).
    pub meta: Option<&'a str>,
    /// In a JSON-lines file, the lines containing this only.
    pub find: Option<&'a str>,
    /// A filter policy to try on an SNS publication.
    pub policy: Option<&'a str>,
    pub mail: Option<&'a OutboxMail>,
}

pub fn file_page(s: &Inspector, view: &FileView<'_>) -> Markup {
    let FileView {
        path,
        size,
        head,
        meta,
        find,
        policy,
        mail,
    } = *view;
    // The preview may end inside a character: a text whose only fault is that cut is text.
    let text = match std::str::from_utf8(head) {
        Ok(t) => Some(t),
        Err(e) if e.error_len().is_none() => head
            .get(..e.valid_up_to())
            .and_then(|h| std::str::from_utf8(h).ok()),
        Err(_) => None,
    };
    let shown: Option<String> = text.map(|t| {
        if let Some(f) = find.filter(|f| !f.is_empty()) {
            t.lines()
                .filter(|l| l.contains(f))
                .map(|l| {
                    serde_json::from_str::<Value>(l)
                        .ok()
                        .and_then(|v| serde_json::to_string_pretty(&v).ok())
                        .unwrap_or_else(|| l.to_string())
                })
                .collect::<Vec<_>>()
                .join("\n")
        } else if path.ends_with(".json") {
            serde_json::from_str::<Value>(t)
                .ok()
                .map(|mut v| {
                    // A queued message's body is JSON in a string: shown as the JSON it is.
                    if let Some(inner) = v
                        .get("body")
                        .and_then(Value::as_str)
                        .and_then(|b| serde_json::from_str::<Value>(b).ok())
                    {
                        v["body"] = inner;
                    }
                    v
                })
                .and_then(|v| serde_json::to_string_pretty(&v).ok())
                .unwrap_or_else(|| t.to_string())
        } else {
            t.to_string()
        }
    });
    layout(
        path,
        s,
        "",
        html! {
            p.back { a href="/" { "← Inbox" } }
            h1.path { code { (path) } }
            p.count {
                (size) " bytes · "
                a href={ "/state/" (path.split('/').map(urlencode).collect::<Vec<_>>().join("/")) "?raw=1" } { "Download" }
                @if let Some(f) = find { " · the publication " code { (f) } " only" }
                @if size > head.len() as u64 { " · the first " (head.len()) " bytes are shown" }
            }
            @if let Some(m) = meta {
                section {
                    h2 { "Object metadata" }
                    pre { (serde_json::from_str::<Value>(m).ok().and_then(|v| serde_json::to_string_pretty(&v).ok()).unwrap_or_else(|| m.to_string())) }
                }
            }
            @if let (Some(f), Some(t)) = (find.filter(|f| !f.is_empty()), text) {
                @if path.starts_with("sns/") {
                    (policy_tester(path, f, t, policy))
                }
            }
            @if let Some(m) = mail {
                (outbox_message(m))
            }
            @if let Some(request) = path.strip_prefix("webhooks/").and(text).and_then(|t| serde_json::from_str::<Value>(t).ok()) {
                (webhook_request(&request))
            }
            section {
                h2 { "Content" }
                @match shown {
                    Some(t) => pre.raw { (t) },
                    None => p.muted { "Binary content: download it to open it." },
                }
            }
        },
    )
}

/// A webhook as the local sink received it: the request line, whether its signature checked
/// out, the headers; the body follows in the file's content.
fn webhook_request(v: &Value) -> Markup {
    let valid = v.get("signatureValid").and_then(Value::as_bool);
    html! {
        section {
            h2 { "Webhook request" }
            dl.facts {
                dt { "Request" } dd { code { (s(v, "method")) " " (s(v, "url")) } }
                dt { "Received" } dd { (s(v, "receivedAt")) }
                dt { "Signature" } dd {
                    @match valid {
                        Some(true) => span.badge.good { "valid" },
                        Some(false) => span.badge.bad { "invalid" },
                        None => span.badge.neutral { "not checked" },
                    }
                    " (Standard Webhooks, with the local secret)"
                }
            }
            h3 { "Headers" }
            table.headers {
                @for (k, val) in v.get("headers").and_then(Value::as_object).into_iter().flatten() {
                    tr { th scope="row" { (k) } td { (val.as_str().map_or_else(|| val.to_string(), str::to_string)) } }
                }
            }
        }
    }
}

/// The SNS filter-policy tester for one publication.
fn policy_tester(path: &str, find: &str, text: &str, policy: Option<&str>) -> Markup {
    let attributes = text
        .lines()
        .filter(|l| l.contains(find))
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .and_then(|v| {
            v.get("publication")
                .and_then(|p| p.get("attributes"))
                .cloned()
        })
        .unwrap_or_default();
    let result = policy
        .filter(|p| !p.trim().is_empty())
        .map(|p| crate::filter_policy::evaluate(p, &attributes));
    html! {
        section #policy-tester {
            h2 { "Filter-policy tester" }
            p.muted { "Paste a subscription's filter policy (attribute-based): would it receive this publication?" }
            form method="get" action={ "/state/" (path) } {
                input type="hidden" name="find" value=(find);
                label.visually-hidden for="policy" { "Filter policy" }
                textarea #policy name="policy" rows="4" placeholder=r#"{"spam": ["PASS"], "recipient": [{"suffix": "@example.com"}]}"# { (policy.unwrap_or_default()) }
                button type="submit" { "Test" }
            }
            @match result {
                Some(Ok(d)) => {
                    p.verdict { @if d.delivered { span.badge.good { "delivered" } } @else { span.badge.bad { "filtered out" } } }
                    ul.outputs { @for r in &d.reasons { li { (r) } } }
                }
                Some(Err(e)) => p.error role="alert" { (e) },
                None => {}
            }
        }
    }
}

pub fn invoked_page(
    s: &Inspector,
    r: &Record,
    logical_id: &str,
    retried: bool,
    invoked: &Result<crate::web::Invoked, String>,
) -> Markup {
    let state = s.state_dir().display().to_string();
    layout(
        "Invoked",
        s,
        "",
        html! {
            p.back { a href={ "/message/" (r.id) } { "← " (if r.subject.is_empty() { "(no subject)" } else { &r.subject }) } }
            @if retried {
                h1 { (logical_id) ": retry job run now" }
                p.muted { "The job waiting in its retry queue, handed to it as the queue's trigger would once it is due. " a href={ "/message/" (r.id) "#trace" } { "Back to the trace" } " shows every attempt." }
            } @else {
                h1 { (logical_id) " invoked again" }
                p.muted { "With the exact event the rule gave it, once, as Lambda's retry of that invocation would run it." }
            }
            @match invoked {
                Ok(i) => {
                    p { (badge("ok")) " " span.muted { (i.duration_ms) " ms" } }
                    section {
                        h2 { "Answer" }
                        pre.answer { (pretty(&i.answer)) }
                        @if !i.outputs.is_empty() {
                            h3 { "Outputs" }
                            ul.outputs { @for o in &i.outputs { li { (output(o, &state, &r.id)) } } }
                        }
                    }
                }
                Err(e) => {
                    p { (badge("failed")) }
                    pre.error role="alert" { (e) }
                }
            }
        },
    )
}

/// Where an event was saved, and the line that invokes the function with it.
pub fn saved_page(s: &Inspector, r: &Record, logical_id: &str, path: &std::path::Path) -> Markup {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    layout(
        "Event saved",
        s,
        "",
        html! {
            p.back { a href={ "/message/" (r.id) "#trace" } { "← " (if r.subject.is_empty() { "(no subject)" } else { &r.subject }) } }
            h1 { "Event saved" }
            p { "The exact event " code { (logical_id) } " was given is in " code { (path.display()) } "." }
            p { "Run the deployed build of the function with it:" }
            pre.command { "sam local invoke " (logical_id) " -e events/lambda/" (name) " --env-vars .aws-sam/local-env.json" }
            p.muted {
                "The stop function needs nothing more. store, fanout, api and forward read the message from "
                code { "raw/" (r.id) } " in the stack's raw mail bucket: upload "
                a href={ "/api/v1/message/" (r.id) "/raw" } { "the message as SES stored it" }
                " there first. " code { "scripts/sam-local-aws" } " runs such a stack locally and writes the " code { "--env-vars" } " file."
            }
        },
    )
}

/// A message the functions sent (forward) or SES would send (a bounce's DSN), read back from
/// the outbox, and for a forward the message it came from.
pub struct OutboxMail {
    pub email: mailroom::Email,
    /// SES's rules for a raw message it is given to send, checked on these bytes (forward).
    pub violations: Option<Vec<String>>,
    /// The headers of the message as SES stored it, when the record is known.
    pub original: Option<Vec<mailroom::email::Header>>,
}

fn outbox_message(m: &OutboxMail) -> Markup {
    let e = &m.email;
    html! {
        section {
            h2 { "The message" }
            dl.facts {
                dt { "Subject" } dd { (e.subject.clone().unwrap_or_default()) }
                dt { "From" } dd { @for a in &e.from { (a.address) " " } }
                dt { "To" } dd { @for a in &e.to { (a.address) " " } }
                @if let Some(v) = &m.violations {
                    dt { "SES's rules" } dd {
                        @if v.is_empty() { span.badge.good { "SES would accept it" } }
                        @else { span.badge.bad { (v.len()) " violations" } ul { @for x in v { li { (x) } } } }
                    }
                }
            }
            @if let Some(t) = &e.text { h3 { "Text" } pre.text { (t) } }
            @if !e.attachments.is_empty() {
                h3 { "Parts" }
                ul.attachments { @for a in &e.attachments { li { (a.safe_filename) " · " (a.content_type) " · " (a.size) " bytes" } } }
            }
        }
        @if let Some(original) = &m.original {
            (header_comparison(original, &e.headers))
        }
    }
}

/// The original message's headers beside the sent message's, each name's values side by side.
fn header_comparison(
    original: &[mailroom::email::Header],
    sent: &[mailroom::email::Header],
) -> Markup {
    let mut names: Vec<String> = Vec::new();
    for h in original.iter().chain(sent) {
        if !names.iter().any(|n| n.eq_ignore_ascii_case(&h.name)) {
            names.push(h.name.clone());
        }
    }
    let values = |list: &[mailroom::email::Header], name: &str| {
        list.iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.clone())
            .collect::<Vec<_>>()
            .join("\n")
    };
    html! {
        section {
            h2 { "Headers: original and sent" }
            table.compare {
                thead { tr { th scope="col" { "Header" } th scope="col" { "Original (as SES stored it)" } th scope="col" { "Sent" } } }
                tbody {
                    @for n in &names {
                        @let a = values(original, n);
                        @let b = values(sent, n);
                        tr.changed[a != b] {
                            th scope="row" { (n) @if a.is_empty() { " " span.badge.good { "added" } } @else if b.is_empty() { " " span.badge.warn { "removed" } } @else if a != b { " " span.badge.warn { "changed" } } }
                            td { pre { (if a.is_empty() { "—".to_string() } else { a.clone() }) } }
                            td { pre { (if b.is_empty() { "—".to_string() } else { b.clone() }) } }
                        }
                    }
                }
            }
        }
    }
}
