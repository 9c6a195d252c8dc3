//! Figures for the per-attempt CPU work: building the body (both formats) and signing it.
//! `cargo bench -p mailroom-api --bench webhook`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use mailroom::webhook::delivery::SesContext;
use mailroom::webhook::payload::{self, Delivery, Format, RawLocation};
use mailroom::webhook::signing::{self, Secret};
use mailroom::{Email, Limits};
use std::hint::black_box;

/// A message with a text body and one base64 attachment of `size` bytes.
fn message(size: usize) -> Vec<u8> {
    use base64::Engine;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&data);
    let mut lines = String::new();
    for chunk in b64.as_bytes().chunks(76) {
        lines.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        lines.push_str("\r\n");
    }
    format!(
        "From: A <a@example.org>\r\nTo: b@example.com\r\nSubject: bench\r\n\
         Date: Thu, 16 Jan 2025 09:12:45 -0300\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
         Content-Type: text/plain\r\n\r\nHello there.\r\n--b\r\n\
         Content-Type: application/octet-stream\r\n\
         Content-Disposition: attachment; filename=\"data.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{lines}--b--\r\n"
    )
    .into_bytes()
}

fn bench(c: &mut Criterion) {
    let ses = SesContext {
        timestamp: "2025-01-16T12:12:47.311Z".into(),
        mail_from: "a@example.org".into(),
        recipients: vec!["b@example.com".into()],
        ..SesContext::default()
    };
    let raw_location = RawLocation {
        bucket: "b".into(),
        key: "raw/m".into(),
        url: None,
        url_expires_at: None,
    };
    let secrets = [Secret::parse(&Secret::generate()).expect("secret")];
    for size in [64 * 1024, 4 * 1024 * 1024] {
        let raw = message(size);
        let parsed = Email::parse(&raw, &Limits::default()).expect("parse");
        let inline = vec![Delivery::Inline; parsed.email.attachments.len()];
        let mut group = c.benchmark_group(format!("attachment {} KiB", size / 1024));
        group.throughput(Throughput::Bytes(raw.len() as u64));
        group.sample_size(20);
        for format in [Format::Mailroom, Format::Postmark] {
            group.bench_function(format!("build {format:?}"), |b| {
                b.iter(|| {
                    let input = payload::Input {
                        format,
                        webhook_id: "m",
                        message_id: "m",
                        parsed: &parsed,
                        ses: &ses,
                        raw_location: &raw_location,
                        attachments: &inline,
                        raw_email: None,
                    };
                    black_box(payload::build(&input).expect("build"))
                })
            });
        }
        group.bench_function("parse + build + sign (mailroom)", |b| {
            b.iter(|| {
                let parsed = Email::parse(black_box(&raw), &Limits::default()).expect("parse");
                let input = payload::Input {
                    format: Format::Mailroom,
                    webhook_id: "m",
                    message_id: "m",
                    parsed: &parsed,
                    ses: &ses,
                    raw_location: &raw_location,
                    attachments: &inline,
                    raw_email: None,
                };
                let body = payload::build(&input).expect("build");
                black_box(signing::headers(&secrets, "m", 1_737_029_567, &body))
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
