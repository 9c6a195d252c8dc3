//! The inspector's list and search with a full record: N transactions (default 10,000) in an
//! inbox, then the list's first page and searches over HTTP, each timed from request to the
//! last byte on loopback (the server's time plus a loopback round trip). Prints medians and 95th
//! percentiles; the goal (≤ 50 ms) is checked by scripts/inspector-bench, not here.
//!
//! `cargo run --release --ignore-rust-version -p mailroom-inspector --example index_bench -- [N]`

use mailroom_emulator::receipt::Envelope;
use mailroom_inspector::web::Inspector;
use mailroom_inspector::{Inbox, Record, Retention, Source};
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Instant;

const SUBJECTS: &[&str] = &[
    "Quarterly report",
    "Invoice 2025-01",
    "Password reset",
    "Your order has shipped",
    "Re: lunch on Friday?",
    "Weekly newsletter",
    "Meeting notes",
    "Delivery Status Notification (Failure)",
];
const DISPOSITIONS: &[&str] = &[
    "accepted", "accepted", "accepted", "stopped", "bounced", "refused",
];

fn message(i: usize) -> Vec<u8> {
    let subject = SUBJECTS[i % SUBJECTS.len()];
    format!(
        "X-SES-Spam-Verdict: {spam}\r\nFrom: Sender {i} <sender{i}@example{d}.org>\r\n\
         To: support@example.com\r\nSubject: {subject} #{i}\r\nMessage-ID: <m{i}@example.org>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         Hello, this is message {i} about the {subject}. Lorem ipsum dolor sit amet, consectetur \
         adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.\r\n",
        spam = if i.is_multiple_of(17) { "FAIL" } else { "PASS" },
        d = i % 50,
    )
    .into_bytes()
}

fn record(i: usize, msg: &[u8]) -> Record {
    let envelope = Envelope {
        mail_from: format!("sender{i}@example{}.org", i % 50),
        recipients: vec!["support@example.com".into()],
        helo: "client.test".into(),
        client_ip: "192.0.2.1".into(),
        tls: false,
    };
    let disposition = DISPOSITIONS[i % DISPOSITIONS.len()];
    let mut r =
        Record::without_message(Source::Smtp, &envelope, "250 2.0.0 Ok".into(), disposition);
    r.subject = format!("{} #{i}", SUBJECTS[i % SUBJECTS.len()]);
    r.from.clone_from(&envelope.mail_from);
    r.size = msg.len() as u64;
    r.attachments = u32::from(i.is_multiple_of(7));
    r.snippet = format!("Hello, this is message {i}");
    r.rules = vec!["gate".into(), "receive".into()];
    r.verdicts.insert(
        "spam".into(),
        if i.is_multiple_of(17) { "FAIL" } else { "PASS" }.into(),
    );
    r.webhook = Some(
        if i.is_multiple_of(23) {
            "failed"
        } else {
            "delivered"
        }
        .into(),
    );
    r
}

fn get(addr: std::net::SocketAddr, path: &str) -> (u128, usize) {
    let t0 = Instant::now();
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut body = Vec::new();
    s.read_to_end(&mut body).expect("read");
    assert!(
        body.starts_with(b"HTTP/1.1 200"),
        "{path}: {}",
        String::from_utf8_lossy(&body[..body.len().min(200)])
    );
    (t0.elapsed().as_micros(), body.len())
}

fn median_p95(mut v: Vec<u128>) -> (f64, f64) {
    v.sort_unstable();
    let m = v[v.len() / 2] as f64 / 1000.0;
    let p = v[(v.len() * 95 / 100).min(v.len() - 1)] as f64 / 1000.0;
    (m, p)
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map_or(Ok(10_000), |a| a.parse())?;
    let dir = tempfile::tempdir()?;
    let inbox = Arc::new(Inbox::open(
        dir.path(),
        Retention {
            max_messages: 0,
            max_age: None,
        },
    )?);
    let t0 = Instant::now();
    for i in 0..n {
        let msg = message(i);
        inbox.add(&record(i, &msg), Some(&msg))?;
    }
    println!(
        "indexed {n} transactions in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = Inspector::new(inbox.clone(), None, addr.to_string());
    tokio::spawn(mailroom_inspector::web::serve(listener, state));
    let queries = [
        "",
        "from:sender42",
        "subject:invoice",
        "has:attachment",
        "verdict:spam=FAIL",
        "disposition:bounced webhook:failed",
        "\"quarterly report\"",
        "-has:attachment lorem",
        "nothing-matches-this",
    ];
    println!(
        "{:<40} {:>10} {:>10} {:>10} {:>10}",
        "query (50 newest)", "page ms", "page p95", "api ms", "api p95"
    );
    let mut worst: f64 = 0.0;
    for q in queries {
        let (page, api) = tokio::task::spawn_blocking(move || {
            let page_path = format!("/?q={}", encode(q));
            let api_path = format!("/api/v1/search?query={}", encode(q));
            get(addr, &page_path);
            let page: Vec<u128> = (0..21).map(|_| get(addr, &page_path).0).collect();
            let api: Vec<u128> = (0..21).map(|_| get(addr, &api_path).0).collect();
            (median_p95(page), median_p95(api))
        })
        .await?;
        worst = worst.max(page.0).max(api.0);
        let label = if q.is_empty() {
            "(first page, no query)"
        } else {
            q
        };
        println!(
            "{label:<40} {:>10.1} {:>10.1} {:>10.1} {:>10.1}",
            page.0, page.1, api.0, api.1
        );
    }
    let rss = std::fs::read_to_string("/proc/self/status")?
        .lines()
        .find(|l| l.starts_with("VmHWM"))
        .unwrap_or_default()
        .to_string();
    println!("worst median {worst:.1} ms over {n} transactions; this process's {rss}");
    Ok(())
}
